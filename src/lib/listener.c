/* Listening sockets: accept, and pause. The one pitfall that matters most here: when accept()
 * fails for lack of descriptors, the listening socket stays readable, and a level-triggered loop
 * would spin at 100% CPU. We stop watching it and retry on a timer instead (as nginx does).
 * Whether an accepted socket becomes a conn is admit.c's decision; making the socket is sock.c's.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admit.h"
#include "ratelog.h"

#define ACCEPTS_PER_WAKEUP 64 /* then let other descriptors have a turn */

enum { CAUSE_FD }; /* the listener's one rate-limited line: accepting paused */

struct sk_listener {
    sk__io io;
    sk_loop *loop;
    sk_accept_cb on_accept;
    void *data;
    sk_timer *retry;
    uint32_t retry_ms;
    bool user_paused;
    char *unix_path; /* the socket file we created, removed on close */
    sk_addr addr;
    uint64_t accepted, fd_pauses;
    sk__admit *adm; /* NULL once closed */
    int last_fd_error;
    /* TCP_NODELAY is set on the listening socket; Linux hands it to every accepted socket.
     * The first accept checks that (one getsockopt); only where it did not does each accept
     * set it (one setsockopt per connection). */
    enum { NODELAY_UNKNOWN, NODELAY_INHERITED, NODELAY_PER_ACCEPT } nodelay;
    sk__ratelog log;
    bool accept_proxy; /* every conn starts with a PROXY header (proxy.h) */
    uint32_t proxy_timeout_ms;
    struct pending *pending; /* conns whose header is not in yet */
};

/* A conn accepted with accept_proxy whose header is not in yet: the user has not seen it. */
typedef struct pending {
    sk_listener *l; /* NULL once the listener closed */
    sk_conn *conn;
    struct pending *prev, *next;
    sk_addr source; /* the proxy (the socket's peer), for the report if the header fails */
    bool refused;   /* admission refused it after the header (and counted it) */
} pending;

static void watch_socket(sk_listener *l)
{
    bool fd_paused = l->retry && sk_timer_active(l->retry);
    sk__io_update(l->loop, &l->io, l->user_paused || fd_paused ? 0 : SK_READABLE);
}

static void retry_fired(sk_timer *t, void *arg)
{
    watch_socket(arg);
}

/* ---------------------------------------------------------------- descriptors */

/* The rate limit's report: one SK_EV_ACCEPT_PAUSED for n pauses in the last secs seconds. */
static void report_pauses(void *arg, int cause, uint64_t n, double secs, const sk_addr *peer)
{
    (void)cause;
    (void)peer;
    sk_listener *l = arg;
    sk__emit(l->loop, &(sk_event){.kind = SK_EV_ACCEPT_PAUSED,
                                  .listener = l,
                                  .err = l->last_fd_error,
                                  .count = n,
                                  .period_ms = (uint64_t)(secs * 1000.0 + 0.5),
                                  .limit = l->retry_ms});
}

static void pause_for_descriptors(sk_listener *l, int err)
{
    l->fd_pauses++;
    l->last_fd_error = err;
    sk__count(&sk__loop_events(l->loop)->n.accept_pauses, 1);
    sk__ratelog_note(&l->log, CAUSE_FD, NULL);
    if (!l->retry && sk_timer_new(l->loop, retry_fired, l, &l->retry) < 0)
        return; /* without a timer we cannot pause safely; keep trying on the next wakeup */
    sk_timer_start(l->retry, l->retry_ms, 0);
    watch_socket(l);
}

/* ---------------------------------------------------------------- accepting */

static void set_nodelay(sk_listener *l, int fd, int family)
{
    if (family == AF_UNIX || l->nodelay == NODELAY_INHERITED)
        return;
    if (l->nodelay == NODELAY_UNKNOWN) {
        int on = 0;
        socklen_t len = sizeof on;
        bool inherited = getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0 && on;
        l->nodelay = inherited ? NODELAY_INHERITED : NODELAY_PER_ACCEPT;
        if (inherited)
            return;
    }
    sk__sock_nodelay(fd, family);
}

/* ---------------------------------------------------------------- accepting a PROXY header
 * Nothing of the conn is the user's until its header is in: then admission runs with the
 * client's address from the header, and the accept callback comes as for any conn. */

static void no_memory(sk_listener *l, const sk_addr *peer)
{
    sk__count(&sk__loop_events(l->loop)->n.refused[SK_REFUSE_NO_MEMORY], 1);
    sk__emit(l->loop, &(sk_event){.kind = SK_EV_REFUSED,
                                  .listener = l,
                                  .addr = peer,
                                  .cause = SK_REFUSE_NO_MEMORY,
                                  .count = 1});
}

static void pending_unlink(pending *pd)
{
    if (!pd->l)
        return;
    if (pd->prev)
        pd->prev->next = pd->next;
    else
        pd->l->pending = pd->next;
    if (pd->next)
        pd->next->prev = pd->prev;
    pd->prev = pd->next = NULL;
}

static void admitted(sk_listener *l, sk_conn *c, const sk_addr *peer, sk__release *slot);

static void header_in(sk_conn *c)
{
    pending *pd = sk_conn_data(c);
    sk_listener *l = pd->l;
    sk_addr peer;
    if (sk_conn_peer_addr(c, &peer) < 0)
        peer = pd->source;
    if (sk__trace_on(l->loop)) {
        char name[SK_ADDR_STRLEN], via[SK_ADDR_STRLEN];
        sk_addr_format(&peer, name, sizeof name);
        sk_addr_format(&pd->source, via, sizeof via);
        sk__trace(l->loop, "proxy fd=%d peer=%s via %s", sk_conn_fd(c), name, via);
    }
    sk__release *slot = NULL;
    int rc = sk__admit_check_conn(l->adm, c, &peer, &slot);
    if (rc == SK__REFUSED) {
        pd->refused = true; /* closing: header_failed() frees pd */
        return;
    }
    if (rc < 0) {
        pd->refused = true;
        no_memory(l, &peer);
        sk_conn_abort(c);
        return;
    }
    pending_unlink(pd);
    free(pd);
    sk_conn_set_callbacks(c, NULL); /* none until the accept callback sets the user's */
    sk_conn_set_data(c, NULL);
    admitted(l, c, &peer, slot);
}

static void header_frame(sk_conn *c, const void *data, size_t len)
{
    /* Not called: the user's callbacks are set before the conn delivers a byte. */
}

static void header_failed(sk_conn *c, int reason)
{
    pending *pd = sk_conn_data(c);
    if (pd->l && !pd->refused && pd->l->adm)
        sk__admit_proxy_failed(pd->l->adm, reason, &pd->source);
    pending_unlink(pd);
    free(pd);
}

static const sk_conn_callbacks header_callbacks = {
    .on_connect = header_in, .on_frame = header_frame, .on_close = header_failed};

static void accept_proxied(sk_listener *l, int fd, const sk_addr *source)
{
    if (sk__admit_trusted(l->adm, fd, source) == SK__REFUSED)
        return;
    set_nodelay(l, fd, source->ss.ss_family);
    sk_conn *c;
    pending *pd = calloc(1, sizeof *pd);
    if (!pd || sk__conn_accepted(l->loop, fd, &c) < 0) {
        free(pd);
        no_memory(l, source);
        close(fd);
        return;
    }
    *pd = (pending){.l = l, .conn = c, .next = l->pending, .source = *source};
    if (l->pending)
        l->pending->prev = pd;
    l->pending = pd;
    sk_conn_set_data(c, pd);
    sk_conn_set_callbacks(c, &header_callbacks);
    sk__conn_update_interest(c);
    if (sk__proxy_expect(c, l->proxy_timeout_ms, source) < 0) {
        pd->refused = true;
        no_memory(l, source);
        sk_conn_abort(c); /* header_failed() frees pd */
        return;
    }
    sk__conn_start_now(c); /* the header has usually arrived with the handshake: read it now */
}

/* ---------------------------------------------------------------- accepting */

/* The conn is the user's now: counted, reported, and handed to the accept callback. */
static void admitted(sk_listener *l, sk_conn *c, const sk_addr *peer, sk__release *slot)
{
    sk__admit_enter(l->adm, slot);
    sk__conn_set_release(c, slot);
    l->accepted++;
    sk__count(&sk__loop_events(l->loop)->n.accepted, 1);
    *sk__loop_accepting(l->loop) = (sk__accepting){.conn = c, .peer = peer};
    sk__emit(l->loop, &(sk_event){.kind = SK_EV_ACCEPTED, .listener = l, .conn = c});
    l->on_accept(l, c);
    *sk__loop_accepting(l->loop) = (sk__accepting){0};
    sk__conn_update_interest(c); /* its first registration: what it wants after the callback */
}

static void accept_one(sk_listener *l, int fd, const struct sockaddr_storage *ss, socklen_t len)
{
    sk_addr peer = {.ss = *ss, .len = len};
    if (sk__trace_on(l->loop)) {
        char name[SK_ADDR_STRLEN];
        sk_addr_format(&peer, name, sizeof name);
        sk__trace(l->loop, "accept fd=%d peer=%s", fd, name);
    }
    if (l->accept_proxy) {
        accept_proxied(l, fd, &peer);
        return;
    }
    sk__release *slot = NULL;
    int rc = sk__admit_check(l->adm, fd, &peer, &slot);
    if (rc == SK__REFUSED)
        return;
    set_nodelay(l, fd, ss->ss_family);
    sk_conn *c;
    if (rc < 0 || sk__conn_accepted(l->loop, fd, &c) < 0) {
        no_memory(l, &peer);
        if (slot)
            sk__admit_abandon(l->adm, slot);
        close(fd);
        return;
    }
    admitted(l, c, &peer, slot);
}

static void listener_ready(sk__io *io, unsigned events)
{
    sk_listener *l = (sk_listener *)io;
    if (events & SK__DEFERRED) { /* closed: freed at the end of the iteration, so that closing
                                  * from on_accept is safe */
        free(l);
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKEUP && io->fd >= 0 && (io->events & SK_READABLE); i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(l, fd, &ss, len);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED: /* the client left before we got to it */
        case EPROTO:
        case EPERM: /* a firewall rule refused this one */ continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM: pause_for_descriptors(l, -errno); return;
        default: /* EAGAIN: nothing more to accept */ return;
        }
    }
}

static int open_socket(sk_loop *loop, const sk_addr *addr, const sk_listen_options *o)
{
    int family = addr->ss.ss_family;
    int fd = sk__socket(loop, family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    int one = 1;
    if (family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    sk__sock_v6only(fd, family, o->v6only);
    sk__sock_nodelay(fd, family); /* for the accepted sockets, which inherit it (set_nodelay) */
    if (o->accept_proxy && family != AF_UNIX) {
        /* Every client speaks first (its header): the kernel may hand us a connection only
         * once bytes are there, which saves a wakeup per connection. */
        int secs = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
    }
    int rc = sk__sock_bind(loop, fd, SOCK_STREAM, addr);
    int backlog = o->backlog > 0 ? o->backlog : SOMAXCONN;
    if (rc == 0 && listen(fd, backlog) < 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    SK_TRACE(loop, "listen fd=%d backlog=%d", fd, backlog);
    return fd;
}

/* Undo an open that failed: nothing is on the loop yet, so everything goes now. fd >= 0: the
 * socket was bound, and a Unix socket file we made goes too. */
static int open_failed(sk_listener *l, int fd, int rc)
{
    if (fd >= 0) {
        close(fd);
        if (l->unix_path)
            unlink(l->unix_path);
    }
    if (l->adm)
        sk__admit_close(l->adm);
    free(l->unix_path);
    free(l);
    return rc;
}

SK_API int sk_listener_open(sk_loop *loop, const sk_addr *addr, const sk_listen_options *opts,
                            sk_accept_cb on_accept, void *data, sk_listener **out)
{
    static const sk_listen_options defaults;
    const sk_listen_options *o = opts ? opts : &defaults;
    sk_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->io.fd = -1;
    l->loop = loop;
    l->on_accept = on_accept;
    l->data = data;
    l->retry_ms = o->retry_ms ? o->retry_ms : 100;
    l->accept_proxy = o->accept_proxy;
    l->proxy_timeout_ms = o->proxy_timeout_ms;
    sk__ratelog_init(&l->log, loop, o->log_interval_ms ? o->log_interval_ms : 1000, report_pauses,
                     l);
    /* Every allocation before the socket: a failure then has no file to clean up. */
    const char *path = sk__sock_unix_path(addr);
    if (sk__admit_new(loop, o, &l->adm) < 0 || (path && !(l->unix_path = strdup(path))))
        return open_failed(l, -1, -ENOMEM);
    int fd = open_socket(loop, addr, o);
    if (fd < 0)
        return open_failed(l, -1, fd);
    l->addr.len = sizeof l->addr.ss;
    getsockname(fd, (struct sockaddr *)&l->addr.ss, &l->addr.len);
    if (path && o->unix_mode)
        chmod(path, o->unix_mode);
    int rc = sk__io_start(loop, &l->io, fd, SK_READABLE, listener_ready);
    if (rc < 0)
        return open_failed(l, fd, rc);
    *out = l;
    sk__emit(loop, &(sk_event){.kind = SK_EV_LISTENING, .listener = l, .addr = &l->addr});
    return 0;
}

SK_API int sk_listener_open_spec(sk_loop *loop, const sk_addrspec *spec,
                                 const sk_listen_options *opts, sk_accept_cb on_accept, void *data,
                                 sk_listener **out)
{
    sk_addr addrs[16];
    int n = sk_addr_resolve(spec, SK_RESOLVE_PASSIVE, addrs, 16);
    if (n < 0)
        return n;
    int rc = -EADDRNOTAVAIL;
    for (int i = 0; i < n; i++) {
        rc = sk_listener_open(loop, &addrs[i], opts, on_accept, data, out);
        if (rc == 0)
            return 0;
        /* Only a missing address family (no IPv6 here) moves on; a real error is the answer. */
        if (rc != -EAFNOSUPPORT && rc != -EADDRNOTAVAIL && rc != -EPROTONOSUPPORT)
            return rc;
    }
    return rc;
}

SK_API int sk_listener_addr(const sk_listener *l, sk_addr *out)
{
    *out = l->addr;
    return 0;
}

SK_API void *sk_listener_data(const sk_listener *l)
{
    return l->data;
}

SK_API int sk_listener_fd(const sk_listener *l)
{
    return l->io.fd;
}

SK_API void sk_listener_pause(sk_listener *l)
{
    l->user_paused = true;
    watch_socket(l);
}

SK_API void sk_listener_resume(sk_listener *l)
{
    l->user_paused = false;
    watch_socket(l);
}

SK_API void sk_listener_get_stats(const sk_listener *l, sk_listener_stats *out)
{
    *out = (sk_listener_stats){.accepted = l->accepted, .fd_pauses = l->fd_pauses};
    if (l->adm)
        sk__admit_stats(l->adm, out);
}

SK_API void sk_listener_close(sk_listener *l)
{
    if (!l || l->io.fd < 0)
        return;
    sk__io_stop(l->loop, &l->io);
    SK_TRACE(l->loop, "close fd=%d", l->io.fd);
    close(l->io.fd);
    l->io.fd = -1;
    if (l->unix_path) {
        unlink(l->unix_path);
        free(l->unix_path);
        l->unix_path = NULL;
    }
    sk_timer_free(l->retry);
    l->retry = NULL;
    for (pending *pd = l->pending, *next; pd; pd = next) { /* their headers no longer matter */
        next = pd->next;
        pd->l = NULL;
        pd->prev = pd->next = NULL;
        sk_conn_abort(pd->conn);
    }
    l->pending = NULL;
    sk__ratelog_flush(&l->log); /* what the rate limit held back is still worth a line */
    if (l->adm)
        sk__admit_close(l->adm); /* live conns keep the counts until the last one closes */
    l->adm = NULL;
    sk__defer(l->loop, &l->io);
}
