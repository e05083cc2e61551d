/* discard (RFC 863): read and drop everything. */
#include "service.h"

static void on_frame(sk_conn *c, const void *data, size_t len)
{
}

static void on_close(sk_conn *c, int reason)
{
    server_client_closed(sk_conn_data(c), reason);
}

static const sk_conn_callbacks callbacks = {.on_frame = on_frame, .on_close = on_close};

static void start(server *srv, client *cl)
{
    sk_conn_set_callbacks(cl->conn, &callbacks);
}

const service service_discard = {
    .name = "discard",
    .default_frame = SK_FRAME_RAW,
    .start = start,
};
