/* The binary PROXY v2 header: parsing with its TLVs, writing, and CRC32C. Pure functions on
 * buffers; proxy.c decides that a buffer is v2 and calls in here. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "internal.h"
#include "proxy_internal.h"

const uint8_t sk__proxy_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
    FIXED = 16,   /* signature, version and command, family, length */
    TLV_HEAD = 3, /* type, 16-bit length */
    UNIX_PATH = 108,
    UNIQUE_ID_MAX = 128,
    SSL_HEAD = 5, /* client byte, 32-bit verify */
};

enum {
    TLV_ALPN = 0x01,
    TLV_AUTHORITY = 0x02,
    TLV_CRC32C = 0x03,
    TLV_NOOP = 0x04,
    TLV_UNIQUE_ID = 0x05,
    TLV_SSL = 0x20,
    TLV_SSL_VERSION = 0x21,
    TLV_SSL_CN = 0x22,
    TLV_SSL_CIPHER = 0x23,
    TLV_SSL_SIG_ALG = 0x24,
    TLV_SSL_KEY_ALG = 0x25,
    TLV_NETNS = 0x30,
};

/* ---- CRC32C ---- */

/* CRC32C's reflected polynomial 0x82F63B78 applied to each value of 4 bits: two lookups a byte
 * keep the table at 64 bytes, and a header is at most 4 KiB, checked once per connection. */
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

/* crc is the running register (started at all ones, inverted at the end by the caller). */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
    }
    return crc;
}

SK_API uint32_t sk_proxy_crc32c(const void *data, size_t len)
{
    return ~crc_update(0xFFFFFFFFu, data, len);
}

/* The header's checksum with the 4 bytes at p[at..at+4) read as zeros, as the spec defines it;
 * computed around the field so the caller's buffer stays untouched (it is const). */
static uint32_t header_crc(const uint8_t *p, size_t total, size_t at)
{
    static const uint8_t zeros[4] = {0, 0, 0, 0};
    uint32_t crc = crc_update(0xFFFFFFFFu, p, at);
    crc = crc_update(crc, zeros, 4);
    crc = crc_update(crc, p + at + 4, total - at - 4);
    return ~crc;
}

/* ---- parsing ---- */

static size_t be16(const uint8_t *p)
{
    return (size_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The address block's size for a family/transport byte, or -1 for a byte the spec does not
 * list: those "must be rejected as invalid by receivers". */
static int address_size(uint8_t fam)
{
    switch (fam) {
    case 0x00: return 0;
    case 0x11:
    case 0x12: return 2 * 4 + 2 * 2;
    case 0x21:
    case 0x22: return 2 * 16 + 2 * 2;
    case 0x31:
    case 0x32: return 2 * UNIX_PATH;
    }
    return -1;
}

static void set_inet(sk_addr *a, const uint8_t *ip, const uint8_t *port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    memcpy(&sin.sin_port, port, 2); /* both in network order */
    memcpy(&sin.sin_addr, ip, 4);
    memset(a, 0, sizeof *a);
    memcpy(&a->ss, &sin, sizeof sin);
    a->len = sizeof sin;
}

static void set_inet6(sk_addr *a, const uint8_t *ip, const uint8_t *port)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    memcpy(&sin6.sin6_port, port, 2);
    memcpy(&sin6.sin6_addr, ip, 16);
    memset(a, 0, sizeof *a);
    memcpy(&a->ss, &sin6, sizeof sin6);
    a->len = sizeof sin6;
}

/* A 108-byte NUL-padded path, to the length the kernel would report: a pathname with its NUL,
 * an abstract name (leading NUL) to its last non-NUL byte, an all-zero one as unnamed. */
static void set_unix(sk_addr *a, const uint8_t *w)
{
    struct sockaddr_un sun;
    size_t base = offsetof(struct sockaddr_un, sun_path), n;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (w[0] != 0) {
        n = strnlen((const char *)w, UNIX_PATH);
        memcpy(sun.sun_path, w, n);
        if (n < UNIX_PATH)
            n++; /* the terminating NUL counts, as in sk_addr_from_unix */
    } else {
        n = UNIX_PATH;
        while (n > 0 && w[n - 1] == 0)
            n--;
        memcpy(sun.sun_path, w, n);
    }
    memset(a, 0, sizeof *a);
    memcpy(&a->ss, &sun, sizeof sun);
    a->len = (socklen_t)(base + n);
}

/* A TLV whose type may appear once: a second one is refused, since a receiver that kept the
 * first and a proxy that meant the second would disagree about the connection. */
static int take_once(sk_proxy_bytes *slot, const uint8_t *v, size_t n)
{
    if (slot->data)
        return SK_PROXY_BAD_TLV;
    slot->data = v;
    slot->len = n;
    return 0;
}

static int parse_ssl(const uint8_t *v, size_t n, sk_proxy_ssl *ssl)
{
    if (ssl->present || n < SSL_HEAD)
        return SK_PROXY_BAD_TLV;
    ssl->present = true;
    ssl->client = v[0];
    ssl->verify = be32(v + 1);
    size_t off = SSL_HEAD;
    while (off < n) {
        if (n - off < TLV_HEAD)
            return SK_PROXY_BAD_TLV;
        size_t sl = be16(v + off + 1);
        const uint8_t *sv = v + off + TLV_HEAD;
        if (sl > n - off - TLV_HEAD)
            return SK_PROXY_BAD_TLV; /* a sub-TLV may not run past its SSL TLV */
        int rc = 0;
        switch (v[off]) {
        case TLV_SSL_VERSION: rc = take_once(&ssl->version, sv, sl); break;
        case TLV_SSL_CN: rc = take_once(&ssl->cn, sv, sl); break;
        case TLV_SSL_CIPHER: rc = take_once(&ssl->cipher, sv, sl); break;
        case TLV_SSL_SIG_ALG: rc = take_once(&ssl->sig_alg, sv, sl); break;
        case TLV_SSL_KEY_ALG: rc = take_once(&ssl->key_alg, sv, sl); break;
        default: break; /* GROUP, SIG_SCHEME, CLIENT_CERT, future ones: not needed here */
        }
        if (rc < 0)
            return rc;
        off += TLV_HEAD + sl;
    }
    return 0;
}

/* The TLVs in p[off..total). */
static int parse_tlvs(const uint8_t *p, size_t off, size_t total, sk_proxy_header *h)
{
    size_t crc_at = 0; /* where the CRC32C value is, 0 while none was seen */
    while (off < total) {
        if (total - off < TLV_HEAD)
            return SK_PROXY_BAD_TLV;
        size_t n = be16(p + off + 1);
        const uint8_t *v = p + off + TLV_HEAD;
        if (n > total - off - TLV_HEAD)
            return SK_PROXY_BAD_TLV;
        int rc = 0;
        switch (p[off]) {
        case TLV_ALPN: rc = take_once(&h->alpn, v, n); break;
        case TLV_AUTHORITY: rc = take_once(&h->authority, v, n); break;
        case TLV_CRC32C:
            if (n != 4 || crc_at)
                return SK_PROXY_BAD_TLV;
            crc_at = off + TLV_HEAD;
            break;
        case TLV_UNIQUE_ID:
            if (n > UNIQUE_ID_MAX)
                return SK_PROXY_BAD_TLV;
            rc = take_once(&h->unique_id, v, n);
            break;
        case TLV_SSL: rc = parse_ssl(v, n, &h->ssl); break;
        case TLV_NOOP:  /* padding, by definition ignored */
        case TLV_NETNS: /* a namespace of the proxy's host means nothing here */
        default: break; /* the spec lets a receiver skip what it does not know */
        }
        if (rc < 0)
            return rc;
        off += TLV_HEAD + n;
    }
    if (crc_at) {
        if (header_crc(p, total, crc_at) != be32(p + crc_at))
            return SK_PROXY_CRC_MISMATCH;
        h->crc_present = true;
    }
    return 0;
}

int sk__proxy_parse_v2(const uint8_t *p, size_t len, sk_proxy_header *out)
{
    /* Each fixed byte is judged as soon as it is in, so that a stream that is not a header
     * fails without waiting for one that never comes. */
    if (len < sizeof sk__proxy_v2_sig + 1)
        return 0;
    unsigned version = p[12] >> 4, command = p[12] & 15;
    if (version != 2)
        return SK_PROXY_BAD_VERSION;
    if (command != SK_PROXY_CMD_LOCAL && command != SK_PROXY_CMD_PROXY)
        return SK_PROXY_BAD_COMMAND;
    if (len < 14)
        return 0;
    uint8_t fam = p[13];
    int asize = address_size(fam);
    if (asize < 0)
        return SK_PROXY_BAD_FAMILY;
    if (len < FIXED)
        return 0;
    size_t body = be16(p + 14);
    if (body > SK_PROXY_V2_MAX_LEN)
        return SK_PROXY_TOO_LONG;
    bool local = command == SK_PROXY_CMD_LOCAL;
    if (!local && body < (size_t)asize)
        return SK_PROXY_BAD_ADDRESS;
    size_t total = FIXED + body;
    if (len < total)
        return 0;

    sk_proxy_header h;
    memset(&h, 0, sizeof h);
    h.version = 2;
    h.command = local ? SK_PROXY_CMD_LOCAL : SK_PROXY_CMD_PROXY;
    h.transport = SK_PROXY_UNSPEC;
    /* LOCAL: the addresses (some senders put dummy ones there) and the family are ignored, as
     * the spec says, but they still come before the TLVs. A LOCAL block too short for its
     * family holds no addresses and so no TLVs either: it is skipped whole. */
    size_t tlvs = FIXED + ((size_t)asize <= body ? (size_t)asize : body);
    if (!local && asize > 0) {
        const uint8_t *a = p + FIXED;
        h.transport = (sk_proxy_transport)(fam & 15);
        switch (fam >> 4) {
        case 1:
            set_inet(&h.src, a, a + 8);
            set_inet(&h.dst, a + 4, a + 10);
            break;
        case 2:
            set_inet6(&h.src, a, a + 32);
            set_inet6(&h.dst, a + 16, a + 34);
            break;
        case 3:
            set_unix(&h.src, a);
            set_unix(&h.dst, a + UNIX_PATH);
            break;
        }
    }
    int rc = parse_tlvs(p, tlvs, total, &h);
    if (rc < 0)
        return rc;
    *out = h;
    return (int)total;
}

/* ---- writing ---- */

static uint8_t *put_tlv(uint8_t *w, uint8_t type, const uint8_t *v, size_t n)
{
    w[0] = type;
    w[1] = (uint8_t)(n >> 8);
    w[2] = (uint8_t)n;
    if (n)
        memcpy(w + TLV_HEAD, v, n);
    return w + TLV_HEAD + n;
}

/* The bytes a TLV adds when present; lengths are capped first so that the sum cannot wrap. */
static size_t tlv_size(const sk_proxy_bytes *b)
{
    return b->data ? TLV_HEAD + b->len : 0;
}

static const sk_proxy_bytes *ssl_parts(const sk_proxy_ssl *s, size_t i, uint8_t *type)
{
    static const uint8_t types[] = {TLV_SSL_VERSION, TLV_SSL_CN, TLV_SSL_CIPHER, TLV_SSL_SIG_ALG,
                                    TLV_SSL_KEY_ALG};
    const sk_proxy_bytes *parts[] = {&s->version, &s->cn, &s->cipher, &s->sig_alg, &s->key_alg};
    if (i >= sizeof types)
        return NULL;
    *type = types[i];
    return parts[i];
}

static void put_port(uint8_t *w, const void *port_be)
{
    memcpy(w, port_be, 2);
}

int sk__proxy_write_v2(uint8_t *buf, size_t cap, const sk_proxy_write_opts *o, const sk_addr *src,
                       const sk_addr *dst)
{
    const sk_proxy_bytes *tops[] = {&o->alpn, &o->authority, &o->unique_id};
    static const uint8_t top_types[] = {TLV_ALPN, TLV_AUTHORITY, TLV_UNIQUE_ID};
    size_t max = SK_PROXY_V2_MAX_LEN;
    for (size_t i = 0; i < 3; i++)
        if (tops[i]->data && tops[i]->len > max)
            return -EINVAL;
    if (o->unique_id.data && o->unique_id.len > UNIQUE_ID_MAX)
        return -EINVAL;

    int family = src ? src->ss.ss_family : AF_UNSPEC;
    unsigned transport = o->transport == SK_PROXY_UNSPEC ? SK_PROXY_STREAM : o->transport;
    uint8_t fam = family == AF_INET    ? (uint8_t)(0x10 | transport)
                  : family == AF_INET6 ? (uint8_t)(0x20 | transport)
                  : family == AF_UNIX  ? (uint8_t)(0x30 | transport)
                                       : 0x00;
    size_t body = (size_t)address_size(fam);
    for (size_t i = 0; i < 3; i++)
        body += tlv_size(tops[i]);
    size_t ssl_len = 0;
    if (o->ssl.present) {
        ssl_len = SSL_HEAD;
        uint8_t type;
        const sk_proxy_bytes *b;
        for (size_t i = 0; (b = ssl_parts(&o->ssl, i, &type)) != NULL; i++) {
            if (b->data && b->len > max)
                return -EINVAL;
            ssl_len += tlv_size(b);
        }
        if (ssl_len > max)
            return -EINVAL;
        body += TLV_HEAD + ssl_len;
    }
    if (o->crc32c)
        body += TLV_HEAD + 4;
    if (body > max)
        return -EINVAL;
    size_t total = FIXED + body;
    if (total > cap)
        return -ENOSPC;

    uint8_t *w = buf;
    memcpy(w, sk__proxy_v2_sig, sizeof sk__proxy_v2_sig);
    w[12] = (uint8_t)(0x20 | o->command);
    w[13] = fam;
    w[14] = (uint8_t)(body >> 8);
    w[15] = (uint8_t)body;
    w += FIXED;
    if (family == AF_INET) {
        const struct sockaddr_in *s = (const void *)&src->ss, *d = (const void *)&dst->ss;
        memcpy(w, &s->sin_addr, 4);
        memcpy(w + 4, &d->sin_addr, 4);
        put_port(w + 8, &s->sin_port);
        put_port(w + 10, &d->sin_port);
    } else if (family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)&src->ss, *d = (const void *)&dst->ss;
        memcpy(w, &s->sin6_addr, 16);
        memcpy(w + 16, &d->sin6_addr, 16);
        put_port(w + 32, &s->sin6_port);
        put_port(w + 34, &d->sin6_port);
    } else if (family == AF_UNIX) {
        /* The path's bytes as the address holds them (NUL included for a pathname, none for
         * an abstract name), padded with NULs to 108. */
        const sk_addr *ends[2] = {src, dst};
        size_t base = offsetof(struct sockaddr_un, sun_path);
        for (int e = 0; e < 2; e++) {
            const struct sockaddr_un *u = (const void *)&ends[e]->ss;
            size_t n = ends[e]->len > base ? ends[e]->len - base : 0;
            if (n > UNIX_PATH)
                n = UNIX_PATH;
            memset(w + e * UNIX_PATH, 0, UNIX_PATH);
            memcpy(w + e * UNIX_PATH, u->sun_path, n);
        }
    }
    w += address_size(fam);
    for (size_t i = 0; i < 3; i++)
        if (tops[i]->data)
            w = put_tlv(w, top_types[i], tops[i]->data, tops[i]->len);
    if (o->ssl.present) {
        w[0] = TLV_SSL;
        w[1] = (uint8_t)(ssl_len >> 8);
        w[2] = (uint8_t)ssl_len;
        w[3] = o->ssl.client;
        w[4] = (uint8_t)(o->ssl.verify >> 24);
        w[5] = (uint8_t)(o->ssl.verify >> 16);
        w[6] = (uint8_t)(o->ssl.verify >> 8);
        w[7] = (uint8_t)o->ssl.verify;
        w += TLV_HEAD + SSL_HEAD;
        uint8_t type;
        const sk_proxy_bytes *b;
        for (size_t i = 0; (b = ssl_parts(&o->ssl, i, &type)) != NULL; i++)
            if (b->data)
                w = put_tlv(w, type, b->data, b->len);
    }
    if (o->crc32c) {
        /* Last, so that it covers every other byte; the field is zero while computing. */
        static const uint8_t zeros[4] = {0, 0, 0, 0};
        uint8_t *field = put_tlv(w, TLV_CRC32C, zeros, 4) - 4;
        uint32_t crc = sk_proxy_crc32c(buf, total);
        field[0] = (uint8_t)(crc >> 24);
        field[1] = (uint8_t)(crc >> 16);
        field[2] = (uint8_t)(crc >> 8);
        field[3] = (uint8_t)crc;
    }
    return (int)total;
}
