/* Listening sockets. The one pitfall that matters most here: when accept() fails for lack of
 * descriptors, the listening socket stays readable, and a level-triggered loop would spin at
 * 100% CPU. We stop watching it and retry on a timer instead (as nginx does). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define ACCEPTS_PER_WAKEUP 64 /* then let other descriptors have a turn */

/* Why a connection was not handed to on_accept (or why accepting paused): each has its own
 * counter and its own log rate limit. */
enum { CAUSE_FD, CAUSE_FULL, CAUSE_PER_IP, CAUSE_DENIED, NCAUSES };

typedef struct admit admit;

/* Live conns from one client IP. */
typedef struct ipent {
    sk__release release; /* a conn from this IP closed */
    struct ipent *next;
    admit *adm;
    uint32_t count;
    int family;
    uint8_t ip[16];
} ipent;

/* The live-conn counts. Conns outlive their listener, so this does too: sk_listener_close()
 * detaches it, and the last conn's release frees it. */
struct admit {
    sk__release release; /* a conn closed */
    sk_listener *l;      /* NULL once the listener is closed */
    uint64_t live;
    ipent **buckets; /* per-IP counts, only with max_per_ip */
    size_t nbuckets, nentries;
};

static void release_conn(sk__release *r);
static void release_ip(sk__release *r);

typedef struct cause_log {
    uint64_t unreported; /* refusals (or pauses) since the last log line */
    uint64_t logged_at;  /* sk_loop_now() of the last line */
    bool ever;
} cause_log;

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
    /* admission control */
    admit *adm;
    uint32_t max_conns, max_per_ip;
    sk_cidr *allow, *deny;
    size_t allow_count, deny_count;
    char *full_message, *per_ip_message;
    /* rate-limited logging of refusals and pauses */
    uint32_t log_interval_ms;
    int last_fd_error;
    cause_log logs[NCAUSES];
    sk_timer *log_timer;
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

/* ---------------------------------------------------------------- rate-limited log lines */

static void cause_text(const sk_listener *l, int cause, char *buf, size_t len)
{
    switch (cause) {
    case CAUSE_FD:
        snprintf(buf, len, "%s; pausing new connections for %u ms each time (raise the "
                 "open-files limit, ulimit -n, or lower the load)",
                 sk_strerror(l->last_fd_error), l->retry_ms);
        break;
    case CAUSE_FULL:
        snprintf(buf, len, "server full (%u live connections, the limit)", l->max_conns);
        break;
    case CAUSE_PER_IP:
        snprintf(buf, len, "too many connections from that address (%u live, the limit per "
                 "address)", l->max_per_ip);
        break;
    default:
        snprintf(buf, len, "address not allowed by the allow / deny lists");
        break;
    }
}

/* One line for a cause: what happened since the last line. peer may be NULL. */
static void log_cause(sk_listener *l, int cause, const sk_addr *peer)
{
    cause_log *cl = &l->logs[cause];
    uint64_t now = sk_loop_now(l->loop);
    uint64_t n = cl->unreported;
    char why[256], who[SK_ADDR_STRLEN + 32] = "";
    cause_text(l, cause, why, sizeof why);
    if (peer) {
        char name[SK_ADDR_STRLEN];
        sk_addr_format(peer, name, sizeof name);
        snprintf(who, sizeof who, n == 1 ? " from %s" : " (the last from %s)", name);
    }
    double secs = cl->ever ? (double)(now - cl->logged_at) / 1000.0 : 0.0;
    if (cause == CAUSE_FD && n == 1)
        sk__log(l->loop, SK_LOG_WARN, "accept: %s", why);
    else if (cause == CAUSE_FD)
        sk__log(l->loop, SK_LOG_WARN, "accept: paused %llu times in the last %.1f s: %s",
                (unsigned long long)n, secs, why);
    else if (n == 1)
        sk__log(l->loop, SK_LOG_WARN, "refused a connection%s: %s", who, why);
    else
        sk__log(l->loop, SK_LOG_WARN, "refused %llu connections in the last %.1f s%s: %s",
                (unsigned long long)n, secs, who, why);
    cl->unreported = 0;
    cl->logged_at = now;
    cl->ever = true;
}

/* Report what was held back, for every cause whose interval has passed; re-arm for the rest. */
static void log_timer_fired(sk_timer *t, void *arg)
{
    sk_listener *l = arg;
    uint64_t now = sk_loop_now(l->loop), next = 0;
    for (int i = 0; i < NCAUSES; i++) {
        cause_log *cl = &l->logs[i];
        if (!cl->unreported)
            continue;
        uint64_t due = cl->logged_at + l->log_interval_ms;
        if (now >= due)
            log_cause(l, i, NULL);
        else if (!next || due - now < next)
            next = due - now;
    }
    if (next)
        sk_timer_start(t, next, 0);
}

/* Count one event of this cause; log it now, or hold it for the summary line. */
static void note(sk_listener *l, int cause, const sk_addr *peer)
{
    cause_log *cl = &l->logs[cause];
    cl->unreported++;
    uint64_t now = sk_loop_now(l->loop);
    if (!cl->ever || now >= cl->logged_at + l->log_interval_ms) {
        log_cause(l, cause, peer);
        return;
    }
    if (!l->log_timer && sk_timer_new(l->loop, log_timer_fired, l, &l->log_timer) < 0)
        return; /* the count stays in the stats; the next refusal reports it */
    if (!sk_timer_active(l->log_timer))
        sk_timer_start(l->log_timer, cl->logged_at + l->log_interval_ms - now, 0);
}

/* ---------------------------------------------------------------- descriptors */

static void pause_for_descriptors(sk_listener *l, int err)
{
    l->stats.fd_pauses++;
    l->last_fd_error = err;
    note(l, CAUSE_FD, NULL);
    if (!l->retry && sk_timer_new(l->loop, retry_fired, l, &l->retry) < 0)
        return; /* without a timer we cannot pause safely; keep trying on the next wakeup */
    sk_timer_start(l->retry, l->retry_ms, 0);
    watch_socket(l);
}

/* ---------------------------------------------------------------- admission */

static size_t ip_hash(int family, const uint8_t *ip, size_t nbuckets)
{
    uint32_t h = 2166136261u ^ (uint32_t)family; /* FNV-1a */
    for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
        h = (h ^ ip[i]) * 16777619u;
    return h & (nbuckets - 1);
}

static ipent **ip_slot(admit *a, int family, const uint8_t *ip)
{
    ipent **p = &a->buckets[ip_hash(family, ip, a->nbuckets)];
    while (*p && !((*p)->family == family &&
                   memcmp((*p)->ip, ip, family == AF_INET ? 4 : 16) == 0))
        p = &(*p)->next;
    return p;
}

static void ip_grow(admit *a)
{
    size_t n = a->nbuckets * 2;
    ipent **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (ipent *e = a->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t h = ip_hash(e->family, e->ip, n);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(a->buckets);
    a->buckets = b;
    a->nbuckets = n;
}

/* The entry for an address, created with count 0 if missing; NULL when out of memory. */
static ipent *ip_get(admit *a, int family, const uint8_t *ip)
{
    if (!a->buckets) {
        a->buckets = calloc(64, sizeof *a->buckets);
        if (!a->buckets)
            return NULL;
        a->nbuckets = 64;
    }
    ipent **p = ip_slot(a, family, ip);
    if (*p)
        return *p;
    ipent *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->release.fn = release_ip;
    e->adm = a;
    e->family = family;
    memcpy(e->ip, ip, family == AF_INET ? 4 : 16);
    *p = e;
    if (++a->nentries > a->nbuckets)
        ip_grow(a);
    return e;
}

static void ip_put(admit *a, ipent *e)
{
    if (e->count)
        return;
    ipent **p = ip_slot(a, e->family, e->ip);
    *p = e->next;
    a->nentries--;
    free(e);
}

static void admit_free(admit *a)
{
    for (size_t i = 0; i < a->nbuckets; i++)
        for (ipent *e = a->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(a->buckets);
    free(a);
}

static void admit_release(admit *a)
{
    a->live--;
    if (!a->l && a->live == 0)
        admit_free(a);
}

/* Called by the conn when it closes. */
static void release_conn(sk__release *r)
{
    admit_release((admit *)r);
}

static void release_ip(sk__release *r)
{
    ipent *e = (ipent *)r;
    admit *a = e->adm;
    e->count--;
    ip_put(a, e);
    admit_release(a);
}

/* Accepted, but refused: say why (when there is something to say) and close. */
static void refuse(sk_listener *l, int fd, int cause, const sk_addr *peer)
{
    const char *text = cause == CAUSE_FULL     ? l->full_message
                       : cause == CAUSE_PER_IP ? l->per_ip_message
                                               : NULL;
    if (cause == CAUSE_FULL)
        l->stats.refused_full++;
    else if (cause == CAUSE_PER_IP)
        l->stats.refused_per_ip++;
    else
        l->stats.refused_denied++;
    if (text)
        send(fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL);
    /* Read what the client already sent (a little, without waiting): closing with unread input
     * would send a reset, which can destroy the message before the client reads it. */
    char sink[4096];
    for (int i = 0; i < 4 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    SK_TRACE(l->loop, "close fd=%d refused", fd);
    close(fd);
    note(l, cause, peer);
}

/* 0 to admit, else the cause. *ent gets the peer's per-IP entry when one is kept. */
static int admission(sk_listener *l, const sk_addr *peer, ipent **ent)
{
    *ent = NULL;
    if ((l->allow_count || l->deny_count) &&
        !sk_cidr_admit(l->allow, l->allow_count, l->deny, l->deny_count, peer))
        return CAUSE_DENIED;
    if (l->max_conns && l->adm->live >= l->max_conns)
        return CAUSE_FULL;
    int family;
    uint8_t ip[16];
    if (!l->max_per_ip || !sk__addr_ip(peer, &family, ip))
        return 0;
    ipent *e = ip_get(l->adm, family, ip);
    if (!e)
        return -ENOMEM;
    if (e->count >= l->max_per_ip)
        return CAUSE_PER_IP;
    *ent = e;
    return 0;
}

static void accept_one(sk_listener *l, int fd, const struct sockaddr_storage *ss, socklen_t len)
{
    sk_addr peer = {.ss = *ss, .len = len};
    if (sk__log_on(l->loop, SK_LOG_TRACE)) {
        char name[SK_ADDR_STRLEN];
        sk_addr_format(&peer, name, sizeof name);
        sk__log(l->loop, SK_LOG_TRACE, "accept fd=%d peer=%s", fd, name);
    }
    ipent *ent;
    int cause = admission(l, &peer, &ent);
    if (cause > 0) {
        refuse(l, fd, cause, &peer);
        return;
    }
    if (ss->ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    sk_conn *c;
    if (cause < 0 || sk__conn_accepted(l->loop, fd, &c) < 0) {
        sk__log(l->loop, SK_LOG_WARN, "accept: out of memory; dropping a connection");
        if (ent)
            ip_put(l->adm, ent);
        close(fd);
        return;
    }
    l->adm->live++;
    if (ent) {
        ent->count++;
        sk__conn_set_release(c, &ent->release);
    } else {
        sk__conn_set_release(c, &l->adm->release);
    }
    l->stats.accepted++;
    l->on_accept(l, c);
}

static void free_listener(sk_listener *l);

static void listener_ready(sk__io *io, unsigned events)
{
    sk_listener *l = (sk_listener *)io;
    if (events & SK__DEFERRED) { /* closed: freed at the end of the iteration, so that closing
                                  * from on_accept is safe */
        free_listener(l);
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

static void *dup_mem(const void *p, size_t n)
{
    void *d = n ? malloc(n) : NULL;
    if (d)
        memcpy(d, p, n);
    return d;
}

/* The limits and lists, copied: the caller's options need not outlive the call. */
static int copy_admission(sk_listener *l, const sk_listen_options *o)
{
    l->adm = calloc(1, sizeof *l->adm);
    if (!l->adm)
        return -ENOMEM;
    l->adm->release.fn = release_conn;
    l->adm->l = l;
    l->max_conns = o->max_conns;
    l->max_per_ip = o->max_per_ip;
    l->log_interval_ms = o->log_interval_ms ? o->log_interval_ms : 1000;
    if (o->allow_count) {
        l->allow = dup_mem(o->allow, o->allow_count * sizeof *o->allow);
        if (!l->allow)
            return -ENOMEM;
        l->allow_count = o->allow_count;
    }
    if (o->deny_count) {
        l->deny = dup_mem(o->deny, o->deny_count * sizeof *o->deny);
        if (!l->deny)
            return -ENOMEM;
        l->deny_count = o->deny_count;
    }
    if (o->full_message && !(l->full_message = strdup(o->full_message)))
        return -ENOMEM;
    if (o->per_ip_message && !(l->per_ip_message = strdup(o->per_ip_message)))
        return -ENOMEM;
    return 0;
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
    if (copy_admission(l, o) < 0) {
        l->io.fd = fd;
        sk_listener_close(l);
        return -ENOMEM;
    }
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
    out->live = l->adm ? l->adm->live : 0;
}

static void free_listener(sk_listener *l)
{
    free(l->allow);
    free(l->deny);
    free(l->full_message);
    free(l->per_ip_message);
    free(l);
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
    /* What the rate limit held back is still worth a line. */
    for (int i = 0; i < NCAUSES; i++)
        if (l->logs[i].unreported)
            log_cause(l, i, NULL);
    sk_timer_free(l->log_timer);
    l->log_timer = NULL;
    if (l->adm) {
        l->adm->l = NULL; /* live conns keep it until the last one closes */
        if (l->adm->live == 0)
            admit_free(l->adm);
        l->adm = NULL;
    }
    sk__defer(l->loop, &l->io);
}
