/* Internal: what proxy.c (version detection, v1) calls in proxy_v2.c (the binary header).
 * The arrow points one way only: proxy_v2.c needs nothing from proxy.c. */
#ifndef SOCKIT_PROXY_INTERNAL_H
#define SOCKIT_PROXY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sockit/proxy.h>

/* The 12 bytes every v2 header starts with. */
extern const uint8_t sk__proxy_v2_sig[12];

/* p[0..len) begins with as much of the signature as len allows (at least 1 byte). Returns as
 * sk_proxy_parse does; out is filled only on success. */
int sk__proxy_parse_v2(const uint8_t *p, size_t len, sk_proxy_header *out);

/* o is checked by sk_proxy_write: command and transport in range, src and dst both NULL (no
 * address, or LOCAL) or both of one family, AF_INET, AF_INET6 or AF_UNIX. */
int sk__proxy_write_v2(uint8_t *buf, size_t cap, const sk_proxy_write_opts *o, const sk_addr *src,
                       const sk_addr *dst);

#endif
