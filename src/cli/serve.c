/* sockit serve: a listener, a list of clients, a service, and a clean stop on SIGINT/SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "services/service.h"

static const char serve_usage[] =
    "usage: sockit serve [ADDRESS] [options]\n"
    "\n"
    "Listen on ADDRESS (default localhost:12345) and serve many clients at once.\n"
    "When ready, prints 'listening on ADDR' (the real address and port) on stderr.\n"
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
    "  -v, --verbose          print each socket step: socket, bind, listen, accept, recv,\n"
    "                         send, shutdown, close\n"
    "  -q, --quiet            print only errors\n"
    "  -h, --help             this help\n"
    "\n"
    "SIGINT or SIGTERM: stop accepting, deliver what is queued, close, exit 0.\n"
    "A second signal exits at once. Exit status: 0 stopped by a signal, 1 runtime\n"
    "failure (address in use, permission denied), 2 usage error.\n";

struct server {
    sk_loop *loop;
    sk_listener *listener;
    const service *svc;
    server_options opt;
    client *clients;
    size_t client_count;
    int signals_seen;
};

static const service *const services[] = {&service_greet, &service_echo, &service_chat,
                                          &service_discard, &service_source};

const server_options *server_opts(const server *srv)
{
    return &srv->opt;
}

client *server_clients(server *srv)
{
    return srv->clients;
}

void server_client_closed(client *cl, int reason)
{
    server *srv = cl->srv;
    if (reason == -EMSGSIZE)
        log_warn("%s sent a frame longer than --max-frame (%zu bytes); closed that client",
                 cl->name, srv->opt.max_frame);
    else if (reason == -ETIMEDOUT)
        log_info("%s: idle or stalled longer than allowed; closed", cl->name);
    else if (reason < 0)
        log_info("%s: %s", cl->name, sk_strerror(reason));
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        srv->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    srv->client_count--;
    free(cl);
    if (srv->signals_seen && srv->client_count == 0)
        sk_loop_stop(srv->loop);
}

static void client_name(sk_conn *c, char *buf, size_t len)
{
    sk_addr peer;
    if (sk_conn_peer_addr(c, &peer) == 0 && !sk_addr_is_unix(&peer))
        sk_addr_format(&peer, buf, len);
    else
        snprintf(buf, len, "unix-client-%d", sk_conn_fd(c)); /* Unix clients have no name */
}

static void on_accept(sk_listener *l, sk_conn *c)
{
    server *srv = sk_listener_data(l);
    client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        log_warn("out of memory: refusing a client");
        sk_conn_abort(c);
        return;
    }
    cl->conn = c;
    cl->srv = srv;
    client_name(c, cl->name, sizeof cl->name);
    cl->next = srv->clients;
    if (srv->clients)
        srv->clients->prev = cl;
    srv->clients = cl;
    srv->client_count++;
    const server_options *o = &srv->opt;
    size_t high = o->max_queue / 2 < 65536 ? o->max_queue / 2 : 65536;
    sk_conn_set_data(c, cl);
    sk_conn_set_framing(c, o->frame, o->max_frame);
    sk_conn_set_watermarks(c, high / 4, high, o->max_queue);
    if (o->idle_ms)
        sk_conn_set_idle_timeout(c, o->idle_ms);
    srv->svc->start(cl);
}

static void on_signal(sk_loop *loop, int signo, void *arg)
{
    server *srv = arg;
    if (srv->signals_seen++) {
        msg("second signal: exiting at once");
        exit(EXIT_RUNTIME);
    }
    log_info("%s: stopping; %zu clients to finish", strsignal(signo), srv->client_count);
    sk_listener_close(srv->listener);
    srv->listener = NULL;
    for (client *cl = srv->clients; cl; cl = cl->next)
        sk_conn_close(cl->conn); /* flush what is queued, then close */
    if (srv->client_count == 0)
        sk_loop_stop(loop);
}

static const service *find_service(const char *name)
{
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
        if (!strcmp(services[i]->name, name))
            return services[i];
    die(EXIT_USAGE, "--mode: unknown mode '%s' (use greet, echo, chat, discard or source)", name);
}

static const struct option long_options[] = {
    {"mode", required_argument, NULL, 'm'},
    {"message", required_argument, NULL, 'M'},
    {"frame", required_argument, NULL, 'f'},
    {"max-frame", required_argument, NULL, 'F'},
    {"max-queue", required_argument, NULL, 'Q'},
    {"idle-timeout", required_argument, NULL, 'i'},
    {"backlog", required_argument, NULL, 'b'},
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
} serve_args;

static void parse_args(int argc, char **argv, server *srv, serve_args *a)
{
    srv->svc = &service_greet;
    srv->opt = (server_options){.message = "Hi from server", .max_frame = 65536,
                                .max_queue = 1024 * 1024};
    *a = (serve_args){.address = "localhost:12345", .backlog = 4096,
                      .verbosity = VERBOSITY_NORMAL};
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
        case 'v': a->verbosity = VERBOSITY_VERBOSE; break;
        case 'q': a->verbosity = VERBOSITY_QUIET; break;
        case 'h': fputs(serve_usage, stdout); exit(EXIT_OK);
        case ':': die(EXIT_USAGE, "option '%s' needs a value (see 'sockit serve --help')",
                      argv[optind - 1]);
        default: die(EXIT_USAGE, "unknown option '%s' (see 'sockit serve --help')",
                     argv[optind - 1]);
        }
    }
    if (optind < argc)
        a->address = argv[optind++];
    if (optind < argc)
        die(EXIT_USAGE, "unexpected argument '%s': serve takes one ADDRESS (see 'sockit serve "
                        "--help')", argv[optind]);
    srv->opt.frame = srv->svc->default_frame;
    if (a->frame && sk_frame_kind_parse(a->frame, &srv->opt.frame) < 0)
        die(EXIT_USAGE, "--frame: unknown framing '%s' (use raw, line or len32)", a->frame);
}

static void open_listener(server *srv, const serve_args *a)
{
    sk_addrspec spec;
    char err[256], name[SK_ADDR_STRLEN + 128];
    if (sk_addr_parse(a->address, 12345, &spec, err, sizeof err) < 0)
        die(EXIT_USAGE, "bad address '%s': %s", a->address, err);
    if (spec.scheme == SK_SCHEME_TLS || spec.scheme == SK_SCHEME_UDP)
        die(EXIT_USAGE, "'%s': %s is not supported yet (use tcp:// or unix:)", a->address,
            spec.scheme == SK_SCHEME_TLS ? "tls://" : "udp://");
    sk_listen_options lo = {.backlog = a->backlog};
    int rc = sk_listener_open_spec(srv->loop, &spec, &lo, on_accept, srv, &srv->listener);
    spec_name(&spec, name, sizeof name);
    if (rc == SK_ERR_NONAME || rc == SK_ERR_NODATA || rc == SK_ERR_DNSFAIL)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec.host, sk_strerror(rc),
            hint_for(rc, false, 0));
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot listen on %s: %s%s", name, sk_strerror(rc),
            hint_for(rc, spec.is_unix, spec.port));
    sk_addr bound;
    sk_listener_addr(srv->listener, &bound);
    sk_addr_format(&bound, name, sizeof name);
    if (a->verbosity != VERBOSITY_QUIET) {
        fprintf(stderr, "listening on %s\n", name);
        fflush(stderr);
    }
}

int cmd_serve(int argc, char **argv)
{
    server srv = {0};
    serve_args a;
    parse_args(argc, argv, &srv, &a);
    int rc = sk_loop_new(&srv.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    setup_logging(srv.loop, a.verbosity);
    sk_loop_on_signal(srv.loop, SIGINT, on_signal, &srv);
    sk_loop_on_signal(srv.loop, SIGTERM, on_signal, &srv);
    open_listener(&srv, &a);
    rc = sk_loop_run(srv.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    sk_listener_close(srv.listener);
    sk_loop_run_once(srv.loop, 0); /* let deferred frees run */
    sk_loop_free(srv.loop);
    return EXIT_OK;
}
