/* IP ranges for allow and deny lists. Kept free of system calls besides inet_pton/inet_ntop so
 * that it can be fuzzed and unit-tested on its own. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void clear_host_bits(uint8_t *addr, unsigned nbytes, unsigned prefix)
{
    for (unsigned i = 0; i < nbytes; i++) {
        unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bits < 8)
            addr[i] &= (uint8_t)(0xff00u >> bits);
    }
}

SK_API int sk_cidr_parse(const char *text, sk_cidr *out, char *err, size_t errlen)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t iplen = slash ? (size_t)(slash - text) : strlen(text);
    if (err && errlen)
        err[0] = '\0';
    if (iplen == 0)
        return sk__fail_text(err, errlen,
                             "no address before the prefix (write e.g. 10.0.0.0/8 or ::1/128)");
    if (iplen >= sizeof ip)
        return sk__fail_text(err, errlen, "the address is too long to be IPv4 or IPv6");
    memcpy(ip, text, iplen);
    ip[iplen] = '\0';
    sk_cidr c = {0};
    unsigned max;
    if (inet_pton(AF_INET, ip, c.addr) == 1) {
        c.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, ip, c.addr) == 1) {
        c.family = AF_INET6;
        max = 128;
    } else {
        return sk__fail_text(err, errlen,
                             "'%s' is not an IPv4 or IPv6 address (write e.g. 10.0.0.0/8 "
                             "or ::1/128; names are not allowed)",
                             ip);
    }
    unsigned prefix = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p == '\0')
            return sk__fail_text(err, errlen,
                                 "nothing after '/' (write a prefix length, e.g. /24)");
        prefix = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9' || prefix > 1000)
                return sk__fail_text(err, errlen, "prefix '%s' is not a number (e.g. /24)",
                                     slash + 1);
            prefix = prefix * 10 + (unsigned)(*p - '0');
        }
        if (prefix > max)
            return sk__fail_text(err, errlen,
                                 max == 32 ? "prefix %s is too long for IPv4 (use 0-32)"
                                           : "prefix %s is too long for IPv6 (use 0-128)",
                                 slash + 1);
    }
    c.prefix = (uint8_t)prefix;
    clear_host_bits(c.addr, max / 8, prefix);
    *out = c;
    return 0;
}

SK_API bool sk_cidr_match_ip(const sk_cidr *cidr, int family, const uint8_t *ip)
{
    if (family != cidr->family)
        return false;
    unsigned full = cidr->prefix / 8, rest = cidr->prefix % 8;
    if (memcmp(cidr->addr, ip, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (ip[full] & mask) == cidr->addr[full];
}

/* The peer's IP as (family, bytes); an IPv4-mapped IPv6 address counts as IPv4. false for Unix. */
bool sk__addr_ip(const sk_addr *addr, int *family, uint8_t ip[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (addr->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->ss;
        memcpy(ip, &sin->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (addr->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->ss;
        const uint8_t *b = sin6->sin6_addr.s6_addr;
        if (memcmp(b, mapped, 12) == 0) {
            memcpy(ip, b + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(ip, b, 16);
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

SK_API bool sk_cidr_match(const sk_cidr *cidr, const sk_addr *addr)
{
    int family;
    uint8_t ip[16];
    return sk__addr_ip(addr, &family, ip) && sk_cidr_match_ip(cidr, family, ip);
}

SK_API int sk_cidr_format(const sk_cidr *cidr, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if ((cidr->family != AF_INET && cidr->family != AF_INET6) ||
        !inet_ntop(cidr->family, cidr->addr, ip, sizeof ip))
        snprintf(ip, sizeof ip, "?");
    char tmp[SK_CIDR_STRLEN];
    int n = snprintf(tmp, sizeof tmp, "%s/%u", ip, cidr->prefix);
    if (len)
        snprintf(buf, len, "%s", tmp);
    return n;
}

SK_API bool sk_cidr_admit(const sk_cidr *allow, size_t nallow, const sk_cidr *deny, size_t ndeny,
                          const sk_addr *addr)
{
    int family;
    uint8_t ip[16];
    if (!sk__addr_ip(addr, &family, ip))
        return true;
    for (size_t i = 0; i < ndeny; i++)
        if (sk_cidr_match_ip(&deny[i], family, ip))
            return false;
    if (nallow == 0)
        return true;
    for (size_t i = 0; i < nallow; i++)
        if (sk_cidr_match_ip(&allow[i], family, ip))
            return true;
    return false;
}
