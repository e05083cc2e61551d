/* Datagrams for the command: `sockit serve udp://ADDR` or `unix-dgram:PATH` (echo, greet or
 * discard, for any number of peers at once: every reply goes to the sender of the datagram it
 * answers), and `sockit connect udp://HOST:PORT` or `unix-dgram:PATH` (each line of standard
 * input, or each chunk with --frame raw, is one datagram; replies are printed as they arrive).
 *
 * Addresses print as they are written, so they can be pasted back: udp://127.0.0.1:41234,
 * udp://[::1]:9000, unix-dgram:/tmp/d.sock. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "reply_match.h"
#include "services/service.h"

#define SERVER_RCVBUF (1 << 20) /* absorbs bursts from many peers; the kernel may cap it */
#define UNIX_MAX_REPLY (256 * 1024)

static void spec_dgram_name(const sk_addrspec *spec, char *buf, size_t len)
{
    char tmp[SK_ADDR_STRLEN + 128];
    spec_name(spec, tmp, sizeof tmp);
    if (spec->is_unix)
        snprintf(buf, len, "unix-dgram:%s", spec->path);
    else
        snprintf(buf, len, "udp://%s", tmp);
}

static void peer_name(const sk_addr *a, char *buf, size_t len)
{
    if (sk_addr_is_unix(a) && a->len == 0)
        snprintf(buf, len, "an unnamed Unix socket");
    else
        sk_addr_format(a, buf, len);
}

/* ================================================================ serve */

enum { MODE_ECHO, MODE_GREET, MODE_DISCARD };

/* One datagram server, owned by serve_udp(). */
typedef struct udp_server {
    sk_loop *loop;
    logger log;
    sk_dgram *d;
    int mode;
    char *greeting;
    size_t greeting_len, max_size;
    int signals_seen;
    bool accept_proxy;
    uint64_t truncated, unanswerable, refused, bad_headers;
} udp_server;

/* --accept-proxy: each datagram starts with a PROXY v2 header (the spec's datagram form:
 * header and payload in one datagram, each parsed on its own). The payload is what the mode
 * answers; the reply goes to the sender, the proxy. false: the datagram is dropped. */
static bool strip_proxy_header(udp_server *s, const sk_datagram *dg, const uint8_t **data,
                               size_t *len)
{
    sk_proxy_header h;
    int rc = sk_proxy_parse_datagram(dg->data, dg->len, &h);
    char via[SK_ADDR_STRLEN];
    if (rc < 0) {
        peer_name(dg->from, via, sizeof via);
        if (s->bad_headers++ == 0)
            log_warn(&s->log,
                     "datagram from %s dropped: %s (--accept-proxy: every datagram "
                     "must start with a PROXY v2 header; -v shows further ones)",
                     via, sk_proxy_strerror(rc));
        else
            log_info(&s->log, "datagram from %s dropped: %s", via, sk_proxy_strerror(rc));
        return false;
    }
    if (s->log.level == VERBOSITY_VERBOSE) {
        char who[SK_ADDR_STRLEN] = "(no address: LOCAL)";
        if (h.command == SK_PROXY_CMD_PROXY && h.src.len)
            peer_name(&h.src, who, sizeof who);
        peer_name(dg->from, via, sizeof via);
        log_info(&s->log, "datagram of %zu bytes from %s via %s", dg->len - (size_t)rc, who, via);
    }
    *data = (const uint8_t *)dg->data + rc;
    *len = dg->len - (size_t)rc;
    return true;
}

static void serve_datagram(sk_dgram *d, const sk_datagram *dg)
{
    udp_server *s = sk_dgram_data(d);
    char peer[SK_ADDR_STRLEN];
    if (dg->truncated) {
        peer_name(dg->from, peer, sizeof peer);
        if (s->truncated++ == 0)
            log_warn(&s->log,
                     "datagram of %zu bytes from %s is longer than --max-frame (%zu "
                     "bytes): truncated, so dropped (raise --max-frame; -v shows further ones)",
                     dg->size, peer, s->max_size);
        else
            log_info(&s->log, "datagram of %zu bytes from %s truncated to %zu: dropped", dg->size,
                     peer, dg->len);
        return;
    }
    const uint8_t *data = dg->data;
    size_t data_len = dg->len;
    if (s->accept_proxy && !strip_proxy_header(s, dg, &data, &data_len))
        return;
    if (s->mode == MODE_DISCARD)
        return;
    const void *reply = s->mode == MODE_ECHO ? (const void *)data : s->greeting;
    size_t len = s->mode == MODE_ECHO ? data_len : s->greeting_len;
    int rc = sk_dgram_send(d, reply, len, dg->from);
    if (rc == -EDESTADDRREQ) {
        if (s->unanswerable++ == 0)
            log_warn(&s->log, "a datagram came from a Unix socket without a name: it cannot be "
                              "answered (the client must bind its socket; sockit connect does)");
    } else if (rc == -ENOBUFS) {
        if (s->refused++ == 0)
            log_warn(&s->log, "replies are going out slower than datagrams arrive: some are "
                              "dropped (reading pauses until the queue empties)");
    } else if (rc < 0) {
        peer_name(dg->from, peer, sizeof peer);
        log_info(&s->log, "cannot reply to %s: %s", peer, sk_strerror(rc));
    }
    /* Input backpressure: the kernel's receive buffer holds (or drops) the rest meanwhile. */
    if (!sk_dgram_writable(d))
        sk_dgram_pause_reading(d);
}

static void serve_error(sk_dgram *d, int err, const sk_addr *peer)
{
    udp_server *s = sk_dgram_data(d);
    char name[SK_ADDR_STRLEN] = "a peer";
    if (peer)
        peer_name(peer, name, sizeof name);
    log_info(&s->log, "reply to %s failed: %s", name, sk_strerror(err));
}

static void serve_drain(sk_dgram *d)
{
    sk_dgram_resume_reading(d);
}

static const sk_dgram_callbacks serve_callbacks = {
    .on_datagram = serve_datagram, .on_error = serve_error, .on_drain = serve_drain};

static void serve_signal(sk_loop *loop, int signo, void *arg)
{
    udp_server *s = arg;
    if (s->signals_seen++) {
        msg("second signal: exiting at once");
        exit(EXIT_RUNTIME);
    }
    sk_dgram_stats st;
    sk_dgram_get_stats(s->d, &st);
    log_info(&s->log, "%s: stopping; %llu datagrams received (%llu truncated), %llu sent",
             strsignal(signo), (unsigned long long)st.received, (unsigned long long)st.truncated,
             (unsigned long long)st.sent);
    sk_dgram_close(s->d); /* a last try for queued replies; removes a Unix socket file */
    s->d = NULL;
    free(s->greeting);
    s->greeting = NULL;
    sk_loop_stop(loop);
}

static int mode_of(const char *name)
{
    if (!strcmp(name, "echo"))
        return MODE_ECHO;
    if (!strcmp(name, "greet"))
        return MODE_GREET;
    if (!strcmp(name, "discard"))
        return MODE_DISCARD;
    die(EXIT_USAGE,
        "--mode %s needs a stream; with udp:// and unix-dgram: use echo, greet or "
        "discard",
        name);
}

/* Bind the server's socket (the first resolved address this machine has) or exit. */
static void open_server(udp_server *s, const sk_addrspec *spec)
{
    char name[SK_ADDR_STRLEN + 160];
    spec_dgram_name(spec, name, sizeof name);
    sk_addr addrs[16];
    int n = sk_addr_resolve(spec, SK_RESOLVE_PASSIVE, addrs, 16);
    if (n < 0)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec->host, sk_strerror(n),
            hint_for(n, false, 0));
    sk_dgram_options o = {.max_size = s->max_size, .rcvbuf = SERVER_RCVBUF};
    int rc = -EADDRNOTAVAIL;
    for (int i = 0; i < n; i++) {
        rc = sk_dgram_open(s->loop, &addrs[i], NULL, &o, &serve_callbacks, s, &s->d);
        /* Only a missing address family (no IPv6 here) moves on to the next address. */
        if (rc == 0 || (rc != -EAFNOSUPPORT && rc != -EADDRNOTAVAIL && rc != -EPROTONOSUPPORT))
            break;
    }
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot listen on %s: %s%s", name, sk_strerror(rc),
            hint_for(rc, spec->is_unix, spec->port));
    sk_addr bound;
    sk_dgram_local_addr(s->d, &bound);
    dgram_name(&bound, name, sizeof name);
    log_notice(&s->log, "listening on %s", name);
}

int serve_udp(const sk_addrspec *spec, const char *mode, const struct server_options *opt,
              verbosity v)
{
    udp_server state = {.mode = mode_of(mode), .accept_proxy = opt->accept_proxy}, *s = &state;
    s->max_size = opt->max_frame < (16u << 20) ? opt->max_frame : (16u << 20);
    s->greeting_len = strlen(opt->message) + 1;
    s->greeting = malloc(s->greeting_len);
    if (!s->greeting)
        die(EXIT_RUNTIME, "out of memory");
    memcpy(s->greeting, opt->message, s->greeting_len - 1);
    s->greeting[s->greeting_len - 1] = '\n'; /* as greet does over TCP */
    int rc = sk_loop_new(&s->loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    setup_logging(s->loop, &s->log, v);
    sk_loop_on_signal(s->loop, SIGINT, serve_signal, s);
    sk_loop_on_signal(s->loop, SIGTERM, serve_signal, s);
    open_server(s, spec);
    rc = sk_loop_run(s->loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    sk_dgram_close(s->d);         /* NULL after a signal: serve_signal() closed it */
    sk_loop_run_once(s->loop, 0); /* let deferred frees run */
    free(s->greeting);
    sk_loop_free(s->loop);
    return EXIT_OK;
}

/* ================================================================ connect */

static const char connect_udp_usage[] =
    "usage: sockit connect udp://HOST:PORT | unix-dgram:PATH [options]\n"
    "\n"
    "Send each line of standard input (with its newline) as one datagram, or each chunk\n"
    "read with --frame raw, and print the replies as they arrive. When standard input ends,\n"
    "wait until every datagram sent has had a reply, or at most --timeout (then say how\n"
    "many got none, and exit 1). A reply with the bytes of a datagram sent answers that one\n"
    "(an echo), any other the oldest unanswered one; a duplicate answers nothing.\n"
    "\n"
    "options:\n"
    "      --timeout SECS     after standard input ends, wait at most SECS for replies\n"
    "                         (default 2)\n"
    "      --frame line|raw   one datagram per line (default) or per read of standard input\n"
    "  -v, --verbose          print each datagram: peer and size\n"
    "  -q, --quiet            print only errors\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 done, 1 no server there (port unreachable) or another failure,\n"
    "2 usage error.\n";

#define IN_READ 65536
#define IN_CAP (2 * IN_READ + 1)

/* One datagram client, owned by connect_udp(). */
typedef struct udp_client {
    sk_loop *loop;
    logger log;
    sk_dgram *d;
    char name[SK_ADDR_STRLEN + 160]; /* udp://127.0.0.1:5000 */
    char plain[SK_ADDR_STRLEN];      /* 127.0.0.1:5000 */
    bool is_unix, raw;
    uint64_t timeout_ms;
    size_t max_dgram;
    uint8_t *in; /* standard input not yet sent: lines waiting for room, an unfinished line */
    size_t in_len;
    bool stdin_done, split_warned, waiting;
    stdin_watch watch;
    sk_timer *reply_timer;
    uint64_t sent, replies, unmatched; /* unmatched: duplicates, or replies nobody asked for */
    reply_match match;
    int exit_status;
} udp_client;

static void finish(udp_client *c, int status)
{
    c->exit_status = status;
    sk_loop_stop(c->loop);
}

static void stdin_interest(udp_client *c);

/* Done when standard input is sent and every datagram has had its reply. */
static void maybe_done(udp_client *c)
{
    if (!c->stdin_done || c->in_len)
        return;
    if (c->replies >= c->sent) {
        log_info(&c->log, "%llu datagrams sent, %llu replies (and %llu duplicate or unasked-for)",
                 (unsigned long long)c->sent, (unsigned long long)c->replies,
                 (unsigned long long)c->unmatched);
        finish(c, EXIT_OK);
        return;
    }
    if (!c->waiting) {
        c->waiting = true;
        sk_timer_start(c->reply_timer, c->timeout_ms, 0);
    }
}

static void reply_timeout(sk_timer *t, void *arg)
{
    udp_client *c = arg;
    size_t unsent = sk_dgram_queued_datagrams(c->d);
    if (unsent) {
        msg("%s: %zu datagrams could not be sent within --timeout (%.1f s)", c->name, unsent,
            (double)c->timeout_ms / 1000.0);
        finish(c, EXIT_RUNTIME);
        return;
    }
    /* UDP may lose datagrams: say how many went unanswered, and fail, so a script notices. */
    msg("%s: %llu of %llu datagrams got no reply within --timeout (%.1f s)", c->name,
        (unsigned long long)(c->sent - c->replies), (unsigned long long)c->sent,
        (double)c->timeout_ms / 1000.0);
    finish(c, EXIT_RUNTIME);
}

/* Send one datagram of standard input. False when the socket cannot take it now. */
static bool send_piece(udp_client *c, const uint8_t *p, size_t n)
{
    int rc = sk_dgram_send(c->d, p, n, NULL);
    if (rc == -ENOBUFS)
        return false;
    if (rc < 0) {
        msg("cannot send a datagram of %zu bytes to %s: %s", n, c->name, sk_strerror(rc));
        finish(c, EXIT_RUNTIME);
        return false;
    }
    c->sent++;
    reply_match_sent(&c->match, p, n);
    return true;
}

/* Send what standard input gave, datagram by datagram, while the socket takes more. */
static void send_input(udp_client *c)
{
    size_t off = 0;
    while (off < c->in_len && sk_dgram_writable(c->d)) {
        size_t n = c->in_len - off;
        if (!c->raw) {
            const uint8_t *nl = memchr(c->in + off, '\n', n);
            if (nl)
                n = (size_t)(nl - (c->in + off)) + 1;
            else if (n < c->max_dgram && !c->stdin_done)
                break; /* an unfinished line: wait for the rest */
        }
        if (n > c->max_dgram) {
            if (!c->split_warned)
                log_warn(&c->log,
                         "a line longer than %zu bytes does not fit in one datagram: "
                         "sent in pieces",
                         c->max_dgram);
            c->split_warned = true;
            n = c->max_dgram;
        }
        if (!send_piece(c, c->in + off, n))
            break;
        off += n;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    stdin_interest(c);
    maybe_done(c);
}

static void pump_stdin(udp_client *c)
{
    size_t room = IN_CAP - c->in_len;
    if (room > IN_READ)
        room = IN_READ;
    if (c->raw && room > c->max_dgram)
        room = c->max_dgram; /* one read, one datagram */
    ssize_t n;
    do
        n = read(STDIN_FILENO, c->in + c->in_len, room);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0)
        msg("cannot read standard input: %s", strerror(errno));
    if (n <= 0)
        c->stdin_done = true;
    else
        c->in_len += (size_t)n;
    send_input(c);
}

static void stdin_ready(void *arg)
{
    pump_stdin(arg);
}

/* Read standard input only when what was read before has gone and the socket takes more. */
static void stdin_interest(udp_client *c)
{
    if (c->watch.loop)
        stdin_watch_want(&c->watch, !c->stdin_done && sk_dgram_writable(c->d) &&
                                        IN_CAP - c->in_len >= IN_READ);
}

static void client_datagram(sk_dgram *d, const sk_datagram *dg)
{
    udp_client *c = sk_dgram_data(d);
    if (reply_match_reply(&c->match, dg->data, dg->len)) {
        c->replies++;
    } else {
        c->unmatched++; /* printed all the same: it is data the peer sent */
        log_info(&c->log,
                 "a reply of %zu bytes answers no datagram still waiting (a "
                 "duplicate?): not counted as an answer",
                 dg->len);
    }
    if (dg->truncated)
        log_warn(&c->log, "a reply of %zu bytes was truncated to %zu", dg->size, dg->len);
    write_stdout(dg->data, dg->len);
    maybe_done(c);
}

static void client_error(sk_dgram *d, int err, const sk_addr *peer)
{
    udp_client *c = sk_dgram_data(d);
    if (err == -ECONNREFUSED && !c->is_unix)
        msg("no UDP server at %s: connection refused (port unreachable)", c->plain);
    else if (err == -ECONNREFUSED || err == -ENOENT)
        msg("no Unix datagram server at %s: %s (is the server running?)", c->name,
            sk_strerror(err));
    else
        msg("datagram to %s failed: %s%s", c->name, sk_strerror(err), hint_for(err, c->is_unix, 0));
    finish(c, EXIT_RUNTIME);
}

static void client_drain(sk_dgram *d)
{
    send_input(sk_dgram_data(d));
}

static const sk_dgram_callbacks client_callbacks = {
    .on_datagram = client_datagram, .on_error = client_error, .on_drain = client_drain};

static void open_client(udp_client *c, const char *text)
{
    sk_addrspec spec;
    char err[256];
    if (sk_addr_parse(text, -1, &spec, err, sizeof err) < 0)
        die(EXIT_USAGE, "bad address '%s': %s", text, err);
    if (spec.scheme != SK_SCHEME_UDP && spec.scheme != SK_SCHEME_UNIX_DGRAM)
        die(EXIT_USAGE,
            "'%s' is not a datagram address (write udp://HOST:PORT or "
            "unix-dgram:PATH)",
            text);
    if (!spec.is_unix && spec.host[0] == '\0')
        snprintf(spec.host, sizeof spec.host, "localhost");
    if (!spec.is_unix && spec.port == 0)
        die(EXIT_USAGE, "bad address '%s': port 0 cannot be sent to (use 1-65535)", text);
    sk_addr addrs[16];
    int n = sk_addr_resolve(&spec, 0, addrs, 16);
    if (n < 0)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec.host, sk_strerror(n),
            hint_for(n, false, 0));
    c->is_unix = spec.is_unix;
    sk_dgram_options o = {.max_size = spec.is_unix ? UNIX_MAX_REPLY : 0};
    int rc = -EADDRNOTAVAIL;
    for (int i = 0; i < n; i++) {
        dgram_name(&addrs[i], c->name, sizeof c->name);
        sk_addr_format(&addrs[i], c->plain, sizeof c->plain);
        c->max_dgram = sk_addr_family(&addrs[i]) == AF_INET    ? 65507
                       : sk_addr_family(&addrs[i]) == AF_INET6 ? 65527
                                                               : IN_READ;
        rc = sk_dgram_open(c->loop, NULL, &addrs[i], &o, &client_callbacks, c, &c->d);
        if (rc == 0 || (rc != -EAFNOSUPPORT && rc != -EADDRNOTAVAIL && rc != -ENETUNREACH))
            break;
    }
    if (rc == -ECONNREFUSED)
        die(EXIT_RUNTIME,
            "no Unix datagram server at %s: %s (the socket file is there, but "
            "nothing reads it: is the server running?)",
            c->name, sk_strerror(rc));
    if (rc == -EPROTOTYPE)
        die(EXIT_RUNTIME, "cannot connect to %s: %s (that is a stream socket: use unix:%s)",
            c->name, sk_strerror(rc), spec.path);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot connect to %s: %s%s", c->name, sk_strerror(rc),
            hint_for(rc, spec.is_unix, spec.port));
    log_info(&c->log, "sending to %s", c->name);
}

static void start_stdin(udp_client *c)
{
    stdin_watch_start(&c->watch, c->loop, stdin_ready, c);
    stdin_interest(c);
}

static const struct option udp_options[] = {
    {"timeout", required_argument, NULL, 't'}, {"frame", required_argument, NULL, 'f'},
    {"verbose", no_argument, NULL, 'v'},       {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},          {0},
};

bool connect_is_udp(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strncasecmp(argv[i], "udp://", 6) || !strncasecmp(argv[i], "unix-dgram:", 11))
            return true;
    return false;
}

int connect_udp(int argc, char **argv)
{
    udp_client state = {.timeout_ms = 2000}, *c = &state;
    verbosity v = VERBOSITY_NORMAL;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":vqh", udp_options, NULL)) != -1) {
        switch (ch) {
        case 't': c->timeout_ms = parse_seconds_ms("--timeout", optarg); break;
        case 'f':
            if (strcmp(optarg, "raw") && strcmp(optarg, "line"))
                die(EXIT_USAGE, "--frame: '%s' does not apply to datagrams (use line or raw)",
                    optarg);
            c->raw = !strcmp(optarg, "raw");
            break;
        case 'v': v = VERBOSITY_VERBOSE; break;
        case 'q': v = VERBOSITY_QUIET; break;
        case 'h': fputs(connect_udp_usage, stdout); return EXIT_OK;
        case ':':
            die(EXIT_USAGE, "option '%s' needs a value (see 'sockit connect --help')",
                argv[optind - 1]);
        default:
            die(EXIT_USAGE,
                "option '%s' does not apply to udp:// or unix-dgram: (see "
                "'sockit connect --help')",
                argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        die(EXIT_USAGE, "connect to datagrams takes one ADDRESS: sockit connect udp://HOST:PORT "
                        "or unix-dgram:PATH");
    int rc = sk_loop_new(&c->loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    setup_logging(c->loop, &c->log, v);
    open_client(c, argv[optind]);
    c->in = malloc(IN_CAP);
    if (!c->in || sk_timer_new(c->loop, reply_timeout, c, &c->reply_timer) < 0)
        die(EXIT_RUNTIME, "out of memory");
    start_stdin(c);
    rc = sk_loop_run(c->loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    /* Free everything, so leak checkers see a clean exit. */
    sk_dgram_close(c->d);
    stdin_watch_stop(&c->watch);
    sk_timer_free(c->reply_timer);
    sk_loop_free(c->loop);
    free(c->in);
    return c->exit_status;
}
