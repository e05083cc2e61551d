/* The TLS options both commands share, and the contexts they make. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

bool tls_cli_protocol_option(tls_cli *t, int ch, const char *arg)
{
    switch (ch) {
    case OPT_TLS_CIPHERS: t->ciphers = arg; return true;
    case OPT_TLS_SUITES: t->ciphersuites = arg; return true;
    case OPT_TLS_MIN: t->min_version = arg; return true;
    default: return false;
    }
}

bool tls_cli_any(const tls_cli *t)
{
    return t->cert || t->key || t->ca || t->pin || t->sni || t->alpn || t->ciphers ||
           t->ciphersuites || t->min_version || t->insecure;
}

/* A bad setting is the user's to fix (exit 2); a file that will not load is not (exit 1). */
static _Noreturn void ctx_failed(int rc, const char *err)
{
    die(rc == -EINVAL && !strstr(err, "cannot load") ? EXIT_USAGE : EXIT_RUNTIME, "TLS: %s",
        err[0] ? err : sk_strerror(rc));
}

void tls_cli_server_ctx(const tls_cli *t, const logger *lg, sk_tls_ctx **out)
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
        .ciphers = t->ciphers,
        .ciphersuites = t->ciphersuites,
        .min_version = t->min_version,
    };
    char err[512];
    int rc = sk_tls_ctx_new(&o, out, err, sizeof err);
    if (rc < 0)
        ctx_failed(rc, err);
    if (!t->cert) {
        char fp[128];
        sk_tls_ctx_fingerprint(*out, fp, sizeof fp);
        log_notice(lg,
                   "tls: ephemeral self-signed certificate for localhost, 127.0.0.1, ::1; "
                   "clients can pin it with --pin %s",
                   fp);
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
        .ciphers = t->ciphers,
        .ciphersuites = t->ciphersuites,
        .min_version = t->min_version,
    };
    char err[512];
    int rc = sk_tls_ctx_new(&o, out, err, sizeof err);
    if (rc < 0)
        ctx_failed(rc, err);
    if (t->insecure)
        msg("warning: --insecure: the server's certificate is not checked; anyone on the path "
            "can read and change this connection");
}

void tls_cli_describe(const logger *lg, sk_conn *c, const char *who)
{
    sk_tls_info info;
    if (sk_tls_describe(c, &info) < 0)
        return;
    /* A pin accepts a certificate whatever its dates: say so, rather than "verified". */
    const char *how = info.pinned ? "pinned" : info.verified ? "verified" : "not verified";
    char dates[96] = "";
    if (info.peer_expired)
        snprintf(dates, sizeof dates, " (outside its validity dates; valid until %s)",
                 info.peer_not_after[0] ? info.peer_not_after : "?");
    log_info(lg, "tls %s: %s %s%s%s%s%s; %s certificate: %s; %s%s", who, info.version, info.cipher,
             info.sni ? ", sni " : "", info.sni ? info.sni : "", info.alpn[0] ? ", alpn " : "",
             info.alpn, who, info.peer_subject[0] ? info.peer_subject : "none", how, dates);
}
