/* What the command's files share: messages, exit codes, option helpers. */
#ifndef SOCKIT_CLI_H
#define SOCKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sockit/sockit.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Every line the command writes on stderr (msg, die, log_*, the library's trace) is formatted
 * into one buffer of at most LOG_LINE_MAX bytes and written with one write(2): stderr is
 * unbuffered, so fprintf of prefix, text and newline could be three writes, and lines from two
 * threads (or two processes on one pipe; PIPE_BUF is 4096) could interleave. A longer line is
 * cut and ends in "...", never split. */
#define LOG_LINE_MAX 4096

/* "sockit: " + message + newline on stderr. */
void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* msg(), then exit with status. */
_Noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What to tell a user who hit err on an address, as " (hint)", or "" when we know no better. */
const char *hint_for(int err, bool is_unix, unsigned port);
/* The address as the user meant it: "127.0.0.1:80", "[::1]:80", "unix:/path". */
void spec_name(const sk_addrspec *spec, char *buf, size_t len);

/* Write all of data to standard output, waiting if it is non-blocking. A reader that went away
 * (sockit connect | head) ends the program quietly with status 0. */
void write_stdout(const void *data, size_t len);

/* --allow/--deny: add the range text to *list (exit 2 naming option on a bad one). */
void add_cidr(const char *option, const char *text, sk_cidr **list, size_t *n);
/* Open a listener on spec or exit 1 with a message naming the address and the fix; bound gets
 * the address really bound ("127.0.0.1:40123"). */
void listen_or_die(sk_loop *loop, const sk_addrspec *spec, const sk_listen_options *lo,
                   sk_accept_cb cb, void *arg, sk_listener **out, char *bound, size_t len);

/* Standard input on the loop (stdin_watch.c): ready(arg) is called while reading is wanted and
 * input may be there (a pipe or terminal is watched; a regular file, which epoll refuses, is
 * pumped from a timer). The caller reads STDIN_FILENO itself. */
typedef struct stdin_watch {
    sk_loop *loop;
    void (*ready)(void *arg);
    void *arg;
    sk_timer *file_timer; /* a regular file */
    bool is_file, registered, watching;
} stdin_watch;
/* Start watching, wanting input; then say what is wanted (exit 1 with a message if standard
 * input cannot be watched). */
void stdin_watch_start(stdin_watch *w, sk_loop *loop, void (*ready)(void *arg), void *arg);
void stdin_watch_want(stdin_watch *w, bool want);
void stdin_watch_stop(stdin_watch *w);

/* A peer's address kept in as few bytes as hold it (7 for IPv4, 23 for IPv6, 5 for a Unix
 * peer, named by its fd), captured at accept: by its close a reset peer has no address any
 * more. peer_capture() returns the bytes used. */
#define PEER_MAX 23
size_t peer_capture(sk_conn *c, uint8_t out[PEER_MAX]);
/* "127.0.0.1:50312", "[::1]:40112", or "unix-client-7". */
void peer_format(const uint8_t *peer, char *buf, size_t len);

/* "udp://127.0.0.1:5000", "udp://[::1]:5000" or "unix-dgram:/path", as serve prints them. */
void dgram_name(const sk_addr *a, char *buf, size_t len);

/* Parse option values; on bad input they exit with status 2 and a message naming option. */
uint64_t parse_count(const char *option, const char *text, uint64_t min, uint64_t max);
/* Seconds, with a fraction allowed ("0.5"); returns milliseconds. */
uint64_t parse_seconds_ms(const char *option, const char *text);

/* Verbosity: -q errors only, default warnings, -v also each socket step. */
typedef enum { VERBOSITY_QUIET, VERBOSITY_NORMAL, VERBOSITY_VERBOSE } verbosity;
/* What a command shows at its verbosity. Owned by the command and reached through the objects
 * it makes (a server, a client's state), never a global: two servers in one process may each
 * have their own. */
typedef struct logger {
    verbosity level;
} logger;
/* Set lg to v, and send the loop's own log (socket steps, library warnings) to stderr at v. */
void setup_logging(sk_loop *loop, logger *lg, verbosity v);
/* "sockit: " + message, unless -q. */
void log_warn(const logger *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message as it is, with -v only. */
void log_info(const logger *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message as it is, unless -q: lines people and scripts read ("listening on ADDR"). */
void log_notice(const logger *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Count a SIGINT/SIGTERM; the second one exits at once with status 1. */
void second_signal_exits(int *signals_seen);
/* The --drain-timeout line: n clients or pairs (what) cut off, lost of them with data. */
void log_drain_cutoff(const logger *lg, size_t n, const char *what, uint64_t drain_ms, size_t lost);

/* TLS options shared by serve and connect (tls_cli.c). */
typedef struct tls_cli {
    const char *cert, *key, *ca, *pin, *sni, *alpn;
    const char *ciphers, *ciphersuites, *min_version; /* --ciphers --ciphersuites --tls-min */
    bool insecure;
} tls_cli;
/* The protocol options serve and connect share: their getopt codes, table entries and help. */
enum { OPT_TLS_CIPHERS = 0x200, OPT_TLS_SUITES, OPT_TLS_MIN };
/* A list of table rows, which clang-format would indent as one expression. */
// clang-format off
#define TLS_CLI_PROTOCOL_OPTIONS                                                                   \
    {"ciphers", required_argument, NULL, OPT_TLS_CIPHERS},                                         \
    {"ciphersuites", required_argument, NULL, OPT_TLS_SUITES},                                     \
    {"tls-min", required_argument, NULL, OPT_TLS_MIN}
// clang-format on
#define TLS_CLI_PROTOCOL_HELP                                                                      \
    "      --tls-min VERSION    lowest protocol version: 1.2 (default) or 1.3\n"                   \
    "      --ciphers LIST       TLS 1.2 ciphers, OpenSSL syntax (default: forward-secret\n"        \
    "                           AEAD only: ECDHE+AESGCM:ECDHE+CHACHA20)\n"                         \
    "      --ciphersuites LIST  TLS 1.3 suites, colon-separated (default: OpenSSL's)\n"
/* Takes one of OPT_TLS_*: true if ch was one of them. */
bool tls_cli_protocol_option(tls_cli *t, int ch, const char *arg);
/* Some TLS option was given (for "TLS options need a tls:// address"). */
bool tls_cli_any(const tls_cli *t);
/* Make the context or exit with a message; the server prints the ephemeral fingerprint. */
void tls_cli_server_ctx(const tls_cli *t, const logger *lg, sk_tls_ctx **out);
void tls_cli_client_ctx(const tls_cli *t, sk_tls_ctx **out);
/* With -v: protocol, cipher, the peer's certificate and whether it was verified. */
void tls_cli_describe(const logger *lg, sk_conn *c, const char *who);

/* PROXY protocol options (proxy_cli.c): receiving on serve and relay, sending on relay and
 * connect. */
typedef struct proxy_cli {
    bool accept;   /* --accept-proxy */
    sk_cidr *from; /* --proxy-from */
    size_t nfrom;
    uint64_t timeout_ms; /* --proxy-timeout; 0: the library's 3 s */
    int send_version;    /* --send-proxy v1|v2: 1 or 2; 0 none */
    bool send_crc;       /* --send-proxy v2,crc32c */
} proxy_cli;
enum { OPT_ACCEPT_PROXY = 0x300, OPT_PROXY_FROM, OPT_PROXY_TIMEOUT, OPT_SEND_PROXY };
// clang-format off
#define PROXY_CLI_ACCEPT_OPTIONS                                                                   \
    {"accept-proxy", no_argument, NULL, OPT_ACCEPT_PROXY},                                         \
    {"proxy-from", required_argument, NULL, OPT_PROXY_FROM},                                       \
    {"proxy-timeout", required_argument, NULL, OPT_PROXY_TIMEOUT}
#define PROXY_CLI_SEND_OPTION {"send-proxy", required_argument, NULL, OPT_SEND_PROXY}
// clang-format on
#define PROXY_CLI_ACCEPT_HELP                                                                      \
    "PROXY protocol (behind HAProxy, nginx, a cloud load balancer):\n"                             \
    "      --accept-proxy       every connection starts with a PROXY v1 or v2 header; its\n"       \
    "                           client address is the one logged, limited and shown\n"             \
    "      --proxy-from CIDR    only these sources (the proxies) may connect; repeatable\n"        \
    "      --proxy-timeout SECS  close a connection whose header is not in by then (default 3)\n"
#define PROXY_CLI_SEND_HELP                                                                        \
    "      --send-proxy VERSION  start with a PROXY header: v1, v2 or v2,crc32c\n"
/* Takes one of OPT_*PROXY*: true if ch was one of them (bad values exit 2). */
bool proxy_cli_option(proxy_cli *p, int ch, const char *arg);
/* Options that need --accept-proxy without it: exit 2. */
void proxy_cli_check(const proxy_cli *p);
void proxy_cli_listen(const proxy_cli *p, sk_listen_options *lo);
void proxy_cli_free(proxy_cli *p);

/* Datagrams (udp.c): the udp:// and unix-dgram: addresses of serve and connect. */
struct server_options;
/* serve udp:// or unix-dgram: with mode until a signal; the exit status. */
int serve_udp(const sk_addrspec *spec, const char *mode, const struct server_options *opt,
              verbosity v);
bool connect_is_udp(int argc, char **argv);
int connect_udp(int argc, char **argv);

int cmd_serve(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_relay(int argc, char **argv); /* relay.c */

#endif
