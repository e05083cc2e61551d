/* echo (RFC 862): return every frame. When the client reads slower than it sends, the queue
 * passes the high watermark and we stop reading from it until it drains: memory stays bounded
 * and the client's own TCP window slows it down. */
#include "service.h"

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

static void start(client *cl)
{
    sk_conn_set_callbacks(cl->conn, &callbacks);
}

const service service_echo = {
    .name = "echo",
    .summary = "return every byte (or frame)",
    .default_frame = SK_FRAME_RAW,
    .start = start,
};
