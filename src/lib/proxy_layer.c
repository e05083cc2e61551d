/* The PROXY protocol as a conn layer (layer.h): the bottom layer of a stack, under TLS.
 *
 * Receiving: start() reads until sk_proxy_parse() says the header is whole. A read may bring
 * payload bytes behind the header (a client sends both at once); they stay here and are the
 * first bytes read() returns, so nothing above ever sees the header or loses a byte. Reading
 * in chunks costs one recv for most headers; peeking would cost two, and a partial header
 * would keep the socket readable. Once the header is in and those bytes are gone the layer is
 * passthrough: it adds nothing, and a bridge may splice around it. It answers the conn's
 * address questions with the header's addresses (the client, and what it connected to).
 *
 * Sending: start() writes the header (built when TCP is up, so a header for the conn's own
 * addresses knows them) before any layer above starts: a TLS handshake goes after it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

#define FIRST_READ 512 /* most headers: v1 is at most 107 bytes, v2 with a few TLVs < 512 */
#define HEADER_MAX (16 + SK_PROXY_V2_MAX_LEN)

typedef struct proxy_layer {
    sk__layer base;
    bool sending;
    bool have_header;  /* receiving: parsed */
    uint8_t *buf;      /* receiving: the header, then payload read with it; sending: the header */
    size_t len, cap;   /* bytes in buf, its size */
    size_t header_len; /* receiving: the header's part of buf */
    size_t off;        /* receiving: payload handed up so far; sending: header bytes sent */
    sk_proxy_header hdr;
    sk_addr via;             /* receiving: the proxy (the socket's peer) */
    sk_proxy_write_opts out; /* sending, without addresses: built at start */
    bool own_addresses;      /* sending: src and dst are the conn's own, read at start */
} proxy_layer;

/* ---------------------------------------------------------------- receiving */

static int recv_start(proxy_layer *p)
{
    for (;;) {
        if (p->len == p->cap) {
            size_t cap = p->cap ? HEADER_MAX : FIRST_READ;
            if (p->cap >= HEADER_MAX)
                return SK_PROXY_TOO_LONG; /* the parser refuses before this; a last guard */
            uint8_t *buf = realloc(p->buf, cap);
            if (!buf)
                return -ENOMEM;
            p->buf = buf;
            p->cap = cap;
        }
        ssize_t n = sk__layer_read_below(&p->base, p->buf + p->len, p->cap - p->len);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return n == -ECONNRESET ? SK_PROXY_TRUNCATED : (int)n;
        if (n == 0)
            return SK_PROXY_TRUNCATED; /* the peer ended before its header did */
        p->len += (size_t)n;
        int rc = sk_proxy_parse(p->buf, p->len, &p->hdr);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            p->header_len = (size_t)rc;
            p->off = p->header_len;
            p->have_header = true;
            return 1;
        }
    }
}

static ssize_t proxy_read(sk__layer *l, void *buf, size_t len)
{
    proxy_layer *p = (proxy_layer *)l;
    if (!p->sending && p->off < p->len) { /* payload that came with the header */
        size_t n = p->len - p->off < len ? p->len - p->off : len;
        memcpy(buf, p->buf + p->off, n);
        p->off += n;
        return (ssize_t)n;
    }
    return sk__layer_read_below(l, buf, len);
}

static bool proxy_pending(const sk__layer *l)
{
    const proxy_layer *p = (const proxy_layer *)l;
    return !p->sending && p->off < p->len;
}

static int proxy_addr(const sk__layer *l, bool local, sk_addr *out)
{
    const proxy_layer *p = (const proxy_layer *)l;
    const sk_addr *a = local ? &p->hdr.dst : &p->hdr.src;
    if (p->sending || !p->have_header || p->hdr.command != SK_PROXY_CMD_PROXY || a->len == 0)
        return -1; /* LOCAL (a health check) and UNKNOWN: the socket's own addresses */
    *out = *a;
    return 0;
}

/* ---------------------------------------------------------------- sending */

static int build_header(proxy_layer *p)
{
    sk_addr src, dst;
    if (p->own_addresses) {
        src.len = dst.len = sizeof src.ss;
        if (getsockname(p->base.fd, (struct sockaddr *)&src.ss, &src.len) < 0 ||
            getpeername(p->base.fd, (struct sockaddr *)&dst.ss, &dst.len) < 0)
            return -errno;
        p->out.src = &src;
        p->out.dst = &dst;
    }
    uint8_t tmp[HEADER_MAX];
    int n = sk_proxy_write(tmp, sizeof tmp, &p->out);
    p->out.src = p->out.dst = NULL;
    if (n < 0)
        return n;
    uint8_t *buf = malloc((size_t)n);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, tmp, (size_t)n);
    free(p->buf);
    p->buf = buf;
    p->len = (size_t)n;
    return 0;
}

static int send_start(proxy_layer *p)
{
    if (!p->buf) {
        int rc = build_header(p);
        if (rc < 0)
            return rc;
    }
    while (p->off < p->len) {
        struct iovec iov = {.iov_base = p->buf + p->off, .iov_len = p->len - p->off};
        ssize_t n = sk__layer_write_below(&p->base, &iov, 1);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        p->off += (size_t)n;
    }
    free(p->buf); /* sent: nothing of it is needed any more */
    p->buf = NULL;
    p->len = p->off = 0;
    return 1;
}

/* ---------------------------------------------------------------- the table */

static int proxy_start(sk__layer *l)
{
    proxy_layer *p = (proxy_layer *)l;
    return p->sending ? send_start(p) : recv_start(p);
}

static ssize_t proxy_writev(sk__layer *l, const struct iovec *iov, int iovcnt)
{
    return sk__layer_write_below(l, iov, iovcnt);
}

static void proxy_shutdown(sk__layer *l)
{
    sk__layer_shutdown_below(l);
}

static unsigned proxy_wants(const sk__layer *l)
{
    const proxy_layer *p = (const proxy_layer *)l;
    if (l->up)
        return 0;
    return p->sending ? SK_WRITABLE : SK_READABLE;
}

static bool proxy_passthrough(const sk__layer *l)
{
    return l->up && !proxy_pending(l);
}

static void proxy_destroy(sk__layer *l)
{
    proxy_layer *p = (proxy_layer *)l;
    free(p->buf);
    free(p);
}

static const sk__layer_ops proxy_ops = {
    .name = "proxy",
    .start = proxy_start,
    .read = proxy_read,
    .writev = proxy_writev,
    .shutdown = proxy_shutdown,
    .wants = proxy_wants,
    .pending = proxy_pending,
    .destroy = proxy_destroy,
    .addr = proxy_addr,
    .passthrough = proxy_passthrough,
};

/* ---------------------------------------------------------------- the API */

int sk__proxy_expect(sk_conn *c, uint64_t timeout_ms, const sk_addr *via)
{
    proxy_layer *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->base.ops = &proxy_ops;
    p->via = *via;
    return sk__conn_push_layer(c, &p->base, timeout_ms ? timeout_ms : 3000);
}

SK_API int sk_proxy_expect(sk_conn *c, uint64_t timeout_ms)
{
    sk_addr via = {.len = sizeof via.ss};
    if (getpeername(sk_conn_fd(c), (struct sockaddr *)&via.ss, &via.len) < 0)
        via.len = 0;
    return sk__proxy_expect(c, timeout_ms, &via);
}

SK_API int sk_proxy_send(sk_conn *c, const sk_proxy_write_opts *o, uint64_t timeout_ms)
{
    proxy_layer *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->base.ops = &proxy_ops;
    p->sending = true;
    p->out = *o;
    if (o->command == SK_PROXY_CMD_PROXY && !o->src && !o->dst) {
        if (o->alpn.data || o->authority.data || o->unique_id.data || o->ssl.present) {
            free(p);
            return -EINVAL;
        }
        p->own_addresses = true; /* read when TCP is up */
    } else {
        int rc = build_header(p);
        if (rc < 0) {
            free(p);
            return rc;
        }
    }
    return sk__conn_push_layer(c, &p->base, timeout_ms);
}

SK_API int sk_conn_proxy_header(const sk_conn *c, sk_proxy_header *out, sk_addr *via)
{
    const proxy_layer *p = (const proxy_layer *)sk__conn_find_layer(c, &proxy_ops);
    if (!p || p->sending || !p->have_header)
        return -ENOENT;
    if (out)
        *out = p->hdr;
    if (via)
        *via = p->via;
    return 0;
}
