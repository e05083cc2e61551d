/* chat: every line (or frame) a client sends goes to every other client, prefixed with the
 * sender's address; joins and leaves are announced. A client that does not read its messages
 * is disconnected once its queue would pass --max-queue: one slow reader never stalls the room
 * and never makes the server's memory grow without bound. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "service.h"

/* Send "prefix + data" as one frame, in the server's framing, to every client but from. */
static void broadcast(const client *from, const char *prefix, const void *data, size_t len)
{
    server *srv = client_server(from);
    size_t plen = strlen(prefix);
    size_t total = plen + len;
    sk_frame_kind kind = srv->opt.frame;
    uint8_t head[4] = {(uint8_t)(total >> 24), (uint8_t)(total >> 16), (uint8_t)(total >> 8),
                       (uint8_t)total};
    struct iovec iov[3];
    int n = 0;
    if (kind == SK_FRAME_LEN32)
        iov[n++] = (struct iovec){.iov_base = head, .iov_len = 4};
    iov[n++] = (struct iovec){.iov_base = (void *)prefix, .iov_len = plen};
    iov[n++] = (struct iovec){.iov_base = (void *)data, .iov_len = len};
    if (kind == SK_FRAME_LINE)
        iov[n++] = (struct iovec){.iov_base = (void *)"\n", .iov_len = 1};

    for (client *cl = srv->clients, *next; cl; cl = next) {
        next = cl->next;
        if (cl == from)
            continue;
        if (sk_conn_writev(cl->conn, iov, n) == -ENOBUFS) {
            char name[SK_ADDR_STRLEN];
            client_name(cl, name, sizeof name);
            log_warn(&srv->log,
                     "%s is not reading its messages (more than %zu bytes queued); "
                     "disconnecting it",
                     name, srv->opt.max_queue);
            sk_conn_abort(cl->conn);
        }
    }
}

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    client *cl = sk_conn_data(c);
    char name[SK_ADDR_STRLEN], prefix[SK_ADDR_STRLEN + 4];
    client_name(cl, name, sizeof name);
    snprintf(prefix, sizeof prefix, "[%s] ", name);
    broadcast(cl, prefix, data, len);
}

static void announce(client *cl, const char *what)
{
    char name[SK_ADDR_STRLEN], line[SK_ADDR_STRLEN + 16];
    client_name(cl, name, sizeof name);
    int n = snprintf(line, sizeof line, "%s %s", name, what);
    broadcast(cl, "* ", line, (size_t)n);
}

static void on_close(sk_conn *c, int reason)
{
    client *cl = sk_conn_data(c);
    announce(cl, "left"); /* broadcast() skips the sender, so not to itself */
    server_client_closed(cl, reason);
}

static const sk_conn_callbacks callbacks = {.on_frame = on_frame, .on_close = on_close};

static void start(server *srv, client *cl)
{
    sk_conn_set_callbacks(cl->conn, &callbacks);
    announce(cl, "joined");
}

const service service_chat = {
    .name = "chat",
    .default_frame = SK_FRAME_LINE,
    .start = start,
};
