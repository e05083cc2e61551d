/* sk_proxy_parse, sk_proxy_parse_datagram, sk_proxy_write: the PROXY protocol header. Every
 * buffer handed to the parser is a heap copy of exactly len bytes, so a read past the end shows
 * up under AddressSanitizer. The v2 headers for the parser's tests are built by hand here, not
 * by sk_proxy_write, so that a bug shared by both sides cannot hide itself. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "check.h"

/* The copy stays alive until the next parse, because the TLV values in h point into it (as
 * they point into the caller's buffer in real use). */
static void *last_copy;

static int parse_copy(bool dgram, const void *buf, size_t len, sk_proxy_header *h)
{
    free(last_copy);
    last_copy = malloc(len ? len : 1);
    if (!last_copy)
        abort();
    if (len)
        memcpy(last_copy, buf, len);
    memset(h, 0xa5, sizeof *h);
    return dgram ? sk_proxy_parse_datagram(last_copy, len, h) : sk_proxy_parse(last_copy, len, h);
}

static int parse(const void *buf, size_t len, sk_proxy_header *h)
{
    return parse_copy(false, buf, len, h);
}

static int parse_str(const char *s, sk_proxy_header *h)
{
    return parse(s, strlen(s), h);
}

/* Every prefix of a valid header asks for more and never fails; the whole gives its length,
 * with or without payload after it. This is how a header split across reads at any byte is
 * handled (nginx#1400, mosquitto#3701). */
static bool splits_ok(const uint8_t *buf, size_t n)
{
    sk_proxy_header h;
    for (size_t k = 0; k < n; k++) {
        if (parse(buf, k, &h) != 0) {
            fprintf(stderr, "  prefix of %zu bytes of %zu: %d\n", k, n, parse(buf, k, &h));
            return false;
        }
    }
    if (parse(buf, n, &h) != (int)n)
        return false;
    uint8_t *more = malloc(n + 40);
    if (!more)
        abort();
    memcpy(more, buf, n);
    memset(more + n, '\n', 40); /* what follows must not matter, even bytes that look like it */
    int rc = parse(more, n + 40, &h);
    free(more);
    return rc == (int)n;
}

static bool addr_is(const sk_addr *a, const char *text)
{
    char buf[SK_ADDR_STRLEN];
    sk_addr_format(a, buf, sizeof buf);
    if (strcmp(buf, text) != 0) {
        fprintf(stderr, "  address %s, expected %s\n", buf, text);
        return false;
    }
    return true;
}

static bool bytes_are(sk_proxy_bytes b, const char *s)
{
    return b.data && b.len == strlen(s) && memcmp(b.data, s, b.len) == 0;
}

/* ---- v2 headers by hand ---- */

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

typedef struct v2buf {
    uint8_t b[8192];
    size_t n;
} v2buf;

static void v2_start(v2buf *v, uint8_t ver_cmd, uint8_t fam)
{
    memcpy(v->b, SIG, 12);
    v->b[12] = ver_cmd;
    v->b[13] = fam;
    v->n = 16;
}

static void v2_put(v2buf *v, const void *p, size_t n)
{
    memcpy(v->b + v->n, p, n);
    v->n += n;
}

static void v2_tlv(v2buf *v, uint8_t type, const void *p, size_t n)
{
    uint8_t head[3] = {type, (uint8_t)(n >> 8), (uint8_t)n};
    v2_put(v, head, 3);
    if (n)
        v2_put(v, p, n);
}

/* Sets the length field from what was put; returns the header's length. */
static size_t v2_end(v2buf *v)
{
    size_t body = v->n - 16;
    v->b[14] = (uint8_t)(body >> 8);
    v->b[15] = (uint8_t)body;
    return v->n;
}

static void v2_ipv4_block(v2buf *v)
{
    static const uint8_t block[12] = {203, 0, 113, 7, 192, 0, 2, 1, 0x13, 0x88, 0x01, 0xbb};
    v2_put(v, block, sizeof block); /* 203.0.113.7:5000 -> 192.0.2.1:443 */
}

static void v2_ipv6_block(v2buf *v)
{
    uint8_t block[36] = {0x20, 0x01, 0x0d, 0xb8};
    block[15] = 1;
    block[16] = 0x20;
    block[17] = 0x01;
    block[18] = 0x0d;
    block[19] = 0xb8;
    block[31] = 2;
    block[32] = 0xff;
    block[33] = 0xff; /* 65535 */
    block[35] = 80;
    v2_put(v, block, sizeof block); /* [2001:db8::1]:65535 -> [2001:db8::2]:80 */
}

static void v2_crc(v2buf *v)
{
    /* The CRC TLV goes last; compute over the header with the field zero, then fill it in. */
    uint8_t zero[4] = {0};
    v2_tlv(v, 0x03, zero, 4);
    size_t n = v2_end(v);
    uint32_t crc = sk_proxy_crc32c(v->b, n);
    v->b[n - 4] = (uint8_t)(crc >> 24);
    v->b[n - 3] = (uint8_t)(crc >> 16);
    v->b[n - 2] = (uint8_t)(crc >> 8);
    v->b[n - 1] = (uint8_t)crc;
}

/* ---- CRC32C ---- */

TEST(proxy_crc32c_vector)
{
    CHECK(sk_proxy_crc32c("123456789", 9) == 0xE3069283u);
    CHECK(sk_proxy_crc32c("", 0) == 0);
    /* RFC 3720 B.4: 32 bytes of zeros */
    uint8_t zeros[32] = {0};
    CHECK(sk_proxy_crc32c(zeros, 32) == 0x8A9136AAu);
}

/* ---- v1: accepted ---- */

TEST(proxy_v1_tcp4)
{
    sk_proxy_header h;
    const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    CHECK(parse_str(s, &h) == (int)strlen(s));
    CHECK(h.version == 1 && h.command == SK_PROXY_CMD_PROXY && h.transport == SK_PROXY_STREAM);
    CHECK(addr_is(&h.src, "192.168.0.1:56324"));
    CHECK(addr_is(&h.dst, "192.168.0.11:443"));
    CHECK(!h.alpn.data && !h.authority.data && !h.unique_id.data && !h.ssl.present);
    CHECK(!h.crc_present);
    CHECK(splits_ok((const uint8_t *)s, strlen(s)));
    /* the limits of each number */
    s = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n";
    CHECK(parse_str(s, &h) == (int)strlen(s));
    CHECK(addr_is(&h.src, "255.255.255.255:65535"));
    CHECK(addr_is(&h.dst, "0.0.0.0:0"));
}

TEST(proxy_v1_tcp6)
{
    sk_proxy_header h;
    const char *s = "PROXY TCP6 2001:db8::1 ::1 5000 80\r\n";
    CHECK(parse_str(s, &h) == (int)strlen(s));
    CHECK(h.version == 1 && h.transport == SK_PROXY_STREAM);
    CHECK(addr_is(&h.src, "[2001:db8::1]:5000"));
    CHECK(addr_is(&h.dst, "[::1]:80"));
    CHECK(splits_ok((const uint8_t *)s, strlen(s)));
    /* the spec's longest TCP6 line: 104 bytes */
    s = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n";
    CHECK(strlen(s) == 104);
    CHECK(parse_str(s, &h) == 104);
    CHECK(splits_ok((const uint8_t *)s, strlen(s)));
    /* inet_pton's forms: an embedded IPv4 tail */
    s = "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n";
    CHECK(parse_str(s, &h) == (int)strlen(s));
    CHECK(addr_is(&h.src, "[::ffff:1.2.3.4]:1"));
}

TEST(proxy_v1_unknown)
{
    sk_proxy_header h;
    const char *s = "PROXY UNKNOWN\r\n";
    CHECK(parse_str(s, &h) == 15);
    CHECK(h.version == 1 && h.command == SK_PROXY_CMD_PROXY && h.transport == SK_PROXY_UNSPEC);
    CHECK(h.src.len == 0 && h.dst.len == 0); /* use the socket's own addresses */
    CHECK(splits_ok((const uint8_t *)s, strlen(s)));
    /* The spec: "the receiver must ignore anything presented before the CRLF is found", for
     * UNKNOWN only: trailing junk is accepted, but still within 107 bytes. */
    s = "PROXY UNKNOWN junk that is not addresses 999999 \t\r x\r\n";
    CHECK(parse_str(s, &h) == (int)strlen(s));
    CHECK(h.src.len == 0 && h.transport == SK_PROXY_UNSPEC);
    CHECK(splits_ok((const uint8_t *)s, strlen(s)));
    /* the worst case of the spec: 107 bytes exactly */
    s = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    CHECK(strlen(s) == 107);
    CHECK(parse_str(s, &h) == 107);
    CHECK(splits_ok((const uint8_t *)s, strlen(s)));
}

TEST(proxy_v1_payload_untouched)
{
    const char *s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n";
    size_t n = strlen(s);
    char *copy = malloc(n);
    REQUIRE(copy);
    memcpy(copy, s, n);
    sk_proxy_header h;
    int rc = sk_proxy_parse(copy, n, &h);
    CHECK(rc == 32);
    CHECK(rc > 0 && memcmp(copy + rc, "GET / HTTP/1.1\r\n\r\n", n - (size_t)rc) == 0);
    CHECK(memcmp(copy, s, n) == 0);
    free(copy);
}

/* ---- v1: refused ---- */

TEST(proxy_v1_bad_signature)
{
    sk_proxy_header h;
    CHECK(parse_str("GET / HTTP/1.1\r\n", &h) == SK_PROXY_BAD_SIGNATURE);
    CHECK(parse_str("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_SIGNATURE);
    CHECK(parse_str("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_SIGNATURE);
    CHECK(parse_str("PROXYTCP4", &h) == SK_PROXY_BAD_SIGNATURE);
    /* judged at the first byte that differs, not after 16 */
    CHECK(parse_str("G", &h) == SK_PROXY_BAD_SIGNATURE);
    CHECK(parse_str("PR", &h) == 0);
    CHECK(parse_str("PRX", &h) == SK_PROXY_BAD_SIGNATURE);
    CHECK(parse_str("\r\n\r\n\x01", &h) == SK_PROXY_BAD_SIGNATURE);
    CHECK(parse_str("\x16\x03\x01", &h) == SK_PROXY_BAD_SIGNATURE); /* a TLS ClientHello */
    CHECK(parse_str("", &h) == 0);
}

TEST(proxy_v1_bad_family)
{
    sk_proxy_header h;
    CHECK(parse_str("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY UNKNOWNX\r\n", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY \r\n", &h) == SK_PROXY_BAD_FAMILY);
    /* known to be wrong before the line ends */
    CHECK(parse_str("PROXY H", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY TCP7", &h) == SK_PROXY_BAD_FAMILY);
    CHECK(parse_str("PROXY UNKNOWN", &h) == 0);
    CHECK(parse_str("PROXY TCP4 ", &h) == 0);
}

TEST(proxy_v1_bad_syntax)
{
    sk_proxy_header h;
    CHECK(parse_str("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP4\r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP6 \r\n", &h) == SK_PROXY_BAD_SYNTAX);
}

TEST(proxy_v1_line_end)
{
    sk_proxy_header h;
    /* a line without CR before LF: the spec forbids a lone LF to end it */
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", &h) == SK_PROXY_BAD_LINE_END);
    CHECK(parse_str("PROXY UNKNOWN\n", &h) == SK_PROXY_BAD_LINE_END);
    CHECK(parse_str("PROXY \n", &h) == SK_PROXY_BAD_LINE_END);
    /* a CR not before the LF is part of a field, and no field allows it */
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r \r\n", &h) == SK_PROXY_BAD_SYNTAX);
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", &h) == SK_PROXY_BAD_PORT);
    /* a CR alone so far: more may come */
    CHECK(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", &h) == 0);
}

TEST(proxy_v1_too_long)
{
    sk_proxy_header h;
    char line[200];
    /* 107 bytes and no LF: no more bytes can make it a header */
    memset(line, 'f', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    CHECK(parse(line, 106, &h) == 0);
    CHECK(parse(line, 107, &h) == SK_PROXY_TOO_LONG);
    CHECK(parse(line, 200, &h) == SK_PROXY_TOO_LONG);
    /* a 108-byte line: its LF is byte 108 */
    line[106] = '\r';
    line[107] = '\n';
    CHECK(parse(line, 108, &h) == SK_PROXY_TOO_LONG);
    /* 107 bytes with CRLF is the limit */
    line[105] = '\r';
    line[106] = '\n';
    CHECK(parse(line, 107, &h) == 107);
}

TEST(proxy_v1_bad_address)
{
    sk_proxy_header h;
    static const char *const bad[] = {
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",      /* leading zero: octal look-alike */
        "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",      /* leading zero */
        "PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n",      /* leading zero */
        "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",     /* out of range */
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",         /* three parts */
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",     /* five */
        "PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n",      /* trailing dot */
        "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n",        /* empty part */
        "PROXY TCP4 1.2.3.4 1234.6.7.8 1 2\r\n",    /* four digits */
        "PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n",     /* hex */
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",           /* IPv6 under TCP4 */
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",           /* IPv4 under TCP6 */
        "PROXY TCP6 ::1%lo ::1 1 2\r\n",            /* a zone */
        "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", /* too many groups */
        "PROXY TCP6 1::2::3 ::1 1 2\r\n",           /* two "::" */
        "PROXY TCP6 12345:: ::1 1 2\r\n",           /* five hex digits */
        "PROXY TCP6 [::1] ::1 1 2\r\n",             /* brackets */
        "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",     /* a name */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_str(bad[i], &h);
        if (rc != SK_PROXY_BAD_ADDRESS)
            fprintf(stderr, "  %s -> %d\n", bad[i], rc);
        CHECK(rc == SK_PROXY_BAD_ADDRESS);
    }
    /* an address with a NUL in it must not pass as its part before the NUL */
    const char nul[] = "PROXY TCP6 ::1\0x ::1 1 2\r\n";
    CHECK(parse(nul, sizeof nul - 1, &h) == SK_PROXY_BAD_ADDRESS);
}

TEST(proxy_v1_bad_port)
{
    sk_proxy_header h;
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",     "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",  "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",     "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",
        "PROXY TCP6 ::1 ::1 1 0x10\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_str(bad[i], &h);
        if (rc != SK_PROXY_BAD_PORT)
            fprintf(stderr, "  %s -> %d\n", bad[i], rc);
        CHECK(rc == SK_PROXY_BAD_PORT);
    }
}

TEST(proxy_v1_not_in_datagram)
{
    sk_proxy_header h;
    const char *s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    CHECK(parse_copy(true, s, strlen(s), &h) == SK_PROXY_BAD_SIGNATURE);
}

/* ---- v2: accepted, every family ---- */

TEST(proxy_v2_tcp4_udp4)
{
    v2buf v;
    sk_proxy_header h;
    for (int udp = 0; udp <= 1; udp++) {
        v2_start(&v, 0x21, udp ? 0x12 : 0x11);
        v2_ipv4_block(&v);
        size_t n = v2_end(&v);
        CHECK(n == 28);
        CHECK(parse(v.b, n, &h) == 28);
        CHECK(h.version == 2 && h.command == SK_PROXY_CMD_PROXY);
        CHECK(h.transport == (udp ? SK_PROXY_DGRAM : SK_PROXY_STREAM));
        CHECK(addr_is(&h.src, "203.0.113.7:5000"));
        CHECK(addr_is(&h.dst, "192.0.2.1:443"));
        CHECK(!h.alpn.data && !h.ssl.present && !h.crc_present);
        CHECK(splits_ok(v.b, n));
        CHECK(parse_copy(true, v.b, n, &h) == 28);
    }
}

TEST(proxy_v2_tcp6_udp6)
{
    v2buf v;
    sk_proxy_header h;
    for (int udp = 0; udp <= 1; udp++) {
        v2_start(&v, 0x21, udp ? 0x22 : 0x21);
        v2_ipv6_block(&v);
        size_t n = v2_end(&v);
        CHECK(parse(v.b, n, &h) == 52);
        CHECK(h.transport == (udp ? SK_PROXY_DGRAM : SK_PROXY_STREAM));
        CHECK(addr_is(&h.src, "[2001:db8::1]:65535"));
        CHECK(addr_is(&h.dst, "[2001:db8::2]:80"));
        CHECK(splits_ok(v.b, n));
    }
}

TEST(proxy_v2_unix)
{
    v2buf v;
    sk_proxy_header h;
    uint8_t paths[216] = {0};
    memcpy(paths, "/run/client.sock", 16);
    memcpy(paths + 109, "server", 6); /* abstract: a leading NUL */
    for (int dgram = 0; dgram <= 1; dgram++) {
        v2_start(&v, 0x21, dgram ? 0x32 : 0x31);
        v2_put(&v, paths, sizeof paths);
        size_t n = v2_end(&v);
        CHECK(parse(v.b, n, &h) == 232);
        CHECK(h.transport == (dgram ? SK_PROXY_DGRAM : SK_PROXY_STREAM));
        CHECK(sk_addr_family(&h.src) == AF_UNIX);
        CHECK(addr_is(&h.src, "unix:/run/client.sock"));
        CHECK(addr_is(&h.dst, "unix:@server"));
        CHECK(h.src.len == offsetof(struct sockaddr_un, sun_path) + 17);
        CHECK(h.dst.len == offsetof(struct sockaddr_un, sun_path) + 7);
        CHECK(splits_ok(v.b, n));
    }
    /* an unnamed client (all zeros) and a path of all 108 bytes without a NUL */
    memset(paths, 0, sizeof paths);
    memset(paths + 108, 'p', 108);
    v2_start(&v, 0x21, 0x31);
    v2_put(&v, paths, sizeof paths);
    CHECK(parse(v.b, v2_end(&v), &h) == 232);
    CHECK(h.src.len == sizeof(sa_family_t));
    CHECK(h.dst.len == sizeof(struct sockaddr_un));
}

TEST(proxy_v2_unspec_and_local)
{
    v2buf v;
    sk_proxy_header h;
    /* LOCAL, the health check: no address */
    v2_start(&v, 0x20, 0x00);
    size_t n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == 16);
    CHECK(h.version == 2 && h.command == SK_PROXY_CMD_LOCAL && h.transport == SK_PROXY_UNSPEC);
    CHECK(h.src.len == 0 && h.dst.len == 0);
    CHECK(splits_ok(v.b, n));
    /* PROXY with the UNSPEC family: no address either; the rest are TLVs */
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x01, "h2", 2);
    n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == 21);
    CHECK(h.command == SK_PROXY_CMD_PROXY && h.transport == SK_PROXY_UNSPEC && h.src.len == 0);
    CHECK(bytes_are(h.alpn, "h2"));
}

TEST(proxy_v2_local_dummy_addresses)
{
    /* go-proxyproto#12: a LOCAL header with a family and addresses in it. The spec says the
     * receiver uses the real endpoints and ignores the block, family included; TLVs after the
     * addresses are still read. */
    v2buf v;
    sk_proxy_header h;
    v2_start(&v, 0x20, 0x11);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.org", 11);
    size_t n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == (int)n);
    CHECK(h.command == SK_PROXY_CMD_LOCAL && h.transport == SK_PROXY_UNSPEC);
    CHECK(h.src.len == 0 && h.dst.len == 0);
    CHECK(bytes_are(h.authority, "example.org"));
    CHECK(splits_ok(v.b, n));
    /* LOCAL TCP6 whose block is too short for its family: skipped whole, no TLVs read */
    v2_start(&v, 0x20, 0x21);
    v2_put(&v, "\x01\x00\x00", 3);
    n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == 19);
    CHECK(h.command == SK_PROXY_CMD_LOCAL && !h.alpn.data);
    /* the same with PROXY is an error: the addresses are needed */
    v.b[12] = 0x21;
    CHECK(parse(v.b, n, &h) == SK_PROXY_BAD_ADDRESS);
}

TEST(proxy_v2_tlvs)
{
    v2buf v;
    sk_proxy_header h;
    v2_start(&v, 0x21, 0x11);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x01, "http/1.1", 8);
    v2_tlv(&v, 0x02, "chat.example.org", 16);
    v2_tlv(&v, 0x04, "\0\0\0\0\0", 5); /* NOOP with padding */
    v2_tlv(&v, 0x05, "id-42", 5);
    /* SSL: client flags, verify, then sub-TLVs, one of them unknown */
    v2buf ssl;
    ssl.n = 0;
    v2_put(&ssl, "\x07\x00\x00\x00\x00", 5);
    v2_tlv(&ssl, 0x21, "TLSv1.3", 7);
    v2_tlv(&ssl, 0x22, "alice", 5);
    v2_tlv(&ssl, 0x23, "TLS_AES_128_GCM_SHA256", 22);
    v2_tlv(&ssl, 0x24, "RSA-SHA256", 10);
    v2_tlv(&ssl, 0x25, "RSA2048", 7);
    v2_tlv(&ssl, 0x28, "DERDERDER", 9); /* CLIENT_CERT: skipped */
    v2_tlv(&v, 0x20, ssl.b, ssl.n);
    v2_tlv(&v, 0x30, "blue", 4);   /* NETNS: skipped */
    v2_tlv(&v, 0xE5, "custom", 6); /* an application's type: skipped */
    v2_crc(&v);
    size_t n = v.n;
    CHECK(parse(v.b, n, &h) == (int)n);
    CHECK(bytes_are(h.alpn, "http/1.1"));
    CHECK(bytes_are(h.authority, "chat.example.org"));
    CHECK(bytes_are(h.unique_id, "id-42"));
    CHECK(h.ssl.present && h.ssl.client == 7 && h.ssl.verify == 0);
    CHECK(bytes_are(h.ssl.version, "TLSv1.3"));
    CHECK(bytes_are(h.ssl.cn, "alice"));
    CHECK(bytes_are(h.ssl.cipher, "TLS_AES_128_GCM_SHA256"));
    CHECK(bytes_are(h.ssl.sig_alg, "RSA-SHA256"));
    CHECK(bytes_are(h.ssl.key_alg, "RSA2048"));
    CHECK(h.crc_present);
    CHECK(splits_ok(v.b, n));
    /* the values point into the parsed buffer */
    CHECK(sk_proxy_parse(v.b, n, &h) == (int)n);
    CHECK(h.alpn.data > v.b && h.alpn.data < v.b + n);
}

TEST(proxy_v2_big_tlvs)
{
    /* trafficserver#12191: TLVs (and so headers) beyond 232 bytes must be read whole. */
    v2buf v;
    sk_proxy_header h;
    static uint8_t big[4096];
    memset(big, 'a', sizeof big);
    v2_start(&v, 0x21, 0x21);
    v2_ipv6_block(&v);
    v2_tlv(&v, 0x02, big, 300);
    v2_tlv(&v, 0xEE, big, 3000);
    v2_tlv(&v, 0x05, big, 128); /* the largest UNIQUE_ID */
    size_t n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == (int)n);
    CHECK(h.authority.len == 300 && h.unique_id.len == 128);
    CHECK(splits_ok(v.b, n));
    /* the largest header of all: 4096 bytes */
    v2_start(&v, 0x21, 0x11);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x04, big, 4096 - 16 - 12 - 3);
    n = v2_end(&v);
    CHECK(n == 4096);
    CHECK(parse(v.b, n, &h) == 4096);
}

TEST(proxy_v2_zero_length_tlvs)
{
    /* go-proxyproto#57: zero-length TLVs, NOOP among them, are valid. */
    v2buf v;
    sk_proxy_header h;
    v2_start(&v, 0x21, 0x11);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x04, NULL, 0);
    v2_tlv(&v, 0x01, NULL, 0);
    v2_tlv(&v, 0x04, NULL, 0);
    v2_tlv(&v, 0x02, NULL, 0);
    v2_tlv(&v, 0x99, NULL, 0);
    size_t n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == (int)n);
    CHECK(h.alpn.data != NULL && h.alpn.len == 0); /* present, and empty */
    CHECK(h.authority.data != NULL && h.authority.len == 0);
    CHECK(h.unique_id.data == NULL); /* absent */
    CHECK(splits_ok(v.b, n));
}

TEST(proxy_v2_payload_untouched)
{
    v2buf v;
    sk_proxy_header h;
    v2_start(&v, 0x21, 0x12);
    v2_ipv4_block(&v);
    size_t n = v2_end(&v);
    v2_put(&v, "datagram payload", 16);
    uint8_t before[64];
    memcpy(before, v.b, v.n);
    CHECK(sk_proxy_parse_datagram(v.b, v.n, &h) == (int)n);
    CHECK(memcmp(v.b + n, "datagram payload", 16) == 0);
    CHECK(memcmp(before, v.b, v.n) == 0);
    CHECK(parse(v.b, v.n, &h) == (int)n);
}

/* ---- v2: refused ---- */

TEST(proxy_v2_bad_signature)
{
    sk_proxy_header h;
    uint8_t b[16];
    memcpy(b, SIG, 12);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = b[15] = 0;
    for (size_t i = 0; i < 12; i++) {
        uint8_t save = b[i];
        b[i] ^= 0x40;
        /* refused as soon as the differing byte is in */
        CHECK(parse(b, i + 1, &h) == SK_PROXY_BAD_SIGNATURE);
        CHECK(parse(b, 16, &h) == SK_PROXY_BAD_SIGNATURE);
        b[i] = save;
    }
}

TEST(proxy_v2_bad_version_command_family)
{
    sk_proxy_header h;
    uint8_t b[16];
    memcpy(b, SIG, 12);
    /* each judged as soon as its byte is in */
    b[12] = 0x11;
    CHECK(parse(b, 13, &h) == SK_PROXY_BAD_VERSION);
    b[12] = 0x31;
    CHECK(parse(b, 13, &h) == SK_PROXY_BAD_VERSION);
    b[12] = 0x01;
    CHECK(parse(b, 13, &h) == SK_PROXY_BAD_VERSION);
    b[12] = 0x22;
    CHECK(parse(b, 13, &h) == SK_PROXY_BAD_COMMAND);
    b[12] = 0x2F;
    CHECK(parse(b, 13, &h) == SK_PROXY_BAD_COMMAND);
    b[12] = 0x21;
    CHECK(parse(b, 13, &h) == 0);
    static const uint8_t bad_fams[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x41, 0xFF};
    for (size_t i = 0; i < sizeof bad_fams; i++) {
        b[13] = bad_fams[i];
        CHECK(parse(b, 14, &h) == SK_PROXY_BAD_FAMILY);
        b[12] = 0x20; /* LOCAL too: the spec says such values must be rejected */
        CHECK(parse(b, 14, &h) == SK_PROXY_BAD_FAMILY);
        b[12] = 0x21;
    }
    b[13] = 0x11;
    CHECK(parse(b, 14, &h) == 0);
}

TEST(proxy_v2_too_long)
{
    sk_proxy_header h;
    uint8_t b[16];
    memcpy(b, SIG, 12);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = 0x0F; /* 4081 = 4096 - 16 + 1: refused from the length alone */
    b[15] = 0xF1;
    CHECK(parse(b, 16, &h) == SK_PROXY_TOO_LONG);
    b[14] = b[15] = 0xFF;
    CHECK(parse(b, 16, &h) == SK_PROXY_TOO_LONG);
    b[15] = 0xF0; /* 4080: allowed, wait for it */
    b[14] = 0x0F;
    CHECK(parse(b, 16, &h) == 0);
}

TEST(proxy_v2_short_address_block)
{
    sk_proxy_header h;
    v2buf v;
    static const uint8_t fams[] = {0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
    static const size_t sizes[] = {12, 12, 36, 36, 216, 216};
    for (size_t i = 0; i < sizeof fams; i++) {
        v2_start(&v, 0x21, fams[i]);
        uint8_t zeros[216] = {0};
        v2_put(&v, zeros, sizes[i] - 1);
        size_t n = v2_end(&v);
        /* known from the length field alone, before the block arrives */
        CHECK(parse(v.b, 16, &h) == SK_PROXY_BAD_ADDRESS);
        CHECK(parse(v.b, n, &h) == SK_PROXY_BAD_ADDRESS);
    }
}

TEST(proxy_v2_len_longer_than_data)
{
    /* len says more than follows: a stream waits for it, a datagram cannot get it */
    v2buf v;
    sk_proxy_header h;
    v2_start(&v, 0x21, 0x12);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.org", 11);
    size_t n = v2_end(&v);
    for (size_t k = 1; k < n; k++) {
        CHECK(parse(v.b, k, &h) == 0);
        CHECK(parse_copy(true, v.b, k, &h) == SK_PROXY_TRUNCATED);
    }
    CHECK(parse_copy(true, v.b, 0, &h) == SK_PROXY_TRUNCATED);
    CHECK(parse_copy(true, v.b, n, &h) == (int)n);
}

TEST(proxy_v2_bad_tlv)
{
    v2buf v;
    sk_proxy_header h;
    /* a TLV whose value runs past the header's end */
    v2_start(&v, 0x21, 0x11);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.org", 11);
    v.n -= 1; /* the header ends one byte before the value does */
    size_t n = v2_end(&v);
    CHECK(parse(v.b, n, &h) == SK_PROXY_BAD_TLV);
    /* ... even when bytes after the header would complete it */
    CHECK(parse(v.b, n + 1, &h) == SK_PROXY_BAD_TLV);
    /* a TLV head cut short: 1 and 2 bytes left */
    for (size_t left = 1; left <= 2; left++) {
        v2_start(&v, 0x21, 0x11);
        v2_ipv4_block(&v);
        v2_put(&v, "\x04\x00", left);
        CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    }
    /* repeated single-valued TLVs */
    static const uint8_t once[] = {0x01, 0x02, 0x05};
    for (size_t i = 0; i < sizeof once; i++) {
        v2_start(&v, 0x21, 0x00);
        v2_tlv(&v, once[i], "a", 1);
        v2_tlv(&v, once[i], "b", 1);
        CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    }
    /* CRC32C must be exactly 4 bytes */
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x03, "\0\0\0", 3);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x03, "\0\0\0\0\0", 5);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    /* UNIQUE_ID at most 128 bytes */
    uint8_t id[129];
    memset(id, 'x', sizeof id);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x05, id, 129);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    /* SSL shorter than client + verify; a sub-TLV past the SSL TLV; two SSL TLVs */
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\0\0\0", 4);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\0\0\0\0\x21\x00\x05TLS", 11);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\0\0\0\0\x21\x00", 7);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20,
           "\x01\0\0\0\0\x22\x00\x01"
           "a\x22\x00\x01"
           "b",
           13);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\0\0\0\0", 5);
    v2_tlv(&v, 0x20, "\x01\0\0\0\0", 5);
    CHECK(parse(v.b, v2_end(&v), &h) == SK_PROXY_BAD_TLV);
}

TEST(proxy_v2_crc32c)
{
    v2buf v;
    sk_proxy_header h;
    v2_start(&v, 0x21, 0x11);
    v2_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.org", 11);
    v2_crc(&v);
    size_t n = v.n;
    CHECK(parse(v.b, n, &h) == (int)n);
    CHECK(h.crc_present);
    /* any changed bit is a mismatch: in the addresses, in a TLV, in the CRC itself */
    static const size_t flips[] = {16, 27, 31, 40};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        v.b[flips[i]] ^= 1;
        CHECK(parse(v.b, n, &h) == SK_PROXY_CRC_MISMATCH);
        v.b[flips[i]] ^= 1;
    }
    v.b[n - 1] ^= 0x80;
    CHECK(parse(v.b, n, &h) == SK_PROXY_CRC_MISMATCH);
    v.b[n - 1] ^= 0x80;
    /* the CRC TLV first, not last: still computed over the whole header with it zeroed */
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x03, "\0\0\0\0", 4);
    v2_tlv(&v, 0x01, "h2", 2);
    n = v2_end(&v);
    uint32_t crc = sk_proxy_crc32c(v.b, n);
    v.b[19] = (uint8_t)(crc >> 24);
    v.b[20] = (uint8_t)(crc >> 16);
    v.b[21] = (uint8_t)(crc >> 8);
    v.b[22] = (uint8_t)crc;
    CHECK(parse(v.b, n, &h) == (int)n);
    CHECK(h.crc_present);
    /* a zero CRC field is not "no CRC" */
    memset(v.b + 19, 0, 4);
    CHECK(parse(v.b, n, &h) == SK_PROXY_CRC_MISMATCH);
}

/* ---- writer ---- */

static sk_addr ip(const char *text, uint16_t port)
{
    sk_addr a;
    if (sk_addr_from_ip(&a, text, port) != 0)
        abort();
    return a;
}

/* Write o, parse it back, return the length (or the writer's error). */
static int round_trip(const sk_proxy_write_opts *o, uint8_t *buf, size_t cap, sk_proxy_header *h)
{
    int n = sk_proxy_write(buf, cap, o);
    if (n <= 0)
        return n;
    if (!splits_ok(buf, (size_t)n) || parse(buf, (size_t)n, h) != n)
        return -1000; /* the parse last: h points into its copy */
    return n;
}

TEST(proxy_write_v1)
{
    uint8_t buf[256];
    sk_proxy_header h;
    sk_addr s = ip("203.0.113.7", 5000), d = ip("192.0.2.1", 443);
    sk_proxy_write_opts o = {.version = 1, .command = SK_PROXY_CMD_PROXY, .src = &s, .dst = &d};
    int n = round_trip(&o, buf, sizeof buf, &h);
    CHECK(n == (int)strlen("PROXY TCP4 203.0.113.7 192.0.2.1 5000 443\r\n"));
    CHECK(n > 0 && memcmp(buf, "PROXY TCP4 203.0.113.7 192.0.2.1 5000 443\r\n", (size_t)n) == 0);
    CHECK(h.version == 1 && addr_is(&h.src, "203.0.113.7:5000") &&
          addr_is(&h.dst, "192.0.2.1:443"));

    sk_addr s6 = ip("2001:db8::7", 0), d6 = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    o.src = &s6;
    o.dst = &d6;
    n = round_trip(&o, buf, sizeof buf, &h);
    CHECK(n == 72);
    CHECK(addr_is(&h.src, "[2001:db8::7]:0"));
    CHECK(addr_is(&h.dst, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"));

    /* no address, LOCAL, or Unix: UNKNOWN */
    sk_addr u1, u2;
    CHECK(sk_addr_from_unix(&u1, "/tmp/a") == 0 && sk_addr_from_unix(&u2, "/tmp/b") == 0);
    const sk_addr *srcs[] = {NULL, &s, &u1};
    const sk_addr *dsts[] = {NULL, &d, &u2};
    sk_proxy_command cmds[] = {SK_PROXY_CMD_PROXY, SK_PROXY_CMD_LOCAL, SK_PROXY_CMD_PROXY};
    for (int i = 0; i < 3; i++) {
        o.src = srcs[i];
        o.dst = dsts[i];
        o.command = cmds[i];
        n = round_trip(&o, buf, sizeof buf, &h);
        CHECK(n == 15 && memcmp(buf, "PROXY UNKNOWN\r\n", 15) == 0);
        CHECK(h.src.len == 0 && h.transport == SK_PROXY_UNSPEC);
    }
}

TEST(proxy_write_v2_families)
{
    uint8_t buf[512];
    sk_proxy_header h;
    sk_addr s4 = ip("203.0.113.7", 5000), d4 = ip("192.0.2.1", 443);
    sk_addr s6 = ip("2001:db8::7", 1), d6 = ip("::1", 2);
    sk_addr su, du, sa, unnamed;
    CHECK(sk_addr_from_unix(&su, "/run/client.sock") == 0);
    CHECK(sk_addr_from_unix(&du, "/run/server.sock") == 0);
    CHECK(sk_addr_from_unix(&sa, "@abstract") == 0);
    memset(&unnamed, 0, sizeof unnamed);
    unnamed.ss.ss_family = AF_UNIX;
    unnamed.len = sizeof(sa_family_t);
    struct {
        const sk_addr *src, *dst;
        int size;
        const char *src_text, *dst_text;
    } cases[] = {
        {&s4, &d4, 28, "203.0.113.7:5000", "192.0.2.1:443"},
        {&s6, &d6, 52, "[2001:db8::7]:1", "[::1]:2"},
        {&su, &du, 232, "unix:/run/client.sock", "unix:/run/server.sock"},
        {&sa, &unnamed, 232, "unix:@abstract", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int t = SK_PROXY_UNSPEC; t <= SK_PROXY_DGRAM; t++) {
            sk_proxy_write_opts o = {.version = 2,
                                     .command = SK_PROXY_CMD_PROXY,
                                     .transport = (sk_proxy_transport)t,
                                     .src = cases[i].src,
                                     .dst = cases[i].dst};
            int n = round_trip(&o, buf, sizeof buf, &h);
            CHECK(n == cases[i].size);
            CHECK(h.version == 2 && h.command == SK_PROXY_CMD_PROXY);
            CHECK(h.transport == (t == SK_PROXY_DGRAM ? SK_PROXY_DGRAM : SK_PROXY_STREAM));
            CHECK(addr_is(&h.src, cases[i].src_text));
            if (cases[i].dst_text)
                CHECK(addr_is(&h.dst, cases[i].dst_text));
            CHECK(h.src.len == cases[i].src->len && h.dst.len == cases[i].dst->len);
            CHECK(memcmp(&h.src.ss, &cases[i].src->ss, h.src.len) == 0);
            CHECK(memcmp(&h.dst.ss, &cases[i].dst->ss, h.dst.len) == 0);
        }
    }
    /* LOCAL sends no address even when given one; no address at all sends UNSPEC */
    sk_proxy_write_opts o = {.version = 2, .command = SK_PROXY_CMD_LOCAL, .src = &s4, .dst = &d4};
    CHECK(round_trip(&o, buf, sizeof buf, &h) == 16);
    CHECK(buf[12] == 0x20 && buf[13] == 0x00);
    CHECK(h.command == SK_PROXY_CMD_LOCAL && h.src.len == 0);
    o.command = SK_PROXY_CMD_PROXY;
    o.src = o.dst = NULL;
    CHECK(round_trip(&o, buf, sizeof buf, &h) == 16);
    CHECK(buf[12] == 0x21 && buf[13] == 0x00);
    CHECK(h.command == SK_PROXY_CMD_PROXY && h.transport == SK_PROXY_UNSPEC && h.src.len == 0);
}

TEST(proxy_write_v2_tlvs)
{
    static uint8_t buf[4096];
    sk_proxy_header h;
    sk_addr s = ip("203.0.113.7", 5000), d = ip("192.0.2.1", 443);
    uint8_t big[1000];
    memset(big, 'z', sizeof big);
#define B(str) ((sk_proxy_bytes){(const uint8_t *)(str), sizeof(str) - 1})
    sk_proxy_write_opts o = {
        .version = 2,
        .command = SK_PROXY_CMD_PROXY,
        .src = &s,
        .dst = &d,
        .alpn = B("h2"),
        .authority = {big, sizeof big}, /* well beyond 232 bytes */
        .unique_id = B("conn-0001"),
        .ssl = {.present = true,
                .client = SK_PROXY_SSL_CLIENT_SSL | SK_PROXY_SSL_CLIENT_CERT_CONN,
                .verify = 0x01020304,
                .version = B("TLSv1.3"),
                .cn = B("alice"),
                .cipher = B("TLS_AES_256_GCM_SHA384")},
        .crc32c = true,
    };
    int n = round_trip(&o, buf, sizeof buf, &h);
    CHECK(n == 28 + 5 + 1003 + 12 + (3 + 5 + 10 + 8 + 25) + 7);
    CHECK(bytes_are(h.alpn, "h2"));
    CHECK(h.authority.len == 1000 && memcmp(h.authority.data, big, 1000) == 0);
    CHECK(bytes_are(h.unique_id, "conn-0001"));
    CHECK(h.ssl.present && h.ssl.client == 3 && h.ssl.verify == 0x01020304);
    CHECK(bytes_are(h.ssl.version, "TLSv1.3") && bytes_are(h.ssl.cn, "alice"));
    CHECK(bytes_are(h.ssl.cipher, "TLS_AES_256_GCM_SHA384"));
    CHECK(!h.ssl.sig_alg.data && !h.ssl.key_alg.data);
    CHECK(h.crc_present);
    /* the CRC covers the bytes the writer put: one changed byte is a mismatch */
    buf[40] ^= 1;
    CHECK(n > 40 && parse(buf, (size_t)n, &h) == SK_PROXY_CRC_MISMATCH);
    /* zero-length TLVs are written and read back as present */
    sk_proxy_write_opts z = {.version = 2, .alpn = {(const uint8_t *)"", 0}};
    CHECK(round_trip(&z, buf, sizeof buf, &h) == 19);
    CHECK(h.alpn.data && h.alpn.len == 0 && !h.authority.data);
#undef B
}

TEST(proxy_write_errors)
{
    uint8_t buf[600];
    sk_addr s4 = ip("203.0.113.7", 5000), d4 = ip("192.0.2.1", 443), d6 = ip("::1", 1);
    sk_proxy_write_opts o = {.version = 2, .command = SK_PROXY_CMD_PROXY, .src = &s4, .dst = &d4};
    /* too small: -ENOSPC and nothing written, at every capacity below the size */
    int n = sk_proxy_write(buf, sizeof buf, &o);
    CHECK(n == 28);
    for (size_t cap = 0; cap < 28; cap++) {
        memset(buf, 0x5a, sizeof buf);
        CHECK(sk_proxy_write(buf, cap, &o) == -ENOSPC);
        CHECK(buf[0] == 0x5a && buf[cap ? cap - 1 : 0] == 0x5a);
    }
    o.version = 1;
    n = sk_proxy_write(buf, sizeof buf, &o);
    CHECK(n == 43);
    CHECK(sk_proxy_write(buf, 42, &o) == -ENOSPC);
    CHECK(sk_proxy_write(NULL, 0, &o) == -ENOSPC);
    /* what the protocol cannot say */
    sk_proxy_write_opts bad = o;
    bad.version = 3;
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.dst = &d6; /* families differ */
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.dst = NULL; /* one address alone */
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.alpn.data = (const uint8_t *)"h2"; /* v1 has no TLVs */
    bad.alpn.len = 2;
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.crc32c = true;
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.transport = SK_PROXY_DGRAM; /* v1 has no UDP */
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.command = (sk_proxy_command)2;
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad = o;
    bad.version = 2;
    uint8_t id[129] = {0};
    bad.unique_id.data = id;
    bad.unique_id.len = 129;
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == -EINVAL);
    bad.unique_id.len = 128;
    CHECK(sk_proxy_write(buf, sizeof buf, &bad) == 28 + 131);
    /* over 4096 bytes in all */
    static uint8_t big[4096];
    bad.unique_id.data = NULL;
    bad.authority.data = big;
    bad.authority.len = 4096 - 16 - 12 - 3;
    static uint8_t out[8192];
    CHECK(sk_proxy_write(out, sizeof out, &bad) == 4096);
    bad.authority.len++;
    CHECK(sk_proxy_write(out, sizeof out, &bad) == -EINVAL);
    bad.authority.len = (size_t)-1;
    CHECK(sk_proxy_write(out, sizeof out, &bad) == -EINVAL);
    CHECK(sk_proxy_write(buf, sizeof buf, NULL) == -EINVAL);
}

TEST(proxy_strerror)
{
    static const int codes[] = {
        SK_PROXY_BAD_SIGNATURE, SK_PROXY_TRUNCATED,   SK_PROXY_TOO_LONG, SK_PROXY_BAD_SYNTAX,
        SK_PROXY_BAD_LINE_END,  SK_PROXY_BAD_ADDRESS, SK_PROXY_BAD_PORT, SK_PROXY_BAD_VERSION,
        SK_PROXY_BAD_COMMAND,   SK_PROXY_BAD_FAMILY,  SK_PROXY_BAD_TLV,  SK_PROXY_CRC_MISMATCH,
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = sk_proxy_strerror(codes[i]);
        CHECK(s && strncmp(s, "the PROXY ", 10) == 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, sk_proxy_strerror(codes[j])) != 0);
    }
    /* anything else is sk_strerror's */
    CHECK(strcmp(sk_proxy_strerror(-ENOSPC), sk_strerror(-ENOSPC)) == 0);
    CHECK(sk_proxy_strerror(12345) != NULL);
}
