/* Messages, hints and option parsing shared by the commands. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

__attribute__((format(printf, 2, 3))) static void emit(const char *prefix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(prefix, fmt, ap);
    va_end(ap);
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
    case -ECONNREFUSED:
        return " (is a server listening there?)";
    case -ETIMEDOUT:
        return " (no answer: is the host up and the port open? raise --timeout to wait longer)";
    case -ENETUNREACH:
    case -EHOSTUNREACH:
        return " (no route to that address from this machine)";
    case SK_ERR_NONAME:
    case SK_ERR_NODATA:
        return " (check the spelling, or use an IP address)";
    case SK_ERR_DNSFAIL:
        return " (the name server did not answer; try again, or use an IP address)";
    case -ENOENT:
        return is_unix ? " (no socket file there: is the server running?)"
                                             : "";
    case -EMFILE:
    case -ENFILE:
        return " (out of file descriptors: raise 'ulimit -n')";
    default:
        return "";
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
        case 'k': case 'K': scale = 1024; end++; break;
        case 'm': case 'M': scale = 1024 * 1024; end++; break;
        case 'g': case 'G': scale = 1024ull * 1024 * 1024; end++; break;
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

/* The library's log sink: one line, already formatted, from the loop's thread. */
static void library_line(sk_loop *loop, sk_log_level level, const char *line, void *arg)
{
    /* Socket steps are printed bare ("accept fd=5 peer=..."), so they read like the seed's
     * step table; warnings and errors carry the program's name. */
    bool bare = level == SK_LOG_TRACE || level == SK_LOG_INFO;
    emit(bare ? "" : "sockit: ", "%s", line);
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

void setup_logging(sk_loop *loop, logger *lg, verbosity v)
{
    lg->level = v;
    sk_log_level max = v == VERBOSITY_QUIET ? SK_LOG_ERROR
                       : v == VERBOSITY_VERBOSE ? SK_LOG_TRACE
                                                : SK_LOG_WARN;
    sk_loop_set_log(loop, max, library_line, NULL);
}
