/* sockit — IP address ranges ("10.0.0.0/8", "::1/128") for allow and deny lists.
 *
 * Pure functions: no allocation, no system calls, safe to fuzz. An IPv4 range matches IPv4
 * peers, including those a dual-stack ([::]) listener sees as IPv4-mapped IPv6 addresses
 * (::ffff:10.1.2.3); an IPv6 range matches IPv6 peers only. A Unix socket peer matches nothing.
 */
#ifndef SOCKIT_CIDR_H
#define SOCKIT_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network address (4 bytes used for AF_INET); host bits are zero */
    uint8_t prefix;   /* 0-32 (AF_INET) or 0-128 (AF_INET6) */
} sk_cidr;

/* Parse "ADDR/PREFIX" or a bare "ADDR" (one host: /32 or /128). Bits past the prefix are
 * cleared ("10.1.2.3/8" is 10.0.0.0/8). Returns 0, or -EINVAL with a sentence in err (when err
 * is not NULL) naming the bad part, e.g. "prefix 33 is too long for IPv4 (use 0-32)". */
int sk_cidr_parse(const char *text, sk_cidr *out, char *err, size_t errlen);

/* Does the range hold this address (the port is ignored)? */
bool sk_cidr_match(const sk_cidr *cidr, const sk_addr *addr);
/* The same on raw bytes: family AF_INET with 4 bytes, or AF_INET6 with 16. */
bool sk_cidr_match_ip(const sk_cidr *cidr, int family, const uint8_t *ip);

/* Format as "10.0.0.0/8" or "2001:db8::/32"; as snprintf. SK_CIDR_STRLEN fits anything. */
#define SK_CIDR_STRLEN 64
int sk_cidr_format(const sk_cidr *cidr, char *buf, size_t len);

/* Admit addr? Deny wins; with a non-empty allow list, only what it holds is admitted. A peer
 * that is not IPv4 or IPv6 (a Unix socket's) is always admitted: file permissions guard it. */
bool sk_cidr_admit(const sk_cidr *allow, size_t nallow, const sk_cidr *deny, size_t ndeny,
                   const sk_addr *addr);

#ifdef __cplusplus
}
#endif
#endif
