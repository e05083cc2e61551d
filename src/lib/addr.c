/* Addresses: parse text into a spec, resolve a spec into socket addresses, format them back.
 *
 * The parser is pure and fuzzed: it only ever reads up to the text's NUL, bounds every copy, and
 * on failure writes one sentence naming the bad part and how to write it instead. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include <sockit/addr.h>
#include <sockit/error.h>

#include "internal.h"

#define EMPTY_HELP "write HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH"
#define RANGE_HELP "use 1-65535, or 0 for any free port"
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
/* How much of a bad input an error message quotes; the rest becomes "...". */
#define QUOTE_MAX 48

/* ---- error text ---- */

/* A printable, bounded copy of s[0..n) for quoting in an error: input is untrusted and may hold
 * control bytes or be very long. */
typedef struct quoted {
    char s[QUOTE_MAX + 4];
} quoted;

static quoted quote(const char *s, size_t n)
{
    quoted q;
    size_t k = n < QUOTE_MAX ? n : QUOTE_MAX;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        q.s[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    strcpy(q.s + k, n > k ? "..." : "");
    return q;
}

/* ---- small text helpers ---- */

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool has_prefix_nocase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- parsing ---- */

/* The text after the last ':' (NUL-terminated). Digits only; 0 is allowed (any free port). */
static int parse_port(const char *s, uint16_t *port, const char *before, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0)
        return sk__fail_text(err, errlen,
                             "missing port after '%s:' (write %s:PORT, with PORT 1-65535)",
                             quote(before, strlen(before)).s, quote(before, strlen(before)).s);
    if (s[0] == '-' && all_digits(s + 1))
        return sk__fail_text(err, errlen, "port %s is out of range (" RANGE_HELP ")",
                             quote(s, n).s);
    if (!all_digits(s))
        return sk__fail_text(err, errlen, "port '%s' is not a number (use 1-65535)", quote(s, n).s);
    unsigned long value = 0;
    for (const char *p = s; *p && value <= 65535; p++)
        value = value * 10 + (unsigned long)(*p - '0');
    if (value > 65535)
        return sk__fail_text(err, errlen, "port %s is out of range (" RANGE_HELP ")",
                             quote(s, n).s);
    *port = (uint16_t)value;
    return 0;
}

static int use_default_port(int default_port, uint16_t *port, const char *host, char *err,
                            size_t errlen)
{
    if (default_port < 0) {
        quoted q = quote(host, strlen(host));
        return sk__fail_text(err, errlen, "missing port in '%s' (write %s:PORT)", q.s, q.s);
    }
    *port = (uint16_t)default_port;
    return 0;
}

/* "unix:" was written; s is what follows. A leading '@' selects the abstract namespace. */
static int parse_unix(const char *s, sk_addrspec *spec, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0)
        return sk__fail_text(err, errlen,
                             "empty Unix socket path (write unix:/path/to/socket or "
                             "unix:@NAME)");
    if (s[0] == '@' && n == 1)
        return sk__fail_text(err, errlen,
                             "empty abstract socket name after '@' (write unix:@NAME)");
    if (s[0] == '@' && n >= sizeof spec->path)
        return sk__fail_text(err, errlen,
                             "abstract socket name too long (at most %zu bytes after '@')",
                             sizeof spec->path - 2);
    if (n >= sizeof spec->path)
        return sk__fail_text(err, errlen, "Unix socket path too long (at most %zu bytes)",
                             sizeof spec->path - 1);
    memcpy(spec->path, s, n + 1);
    spec->is_unix = true;
    return 0;
}

/* A bare host name or IPv4 address: no brackets, no ':', nothing that cannot be in a name. */
static int check_host(const char *host, size_t n, char *err, size_t errlen)
{
    if (n >= sizeof(((sk_addrspec *)0)->host))
        return sk__fail_text(err, errlen, "host name too long (%zu characters; at most 255)", n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c > 0x20 && c != 0x7f && !strchr("/[]@%", c))
            continue;
        quoted q = quote(host, n);
        if (c == ' ')
            return sk__fail_text(err, errlen, "host name '%s' contains a space", q.s);
        if (c <= 0x20 || c == 0x7f)
            return sk__fail_text(err, errlen, "host name '%s' contains control character 0x%02x",
                                 q.s, c);
        return sk__fail_text(err, errlen,
                             "host name '%s' contains '%c' (write HOST:PORT, e.g. "
                             "localhost:8080)",
                             q.s, c);
    }
    return 0;
}

/* A name to show in "[fe80::1%NAME]": the first interface that is up and has a link-local
 * address of its own, or "IFACE". It only shapes an error's wording; whether text parses never
 * depends on this machine. */
static void example_interface(char *name, size_t len)
{
    struct ifaddrs *list;
    snprintf(name, len, "IFACE");
    if (getifaddrs(&list) != 0)
        return;
    for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6 || !(i->ifa_flags & IFF_UP) ||
            (i->ifa_flags & IFF_LOOPBACK))
            continue;
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)i->ifa_addr;
        if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) {
            snprintf(name, len, "%s", i->ifa_name);
            break;
        }
    }
    freeifaddrs(list);
}

/* A link-local address (fe80::/10, ff02::/16) exists once per link, so the kernel refuses to
 * bind or connect to one without its interface, with a bare EINVAL; say here what to write. */
static int require_zone(const char *ip, const struct in6_addr *bin, uint16_t port, char *err,
                        size_t errlen)
{
    if (!IN6_IS_ADDR_LINKLOCAL(bin) && !IN6_IS_ADDR_MC_LINKLOCAL(bin))
        return 0;
    char iface[IF_NAMESIZE];
    example_interface(iface, sizeof iface);
    return sk__fail_text(err, errlen,
                         "%s is a link-local address: add the interface, as in [%s%%%s]:%u", ip, ip,
                         iface, (unsigned)port);
}

/* "[IPV6]" or "[IPV6%ZONE]", optionally followed by ":PORT". */
static int parse_bracketed(const char *s, int default_port, sk_addrspec *spec, char *err,
                           size_t errlen)
{
    const char *close = strchr(s, ']');
    if (!close) {
        quoted q = quote(s, strlen(s));
        return sk__fail_text(
            err, errlen, "missing ']' after IPv6 address '%s' (write it as %s]:PORT)", q.s, q.s);
    }
    const char *inner = s + 1;
    size_t n = (size_t)(close - inner);
    quoted q = quote(s, (size_t)(close - s) + 1);
    if (n == 0)
        return sk__fail_text(err, errlen, "empty IPv6 address '[]' (write it as e.g. [::1]:PORT)");
    const char *pct = memchr(inner, '%', n);
    size_t ip_len = pct ? (size_t)(pct - inner) : n;
    char ip[INET6_ADDRSTRLEN];
    struct in6_addr bin;
    if (ip_len >= sizeof ip)
        return sk__fail_text(err, errlen, "'%s' is not an IPv6 address (too long)", q.s);
    memcpy(ip, inner, ip_len);
    ip[ip_len] = '\0';
    if (inet_pton(AF_INET6, ip, &bin) != 1)
        return sk__fail_text(err, errlen,
                             "'%s' is not an IPv6 address (brackets are only for IPv6, "
                             "e.g. [::1]:PORT)",
                             q.s);
    if (pct) {
        size_t zone_len = n - ip_len - 1;
        if (zone_len == 0)
            return sk__fail_text(err, errlen,
                                 "empty zone after '%%' in '%s' (write e.g. "
                                 "[fe80::1%%eth0]:PORT)",
                                 q.s);
        if (zone_len >= IF_NAMESIZE)
            return sk__fail_text(err, errlen,
                                 "zone in '%s' is too long (an interface name has at most "
                                 "%d characters)",
                                 q.s, IF_NAMESIZE - 1);
        for (const char *z = pct + 1; z < close; z++)
            if ((unsigned char)*z <= 0x20 || *z == 0x7f || *z == '/' || *z == '[')
                return sk__fail_text(err, errlen, "zone in '%s' is not an interface name or number",
                                     q.s);
    }
    memcpy(spec->host, inner, n); /* n <= 45 + 1 + 15, well within host[] */
    spec->host[n] = '\0';
    const char *after = close + 1;
    int rc;
    if (*after == '\0') {
        rc = use_default_port(default_port, &spec->port, q.s, err, errlen);
    } else if (*after == ':') {
        rc = parse_port(after + 1, &spec->port, q.s, err, errlen);
    } else {
        quoted a = quote(after, strlen(after));
        return sk__fail_text(err, errlen, "unexpected '%s' after '%s' (write [IPV6]:PORT)", a.s,
                             q.s);
    }
    if (rc || pct)
        return rc;
    return require_zone(ip, &bin, spec->port, err, errlen); /* after the port: the fix shows it */
}

/* HOST:PORT, :PORT, HOST alone, or PORT alone (all digits). */
static int parse_host_port(const char *s, int default_port, sk_addrspec *spec, char *err,
                           size_t errlen)
{
    const char *colon = strchr(s, ':');
    if (colon && strchr(colon + 1, ':'))
        return sk__fail_text(err, errlen,
                             "'%s' has more than one ':'; an IPv6 address needs brackets: "
                             "[2001:db8::1]:PORT",
                             quote(s, strlen(s)).s);
    if (!colon && all_digits(s))
        return parse_port(s, &spec->port, "", err, errlen);
    size_t host_len = colon ? (size_t)(colon - s) : strlen(s);
    int rc = check_host(s, host_len, err, errlen);
    if (rc)
        return rc;
    memcpy(spec->host, s, host_len);
    spec->host[host_len] = '\0';
    if (!colon)
        return use_default_port(default_port, &spec->port, spec->host, err, errlen);
    return parse_port(colon + 1, &spec->port, spec->host, err, errlen);
}

static const struct {
    const char *prefix;
    sk_scheme scheme;
} schemes[] = {
    {"tcp://", SK_SCHEME_TCP},
    {"udp://", SK_SCHEME_UDP},
    {"tls://", SK_SCHEME_TLS},
    {"unix://", SK_SCHEME_UNIX},
    {"unix-dgram://", SK_SCHEME_UNIX_DGRAM},
};

/* Takes "NAME://" off the front of *s. Text without "://", or whose part before it cannot be a
 * scheme name (like "[::1]"), has no scheme and is left for the address parser. */
static int parse_scheme(const char **s, sk_scheme *scheme, char *err, size_t errlen)
{
    const char *sep = strstr(*s, "://");
    if (!sep || sep == *s)
        return 0;
    for (const char *p = *s; p < sep; p++) {
        bool letter = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
        bool other = (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.';
        if (!letter && !(other && p > *s))
            return 0;
    }
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (has_prefix_nocase(*s, schemes[i].prefix)) {
            *scheme = schemes[i].scheme;
            *s += strlen(schemes[i].prefix);
            return 0;
        }
    }
    return sk__fail_text(err, errlen,
                         "unknown scheme '%s://' (use tcp://, udp://, tls://, unix:// or "
                         "unix-dgram://)",
                         quote(*s, (size_t)(sep - *s)).s);
}

SK_API int sk_addr_parse(const char *text, int default_port, sk_addrspec *spec, char *err,
                         size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!spec)
        return sk__fail_text(err, errlen, "no place to store the parsed address");
    memset(spec, 0, sizeof *spec);
    if (default_port < -1 || default_port > 65535)
        return sk__fail_text(err, errlen,
                             "default port %d is out of range (use 0-65535, or -1 to "
                             "require a port)",
                             default_port);
    if (!text || !*text)
        return sk__fail_text(err, errlen, "empty address (" EMPTY_HELP ")");
    const char *s = text;
    int rc = parse_scheme(&s, &spec->scheme, err, errlen);
    if (rc)
        return rc;
    if (spec->scheme == SK_SCHEME_UNIX || spec->scheme == SK_SCHEME_UNIX_DGRAM)
        return parse_unix(s, spec, err, errlen); /* unix:///tmp/s: the path is "/tmp/s" */
    if (spec->scheme == SK_SCHEME_NONE && has_prefix_nocase(s, "unix-dgram:")) {
        spec->scheme = SK_SCHEME_UNIX_DGRAM; /* unix-dgram:/tmp/s, as unix:/tmp/s */
        return parse_unix(s + 11, spec, err, errlen);
    }
    if (has_prefix_nocase(s, "unix:")) {
        if (spec->scheme == SK_SCHEME_NONE)
            spec->scheme = SK_SCHEME_UNIX; /* so unix:/tmp/s and unix:///tmp/s are equal */
        return parse_unix(s + 5, spec, err, errlen);
    }
    if (!*s)
        return sk__fail_text(err, errlen, "empty address after '%s' (" EMPTY_HELP ")",
                             quote(text, strlen(text)).s);
    if (*s == '[')
        return parse_bracketed(s, default_port, spec, err, errlen);
    return parse_host_port(s, default_port, spec, err, errlen);
}

/* ---- building addresses ---- */

/* A zone is an interface name (eth0) or its index (2; 0 is no interface). False when this
 * machine has no such interface. */
static bool zone_index(const char *zone, unsigned *index)
{
    char name[IF_NAMESIZE];
    if (all_digits(zone)) {
        unsigned long v = strtoul(zone, NULL, 10);
        *index = v <= 0xffffffffUL ? (unsigned)v : 0;
        return v == 0 || (*index != 0 && if_indextoname(*index, name));
    }
    *index = if_nametoindex(zone);
    return *index != 0;
}

static int from_ipv6(sk_addr *out, const char *ip, uint16_t port)
{
    char text[INET6_ADDRSTRLEN];
    const char *pct = strchr(ip, '%');
    size_t n = pct ? (size_t)(pct - ip) : strlen(ip);
    if (n >= sizeof text)
        return -EINVAL;
    memcpy(text, ip, n);
    text[n] = '\0';
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (inet_pton(AF_INET6, text, &sin6.sin6_addr) != 1)
        return -EINVAL;
    if (pct) {
        if (!pct[1] || strlen(pct + 1) >= IF_NAMESIZE)
            return -EINVAL;
        unsigned index;
        if (!zone_index(pct + 1, &index))
            return SK_ERR_NOIFACE;
        sin6.sin6_scope_id = index;
    }
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, &sin6, sizeof sin6);
    out->len = sizeof sin6;
    return 0;
}

SK_API int sk_addr_from_ip(sk_addr *out, const char *ip, uint16_t port)
{
    if (!out || !ip)
        return -EINVAL;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &sin.sin_addr) == 1) {
        memset(out, 0, sizeof *out);
        memcpy(&out->ss, &sin, sizeof sin);
        out->len = sizeof sin;
        return 0;
    }
    return from_ipv6(out, ip, port);
}

SK_API int sk_addr_from_unix(sk_addr *out, const char *path)
{
    if (!out || !path || !*path)
        return -EINVAL;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t base = offsetof(struct sockaddr_un, sun_path);
    size_t n = strlen(path);
    size_t len;
    if (path[0] == '@') {
        /* Abstract: a leading NUL, then the name's bytes, no terminator; the length ends it. */
        if (n < 2 || n > SUN_PATH_MAX)
            return -EINVAL;
        memcpy(sun.sun_path + 1, path + 1, n - 1);
        len = base + n;
    } else {
        if (n >= SUN_PATH_MAX)
            return -EINVAL;
        memcpy(sun.sun_path, path, n + 1);
        len = base + n + 1;
    }
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, &sun, sizeof sun);
    out->len = (socklen_t)len;
    return 0;
}

/* ---- resolving ---- */

static int map_gai_error(int rc, int saved_errno)
{
    switch (rc) {
    case EAI_NONAME:
    case EAI_FAIL: return SK_ERR_NONAME;
#ifdef EAI_NODATA
    case EAI_NODATA: return SK_ERR_NODATA;
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return SK_ERR_NODATA;
#endif
    case EAI_AGAIN: return SK_ERR_DNSFAIL;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return saved_errno ? -saved_errno : -EIO;
    default: return -EINVAL;
    }
}

static void set_port(sk_addr *a, uint16_t port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)&a->ss)->sin_port = htons(port);
    else if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)&a->ss)->sin6_port = htons(port);
}

/* Appends a to out[0..*count) unless it is already there or out is full. */
static void add_unique(sk_addr *out, size_t max, size_t *count, const struct sockaddr *sa,
                       socklen_t len)
{
    if (*count >= max || len > sizeof out->ss)
        return;
    for (size_t i = 0; i < *count; i++)
        if (out[i].len == len && memcmp(&out[i].ss, sa, len) == 0)
            return;
    memset(&out[*count], 0, sizeof out[*count]);
    memcpy(&out[*count].ss, sa, len);
    out[*count].len = len;
    (*count)++;
}

/* A name, through getaddrinfo (this may block). IPv4 first: clients default to it (Python's
 * socket() is AF_INET), so a server on "localhost" must be on 127.0.0.1 to be reached by them. */
static int resolve_name(const char *host, uint16_t port, int flags, sk_addr *out, size_t max)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (flags & SK_RESOLVE_PASSIVE)
        hints.ai_flags |= AI_PASSIVE;
    struct addrinfo *list = NULL;
    errno = 0;
    int rc = getaddrinfo(host, NULL, &hints, &list);
    if (rc)
        return map_gai_error(rc, errno);
    size_t count = 0;
    static const int order[] = {AF_INET, AF_INET6};
    for (size_t f = 0; f < 2; f++)
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
            if (ai->ai_family == order[f])
                add_unique(out, max, &count, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(list);
    for (size_t i = 0; i < count; i++)
        set_port(&out[i], port);
    return count ? (int)count : SK_ERR_NODATA;
}

/* No host: the wildcard for a listener ([::] first, which is dual-stack where the OS allows),
 * the loopback for a client (IPv4 first, as for names). */
static int resolve_empty(uint16_t port, int flags, sk_addr *out, size_t max)
{
    bool passive = flags & SK_RESOLVE_PASSIVE;
    const char *first = passive ? "::" : "127.0.0.1";
    const char *second = passive ? "0.0.0.0" : "::1";
    int rc = sk_addr_from_ip(&out[0], first, port);
    if (rc || max < 2)
        return rc ? rc : 1;
    rc = sk_addr_from_ip(&out[1], second, port);
    return rc ? rc : 2;
}

SK_API int sk_addr_resolve(const sk_addrspec *spec, int flags, sk_addr *out, size_t max)
{
    if (!spec || !out || max == 0)
        return -EINVAL;
    if (spec->is_unix) {
        if (strnlen(spec->path, sizeof spec->path) == sizeof spec->path)
            return -ENAMETOOLONG;
        int rc = sk_addr_from_unix(out, spec->path);
        return rc ? rc : 1;
    }
    if (strnlen(spec->host, sizeof spec->host) == sizeof spec->host)
        return -ENAMETOOLONG;
    if (!spec->host[0])
        return resolve_empty(spec->port, flags, out, max);
    /* Numeric hosts never reach getaddrinfo, so they can never block on a name server. */
    int rc = sk_addr_from_ip(out, spec->host, spec->port);
    if (rc == 0)
        return 1;
    if (rc == SK_ERR_NOIFACE)
        return rc;
    if (strchr(spec->host, ':') || strchr(spec->host, '%'))
        return -EINVAL; /* a bad IPv6 literal, not a name to look up */
    return resolve_name(spec->host, spec->port, flags, out, max);
}

/* ---- formatting ---- */

/* Copies n bytes of a socket path, with '?' for bytes a terminal should not see. */
static void copy_printable(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[n] = '\0';
}

static void format_unix(const sk_addr *addr, size_t len, char *tmp)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)&addr->ss;
    size_t base = offsetof(struct sockaddr_un, sun_path);
    size_t n = len > base ? len - base : 0;
    if (n > SUN_PATH_MAX)
        n = SUN_PATH_MAX;
    if (n == 0) {
        strcpy(tmp, "unix:"); /* unnamed, as for the client end of most connections */
    } else if (sun->sun_path[0] == '\0') {
        strcpy(tmp, "unix:@");
        copy_printable(tmp + 6, sun->sun_path + 1, n - 1);
    } else {
        strcpy(tmp, "unix:");
        copy_printable(tmp + 5, sun->sun_path, strnlen(sun->sun_path, n));
    }
}

static void format_ipv6(const sk_addr *addr, char *tmp, size_t size)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)&addr->ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    char zone[IF_NAMESIZE + 12] = "";
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
    if (sin6->sin6_scope_id) {
        char name[IF_NAMESIZE];
        if (if_indextoname(sin6->sin6_scope_id, name))
            snprintf(zone, sizeof zone, "%%%s", name);
        else
            snprintf(zone, sizeof zone, "%%%u", (unsigned)sin6->sin6_scope_id);
    }
    snprintf(tmp, size, "[%s%s]:%u", ip, zone, (unsigned)ntohs(sin6->sin6_port));
}

SK_API int sk_addr_format(const sk_addr *addr, char *buf, size_t len)
{
    /* Room for the longest case: "unix:@" and 107 name bytes. */
    char tmp[SK_ADDR_STRLEN];
    size_t addr_len = addr ? addr->len : 0;
    if (addr_len > sizeof addr->ss)
        addr_len = sizeof addr->ss;
    if (!addr) {
        strcpy(tmp, "(none)");
    } else if (addr->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)&addr->ss;
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        snprintf(tmp, sizeof tmp, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (addr->ss.ss_family == AF_INET6) {
        format_ipv6(addr, tmp, sizeof tmp);
    } else if (addr->ss.ss_family == AF_UNIX) {
        format_unix(addr, addr_len, tmp);
    } else {
        snprintf(tmp, sizeof tmp, "(address family %d)", (int)addr->ss.ss_family);
    }
    if (!buf)
        len = 0;
    return snprintf(buf, len, "%s", tmp);
}

/* ---- accessors ---- */

SK_API int sk_addr_family(const sk_addr *addr)
{
    return addr ? addr->ss.ss_family : AF_UNSPEC;
}

SK_API uint16_t sk_addr_port(const sk_addr *addr)
{
    if (!addr)
        return 0;
    if (addr->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&addr->ss)->sin_port);
    if (addr->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)&addr->ss)->sin6_port);
    return 0;
}

SK_API bool sk_addr_is_unix(const sk_addr *addr)
{
    return addr && addr->ss.ss_family == AF_UNIX;
}
