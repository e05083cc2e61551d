/* The TLS options both commands share, and the contexts they make. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

void tls_cli_server_ctx(const tls_cli *t, sk_tls_ctx **out)
{
    if (t->key && !t->cert)
        die(EXIT_USAGE, "--key needs --cert (the certificate that goes with the key)");
    sk_tls_options o = {
        .server = true,
        .cert_file = t->cert,
        .key_file = t->key,
        .self_signed = !t->cert,
        .ca_file = t->ca,
        .alpn = t->alpn,
    };
    char err[512];
    int rc = sk_tls_ctx_new(&o, out, err, sizeof err);
    if (rc < 0)
        die(EXIT_RUNTIME, "TLS: %s", err[0] ? err : sk_strerror(rc));
    if (!t->cert && !t->quiet) {
        char fp[128];
        sk_tls_ctx_fingerprint(*out, fp, sizeof fp);
        fprintf(stderr, "tls: ephemeral self-signed certificate for localhost, 127.0.0.1, ::1; "
                        "clients can pin it with --pin %s\n", fp);
    }
}

void tls_cli_client_ctx(const tls_cli *t, sk_tls_ctx **out)
{
    if (t->key && !t->cert)
        die(EXIT_USAGE, "--key needs --cert (the certificate that goes with the key)");
    if (t->insecure && t->pin)
        die(EXIT_USAGE, "--insecure and --pin contradict each other: --pin already accepts "
                        "exactly one certificate");
    sk_tls_options o = {
        .cert_file = t->cert,
        .key_file = t->key,
        .ca_file = t->ca,
        .insecure = t->insecure,
        .pin = t->pin,
        .alpn = t->alpn,
    };
    char err[512];
    int rc = sk_tls_ctx_new(&o, out, err, sizeof err);
    if (rc < 0)
        die(rc == -EINVAL && (t->pin || t->alpn) && !strstr(err, "cannot load") ? EXIT_USAGE
                                                                                : EXIT_RUNTIME,
            "TLS: %s", err[0] ? err : sk_strerror(rc));
    if (t->insecure)
        msg("warning: --insecure: the server's certificate is not checked; anyone on the path "
            "can read and change this connection");
}

void tls_cli_describe(sk_conn *c, const char *who)
{
    sk_tls_info info;
    if (sk_conn_tls_info(c, &info) < 0)
        return;
    log_info("tls %s: %s %s%s%s%s%s; %s certificate: %s; %s", who, info.version, info.cipher,
             info.sni ? ", sni " : "", info.sni ? info.sni : "",
             info.alpn[0] ? ", alpn " : "", info.alpn,
             who, info.peer_subject[0] ? info.peer_subject : "none",
             info.verified ? "verified" : "not verified");
}
