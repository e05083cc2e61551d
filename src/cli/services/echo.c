/* echo (RFC 862): return every frame. When the client reads slower than it sends, the queue
 * passes the high watermark and we stop reading from it until it drains: memory stays bounded
 * and the client's own TCP window slows it down.
 *
 * Shutdown: every byte the kernel accepted from the client before the signal is echoed. A
 * stopping client is closed (which flushes its queue) once it is caught up: not paused, and
 * nothing left unread in the socket, so everything received up to now has been echoed. The
 * check runs from a timer, never inside on_frame: more frames of the same read may follow, and
 * frames held while paused are delivered after on_drain returns. A partial frame (a line
 * without its newline yet) is dropped at the close. */
#include "service.h"

static bool caught_up(sk_conn *c)
{
    return sk_conn_writable(c) && !sk_conn_input_pending(c);
}

static void check_fired(sk_timer *t, void *arg)
{
    client *cl = arg;
    if (caught_up(cl->conn))
        sk_conn_close(cl->conn);
}

/* Check soon: 1 ms puts the check after this loop iteration's deferred work. */
static void close_if_done(sk_conn *c)
{
    client *cl = sk_conn_data(c);
    if (!cl->stopping)
        return;
    if (!cl->timer && sk_timer_new(sk_conn_loop(c), check_fired, cl, &cl->timer) < 0) {
        sk_conn_close(c); /* out of memory: close now (the queue is still flushed) */
        return;
    }
    if (!sk_timer_active(cl->timer))
        sk_timer_start(cl->timer, 1, 0);
}

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    if (sk_conn_write_frame(c, data, len) < 0)
        return; /* closed or over its limit: the close callback follows */
    if (!sk_conn_writable(c))
        sk_conn_pause_reading(c);
    close_if_done(c);
}

static void on_drain(sk_conn *c)
{
    sk_conn_resume_reading(c);
    close_if_done(c);
}

static void on_eof(sk_conn *c)
{
    sk_conn_close(c); /* flushes the echo of everything received, then closes */
}

static void on_close(sk_conn *c, int reason)
{
    client *cl = sk_conn_data(c);
    sk_timer_free(cl->timer);
    server_client_closed(cl, reason);
}

static const sk_conn_callbacks callbacks = {
    .on_frame = on_frame, .on_drain = on_drain, .on_eof = on_eof, .on_close = on_close};

static void start(client *cl)
{
    sk_conn_set_callbacks(cl->conn, &callbacks);
}

static void stop(client *cl)
{
    cl->stopping = true;
    close_if_done(cl->conn);
}

const service service_echo = {
    .name = "echo",
    .summary = "return every byte (or frame)",
    .default_frame = SK_FRAME_RAW,
    .start = start,
    .stop = stop,
};
