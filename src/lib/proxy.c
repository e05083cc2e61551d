/* The PROXY protocol header (doc/proxy-protocol.txt): which version a buffer starts with, the
 * v1 text line both ways, the error sentences. The binary v2 header is in proxy_v2.c, which
 * this file calls (never the other way). Pure
 * functions on buffers, no allocation, so the fuzzer can drive them with any bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "proxy_internal.h"

#define V1_SIG "PROXY "
#define V1_SIG_LEN 6u

/* ---- v1: "PROXY TCP4 SRC DST SPORT DPORT\r\n" ---- */

/* A dotted quad exactly as the spec writes it: four numbers 0-255, no leading zeros. inet_pton
 * would do on glibc, but the spec's rule is ours to enforce, not a libc's choice. */
static bool parse_ipv4(const uint8_t *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t digits = i - start;
        if (digits == 0 || v > 255 || (digits > 1 && s[start] == '0'))
            return false;
        out[part] = (uint8_t)v;
    }
    return i == n;
}

/* IPv6 text as inet_pton accepts it. Only hex digits, ':' and '.' (an embedded IPv4 tail) may
 * appear: the copy handed to inet_pton must not end early at a NUL or a '%zone'. */
static bool parse_ipv6(const uint8_t *s, size_t n, struct in6_addr *out)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof text)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex && c != ':' && c != '.')
            return false;
    }
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET6, text, out) == 1;
}

/* 0-65535 in decimal; "0" is the only number that may start with 0 (no octal look-alikes). */
static bool parse_port(const uint8_t *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static void set_inet(sk_addr *a, const uint8_t ip[4], uint16_t port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    memcpy(&sin.sin_addr, ip, 4);
    memset(a, 0, sizeof *a);
    memcpy(&a->ss, &sin, sizeof sin);
    a->len = sizeof sin;
}

static void set_inet6(sk_addr *a, const uint8_t ip[16], uint16_t port)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    memcpy(&sin6.sin6_addr, ip, 16);
    memset(a, 0, sizeof *a);
    memcpy(&a->ss, &sin6, sizeof sin6);
    a->len = sizeof sin6;
}

/* The protocol words a v1 line may carry. The bytes before the line is complete are checked
 * against them at once, so "PROXY HTTP..." fails at its 'H' instead of after 107 bytes. */
static const char *const v1_words[] = {"TCP4", "TCP6", "UNKNOWN"};

static bool v1_word_could_be(const uint8_t *s, size_t n)
{
    for (size_t w = 0; w < sizeof v1_words / sizeof v1_words[0]; w++) {
        size_t wl = strlen(v1_words[w]);
        if (memcmp(s, v1_words[w], n < wl ? n : wl) == 0)
            return true;
    }
    return false;
}

/* The line after "PROXY ", without its CRLF: s[0..n). */
static int parse_v1_line(const uint8_t *s, size_t n, sk_proxy_header *h)
{
    size_t wl = 0;
    while (wl < n && s[wl] != ' ')
        wl++;
    if (wl == 7 && memcmp(s, "UNKNOWN", 7) == 0) {
        /* The spec: "the receiver must ignore anything presented before the CRLF". */
        h->transport = SK_PROXY_UNSPEC;
        return 0;
    }
    bool v6;
    if (wl == 4 && memcmp(s, "TCP4", 4) == 0)
        v6 = false;
    else if (wl == 4 && memcmp(s, "TCP6", 4) == 0)
        v6 = true;
    else
        return SK_PROXY_BAD_FAMILY;

    /* Exactly four fields, each after exactly one space: an empty field is a doubled space, a
     * leading or a trailing one. */
    const uint8_t *field[4];
    size_t flen[4];
    size_t i = wl, count = 0;
    while (i < n) {
        /* here s[i] == ' ' */
        size_t start = ++i;
        while (i < n && s[i] != ' ')
            i++;
        if (i == start || count == 4)
            return SK_PROXY_BAD_SYNTAX;
        field[count] = s + start;
        flen[count] = i - start;
        count++;
    }
    if (count != 4)
        return SK_PROXY_BAD_SYNTAX;

    uint16_t sport, dport;
    if (v6) {
        struct in6_addr a, b;
        if (!parse_ipv6(field[0], flen[0], &a) || !parse_ipv6(field[1], flen[1], &b))
            return SK_PROXY_BAD_ADDRESS;
        if (!parse_port(field[2], flen[2], &sport) || !parse_port(field[3], flen[3], &dport))
            return SK_PROXY_BAD_PORT;
        set_inet6(&h->src, a.s6_addr, sport);
        set_inet6(&h->dst, b.s6_addr, dport);
    } else {
        uint8_t a[4], b[4];
        if (!parse_ipv4(field[0], flen[0], a) || !parse_ipv4(field[1], flen[1], b))
            return SK_PROXY_BAD_ADDRESS;
        if (!parse_port(field[2], flen[2], &sport) || !parse_port(field[3], flen[3], &dport))
            return SK_PROXY_BAD_PORT;
        set_inet(&h->src, a, sport);
        set_inet(&h->dst, b, dport);
    }
    h->transport = SK_PROXY_STREAM;
    return 0;
}

/* p starts with "PROXY " (all 6 bytes are there). */
static int parse_v1(const uint8_t *p, size_t len, sk_proxy_header *out)
{
    size_t window = len < SK_PROXY_V1_MAX_LEN ? len : SK_PROXY_V1_MAX_LEN;
    const uint8_t *lf = memchr(p, '\n', window);
    if (!lf) {
        if (!v1_word_could_be(p + V1_SIG_LEN, window - V1_SIG_LEN))
            return SK_PROXY_BAD_FAMILY;
        return len >= SK_PROXY_V1_MAX_LEN ? SK_PROXY_TOO_LONG : 0;
    }
    size_t end = (size_t)(lf - p); /* >= 6: "PROXY " holds no LF */
    if (p[end - 1] != '\r')
        return SK_PROXY_BAD_LINE_END; /* the spec: a lone LF must not end the line */
    sk_proxy_header h;
    memset(&h, 0, sizeof h);
    h.version = 1;
    h.command = SK_PROXY_CMD_PROXY;
    int rc = parse_v1_line(p + V1_SIG_LEN, end - 1 - V1_SIG_LEN, &h);
    if (rc < 0)
        return rc;
    *out = h;
    return (int)end + 1;
}

static int parse_any(const void *data, size_t len, bool datagram, sk_proxy_header *out)
{
    const uint8_t *p = data;
    if (len == 0)
        return datagram ? SK_PROXY_TRUNCATED : 0;
    if (!p || !out)
        return -EINVAL;
    /* Judge the bytes that are here: once one differs from both signatures, no more bytes can
     * make a header of it. Their first bytes differ ('P' and CR), so at most one matches. */
    size_t n1 = len < V1_SIG_LEN ? len : V1_SIG_LEN;
    size_t n2 = len < sizeof sk__proxy_v2_sig ? len : sizeof sk__proxy_v2_sig;
    if (memcmp(p, sk__proxy_v2_sig, n2) == 0) {
        int rc = sk__proxy_parse_v2(p, len, out);
        return rc == 0 && datagram ? SK_PROXY_TRUNCATED : rc;
    }
    if (datagram || memcmp(p, V1_SIG, n1) != 0)
        return SK_PROXY_BAD_SIGNATURE;
    if (len < V1_SIG_LEN)
        return 0;
    return parse_v1(p, len, out);
}

SK_API int sk_proxy_parse(const void *data, size_t len, sk_proxy_header *out)
{
    return parse_any(data, len, false, out);
}

SK_API int sk_proxy_parse_datagram(const void *data, size_t len, sk_proxy_header *out)
{
    return parse_any(data, len, true, out);
}

SK_API const char *sk_proxy_strerror(int err)
{
    switch (err) {
    case SK_PROXY_BAD_SIGNATURE:
        return "the PROXY header is missing: the data starts with neither \"PROXY \" (v1) nor "
               "the v2 signature";
    case SK_PROXY_TRUNCATED:
        return "the PROXY header is truncated: the datagram ends before the header does";
    case SK_PROXY_TOO_LONG:
        return "the PROXY header is too long: a v1 line needs its CRLF within 107 bytes, a v2 "
               "header may hold at most 4096 bytes";
    case SK_PROXY_BAD_SYNTAX:
        return "the PROXY v1 line is malformed: it must be \"PROXY TCP4|TCP6 SRC DST SPORT "
               "DPORT\" with single spaces";
    case SK_PROXY_BAD_LINE_END:
        return "the PROXY v1 line ends with a bare LF: it must end with CR LF";
    case SK_PROXY_BAD_ADDRESS:
        return "the PROXY header has a bad address: not canonical text (v1), or an address "
               "block shorter than its family needs (v2)";
    case SK_PROXY_BAD_PORT:
        return "the PROXY v1 line has a bad port: it must be 0-65535 in decimal without "
               "leading zeros";
    case SK_PROXY_BAD_VERSION: return "the PROXY v2 header has a version other than 2";
    case SK_PROXY_BAD_COMMAND:
        return "the PROXY v2 header has a command other than LOCAL and PROXY";
    case SK_PROXY_BAD_FAMILY:
        return "the PROXY header names an unknown protocol: v1 allows TCP4, TCP6 and UNKNOWN, "
               "v2 the families UNSPEC, TCP4, UDP4, TCP6, UDP6 and UNIX stream or datagram";
    case SK_PROXY_BAD_TLV:
        return "the PROXY v2 header has a bad TLV: one runs past the header's end, is "
               "repeated, or has a size its type does not allow";
    case SK_PROXY_CRC_MISMATCH:
        return "the PROXY v2 header's CRC32C checksum does not match its bytes";
    }
    return sk_strerror(err);
}

/* ---- writing ---- */

static int family_of(const sk_addr *a)
{
    return a->len >= sizeof(sa_family_t) ? a->ss.ss_family : AF_UNSPEC;
}

static int write_v1(uint8_t *buf, size_t cap, const sk_proxy_write_opts *o, const sk_addr *src,
                    const sk_addr *dst)
{
    if (o->alpn.data || o->authority.data || o->unique_id.data || o->ssl.present || o->crc32c)
        return -EINVAL; /* v1 has no TLVs: refusing beats dropping them silently */
    if (o->transport == SK_PROXY_DGRAM)
        return -EINVAL;
    char line[SK_PROXY_V1_MAX_LEN + 1];
    int n;
    int family = src ? family_of(src) : AF_UNSPEC;
    if (family == AF_INET || family == AF_INET6) {
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *s = &src->ss, *d = &dst->ss;
        unsigned sport, dport;
        if (family == AF_INET) {
            const struct sockaddr_in *s4 = (const void *)s, *d4 = (const void *)d;
            inet_ntop(AF_INET, &s4->sin_addr, a, sizeof a);
            inet_ntop(AF_INET, &d4->sin_addr, b, sizeof b);
            sport = ntohs(s4->sin_port);
            dport = ntohs(d4->sin_port);
        } else {
            const struct sockaddr_in6 *s6 = (const void *)s, *d6 = (const void *)d;
            inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof a);
            inet_ntop(AF_INET6, &d6->sin6_addr, b, sizeof b);
            sport = ntohs(s6->sin6_port);
            dport = ntohs(d6->sin6_port);
        }
        n = snprintf(line, sizeof line, "PROXY %s %s %s %u %u\r\n",
                     family == AF_INET ? "TCP4" : "TCP6", a, b, sport, dport);
    } else {
        /* No address, LOCAL, or a Unix socket: the spec's word for what v1 cannot say. */
        n = snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
    }
    if (n < 0 || (size_t)n >= sizeof line)
        return -EINVAL; /* cannot happen: the longest IPv6 text fits */
    if ((size_t)n > cap)
        return -ENOSPC;
    memcpy(buf, line, (size_t)n);
    return n;
}

SK_API int sk_proxy_write(void *buf, size_t cap, const sk_proxy_write_opts *o)
{
    if (!o || (!buf && cap))
        return -EINVAL;
    if (o->command != SK_PROXY_CMD_LOCAL && o->command != SK_PROXY_CMD_PROXY)
        return -EINVAL;
    if ((unsigned)o->transport > SK_PROXY_DGRAM)
        return -EINVAL;
    const sk_addr *src = o->src && o->src->len ? o->src : NULL;
    const sk_addr *dst = o->dst && o->dst->len ? o->dst : NULL;
    if (!src != !dst)
        return -EINVAL; /* the protocol has no way to send one address alone */
    if (src) {
        int family = family_of(src);
        if (family != family_of(dst))
            return -EINVAL;
        size_t need = family == AF_INET    ? sizeof(struct sockaddr_in)
                      : family == AF_INET6 ? sizeof(struct sockaddr_in6)
                      : family == AF_UNIX  ? sizeof(sa_family_t)
                                           : 0;
        if (need == 0 || src->len < need || dst->len < need || src->len > sizeof src->ss ||
            dst->len > sizeof dst->ss)
            return -EINVAL;
    }
    if (o->command == SK_PROXY_CMD_LOCAL)
        src = dst = NULL; /* LOCAL means "use the socket's own addresses": send none */
    switch (o->version) {
    case 1: return write_v1(buf, cap, o, src, dst);
    case 2: return sk__proxy_write_v2(buf, cap, o, src, dst);
    }
    return -EINVAL;
}
