/* TLS through OpenSSL: contexts, the ephemeral certificate, and the TLS transport that conn.c
 * calls through sk__transport. OpenSSL never touches the socket's blocking mode: it reads and
 * writes the non-blocking fd, and tells us (WANT_READ / WANT_WRITE) which readiness to wait
 * for; conn.c turns that into loop interest. */
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

#include "internal.h"

struct sk_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool insecure;
    unsigned char pin[32];
    bool has_pin;
    unsigned char alpn[256]; /* wire format: length-prefixed names */
    unsigned alpn_len;
};

struct sk__tls {
    SSL *ssl;
    sk_tls_ctx *ctx;
    char *name;     /* the host we verify and send as SNI */
    unsigned wants; /* readiness the last operation needs: SK_READABLE / SK_WRITABLE */
    bool verified;
    char error[256];
    char names[200]; /* the peer certificate's names, noted while verifying: OpenSSL does not
                      * keep a certificate it refused, and the error message needs them */
};

/* ---------------------------------------------------------------- errors */

/* OpenSSL's queued error as one readable phrase ("wrong version number"). */
static void take_ssl_error(char *buf, size_t len)
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
    take_ssl_error(detail, sizeof detail);
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

static void peer_names(X509 *cert, char *buf, size_t len);

/* Verification as OpenSSL does it; note the names of the certificate being checked. */
static int note_names(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    sk__tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get0_cert(store);
    if (t && cert && !t->names[0])
        peer_names(cert, t->names, sizeof t->names);
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
    if (o->ciphersuites && (o->ciphersuites[0] == '\0' ||
                            SSL_CTX_set_ciphersuites(ctx->ssl, o->ciphersuites) != 1)) {
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

/* ---------------------------------------------------------------- the socket BIO
 * OpenSSL's own socket BIO writes with write(), which raises SIGPIPE when the peer is gone (a
 * session ticket or close_notify sent to a client that already left). sockit promises SIGPIPE
 * never fires, so OpenSSL gets this BIO instead: send() with MSG_NOSIGNAL, recv(). */

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    ssize_t n;
    BIO_clear_retry_flags(b);
    do
        n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    ssize_t n;
    if (!buf)
        return 0;
    BIO_clear_retry_flags(b);
    do
        n = recv(bio_fd(b), buf, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    else if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* BIO_eof(): OpenSSL tells truncation by it */
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = bio_fd(b);
        return bio_fd(b);
    case BIO_CTRL_EOF: return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP: return 1;
    default: return 0;
    }
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "sockit socket");
    if (m && (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
              !BIO_meth_set_ctrl(m, bio_ctrl))) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m;
}

/* A BIO on fd (not closed with the BIO: the conn owns it), or NULL. */
static BIO *bio_new(int fd)
{
    pthread_once(&bio_once, bio_method_init);
    BIO *b = bio_method ? BIO_new(bio_method) : NULL;
    if (b) {
        BIO_set_data(b, (void *)(intptr_t)fd);
        BIO_set_init(b, 1);
    }
    return b;
}

/* ---------------------------------------------------------------- per-connection state */

static bool is_ip_literal(const char *name)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
}

sk__tls *sk__tls_new(sk_tls_ctx *ctx, int fd, const char *name)
{
    sk__tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ctx = ctx;
    t->wants = ctx->server ? SK_READABLE : SK_WRITABLE; /* wait for ClientHello, or send it */
    t->ssl = SSL_new(ctx->ssl);
    BIO *bio = t->ssl ? bio_new(fd) : NULL;
    if (!bio || (name && !(t->name = strdup(name)))) {
        BIO_free(bio);
        sk__tls_free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, bio, bio); /* the SSL owns the BIO from here */
    SSL_set_app_data(t->ssl, t);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
        return t;
    }
    SSL_set_connect_state(t->ssl);
    if (name && !is_ip_literal(name))
        SSL_set_tlsext_host_name(t->ssl, name); /* SNI carries names only, never addresses */
    if (name && !ctx->insecure && !ctx->has_pin) {
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        if (is_ip_literal(name))
            X509_VERIFY_PARAM_set1_ip_asc(param, name);
        else
            SSL_set1_host(t->ssl, name);
    }
    return t;
}

void sk__tls_free(sk__tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t->name);
    free(t);
}

/* The peer certificate's DNS and IP names, for "the certificate is for ..." messages. */
static void peer_names(X509 *cert, char *buf, size_t len)
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

static void explain_failure(sk__tls *t, int ssl_error)
{
    if (t->error[0]) { /* check_pin() already said why */
        ERR_clear_error();
        return;
    }
    long vr = SSL_get_verify_result(t->ssl);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        snprintf(t->error, sizeof t->error, "the certificate is for %s, not %s",
                 t->names[0] ? t->names : "no name", t->name ? t->name : "this host");
    } else if (vr != X509_V_OK) {
        snprintf(t->error, sizeof t->error, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (ssl_error == SSL_ERROR_ZERO_RETURN ||
               (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        snprintf(t->error, sizeof t->error, "the peer closed the connection during the handshake");
    } else {
        take_ssl_error(t->error, sizeof t->error);
        return;
    }
    ERR_clear_error();
}

/* Turn an SSL_get_error() result into 0 (wait: t->wants says for what) or a failure code. */
static int ssl_wait_or_fail(sk__tls *t, int ret, bool handshaking)
{
    int e = SSL_get_error(t->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ: t->wants = SK_READABLE; return 0;
    case SSL_ERROR_WANT_WRITE: t->wants = SK_WRITABLE; return 0;
    default: break;
    }
    if (e == SSL_ERROR_ZERO_RETURN && !handshaking) {
        /* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a TCP FIN without one. Without
         * read-ahead OpenSSL reads no further than a close_notify record, so our BIO saw the
         * socket's end only when the FIN came first: then what the peer sent may be cut short. */
        return BIO_eof(SSL_get_rbio(t->ssl)) ? SK_ERR_TLS_TRUNCATED : 1;
    }
    int saved = errno;
    if (handshaking) {
        explain_failure(t, e);
        return SSL_get_verify_result(t->ssl) != X509_V_OK ? SK_ERR_TLS_VERIFY : SK_ERR_TLS;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        ERR_clear_error();
        /* The TCP connection ended (or failed) without close_notify: data may be missing. */
        return saved && saved != EPIPE ? -saved : SK_ERR_TLS_TRUNCATED;
    }
    if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return SK_ERR_TLS_TRUNCATED;
    }
    take_ssl_error(t->error, sizeof t->error);
    return SK_ERR_TLS;
}

int sk__tls_handshake(sk__tls *t)
{
    ERR_clear_error();
    int ret = SSL_do_handshake(t->ssl);
    if (ret == 1) {
        t->wants = 0;
        /* With a pin, check_pin() accepted exactly the certificate we expect. */
        t->verified = !t->ctx->insecure && SSL_get_verify_result(t->ssl) == X509_V_OK &&
                      SSL_get0_peer_certificate(t->ssl) != NULL;
        return 1;
    }
    int rc = ssl_wait_or_fail(t, ret, true);
    return rc == 1 ? SK_ERR_TLS : rc;
}

ssize_t sk__tls_read(sk__tls *t, void *buf, size_t len)
{
    /* Fill the buffer with as many records as are there, so one wakeup carries up to 64 KiB. */
    size_t total = 0;
    while (total < len) {
        ERR_clear_error();
        int n = SSL_read(t->ssl, (char *)buf + total,
                         (int)(len - total > INT32_MAX ? INT32_MAX : len - total));
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (total)
            break; /* report the bytes now; the same condition shows up on the next call */
        int rc = ssl_wait_or_fail(t, n, false);
        if (rc == 1)
            return 0;
        return rc == 0 ? -EAGAIN : rc;
    }
    t->wants = 0;
    return (ssize_t)total;
}

ssize_t sk__tls_write(sk__tls *t, const void *buf, size_t len)
{
    ERR_clear_error();
    int n = SSL_write(t->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0) {
        t->wants = 0;
        return n;
    }
    int rc = ssl_wait_or_fail(t, n, false);
    return rc == 0 ? -EAGAIN : rc == 1 ? -EPIPE : rc;
}

void sk__tls_shutdown(sk__tls *t)
{
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* sends close_notify; we do not wait for the peer's here */
    ERR_clear_error();
}

bool sk__tls_pending(const sk__tls *t)
{
    return SSL_pending(t->ssl) > 0;
}

unsigned sk__tls_wants(const sk__tls *t)
{
    return t->wants;
}

void sk__tls_info(const sk__tls *t, sk_tls_info *info)
{
    memset(info, 0, sizeof *info);
    info->version = SSL_get_version(t->ssl);
    info->cipher = SSL_get_cipher_name(t->ssl);
    info->sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    const unsigned char *alpn;
    unsigned alpn_len;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    snprintf(info->alpn, sizeof info->alpn, "%.*s", (int)alpn_len, alpn ? (const char *)alpn : "");
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (cert) {
        X509_NAME_oneline(X509_get_subject_name(cert), info->peer_subject,
                          sizeof info->peer_subject);
        peer_names(cert, info->peer_names, sizeof info->peer_names);
        info->peer_expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0 ||
                             X509_cmp_current_time(X509_get0_notBefore(cert)) > 0;
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
            strftime(info->peer_not_after, sizeof info->peer_not_after, "%Y-%m-%d", &tm);
    }
    info->verified = t->verified;
    info->pinned = t->verified && t->ctx->has_pin;
    snprintf(info->error, sizeof info->error, "%s", t->error);
}
