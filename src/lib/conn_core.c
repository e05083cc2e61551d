/* The core of a conn that both conn.c (the life cycle and the API) and conn_io.c (the bytes)
 * stand on: its cold part, its one timer, its interest in the socket, its layer stack, and
 * the ways it ends (FIN, finish, reset). This file calls neither of them, so the arrows go
 * conn.c -> conn_io.c -> conn_core.c, and conn.c -> conn_core.c.
 *
 * One timer per conn, allocated on first use, serves whichever deadline the state needs:
 * connect timeout, start (handshake) timeout, idle timeout, or the close (flush + linger)
 * deadline. Progress only refreshes c->x->last_active; the timer re-arms itself for the
 * remainder when it fires early. */
#include <errno.h>
#include <linux/sockios.h> /* SIOCOUTQ */
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_internal.h"

/* ---------------------------------------------------------------- the cold part */

const sk__conn_cold sk__conn_defaults = {
    .max_frame = SK_FRAME_DEFAULT_MAX,
    .low = 16 * 1024,
    .high = 64 * 1024,
    .limit = 1024 * 1024,
    .linger_ms = 2000,
};

bool sk__conn_owns_cold(const sk_conn *c)
{
    return c->x != &sk__conn_defaults;
}

sk__conn_cold *sk__conn_own(sk_conn *c)
{
    if (sk__conn_owns_cold(c))
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

void sk__conn_count_in(sk_conn *c, size_t n)
{
    sk__count(&sk__loop_events(c->loop)->n.bytes_in, n);
    if (sk__conn_owns_cold(c))
        c->x->bytes_in += n;
}

void sk__conn_count_out(sk_conn *c, size_t n)
{
    sk__count(&sk__loop_events(c->loop)->n.bytes_out, n);
    if (sk__conn_owns_cold(c))
        c->x->bytes_out += n;
}

void sk__conn_report_close(sk_conn *c)
{
    sk__counters *n = &sk__loop_events(c->loop)->n;
    sk_close_cause cause = sk_close_cause_of(c->close_reason);
    sk__count(&n->closed, 1);
    sk__count(&n->closed_by[cause], 1);
    sk_event ev = {.kind = SK_EV_CLOSED, .conn = c, .err = c->close_reason, .cause = (int)cause};
    if (sk__conn_stats_on(c->loop) && sk__conn_owns_cold(c)) {
        ev.bytes_in = c->x->bytes_in;
        ev.bytes_out = c->x->bytes_out;
        ev.duration_ms = sk_loop_now(c->loop) - c->x->opened_ms;
    }
    sk__emit(c->loop, &ev);
}

void sk__conn_touch(sk_conn *c)
{
    /* Only a conn with a deadline (hence its own cold part) needs to know. */
    if (sk__conn_owns_cold(c))
        c->x->last_active = sk_loop_now(c->loop);
}

void sk__conn_free(sk_conn *c)
{
    if (sk__conn_owns_cold(c)) {
        sk_timer_free(c->x->timer);
        for (sk__layer *l = c->x->top, *below; l; l = below) {
            below = l->below;
            l->ops->destroy(l);
        }
        sk__conn_unsplice(c);
        free(c->x->sp);
        free(c->x->in);
        free(c->x->out);
        free(c->x);
    }
    close(sk__conn_socket(c)); /* kept open through on_close, for sk_conn_peer_name() */
    free(c);
}

/* ---------------------------------------------------------------- the timer */

static void timer_fired(sk_timer *t, void *arg);

uint32_t sk__conn_current_period(const sk_conn *c)
{
    if (c->flags & (F_CONNECTING | F_STARTING))
        return c->x->connect_ms;
    if (c->flags & F_CLOSING)
        return c->x->linger_ms;
    return c->x->idle_ms;
}

int sk__conn_make_timer(sk_conn *c)
{
    if (!sk__conn_own(c))
        return -ENOMEM;
    return c->x->timer ? 0 : sk_timer_new(c->loop, timer_fired, c, &c->x->timer);
}

void sk__conn_arm_timer(sk_conn *c, uint32_t period)
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

static void timer_fired(sk_timer *t, void *arg)
{
    (void)t;
    sk_conn *c = arg;
    if ((c->flags & (F_CLOSING | F_RESET_WANTED)) == (F_CLOSING | F_RESET_WANTED) &&
        !sk__conn_has_output(c)) {
        sk__conn_reset_soon(c);
        return;
    }
    uint32_t period = sk__conn_current_period(c);
    if (!period)
        return;
    if (sk_loop_now(c->loop) < c->x->last_active + period) {
        sk__conn_arm_timer(c, period);
        return;
    }
    if (c->flags & F_CLOSING) {
        /* The peer would not take our data or send its FIN in time. What was flushed stays
         * delivered; what is still queued is lost either way, so say so. */
        sk__conn_finish(c, sk__conn_has_output(c) ? -ETIMEDOUT : c->close_reason);
        return;
    }
    sk__conn_finish(c, -ETIMEDOUT);
}

/* ---------------------------------------------------------------- interest in the socket */

/* The layer being started: the lowest one not yet up (layers come up from the socket up). */
static sk__layer *lowest_not_up(const sk_conn *c)
{
    sk__layer *next = NULL;
    for (sk__layer *l = c->x->top; l; l = l->below)
        if (!l->up)
            next = l;
    return next;
}

void sk__conn_update_interest(sk_conn *c)
{
    if (c->flags & F_CLOSED)
        return;
    const sk__layer *top = c->x->top;
    unsigned want = 0;
    if (c->flags & F_CONNECTING) {
        want = SK_WRITABLE;
    } else if (c->flags & F_STARTING) {
        const sk__layer *s = lowest_not_up(c);
        want = s ? s->ops->wants(s) : 0;
    } else {
        /* While closing we keep reading, to discard what the peer sends until its FIN. */
        bool reading = sk__conn_reading(c);
        if (reading)
            want |= SK_READABLE;
        if (sk__conn_has_output(c))
            want |= SK_WRITABLE;
        /* A layer may need the other direction (a record to read before a write, or the
         * reverse). */
        if (top && (reading || c->x->out))
            want |= top->ops->wants(top);
    }
    if (sk__io_update(c->loop, &c->io, want) < 0)
        sk__conn_finish(c, -ENOMEM);
}

bool sk__conn_reading(const sk_conn *c)
{
    return !(c->flags & F_PEER_EOF) && ((c->flags & F_CLOSING) || !(c->flags & F_PAUSED));
}

/* ---------------------------------------------------------------- layers */

int sk__conn_push_layer(sk_conn *c, sk__layer *l, uint64_t timeout_ms)
{
    if ((c->flags & (F_CLOSING | F_CLOSED)) || !sk__conn_own(c)) {
        l->ops->destroy(l);
        return (c->flags & (F_CLOSING | F_CLOSED)) ? -EINVAL : -ENOMEM;
    }
    l->below = c->x->top;
    l->conn = c;
    l->fd = c->io.fd;
    c->x->top = l;
    if (!l->ops->start) {
        l->up = true;
        return 0;
    }
    c->flags |= F_STARTING;
    uint64_t ms = timeout_ms ? timeout_ms : 10000;
    c->x->start_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (c->flags & F_CONNECTING)
        return 0; /* the layers start once TCP is connected */
    c->x->connect_ms = c->x->start_ms;
    sk__conn_touch(c);
    sk__conn_arm_timer(c, c->x->connect_ms);
    sk__conn_update_interest(c);
    return 0;
}

sk__layer *sk__conn_find_layer(const sk_conn *c, const sk__layer_ops *ops)
{
    for (sk__layer *l = c->x->top; l; l = l->below)
        if (l->ops == ops)
            return l;
    return NULL;
}

/* Start the lowest layer not yet up, then the next: 1 all up, 0 waiting, or a failure code. */
int sk__conn_start_layers(sk_conn *c)
{
    for (;;) {
        sk__layer *next = lowest_not_up(c);
        if (!next)
            return 1;
        int rc = next->ops->start(next);
        if (rc == 0)
            return 0;
        sk_event ev = {.kind = rc > 0 ? SK_EV_LAYER_UP : SK_EV_LAYER_FAILED,
                       .conn = c,
                       .layer = next->ops->name,
                       .err = rc < 0 ? rc : 0};
        if (rc < 0) {
            sk__count(&sk__loop_events(c->loop)->n.layer_failures, 1);
            sk__emit(c->loop, &ev);
            return rc;
        }
        next->up = true;
        sk__emit(c->loop, &ev);
    }
}

int sk__conn_layer_addr(const sk_conn *c, bool local, sk_addr *out)
{
    for (const sk__layer *l = c->x->top; l; l = l->below)
        if (l->ops->addr && l->ops->addr(l, local, out) == 0)
            return 0;
    return -1;
}

bool sk__conn_layers_passthrough(const sk_conn *c)
{
    for (const sk__layer *l = c->x->top; l; l = l->below)
        if (!l->ops->passthrough || !l->ops->passthrough(l))
            return false;
    return true;
}

bool sk__conn_layer_pending(const sk_conn *c)
{
    for (const sk__layer *l = c->x->top; l; l = l->below)
        if (l->ops->pending && l->ops->pending(l))
            return true;
    return false;
}

/* ---------------------------------------------------------------- the ends */

void sk__conn_send_fin(sk_conn *c)
{
    if (c->flags & F_SHUT_DONE)
        return;
    c->flags |= F_SHUT_DONE;
    SK_TRACE(c->loop, "shutdown fd=%d write", c->io.fd);
    sk__layer *top = c->x->top;
    if (top)
        top->ops->shutdown(top);
    else
        shutdown(c->io.fd, SHUT_WR);
}

void sk__conn_finish(sk_conn *c, int reason)
{
    if (c->flags & F_CLOSED)
        return;
    c->flags |= F_CLOSED;
    c->close_reason = reason;
    sk__io_stop_for_close(c->loop, &c->io); /* sk__conn_free() closes it this iteration */
    SK_TRACE(c->loop, "close fd=%d", c->io.fd);
    /* Closed for the loop now (a negative fd; events still queued for it are skipped), and for
     * the kernel right after on_close, so on_close can still ask who the peer was. */
    c->io.fd = -1 - c->io.fd;
    if (c->release)
        c->release->fn(c->release);
    c->release = NULL;
    if (c->x->timer)
        sk_timer_stop(c->x->timer);
    if (c->x->sp) /* the other side must not splice into a closed conn's pipe, nor from it */
        sk__conn_unsplice(c);
    sk__defer(c->loop, &c->io);
}

void sk__conn_fail(sk_conn *c, int reason)
{
    sk__conn_finish(c, c->close_reason ? c->close_reason : reason);
}

void sk__conn_abort(sk_conn *c)
{
    if (c->flags & F_CLOSED)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sk__conn_finish(c, c->close_reason);
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
        sk__conn_abort(c);
        return;
    }
    sk_timer_start(c->x->timer, RESET_POLL_MS, 0);
}

void sk__conn_after_flush(sk_conn *c)
{
    if ((c->flags & F_CLOSING) && (c->flags & F_RESET_WANTED)) {
        sk__conn_reset_soon(c);
        return;
    }
    /* Closing after the peer's FIN with nothing unread: close() itself sends our FIN, so the
     * shutdown() would be one system call for nothing. A layer's end (TLS close_notify) must
     * still be sent. */
    bool close_sends_fin =
        (c->flags & (F_CLOSING | F_PEER_EOF)) == (F_CLOSING | F_PEER_EOF) && !c->x->top;
    if ((c->flags & (F_SHUT_WANTED | F_CLOSING)) && !close_sends_fin)
        sk__conn_send_fin(c);
    if (!(c->flags & F_PEER_EOF))
        return;
    if (c->flags & F_CLOSING)
        sk__conn_finish(c, c->close_reason);
    else if ((c->flags & F_SHUT_DONE) && (c->flags & F_EOF_REPORTED))
        sk__conn_finish(c, 0);
}

void sk__conn_begin_close(sk_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED))
        return;
    if (c->flags & F_CONNECTING) {
        sk__conn_finish(c, 0);
        return;
    }
    c->flags |= F_CLOSING;
    sk__conn_touch(c);
    sk__conn_arm_timer(c, c->x->linger_ms);
    if (!sk__conn_has_output(c))
        sk__conn_after_flush(c);
    sk__conn_update_interest(c);
}

void sk__conn_unsplice(sk_conn *c)
{
    sk__splice *sp = c->x->sp;
    if (!sp)
        return;
    if (sp->to && sp->to->x->sp)
        sp->to->x->sp->from = NULL;
    if (sp->from && sp->from->x->sp)
        sp->from->x->sp->to = NULL;
    sp->to = sp->from = NULL;
    if (sp->pipe_r >= 0) {
        close(sp->pipe_r);
        close(sp->pipe_w);
    }
    sp->pipe_r = sp->pipe_w = -1;
    sp->len = 0;
}
