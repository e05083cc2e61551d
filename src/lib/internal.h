/* What the library's modules share privately. Nothing here is public API. */
#ifndef SOCKIT_INTERNAL_H
#define SOCKIT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sockit/sockit.h>

#include "api.h"

/* ---- descriptors on the loop ---- */
typedef struct sk__io sk__io;
typedef void (*sk__io_cb)(sk__io *io, unsigned events);
/* Embedded in every object the loop polls; epoll's data.ptr points here. */
struct sk__io {
    int fd;
    unsigned events; /* SK_READABLE | SK_WRITABLE as registered now */
    sk__io_cb cb;
    sk__io *next_deferred; /* non-NULL exactly while sk__defer() has it queued */
};
/* Register, change (a no-op when unchanged) and remove interest. 0 or -errno. */
int sk__io_start(sk_loop *loop, sk__io *io, int fd, unsigned events, sk__io_cb cb);
int sk__io_update(sk_loop *loop, sk__io *io, unsigned events);
void sk__io_stop(sk_loop *loop, sk__io *io);
/* Stop, for a descriptor this iteration closes: close() takes it out of epoll, so the
 * epoll_ctl(DEL) is skipped, unless the process has forked since (a child may hold the same
 * open file, which would keep it registered after our close). */
void sk__io_stop_for_close(sk_loop *loop, sk__io *io);

/* ---- work run at the end of the current loop iteration ---- */
/* The event an io's callback receives for work it deferred: closing callbacks and frees, frames
 * held during a pause. Deferred work rides on the io every object already has, which keeps a
 * conn one pointer smaller than a separate task would. */
enum { SK__DEFERRED = 4 };
/* Call io->cb(io, SK__DEFERRED) once at the end of this iteration (a no-op if queued). */
void sk__defer(sk_loop *loop, sk__io *io);

/* ---- events and counters (event.c) ---- */
#include <stdatomic.h>
typedef struct sk__counters {
    _Atomic uint64_t accepted, connects, connected, closed;
    _Atomic uint64_t refused[SK_REFUSE__COUNT];
    _Atomic uint64_t closed_by[SK_CLOSE__COUNT];
    _Atomic uint64_t bytes_in, bytes_out, layer_failures, accept_pauses;
} sk__counters;
typedef struct sk__events {
    sk_event_cb cb;
    void *arg;
    unsigned flags; /* SK_EVENTS_* */
    sk__counters n;
} sk__events;
sk__events *sk__loop_events(sk_loop *loop); /* loop.c: the loop's own */
/* Counters have one writer, the loop's thread: a plain add, stored whole for other readers. */
static inline void sk__count(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
/* Give ev (ev->loop is set here) to the loop's sink, if it has one. */
void sk__emit(sk_loop *loop, sk_event *ev);
bool sk__conn_stats_on(sk_loop *loop); /* SK_EVENTS_CONN_STATS is set */

/* ---- error text for parsers ---- */
/* Write a sentence into err (when not NULL) and return -EINVAL: `return sk__fail_text(...)`. */
int sk__fail_text(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the trace: a line per socket step, as SK_EV_TRACE events (event.c) ---- */
bool sk__trace_on(sk_loop *loop);
void sk__trace(sk_loop *loop, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Trace one socket step; the arguments are only formatted when tracing is on. */
#define SK_TRACE(loop, ...)                                                                        \
    do {                                                                                           \
        if (sk__trace_on(loop))                                                                    \
            sk__trace((loop), __VA_ARGS__);                                                        \
    } while (0)

/* A 64 KiB buffer every conn on the loop reads into first; only a partial frame is copied out. */
#define SK__READ_BUF 65536
uint8_t *sk__loop_read_buf(sk_loop *loop);

/* ---- conns made by the listener ---- */
/* The conn being handed to its accept callback, and the address accept4() gave for it: there
 * (where a server asks who connected) sk_conn_peer_addr() needs no getpeername(). */
typedef struct sk__accepting {
    const sk_conn *conn;
    const sk_addr *peer;
} sk__accepting;
sk__accepting *sk__loop_accepting(sk_loop *loop); /* loop.c: the loop's own */
/* A conn for an accepted socket, not yet registered with the loop: the caller runs
 * sk__conn_update_interest() once it has handed it to its user. */
int sk__conn_accepted(sk_loop *loop, int fd, sk_conn **out);
void sk__conn_update_interest(sk_conn *c); /* tell the loop what the conn waits for now */
/* Run a just-pushed layer's start now instead of at the next readiness: bytes that are there
 * already (a PROXY header that came with the handshake) save a trip round the loop. on_connect
 * may run inside this call. */
void sk__conn_start_now(sk_conn *c);
/* sk_proxy_expect() with the proxy's address already known (the listener has it). */
int sk__proxy_expect(sk_conn *c, uint64_t timeout_ms, const sk_addr *via);
/* Told once when a conn closes (the listener's live counts). Embedded in the counting
 * object, so the conn holds one pointer. */
typedef struct sk__release sk__release;
struct sk__release {
    void (*fn)(sk__release *self);
};
void sk__conn_set_release(sk_conn *c, sk__release *r);
/* A peer's IP as (AF_INET, 4 bytes) or (AF_INET6, 16); IPv4-mapped IPv6 counts as IPv4.
 * false for a Unix peer (cidr.c). */
bool sk__addr_ip(const sk_addr *addr, int *family, uint8_t ip[16]);

/* ---- TLS (tls.c) ---- */
/* The context's own certificate (OpenSSL's X509), or NULL: lets the unit tests read it. */
struct x509_st *sk__tls_ctx_cert(const sk_tls_ctx *ctx);

/* ---- socket helpers (sock.c), shared by listener, conn and dgram ---- */
/* A non-blocking, close-on-exec socket: fd or -errno. */
int sk__socket(sk_loop *loop, int family, int type);
const char *sk__family_name(int family);
/* bind(), replacing a stale Unix socket file of this type (SOCK_STREAM or SOCK_DGRAM) that
 * nobody serves; traced. 0 or -errno. */
int sk__sock_bind(sk_loop *loop, int fd, int type, const sk_addr *addr);
/* The file a Unix address names (to remove it on close), or NULL: not Unix, or abstract. */
const char *sk__sock_unix_path(const sk_addr *addr);
void sk__sock_v6only(int fd, int family, bool on); /* IPV6_V6ONLY; nothing for other families */
void sk__sock_nodelay(int fd, int family);         /* TCP_NODELAY; nothing for Unix sockets */

#endif
