/* greet: send the message and close, as the seed server does. sk_conn_close() makes the close
 * graceful: FIN after the message, then read and drop what the client sent until its FIN, so a
 * client that wrote first still gets the whole greeting rather than a reset. */
#include <string.h>

#include "service.h"

static void on_close(sk_conn *c, int reason)
{
    server_client_closed(sk_conn_data(c), reason);
}

static const sk_conn_callbacks callbacks = {.on_close = on_close};

static void start(server *srv, client *cl)
{
    const char *text = srv->opt.message;
    struct iovec iov[2] = {{.iov_base = (void *)text, .iov_len = strlen(text)},
                           {.iov_base = (void *)"\n", .iov_len = 1}};
    sk_conn_set_callbacks(cl->conn, &callbacks);
    sk_conn_writev(cl->conn, iov, 2);
    sk_conn_close(cl->conn);
}

const service service_greet = {
    .name = "greet",
    .default_frame = SK_FRAME_RAW,
    .start = start,
};
