/* sockit serve: a listener, a list of clients, a service, and a clean stop on SIGINT/SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "cli.h"
#include "services/service.h"

static const char serve_usage[] =
    "usage: sockit serve [ADDRESS] [options]\n"
    "\n"
    "Listen on ADDRESS (default localhost:12345) and serve many clients at once.\n"
    "When ready, prints 'listening on ADDR' (the real address and port) on stderr.\n"
    "Datagrams: udp://HOST:PORT or unix-dgram:PATH serve any number of peers with echo,\n"
    "greet or discard; --max-frame is the largest datagram (a longer one is reported).\n"
    "\n"
    "options:\n"
    "  -m, --mode MODE        greet (default): send the message and close\n"
    "                         echo: return every byte (RFC 862)\n"
    "                         chat: relay each line to every other client\n"
    "                         discard: read and drop everything (RFC 863)\n"
    "                         source: send data as fast as the client reads\n"
    "      --message TEXT     the greeting (default 'Hi from server'); a newline follows it\n"
    "      --frame KIND       raw, line or len32 (4-byte big-endian length): how echo and\n"
    "                         chat cut input into messages (echo: raw, chat: line)\n"
    "      --max-frame BYTES  longest line or frame; a longer one closes that client\n"
    "                         (default 65536)\n"
    "      --max-queue BYTES  a client's unsent output limit; chat disconnects a client\n"
    "                         that passes it (default 1M)\n"
    "      --idle-timeout SECS  close a client silent that long (default: never)\n"
    "      --backlog N        the kernel's queue of unaccepted connections (default 4096)\n"
    "\n"
    "limits (each refusal is counted and logged at most once a second per cause):\n"
    "      --max-clients N    more live clients are refused (greet sends 'server full')\n"
    "      --max-per-ip N     live clients from one IP address (greet says why)\n"
    "      --allow CIDR       admit only these ranges (10.0.0.0/8, ::1/128); repeatable\n"
    "      --deny CIDR        never these ranges; repeatable; deny wins over allow\n"
    "      --drain-timeout SECS  on SIGINT/SIGTERM, how long clients may take to finish\n"
    "                         before they are cut off (default 30; 0: no limit)\n"
    "\n"
    "TLS (ADDRESS tls://HOST:PORT):\n"
    "      --cert FILE        certificate chain (PEM); without it, an ephemeral self-signed\n"
    "                         certificate is made and its fingerprint printed\n"
    "      --key FILE         private key (PEM; default: the --cert file)\n"
    "      --client-ca FILE   require a client certificate signed by these CAs (mutual TLS)\n"
    "      --alpn LIST        protocols to agree on, comma-separated (h2,http/1.1)\n"
    "      --handshake-timeout SECS  close a client whose handshake takes longer (default "
    "10)\n" TLS_CLI_PROTOCOL_HELP "\n" PROXY_CLI_ACCEPT_HELP "\n"
    "  -v, --verbose          print each socket step: socket, bind, listen, accept, recv,\n"
    "                         send, shutdown, close\n"
    "  -q, --quiet            print only errors\n"
    "  -h, --help             this help\n"
    "\n"
    "SIGINT or SIGTERM: stop accepting, deliver what is queued (echo: echo every byte\n"
    "received before the signal), close, exit 0; 1 if --drain-timeout cut off a client\n"
    "with data still undelivered. A second signal exits at once. Exit status: 0 stopped\n"
    "by a signal, 1 runtime failure (address in use, permission denied), 2 usage error.\n";

static const service *const services[] = {&service_greet, &service_echo, &service_chat,
                                          &service_discard, &service_source};

static void link_client(client **head, client *cl)
{
    cl->prev = NULL;
    cl->next = *head;
    if (*head)
        (*head)->prev = cl;
    *head = cl;
}

static void unlink_client(client **head, client *cl)
{
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        *head = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
}

/* Why a client went, when it was not a clean close; named by the address kept from accept. */
static void log_close(const client *cl, int reason)
{
    const server *srv = client_server(cl);
    if (reason == 0)
        return;
    char name[SK_ADDR_STRLEN];
    client_name(cl, name, sizeof name);
    if (reason == -EMSGSIZE) {
        log_warn(&srv->log,
                 "%s sent a frame longer than --max-frame (%zu bytes); closed that "
                 "client",
                 name, srv->opt.max_frame);
    } else if (reason == -ETIMEDOUT) {
        log_info(&srv->log, "%s: idle or stalled longer than allowed; closed", name);
    } else if (reason == SK_ERR_TLS || reason == SK_ERR_TLS_VERIFY) {
        sk_tls_info info;
        sk_tls_describe(cl->conn, &info);
        log_info(&srv->log, "%s: TLS handshake failed: %s", name, info.error);
    } else {
        log_info(&srv->log, "%s: %s", name, sk_strerror(reason));
    }
}

/* The client is off its list: free it; the last one of a stopping server ends the loop. */
static void forget_client(server *srv, client *cl)
{
    srv->client_count--;
    free(cl);
    if (srv->signals_seen && srv->client_count == 0)
        sk_loop_stop(srv->loop);
}

void server_client_closed(client *cl, int reason)
{
    server *srv = client_server(cl);
    log_close(cl, reason);
    unlink_client(&srv->clients, cl);
    forget_client(srv, cl);
}

/* Over TLS a client is started only once its handshake is done: before, it is no client of
 * the service (chat must not announce one that fails its handshake). Until then these are the
 * conn's callbacks. */
static void handshake_done(sk_conn *c)
{
    client *cl = sk_conn_data(c);
    server *srv = client_server(cl);
    unlink_client(&srv->handshaking, cl);
    link_client(&srv->clients, cl);
    srv->svc->start(srv, cl);
}

static void handshake_frame(sk_conn *c, const void *data, size_t len)
{
    /* Not called: frames come after on_connect, which hands the conn to the service. */
}

static void handshake_closed(sk_conn *c, int reason)
{
    client *cl = sk_conn_data(c);
    log_close(cl, reason);
    unlink_client(&client_server(cl)->handshaking, cl);
    forget_client(client_server(cl), cl);
}

static const sk_conn_callbacks handshake_callbacks = {
    .on_connect = handshake_done, .on_frame = handshake_frame, .on_close = handshake_closed};

server *client_server(const client *cl)
{
    return sk_loop_data(sk_conn_loop(cl->conn));
}

void client_name(const client *cl, char *buf, size_t len)
{
    peer_format(cl->peer, buf, len);
}

/* A client record with who its peer is in the same allocation; NULL when out of memory. */
static client *new_client(sk_conn *c)
{
    uint8_t peer[PEER_MAX];
    size_t n = peer_capture(c, peer);
    client *cl = calloc(1, sizeof *cl + n);
    if (!cl)
        return NULL;
    cl->conn = c;
    memcpy(cl->peer, peer, n);
    return cl;
}

static void on_accept(sk_listener *l, sk_conn *c)
{
    server *srv = sk_listener_data(l);
    client *cl = new_client(c);
    if (!cl) {
        char name[SK_ADDR_STRLEN];
        if (sk_conn_peer_name(c, name, sizeof name) < 0)
            snprintf(name, sizeof name, "fd=%d", sk_conn_fd(c));
        log_warn(&srv->log, "out of memory: refusing %s", name);
        sk_conn_abort(c);
        return;
    }
    srv->client_count++;
    const server_options *o = &srv->opt;
    size_t high = o->max_queue / 2 < 65536 ? o->max_queue / 2 : 65536;
    sk_conn_set_data(c, cl);
    sk_conn_set_framing(c, o->frame, o->max_frame);
    sk_conn_set_watermarks(c, high / 4, high, o->max_queue);
    if (o->idle_ms)
        sk_conn_set_idle_timeout(c, o->idle_ms);
    if (!srv->tls) {
        link_client(&srv->clients, cl);
        srv->svc->start(srv, cl);
        return;
    }
    link_client(&srv->handshaking, cl);
    sk_conn_set_callbacks(c, &handshake_callbacks); /* the service starts at on_connect */
    if (sk_tls_start(c, srv->tls, NULL, srv->handshake_ms) < 0) {
        char name[SK_ADDR_STRLEN];
        client_name(cl, name, sizeof name);
        log_warn(&srv->log, "%s: cannot start TLS: out of memory; dropped that client", name);
        sk_conn_abort(c); /* handshake_closed() follows and frees the client */
    }
}

/* Bytes a client is still owed or still owes us: queued output, or input not yet read. */
static bool undelivered(const client *cl)
{
    return sk_conn_queued_bytes(cl->conn) > 0 || sk_conn_input_pending(cl->conn);
}

static void drain_expired(sk_timer *t, void *arg)
{
    server *srv = arg;
    size_t n = srv->client_count, lost = 0;
    for (client *cl = srv->clients; cl; cl = cl->next) {
        lost += undelivered(cl);
        sk_conn_abort(cl->conn);
    }
    for (client *cl = srv->handshaking; cl; cl = cl->next)
        sk_conn_abort(cl->conn); /* no data of theirs was taken yet: nothing undelivered */
    log_drain_cutoff(&srv->log, n, "client", srv->drain_ms, lost);
    if (lost)
        srv->exit_status = EXIT_RUNTIME;
}

static void on_signal(sk_loop *loop, int signo, void *arg)
{
    server *srv = arg;
    second_signal_exits(&srv->signals_seen);
    log_info(&srv->log, "%s: stopping; %zu clients to finish", strsignal(signo), srv->client_count);
    sk_listener_close(srv->listener);
    srv->listener = NULL;
    for (client *cl = srv->clients, *next; cl; cl = next) {
        next = cl->next;
        if (srv->svc->stop)
            srv->svc->stop(srv, cl);
        else
            sk_conn_close(cl->conn); /* flush what is queued, then close */
    }
    for (client *cl = srv->handshaking; cl; cl = cl->next)
        sk_conn_close(cl->conn); /* the handshake ends, on_connect is skipped, then the close */
    if (srv->client_count == 0)
        sk_loop_stop(loop);
    else if (srv->drain_ms && sk_timer_new(loop, drain_expired, srv, &srv->drain) == 0)
        sk_timer_start(srv->drain, srv->drain_ms, 0);
}

static const service *find_service(const char *name)
{
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
        if (!strcmp(services[i]->name, name))
            return services[i];
    die(EXIT_USAGE, "--mode: unknown mode '%s' (use greet, echo, chat, discard or source)", name);
}

enum { OPT_MAX_CLIENTS = 0x100, OPT_MAX_PER_IP, OPT_ALLOW, OPT_DENY, OPT_DRAIN };

static const struct option long_options[] = {
    {"mode", required_argument, NULL, 'm'},
    {"message", required_argument, NULL, 'M'},
    {"frame", required_argument, NULL, 'f'},
    {"max-frame", required_argument, NULL, 'F'},
    {"max-queue", required_argument, NULL, 'Q'},
    {"idle-timeout", required_argument, NULL, 'i'},
    {"backlog", required_argument, NULL, 'b'},
    {"cert", required_argument, NULL, 'C'},
    {"key", required_argument, NULL, 'K'},
    {"client-ca", required_argument, NULL, 'A'},
    {"alpn", required_argument, NULL, 'L'},
    {"handshake-timeout", required_argument, NULL, 'H'},
    TLS_CLI_PROTOCOL_OPTIONS,
    PROXY_CLI_ACCEPT_OPTIONS,
    {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
    {"max-per-ip", required_argument, NULL, OPT_MAX_PER_IP},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"deny", required_argument, NULL, OPT_DENY},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

typedef struct serve_args {
    const char *address;
    const char *frame;
    int backlog;
    verbosity verbosity;
    tls_cli tls;
    uint32_t max_clients, max_per_ip;
    sk_cidr *allow, *deny; /* --allow, --deny */
    size_t nallow, ndeny;
    proxy_cli proxy;
} serve_args;

static void parse_args(int argc, char **argv, server *srv, serve_args *a)
{
    srv->svc = &service_greet;
    srv->opt =
        (server_options){.message = "Hi from server", .max_frame = 65536, .max_queue = 1024 * 1024};
    srv->drain_ms = 30000;
    *a = (serve_args){.address = "localhost:12345", .backlog = 4096, .verbosity = VERBOSITY_NORMAL};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":m:vqh", long_options, NULL)) != -1) {
        switch (ch) {
        case 'm': srv->svc = find_service(optarg); break;
        case 'M': srv->opt.message = optarg; break;
        case 'f': a->frame = optarg; break;
        case 'F': srv->opt.max_frame = parse_count("--max-frame", optarg, 1, 1u << 30); break;
        case 'Q': srv->opt.max_queue = parse_count("--max-queue", optarg, 1024, 1u << 30); break;
        case 'i': srv->opt.idle_ms = parse_seconds_ms("--idle-timeout", optarg); break;
        case 'b': a->backlog = (int)parse_count("--backlog", optarg, 1, 1 << 20); break;
        case 'C': a->tls.cert = optarg; break;
        case 'K': a->tls.key = optarg; break;
        case 'A': a->tls.ca = optarg; break;
        case 'L': a->tls.alpn = optarg; break;
        case 'H': srv->handshake_ms = parse_seconds_ms("--handshake-timeout", optarg); break;
        case OPT_MAX_CLIENTS:
            a->max_clients = (uint32_t)parse_count("--max-clients", optarg, 1, UINT32_MAX);
            break;
        case OPT_MAX_PER_IP:
            a->max_per_ip = (uint32_t)parse_count("--max-per-ip", optarg, 1, UINT32_MAX);
            break;
        case OPT_ALLOW: add_cidr("--allow", optarg, &a->allow, &a->nallow); break;
        case OPT_DENY: add_cidr("--deny", optarg, &a->deny, &a->ndeny); break;
        case OPT_DRAIN: srv->drain_ms = parse_seconds_ms("--drain-timeout", optarg); break;
        case OPT_TLS_CIPHERS:
        case OPT_TLS_SUITES:
        case OPT_TLS_MIN: tls_cli_protocol_option(&a->tls, ch, optarg); break;
        case OPT_ACCEPT_PROXY:
        case OPT_PROXY_FROM:
        case OPT_PROXY_TIMEOUT: proxy_cli_option(&a->proxy, ch, optarg); break;
        case 'v': a->verbosity = VERBOSITY_VERBOSE; break;
        case 'q': a->verbosity = VERBOSITY_QUIET; break;
        case 'h': fputs(serve_usage, stdout); exit(EXIT_OK);
        case ':':
            die(EXIT_USAGE, "option '%s' needs a value (see 'sockit serve --help')",
                argv[optind - 1]);
        default:
            die(EXIT_USAGE, "unknown option '%s' (see 'sockit serve --help')", argv[optind - 1]);
        }
    }
    if (optind < argc)
        a->address = argv[optind++];
    if (optind < argc)
        die(EXIT_USAGE,
            "unexpected argument '%s': serve takes one ADDRESS (see 'sockit serve "
            "--help')",
            argv[optind]);
    proxy_cli_check(&a->proxy);
    srv->opt.frame = srv->svc->default_frame;
    if (a->frame && sk_frame_kind_parse(a->frame, &srv->opt.frame) < 0)
        die(EXIT_USAGE, "--frame: unknown framing '%s' (use raw, line or len32)", a->frame);
}

static void open_listener(server *srv, const serve_args *a, const sk_addrspec *where)
{
    sk_addrspec spec = *where;
    char name[SK_ADDR_STRLEN + 128];
    if (spec.scheme == SK_SCHEME_TLS) {
        tls_cli_server_ctx(&a->tls, &srv->log, &srv->tls);
    } else if (tls_cli_any(&a->tls)) {
        die(EXIT_USAGE,
            "TLS options (--cert, --key, --client-ca, --alpn, --ciphers, "
            "--ciphersuites, --tls-min) need a tls:// address (sockit serve "
            "tls://%s ...)",
            a->address);
    }
    sk_listen_options lo = {.backlog = a->backlog,
                            .max_conns = a->max_clients,
                            .max_per_ip = a->max_per_ip,
                            .allow = a->allow,
                            .allow_count = a->nallow,
                            .deny = a->deny,
                            .deny_count = a->ndeny};
    proxy_cli_listen(&a->proxy, &lo);
    if (srv->svc == &service_greet) { /* a line a person reads; other modes just close */
        lo.full_message = "server full\n";
        lo.per_ip_message = "too many connections from your address\n";
    }
    listen_or_die(srv->loop, &spec, &lo, on_accept, srv, &srv->listener, name, sizeof name);
    /* The scheme is printed, as for udp://, so the line pasted into connect speaks TLS. */
    log_notice(&srv->log, "listening on %s%s", srv->tls ? "tls://" : "", name);
}

int cmd_serve(int argc, char **argv)
{
    server srv = {0};
    serve_args a;
    sk_addrspec spec;
    char err[256];
    parse_args(argc, argv, &srv, &a);
    if (sk_addr_parse(a.address, 12345, &spec, err, sizeof err) < 0)
        die(EXIT_USAGE, "bad address '%s': %s", a.address, err);
    if (spec.scheme == SK_SCHEME_UDP || spec.scheme == SK_SCHEME_UNIX_DGRAM) {
        if (a.proxy.nfrom || a.proxy.timeout_ms)
            die(EXIT_USAGE, "--proxy-from and --proxy-timeout are for streams (a datagram's "
                            "header comes with it)");
        srv.opt.accept_proxy = a.proxy.accept;
        free(a.allow);
        free(a.deny);
        return serve_udp(&spec, srv.svc->name, &srv.opt, a.verbosity); /* udp.c */
    }
    int rc = sk_loop_new(&srv.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    sk_loop_set_data(srv.loop, &srv); /* how a client finds its server: client_server() */
    setup_logging(srv.loop, &srv.log, a.verbosity);
    sk_loop_on_signal(srv.loop, SIGINT, on_signal, &srv);
    sk_loop_on_signal(srv.loop, SIGTERM, on_signal, &srv);
    open_listener(&srv, &a, &spec);
    rc = sk_loop_run(srv.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    sk_listener_close(srv.listener);
    sk_loop_run_once(srv.loop, 0); /* let deferred frees run */
    sk_timer_free(srv.drain);
    sk_timer_free(srv.stop_timer);
    sk_loop_free(srv.loop);
    sk_tls_ctx_free(srv.tls);
    free(a.allow);
    free(a.deny);
    proxy_cli_free(&a.proxy);
    return srv.exit_status;
}
