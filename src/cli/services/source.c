/* source: send bytes as fast as the client takes them. We write until the queue passes the high
 * watermark and refill on drain, so the kernel's buffer never runs dry and ours stays small. */
#include <string.h>

#include "service.h"

/* Printable and recognisable: lines of the alphabet, 63 letters and a newline, 1024 of them.
 * Written out by the compiler, so it is a read-only table that every server shares. */
#define LINE64 "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJK\n"
#define TIMES4(x) x x x x
#define LINES1024 TIMES4(TIMES4(TIMES4(TIMES4(TIMES4(LINE64)))))
static const char pattern[] = LINES1024;
_Static_assert(sizeof LINE64 - 1 == 64 && sizeof pattern - 1 == 65536, "64 KiB of 64-byte lines");

static void fill(sk_conn *c)
{
    while (sk_conn_writable(c)) {
        if (sk_conn_write(c, pattern, sizeof pattern - 1) < 0) /* not the string's NUL */
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

static void start(server *srv, client *cl)
{
    sk_conn_set_callbacks(cl->conn, &callbacks);
    fill(cl->conn);
}

const service service_source = {
    .name = "source",
    .default_frame = SK_FRAME_RAW,
    .start = start,
};
