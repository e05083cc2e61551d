/* Datagram sockets: UDP (IPv4, IPv6) and Unix datagram, batched with recvmmsg/sendmmsg.
 *
 * Memory. Receiving needs one buffer of max_size bytes per datagram of a batch, allocated once
 * per dgram: 16 x 64 KiB = 1 MiB of address space by default. malloc maps an allocation that
 * large straight from the kernel, and a page becomes resident only when a datagram is written
 * into it, so a server of small datagrams keeps about one page per slot (16 pages); only peers
 * that really send 64 KiB datagrams make the whole megabyte resident. A dgram with batch 1 owns
 * no receive buffer at all: it reads into the loop's shared 64 KiB buffer, as conns do. The send
 * queue holds only datagrams that wait for the end of the loop iteration (batching) or that the
 * kernel refused (backpressure), each in its own allocation freed as soon as it is sent; the
 * ring of entries grows from 32 up to max_queue.
 *
 * Held datagrams. When the user pauses reading (or closes) in the middle of a batch, the rest of
 * the batch stays in the receive buffers; nothing more is read until they are delivered.
 *
 * Blocked sends. EAGAIN waits for writability; ENOBUFS (a full device queue, which poll never
 * reports) and a writable event that still sends nothing (an unconnected Unix sender is
 * "writable" while its peer's queue is full) retry on a short timer instead of spinning. An
 * unconnected Unix socket drops a datagram whose peer's queue is full (as UDP would) rather
 * than let one peer that stopped reading block the replies to every other. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define RECV_PER_WAKEUP 64 /* datagrams read per readable event, then other fds get a turn */
#define RETRY_MS 5         /* retry of a blocked send that poll cannot announce */
#define QUEUE_START 32
#define MAX_SIZE_LIMIT (16u << 20)
#define UDP4_MAX 65507 /* 65535 - 20 (IPv4 header) - 8 (UDP header) */
#define UDP6_MAX 65527 /* 65535 - 8: the IPv6 payload length counts the UDP header */

/* A dgram's flags: DG_, since conn's F_ flags are other bits with the same names. */
enum {
    DG_CONNECTED = 1 << 0,
    DG_PAUSED = 1 << 1,
    DG_CLOSED = 1 << 2,
    DG_BLOCKED = 1 << 3,    /* the kernel refused; waiting for writability or the retry timer */
    DG_ABOVE_HIGH = 1 << 4, /* writable() is false; on_drain owed when the queue empties */
    DG_IN_CALL = 1 << 5,    /* inside a user's call: callbacks are deferred to the task */
    DG_DRAIN_OWED = 1 << 6, /* on_drain deferred to the task */
    DG_FLUSHING = 1 << 7,
};

typedef struct qent {
    uint8_t *data;
    size_t len;
    bool has_to;
    bool retried;
    sk_addr to;
} qent;

struct sk_dgram {
    sk__io io;
    sk_loop *loop;
    const sk_dgram_callbacks *cb;
    void *data;
    unsigned flags;
    int family;
    unsigned batch, max_queue;
    size_t max_size;
    /* receiving */
    uint8_t *rbuf; /* batch * max_size, or NULL: the loop's buffer (batch 1) */
    struct mmsghdr *rmsg;
    struct iovec *riov;
    sk_addr *raddr;
    unsigned rnext, rcount; /* datagrams rnext .. rcount-1 were read and wait for delivery */
    /* sending */
    qent *q;
    unsigned qhead, qlen, qcap;
    struct mmsghdr *smsg;
    struct iovec *siov;
    sk_timer *retry;
    /* the first error found inside a user's call, reported from the task */
    int err_pending;
    bool err_has_peer;
    sk_addr err_peer;
    sk_addr peer;    /* connected peer */
    char *unix_path; /* the socket file we created, removed on close */
    sk_dgram_stats stats;
};

static void dgram_io(sk__io *io, unsigned events);
static void dgram_task(sk_dgram *d);
static unsigned flush(sk_dgram *d);

/* ---------------------------------------------------------------- helpers */

static void trace_datagram(sk_dgram *d, const char *verb, size_t len, const char *dir,
                           const sk_addr *peer, size_t real)
{
    if (!sk__trace_on(d->loop))
        return;
    char name[SK_ADDR_STRLEN];
    if (peer)
        sk_addr_format(peer, name, sizeof name);
    else
        strcpy(name, "(connected peer)");
    if (real > len)
        sk__trace(d->loop, "%s fd=%d %zu bytes %s %s (truncated: %zu bytes sent)", verb, d->io.fd,
                  len, dir, name, real);
    else
        sk__trace(d->loop, "%s fd=%d %zu bytes %s %s", verb, d->io.fd, len, dir, name);
}

static void update_interest(sk_dgram *d)
{
    if (d->flags & DG_CLOSED)
        return;
    unsigned want = 0;
    if (!(d->flags & DG_PAUSED) && d->rnext >= d->rcount)
        want |= SK_READABLE;
    if ((d->flags & DG_BLOCKED) && !(d->retry && sk_timer_active(d->retry)))
        want |= SK_WRITABLE;
    sk__io_update(d->loop, &d->io, want);
}

/* An error the kernel reported: now, or from the task when we are inside the user's call. */
static void report_error(sk_dgram *d, int err, const sk_addr *peer)
{
    if (d->flags & DG_CLOSED)
        return;
    if (d->flags & DG_IN_CALL) {
        if (!d->err_pending) {
            d->err_pending = err;
            d->err_has_peer = peer != NULL;
            if (peer)
                d->err_peer = *peer;
        }
        sk__defer(d->loop, &d->io);
        return;
    }
    if (d->cb->on_error)
        d->cb->on_error(d, err, peer);
}

static void report_drain(sk_dgram *d)
{
    if (d->flags & DG_CLOSED)
        return;
    if (d->flags & DG_IN_CALL) {
        d->flags |= DG_DRAIN_OWED;
        sk__defer(d->loop, &d->io);
        return;
    }
    if (d->cb->on_drain)
        d->cb->on_drain(d);
}

static const sk_addr *dest_of(const sk_dgram *d, const qent *e)
{
    return e->has_to ? &e->to : (d->flags & DG_CONNECTED) ? &d->peer : NULL;
}

/* ---------------------------------------------------------------- receiving */

/* One recvmmsg (or recvmsg with batch 1). The count read, 0 when there was nothing, or -errno. */
static int recv_batch(sk_dgram *d)
{
    for (unsigned i = 0; i < d->batch; i++) {
        struct msghdr *h = &d->rmsg[i].msg_hdr;
        memset(h, 0, sizeof *h);
        h->msg_name = &d->raddr[i].ss;
        h->msg_namelen = sizeof d->raddr[i].ss;
        h->msg_iov = &d->riov[i];
        h->msg_iovlen = 1;
    }
    /* MSG_TRUNC makes the kernel return each datagram's real length, not just the bytes copied. */
    int n;
    do {
        if (d->batch == 1) {
            ssize_t k = recvmsg(d->io.fd, &d->rmsg[0].msg_hdr, MSG_DONTWAIT | MSG_TRUNC);
            if (k >= 0)
                d->rmsg[0].msg_len = (unsigned)k;
            n = k < 0 ? -1 : 1;
        } else {
            n = recvmmsg(d->io.fd, d->rmsg, d->batch, MSG_DONTWAIT | MSG_TRUNC, NULL);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        sk_addr *a = &d->raddr[i];
        a->len = d->rmsg[i].msg_hdr.msg_namelen;
        if (a->len < sizeof(sa_family_t)) { /* an unnamed Unix sender */
            a->ss.ss_family = (sa_family_t)d->family;
            a->len = 0;
        }
    }
    d->stats.recv_calls++;
    return n;
}

static void deliver(sk_dgram *d)
{
    while (d->rnext < d->rcount && !(d->flags & (DG_PAUSED | DG_CLOSED))) {
        unsigned i = d->rnext++;
        const struct mmsghdr *m = &d->rmsg[i];
        size_t size = m->msg_len;
        bool truncated = (m->msg_hdr.msg_flags & MSG_TRUNC) || size > d->max_size;
        sk_datagram dg = {
            .data = d->riov[i].iov_base,
            .len = truncated ? (size < d->max_size ? size : d->max_size) : size,
            .size = size,
            .truncated = truncated,
            .from = &d->raddr[i],
        };
        d->stats.received++;
        if (truncated)
            d->stats.truncated++;
        trace_datagram(d, "recv", dg.len, "from", dg.from, size);
        d->cb->on_datagram(d, &dg);
    }
}

static void on_readable(sk_dgram *d)
{
    unsigned total = 0;
    while (total < RECV_PER_WAKEUP && !(d->flags & (DG_PAUSED | DG_CLOSED))) {
        int n = recv_batch(d);
        if (n == 0)
            break;
        if (n < 0) {
            /* On a connected UDP socket, an ICMP error (port unreachable: -ECONNREFUSED). */
            report_error(d, n, (d->flags & DG_CONNECTED) ? &d->peer : NULL);
            break;
        }
        d->rnext = 0;
        d->rcount = (unsigned)n;
        total += (unsigned)n;
        deliver(d);
        if ((unsigned)n < d->batch)
            break; /* the socket is empty */
    }
    /* The replies to this batch leave together. */
    if (!(d->flags & (DG_CLOSED | DG_BLOCKED)) && d->qlen)
        flush(d);
    update_interest(d);
}

/* ---------------------------------------------------------------- sending */

static void retry_fired(sk_timer *t, void *arg)
{
    sk_dgram *d = arg;
    flush(d);
}

/* The kernel took no more: wait for writability, or for the timer when poll cannot tell. */
static void block(sk_dgram *d, bool use_timer)
{
    d->flags |= DG_BLOCKED;
    if (use_timer && (d->retry || sk_timer_new(d->loop, retry_fired, d, &d->retry) == 0))
        sk_timer_start(d->retry, RETRY_MS, 0);
    update_interest(d);
}

static void q_pop(sk_dgram *d, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        qent *e = &d->q[d->qhead];
        free(e->data);
        e->data = NULL;
        d->qhead = (d->qhead + 1) % d->qcap;
        d->qlen--;
    }
}

static int q_push(sk_dgram *d, const void *data, size_t len, const sk_addr *to)
{
    if (d->qlen == d->qcap) {
        unsigned cap = d->qcap ? d->qcap * 2 : QUEUE_START;
        if (cap > d->max_queue)
            cap = d->max_queue;
        qent *q = calloc(cap, sizeof *q);
        if (!q)
            return -ENOMEM;
        for (unsigned i = 0; i < d->qlen; i++)
            q[i] = d->q[(d->qhead + i) % d->qcap];
        free(d->q);
        d->q = q;
        d->qcap = cap;
        d->qhead = 0;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    qent *e = &d->q[(d->qhead + d->qlen) % d->qcap];
    e->data = copy;
    e->len = len;
    e->has_to = to != NULL;
    e->retried = false;
    if (to)
        e->to = *to;
    d->qlen++;
    return 0;
}

/* Hand the first n queued datagrams to the kernel: the count it took, or -errno. */
static int kernel_send(sk_dgram *d, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        qent *e = &d->q[(d->qhead + i) % d->qcap];
        d->siov[i] = (struct iovec){.iov_base = e->data, .iov_len = e->len};
        struct msghdr *h = &d->smsg[i].msg_hdr;
        memset(h, 0, sizeof *h);
        h->msg_iov = &d->siov[i];
        h->msg_iovlen = 1;
        if (e->has_to) {
            h->msg_name = &e->to.ss;
            h->msg_namelen = e->to.len;
        }
    }
    int r;
    do {
        if (n == 1)
            r = sendmsg(d->io.fd, &d->smsg[0].msg_hdr, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -1 : 1;
        else
            r = sendmmsg(d->io.fd, d->smsg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

/* Errors that belong to an earlier datagram (an ICMP report the kernel kept for the socket):
 * the datagram now at hand was not sent, and deserves one more try. */
static bool earlier_error(const sk_dgram *d, int err)
{
    return d->family != AF_UNIX && (err == -ECONNREFUSED || err == -EHOSTUNREACH ||
                                    err == -ENETUNREACH || err == -EHOSTDOWN);
}

/* A send failed for the datagram at the head of the queue. Returns false when the queue must
 * stop (blocked, or the dgram closed from on_error). */
static bool send_failed(sk_dgram *d, int err)
{
    qent *e = &d->q[d->qhead];
    bool full = err == -EAGAIN || err == -EWOULDBLOCK || err == -ENOBUFS;
    if (full && !(d->family == AF_UNIX && !(d->flags & DG_CONNECTED) && err != -ENOBUFS)) {
        block(d, err == -ENOBUFS);
        return false;
    }
    if (full)
        err = -ENOBUFS; /* an unconnected Unix peer's queue is full: drop, as UDP would */
    bool retry = earlier_error(d, err) && !e->retried;
    e->retried = true;
    sk_addr peer;
    const sk_addr *p = dest_of(d, e);
    if (p) {
        peer = *p; /* the entry may be freed by a close inside on_error */
        p = &peer;
    }
    if (!retry) {
        d->stats.send_errors++;
        q_pop(d, 1);
    }
    report_error(d, err, p);
    return !(d->flags & DG_CLOSED);
}

/* Send what is queued until it is empty or the kernel is full; the count sent. */
static unsigned flush(sk_dgram *d)
{
    if (d->flags & (DG_CLOSED | DG_FLUSHING))
        return 0;
    d->flags |= DG_FLUSHING;
    d->flags &= ~(unsigned)DG_BLOCKED;
    if (d->retry)
        sk_timer_stop(d->retry);
    unsigned total = 0;
    while (d->qlen) {
        unsigned n = d->qlen < d->batch ? d->qlen : d->batch;
        int r = kernel_send(d, n);
        if (r < 0) {
            if (!send_failed(d, r))
                break;
            continue;
        }
        if (sk__trace_on(d->loop))
            for (int i = 0; i < r; i++) {
                const qent *e = &d->q[(d->qhead + (unsigned)i) % d->qcap];
                trace_datagram(d, "send", e->len, "to", dest_of(d, e), 0);
            }
        d->stats.sent += (unsigned)r;
        d->stats.send_calls++;
        total += (unsigned)r;
        q_pop(d, (unsigned)r);
    }
    d->flags &= ~(unsigned)DG_FLUSHING;
    if (d->flags & DG_CLOSED)
        return total;
    if (d->qlen == 0 && (d->flags & DG_ABOVE_HIGH)) {
        d->flags &= ~(unsigned)DG_ABOVE_HIGH;
        report_drain(d);
    }
    update_interest(d);
    return total;
}

static size_t max_payload(const sk_dgram *d, const sk_addr *to)
{
    int family = to ? to->ss.ss_family : d->peer.ss.ss_family;
    return family == AF_INET ? UDP4_MAX : family == AF_INET6 ? UDP6_MAX : SIZE_MAX;
}

/* Without batching, the datagram goes straight from the caller's buffer: 0 or -errno. */
static int send_now(sk_dgram *d, const void *data, size_t len, const sk_addr *to)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1};
    if (to) {
        h.msg_name = (void *)&to->ss;
        h.msg_namelen = to->len;
    }
    ssize_t k;
    do
        k = sendmsg(d->io.fd, &h, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return -errno;
    trace_datagram(d, "send", len, "to", to ? to : &d->peer, 0);
    d->stats.sent++;
    d->stats.send_calls++;
    return 0;
}

SK_API int sk_dgram_send(sk_dgram *d, const void *data, size_t len, const sk_addr *to)
{
    if (d->flags & DG_CLOSED)
        return -EBADF;
    if (!to && !(d->flags & DG_CONNECTED))
        return -EDESTADDRREQ;
    if (to && to->ss.ss_family == AF_UNIX && to->len <= offsetof(struct sockaddr_un, sun_path))
        return -EDESTADDRREQ; /* an unnamed Unix peer cannot be answered */
    if (len > max_payload(d, to))
        return -EMSGSIZE;
    if (d->batch == 1 && d->qlen == 0 && !(d->flags & DG_BLOCKED)) {
        int err = send_now(d, data, len, to);
        if (err == 0)
            return 0;
        if (earlier_error(d, err)) { /* the kernel's report about an earlier datagram */
            d->flags |= DG_IN_CALL;
            report_error(d, err, to ? to : &d->peer);
            d->flags &= ~(unsigned)DG_IN_CALL;
        }
        /* Queued, flush() below meets the same error and treats it as for any queued one. */
    }
    if (d->qlen >= d->max_queue) {
        d->stats.refused++;
        d->flags |= DG_ABOVE_HIGH;
        return -ENOBUFS;
    }
    int rc = q_push(d, data, len, to);
    if (rc < 0)
        return rc;
    if (d->qlen >= d->max_queue / 2)
        d->flags |= DG_ABOVE_HIGH;
    if (d->flags & DG_BLOCKED)
        return 0;
    if (d->qlen >= d->batch) {
        /* A full batch (or, with batch 1, every datagram) goes now. */
        d->flags |= DG_IN_CALL;
        flush(d);
        d->flags &= ~(unsigned)DG_IN_CALL;
    } else {
        sk__defer(d->loop, &d->io); /* the rest of the batch leaves at the iteration's end */
    }
    return 0;
}

SK_API size_t sk_dgram_queued_datagrams(const sk_dgram *d)
{
    return d->qlen;
}

SK_API bool sk_dgram_writable(const sk_dgram *d)
{
    return !(d->flags & (DG_ABOVE_HIGH | DG_CLOSED));
}

/* ---------------------------------------------------------------- events, tasks */

static void dgram_io(sk__io *io, unsigned events)
{
    sk_dgram *d = (sk_dgram *)io;
    if (events & SK__DEFERRED) {
        dgram_task(d);
        return;
    }
    if ((events & SK_WRITABLE) && (d->flags & DG_BLOCKED)) {
        unsigned sent = flush(d);
        if (sent == 0 && (d->flags & DG_BLOCKED) && !(d->flags & DG_CLOSED))
            block(d, true); /* "writable" but nothing went: poll cannot tell us, so retry */
    }
    if ((events & SK_READABLE) && !(d->flags & DG_CLOSED) && (d->io.events & SK_READABLE))
        on_readable(d);
}

static void free_dgram(sk_dgram *d)
{
    while (d->qlen)
        q_pop(d, 1);
    free(d->q);
    free(d->rbuf);
    free(d->rmsg);
    free(d->riov);
    free(d->raddr);
    free(d->smsg);
    free(d->siov);
    free(d->unix_path);
    free(d);
}

static void dgram_task(sk_dgram *d)
{
    if (d->flags & DG_CLOSED) {
        free_dgram(d);
        return;
    }
    if (d->err_pending) {
        int err = d->err_pending;
        d->err_pending = 0;
        if (d->cb->on_error)
            d->cb->on_error(d, err, d->err_has_peer ? &d->err_peer : NULL);
        if (d->flags & DG_CLOSED)
            return;
    }
    if (d->flags & DG_DRAIN_OWED) {
        d->flags &= ~(unsigned)DG_DRAIN_OWED;
        if (d->cb->on_drain)
            d->cb->on_drain(d);
        if (d->flags & DG_CLOSED)
            return;
    }
    deliver(d); /* datagrams held while paused */
    if (d->flags & DG_CLOSED)
        return;
    if (d->qlen && !(d->flags & DG_BLOCKED))
        flush(d);
    update_interest(d);
}

/* ---------------------------------------------------------------- opening, closing */

static int bind_dgram(sk_dgram *d, const sk_addr *addr)
{
    /* The copy of the path first: once bound, a failure would leave the socket file behind. */
    const char *path = sk__sock_unix_path(addr);
    char *copy = NULL;
    if (path && !(copy = strdup(path)))
        return -ENOMEM;
    int rc = sk__sock_bind(d->loop, d->io.fd, SOCK_DGRAM, addr);
    if (rc < 0) {
        free(copy); /* not ours to remove: the file may be a live server's */
        return rc;
    }
    d->unix_path = copy;
    return 0;
}

static int setup_socket(sk_dgram *d, const sk_addr *bind_addr, const sk_addr *connect_to,
                        const sk_dgram_options *o)
{
    int fd = d->io.fd;
    if (o->rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
    if (o->sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof o->sndbuf);
    if (bind_addr)
        sk__sock_v6only(fd, d->family, o->v6only);
    int rc = 0;
    if (bind_addr) {
        rc = bind_dgram(d, bind_addr);
    } else if (d->family == AF_UNIX) {
        /* Linux autobind: an address of the family alone gets an abstract name, so the server's
         * replies can find us. */
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        rc = bind(fd, (struct sockaddr *)&sun, sizeof(sa_family_t)) == 0 ? 0 : -errno;
        SK_TRACE(d->loop, "bind fd=%d (automatic Unix name)", fd);
    }
    if (rc == 0 && connect_to) {
        if (sk__trace_on(d->loop)) {
            char name[SK_ADDR_STRLEN];
            sk_addr_format(connect_to, name, sizeof name);
            sk__trace(d->loop, "connect fd=%d %s", fd, name);
        }
        do
            rc = connect(fd, (const struct sockaddr *)&connect_to->ss, connect_to->len);
        while (rc < 0 && errno == EINTR);
        if (rc < 0)
            rc = -errno;
        d->flags |= DG_CONNECTED;
        d->peer = *connect_to;
    }
    return rc;
}

static int alloc_buffers(sk_dgram *d)
{
    unsigned b = d->batch;
    d->rmsg = calloc(b, sizeof *d->rmsg);
    d->riov = calloc(b, sizeof *d->riov);
    d->raddr = calloc(b, sizeof *d->raddr);
    d->smsg = calloc(b, sizeof *d->smsg);
    d->siov = calloc(b, sizeof *d->siov);
    if (!d->rmsg || !d->riov || !d->raddr || !d->smsg || !d->siov)
        return -ENOMEM;
    uint8_t *base;
    if (b == 1 && d->max_size <= SK__READ_BUF) {
        base = sk__loop_read_buf(d->loop);
    } else {
        if (d->max_size > SIZE_MAX / b)
            return -ENOMEM;
        base = d->rbuf = malloc(b * d->max_size);
        if (!base)
            return -ENOMEM;
    }
    for (unsigned i = 0; i < b; i++)
        d->riov[i] = (struct iovec){.iov_base = base + i * d->max_size, .iov_len = d->max_size};
    return 0;
}

SK_API int sk_dgram_open(sk_loop *loop, const sk_addr *bind_addr, const sk_addr *connect_to,
                         const sk_dgram_options *opts, const sk_dgram_callbacks *callbacks,
                         void *data, sk_dgram **out)
{
    static const sk_dgram_options defaults;
    const sk_dgram_options *o = opts ? opts : &defaults;
    if ((!bind_addr && !connect_to) || !callbacks || !callbacks->on_datagram ||
        o->max_size > MAX_SIZE_LIMIT)
        return -EINVAL;
    int family = bind_addr ? bind_addr->ss.ss_family : connect_to->ss.ss_family;
    if (bind_addr && connect_to && connect_to->ss.ss_family != family)
        return -EAFNOSUPPORT;
    sk_dgram *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->loop = loop;
    d->cb = callbacks;
    d->data = data;
    d->family = family;
    d->max_size = o->max_size ? o->max_size : SK_DGRAM_MAX_SIZE_DEFAULT;
    d->batch = o->batch > SK_DGRAM_BATCH_MAX ? SK_DGRAM_BATCH_MAX : o->batch;
    if (d->batch == 0) { /* the default batch, fewer slots when they are large: <= 1 MiB */
        size_t fit = (1u << 20) / d->max_size;
        d->batch = fit >= SK_DGRAM_BATCH_DEFAULT ? SK_DGRAM_BATCH_DEFAULT : fit ? (unsigned)fit : 1;
    }
    d->max_queue = o->max_queue ? o->max_queue : SK_DGRAM_QUEUE_DEFAULT;
    if (d->max_queue < 4 * d->batch)
        d->max_queue = 4 * d->batch;
    d->io.fd = -1;
    int rc = alloc_buffers(d);
    if (rc == 0)
        rc = d->io.fd = sk__socket(loop, family, SOCK_DGRAM);
    if (rc >= 0)
        rc = setup_socket(d, bind_addr, connect_to, o);
    if (rc >= 0)
        rc = sk__io_start(loop, &d->io, d->io.fd, SK_READABLE, dgram_io);
    if (rc < 0) {
        if (d->io.fd >= 0)
            close(d->io.fd);
        if (d->unix_path)
            unlink(d->unix_path);
        free_dgram(d);
        return rc;
    }
    if (out)
        *out = d;
    return 0;
}

SK_API void sk_dgram_close(sk_dgram *d)
{
    if (!d || (d->flags & DG_CLOSED))
        return;
    /* One last try for what is queued; errors now go nowhere. */
    if (d->qlen && !(d->flags & DG_BLOCKED)) {
        d->flags |= DG_IN_CALL;
        flush(d);
        d->flags &= ~(unsigned)DG_IN_CALL;
    }
    d->flags |= DG_CLOSED;
    sk__io_stop(d->loop, &d->io);
    SK_TRACE(d->loop, "close fd=%d", d->io.fd);
    close(d->io.fd);
    d->io.fd = -1;
    if (d->unix_path)
        unlink(d->unix_path);
    sk_timer_free(d->retry);
    d->retry = NULL;
    sk__defer(d->loop, &d->io);
}

/* ---------------------------------------------------------------- pause, queries */

SK_API void sk_dgram_pause_reading(sk_dgram *d)
{
    d->flags |= DG_PAUSED;
    update_interest(d);
}

SK_API void sk_dgram_resume_reading(sk_dgram *d)
{
    if (!(d->flags & DG_PAUSED))
        return;
    d->flags &= ~(unsigned)DG_PAUSED;
    if (d->rnext < d->rcount)
        sk__defer(d->loop, &d->io); /* held datagrams first; reading follows */
    update_interest(d);
}

SK_API int sk_dgram_local_addr(const sk_dgram *d, sk_addr *out)
{
    out->len = sizeof out->ss;
    return getsockname(d->io.fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
}

SK_API void sk_dgram_set_data(sk_dgram *d, void *data)
{
    d->data = data;
}

SK_API void *sk_dgram_data(const sk_dgram *d)
{
    return d->data;
}

SK_API int sk_dgram_fd(const sk_dgram *d)
{
    return d->io.fd;
}

SK_API sk_loop *sk_dgram_loop(const sk_dgram *d)
{
    return d->loop;
}

SK_API void sk_dgram_get_stats(const sk_dgram *d, sk_dgram_stats *out)
{
    *out = d->stats;
}
