/* Listening sockets. The one pitfall that matters most here: when accept() fails for lack of
 * descriptors, the listening socket stays readable, and a level-triggered loop would spin at
 * 100% CPU. We stop watching it and retry on a timer instead (as nginx does). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define ACCEPTS_PER_WAKEUP 64 /* then let other descriptors have a turn */

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
    sk_listener_stats stats;
    sk__task free_task; /* freed at the end of the iteration: close is safe from on_accept */
};

const char *sk__family_name(int family)
{
    return family == AF_INET ? "inet" : family == AF_INET6 ? "inet6" : family == AF_UNIX ? "unix"
                                                                                         : "?";
}

int sk__socket(sk_loop *loop, int family, int type)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    SK_TRACE(loop, "socket fd=%d %s %s", fd, sk__family_name(family),
             type == SOCK_STREAM ? "stream" : "dgram");
    return fd;
}

static void watch_socket(sk_listener *l)
{
    bool fd_paused = l->retry && sk_timer_active(l->retry);
    sk__io_update(l->loop, &l->io, l->user_paused || fd_paused ? 0 : SK_READABLE);
}

static void retry_fired(sk_timer *t, void *arg)
{
    watch_socket(arg);
}

static void pause_for_descriptors(sk_listener *l, int err)
{
    l->stats.fd_pauses++;
    sk__log(l->loop, SK_LOG_WARN,
            "accept: %s; pausing new connections for %u ms (raise the open-files limit, "
            "ulimit -n, or lower the load)",
            sk_strerror(-err), l->retry_ms);
    if (!l->retry && sk_timer_new(l->loop, retry_fired, l, &l->retry) < 0)
        return; /* without a timer we cannot pause safely; keep trying on the next wakeup */
    sk_timer_start(l->retry, l->retry_ms, 0);
    watch_socket(l);
}

static void accept_one(sk_listener *l, int fd, const struct sockaddr_storage *ss, socklen_t len)
{
    if (ss->ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    if (sk__log_on(l->loop, SK_LOG_TRACE)) {
        sk_addr peer = {.ss = *ss, .len = len};
        char name[SK_ADDR_STRLEN];
        sk_addr_format(&peer, name, sizeof name);
        sk__log(l->loop, SK_LOG_TRACE, "accept fd=%d peer=%s", fd, name);
    }
    sk_conn *c;
    if (sk__conn_accepted(l->loop, fd, &c) < 0) {
        sk__log(l->loop, SK_LOG_WARN, "accept: out of memory; dropping a connection");
        close(fd);
        return;
    }
    l->stats.accepted++;
    l->on_accept(l, c);
}

static void listener_ready(sk__io *io, unsigned events)
{
    sk_listener *l = (sk_listener *)io;
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
        case EPERM: /* a firewall rule refused this one */
            continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            pause_for_descriptors(l, -errno);
            return;
        default: /* EAGAIN: nothing more to accept */
            return;
        }
    }
}

/* A Unix socket file nobody listens on (a crashed server's) may be replaced. */
static bool unix_path_is_stale(const struct sockaddr_un *sun, socklen_t len)
{
    struct stat st;
    if (sun->sun_path[0] == '\0' || lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return false;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool stale = connect(fd, (const struct sockaddr *)sun, len) < 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

static int bind_socket(sk_loop *loop, int fd, const sk_addr *addr)
{
    const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
    if (bind(fd, sa, addr->len) == 0)
        return 0;
    int err = errno;
    if (err == EADDRINUSE && addr->ss.ss_family == AF_UNIX &&
        unix_path_is_stale((const struct sockaddr_un *)sa, addr->len)) {
        const char *path = ((const struct sockaddr_un *)sa)->sun_path;
        sk__log(loop, SK_LOG_INFO, "removing stale socket file %s", path);
        unlink(path);
        if (bind(fd, sa, addr->len) == 0)
            return 0;
        err = errno;
    }
    return -err;
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
    if (family == AF_INET6) {
        int v6only = o->v6only;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    int rc = bind_socket(loop, fd, addr);
    if (rc == 0 && sk__log_on(loop, SK_LOG_TRACE)) {
        char name[SK_ADDR_STRLEN];
        sk_addr_format(addr, name, sizeof name);
        sk__log(loop, SK_LOG_TRACE, "bind fd=%d %s", fd, name);
    }
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

SK_API int sk_listener_open(sk_loop *loop, const sk_addr *addr, const sk_listen_options *opts,
                            sk_accept_cb on_accept, void *data, sk_listener **out)
{
    static const sk_listen_options defaults;
    const sk_listen_options *o = opts ? opts : &defaults;
    sk_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    int fd = open_socket(loop, addr, o);
    if (fd < 0) {
        free(l);
        return fd;
    }
    l->io.fd = -1;
    l->loop = loop;
    l->on_accept = on_accept;
    l->data = data;
    l->retry_ms = o->retry_ms ? o->retry_ms : 100;
    l->addr.len = sizeof l->addr.ss;
    getsockname(fd, (struct sockaddr *)&l->addr.ss, &l->addr.len);
    if (addr->ss.ss_family == AF_UNIX) {
        const char *path = ((const struct sockaddr_un *)&addr->ss)->sun_path;
        if (path[0] != '\0') {
            l->unix_path = strdup(path);
            if (o->unix_mode)
                chmod(path, o->unix_mode);
        }
    }
    int rc = sk__io_start(loop, &l->io, fd, SK_READABLE, listener_ready);
    if (rc < 0) {
        l->io.fd = fd;
        sk_listener_close(l);
        return rc;
    }
    *out = l;
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
    *out = l->stats;
}

static void free_listener(sk__task *task)
{
    free((char *)task - offsetof(sk_listener, free_task));
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
    l->free_task.fn = free_listener;
    sk__defer(l->loop, &l->free_task);
}
