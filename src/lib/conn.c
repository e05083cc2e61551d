/* A connection: non-blocking stream socket, framed input, queued output with backpressure.
 * This half: creation, settings, the one timer, the life cycle (connect, TLS handshake, close,
 * shutdown, abort) and queries. conn_io.c moves the bytes.
 *
 * Memory: an idle conn is this struct alone. Input is read into the loop's shared buffer and
 * frames are delivered from there; only a partial frame is copied into c->x->in. Output goes to
 * the kernel first; only the rest is copied into c->x->out. Both buffers are freed when empty.
 *
 * One timer per conn, allocated on first use, serves whichever deadline the state needs:
 * connect timeout, handshake timeout, idle timeout, or the close (flush + linger) deadline.
 * Progress only refreshes c->x->last_active; the timer re-arms itself for the remainder when it
 * fires early. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h> /* SIOCOUTQ */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_internal.h"

static const sk_conn_callbacks no_callbacks;

static void conn_io(sk__io *io, unsigned events);
static void conn_task(sk_conn *c);

/* ---------------------------------------------------------------- creation */

const sk__conn_cold sk__conn_defaults = {
    .max_frame = SK_FRAME_DEFAULT_MAX,
    .low = 16 * 1024,
    .high = 64 * 1024,
    .limit = 1024 * 1024,
    .linger_ms = 2000,
};

static bool owns_cold(const sk_conn *c)
{
    return c->x != &sk__conn_defaults;
}

sk__conn_cold *sk__conn_own(sk_conn *c)
{
    if (owns_cold(c))
        return c->x;
    sk__conn_cold *x = malloc(sizeof *x);
    if (!x)
        return NULL;
    *x = sk__conn_defaults;
    x->last_active = sk_loop_now(c->loop);
    c->x = x;
    return x;
}

int sk__conn_socket(const sk_conn *c)
{
    return c->io.fd >= 0 ? c->io.fd : -1 - c->io.fd;
}

static sk_conn *conn_new(sk_loop *loop, int fd)
{
    sk_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io.fd = fd;
    c->loop = loop;
    c->cb = &no_callbacks;
    c->x = (sk__conn_cold *)&sk__conn_defaults; /* read-only until sk__conn_own() */
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
        if (c->x->timer)
            sk_timer_stop(c->x->timer);
        return;
    }
    if (!sk__conn_own(c) ||
        (!c->x->timer && sk_timer_new(c->loop, timer_fired, c, &c->x->timer) < 0))
        return; /* out of memory: the deadline is lost, the conn still works */
    uint64_t now = sk_loop_now(c->loop);
    uint64_t due = c->x->last_active + period;
    sk_timer_start(c->x->timer, due > now ? due - now : 0, 0);
}

static uint32_t current_period(const sk_conn *c)
{
    if (c->flags & (F_CONNECTING | F_HANDSHAKING))
        return c->x->connect_ms;
    if (c->flags & F_CLOSING)
        return c->x->linger_ms;
    return c->x->idle_ms;
}

/* How often a conn waiting to reset asks the kernel whether its data has been acknowledged. */
#define RESET_POLL_MS 5

void sk__conn_reset_soon(sk_conn *c)
{
    int unacked = 0;
    bool waited_enough = sk_loop_now(c->loop) >= c->x->last_active + c->x->linger_ms;
    if (ioctl(c->io.fd, SIOCOUTQ, &unacked) < 0 || unacked <= 0 || waited_enough || !c->x->timer) {
        /* A reset throws away what the kernel still holds, so it waits for the peer to have
         * acknowledged it all (at most the linger time). */
        sk_conn_abort(c);
        return;
    }
    sk_timer_start(c->x->timer, RESET_POLL_MS, 0);
}

static void timer_fired(sk_timer *t, void *arg)
{
    sk_conn *c = arg;
    if ((c->flags & (F_CLOSING | F_RESET_WANTED)) == (F_CLOSING | F_RESET_WANTED) && !c->x->out) {
        sk__conn_reset_soon(c);
        return;
    }
    uint32_t period = current_period(c);
    if (!period)
        return;
    if (sk_loop_now(c->loop) < c->x->last_active + period) {
        arm_timer(c, period);
        return;
    }
    if (c->flags & F_CLOSING) {
        /* The peer would not take our data or send its FIN in time. What was flushed stays
         * delivered; what is still queued is lost either way, so say so. */
        sk__conn_finish(c, c->x->out ? -ETIMEDOUT : c->close_reason);
        return;
    }
    sk__conn_finish(c, -ETIMEDOUT);
}

void sk__conn_touch(sk_conn *c)
{
    /* Only a conn with a deadline (hence its own cold part) needs to know. */
    if (owns_cold(c))
        c->x->last_active = sk_loop_now(c->loop);
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
    if (timeout_ms && !sk__conn_own(c)) {
        close(fd);
        free(c);
        return -ENOMEM;
    }
    if (timeout_ms)
        c->x->connect_ms = timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)timeout_ms;
    rc = sk__io_start(loop, &c->io, fd, SK_WRITABLE, conn_io);
    if (rc < 0) {
        close(fd);
        free(c);
        return rc;
    }
    arm_timer(c, c->x->connect_ms);
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
    if (!(c->flags & (F_CONNECTING | F_HANDSHAKING | F_CLOSING | F_CLOSED)))
        arm_timer(c, c->x->idle_ms);
    return 0;
}

SK_API void sk_conn_set_linger(sk_conn *c, uint64_t ms)
{
    uint32_t linger = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (linger != c->x->linger_ms && sk__conn_own(c))
        c->x->linger_ms = linger;
}

/* ---------------------------------------------------------------- interest in the socket */

void sk__conn_update_interest(sk_conn *c)
{
    if (c->flags & F_CLOSED)
        return;
    unsigned want = 0;
    if (c->flags & F_CONNECTING) {
        want = SK_WRITABLE;
    } else if (c->flags & F_HANDSHAKING) {
        want = sk__tls_wants(c->x->tls);
    } else {
        /* While closing we keep reading, to discard what the peer sends until its FIN. */
        bool reading = !(c->flags & F_PEER_EOF) &&
                       ((c->flags & F_CLOSING) || !(c->flags & F_PAUSED));
        if (reading)
            want |= SK_READABLE;
        if (c->x->out)
            want |= SK_WRITABLE;
        /* TLS may need the other direction (a record to read before a write, or the reverse). */
        if (c->x->tls && (reading || c->x->out))
            want |= sk__tls_wants(c->x->tls);
    }
    if (sk__io_update(c->loop, &c->io, want) < 0)
        sk__conn_finish(c, -ENOMEM);
}

/* ---------------------------------------------------------------- closing */

/* End the conn now for the loop; on_close, close(fd) and free follow at the end of this
 * iteration. */
void sk__conn_finish(sk_conn *c, int reason)
{
    if (c->flags & F_CLOSED)
        return;
    c->flags |= F_CLOSED;
    c->close_reason = reason;
    sk__io_stop(c->loop, &c->io);
    SK_TRACE(c->loop, "close fd=%d", c->io.fd);
    /* Closed for the loop now (a negative fd; events still queued for it are skipped), and for
     * the kernel right after on_close, so on_close can still ask who the peer was. */
    c->io.fd = -1 - c->io.fd;
    if (c->release)
        c->release->fn(c->release);
    c->release = NULL;
    if (c->x->timer)
        sk_timer_stop(c->x->timer);
    sk__defer(c->loop, &c->io);
}

void sk__conn_set_release(sk_conn *c, sk__release *r)
{
    c->release = r;
}

/* After the queue empties: send a wanted FIN; finish when both directions are done. */
void sk__conn_after_flush(sk_conn *c)
{
    if ((c->flags & F_CLOSING) && (c->flags & F_RESET_WANTED)) {
        sk__conn_reset_soon(c);
        return;
    }
    if (c->flags & (F_SHUT_WANTED | F_CLOSING))
        sk__conn_send_fin(c);
    if (!(c->flags & F_PEER_EOF))
        return;
    if (c->flags & F_CLOSING)
        sk__conn_finish(c, c->close_reason);
    else if ((c->flags & F_SHUT_DONE) && (c->flags & F_EOF_REPORTED))
        sk__conn_finish(c, 0);
}

SK_API void sk_conn_close(sk_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED))
        return;
    if (c->flags & F_CONNECTING) {
        sk__conn_finish(c, 0);
        return;
    }
    c->flags |= F_CLOSING;
    sk__conn_touch(c);
    arm_timer(c, c->x->linger_ms);
    if (!c->x->out)
        sk__conn_after_flush(c);
    sk__conn_update_interest(c);
}

SK_API void sk_conn_shutdown(sk_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED | F_SHUT_WANTED))
        return;
    c->flags |= F_SHUT_WANTED;
    if (!c->x->out && !(c->flags & (F_CONNECTING | F_HANDSHAKING)))
        sk__conn_after_flush(c);
}

SK_API void sk_conn_abort(sk_conn *c)
{
    if (c->flags & F_CLOSED)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sk__conn_finish(c, c->close_reason);
}

/* A failure: a reason of ours (an oversized frame) beats the kernel's report of what followed. */
void sk__conn_fail(sk_conn *c, int reason)
{
    sk__conn_finish(c, c->close_reason ? c->close_reason : reason);
}

static void conn_task(sk_conn *c)
{
    if (c->flags & F_CLOSED) {
        if (c->cb->on_close)
            c->cb->on_close(c, c->close_reason);
        if (owns_cold(c)) {
            sk_timer_free(c->x->timer);
            sk__tls_free(c->x->tls);
            free(c->x->in);
            free(c->x->out);
            free(c->x);
        }
        close(-1 - c->io.fd); /* kept open through on_close, for sk_conn_peer_name() */
        free(c);
        return;
    }
    sk__conn_deliver_held(c); /* after sk_conn_resume_reading() */
    /* TLS: a record decrypted but not yet read waits in OpenSSL, not in the socket, so epoll
     * will not report it: read it now. */
    if (c->x->tls && !(c->flags & (F_CLOSED | F_PAUSED | F_HANDSHAKING)) &&
        sk__tls_pending(c->x->tls)) {
        sk__conn_on_readable(c);
        /* A record larger than the room of one read: its rest is still inside OpenSSL. */
        if (!(c->flags & F_CLOSED) && sk__tls_pending(c->x->tls))
            sk__defer(c->loop, &c->io);
    }
}

/* The conn is up (TCP connected, TLS handshake done): on_connect, then what was queued. */
static void established(sk_conn *c)
{
    arm_timer(c, current_period(c)); /* idle, or the linger of a close made meanwhile */
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

static void handshake_step(sk_conn *c);

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
    if (c->flags & F_HANDSHAKING) {
        c->x->connect_ms = c->x->handshake_ms;
        arm_timer(c, c->x->connect_ms);
        handshake_step(c);
        return;
    }
    established(c);
}

static void handshake_step(sk_conn *c)
{
    int rc = sk__tls_handshake(c->x->tls);
    if (rc < 0) {
        sk__conn_finish(c, rc);
        return;
    }
    if (rc == 0) {
        sk__conn_update_interest(c);
        return;
    }
    c->flags &= (uint16_t)~F_HANDSHAKING;
    if (sk__log_on(c->loop, SK_LOG_TRACE)) {
        sk_tls_info info;
        sk__tls_info(c->x->tls, &info);
        sk__log(c->loop, SK_LOG_TRACE, "tls fd=%d %s %s%s%s peer=%s %s", c->io.fd, info.version,
                info.cipher, info.sni ? " sni=" : "", info.sni ? info.sni : "",
                info.peer_subject[0] ? info.peer_subject : "(no certificate)",
                info.verified ? "verified" : "unverified");
    }
    sk__conn_touch(c);
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
    if (c->flags & F_HANDSHAKING) {
        handshake_step(c);
        return;
    }
    if (c->x->tls) {
        /* Either readiness may serve either direction in TLS: try what is wanted. */
        if (c->x->out)
            sk__conn_flush(c);
        /* Read only while reading is wanted: a paused conn whose write wanted writability
         * must not deliver frames (nor read to discard unless closing). */
        bool reading = !(c->flags & F_PEER_EOF) &&
                       ((c->flags & F_CLOSING) || !(c->flags & F_PAUSED));
        if (!(c->flags & F_CLOSED) && reading)
            sk__conn_on_readable(c);
        if (!(c->flags & F_CLOSED) && sk__tls_pending(c->x->tls))
            sk__defer(c->loop, &c->io);
        return;
    }
    if ((events & SK_WRITABLE) && c->x->out)
        sk__conn_flush(c);
    if ((events & SK_READABLE) && !(c->flags & F_CLOSED) && (c->io.events & SK_READABLE))
        sk__conn_on_readable(c);
}

/* ---------------------------------------------------------------- TLS */

SK_API int sk_conn_start_tls(sk_conn *c, sk_tls_ctx *ctx, const char *name, uint64_t timeout_ms)
{
    if (c->x->tls || (c->flags & (F_CLOSING | F_CLOSED)))
        return -EINVAL;
    if (!sk__conn_own(c))
        return -ENOMEM;
    c->x->tls = sk__tls_new(ctx, c->io.fd, name);
    if (!c->x->tls)
        return -ENOMEM;
    c->flags |= F_HANDSHAKING;
    uint64_t ms = timeout_ms ? timeout_ms : 10000;
    c->x->handshake_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (c->flags & F_CONNECTING)
        return 0; /* on_connected() starts the handshake */
    c->x->connect_ms = c->x->handshake_ms;
    sk__conn_touch(c);
    arm_timer(c, c->x->connect_ms);
    sk__conn_update_interest(c);
    return 0;
}

SK_API bool sk_conn_is_tls(const sk_conn *c)
{
    return c->x->tls != NULL;
}

SK_API int sk_conn_tls_info(const sk_conn *c, sk_tls_info *info)
{
    if (!c->x->tls)
        return -EINVAL;
    sk__tls_info(c->x->tls, info);
    return 0;
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
    /* TLS: bytes decrypted before the pause wait in OpenSSL, where epoll cannot see them. */
    if (c->x->in_len || (c->flags & F_PEER_EOF) || (c->x->tls && sk__tls_pending(c->x->tls)))
        sk__defer(c->loop, &c->io);
}

SK_API bool sk_conn_input_pending(const sk_conn *c)
{
    int unread = 0;
    if (c->flags & F_CLOSED)
        return false;
    if (c->x->tls && sk__tls_pending(c->x->tls))
        return true;
    return ioctl(c->io.fd, FIONREAD, &unread) == 0 && unread > 0;
}

SK_API int sk_conn_peer_addr(const sk_conn *c, sk_addr *out)
{
    out->len = sizeof out->ss;
    return getpeername(sk__conn_socket(c), (struct sockaddr *)&out->ss, &out->len) < 0 ? -errno : 0;
}

SK_API int sk_conn_local_addr(const sk_conn *c, sk_addr *out)
{
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
