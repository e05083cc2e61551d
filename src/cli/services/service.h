/* A service is what a server does with each client. serve.c owns the listener, the list of
 * clients and shutdown; a service only sets a conn's callbacks and reacts to its frames.
 *
 * All the state of one server is in its server object, which every service callback receives
 * (start and stop directly, the conn callbacks through client_server()): nothing is kept in
 * file-scope or function-scope variables, so two servers, each with its own loop in its own
 * thread, can run in one process. tests/static_state_check keeps it so. */
#ifndef SOCKIT_SERVICE_H
#define SOCKIT_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include <sockit/sockit.h>

#include "../cli.h"

typedef struct server server;

/* One per accepted conn, kept by serve.c in a list; the conn's data points here. Who the peer
 * is was captured once, at accept (a reset peer has no address any more by its close), in as
 * few bytes as hold it, at the end of the allocation: an IPv4 client is a 48-byte malloc chunk
 * (IPv6: 64), beside its conn's 80. Its server is its loop's data (sk_loop_data). */
typedef struct client {
    sk_conn *conn;
    struct client *prev, *next;
    uint8_t peer[]; /* see client_name() in serve.c */
} client;

/* The server the client belongs to. */
server *client_server(const client *cl);
/* "127.0.0.1:50312", "[::1]:40112", or "unix-client-7" (a Unix peer, by its fd at accept). */
void client_name(const client *cl, char *buf, size_t len);

typedef struct server_options {
    const char *message; /* greet */
    sk_frame_kind frame;
    size_t max_frame;
    size_t max_queue; /* a client's output queue limit */
    uint64_t idle_ms;
    bool accept_proxy; /* datagrams (udp.c): a PROXY v2 header starts each one */
} server_options;

typedef struct service {
    const char *name;
    sk_frame_kind default_frame;
    /* A new client, ready for data (over TLS: its handshake is done): set its callbacks.
     * serve.c has set framing, limits and data, and put it on srv->clients. */
    void (*start)(server *srv, client *cl);
    /* The server got SIGTERM/SIGINT: finish what the client has in flight, then close it.
     * NULL: sk_conn_close() at once (what is queued is still delivered). */
    void (*stop)(server *srv, client *cl);
} service;

/* One server: what serve.c set up, and what its services read. Services may read loop, opt,
 * log and clients, and use stop_timer; the rest is serve.c's. */
struct server {
    sk_loop *loop;
    logger log;
    const service *svc;
    server_options opt;
    client *clients;     /* started clients: what services see (chat relays to these) */
    client *handshaking; /* TLS clients whose handshake is not done yet: not started */
    size_t client_count; /* both lists */
    sk_listener *listener;
    sk_tls_ctx *tls; /* tls:// addresses */
    uint64_t handshake_ms;
    uint64_t drain_ms; /* --drain-timeout */
    sk_timer *drain;
    sk_timer *stop_timer; /* a service's, while the server stops (echo: who is caught up) */
    int signals_seen;
    int exit_status;
};

/* serve.c: the service must call server_client_closed() from its on_close callback; it logs
 * why the client went (if it was not a clean close), unlinks and frees it. */
void server_client_closed(client *cl, int reason);

extern const service service_greet, service_echo, service_chat, service_discard, service_source;

#endif
