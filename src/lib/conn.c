/* A connection: non-blocking stream socket, framed input, queued output with backpressure.
 * This part: creation, settings, the life cycle (connect, layers starting, close, shutdown,
 * abort), readiness dispatch and queries. conn_io.c moves the bytes; conn_core.c holds what
 * both stand on (timer, interest, layer stack, the ends).
 *
 * Memory: an idle conn is this struct alone. Input is read into the loop's shared buffer and
 * frames are delivered from there; only a partial frame is copied into c->x->in. Output goes to
 * the kernel first; only the rest is copied into c->x->out. Both buffers are freed when empty. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_internal.h"

static const sk_conn_callbacks no_callbacks;

static void conn_io(sk__io *io, unsigned events);
static void conn_task(sk_conn *c);

/* ---------------------------------------------------------------- creation */

static sk_conn *conn_new(sk_loop *loop, int fd)
{
    sk_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io.fd = fd;
    c->loop = loop;
    c->cb = &no_callbacks;
    c->x = (sk__conn_cold *)&sk__conn_defaults; /* read-only until sk__conn_own() */
    if (sk__conn_stats_on(loop)) {
        if (!sk__conn_own(c)) {
            free(c);
            return NULL;
        }
        c->x->opened_ms = sk_loop_now(loop);
    }
    return c;
}

int sk__conn_accepted(sk_loop *loop, int fd, sk_conn **out)
{
    sk_conn *c = conn_new(loop, fd);
    if (!c)
        return -ENOMEM;
    /* Not on the loop yet: the listener registers what the conn wants once its accept
     * callback has run (sk__conn_update_interest), so a conn that the callback pauses (a relay
     * waiting for its target) or closes costs no epoll_ctl at all. */
    int rc = sk__io_start(loop, &c->io, fd, 0, conn_io);
    if (rc < 0) {
        if (sk__conn_owns_cold(c))
            free(c->x);
        free(c); /* the socket stays the caller's */
        return rc;
    }
    *out = c;
    return 0;
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
    if (sk__trace_on(loop)) {
        sk_addr_format(addr, name, sizeof name);
        sk__trace(loop, "connect fd=%d %s", fd, name);
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
    c->flags |= F_CONNECTING | F_OUTGOING;
    if (timeout_ms && (!sk__conn_own(c) || sk__conn_make_timer(c) < 0)) {
        sk__conn_free(c); /* a connect without its deadline could hang forever: refuse it */
        return -ENOMEM;
    }
    if (timeout_ms)
        c->x->connect_ms = timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)timeout_ms;
    rc = sk__io_start(loop, &c->io, fd, SK_WRITABLE, conn_io);
    if (rc < 0) {
        sk__conn_free(c);
        return rc;
    }
    sk__count(&sk__loop_events(loop)->n.connects, 1);
    sk__conn_arm_timer(c, c->x->connect_ms);
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
    uint32_t m = max ? (uint32_t)max : SK_FRAME_DEFAULT_MAX;
    if (m != c->x->max_frame) {
        if (!sk__conn_own(c))
            return -ENOMEM;
        c->x->max_frame = m;
    }
    return 0;
}

SK_API int sk_conn_set_watermarks(sk_conn *c, size_t low, size_t high, size_t limit)
{
    if (low > high || high > limit || limit > UINT32_MAX)
        return -EINVAL;
    if (low == c->x->low && high == c->x->high && limit == c->x->limit)
        return 0;
    if (!sk__conn_own(c))
        return -ENOMEM;
    c->x->low = (uint32_t)low;
    c->x->high = (uint32_t)high;
    c->x->limit = (uint32_t)limit;
    return 0;
}

SK_API int sk_conn_set_idle_timeout(sk_conn *c, uint64_t ms)
{
    uint32_t idle = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (idle == c->x->idle_ms)
        return 0;
    if (!sk__conn_own(c))
        return -ENOMEM;
    c->x->idle_ms = idle;
    if (!(c->flags & (F_CONNECTING | F_STARTING | F_CLOSING | F_CLOSED)))
        sk__conn_arm_timer(c, c->x->idle_ms);
    return 0;
}

SK_API void sk_conn_set_linger(sk_conn *c, uint64_t ms)
{
    uint32_t linger = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (linger != c->x->linger_ms && sk__conn_own(c))
        c->x->linger_ms = linger;
}

/* ---------------------------------------------------------------- closing */

SK_API void sk_conn_close(sk_conn *c)
{
    sk__conn_begin_close(c);
}

SK_API void sk_conn_shutdown(sk_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED | F_SHUT_WANTED))
        return;
    c->flags |= F_SHUT_WANTED;
    if (!sk__conn_has_output(c) && !(c->flags & (F_CONNECTING | F_STARTING)))
        sk__conn_after_flush(c);
}

SK_API void sk_conn_abort(sk_conn *c)
{
    sk__conn_abort(c);
}

static void conn_task(sk_conn *c)
{
    if (c->flags & F_CLOSED) {
        sk__conn_report_close(c);
        if (c->cb->on_close)
            c->cb->on_close(c, c->close_reason);
        sk__conn_free(c);
        return;
    }
    if (c->flags & F_STARTING) { /* a layer started on bytes one below it holds (TLS after a */
        sk__conn_start_now(c);   /* PROXY header that came with the ClientHello) */
        return;
    }
    sk__conn_deliver_held(c); /* after sk_conn_resume_reading() */
    /* Bytes a layer holds (a TLS record decrypted but not yet read) are not in the socket, so
     * the loop will not report them: read them now. */
    if (!(c->flags & (F_CLOSED | F_PAUSED | F_STARTING)) && sk__conn_layer_pending(c)) {
        sk__conn_on_readable(c);
        /* More than the room of one read: the rest is still inside the layer. */
        if (!(c->flags & F_CLOSED) && sk__conn_layer_pending(c))
            sk__defer(c->loop, &c->io);
    }
}

/* The conn is up (TCP connected, every layer started): on_connect, then what was queued. */
static void established(sk_conn *c)
{
    if (c->flags & F_OUTGOING) {
        sk__count(&sk__loop_events(c->loop)->n.connected, 1);
        sk__emit(c->loop, &(sk_event){.kind = SK_EV_CONNECTED, .conn = c});
    }
    sk__conn_arm_timer(c, sk__conn_current_period(c)); /* idle, or the linger of a close */
    sk__conn_update_interest(c);
    if (c->cb->on_connect && !(c->flags & F_CLOSING))
        c->cb->on_connect(c);
    if (c->flags & F_CLOSED)
        return;
    if (c->x->out)
        sk__conn_flush(c);
    else if (c->flags & F_SHUT_WANTED)
        sk__conn_after_flush(c);
}

/* Bring the layers up, one readiness at a time. */
static void start_step(sk_conn *c)
{
    int rc = sk__conn_start_layers(c);
    if (rc < 0) {
        sk__conn_finish(c, rc);
        return;
    }
    if (rc == 0) {
        sk__conn_update_interest(c);
        return;
    }
    c->flags &= (uint16_t)~F_STARTING;
    sk__conn_touch(c);
    established(c);
    /* Bytes that came behind a layer's start (a client's first data in the same segment as
     * its PROXY header) are inside the layer, where the loop cannot see them: read them now. */
    if (!(c->flags & F_CLOSED) && sk__conn_layer_pending(c))
        sk__defer(c->loop, &c->io);
}

void sk__conn_start_now(sk_conn *c)
{
    if ((c->flags & F_STARTING) && !(c->flags & (F_CONNECTING | F_CLOSED)))
        start_step(c);
}

static void on_connected(sk_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        sk__conn_finish(c, -err);
        return;
    }
    c->flags &= (uint16_t)~F_CONNECTING;
    sk__conn_touch(c);
    if (c->flags & F_STARTING) {
        c->x->connect_ms = c->x->start_ms;
        sk__conn_arm_timer(c, c->x->connect_ms);
        start_step(c);
        return;
    }
    established(c);
}

static void conn_io(sk__io *io, unsigned events)
{
    sk_conn *c = (sk_conn *)io;
    if (events & SK__DEFERRED) {
        conn_task(c);
        return;
    }
    if (c->flags & F_CONNECTING) {
        on_connected(c);
        return;
    }
    if (c->flags & F_STARTING) {
        start_step(c);
        return;
    }
    if (c->x->top) {
        /* Through a layer either readiness may serve either direction (TLS reads a record
         * to write, writes to read): try what is wanted. */
        if (c->x->out)
            sk__conn_flush(c);
        /* Read only while reading is wanted: a paused conn whose write wanted writability
         * must not deliver frames (nor read to discard unless closing). */
        if (!(c->flags & F_CLOSED) && sk__conn_reading(c))
            sk__conn_on_readable(c);
        if (!(c->flags & F_CLOSED) && sk__conn_layer_pending(c))
            sk__defer(c->loop, &c->io);
        return;
    }
    if ((events & SK_WRITABLE) && sk__conn_has_output(c))
        sk__conn_flush(c);
    if ((events & SK_READABLE) && !(c->flags & F_CLOSED) && (c->io.events & SK_READABLE))
        sk__conn_on_readable(c);
}

/* ---------------------------------------------------------------- pause, resume, queries */

SK_API void sk_conn_pause_reading(sk_conn *c)
{
    c->flags |= F_PAUSED;
    sk__conn_update_interest(c);
}

SK_API void sk_conn_resume_reading(sk_conn *c)
{
    if (!(c->flags & F_PAUSED))
        return;
    c->flags &= (uint16_t)~F_PAUSED;
    sk__conn_update_interest(c);
    /* Bytes a layer decrypted before the pause wait inside it, where the loop cannot see them. */
    if (c->x->in_len || (c->flags & F_PEER_EOF) || sk__conn_layer_pending(c))
        sk__defer(c->loop, &c->io);
}

SK_API bool sk_conn_input_pending(const sk_conn *c)
{
    int unread = 0;
    if (c->flags & F_CLOSED)
        return false;
    if (sk__conn_layer_pending(c))
        return true;
    return ioctl(c->io.fd, FIONREAD, &unread) == 0 && unread > 0;
}

SK_API int sk_conn_peer_addr(const sk_conn *c, sk_addr *out)
{
    const sk__accepting *a = sk__loop_accepting(c->loop);
    if (a->conn == c) { /* in its accept callback: what accept4() said, without a syscall */
        *out = *a->peer;
        return 0;
    }
    if (c->x->top && sk__conn_layer_addr(c, false, out) == 0)
        return 0; /* a PROXY header's client */
    out->len = sizeof out->ss;
    return getpeername(sk__conn_socket(c), (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
}

SK_API int sk_conn_local_addr(const sk_conn *c, sk_addr *out)
{
    if (c->x->top && sk__conn_layer_addr(c, true, out) == 0)
        return 0;
    out->len = sizeof out->ss;
    return getsockname(sk__conn_socket(c), (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
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
    return sk__conn_socket(c);
}

SK_API sk_loop *sk_conn_loop(const sk_conn *c)
{
    return c->loop;
}

void sk__conn_set_release(sk_conn *c, sk__release *r)
{
    c->release = r;
}
