/* sockit — addresses.
 *
 * Two steps, kept apart because only the second one may block:
 *   sk_addr_parse()   text -> sk_addrspec   (pure; precise error text for bad input, which for a
 *                     link-local address without its zone names an interface of this machine)
 *   sk_addr_resolve() sk_addrspec -> sk_addr[]  (getaddrinfo for names; numeric hosts never block)
 *
 * Accepted text (the scheme is optional and defaults to the caller's choice):
 *   HOST:PORT           127.0.0.1:80, localhost:8080, example.org:443
 *   [IPV6]:PORT         [::1]:80, [fe80::1%eth0]:80
 *   :PORT               every interface (IPv6 and IPv4 together where the OS allows)
 *   PORT                the same as :PORT when the whole text is digits
 *   unix:PATH           a Unix stream socket; unix:@NAME is Linux's abstract namespace
 *   unix-dgram:PATH     a Unix datagram socket (scheme SK_SCHEME_UNIX_DGRAM; also unix-dgram://)
 *   tcp:// udp:// tls:// unix:// in front of any of these (unix:///tmp/s is unix:/tmp/s)
 */
#ifndef SOCKIT_ADDR_H
#define SOCKIT_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_scheme {
    SK_SCHEME_NONE = 0, /* no scheme written */
    SK_SCHEME_TCP,
    SK_SCHEME_UDP,
    SK_SCHEME_TLS,
    SK_SCHEME_UNIX,
    SK_SCHEME_UNIX_DGRAM, /* unix-dgram:PATH */
} sk_scheme;

/* A parsed, not yet resolved address. */
typedef struct sk_addrspec {
    sk_scheme scheme;
    bool is_unix;   /* path holds the socket path; host and port are unused */
    char host[256]; /* without brackets; "" means every interface */
    uint16_t port;  /* 0 asks the OS for a free port when listening */
    char path[108]; /* Unix socket path; a leading '@' means the abstract namespace */
} sk_addrspec;

/* A concrete socket address: IPv4, IPv6 or Unix. */
typedef struct sk_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} sk_addr;

/* Parse text into spec. On failure returns -EINVAL and, when err is not NULL, writes a sentence
 * that names the bad part and the fix, e.g. "port 70000 is out of range (use 1-65535, or 0 for
 * any free port)". default_port is used when the text has none (pass -1 to require a port).
 * A link-local IPv6 address (fe80::/10, ff02::/16) is refused without its zone, as the kernel
 * would refuse it: "[fe80::1%eth0]:80", not "[fe80::1]:80". */
int sk_addr_parse(const char *text, int default_port, sk_addrspec *spec, char *err, size_t errlen);

/* Flags for sk_addr_resolve. */
enum {
    SK_RESOLVE_PASSIVE = 1, /* for bind(): "" becomes the wildcard address */
};

/* Resolve spec into at most max addresses. A name gives its IPv4 addresses first (so a server
 * on "localhost" binds 127.0.0.1, where IPv4-only clients such as Python's default socket look),
 * then IPv6. A wildcard passive spec yields [::] first (dual-stack) then 0.0.0.0. Returns the count
 * (>= 1) or a negative code (SK_ERR_NONAME, SK_ERR_NODATA, SK_ERR_DNSFAIL, SK_ERR_NOIFACE for a
 * zone that is no interface here, -EINVAL, -ENAMETOOLONG). */
int sk_addr_resolve(const sk_addrspec *spec, int flags, sk_addr *out, size_t max);

/* Build an address from a numeric IP text and port, or a Unix path. 0, -EINVAL, or
 * SK_ERR_NOIFACE for an IPv6 zone that names no interface of this machine. */
int sk_addr_from_ip(sk_addr *out, const char *ip, uint16_t port);
int sk_addr_from_unix(sk_addr *out, const char *path);

/* Format as "127.0.0.1:80", "[::1]:80" or "unix:/path" ("unix:@name" when abstract).
 * Always NUL-terminates; returns the length it wanted (like snprintf). 80 bytes always fit an IP
 * address; SK_ADDR_STRLEN fits anything. */
#define SK_ADDR_STRLEN 128
int sk_addr_format(const sk_addr *addr, char *buf, size_t len);

/* Family (AF_INET, AF_INET6, AF_UNIX) and port (0 for Unix). */
int sk_addr_family(const sk_addr *addr);
uint16_t sk_addr_port(const sk_addr *addr);
bool sk_addr_is_unix(const sk_addr *addr);

#ifdef __cplusplus
}
#endif
#endif
