/* libFuzzer target for the PROXY protocol parser and writer.
 *
 * Any bytes: the parser must not crash or read past the buffer (libFuzzer hands over an
 * exact-size copy; prefixes are copied to exact-size buffers too), must answer need-more, a
 * length inside the buffer, or one of its causes. What it accepts must also be accepted by
 * every shorter prefix as need-more (a header split across reads), by the datagram parser when
 * whole, and must survive a round trip: written back with sk_proxy_write and parsed again, it
 * gives the same fields, and writing those gives the same bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sockit/sockit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_exact(bool dgram, const uint8_t *p, size_t n, sk_proxy_header *h)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    if (n)
        memcpy(copy, p, n);
    int rc = dgram ? sk_proxy_parse_datagram(copy, n, h) : sk_proxy_parse(copy, n, h);
    free(copy);
    return rc;
}

static void check_code(int rc, size_t size, bool dgram)
{
    if (rc > 0) {
        if ((size_t)rc > size)
            abort();
        return;
    }
    if (rc == 0) {
        if (dgram)
            abort(); /* a datagram never needs more */
        return;
    }
    if (rc < SK_PROXY_CRC_MISMATCH || rc > SK_PROXY_BAD_SIGNATURE)
        abort(); /* only the parser's own causes */
    if (rc == SK_PROXY_TRUNCATED && !dgram)
        abort(); /* a stream asks for more instead */
    const char *s = sk_proxy_strerror(rc);
    if (!s || strncmp(s, "the PROXY ", 10) != 0)
        abort();
}

static void check_bytes_inside(sk_proxy_bytes b, const uint8_t *p, size_t n)
{
    if (!b.data)
        return;
    if (b.data < p || b.data > p + n || b.len > (size_t)(p + n - b.data))
        abort();
}

static bool same_bytes(sk_proxy_bytes a, sk_proxy_bytes b)
{
    if (!a.data != !b.data || a.len != b.len)
        return false;
    return a.len == 0 || memcmp(a.data, b.data, a.len) == 0;
}

static bool same_addr(const sk_addr *a, const sk_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static bool same_header(const sk_proxy_header *a, const sk_proxy_header *b)
{
    return a->version == b->version && a->command == b->command && a->transport == b->transport &&
           same_addr(&a->src, &b->src) && same_addr(&a->dst, &b->dst) &&
           same_bytes(a->alpn, b->alpn) && same_bytes(a->authority, b->authority) &&
           same_bytes(a->unique_id, b->unique_id) && a->ssl.present == b->ssl.present &&
           a->ssl.client == b->ssl.client && a->ssl.verify == b->ssl.verify &&
           same_bytes(a->ssl.version, b->ssl.version) && same_bytes(a->ssl.cn, b->ssl.cn) &&
           same_bytes(a->ssl.cipher, b->ssl.cipher) && same_bytes(a->ssl.sig_alg, b->ssl.sig_alg) &&
           same_bytes(a->ssl.key_alg, b->ssl.key_alg) && a->crc_present == b->crc_present;
}

static sk_proxy_write_opts opts_of(const sk_proxy_header *h)
{
    sk_proxy_write_opts o;
    memset(&o, 0, sizeof o);
    o.version = h->version;
    o.command = h->command;
    o.transport = h->transport;
    o.src = h->src.len ? &h->src : NULL;
    o.dst = h->dst.len ? &h->dst : NULL;
    o.alpn = h->alpn;
    o.authority = h->authority;
    o.unique_id = h->unique_id;
    o.ssl = h->ssl;
    o.crc32c = h->crc_present;
    return o;
}

static void round_trip(const sk_proxy_header *h)
{
    static const size_t cap = 8192;
    uint8_t *a = malloc(cap), *b = malloc(cap);
    if (!a || !b)
        abort();
    sk_proxy_write_opts o = opts_of(h);
    /* What the parser accepted carries at most what it read, so it can always be written. */
    int n = sk_proxy_write(a, cap, &o);
    if (n <= 0)
        abort();
    sk_proxy_header again;
    if (parse_exact(false, a, (size_t)n, &again) != n)
        abort();
    /* The pointers of `again` are into the freed copy; compare through a parse of `a`. */
    if (sk_proxy_parse(a, (size_t)n, &again) != n || !same_header(h, &again))
        abort();
    sk_proxy_write_opts o2 = opts_of(&again);
    int n2 = sk_proxy_write(b, cap, &o2);
    if (n2 != n || memcmp(a, b, (size_t)n) != 0)
        abort();
    /* one byte short of room: refused, never a partial header */
    if (sk_proxy_write(b, (size_t)n - 1, &o) != -ENOSPC)
        abort();
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_proxy_header h;
    int rc = sk_proxy_parse(data, size, &h);
    check_code(rc, size, false);
    sk_proxy_header hd;
    int rd = sk_proxy_parse_datagram(data, size, &hd);
    check_code(rd, size, true);
    if (size == 0) {
        if (rd != SK_PROXY_TRUNCATED)
            abort();
    } else if (data[0] == '\r') {
        if (rd != (rc == 0 ? SK_PROXY_TRUNCATED : rc))
            abort(); /* the same verdict, but "need more" is "truncated" */
        if (rd > 0 && !same_header(&h, &hd))
            abort();
    } else if (rd != SK_PROXY_BAD_SIGNATURE) {
        abort(); /* v1 cannot describe a datagram */
    }

    if (rc <= 0)
        return 0;
    size_t n = (size_t)rc;
    check_bytes_inside(h.alpn, data, n);
    check_bytes_inside(h.authority, data, n);
    check_bytes_inside(h.unique_id, data, n);
    check_bytes_inside(h.ssl.version, data, n);
    check_bytes_inside(h.ssl.cn, data, n);
    check_bytes_inside(h.ssl.cipher, data, n);
    check_bytes_inside(h.ssl.sig_alg, data, n);
    check_bytes_inside(h.ssl.key_alg, data, n);
    if (h.version != 1 && h.version != 2)
        abort();

    /* Split reads: the header alone gives its length; shorter prefixes ask for more. Checking
     * all of them would be quadratic, so the first few, the last and one chosen by the data. */
    sk_proxy_header p;
    if (parse_exact(false, data, n, &p) != (int)n)
        abort();
    size_t picks[20], npicks = 0;
    for (size_t k = 0; k < 16 && k < n; k++)
        picks[npicks++] = k;
    picks[npicks++] = n - 1;
    picks[npicks++] = (data[n - 1] * 31u + n) % n;
    for (size_t i = 0; i < npicks; i++)
        if (parse_exact(false, data, picks[i], &p) != 0)
            abort();

    round_trip(&h);
    return 0;
}
