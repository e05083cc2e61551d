/* source: send bytes as fast as the client takes them. We write until the queue passes the high
 * watermark and refill on drain, so the kernel's buffer never runs dry and ours stays small. */
#include <string.h>

#include "service.h"

static unsigned char pattern[65536];

static void fill(sk_conn *c)
{
    while (sk_conn_writable(c)) {
        if (sk_conn_write(c, pattern, sizeof pattern) < 0)
            return;
    }
}

static void on_frame(sk_conn *c, const void *data, size_t len)
{
}

static void on_close(sk_conn *c, int reason)
{
    server_client_closed(sk_conn_data(c), reason);
}

/* A client that half-closes still wants the stream (RFC 864): only its close ends it. */
static void on_eof(sk_conn *c)
{
}

static const sk_conn_callbacks callbacks = {
    .on_frame = on_frame, .on_eof = on_eof, .on_drain = fill, .on_close = on_close};

static void start(client *cl)
{
    if (!pattern[0]) {
        /* Printable and recognisable: a line of the alphabet, then a newline. */
        for (size_t i = 0; i < sizeof pattern; i++)
            pattern[i] = (unsigned char)(i % 64 == 63 ? '\n' : 'A' + i % 64 % 26);
    }
    sk_conn_set_callbacks(cl->conn, &callbacks);
    fill(cl->conn);
}

const service service_source = {
    .name = "source",
    .default_frame = SK_FRAME_RAW,
    .start = start,
};
