/* sockit — a listening TCP or Unix stream socket that hands out accepted conns.
 *
 * accept4() gives non-blocking, close-on-exec sockets. When the process runs out of descriptors
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener stops watching the socket and tries again on a
 * timer, instead of spinning on a readable socket it cannot accept from; pending clients wait in
 * the kernel's backlog meanwhile. Each pause is counted; one warning is logged per pause.
 * ECONNABORTED (a client that left before accept) is ignored.
 */
#ifndef SOCKIT_LISTENER_H
#define SOCKIT_LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "conn.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_listener sk_listener;

typedef struct sk_listen_options {
    int backlog;             /* 0: SOMAXCONN */
    bool reuseport;          /* SO_REUSEPORT, for one listener per worker thread */
    bool v6only;             /* on [::]: IPv6 only (default: dual-stack where the OS allows) */
    uint32_t retry_ms;       /* pause after EMFILE and friends; 0: 100 ms */
    uint32_t unix_mode;      /* chmod for a Unix socket path; 0: leave the umask's result */
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
    uint64_t fd_pauses; /* times accepting paused for lack of descriptors or memory */
} sk_listener_stats;
void sk_listener_get_stats(const sk_listener *l, sk_listener_stats *out);

/* Stop listening, close the socket, unlink a Unix path we created, free. Accepted conns live on. */
void sk_listener_close(sk_listener *l);

#ifdef __cplusplus
}
#endif
#endif
