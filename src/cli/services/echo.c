/* echo (RFC 862): return every frame. When the client reads slower than it sends, the queue
 * passes the high watermark and we stop reading from it until it drains: memory stays bounded
 * and the client's own TCP window slows it down.
 *
 * Shutdown: every byte the kernel accepted from a client before the signal is echoed. A client
 * is closed (which flushes its queue) once it is caught up: writable, and no input waiting in
 * the socket or inside TLS, so everything received up to now has been echoed. One timer checks
 * every client every few milliseconds while the server stops; checking inside on_frame would
 * be too early (more frames of the same read may follow). A partial frame (a line without its
 * newline yet) is dropped at the close. */
#include "service.h"

#define STOP_CHECK_MS 5

static bool caught_up(sk_conn *c)
{
    return sk_conn_writable(c) && !sk_conn_input_pending(c);
}

static void close_caught_up(sk_timer *t, void *arg)
{
    server *srv = arg;
    for (client *cl = srv->clients; cl; cl = cl->next)
        if (caught_up(cl->conn))
            sk_conn_close(cl->conn);
}

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    if (sk_conn_write_frame(c, data, len) < 0)
        return; /* closed or over its limit: the close callback follows */
    if (!sk_conn_writable(c))
        sk_conn_pause_reading(c);
}

static void on_drain(sk_conn *c)
{
    sk_conn_resume_reading(c);
}

static void on_eof(sk_conn *c)
{
    sk_conn_close(c); /* flushes the echo of everything received, then closes */
}

static void on_close(sk_conn *c, int reason)
{
    server_client_closed(sk_conn_data(c), reason);
}

static const sk_conn_callbacks callbacks = {
    .on_frame = on_frame, .on_drain = on_drain, .on_eof = on_eof, .on_close = on_close};

static void start(server *srv, client *cl)
{
    sk_conn_set_callbacks(cl->conn, &callbacks);
}

static void stop(server *srv, client *cl)
{
    if (srv->stop_timer)
        return; /* one timer serves every client of the server */
    if (sk_timer_new(srv->loop, close_caught_up, srv, &srv->stop_timer) < 0) {
        for (client *each = srv->clients; each; each = each->next)
            sk_conn_close(each->conn); /* out of memory: close now (queues still flush) */
        return;
    }
    sk_timer_start(srv->stop_timer, 0, STOP_CHECK_MS);
}

const service service_echo = {
    .name = "echo",
    .default_frame = SK_FRAME_RAW,
    .start = start,
    .stop = stop,
};
