/* sockit connect: standard input to the socket, the socket to standard output, like nc.
 *
 * EOF on standard input half-closes (FIN) and keeps reading until the server closes, so
 * `echo hi | sockit connect HOST PORT` to an echo server prints hi. Standard input is read only
 * while the connection is writable: a slow server slows the reading, memory stays bounded. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char connect_usage[] =
    "usage: sockit connect [ADDRESS | HOST PORT] [options]\n"
    "\n"
    "Connect to ADDRESS; copy standard input to it and what arrives to standard output.\n"
    "With no address and a terminal on standard input, ask for the address and port.\n"
    "At EOF on standard input, half-close (send FIN) and keep printing until the server\n"
    "closes.\n"
    "Datagrams (udp://HOST:PORT, unix-dgram:PATH): each line of standard input is one\n"
    "datagram (--frame raw: each read); replies are printed; after EOF, wait until each\n"
    "datagram has had its reply, at most --timeout (default 2 s). See\n"
    "'sockit connect udp://HOST:PORT --help'.\n"
    "\n"
    "options:\n"
    "      --timeout SECS       give up connecting after SECS (default 10)\n"
    "      --idle-timeout SECS  give up after SECS with nothing sent or received\n"
    "      --close-on-eof       close at once at EOF on standard input\n"
    "\n"
    "TLS (ADDRESS tls://HOST:PORT): the server's certificate chain and name are verified\n"
    "against the system's CAs, and SNI is sent, unless told otherwise.\n"
    "      --ca FILE            trust the CAs in FILE (PEM) instead of the system's\n"
    "      --pin sha256:HEX     accept exactly the certificate with this SHA-256 fingerprint\n"
    "      --insecure           accept any certificate (a warning says so)\n"
    "      --cert FILE          client certificate (PEM), for servers that ask for one\n"
    "      --key FILE           its private key (default: the --cert file)\n"
    "      --sni NAME           the server name to send and verify (default: HOST)\n"
    "      --alpn LIST          protocols to offer, comma-separated "
    "(h2,http/1.1)\n" TLS_CLI_PROTOCOL_HELP PROXY_CLI_SEND_HELP
    "  -v, --verbose            print each socket step\n"
    "  -q, --quiet              print only errors\n"
    "  -h, --help               this help\n"
    "\n"
    "Exit status: 0 the server closed normally, 1 refused, reset, timed out or unknown host,\n"
    "2 usage error.\n";

/* After the server's FIN, standard input is still sent (the FIN ends only the server's
 * direction), until its EOF or until it has been quiet this long: a terminal or an idle pipe
 * then ends the client, as socat's -t does. */
#define AFTER_PEER_EOF_QUIET_MS 500

typedef struct client_state {
    sk_loop *loop;
    logger log;
    sk_conn *conn;
    char name[SK_ADDR_STRLEN];
    sk_addr addrs[16];
    int addr_count, addr_next;
    uint64_t timeout_ms, idle_ms;
    bool close_on_eof;
    proxy_cli proxy; /* --send-proxy */
    bool stdin_done, connected;
    sk_bridge *br;   /* once connected */
    sk_timer *quiet; /* after the server's FIN: standard input quiet for too long */
    sk_tls_ctx *tls;
    char tls_name[256]; /* verified and sent as SNI */
    char tls_error[256];
    int last_error;
    int exit_status;
} client_state;

static void try_next(client_state *st);

/* ---------------------------------------------------------------- connected: the bridge
 * Standard input and output are joined to the connection by a bridge (include/sockit/
 * bridge.h): standard input is read only while the connection takes more, its EOF is our
 * FIN, the server's bytes go to standard output, a reader of standard output that went away
 * ends us quietly. What connect adds: the end after the server's FIN, and the messages. */

/* After the server's FIN: each chunk of standard input restarts the quiet time. */
static void quiet_filter(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len, void *arg)
{
    client_state *st = arg;
    if (data)
        sk_timer_start(st->quiet, AFTER_PEER_EOF_QUIET_MS, 0);
    sk_bridge_forward(br, dir, data, len);
}

static void quiet_fired(sk_timer *t, void *arg)
{
    client_state *st = arg;
    if (!st->br || st->stdin_done)
        return;
    if (!sk_conn_writable(st->conn)) { /* waiting for the server to read, not for stdin */
        sk_timer_start(t, AFTER_PEER_EOF_QUIET_MS, 0);
        return;
    }
    sk_bridge_close(st->br);
}

/* One direction ended: standard input's (B to A) or the server's (A to B). */
static void direction_ended(sk_bridge *br, sk_bridge_dir dir, int reason, void *arg)
{
    client_state *st = arg;
    if (dir == SK_BRIDGE_B_TO_A) {
        st->stdin_done = true;
        if (reason == 0 && st->close_on_eof)
            sk_bridge_close(br);
        return;
    }
    if (reason == 0 && !st->stdin_done) {
        /* The server has finished sending; it may still read. What standard input holds goes
         * on (a 10 MiB upload after a banner and FIN arrives whole); a quiet input ends it. */
        if (!st->quiet && sk_timer_new(st->loop, quiet_fired, st, &st->quiet) < 0) {
            sk_bridge_close(br);
            return;
        }
        sk_timer_start(st->quiet, AFTER_PEER_EOF_QUIET_MS, 0);
        sk_bridge_set_filter(br, SK_BRIDGE_B_TO_A, quiet_filter, st);
    } else if ((reason == SK_ERR_TLS || reason == SK_ERR_TLS_VERIFY) && st->tls) {
        /* TLS 1.3: a server may refuse us (no client certificate) after our handshake ended.
         * The conn is still there while its end is reported: take the detail now. */
        sk_tls_info info;
        sk_tls_describe(st->conn, &info);
        snprintf(st->tls_error, sizeof st->tls_error, "%s", info.error);
    }
}

static void bridge_done(sk_bridge *br, const sk_bridge_result *r, void *arg)
{
    client_state *st = arg;
    int reason = r->a_reason;
    st->br = NULL;
    st->conn = NULL;
    if (reason == -ETIMEDOUT)
        msg("connection to %s: nothing sent or received for %.1f s (--idle-timeout)", st->name,
            (double)st->idle_ms / 1000.0);
    else if (reason == -ECONNRESET && r->b_reason != -EPIPE)
        msg("connection to %s reset by peer", st->name);
    else if ((reason == SK_ERR_TLS || reason == SK_ERR_TLS_VERIFY) && st->tls)
        msg("connection to %s failed: %s: %s", st->name, sk_strerror(reason),
            st->tls_error[0] ? st->tls_error : "no detail");
    else if (reason < 0 && r->b_reason != -EPIPE)
        msg("connection to %s failed: %s", st->name, sk_strerror(reason));
    st->exit_status = reason < 0 ? EXIT_RUNTIME : EXIT_OK;
    /* A reader of standard output that went away (sockit connect | head) is a normal end. */
    if (r->b_reason == -EPIPE) {
        st->exit_status = EXIT_OK;
    } else if (r->b_reason < 0) {
        msg("cannot read standard input or write standard output: %s", sk_strerror(r->b_reason));
        st->exit_status = EXIT_RUNTIME;
    }
    sk_loop_stop(st->loop);
}

/* ---------------------------------------------------------------- connecting */

static void on_connect(sk_conn *c)
{
    client_state *st = sk_conn_data(c);
    st->connected = true;
    log_info(&st->log, "connected to %s", st->name);
    if (st->tls)
        tls_cli_describe(&st->log, c, "server");
    if (st->idle_ms)
        sk_conn_set_idle_timeout(c, st->idle_ms);
    sk_bridge_options o = {.on_end = direction_ended};
    int rc = sk_bridge_join_fds(c, STDIN_FILENO, STDOUT_FILENO, &o, bridge_done, st, &st->br);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot join standard input and output to the connection: %s",
            sk_strerror(rc));
}

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    /* Not called: the bridge takes the conn over at on_connect, before any byte is read. */
}

/* A connect (or its TLS handshake) failed: the next address. */
static void on_close(sk_conn *c, int reason)
{
    client_state *st = sk_conn_data(c);
    st->conn = NULL;
    st->last_error = reason;
    if (reason == SK_ERR_TLS || reason == SK_ERR_TLS_VERIFY) {
        /* The server answered: another address of the same name would not help. */
        sk_tls_info info;
        sk_tls_describe(c, &info);
        snprintf(st->tls_error, sizeof st->tls_error, "%s", info.error);
        st->addr_next = st->addr_count;
    }
    try_next(st);
}

static const sk_conn_callbacks callbacks = {
    .on_connect = on_connect,
    .on_frame = on_frame,
    .on_close = on_close,
};

/* A hint for a failed handshake. Only bytes that are not TLS at all (OpenSSL's "wrong version
 * number", "packet length too long", "http request") suggest a plaintext port; an alert is a
 * real TLS server refusing, and says so. */
static const char *tls_failure_hint(const char *error)
{
    static const char *const plaintext[] = {"wrong version number", "packet length too long",
                                            "http request", "unexpected eof"};
    for (size_t i = 0; i < sizeof plaintext / sizeof plaintext[0]; i++)
        if (strstr(error, plaintext[i]))
            return " (is it a TLS port?)";
    if (strstr(error, "alert"))
        return " (the server refused the handshake: it may need another TLS version, cipher "
               "(--tls-min, --ciphers, --ciphersuites), --alpn protocol or a client certificate)";
    return "";
}

/* Connect to the next resolved address; after the last, report the last failure. */
static void try_next(client_state *st)
{
    while (st->addr_next < st->addr_count) {
        const sk_addr *a = &st->addrs[st->addr_next++];
        sk_addr_format(a, st->name, sizeof st->name);
        int rc = sk_conn_connect(st->loop, a, st->timeout_ms, &callbacks, st, &st->conn);
        if (rc == 0 && st->proxy.send_version) {
            /* Our own addresses, read once TCP is up; before TLS, which handshakes after it. */
            sk_proxy_write_opts o = {.version = st->proxy.send_version,
                                     .command = SK_PROXY_CMD_PROXY,
                                     .transport = SK_PROXY_STREAM,
                                     .crc32c = st->proxy.send_crc};
            rc = sk_proxy_send(st->conn, &o, st->timeout_ms);
        }
        if (rc == 0 && st->tls)
            rc = sk_tls_start(st->conn, st->tls, st->tls_name, st->timeout_ms);
        if (rc == 0)
            return;
        st->last_error = rc;
    }
    int err = st->last_error;
    if (err == SK_ERR_TLS_VERIFY && !strncmp(st->tls_error, "the certificate is for ", 23))
        msg("cannot connect to %s: %s (connect by one of those names, or verify one with "
            "--sni NAME)",
            st->name, st->tls_error);
    else if (err == SK_ERR_TLS_VERIFY)
        msg("cannot connect to %s: %s (use --ca FILE to trust its issuer, or --pin with its "
            "fingerprint)",
            st->name, st->tls_error);
    else if (err == SK_ERR_TLS)
        msg("cannot connect to %s: TLS handshake failed: %s%s", st->name, st->tls_error,
            tls_failure_hint(st->tls_error));
    else if (err == -ETIMEDOUT)
        msg("cannot connect to %s: timed out after %.1f s%s", st->name,
            (double)st->timeout_ms / 1000.0, hint_for(err, false, 0));
    else
        msg("cannot connect to %s: %s%s", st->name, sk_strerror(err),
            hint_for(err, sk_addr_is_unix(&st->addrs[st->addr_count - 1]), 0));
    st->exit_status = EXIT_RUNTIME;
    sk_loop_stop(st->loop);
}

/* The seed client's questions, asked on the terminal. */
static char *ask(const char *question, char *buf, size_t len)
{
    fputs(question, stderr);
    fflush(stderr);
    if (!fgets(buf, (int)len, stdin))
        die(EXIT_USAGE, "no answer to '%s' (standard input ended)", question);
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

/* An answer to the address question that already names the port: HOST:PORT (one colon; an
 * IPv6 address has several), [V6]:PORT, or a scheme such as unix: or tls://. */
static bool is_whole_address(const char *text)
{
    const char *colon = strchr(text, ':');
    if (!colon)
        return false;
    if (!strncmp(text, "unix:", 5) || !strncmp(text, "unix-dgram:", 11) || strstr(text, "://"))
        return true;
    if (text[0] == '[')
        return strstr(text, "]:") != NULL;
    return strchr(colon + 1, ':') == NULL;
}

/* ADDRESS, or HOST PORT, or the answers to the seed's two questions, as one address text. */
static void address_text(int argc, char **argv, char *out, size_t len)
{
    const char *host = NULL, *port = NULL;
    char host_buf[256], port_buf[64];
    if (argc == 1) {
        snprintf(out, len, "%s", argv[0]);
        return;
    }
    if (argc == 2) {
        host = argv[0];
        port = argv[1];
    } else if (argc == 0) {
        if (!isatty(STDIN_FILENO))
            die(EXIT_USAGE, "connect needs an address: sockit connect HOST PORT (it asks for "
                            "one only when standard input is a terminal)");
        host = ask("Enter server address: ", host_buf, sizeof host_buf);
        if (is_whole_address(host)) { /* "localhost:8080" answered at once: no second question */
            snprintf(out, len, "%s", host);
            return;
        }
        port = ask("Enter server port: ", port_buf, sizeof port_buf);
    } else {
        die(EXIT_USAGE, "too many arguments: use sockit connect ADDRESS or HOST PORT");
    }
    bool v6 = strchr(host, ':') && host[0] != '[';
    snprintf(out, len, v6 ? "[%s]:%s" : "%s:%s", host, port);
}

static const struct option long_options[] = {
    {"timeout", required_argument, NULL, 't'},
    {"idle-timeout", required_argument, NULL, 'i'},
    {"close-on-eof", no_argument, NULL, 'c'},
    {"ca", required_argument, NULL, 'A'},
    {"pin", required_argument, NULL, 'P'},
    {"insecure", no_argument, NULL, 'k'},
    {"cert", required_argument, NULL, 'C'},
    {"key", required_argument, NULL, 'K'},
    {"sni", required_argument, NULL, 'S'},
    {"alpn", required_argument, NULL, 'L'},
    TLS_CLI_PROTOCOL_OPTIONS,
    PROXY_CLI_SEND_OPTION,
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

static void resolve(client_state *st, const char *text, const tls_cli *tls)
{
    sk_addrspec spec;
    char err[256];
    if (sk_addr_parse(text, -1, &spec, err, sizeof err) < 0)
        die(EXIT_USAGE, "bad address '%s': %s", text, err);
    if (spec.scheme == SK_SCHEME_UDP)
        die(EXIT_USAGE, "'%s': udp:// is not supported yet (use tcp:// or unix:)", text);
    if (spec.scheme == SK_SCHEME_TLS) {
        tls_cli_client_ctx(tls, &st->tls);
        const char *name = tls->sni ? tls->sni : spec.host;
        snprintf(st->tls_name, sizeof st->tls_name, "%s", name[0] ? name : "localhost");
    } else if (tls_cli_any(tls)) {
        die(EXIT_USAGE, "TLS options need a tls:// address (sockit connect tls://%s ...)", text);
    }
    if (!spec.is_unix && spec.host[0] == '\0')
        snprintf(spec.host, sizeof spec.host, "localhost");
    if (!spec.is_unix && spec.port == 0)
        die(EXIT_USAGE, "bad address '%s': port 0 cannot be connected to (use 1-65535)", text);
    int n = sk_addr_resolve(&spec, 0, st->addrs, sizeof st->addrs / sizeof st->addrs[0]);
    if (n < 0)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec.host, sk_strerror(n),
            hint_for(n, false, 0));
    st->addr_count = n;
}

int cmd_connect(int argc, char **argv)
{
    client_state st = {.timeout_ms = 10000};
    verbosity v = VERBOSITY_NORMAL;
    tls_cli tls = {0};
    if (connect_is_udp(argc, argv))
        return connect_udp(argc, argv); /* udp.c */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":vqh", long_options, NULL)) != -1) {
        switch (ch) {
        case 't': st.timeout_ms = parse_seconds_ms("--timeout", optarg); break;
        case 'i': st.idle_ms = parse_seconds_ms("--idle-timeout", optarg); break;
        case 'c': st.close_on_eof = true; break;
        case 'A': tls.ca = optarg; break;
        case 'P': tls.pin = optarg; break;
        case 'k': tls.insecure = true; break;
        case 'C': tls.cert = optarg; break;
        case 'K': tls.key = optarg; break;
        case 'S': tls.sni = optarg; break;
        case 'L': tls.alpn = optarg; break;
        case OPT_TLS_CIPHERS:
        case OPT_TLS_SUITES:
        case OPT_TLS_MIN: tls_cli_protocol_option(&tls, ch, optarg); break;
        case OPT_SEND_PROXY: proxy_cli_option(&st.proxy, ch, optarg); break;
        case 'v': v = VERBOSITY_VERBOSE; break;
        case 'q': v = VERBOSITY_QUIET; break;
        case 'h': fputs(connect_usage, stdout); return EXIT_OK;
        case ':':
            die(EXIT_USAGE, "option '%s' needs a value (see 'sockit connect --help')",
                argv[optind - 1]);
        default:
            die(EXIT_USAGE, "unknown option '%s' (see 'sockit connect --help')", argv[optind - 1]);
        }
    }
    char text[512];
    address_text(argc - optind, argv + optind, text, sizeof text);
    resolve(&st, text, &tls);
    int rc = sk_loop_new(&st.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    setup_logging(st.loop, &st.log, v);
    try_next(&st);
    rc = sk_loop_run(st.loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    /* Free everything, so leak checkers see a clean exit. */
    if (st.conn && !st.br)
        sk_conn_abort(st.conn);
    sk_timer_free(st.quiet);
    sk_loop_free(st.loop);
    sk_tls_ctx_free(st.tls);
    return st.exit_status;
}
