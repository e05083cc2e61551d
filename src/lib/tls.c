/* TLS through OpenSSL, the shared part: contexts (files, trust, protocol versions, ciphers,
 * ALPN, pins), the ephemeral certificate and the certificate checks made during handshakes.
 * The per-connection part, a layer in the conn's stack, is tls_conn.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls_internal.h"

/* ---------------------------------------------------------------- errors */

/* OpenSSL's queued error as one readable phrase ("wrong version number"). */
void sk__tls_take_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", reason ? reason : "handshake failed");
    ERR_clear_error();
}

/* err = the sentence, then OpenSSL's reason in parentheses. */
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    char detail[160], head[256];
    sk__tls_take_error(detail, sizeof detail);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    if (err && errlen)
        snprintf(err, errlen, "%s (%s)", head, detail);
}

/* ---------------------------------------------------------------- the ephemeral certificate */

/* 128 bits from OpenSSL's RNG. rand(), never seeded, gave every run the same serial for the same
 * issuer (CN=localhost), and clients that remember certificates refuse a second one with the
 * same issuer and serial. A BIGNUM is never negative, so the INTEGER is positive. */
static bool set_random_serial(X509 *cert)
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return false;
    BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
    bool ok = bn && !BN_is_zero(bn) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    return ok;
}

static int add_self_signed(SSL_CTX *ssl, char *err, size_t errlen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    int rc = -ENOMEM;
    if (!key || !cert || !set_random_serial(cert))
        goto out;
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    X509_set_pubkey(cert, key);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *san =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    if (!san || !X509_add_ext(cert, san, -1)) {
        X509_EXTENSION_free(san);
        goto out;
    }
    X509_EXTENSION_free(san);
    if (!X509_sign(cert, key, EVP_sha256()) || SSL_CTX_use_certificate(ssl, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ssl, key) != 1)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        set_err(err, errlen, "%s", "cannot make an ephemeral certificate");
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* ---------------------------------------------------------------- contexts */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "sha256:AB:CD:..." or plain hex, 32 bytes. */
static int parse_pin(const char *text, unsigned char out[32])
{
    if (strncmp(text, "sha256:", 7) == 0)
        text += 7;
    size_t nibbles = 0;
    for (const char *p = text; *p; p++) {
        if (*p == ':')
            continue;
        int v = hex_value(*p);
        if (v < 0 || nibbles == 64)
            return -EINVAL;
        if (nibbles % 2 == 0)
            out[nibbles / 2] = (unsigned char)(v << 4);
        else
            out[nibbles / 2] |= (unsigned char)v;
        nibbles++;
    }
    return nibbles == 64 ? 0 : -EINVAL;
}

static int parse_alpn(sk_tls_ctx *ctx, const char *list)
{
    unsigned len = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || len + 1 + n > sizeof ctx->alpn)
            return -EINVAL;
        ctx->alpn[len++] = (unsigned char)n;
        memcpy(ctx->alpn + len, p, n);
        len += (unsigned)n;
        p += n + (p[n] == ',');
    }
    ctx->alpn_len = len;
    return len ? 0 : -EINVAL;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    sk_tls_ctx *ctx = arg;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, ctx->alpn, ctx->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* Verification as OpenSSL does it; note the names of the certificate being checked. */
static int note_names(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    sk__tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get0_cert(store);
    if (t && cert && !t->names[0])
        sk__tls_peer_names(cert, t->names, sizeof t->names);
    return ok;
}

static void format_digest(const X509 *cert, char *buf, size_t len);

/* With a pin, the chain does not matter, only the server's own certificate: compare it here,
 * during the handshake, so a mismatch ends it with an alert before any data is sent. */
static int check_pin(int ok, X509_STORE_CTX *store)
{
    if (X509_STORE_CTX_get_error_depth(store) != 0)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    sk__tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (t && cert && X509_digest(cert, EVP_sha256(), md, &n) && n == 32 &&
        memcmp(md, t->ctx->pin, 32) == 0) {
        X509_STORE_CTX_set_error(store, X509_V_OK); /* self-signed or expired: the pin decides */
        return 1;
    }
    if (t) {
        char got[128] = "none";
        if (cert)
            format_digest(cert, got, sizeof got);
        snprintf(t->error, sizeof t->error, "the certificate does not match the pin (it is %s)",
                 got);
    }
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
    return 0;
}

static int load_files(sk_tls_ctx *ctx, const sk_tls_options *o, char *err, size_t errlen)
{
    if (o->cert_file && SSL_CTX_use_certificate_chain_file(ctx->ssl, o->cert_file) != 1) {
        set_err(err, errlen, "cannot load the certificate %s: check the path and that it is PEM",
                o->cert_file);
        return -EINVAL;
    }
    const char *key = o->key_file ? o->key_file : o->cert_file;
    if (key && SSL_CTX_use_PrivateKey_file(ctx->ssl, key, SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, "cannot load the private key %s: check the path and that it is PEM",
                key);
        return -EINVAL;
    }
    if (key && SSL_CTX_check_private_key(ctx->ssl) != 1) {
        set_err(err, errlen, "the key %s does not match the certificate", key);
        return -EINVAL;
    }
    if (o->ca_file && SSL_CTX_load_verify_locations(ctx->ssl, o->ca_file, NULL) != 1) {
        set_err(err, errlen, "cannot load the CA file %s: check the path and that it is PEM",
                o->ca_file);
        return -EINVAL;
    }
    return 0;
}

/* TLS 1.2 suites by default: forward secrecy (ECDHE) and AEAD only, so no static-RSA key
 * exchange and no CBC (LUCKY13, BEAST-style padding oracles). Every TLS 1.3 suite is already
 * both, so OpenSSL's TLS 1.3 default stays. */
static const char default_ciphers[] = "ECDHE+AESGCM:ECDHE+CHACHA20";

/* Protocol versions, cipher choice and renegotiation: the parts testssl.sh grades. */
static int configure_protocol(sk_tls_ctx *ctx, const sk_tls_options *o, char *err, size_t errlen)
{
    int min = TLS1_2_VERSION;
    if (o->min_version && strcmp(o->min_version, "1.3") == 0)
        min = TLS1_3_VERSION;
    else if (o->min_version && strcmp(o->min_version, "1.2") != 0) {
        snprintf(err, errlen, "unsupported minimum TLS version '%s' (write 1.2 or 1.3)",
                 o->min_version);
        return -EINVAL;
    }
    SSL_CTX_set_min_proto_version(ctx->ssl, min);
    const char *ciphers = o->ciphers ? o->ciphers : default_ciphers;
    if (SSL_CTX_set_cipher_list(ctx->ssl, ciphers) != 1) {
        ERR_clear_error();
        snprintf(err, errlen,
                 "no TLS 1.2 cipher in '%s' is available (write OpenSSL names separated by "
                 "colons, as 'openssl ciphers' lists them)",
                 ciphers);
        return -EINVAL;
    }
    if (o->ciphersuites &&
        (o->ciphersuites[0] == '\0' || SSL_CTX_set_ciphersuites(ctx->ssl, o->ciphersuites) != 1)) {
        ERR_clear_error();
        snprintf(err, errlen,
                 "bad TLS 1.3 cipher suite list '%s' (write names such as "
                 "TLS_AES_128_GCM_SHA256 separated by colons)",
                 o->ciphersuites);
        return -EINVAL;
    }
    /* The server's order decides, so a client cannot talk it down to its weakest suite; no
     * renegotiation, which TLS 1.3 dropped and which lets a client make the server redo the
     * expensive part of a handshake at will. */
    SSL_CTX_set_options(ctx->ssl, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    return 0;
}

static int configure(sk_tls_ctx *ctx, const sk_tls_options *o, char *err, size_t errlen)
{
    int rc = configure_protocol(ctx, o, err, errlen);
    if (rc < 0)
        return rc;
    /* A FIN without close_notify is an end (reported as SK_ERR_TLS_TRUNCATED by the read), not
     * a fatal error: the SSL stays usable, so what we still owe the peer can be sent. */
    SSL_CTX_set_options(ctx->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Our write queue may move (realloc) between a WANT_WRITE and the retry, and a write may
     * complete in part: conn.c keeps the unwritten rest queued. */
    SSL_CTX_set_mode(ctx->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                   SSL_MODE_RELEASE_BUFFERS);
    rc = load_files(ctx, o, err, errlen);
    if (rc < 0)
        return rc;
    if (o->server && o->self_signed && !o->cert_file &&
        (rc = add_self_signed(ctx->ssl, err, errlen)))
        return rc;
    if (o->server && !o->cert_file && !o->self_signed) {
        snprintf(err, errlen, "a TLS server needs a certificate and key (or a self-signed one)");
        return -EINVAL;
    }
    if (o->alpn && parse_alpn(ctx, o->alpn) < 0) {
        snprintf(err, errlen, "bad ALPN list '%s' (write names separated by commas: h2,http/1.1)",
                 o->alpn);
        return -EINVAL;
    }
    if (o->pin && parse_pin(o->pin, ctx->pin) < 0) {
        snprintf(err, errlen,
                 "bad pin '%s' (write sha256: and 64 hex digits, as 'sockit serve' "
                 "prints them)",
                 o->pin);
        return -EINVAL;
    }
    ctx->has_pin = o->pin != NULL;
    if (o->server) {
        if (o->ca_file) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(ctx->ssl, names);
            SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
        if (ctx->alpn_len)
            SSL_CTX_set_alpn_select_cb(ctx->ssl, select_alpn, ctx);
        return 0;
    }
    if (ctx->alpn_len && SSL_CTX_set_alpn_protos(ctx->ssl, ctx->alpn, ctx->alpn_len) != 0)
        return -ENOMEM;
    if (!o->ca_file && SSL_CTX_set_default_verify_paths(ctx->ssl) != 1)
        return -EINVAL;
    if (o->insecure)
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
    else if (ctx->has_pin)
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, check_pin);
    else
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, note_names);
    ctx->insecure = o->insecure;
    return 0;
}

SK_API int sk_tls_ctx_new(const sk_tls_options *opts, sk_tls_ctx **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    sk_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -ENOMEM;
    ctx->server = opts->server;
    ctx->ssl = SSL_CTX_new(opts->server ? TLS_server_method() : TLS_client_method());
    if (!ctx->ssl) {
        free(ctx);
        set_err(err, errlen, "%s", "cannot create a TLS context");
        return -ENOMEM;
    }
    int rc = configure(ctx, opts, err, errlen);
    if (rc < 0) {
        sk_tls_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

SK_API void sk_tls_ctx_free(sk_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

static void format_digest(const X509 *cert, char *buf, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    X509_digest(cert, EVP_sha256(), md, &n);
    size_t pos = (size_t)snprintf(buf, len, "sha256:");
    for (unsigned i = 0; i < n && pos + 3 < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, i ? ":%02X" : "%02X", md[i]);
}

struct x509_st *sk__tls_ctx_cert(const sk_tls_ctx *ctx)
{
    return SSL_CTX_get0_certificate(ctx->ssl);
}

SK_API int sk_tls_ctx_fingerprint(const sk_tls_ctx *ctx, char *buf, size_t len)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx->ssl);
    if (!cert)
        return -ENOENT;
    format_digest(cert, buf, len);
    return 0;
}

/* The peer certificate's DNS and IP names, for "the certificate is for ..." messages. */
void sk__tls_peer_names(X509 *cert, char *buf, size_t len)
{
    buf[0] = '\0';
    GENERAL_NAMES *names = cert ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    size_t pos = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[INET6_ADDRSTRLEN] = "";
        if (g->type == GEN_DNS) {
            snprintf(one, sizeof one, "%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            int n = ASN1_STRING_length(g->d.iPAddress);
            inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress), one,
                      sizeof one);
        }
        if (one[0] && pos < len)
            pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", pos ? ", " : "", one);
    }
    GENERAL_NAMES_free(names);
}
