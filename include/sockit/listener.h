/* sockit — a listening TCP or Unix stream socket that hands out accepted conns.
 *
 * accept4() gives non-blocking, close-on-exec sockets. When the process runs out of descriptors
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener stops watching the socket and tries again on a
 * timer, instead of spinning on a readable socket it cannot accept from; pending clients wait in
 * the kernel's backlog meanwhile. ECONNABORTED (a client that left before accept) is ignored.
 *
 * Admission control (all off by default): a limit on live conns, a limit per client IP, and
 * allow / deny lists of IP ranges (deny wins). A refused connection is accepted, sent an
 * optional one-line message with a non-blocking send, and closed; it never reaches on_accept.
 * Every refusal and every descriptor pause is counted in sk_listener_stats; the log gets at most
 * one line per cause per log_interval_ms, with the count since the previous line, so a flood of
 * connections cannot flood the log.
 */
#ifndef SOCKIT_LISTENER_H
#define SOCKIT_LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "cidr.h"
#include "conn.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_listener sk_listener;

typedef struct sk_listen_options {
    int backlog;        /* 0: SOMAXCONN */
    bool reuseport;     /* SO_REUSEPORT, for one listener per worker thread */
    bool v6only;        /* on [::]: IPv6 only (default: dual-stack where the OS allows) */
    uint32_t retry_ms;  /* pause after EMFILE and friends; 0: 100 ms */
    uint32_t unix_mode; /* chmod for a Unix socket path; 0: leave the umask's result */
    /* Admission control. A conn counts as live from accept until its fd is closed, even after
     * sk_listener_close(). */
    uint32_t max_conns;   /* live conns from this listener; 0: no limit */
    uint32_t max_per_ip;  /* live conns per client IP address; 0: no limit (IP peers only) */
    const sk_cidr *allow; /* if allow_count > 0, only these ranges (IP peers only) */
    size_t allow_count;
    const sk_cidr *deny; /* never these ranges; deny wins over allow */
    size_t deny_count;
    /* Sent before closing a connection refused by max_conns / max_per_ip (e.g. "server full\n");
     * NULL: just close. Denied peers are closed without a word. Copied by sk_listener_open. */
    const char *full_message;
    const char *per_ip_message;
    uint32_t log_interval_ms; /* at most one log line per cause per interval; 0: 1000 ms */
    /* The PROXY protocol (include/sockit/proxy.h): every connection must begin with a v1 or
     * v2 header; the accept callback comes only once it is read, and admission (limits,
     * allow/deny, per-IP counts) and sk_conn_peer_addr() use the address it gives. A
     * connection without a valid header within proxy_timeout_ms (0: 3 s) is closed, counted
     * and reported (SK_EV_REFUSED, SK_REFUSE_PROXY_*). proxy_from: if proxy_from_count > 0,
     * only these sources may connect at all (the proxies; checked at accept). */
    bool accept_proxy;
    uint32_t proxy_timeout_ms;
    const sk_cidr *proxy_from;
    size_t proxy_from_count;
} sk_listen_options;

/* Called for each accepted conn, which has no callbacks yet: set them here (or close it). */
typedef void (*sk_accept_cb)(sk_listener *l, sk_conn *c);

/* socket, SO_REUSEADDR, bind, listen, watch. opts may be NULL. For a Unix path, a stale socket
 * file (one nobody listens on) is removed first; a live one gives -EADDRINUSE; the path is
 * removed again by sk_listener_close(). */
int sk_listener_open(sk_loop *loop, const sk_addr *addr, const sk_listen_options *opts,
                     sk_accept_cb on_accept, void *data, sk_listener **out);

/* Open on every address a spec resolves to, the way "sockit serve" wants it: the first that
 * binds wins (the wildcard tries [::] dual-stack, then 0.0.0.0). */
int sk_listener_open_spec(sk_loop *loop, const sk_addrspec *spec, const sk_listen_options *opts,
                          sk_accept_cb on_accept, void *data, sk_listener **out);

/* The address really bound (the port the OS chose when 0 was asked). */
int sk_listener_addr(const sk_listener *l, sk_addr *out);
void *sk_listener_data(const sk_listener *l);
int sk_listener_fd(const sk_listener *l);

void sk_listener_pause(sk_listener *l);
void sk_listener_resume(sk_listener *l);

typedef struct sk_listener_stats {
    uint64_t accepted;
    uint64_t fd_pauses;      /* times accepting paused for lack of descriptors or memory */
    uint64_t refused_full;   /* over max_conns */
    uint64_t refused_per_ip; /* over max_per_ip */
    uint64_t refused_denied; /* by the allow / deny lists */
    uint64_t live;           /* conns accepted and not yet closed */
} sk_listener_stats;
void sk_listener_get_stats(const sk_listener *l, sk_listener_stats *out);

/* Stop listening, close the socket, unlink a Unix path we created, free. Accepted conns live on. */
void sk_listener_close(sk_listener *l);

#ifdef __cplusplus
}
#endif
#endif
