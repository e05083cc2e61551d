/* A service is what a server does with each client. serve.c owns the listener, the list of
 * clients and shutdown; a service only sets a conn's callbacks and reacts to its frames. */
#ifndef SOCKIT_SERVICE_H
#define SOCKIT_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include <sockit/sockit.h>

typedef struct server server;

/* One per accepted conn, kept by serve.c in a list; the conn's data points here. Kept to
 * three pointers (a 32-byte allocation): an idle client costs this and its conn's 88 bytes.
 * A service that needs more asks for it with service.client_size. */
typedef struct client {
    sk_conn *conn;
    struct client *prev, *next;
} client;

typedef struct server_options {
    const char *message;   /* greet */
    sk_frame_kind frame;
    size_t max_frame;
    size_t max_queue;      /* a client's output queue limit */
    uint64_t idle_ms;
} server_options;

typedef struct service {
    const char *name;
    sk_frame_kind default_frame;
    size_t client_size; /* bytes to allocate per client, at least sizeof(client); 0: that */
    /* A new client: set its callbacks (serve.c has set framing, limits and data). */
    void (*start)(client *cl);
    /* The server got SIGTERM/SIGINT: finish what the client has in flight, then close it.
     * NULL: sk_conn_close() at once (what is queued is still delivered). */
    void (*stop)(client *cl);
} service;

/* serve.c (one server per process): the service must call server_client_closed() from its
 * on_close callback. */
void server_client_closed(client *cl, int reason);
const server_options *server_opts(void);
/* Every client on the server, for chat and for stopping. */
client *server_clients(void);
/* The client's peer for messages: "127.0.0.1:50312" (valid in on_close too). */
void client_name(const client *cl, char *buf, size_t len);

extern const service service_greet, service_echo, service_chat, service_discard, service_source;

#endif
