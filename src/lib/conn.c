/* A connection: non-blocking stream socket, framed input, queued output with backpressure.
 *
 * Memory: an idle conn is this struct alone. Input is read into the loop's shared buffer and
 * frames are delivered from there; only a partial frame is copied into c->in. Output goes to
 * the kernel first; only the rest is copied into c->out. Both buffers are freed when empty.
 *
 * One timer per conn, allocated on first use, serves whichever deadline the state needs:
 * connect timeout, idle timeout, or the close (flush + linger) deadline. Progress only
 * refreshes c->last_active; the timer re-arms itself for the remainder when it fires early. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

enum {
    F_CONNECTING = 1 << 0, /* connect() in progress */
    F_PAUSED = 1 << 1,     /* the user paused reading */
    F_PEER_EOF = 1 << 2,   /* the peer's FIN arrived */
    F_SHUT_WANTED = 1 << 3, /* sk_conn_shutdown(): send FIN once the queue is empty */
    F_SHUT_DONE = 1 << 4,  /* our FIN is sent */
    F_CLOSING = 1 << 5,    /* sk_conn_close(): flush, FIN, linger; no more user callbacks */
    F_CLOSED = 1 << 6,     /* fd closed; on_close and free are queued */
    F_ABOVE_HIGH = 1 << 7, /* the queue passed the high watermark; on_drain owed */
    F_EOF_REPORTED = 1 << 8, /* on_eof was called (or the conn closed at the FIN) */
    F_HANDSHAKING = 1 << 9,  /* TLS handshake in progress */
};

typedef struct outq {
    size_t head, len, cap; /* bytes data[head .. head+len) wait for the kernel */
    uint8_t data[];
} outq;

struct sk_conn {
    sk__io io;
    sk_loop *loop;
    const sk_conn_callbacks *cb;
    void *data;
    uint8_t *in;            /* a partial frame, or frames held while paused */
    uint32_t in_len, in_cap;
    outq *out;
    sk__tls *tls;           /* NULL for plain TCP and Unix sockets */
    sk_timer *timer;
    sk__task task;          /* deferred work: deliver held frames, or finish closing */
    uint64_t last_active;
    uint32_t max_frame;
    uint32_t low, high, limit;
    uint32_t idle_ms, linger_ms, connect_ms, handshake_ms;
    uint16_t flags;
    uint8_t frame_kind;
    int close_reason;
    sk__release_fn release; /* the listener's admission count, told when the fd closes */
    void *release_arg;
};

static const sk_conn_callbacks no_callbacks;

/* ---------------------------------------------------------------- transports
 * Plain sockets and TLS behind one table, so everything above (framing, queueing,
 * backpressure, timeouts, half-close) is written once. recv: bytes, 0 at a clean end, -EAGAIN
 * to wait, or a failure code. sendv: bytes taken (maybe fewer than offered), -EAGAIN, or a
 * failure code. send_fin: half-close our direction. */
typedef struct transport {
    ssize_t (*recv)(sk_conn *c, void *buf, size_t len);
    ssize_t (*sendv)(sk_conn *c, const struct iovec *iov, int iovcnt);
    void (*send_fin)(sk_conn *c);
} transport;

static ssize_t plain_recv(sk_conn *c, void *buf, size_t len)
{
    ssize_t n;
    do
        n = recv(c->io.fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static ssize_t plain_sendv(sk_conn *c, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n;
    do
        n = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static void plain_send_fin(sk_conn *c)
{
    shutdown(c->io.fd, SHUT_WR);
}

static ssize_t tls_recv(sk_conn *c, void *buf, size_t len)
{
    return sk__tls_read(c->tls, buf, len);
}

/* A frame's pieces (length prefix and payload, or line and newline) go out as one record when
 * they fit: fewer records, fewer bytes, fewer packets. */
static ssize_t tls_sendv(sk_conn *c, const struct iovec *iov, int iovcnt)
{
    if (iovcnt > 1) {
        uint8_t record[16384];
        size_t n = 0;
        int i = 0;
        for (; i < iovcnt && n + iov[i].iov_len <= sizeof record; i++) {
            memcpy(record + n, iov[i].iov_base, iov[i].iov_len);
            n += iov[i].iov_len;
        }
        if (i == iovcnt)
            return sk__tls_write(c->tls, record, n);
    }
    /* Large: the first piece now; the caller queues the rest. */
    return sk__tls_write(c->tls, iov[0].iov_base, iov[0].iov_len);
}

static void tls_send_fin(sk_conn *c)
{
    sk__tls_shutdown(c->tls); /* close_notify: TLS's own half-close */
    shutdown(c->io.fd, SHUT_WR);
}

static const transport plain_transport = {plain_recv, plain_sendv, plain_send_fin};
static const transport tls_transport = {tls_recv, tls_sendv, tls_send_fin};

static const transport *tr(const sk_conn *c)
{
    return c->tls ? &tls_transport : &plain_transport;
}

static void conn_io(sk__io *io, unsigned events);
static void conn_task(sk__task *task);
static void finish(sk_conn *c, int reason);
static void deliver_held(sk_conn *c);
static void on_readable(sk_conn *c);

/* ---------------------------------------------------------------- creation */

static sk_conn *conn_new(sk_loop *loop, int fd)
{
    sk_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io.fd = fd;
    c->loop = loop;
    c->cb = &no_callbacks;
    c->task.fn = conn_task;
    c->last_active = sk_loop_now(loop);
    c->max_frame = SK_FRAME_DEFAULT_MAX;
    c->low = 16 * 1024;
    c->high = 64 * 1024;
    c->limit = 1024 * 1024;
    c->linger_ms = 2000;
    return c;
}

int sk__conn_accepted(sk_loop *loop, int fd, sk_conn **out)
{
    sk_conn *c = conn_new(loop, fd);
    if (!c)
        return -ENOMEM;
    int rc = sk__io_start(loop, &c->io, fd, SK_READABLE, conn_io);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void timer_fired(sk_timer *t, void *arg);

/* Arm the conn's one timer for period ms after the last activity. */
static void arm_timer(sk_conn *c, uint32_t period)
{
    if (!period) {
        if (c->timer)
            sk_timer_stop(c->timer);
        return;
    }
    if (!c->timer && sk_timer_new(c->loop, timer_fired, c, &c->timer) < 0)
        return; /* out of memory: the deadline is lost, the conn still works */
    uint64_t now = sk_loop_now(c->loop);
    uint64_t due = c->last_active + period;
    sk_timer_start(c->timer, due > now ? due - now : 0, 0);
}

static uint32_t current_period(const sk_conn *c)
{
    if (c->flags & (F_CONNECTING | F_HANDSHAKING))
        return c->connect_ms;
    if (c->flags & F_CLOSING)
        return c->linger_ms;
    return c->idle_ms;
}

static void timer_fired(sk_timer *t, void *arg)
{
    sk_conn *c = arg;
    uint32_t period = current_period(c);
    if (!period)
        return;
    if (sk_loop_now(c->loop) < c->last_active + period) {
        arm_timer(c, period);
        return;
    }
    if (c->flags & F_CLOSING) {
        /* The peer would not take our data or send its FIN in time. What was flushed stays
         * delivered; what is still queued is lost either way, so say so. */
        finish(c, c->out ? -ETIMEDOUT : c->close_reason);
        return;
    }
    finish(c, -ETIMEDOUT);
}

static void touch(sk_conn *c)
{
    c->last_active = sk_loop_now(c->loop);
}

SK_API int sk_conn_connect(sk_loop *loop, const sk_addr *addr, uint64_t timeout_ms,
                           const sk_conn_callbacks *callbacks, void *data, sk_conn **out)
{
    int family = addr->ss.ss_family;
    int fd = sk__socket(loop, family, SOCK_STREAM);
    if (fd < 0)
        return fd;
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    char name[SK_ADDR_STRLEN];
    if (sk__log_on(loop, SK_LOG_TRACE)) {
        sk_addr_format(addr, name, sizeof name);
        sk__log(loop, SK_LOG_TRACE, "connect fd=%d %s", fd, name);
    }
    int rc;
    do
        rc = connect(fd, (const struct sockaddr *)&addr->ss, addr->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN) {
        rc = -errno;
        close(fd);
        return rc;
    }
    sk_conn *c = conn_new(loop, fd);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->cb = callbacks ? callbacks : &no_callbacks;
    c->data = data;
    c->flags |= F_CONNECTING;
    c->connect_ms = timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)timeout_ms;
    rc = sk__io_start(loop, &c->io, fd, SK_WRITABLE, conn_io);
    if (rc < 0) {
        close(fd);
        free(c);
        return rc;
    }
    arm_timer(c, c->connect_ms);
    if (out)
        *out = c;
    return 0;
}

/* ---------------------------------------------------------------- settings */

SK_API void sk_conn_set_callbacks(sk_conn *c, const sk_conn_callbacks *callbacks)
{
    c->cb = callbacks ? callbacks : &no_callbacks;
}

SK_API void sk_conn_set_data(sk_conn *c, void *data)
{
    c->data = data;
}

SK_API void *sk_conn_data(const sk_conn *c)
{
    return c->data;
}

SK_API int sk_conn_set_framing(sk_conn *c, sk_frame_kind kind, size_t max)
{
    if ((unsigned)kind > SK_FRAME_LEN32 || max > UINT32_MAX - 8)
        return -EINVAL;
    c->frame_kind = (uint8_t)kind;
    c->max_frame = max ? (uint32_t)max : SK_FRAME_DEFAULT_MAX;
    return 0;
}

SK_API int sk_conn_set_watermarks(sk_conn *c, size_t low, size_t high, size_t limit)
{
    if (low > high || high > limit || limit > UINT32_MAX)
        return -EINVAL;
    c->low = (uint32_t)low;
    c->high = (uint32_t)high;
    c->limit = (uint32_t)limit;
    return 0;
}

SK_API int sk_conn_set_idle_timeout(sk_conn *c, uint64_t ms)
{
    c->idle_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (!(c->flags & (F_CONNECTING | F_HANDSHAKING | F_CLOSING | F_CLOSED)))
        arm_timer(c, c->idle_ms);
    return 0;
}

SK_API void sk_conn_set_linger(sk_conn *c, uint64_t ms)
{
    c->linger_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* ---------------------------------------------------------------- interest in the socket */

static void update_interest(sk_conn *c)
{
    if (c->flags & F_CLOSED)
        return;
    unsigned want = 0;
    if (c->flags & F_CONNECTING) {
        want = SK_WRITABLE;
    } else if (c->flags & F_HANDSHAKING) {
        want = sk__tls_wants(c->tls);
    } else {
        /* While closing we keep reading, to discard what the peer sends until its FIN. */
        bool reading = !(c->flags & F_PEER_EOF) &&
                       ((c->flags & F_CLOSING) || !(c->flags & F_PAUSED));
        if (reading)
            want |= SK_READABLE;
        if (c->out)
            want |= SK_WRITABLE;
        /* TLS may need the other direction (a record to read before a write, or the reverse). */
        if (c->tls && (reading || c->out))
            want |= sk__tls_wants(c->tls);
    }
    if (sk__io_update(c->loop, &c->io, want) < 0)
        finish(c, -ENOMEM);
}

/* ---------------------------------------------------------------- closing */

/* Close the fd now and queue on_close + free for the end of this iteration. */
static void finish(sk_conn *c, int reason)
{
    if (c->flags & F_CLOSED)
        return;
    c->flags |= F_CLOSED;
    c->close_reason = reason;
    sk__io_stop(c->loop, &c->io);
    SK_TRACE(c->loop, "close fd=%d", c->io.fd);
    close(c->io.fd);
    c->io.fd = -1;
    if (c->release)
        c->release(c->release_arg);
    c->release = NULL;
    if (c->timer)
        sk_timer_stop(c->timer);
    sk__defer(c->loop, &c->task);
}

void sk__conn_set_release(sk_conn *c, sk__release_fn fn, void *arg)
{
    c->release = fn;
    c->release_arg = arg;
}

static void send_fin(sk_conn *c)
{
    if (c->flags & F_SHUT_DONE)
        return;
    c->flags |= F_SHUT_DONE;
    SK_TRACE(c->loop, "shutdown fd=%d write", c->io.fd);
    tr(c)->send_fin(c);
}

/* After the queue empties: send a wanted FIN; finish when both directions are done. */
static void after_flush(sk_conn *c)
{
    if (c->flags & (F_SHUT_WANTED | F_CLOSING))
        send_fin(c);
    if (!(c->flags & F_PEER_EOF))
        return;
    if (c->flags & F_CLOSING)
        finish(c, c->close_reason);
    else if ((c->flags & F_SHUT_DONE) && (c->flags & F_EOF_REPORTED))
        finish(c, 0);
}

SK_API void sk_conn_close(sk_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED))
        return;
    if (c->flags & F_CONNECTING) {
        finish(c, 0);
        return;
    }
    c->flags |= F_CLOSING;
    touch(c);
    arm_timer(c, c->linger_ms);
    if (!c->out)
        after_flush(c);
    update_interest(c);
}

SK_API void sk_conn_shutdown(sk_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED | F_SHUT_WANTED))
        return;
    c->flags |= F_SHUT_WANTED;
    if (!c->out && !(c->flags & (F_CONNECTING | F_HANDSHAKING)))
        after_flush(c);
}

SK_API void sk_conn_abort(sk_conn *c)
{
    if (c->flags & F_CLOSED)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    finish(c, c->close_reason);
}

/* A failure: a reason of ours (an oversized frame) beats the kernel's report of what followed. */
static void fail(sk_conn *c, int reason)
{
    finish(c, c->close_reason ? c->close_reason : reason);
}

static void conn_task(sk__task *task)
{
    sk_conn *c = (sk_conn *)((char *)task - offsetof(sk_conn, task));
    if (c->flags & F_CLOSED) {
        if (c->cb->on_close)
            c->cb->on_close(c, c->close_reason);
        sk_timer_free(c->timer);
        sk__tls_free(c->tls);
        free(c->in);
        free(c->out);
        free(c);
        return;
    }
    deliver_held(c); /* after sk_conn_resume_reading() */
    /* TLS: a record decrypted but not yet read waits in OpenSSL, not in the socket, so epoll
     * will not report it: read it now. */
    if (c->tls && !(c->flags & (F_CLOSED | F_PAUSED | F_HANDSHAKING)) &&
        sk__tls_pending(c->tls)) {
        on_readable(c);
        /* A record larger than the room of one read: its rest is still inside OpenSSL. */
        if (!(c->flags & F_CLOSED) && sk__tls_pending(c->tls))
            sk__defer(c->loop, &c->task);
    }
}

/* ---------------------------------------------------------------- output */

static int queue_bytes(sk_conn *c, const struct iovec *iov, int iovcnt, size_t skip, size_t n)
{
    outq *q = c->out;
    size_t queued = q ? q->len : 0;
    if (!q || q->head + q->len + n > q->cap) {
        size_t need = queued + n;
        size_t cap = q ? q->cap : 0;
        if (cap < 4096)
            cap = 4096;
        while (cap < need)
            cap *= 2;
        if (q && q->head > 0 && need <= q->cap) {
            memmove(q->data, q->data + q->head, q->len);
            q->head = 0;
        } else {
            outq *nq = malloc(sizeof *nq + cap);
            if (!nq)
                return -ENOMEM;
            nq->head = 0;
            nq->len = queued;
            nq->cap = cap;
            if (q)
                memcpy(nq->data, q->data + q->head, q->len);
            free(q);
            c->out = q = nq;
        }
    }
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(q->data + q->head + q->len, (const uint8_t *)iov[i].iov_base + skip, len - skip);
        q->len += len - skip;
        skip = 0;
    }
    if (q->len > c->high)
        c->flags |= F_ABOVE_HIGH;
    return 0;
}

SK_API int sk_conn_writev(sk_conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->flags & (F_CLOSED | F_CLOSING | F_SHUT_WANTED))
        return -EPIPE;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    size_t queued = c->out ? c->out->len : 0;
    if (queued + total > c->limit)
        return -ENOBUFS;
    size_t sent = 0;
    if (!c->out && !(c->flags & (F_CONNECTING | F_HANDSHAKING))) {
        ssize_t n = tr(c)->sendv(c, iov, iovcnt);
        if (n < 0 && n != -EAGAIN) {
            fail(c, (int)n);
            return (int)n;
        }
        if (n > 0) {
            sent = (size_t)n;
            touch(c);
            SK_TRACE(c->loop, "send fd=%d %zd bytes", c->io.fd, n);
        }
    }
    if (sent < total) {
        int rc = queue_bytes(c, iov, iovcnt, sent, total - sent);
        if (rc < 0) {
            fail(c, rc);
            return rc;
        }
        update_interest(c);
    }
    return 0;
}

SK_API int sk_conn_write(sk_conn *c, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return sk_conn_writev(c, &iov, 1);
}

static const char newline[] = "\n";

SK_API int sk_conn_write_frame(sk_conn *c, const void *data, size_t len)
{
    uint8_t prefix[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                         (uint8_t)len};
    struct iovec iov[2] = {{.iov_base = (void *)data, .iov_len = len}};
    switch ((sk_frame_kind)c->frame_kind) {
    case SK_FRAME_LINE:
        iov[1] = (struct iovec){.iov_base = (void *)newline, .iov_len = 1};
        return sk_conn_writev(c, iov, 2);
    case SK_FRAME_LEN32:
        if (len > UINT32_MAX)
            return -EMSGSIZE;
        iov[1] = iov[0];
        iov[0] = (struct iovec){.iov_base = prefix, .iov_len = 4};
        return sk_conn_writev(c, iov, 2);
    case SK_FRAME_RAW:
        break;
    }
    return sk_conn_writev(c, iov, 1);
}

SK_API size_t sk_conn_queued(const sk_conn *c)
{
    return c->out ? c->out->len : 0;
}

SK_API bool sk_conn_writable(const sk_conn *c)
{
    return !(c->flags & (F_ABOVE_HIGH | F_CLOSED | F_CLOSING | F_SHUT_WANTED));
}

/* The socket took more: send what is queued until the kernel's buffer is full again. */
static void flush(sk_conn *c)
{
    outq *q = c->out;
    while (q && q->len) {
        struct iovec iov = {.iov_base = q->data + q->head, .iov_len = q->len};
        ssize_t n = tr(c)->sendv(c, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            fail(c, (int)n);
            return;
        }
        SK_TRACE(c->loop, "send fd=%d %zd bytes", c->io.fd, n);
        touch(c);
        q->head += (size_t)n;
        q->len -= (size_t)n;
    }
    if (q && q->len == 0) {
        free(q);
        c->out = NULL;
    }
    size_t queued = c->out ? c->out->len : 0;
    if ((c->flags & F_ABOVE_HIGH) && queued <= c->low) {
        c->flags &= (uint16_t)~F_ABOVE_HIGH;
        if (c->cb->on_drain && !(c->flags & (F_CLOSING | F_CLOSED)))
            c->cb->on_drain(c);
    }
    if (c->flags & F_CLOSED)
        return;
    if (!c->out)
        after_flush(c);
    update_interest(c);
}

/* ---------------------------------------------------------------- input */

static bool delivering(const sk_conn *c)
{
    return !(c->flags & (F_PAUSED | F_CLOSING | F_CLOSED));
}

static void frame_error(sk_conn *c, int err)
{
    sk__log(c->loop, SK_LOG_INFO, "fd=%d: frame longer than %u bytes; closing the connection",
            c->io.fd, c->max_frame);
    /* Flush what we owe, then close; the rest of the oversized input is discarded. */
    c->close_reason = err;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    sk_conn_close(c);
}

/* Keep data[0..len) in c->in for later (a partial frame, or frames held while paused). */
static int keep_rest(sk_conn *c, const uint8_t *data, size_t len)
{
    if (data == c->in) {
        memmove(c->in, data, len);
        c->in_len = (uint32_t)len;
    } else if (len) {
        if (len > c->in_cap) {
            uint8_t *in = realloc(c->in, len);
            if (!in)
                return -ENOMEM;
            c->in = in;
            c->in_cap = (uint32_t)len;
        }
        memcpy(c->in, data, len);
        c->in_len = (uint32_t)len;
    } else {
        c->in_len = 0;
    }
    if (c->in_len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

/* Cut data into frames and hand each to on_frame; keep an unfinished one. */
static void deliver(sk_conn *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && delivering(c)) {
        sk_frame f;
        int r = sk_frame_next((sk_frame_kind)c->frame_kind, c->max_frame, data + off, len - off,
                              &f);
        if (r == 0)
            break;
        if (r < 0) {
            frame_error(c, r);
            return;
        }
        if (c->cb->on_frame)
            c->cb->on_frame(c, data + off + f.offset, f.length);
        off += f.consumed;
    }
    if (c->flags & (F_CLOSING | F_CLOSED)) {
        keep_rest(c, data, 0);
        return;
    }
    if (keep_rest(c, data + off, len - off) < 0)
        fail(c, -ENOMEM);
}

static void report_eof(sk_conn *c);

/* Frames held while reading was paused, and a FIN that arrived behind them. */
static void deliver_held(sk_conn *c)
{
    if (c->flags & F_PEER_EOF)
        report_eof(c);
    else if (c->in_len && delivering(c))
        deliver(c, c->in, c->in_len);
}

/* Where to read: after a partial frame in c->in, or into the loop's buffer. */
static uint8_t *read_target(sk_conn *c, size_t *room)
{
    if (!c->in_len) {
        *room = SK__READ_BUF;
        return sk__loop_read_buf(c->loop);
    }
    size_t want = (size_t)c->max_frame + 8;
    if (c->in_cap < want && c->in_cap - c->in_len < 4096) {
        size_t cap = c->in_cap * 2;
        if (cap < c->in_len + 4096)
            cap = c->in_len + 4096;
        if (cap > want)
            cap = want;
        uint8_t *in = realloc(c->in, cap);
        if (in) {
            c->in = in;
            c->in_cap = (uint32_t)cap;
        }
    }
    *room = c->in_cap - c->in_len;
    return c->in + c->in_len;
}

/* Tell the user about the FIN once every complete frame before it is delivered. */
static void report_eof(sk_conn *c)
{
    if (c->in_len && delivering(c))
        deliver(c, c->in, c->in_len);
    if (c->flags & (F_CLOSING | F_CLOSED | F_PAUSED | F_EOF_REPORTED))
        return; /* paused: sk_conn_resume_reading() brings us back here */
    c->flags |= F_EOF_REPORTED;
    if (c->in_len) {
        /* The stream ended inside a frame: nothing can complete it. */
        sk__log(c->loop, SK_LOG_WARN, "fd=%d: stream ended inside a frame (%u bytes dropped)",
                c->io.fd, c->in_len);
        keep_rest(c, c->in, 0);
    }
    if (c->cb->on_eof)
        c->cb->on_eof(c);
    else
        sk_conn_close(c);
    /* Both directions are done and the user kept the conn: nothing more can happen on it. */
    if (!(c->flags & (F_CLOSING | F_CLOSED)) && !c->out)
        after_flush(c);
}

static void peer_eof(sk_conn *c)
{
    c->flags |= F_PEER_EOF;
    update_interest(c);
    if (c->flags & F_CLOSING) {
        if (!c->out)
            finish(c, c->close_reason);
        return;
    }
    report_eof(c);
}

static void on_readable(sk_conn *c)
{
    size_t room = SK__READ_BUF;
    uint8_t *buf = (c->flags & F_CLOSING) ? sk__loop_read_buf(c->loop) : read_target(c, &room);
    if (room == 0) {
        fail(c, -ENOMEM); /* a held frame could not grow its buffer */
        return;
    }
    ssize_t n = tr(c)->recv(c, buf, room);
    if (n == -EAGAIN) {
        if (c->tls)
            update_interest(c); /* the read may need writability */
        return;
    }
    if (n < 0) {
        /* Closing: the peer's way of ending (even without close_notify) does not matter. */
        if (c->flags & F_CLOSING)
            finish(c, c->close_reason);
        else
            fail(c, (int)n);
        return;
    }
    if (n == 0) {
        SK_TRACE(c->loop, "recv fd=%d eof", c->io.fd);
        peer_eof(c);
        return;
    }
    SK_TRACE(c->loop, "recv fd=%d %zd bytes", c->io.fd, n);
    if (c->flags & F_CLOSING)
        return; /* discarded, and no progress: a peer that keeps sending cannot delay the close */
    touch(c);
    if (c->frame_kind == SK_FRAME_RAW && !c->in_len) {
        if (c->cb->on_frame)
            c->cb->on_frame(c, buf, (size_t)n);
        return;
    }
    if (buf == c->in + c->in_len) {
        c->in_len += (uint32_t)n;
        deliver(c, c->in, c->in_len);
    } else {
        deliver(c, buf, (size_t)n);
    }
}

/* The conn is up (TCP connected, TLS handshake done): on_connect, then what was queued. */
static void established(sk_conn *c)
{
    arm_timer(c, current_period(c)); /* idle, or the linger of a close made meanwhile */
    update_interest(c);
    if (c->cb->on_connect && !(c->flags & F_CLOSING))
        c->cb->on_connect(c);
    if (c->flags & F_CLOSED)
        return;
    if (c->out)
        flush(c);
    else if (c->flags & F_SHUT_WANTED)
        after_flush(c);
}

static void handshake_step(sk_conn *c);

static void on_connected(sk_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        finish(c, -err);
        return;
    }
    c->flags &= (uint16_t)~F_CONNECTING;
    touch(c);
    if (c->flags & F_HANDSHAKING) {
        c->connect_ms = c->handshake_ms;
        arm_timer(c, c->connect_ms);
        handshake_step(c);
        return;
    }
    established(c);
}

static void handshake_step(sk_conn *c)
{
    int rc = sk__tls_handshake(c->tls);
    if (rc < 0) {
        finish(c, rc);
        return;
    }
    if (rc == 0) {
        update_interest(c);
        return;
    }
    c->flags &= (uint16_t)~F_HANDSHAKING;
    if (sk__log_on(c->loop, SK_LOG_TRACE)) {
        sk_tls_info info;
        sk__tls_info(c->tls, &info);
        sk__log(c->loop, SK_LOG_TRACE, "tls fd=%d %s %s%s%s peer=%s %s", c->io.fd, info.version,
                info.cipher, info.sni ? " sni=" : "", info.sni ? info.sni : "",
                info.peer_subject[0] ? info.peer_subject : "(no certificate)",
                info.verified ? "verified" : "unverified");
    }
    touch(c);
    established(c);
}

static void conn_io(sk__io *io, unsigned events)
{
    sk_conn *c = (sk_conn *)io;
    if (c->flags & F_CONNECTING) {
        on_connected(c);
        return;
    }
    if (c->flags & F_HANDSHAKING) {
        handshake_step(c);
        return;
    }
    if (c->tls) {
        /* Either readiness may serve either direction in TLS: try what is wanted. */
        if (c->out)
            flush(c);
        /* Read only while reading is wanted: a paused conn whose write wanted writability
         * must not deliver frames (nor read to discard unless closing). */
        bool reading = !(c->flags & F_PEER_EOF) &&
                       ((c->flags & F_CLOSING) || !(c->flags & F_PAUSED));
        if (!(c->flags & F_CLOSED) && reading)
            on_readable(c);
        if (!(c->flags & F_CLOSED) && sk__tls_pending(c->tls))
            sk__defer(c->loop, &c->task);
        return;
    }
    if ((events & SK_WRITABLE) && c->out)
        flush(c);
    if ((events & SK_READABLE) && !(c->flags & F_CLOSED) && (c->io.events & SK_READABLE))
        on_readable(c);
}

/* ---------------------------------------------------------------- TLS */

SK_API int sk_conn_start_tls(sk_conn *c, sk_tls_ctx *ctx, const char *name, uint64_t timeout_ms)
{
    if (c->tls || (c->flags & (F_CLOSING | F_CLOSED)))
        return -EINVAL;
    c->tls = sk__tls_new(ctx, c->io.fd, name);
    if (!c->tls)
        return -ENOMEM;
    c->flags |= F_HANDSHAKING;
    uint64_t ms = timeout_ms ? timeout_ms : 10000;
    c->handshake_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (c->flags & F_CONNECTING)
        return 0; /* on_connected() starts the handshake */
    c->connect_ms = c->handshake_ms;
    touch(c);
    arm_timer(c, c->connect_ms);
    update_interest(c);
    return 0;
}

SK_API bool sk_conn_is_tls(const sk_conn *c)
{
    return c->tls != NULL;
}

SK_API int sk_conn_tls_info(const sk_conn *c, sk_tls_info *info)
{
    if (!c->tls)
        return -EINVAL;
    sk__tls_info(c->tls, info);
    return 0;
}

/* ---------------------------------------------------------------- pause, resume, queries */

SK_API void sk_conn_pause_reading(sk_conn *c)
{
    c->flags |= F_PAUSED;
    update_interest(c);
}

SK_API void sk_conn_resume_reading(sk_conn *c)
{
    if (!(c->flags & F_PAUSED))
        return;
    c->flags &= (uint16_t)~F_PAUSED;
    update_interest(c);
    /* TLS: bytes decrypted before the pause wait in OpenSSL, where epoll cannot see them. */
    if (c->in_len || (c->flags & F_PEER_EOF) || (c->tls && sk__tls_pending(c->tls)))
        sk__defer(c->loop, &c->task);
}

SK_API bool sk_conn_input_pending(const sk_conn *c)
{
    int unread = 0;
    if (c->flags & F_CLOSED)
        return false;
    if (c->tls && sk__tls_pending(c->tls))
        return true;
    return ioctl(c->io.fd, FIONREAD, &unread) == 0 && unread > 0;
}

SK_API int sk_conn_peer_addr(const sk_conn *c, sk_addr *out)
{
    out->len = sizeof out->ss;
    return getpeername(c->io.fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
}

SK_API int sk_conn_local_addr(const sk_conn *c, sk_addr *out)
{
    out->len = sizeof out->ss;
    return getsockname(c->io.fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
}

SK_API int sk_conn_peer_name(const sk_conn *c, char *buf, size_t len)
{
    sk_addr a;
    int rc = sk_conn_peer_addr(c, &a);
    if (rc < 0) {
        if (len)
            buf[0] = '\0';
        return rc;
    }
    return sk_addr_format(&a, buf, len);
}

SK_API int sk_conn_fd(const sk_conn *c)
{
    return c->io.fd;
}

SK_API sk_loop *sk_conn_loop(const sk_conn *c)
{
    return c->loop;
}
