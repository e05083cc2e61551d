/* TLS, the per-connection part: a layer in the conn's stack (layer.h) that encrypts what the
 * conn writes and decrypts what it reads, through OpenSSL. OpenSSL never touches the socket:
 * it reads and writes through our BIO, which goes to the layer below (the socket, or a PROXY
 * header layer), and tells us (WANT_READ / WANT_WRITE) which readiness to wait for; the layer's
 * wants() hands that to the conn, which turns it into loop interest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls_internal.h"

static const sk__layer_ops tls_ops;

/* ---------------------------------------------------------------- the BIO
 * OpenSSL reads and writes through this BIO, which goes to the layer below ours. (OpenSSL's
 * own socket BIO would also write with write(), which raises SIGPIPE when the peer is gone;
 * sockit promises SIGPIPE never fires: the socket layer sends with MSG_NOSIGNAL.) */

static sk__layer *bio_layer(BIO *b)
{
    return BIO_get_data(b);
}

/* A layer result (bytes, 0 at the end, -EAGAIN, -errno) the way OpenSSL wants it. */
static int bio_result(BIO *b, ssize_t n, bool reading)
{
    if (n >= 0) {
        if (n == 0 && reading)
            BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* BIO_eof(): OpenSSL tells truncation by it */
        return (int)n;
    }
    if (n == -EAGAIN) {
        if (reading)
            BIO_set_retry_read(b);
        else
            BIO_set_retry_write(b);
    }
    errno = (int)-n; /* ssl_wait_or_fail() reports a failure by it */
    return -1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = (size_t)len};
    return bio_result(b, sk__layer_write_below(bio_layer(b), &iov, 1), false);
}

static int bio_read(BIO *b, char *buf, int len)
{
    if (!buf)
        return 0;
    BIO_clear_retry_flags(b);
    return bio_result(b, sk__layer_read_below(bio_layer(b), buf, (size_t)len), true);
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = bio_layer(b)->fd;
        return bio_layer(b)->fd;
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

/* A BIO onto the layer below l (the socket is not closed with the BIO: the conn owns it). */
static BIO *bio_new(sk__layer *l)
{
    pthread_once(&bio_once, bio_method_init);
    BIO *b = bio_method ? BIO_new(bio_method) : NULL;
    if (b) {
        BIO_set_data(b, l);
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

static void tls_destroy(sk__layer *l);

static sk__tls *tls_new(sk_tls_ctx *ctx, const char *name)
{
    sk__tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->layer.ops = &tls_ops;
    t->ctx = ctx;
    t->wants = ctx->server ? SK_READABLE : SK_WRITABLE; /* wait for ClientHello, or send it */
    t->ssl = SSL_new(ctx->ssl);
    BIO *bio = t->ssl ? bio_new(&t->layer) : NULL;
    if (!bio || (name && !(t->name = strdup(name)))) {
        BIO_free(bio);
        tls_destroy(&t->layer);
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

static void tls_destroy(sk__layer *l)
{
    sk__tls *t = (sk__tls *)l;
    SSL_free(t->ssl);
    free(t->name);
    free(t);
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
        sk__tls_take_error(t->error, sizeof t->error);
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
    sk__tls_take_error(t->error, sizeof t->error);
    return SK_ERR_TLS;
}

/* ---------------------------------------------------------------- the layer */

static void tls_info(const sk__tls *t, sk_tls_info *info);

static int tls_start(sk__layer *l)
{
    sk__tls *t = (sk__tls *)l;
    ERR_clear_error();
    int ret = SSL_do_handshake(t->ssl);
    if (ret != 1) {
        int rc = ssl_wait_or_fail(t, ret, true);
        return rc == 1 ? SK_ERR_TLS : rc;
    }
    t->wants = 0;
    /* With a pin, check_pin() accepted exactly the certificate we expect. */
    t->verified = !t->ctx->insecure && SSL_get_verify_result(t->ssl) == X509_V_OK &&
                  SSL_get0_peer_certificate(t->ssl) != NULL;
    sk_loop *loop = sk_conn_loop(l->conn);
    if (sk__trace_on(loop)) {
        sk_tls_info info;
        tls_info(t, &info);
        sk__trace(loop, "tls fd=%d %s %s%s%s peer=%s %s", l->fd, info.version, info.cipher,
                  info.sni ? " sni=" : "", info.sni ? info.sni : "",
                  info.peer_subject[0] ? info.peer_subject : "(no certificate)",
                  info.verified ? "verified" : "unverified");
    }
    return 1;
}

static ssize_t tls_read(sk__layer *l, void *buf, size_t len)
{
    sk__tls *t = (sk__tls *)l;
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
        if (total) {
            /* Report the bytes now; the next call meets the same condition again. Waiting for
             * the socket is right only if that is what stopped us. */
            int err = SSL_get_error(t->ssl, n);
            t->end_behind_data = err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE;
            break;
        }
        t->end_behind_data = false;
        int rc = ssl_wait_or_fail(t, n, false);
        if (rc == 1)
            return 0;
        return rc == 0 ? -EAGAIN : rc;
    }
    t->wants = 0;
    return (ssize_t)total;
}

static ssize_t tls_write(sk__tls *t, const void *buf, size_t len)
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

/* A frame's pieces (length prefix and payload, or line and newline) go out as one record when
 * they fit: fewer records, fewer bytes, fewer packets. */
static ssize_t tls_writev(sk__layer *l, const struct iovec *iov, int iovcnt)
{
    sk__tls *t = (sk__tls *)l;
    if (iovcnt > 1) {
        uint8_t record[16384];
        size_t n = 0;
        int i = 0;
        for (; i < iovcnt && n + iov[i].iov_len <= sizeof record; i++) {
            memcpy(record + n, iov[i].iov_base, iov[i].iov_len);
            n += iov[i].iov_len;
        }
        if (i == iovcnt)
            return tls_write(t, record, n);
    }
    /* Large: the first piece now; the caller queues the rest. */
    return tls_write(t, iov[0].iov_base, iov[0].iov_len);
}

static void tls_shutdown(sk__layer *l)
{
    sk__tls *t = (sk__tls *)l;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* close_notify, TLS's own half-close; we do not wait for the peer's */
    ERR_clear_error();
    sk__layer_shutdown_below(l);
}

static unsigned tls_wants(const sk__layer *l)
{
    return ((const sk__tls *)l)->wants;
}

static bool tls_pending(const sk__layer *l)
{
    /* Decrypted bytes, or records OpenSSL has read and not yet processed (a close_notify
     * that came with the last data): the socket will not announce either. */
    const sk__tls *t = (const sk__tls *)l;
    return t->end_behind_data || SSL_has_pending(t->ssl) == 1;
}

static const sk__layer_ops tls_ops = {
    .name = "tls",
    .start = tls_start,
    .read = tls_read,
    .writev = tls_writev,
    .shutdown = tls_shutdown,
    .wants = tls_wants,
    .pending = tls_pending,
    .destroy = tls_destroy,
};

/* ---------------------------------------------------------------- the API */

SK_API int sk_tls_start(sk_conn *c, sk_tls_ctx *ctx, const char *name, uint64_t timeout_ms)
{
    if (sk__conn_find_layer(c, &tls_ops))
        return -EINVAL;
    sk__tls *t = tls_new(ctx, name);
    if (!t)
        return -ENOMEM;
    return sk__conn_push_layer(c, &t->layer, timeout_ms);
}

SK_API bool sk_tls_active(const sk_conn *c)
{
    return sk__conn_find_layer(c, &tls_ops) != NULL;
}

SK_API int sk_tls_describe(const sk_conn *c, sk_tls_info *info)
{
    const sk__layer *l = sk__conn_find_layer(c, &tls_ops);
    if (!l)
        return -EINVAL;
    tls_info((const sk__tls *)l, info);
    return 0;
}

static void tls_info(const sk__tls *t, sk_tls_info *info)
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
        sk__tls_peer_names(cert, info->peer_names, sizeof info->peer_names);
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
