/* Messages, hints and option parsing shared by the commands. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "cli.h"

/* prefix + the formatted text + newline, as one write(2) of at most LOG_LINE_MAX bytes (see
 * cli.h). errno is kept: callers report it after calling us (write_stdout). */
__attribute__((format(printf, 2, 0))) static void write_line(const char *prefix, const char *fmt,
                                                             va_list ap)
{
    char line[LOG_LINE_MAX];
    int saved = errno;
    size_t len = strlen(prefix);
    if (len > sizeof line / 2)
        len = sizeof line / 2; /* prefixes are short; this only keeps room for the text */
    memcpy(line, prefix, len);
    int n = vsnprintf(line + len, sizeof line - len, fmt, ap);
    if (n < 0) /* an encoding error: say where, rather than print nothing */
        n = snprintf(line + len, sizeof line - len, "(cannot format the message '%s')", fmt);
    len += n > 0 ? (size_t)n : 0;
    if (len > sizeof line - 1) { /* cut: the newline takes the terminating NUL's place */
        len = sizeof line - 1;
        memcpy(line + len - 3, "...", 3);
    }
    line[len++] = '\n';
    /* One call: a retry only follows a call that wrote nothing (interrupted by a signal). */
    while (write(STDERR_FILENO, line, len) < 0 && errno == EINTR)
        continue;
    errno = saved;
}

__attribute__((format(printf, 1, 0))) static void vmsg(const char *fmt, va_list ap)
{
    write_line("sockit: ", fmt, ap);
}

void msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

_Noreturn void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    exit(status);
}

void write_stdout(const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
            poll(&pfd, 1, -1);
            continue;
        }
        if (n < 0) {
            if (errno != EPIPE)
                msg("cannot write to standard output: %s", strerror(errno));
            exit(errno == EPIPE ? EXIT_OK : EXIT_RUNTIME);
        }
        p += n;
        len -= (size_t)n;
    }
}

void spec_name(const sk_addrspec *spec, char *buf, size_t len)
{
    if (spec->is_unix)
        snprintf(buf, len, "unix:%s", spec->path);
    else if (strchr(spec->host, ':'))
        snprintf(buf, len, "[%s]:%u", spec->host, spec->port);
    else
        snprintf(buf, len, "%s:%u", spec->host, spec->port);
}

const char *hint_for(int err, bool is_unix, unsigned port)
{
    bool low_port = !is_unix && port > 0 && port < 1024;
    switch (err) {
    case -EACCES:
    case -EPERM:
        if (is_unix)
            return " (check the directory's permissions, or use a path you own)";
        return low_port ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE; try a port "
                          "above 1024)"
                        : "";
    case -EADDRINUSE:
        return " (another program is listening there: stop it, or pick another port; 0 picks "
               "a free one)";
    case -EADDRNOTAVAIL:
        return " (that address is not on this machine: use 127.0.0.1, ::1, or :PORT for "
               "every interface)";
    case -ECONNREFUSED: return " (is a server listening there?)";
    case -ETIMEDOUT:
        return " (no answer: is the host up and the port open? raise --timeout to wait longer)";
    case -ENETUNREACH:
    case -EHOSTUNREACH: return " (no route to that address from this machine)";
    case SK_ERR_NONAME:
    case SK_ERR_NODATA: return " (check the spelling, or use an IP address)";
    case SK_ERR_DNSFAIL:
        return " (the name server did not answer; try again, or use an IP address)";
    case -ENOENT: return is_unix ? " (no socket file there: is the server running?)" : "";
    case -EMFILE:
    case -ENFILE: return " (out of file descriptors: raise 'ulimit -n')";
    default: return "";
    }
}

uint64_t parse_count(const char *option, const char *text, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    /* Accept the usual size suffixes, so --max-queue 1M reads naturally. */
    uint64_t scale = 1;
    if (end != text && *end && !end[1]) {
        switch (*end) {
        case 'k':
        case 'K':
            scale = 1024;
            end++;
            break;
        case 'm':
        case 'M':
            scale = 1024 * 1024;
            end++;
            break;
        case 'g':
        case 'G':
            scale = 1024ull * 1024 * 1024;
            end++;
            break;
        default: break;
        }
    }
    if (text[0] == '-' || end == text || *end || errno == ERANGE)
        die(EXIT_USAGE, "%s: '%s' is not a whole number (for example %s %llu)", option, text,
            option, (unsigned long long)(min > 1 ? min : 1));
    if (v > max / scale || v * scale < min || v * scale > max)
        die(EXIT_USAGE, "%s: %s is out of range (use %llu to %llu)", option, text,
            (unsigned long long)min, (unsigned long long)max);
    return v * scale;
}

uint64_t parse_seconds_ms(const char *option, const char *text)
{
    char *end;
    errno = 0;
    double s = strtod(text, &end);
    if (end == text || *end || errno == ERANGE || !isfinite(s) || s < 0 || s > 1e7)
        die(EXIT_USAGE, "%s: '%s' is not a number of seconds (for example %s 2.5)", option, text,
            option);
    return (uint64_t)(s * 1000.0 + 0.5);
}

void log_warn(const logger *lg, const char *fmt, ...)
{
    if (lg->level == VERBOSITY_QUIET)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line("sockit: ", fmt, ap);
    va_end(ap);
}

void log_info(const logger *lg, const char *fmt, ...)
{
    if (lg->level != VERBOSITY_VERBOSE)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line("", fmt, ap);
    va_end(ap);
}

void log_notice(const logger *lg, const char *fmt, ...)
{
    if (lg->level == VERBOSITY_QUIET)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line("", fmt, ap);
    va_end(ap);
}

/* Why the library refused a connection, in the words a user reads. */
static void refusal_text(const sk_event *ev, char *buf, size_t len)
{
    switch ((sk_refuse_cause)ev->cause) {
    case SK_REFUSE_MAX_CONNS:
        snprintf(buf, len, "server full (%llu live connections, the limit)",
                 (unsigned long long)ev->limit);
        break;
    case SK_REFUSE_PER_IP:
        snprintf(buf, len,
                 "too many connections from that address (%llu live, the limit per "
                 "address)",
                 (unsigned long long)ev->limit);
        break;
    case SK_REFUSE_DENIED:
        snprintf(buf, len, "address not allowed by the allow / deny lists");
        break;
    case SK_REFUSE_PROXY_UNTRUSTED:
        snprintf(buf, len, "not a trusted proxy (--proxy-from): only proxies may connect");
        break;
    case SK_REFUSE_PROXY_TIMEOUT:
        snprintf(buf, len, "no whole PROXY header within --proxy-timeout");
        break;
    case SK_REFUSE_PROXY_TRUNCATED:
        snprintf(buf, len, "the connection ended inside its PROXY header");
        break;
    case SK_REFUSE_PROXY_BAD_SIGNATURE:
        snprintf(buf, len, "it did not start with a PROXY header (is the proxy sending one?)");
        break;
    case SK_REFUSE_PROXY_TOO_LONG: snprintf(buf, len, "its PROXY header was too long"); break;
    case SK_REFUSE_PROXY_BAD_ADDRESS:
        snprintf(buf, len, "its PROXY header had a malformed address or port");
        break;
    case SK_REFUSE_PROXY_CRC_MISMATCH:
        snprintf(buf, len, "its PROXY v2 header failed its CRC32C check");
        break;
    case SK_REFUSE_PROXY_INVALID: snprintf(buf, len, "its PROXY header was malformed"); break;
    default: snprintf(buf, len, "out of memory"); break;
    }
}

static void log_refused(const logger *lg, const sk_event *ev)
{
    char why[160], who[SK_ADDR_STRLEN + 32] = "", name[SK_ADDR_STRLEN];
    refusal_text(ev, why, sizeof why);
    if (ev->addr) {
        sk_addr_format(ev->addr, name, sizeof name);
        snprintf(who, sizeof who, ev->count == 1 ? " from %s" : " (the last from %s)", name);
    }
    if (ev->count <= 1)
        log_warn(lg, "refused a connection%s: %s", who, why);
    else
        log_warn(lg, "refused %llu connections in the last %.1f s%s: %s",
                 (unsigned long long)ev->count, (double)ev->period_ms / 1000.0, who, why);
}

static void log_paused(const logger *lg, const sk_event *ev)
{
    char why[256];
    snprintf(why, sizeof why,
             "%s; pausing new connections for %llu ms each time (raise the "
             "open-files limit, ulimit -n, or lower the load)",
             sk_strerror(ev->err), (unsigned long long)ev->limit);
    if (ev->count <= 1)
        log_warn(lg, "accept: %s", why);
    else
        log_warn(lg, "accept: paused %llu times in the last %.1f s: %s",
                 (unsigned long long)ev->count, (double)ev->period_ms / 1000.0, why);
}

/* The library's events as the lines of the text log (the commands report the rest of a
 * conn's life themselves, with the names they captured at accept). */
static void log_event(const sk_event *ev, void *arg)
{
    const logger *lg = arg;
    char name[SK_ADDR_STRLEN];
    switch (ev->kind) {
    case SK_EV_TRACE: /* socket steps bare ("accept fd=5 peer=..."), like the seed's table */
    case SK_EV_NOTICE: log_info(lg, "%s", ev->text); break;
    case SK_EV_REFUSED: log_refused(lg, ev); break;
    case SK_EV_ACCEPT_PAUSED: log_paused(lg, ev); break;
    case SK_EV_INPUT_DROPPED:
        if (sk_conn_peer_name(ev->conn, name, sizeof name) < 0)
            snprintf(name, sizeof name, "fd=%d", sk_conn_fd(ev->conn));
        log_warn(lg, "%s: the stream ended inside a frame (%llu bytes dropped)", name,
                 (unsigned long long)ev->bytes_in);
        break;
    default: break;
    }
}

void setup_logging(sk_loop *loop, logger *lg, verbosity v)
{
    lg->level = v;
    sk_loop_set_events(loop, v == VERBOSITY_VERBOSE ? SK_EVENTS_TRACE : 0, log_event, lg);
}

void add_cidr(const char *option, const char *text, sk_cidr **list, size_t *n)
{
    char err[160];
    sk_cidr c;
    if (sk_cidr_parse(text, &c, err, sizeof err) < 0)
        die(EXIT_USAGE, "%s: bad range '%s': %s", option, text, err);
    sk_cidr *grown = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown)
        die(EXIT_RUNTIME, "out of memory");
    grown[(*n)++] = c;
    *list = grown;
}

void listen_or_die(sk_loop *loop, const sk_addrspec *spec, const sk_listen_options *lo,
                   sk_accept_cb cb, void *arg, sk_listener **out, char *bound, size_t len)
{
    char name[SK_ADDR_STRLEN + 128];
    int rc = sk_listener_open_spec(loop, spec, lo, cb, arg, out);
    spec_name(spec, name, sizeof name);
    if (rc == SK_ERR_NONAME || rc == SK_ERR_NODATA || rc == SK_ERR_DNSFAIL)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec->host, sk_strerror(rc),
            hint_for(rc, false, 0));
    if (rc == -ENOENT && spec->is_unix)
        die(EXIT_RUNTIME,
            "cannot listen on %s: the directory does not exist (create it, or "
            "choose a path in an existing directory)",
            name);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot listen on %s: %s%s", name, sk_strerror(rc),
            hint_for(rc, spec->is_unix, spec->port));
    sk_addr a;
    sk_listener_addr(*out, &a);
    sk_addr_format(&a, bound, len);
}

/* Who the peer is, captured now (by the close a reset peer has no address any more), in as
 * few bytes as hold it, for peer_format():
 *   AF_INET   family, port (2), address (4)                  7 bytes
 *   AF_INET6  family, port (2), address (16), scope id (4)  23 bytes
 *   AF_UNIX   family, the fd at accept (4): "unix-client-7"  5 bytes (Unix peers are unnamed) */
size_t peer_capture(sk_conn *c, uint8_t out[PEER_MAX])
{
    sk_addr a = {0};
    if (sk_conn_peer_addr(c, &a) < 0)
        a.ss.ss_family = AF_UNSPEC; /* gone already: named by its fd, as a Unix peer is */
    if (a.ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a.ss;
        out[0] = AF_INET;
        memcpy(out + 1, &in->sin_port, 2);
        memcpy(out + 3, &in->sin_addr, 4);
        return 7;
    }
    if (a.ss.ss_family == AF_INET6 && a.len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&a.ss;
        out[0] = AF_INET6;
        memcpy(out + 1, &in6->sin6_port, 2);
        memcpy(out + 3, &in6->sin6_addr, 16);
        memcpy(out + 19, &in6->sin6_scope_id, 4);
        return 23;
    }
    int fd = sk_conn_fd(c);
    out[0] = AF_UNIX;
    memcpy(out + 1, &fd, 4);
    return 5;
}

void peer_format(const uint8_t *peer, char *buf, size_t len)
{
    sk_addr a = {0};
    if (peer[0] == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&a.ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_port, peer + 1, 2);
        memcpy(&in->sin_addr, peer + 3, 4);
        a.len = sizeof *in;
    } else if (peer[0] == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&a.ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_port, peer + 1, 2);
        memcpy(&in6->sin6_addr, peer + 3, 16);
        memcpy(&in6->sin6_scope_id, peer + 19, 4);
        a.len = sizeof *in6;
    } else {
        int fd;
        memcpy(&fd, peer + 1, 4);
        snprintf(buf, len, "unix-client-%d", fd);
        return;
    }
    sk_addr_format(&a, buf, len);
}

/* "udp://127.0.0.1:5000", "udp://[::1]:5000" or "unix-dgram:/path". */
void dgram_name(const sk_addr *a, char *buf, size_t len)
{
    char tmp[SK_ADDR_STRLEN];
    sk_addr_format(a, tmp, sizeof tmp);
    if (sk_addr_is_unix(a))
        snprintf(buf, len, "unix-dgram:%s", tmp + 5);
    else
        snprintf(buf, len, "udp://%s", tmp);
}

void second_signal_exits(int *signals_seen)
{
    if ((*signals_seen)++ == 0)
        return;
    msg("second signal: exiting at once");
    exit(EXIT_RUNTIME);
}

void log_drain_cutoff(const logger *lg, size_t n, const char *what, uint64_t drain_ms, size_t lost)
{
    log_warn(lg,
             "--drain-timeout: %zu %s%s still open after %.1f s (%zu with undelivered data); "
             "cut off",
             n, what, n == 1 ? "" : "s", (double)drain_ms / 1000.0, lost);
}
