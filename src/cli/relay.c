/* sockit relay: a port forwarder and small L4 load balancer. Each accepted client gets a
 * connection to a target (chosen by relay_pick.c; a failed target is skipped for --down-time
 * and the next one tried), and the two are joined by a bridge (include/sockit/bridge.h): bytes
 * both ways with backpressure, FIN and reset carried, splice(2) between plain sockets.
 * Datagram addresses go to relay_udp.c. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "relay.h"

static const char relay_usage[] =
    "usage: sockit relay LISTEN TARGET [TARGET...] [options]\n"
    "\n"
    "Accept on LISTEN and join each client to a TARGET: bytes both ways, FIN and reset\n"
    "carried, backpressure each way. Addresses as for serve and connect: HOST:PORT,\n"
    "[V6]:PORT, unix:PATH, tls://HOST:PORT (LISTEN: terminate TLS; TARGET: originate it),\n"
    "or for datagrams udp://HOST:PORT and unix-dgram:PATH (a session per client address).\n"
    "Streams go to streams and datagrams to datagrams, in any mix of families.\n"
    "Datagram sessions: a new client address gets its own socket to a target; a full\n"
    "table (--max-sessions) drops new clients' datagrams, never a live session's; a\n"
    "session whose target refuses (ICMP) moves to one that is up.\n"
    "When ready, prints 'listening on ADDR' on stderr.\n"
    "\n"
    "targets:\n"
    "      --balance HOW        roundrobin (default), leastconn, or first (the first one up)\n"
    "      --connect-timeout SECS  give up on a target after SECS and try the next (default 5)\n"
    "      --down-time SECS     skip a target that failed for SECS (default 10)\n"
    "      --no-splice          copy through user space even between plain sockets\n"
    "      (--connect-timeout, --drain-timeout, --backlog, --no-splice: streams only)\n"
    "\n"
    "limits (as for serve):\n"
    "      --max-clients N      more live clients are refused (streams)\n"
    "      --max-per-ip N       live clients from one IP address (streams)\n"
    "      --allow CIDR         admit only these ranges; repeatable\n"
    "      --deny CIDR          never these ranges; repeatable; deny wins over allow\n"
    "      --idle-timeout SECS  close a pair (or a datagram session) silent that long\n"
    "                           (default: never for streams, 60 for datagrams)\n"
    "      --drain-timeout SECS  on SIGINT/SIGTERM, how long open pairs may take to finish\n"
    "                           (default 30; 0: no limit)\n"
    "      --backlog N          the kernel's queue of unaccepted connections (default 4096)\n"
    "      --max-sessions N     datagram sessions at once (default 10000)\n"
    "      --max-frame BYTES    the largest datagram relayed (default 65535)\n"
    "\n"
    "TLS towards clients (LISTEN tls://):\n"
    "      --cert FILE          certificate chain (PEM); without it, an ephemeral one\n"
    "      --key FILE           private key (default: the --cert file)\n"
    "      --client-ca FILE     require a client certificate signed by these CAs\n"
    "      --handshake-timeout SECS  (default 10)\n"
    "TLS towards targets (TARGET tls://): verified against the system's CAs unless\n"
    "      --ca FILE            trust these CAs instead\n"
    "      --pin sha256:HEX     accept exactly this certificate\n"
    "      --insecure           accept any certificate (a warning says so)\n"
    "      --sni NAME           the name to send and verify (default: the target's HOST)\n"
    "Both:\n" TLS_CLI_PROTOCOL_HELP "\n" PROXY_CLI_ACCEPT_HELP PROXY_CLI_SEND_HELP
    "      --proxy-unique-id    with --send-proxy v2: a random UNIQUE_ID per connection\n"
    "      (--send-proxy v2 also tells the target the TLS the relay terminated: SNI as\n"
    "      AUTHORITY, ALPN, the TLS version)\n"
    "\n"
    "  -v, --verbose            a line per accept, target, connect, FIN or reset, close\n"
    "  -q, --quiet              print only errors\n"
    "  -h, --help               this help\n"
    "\n"
    "SIGINT or SIGTERM: stop accepting, let open pairs finish, exit 0; after\n"
    "--drain-timeout the rest are cut off (exit 1 if one still had data to deliver).\n"
    "A second signal exits at once. Exit status: 0 stopped by a signal, 1 runtime failure,\n"
    "2 usage error.\n";

/* A client and its target, from accept to the bridge's end. */
typedef struct relay relay;

typedef struct pair {
    relay *r;
    sk_conn *client, *target; /* target: NULL between attempts */
    sk_bridge *br;            /* once joined */
    struct pair *prev, *next;
    uint64_t tried;       /* bit i: target i failed for this client */
    uint8_t target_index; /* < RELAY_MAX_TARGETS */
    uint8_t addr_index;   /* the address of the target being tried, < RELAY_TARGET_ADDRS */
    bool target_chosen;
    uint8_t peer[PEER_MAX]; /* the client, captured at accept: see peer_format() */
} pair;

struct relay {
    sk_loop *loop;
    logger log;
    relay_args *a;
    sk_listener *listener;
    sk_tls_ctx *tls_in, *tls_out;
    pair *pairs;
    size_t pair_count;
    sk_timer *drain;
    uint64_t handshake_ms; /* --handshake-timeout */
    int signals_seen;
    int exit_status;
};

static relay_target *target_of(relay *r, const pair *p)
{
    return &r->a->pool.targets[p->target_index];
}

static void forget(relay *r, pair *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        r->pairs = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p);
    r->pair_count--;
    if (r->signals_seen && r->pair_count == 0)
        sk_loop_stop(r->loop);
}

/* A line about one pair, named by its client: with -v only (pair_info), or unless -q. The name
 * is formatted only when the line is written. */
__attribute__((format(printf, 3, 0))) static void pair_line(const pair *p, verbosity at,
                                                            const char *fmt, va_list ap)
{
    const logger *lg = &p->r->log;
    if (lg->level < at)
        return;
    char name[SK_ADDR_STRLEN], text[LOG_LINE_MAX];
    peer_format(p->peer, name, sizeof name);
    vsnprintf(text, sizeof text, fmt, ap);
    if (at == VERBOSITY_VERBOSE)
        log_info(lg, "%s: %s", name, text);
    else
        log_warn(lg, "%s: %s", name, text);
}

__attribute__((format(printf, 2, 3))) static void pair_info(const pair *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pair_line(p, VERBOSITY_VERBOSE, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void pair_warn(const pair *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pair_line(p, VERBOSITY_NORMAL, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- joined: the bridge */

static const char *end_text(int reason)
{
    if (reason == 0)
        return "FIN";
    if (sk_close_cause_of(reason) == SK_CLOSE_RESET)
        return "reset";
    return sk_strerror(reason);
}

static void pair_end(sk_bridge *br, sk_bridge_dir dir, int reason, void *arg)
{
    pair *p = arg;
    pair_info(p, "%s from the %s", end_text(reason), dir == SK_BRIDGE_A_TO_B ? "client" : "target");
}

static void pair_done(sk_bridge *br, const sk_bridge_result *res, void *arg)
{
    pair *p = arg;
    relay *r = p->r;
    relay_target *t = target_of(r, p);
    t->active--;
    pair_info(p, "closed; %llu bytes to %s, %llu bytes back (%s)", (unsigned long long)res->a_to_b,
              t->text, (unsigned long long)res->b_to_a, res->spliced ? "spliced" : "copied");
    if (res->a_reason == -ETIMEDOUT || res->b_reason == -ETIMEDOUT)
        pair_info(p, "idle longer than --idle-timeout; closed");
    forget(r, p);
}

static void join(relay *r, pair *p)
{
    sk_bridge_options o = {.flags = r->a->no_splice ? SK_BRIDGE_NO_SPLICE : 0, .on_end = pair_end};
    if (sk_bridge_join(p->client, p->target, &o, pair_done, p, &p->br) < 0) {
        pair_warn(p, "out of memory: dropped that client");
        sk_conn_abort(p->target);
        sk_conn_abort(p->client); /* client_closed_early() frees the pair */
        return;
    }
    pair_info(p, "joined to %s (%s)", target_of(r, p)->text,
              sk_bridge_spliced(p->br, SK_BRIDGE_A_TO_B) ? "splice" : "copy");
}

/* ---------------------------------------------------------------- connecting to a target */

static void try_target(relay *r, pair *p);

static void target_up(sk_conn *c)
{
    pair *p = sk_conn_data(c);
    relay *r = p->r;
    pair_info(p, "connected to %s", target_of(r, p)->text);
    if (r->tls_out)
        tls_cli_describe(&r->log, c, "target");
    join(r, p);
}

static void target_frame(sk_conn *c, const void *data, size_t len)
{
    /* Not called: the bridge takes the conn over at on_connect, before any byte is read. */
}

/* Why a target failed, for the one line that says it is down. */
static void failure_text(sk_conn *c, int reason, char *buf, size_t len)
{
    if (reason == SK_ERR_TLS || reason == SK_ERR_TLS_VERIFY) {
        sk_tls_info info;
        sk_tls_describe(c, &info);
        snprintf(buf, len, "TLS handshake failed: %s", info.error[0] ? info.error : "no detail");
    } else if (reason == -ETIMEDOUT) {
        snprintf(buf, len, "no answer within --connect-timeout");
    } else {
        snprintf(buf, len, "%s", sk_strerror(reason));
    }
}

/* Every address of the pair's target failed (why: the last reason): mark it down, logged
 * once, and try the next target; the client is closed only when every target failed. */
static void fail_over(relay *r, pair *p, const char *why)
{
    relay_target *t = target_of(r, p);
    t->active--;
    p->tried |= 1ull << p->target_index;
    if (relay_mark_down(&r->a->pool, t, sk_loop_now(r->loop)))
        log_warn(&r->log, "target %s is down (%s); skipping it for %.1f s", t->text, why,
                 (double)r->a->pool.down_ms / 1000.0);
    bool tried[RELAY_MAX_TARGETS];
    for (size_t i = 0; i < r->a->pool.count; i++)
        tried[i] = p->tried >> i & 1;
    long next = relay_pick_next(&r->a->pool, tried, sk_loop_now(r->loop));
    if (next < 0) {
        pair_warn(p, "every target failed; closed that client");
        sk_conn_abort(p->client); /* a reset: the client's connection did not go through */
        return;
    }
    p->target_index = (uint8_t)next;
    p->addr_index = 0;
    target_of(r, p)->active++;
    try_target(r, p);
}

/* The connect (or its TLS handshake) failed: the next address of this target, else the next
 * target. */
static void target_failed(sk_conn *c, int reason)
{
    pair *p = sk_conn_data(c);
    relay *r = p->r;
    p->target = NULL;
    if (!p->client) { /* the client went first and aborted us */
        target_of(r, p)->active--;
        forget(r, p);
        return;
    }
    char why[320];
    failure_text(c, reason, why, sizeof why);
    pair_info(p, "%s: %s", target_of(r, p)->text, why);
    if (++p->addr_index < target_of(r, p)->addr_count)
        try_target(r, p);
    else
        fail_over(r, p, why);
}

static const sk_conn_callbacks target_callbacks = {
    .on_connect = target_up, .on_frame = target_frame, .on_close = target_failed};

/* --send-proxy: the client (as the header that came in said, with --accept-proxy) and the
 * address it connected to, and what the relay knows of it: the TLS it terminated (SNI as
 * AUTHORITY, ALPN, SSL version and verification), a UNIQUE_ID if asked. The header is the
 * target conn's bottom layer, so a TLS handshake to the target goes after it. */
static int send_proxy_header(relay *r, pair *p)
{
    sk_addr src, dst;
    sk_proxy_write_opts o = {.version = r->a->proxy.send_version,
                             .command = SK_PROXY_CMD_PROXY,
                             .transport = SK_PROXY_STREAM,
                             .crc32c = r->a->proxy.send_crc};
    if (sk_conn_peer_addr(p->client, &src) == 0 && sk_conn_local_addr(p->client, &dst) == 0 &&
        src.ss.ss_family == dst.ss.ss_family) {
        o.src = &src;
        o.dst = &dst;
    } else {
        o.command = SK_PROXY_CMD_LOCAL; /* gone already, or no address to tell */
    }
    sk_tls_info info;
    char id[33];
    if (o.version == 2 && r->tls_in && sk_tls_describe(p->client, &info) == 0) {
        if (info.sni)
            o.authority = (sk_proxy_bytes){(const uint8_t *)info.sni, strlen(info.sni)};
        if (info.alpn[0])
            o.alpn = (sk_proxy_bytes){(const uint8_t *)info.alpn, strlen(info.alpn)};
        o.ssl = (sk_proxy_ssl){
            .present = true,
            .client = SK_PROXY_SSL_CLIENT_SSL,
            .verify = info.verified ? 0 : 1, /* 0: a client certificate was verified */
            .version = {(const uint8_t *)info.version, strlen(info.version)},
        };
        /* The client certificate's common name, from its subject ("/O=x/CN=alice/..."). */
        const char *cn = strstr(info.peer_subject, "CN=");
        if (cn) {
            cn += 3;
            o.ssl.client |= SK_PROXY_SSL_CLIENT_CERT_CONN;
            o.ssl.cn = (sk_proxy_bytes){(const uint8_t *)cn, strcspn(cn, "/,")};
        }
    }
    if (o.version == 2 && r->a->proxy_unique_id) {
        uint8_t raw[16];
        if (getrandom(raw, sizeof raw, 0) == (ssize_t)sizeof raw) {
            for (int i = 0; i < 16; i++)
                snprintf(id + 2 * i, 3, "%02x", raw[i]);
            o.unique_id = (sk_proxy_bytes){(const uint8_t *)id, 32};
        }
    }
    return sk_proxy_send(p->target, &o, r->a->connect_timeout_ms);
}

/* Connect to the current address of the pair's target; a failure that comes at once is
 * handled as one that comes later. */
static void try_target(relay *r, pair *p)
{
    relay_target *t = target_of(r, p);
    for (; p->addr_index < t->addr_count; p->addr_index++) {
        const sk_addr *addr = &t->addrs[p->addr_index];
        if (r->log.level == VERBOSITY_VERBOSE) {
            char where[SK_ADDR_STRLEN];
            sk_addr_format(addr, where, sizeof where);
            pair_info(p, "to %s (%s)", t->text, where);
        }
        int rc = sk_conn_connect(r->loop, addr, r->a->connect_timeout_ms, &target_callbacks, p,
                                 &p->target);
        if (rc == 0 && r->a->proxy.send_version)
            rc = send_proxy_header(r, p);
        if (rc < 0 && p->target) {
            sk_conn_abort(p->target); /* out of memory: its close reports it */
            return;
        }
        if (rc == 0 && r->tls_out && t->spec.scheme == SK_SCHEME_TLS) {
            const char *sni = r->a->tls_out.sni ? r->a->tls_out.sni : t->spec.host;
            rc = sk_tls_start(p->target, r->tls_out, sni[0] ? sni : "localhost",
                              r->a->connect_timeout_ms);
            if (rc < 0) { /* the conn is open: its close reports the failure */
                sk_conn_abort(p->target);
                return;
            }
        }
        if (rc == 0)
            return;
        pair_info(p, "%s: %s", t->text, sk_strerror(rc));
    }
    /* Every address failed at once (no route, out of descriptors). */
    p->target = NULL;
    fail_over(r, p, "cannot connect");
}

/* ---------------------------------------------------------------- the client, until joined */

static void start_pair(relay *r, pair *p)
{
    p->target_index = (uint8_t)relay_pick(&r->a->pool, sk_loop_now(r->loop));
    relay_target *t = target_of(r, p);
    p->target_chosen = true;
    t->active++;
    t->picked++;
    try_target(r, p);
}

static void client_ready(sk_conn *c)
{
    pair *p = sk_conn_data(c);
    relay *r = p->r;
    tls_cli_describe(&r->log, c, "client");
    sk_conn_pause_reading(c);
    start_pair(r, p);
}

static void client_frame(sk_conn *c, const void *data, size_t len)
{
    /* Not called: the client is paused until the bridge takes it over. */
}

/* The client closed before it was joined (its handshake failed, or every target did). */
static void client_closed_early(sk_conn *c, int reason)
{
    pair *p = sk_conn_data(c);
    relay *r = p->r;
    p->client = NULL;
    if (reason == SK_ERR_TLS || reason == SK_ERR_TLS_VERIFY) {
        sk_tls_info info;
        sk_tls_describe(c, &info);
        pair_info(p, "TLS handshake failed: %s", info.error);
    }
    if (p->target) {
        sk_conn_abort(p->target); /* target_failed() forgets the pair */
        return;
    }
    if (p->target_chosen)
        target_of(r, p)->active--;
    forget(r, p);
}

static const sk_conn_callbacks client_callbacks = {
    .on_connect = client_ready, .on_frame = client_frame, .on_close = client_closed_early};

static void on_accept(sk_listener *l, sk_conn *c)
{
    relay *r = sk_listener_data(l);
    pair *p = calloc(1, sizeof *p);
    if (!p) {
        log_warn(&r->log, "out of memory: refusing a client");
        sk_conn_abort(c);
        return;
    }
    p->r = r;
    p->client = c;
    peer_capture(c, p->peer);
    p->next = r->pairs;
    if (r->pairs)
        r->pairs->prev = p;
    r->pairs = p;
    r->pair_count++;
    sk_conn_set_data(c, p);
    sk_conn_set_callbacks(c, &client_callbacks);
    if (r->a->idle_ms)
        sk_conn_set_idle_timeout(c, r->a->idle_ms);
    pair_info(p, "accepted");
    if (r->tls_in) {
        /* The target is chosen once the handshake is done (client_ready). */
        if (sk_tls_start(c, r->tls_in, NULL, r->handshake_ms) < 0)
            sk_conn_abort(c);
        return;
    }
    sk_conn_pause_reading(c); /* its bytes wait in the kernel until a target is joined */
    start_pair(r, p);
}

/* ---------------------------------------------------------------- stopping */

static bool undelivered(const sk_conn *c)
{
    return c && (sk_conn_queued_bytes(c) > 0 || sk_conn_input_pending(c));
}

static void drain_expired(sk_timer *t, void *arg)
{
    relay *r = arg;
    size_t n = r->pair_count, lost = 0;
    for (pair *p = r->pairs, *next; p; p = next) {
        next = p->next;
        lost += undelivered(p->client) || undelivered(p->target);
        if (p->target)
            sk_conn_abort(p->target);
        if (p->client)
            sk_conn_abort(p->client);
    }
    log_drain_cutoff(&r->log, n, "pair", r->a->drain_ms, lost);
    if (lost)
        r->exit_status = EXIT_RUNTIME;
}

static void on_signal(sk_loop *loop, int signo, void *arg)
{
    relay *r = arg;
    second_signal_exits(&r->signals_seen);
    log_info(&r->log, "%s: stopping; %zu pairs to finish", strsignal(signo), r->pair_count);
    sk_listener_close(r->listener);
    r->listener = NULL;
    /* Open pairs go on until both sides end: what the relay's sockets already acknowledged
     * to a sender is delivered. */
    if (r->pair_count == 0)
        sk_loop_stop(loop);
    else if (r->a->drain_ms && sk_timer_new(loop, drain_expired, r, &r->drain) == 0)
        sk_timer_start(r->drain, r->a->drain_ms, 0);
}

/* ---------------------------------------------------------------- the command line */

enum {
    OPT_BALANCE = 0x100,
    OPT_CONNECT_TIMEOUT,
    OPT_DOWN_TIME,
    OPT_NO_SPLICE,
    OPT_MAX_CLIENTS,
    OPT_MAX_PER_IP,
    OPT_ALLOW,
    OPT_DENY,
    OPT_IDLE,
    OPT_DRAIN,
    OPT_BACKLOG,
    OPT_MAX_SESSIONS,
    OPT_MAX_FRAME,
    OPT_CERT,
    OPT_KEY,
    OPT_HANDSHAKE,
    OPT_CA,
    OPT_PIN,
    OPT_INSECURE,
    OPT_SNI,
    OPT_PROXY_UNIQUE_ID,
    OPT_CLIENT_CA,
};

static const struct option long_options[] = {
    {"balance", required_argument, NULL, OPT_BALANCE},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"down-time", required_argument, NULL, OPT_DOWN_TIME},
    {"no-splice", no_argument, NULL, OPT_NO_SPLICE},
    {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
    {"max-per-ip", required_argument, NULL, OPT_MAX_PER_IP},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"deny", required_argument, NULL, OPT_DENY},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE},
    {"ca", required_argument, NULL, OPT_CA},
    {"pin", required_argument, NULL, OPT_PIN},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"sni", required_argument, NULL, OPT_SNI},
    TLS_CLI_PROTOCOL_OPTIONS,
    PROXY_CLI_ACCEPT_OPTIONS,
    PROXY_CLI_SEND_OPTION,
    {"proxy-unique-id", no_argument, NULL, OPT_PROXY_UNIQUE_ID},
    {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

static bool is_datagram(const sk_addrspec *s)
{
    return s->scheme == SK_SCHEME_UDP || s->scheme == SK_SCHEME_UNIX_DGRAM;
}

static void parse_address(const char *text, sk_addrspec *spec)
{
    char err[256];
    if (sk_addr_parse(text, -1, spec, err, sizeof err) < 0)
        die(EXIT_USAGE, "bad address '%s': %s", text, err);
}

static void parse_args(int argc, char **argv, relay_args *a)
{
    *a = (relay_args){.connect_timeout_ms = 5000,
                      .drain_ms = 30000,
                      .max_sessions = 10000,
                      .max_datagram = 65535,
                      .backlog = 4096,
                      .verbosity = VERBOSITY_NORMAL,
                      .pool = {.balance = BALANCE_ROUNDROBIN, .down_ms = 10000}};
    tls_cli protocol = {0};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":vqh", long_options, NULL)) != -1) {
        switch (ch) {
        case OPT_BALANCE:
            if (relay_balance_parse(optarg, &a->pool.balance) < 0)
                die(EXIT_USAGE, "--balance: unknown way '%s' (use roundrobin, leastconn or first)",
                    optarg);
            break;
        case OPT_CONNECT_TIMEOUT:
            a->connect_timeout_ms = parse_seconds_ms("--connect-timeout", optarg);
            break;
        case OPT_DOWN_TIME: a->pool.down_ms = parse_seconds_ms("--down-time", optarg); break;
        case OPT_NO_SPLICE: a->no_splice = true; break;
        case OPT_MAX_CLIENTS:
            a->max_clients = (uint32_t)parse_count("--max-clients", optarg, 1, UINT32_MAX);
            break;
        case OPT_MAX_PER_IP:
            a->max_per_ip = (uint32_t)parse_count("--max-per-ip", optarg, 1, UINT32_MAX);
            break;
        case OPT_ALLOW: add_cidr("--allow", optarg, &a->allow, &a->nallow); break;
        case OPT_DENY: add_cidr("--deny", optarg, &a->deny, &a->ndeny); break;
        case OPT_IDLE:
            a->idle_ms = parse_seconds_ms("--idle-timeout", optarg);
            a->idle_given = true;
            break;
        case OPT_DRAIN: a->drain_ms = parse_seconds_ms("--drain-timeout", optarg); break;
        case OPT_BACKLOG: a->backlog = (int)parse_count("--backlog", optarg, 1, 1 << 20); break;
        case OPT_MAX_SESSIONS:
            a->max_sessions = (uint32_t)parse_count("--max-sessions", optarg, 1, 1u << 24);
            break;
        case OPT_MAX_FRAME: a->max_datagram = parse_count("--max-frame", optarg, 1, 65535); break;
        case OPT_CERT: a->tls_in.cert = optarg; break;
        case OPT_KEY: a->tls_in.key = optarg; break;
        case OPT_HANDSHAKE:
            a->handshake_ms = parse_seconds_ms("--handshake-timeout", optarg);
            break;
        case OPT_CA: a->tls_out.ca = optarg; break;
        case OPT_PIN: a->tls_out.pin = optarg; break;
        case OPT_INSECURE: a->tls_out.insecure = true; break;
        case OPT_SNI: a->tls_out.sni = optarg; break;
        case OPT_ACCEPT_PROXY:
        case OPT_PROXY_FROM:
        case OPT_PROXY_TIMEOUT:
        case OPT_SEND_PROXY: proxy_cli_option(&a->proxy, ch, optarg); break;
        case OPT_PROXY_UNIQUE_ID: a->proxy_unique_id = true; break;
        case OPT_CLIENT_CA: a->tls_in.ca = optarg; break;
        case OPT_TLS_CIPHERS:
        case OPT_TLS_SUITES:
        case OPT_TLS_MIN: tls_cli_protocol_option(&protocol, ch, optarg); break;
        case 'v': a->verbosity = VERBOSITY_VERBOSE; break;
        case 'q': a->verbosity = VERBOSITY_QUIET; break;
        case 'h': fputs(relay_usage, stdout); exit(EXIT_OK);
        case ':':
            die(EXIT_USAGE, "option '%s' needs a value (see 'sockit relay --help')",
                argv[optind - 1]);
        default:
            die(EXIT_USAGE, "unknown option '%s' (see 'sockit relay --help')", argv[optind - 1]);
        }
    }
    /* The protocol options (--tls-min, --ciphers, --ciphersuites) hold for both sides. */
    a->tls_in.ciphers = a->tls_out.ciphers = protocol.ciphers;
    a->tls_in.ciphersuites = a->tls_out.ciphersuites = protocol.ciphersuites;
    a->tls_in.min_version = a->tls_out.min_version = protocol.min_version;
    if (argc - optind < 2)
        die(EXIT_USAGE, "relay needs a LISTEN address and at least one TARGET: sockit relay "
                        ":8080 127.0.0.1:9000 (see 'sockit relay --help')");
    proxy_cli_check(&a->proxy);
    if (a->proxy_unique_id && a->proxy.send_version != 2)
        die(EXIT_USAGE, "--proxy-unique-id needs --send-proxy v2 (v1 has no room for it)");
    a->listen_text = argv[optind++];
    parse_address(a->listen_text, &a->listen);
    size_t n = (size_t)(argc - optind);
    if (n > RELAY_MAX_TARGETS)
        die(EXIT_USAGE, "too many targets: %zu (at most %d)", n, RELAY_MAX_TARGETS);
    a->pool.targets = calloc(n, sizeof *a->pool.targets);
    if (!a->pool.targets)
        die(EXIT_RUNTIME, "out of memory");
    a->pool.count = n;
    for (size_t i = 0; i < n; i++) {
        relay_target *t = &a->pool.targets[i];
        t->text = argv[optind + (int)i];
        parse_address(t->text, &t->spec);
        if (is_datagram(&t->spec) != is_datagram(&a->listen))
            die(EXIT_USAGE,
                "cannot relay %s to %s: one is a stream and the other datagrams (relay "
                "streams to streams: HOST:PORT, unix:, tls://; datagrams to datagrams: "
                "udp://, unix-dgram:)",
                a->listen_text, t->text);
        if (!t->spec.is_unix && t->spec.port == 0)
            die(EXIT_USAGE, "bad target '%s': port 0 cannot be connected to (use 1-65535)",
                t->text);
    }
}

/* TLS options with nothing to apply them to are mistakes: say which address they need. */
static void check_tls_options(const relay_args *a)
{
    bool tls_target = false;
    for (size_t i = 0; i < a->pool.count; i++)
        tls_target |= a->pool.targets[i].spec.scheme == SK_SCHEME_TLS;
    if ((a->tls_in.cert || a->tls_in.key || a->tls_in.ca) && a->listen.scheme != SK_SCHEME_TLS)
        die(EXIT_USAGE,
            "--cert, --key and --client-ca are for a tls:// LISTEN address (sockit relay "
            "tls://%s ...)",
            a->listen_text);
    if ((a->tls_out.ca || a->tls_out.pin || a->tls_out.insecure || a->tls_out.sni) && !tls_target)
        die(EXIT_USAGE, "--ca, --pin, --insecure and --sni are for tls:// targets (sockit relay "
                        "LISTEN tls://HOST:PORT ...)");
    if ((a->tls_in.ciphers || a->tls_in.ciphersuites || a->tls_in.min_version) && !tls_target &&
        a->listen.scheme != SK_SCHEME_TLS)
        die(EXIT_USAGE, "--tls-min, --ciphers and --ciphersuites need a tls:// address");
}

static void resolve_targets(relay_args *a)
{
    for (size_t i = 0; i < a->pool.count; i++) {
        relay_target *t = &a->pool.targets[i];
        sk_addrspec spec = t->spec;
        if (!spec.is_unix && spec.host[0] == '\0')
            snprintf(spec.host, sizeof spec.host, "localhost");
        int n = sk_addr_resolve(&spec, 0, t->addrs, RELAY_TARGET_ADDRS);
        if (n < 0)
            die(EXIT_RUNTIME, "cannot resolve target '%s': %s%s", t->text, sk_strerror(n),
                hint_for(n, false, 0));
        t->addr_count = n;
    }
}

static void open_listener(relay *r)
{
    const relay_args *a = r->a;
    sk_listen_options lo = {.backlog = a->backlog,
                            .max_conns = a->max_clients,
                            .max_per_ip = a->max_per_ip,
                            .allow = a->allow,
                            .allow_count = a->nallow,
                            .deny = a->deny,
                            .deny_count = a->ndeny};
    proxy_cli_listen(&a->proxy, &lo);
    char name[SK_ADDR_STRLEN + 128];
    listen_or_die(r->loop, &a->listen, &lo, on_accept, r, &r->listener, name, sizeof name);
    log_notice(&r->log, "listening on %s%s", r->tls_in ? "tls://" : "", name);
}

int cmd_relay(int argc, char **argv)
{
    relay_args a;
    parse_args(argc, argv, &a);
    check_tls_options(&a);
    resolve_targets(&a);
    if (is_datagram(&a.listen)) {
        if (!a.idle_given)
            a.idle_ms = 60000;
        int status = relay_udp(&a); /* relay_udp.c */
        free(a.pool.targets);
        free(a.allow);
        free(a.deny);
        proxy_cli_free(&a.proxy);
        return status;
    }
    relay r = {.a = &a, .handshake_ms = a.handshake_ms ? a.handshake_ms : 10000};
    int rc = sk_loop_new(&r.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    sk_loop_set_data(r.loop, &r);
    setup_logging(r.loop, &r.log, a.verbosity);
    if (a.listen.scheme == SK_SCHEME_TLS)
        tls_cli_server_ctx(&a.tls_in, &r.log, &r.tls_in);
    for (size_t i = 0; i < a.pool.count && !r.tls_out; i++)
        if (a.pool.targets[i].spec.scheme == SK_SCHEME_TLS)
            tls_cli_client_ctx(&a.tls_out, &r.tls_out);
    sk_loop_on_signal(r.loop, SIGINT, on_signal, &r);
    sk_loop_on_signal(r.loop, SIGTERM, on_signal, &r);
    open_listener(&r);
    rc = sk_loop_run(r.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    sk_listener_close(r.listener);
    sk_loop_run_once(r.loop, 0); /* let deferred frees run */
    sk_timer_free(r.drain);
    sk_loop_free(r.loop);
    sk_tls_ctx_free(r.tls_in);
    sk_tls_ctx_free(r.tls_out);
    free(a.pool.targets);
    free(a.allow);
    free(a.deny);
    proxy_cli_free(&a.proxy);
    return r.exit_status;
}
