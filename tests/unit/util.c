/* Shared helpers for the unit tests; see util.h. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- time and waiting ---- */

uint64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool run_until_fn(sk_loop *loop, bool (*done)(void *arg), void *arg, int timeout_ms)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    while (!done(arg)) {
        uint64_t now = util_now_ms();
        if (now >= deadline)
            break;
        uint64_t left = deadline - now;
        /* short waits: done() may depend on things outside the loop (a child, a raw socket) */
        sk_loop_run_once(loop, left < 20 ? (int)left : 20);
    }
    return done(arg);
}

static void run_for_fired(sk_timer *timer, void *arg)
{
    *(bool *)arg = true;
}

void run_for(sk_loop *loop, int ms)
{
    bool fired = false;
    sk_timer *t = NULL;
    if (sk_timer_new(loop, run_for_fired, &fired, &t) != 0) {
        test_fail(__FILE__, __LINE__, "sk_timer_new in run_for");
        return;
    }
    sk_timer_start(t, (uint64_t)ms, 0);
    run_until(loop, &fired, ms + 5000);
    sk_timer_free(t);
}

/* ---- raw sockets ---- */

int set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

static int loopback_bound(int family, sk_addr *out)
{
    int rc = sk_addr_from_ip(out, family == AF_INET6 ? "::1" : "127.0.0.1", 0);
    if (rc < 0)
        return rc;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (const struct sockaddr *)&out->ss, out->len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    out->len = sizeof out->ss;
    if (getsockname(fd, (struct sockaddr *)&out->ss, &out->len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int raw_listen(int family, int backlog, sk_addr *out)
{
    int fd = loopback_bound(family, out);
    if (fd < 0)
        return fd;
    if (listen(fd, backlog) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int raw_bind_only(sk_addr *out)
{
    return loopback_bound(AF_INET, out);
}

int raw_connect(const sk_addr *addr)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    set_nonblock(fd, true);
    return fd;
}

int raw_connect_nb(const sk_addr *addr)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 && errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

size_t fionread(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) < 0 || n < 0)
        return 0;
    return (size_t)n;
}

static void pump(sk_loop *loop, int fd, short events)
{
    if (loop) {
        sk_loop_run_once(loop, 5);
    } else {
        struct pollfd p = {.fd = fd, .events = events};
        poll(&p, 1, 5);
    }
}

size_t raw_recv(sk_loop *loop, int fd, void *buf, size_t want, int timeout_ms, int *end)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    size_t got = 0;
    *end = RAW_GOT;
    while (got < want) {
        ssize_t r = recv(fd, (char *)buf + got, want - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0) {
            *end = RAW_EOF;
            return got;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            *end = -errno;
            return got;
        }
        if (util_now_ms() >= deadline) {
            *end = -ETIMEDOUT;
            return got;
        }
        pump(loop, fd, POLLIN);
    }
    return got;
}

int raw_wait_end(sk_loop *loop, int fd, int timeout_ms, size_t *extra)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    char buf[4096];
    if (extra)
        *extra = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) {
            if (extra)
                *extra += (size_t)r;
            continue;
        }
        if (r == 0)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (util_now_ms() >= deadline)
            return -ETIMEDOUT;
        pump(loop, fd, POLLIN);
    }
}

int raw_send_all(sk_loop *loop, int fd, const void *buf, size_t len, int timeout_ms)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    size_t sent = 0;
    while (sent < len) {
        ssize_t r = send(fd, (const char *)buf + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            sent += (size_t)r;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (util_now_ms() >= deadline)
            return -ETIMEDOUT;
        pump(loop, fd, POLLOUT);
    }
    return 0;
}

void fill_pattern(unsigned char *buf, size_t len, size_t offset)
{
    for (size_t i = 0; i < len; i++) {
        size_t k = offset + i;
        buf[i] = (unsigned char)((k * 131u + (k >> 9) * 7u + 3u) & 0xffu);
    }
}

size_t check_pattern(const unsigned char *buf, size_t len, size_t offset)
{
    for (size_t i = 0; i < len; i++) {
        size_t k = offset + i;
        if (buf[i] != (unsigned char)((k * 131u + (k >> 9) * 7u + 3u) & 0xffu))
            return i;
    }
    return len;
}

size_t put_len32(unsigned char *dst, const void *payload, size_t n)
{
    dst[0] = (unsigned char)(n >> 24);
    dst[1] = (unsigned char)(n >> 16);
    dst[2] = (unsigned char)(n >> 8);
    dst[3] = (unsigned char)n;
    if (n && payload)
        memcpy(dst + 4, payload, n);
    return 4 + n;
}

/* ---- child processes ---- */

pid_t child_start(int (*fn)(void *arg, int to_parent), void *arg, int *from_child)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(p[0]);
        close(p[1]);
        return rc;
    }
    if (pid == 0) {
        close(p[0]);
        int rc = fn(arg, p[1]);
        _exit(rc & 0xff);
    }
    close(p[1]);
    set_nonblock(p[0], true);
    *from_child = p[0];
    return pid;
}

int child_read(int fd, void *buf, size_t len, int timeout_ms)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return -1;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        uint64_t now = util_now_ms();
        if (now >= deadline)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, (int)(deadline - now));
    }
    return 0;
}

int child_wait(pid_t pid, int timeout_ms, int *signo)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return -1;
        if (util_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (signo)
        *signo = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return -2;
}

/* ---- tconn ---- */

static tconn *tconn_of(sk_conn *c)
{
    return (tconn *)sk_conn_data(c);
}

static bool tconn_alive(tconn *t)
{
    if (t->closed) {
        t->late_calls++;
        test_fail(__FILE__, __LINE__, "a conn callback ran after on_close");
        return false;
    }
    return true;
}

static void tconn_on_connect(sk_conn *c)
{
    tconn *t = tconn_of(c);
    if (!tconn_alive(t))
        return;
    t->connects++;
    t->connected = true;
    if (t->close_on_connect) {
        int rc = sk_conn_write(c, "x\n", 2);
        CHECK(rc == 0);
        sk_conn_close(c);
    }
}

static void tconn_append(tconn *t, const void *data, size_t len)
{
    if (t->len + len > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + len)
            cap *= 2;
        unsigned char *p = realloc(t->data, cap);
        if (!p)
            abort();
        t->data = p;
        t->cap = cap;
    }
    if (len)
        memcpy(t->data + t->len, data, len);
    t->len += len;
    if (t->nframes == t->ends_cap) {
        size_t cap = t->ends_cap ? t->ends_cap * 2 : 64;
        size_t *p = realloc(t->ends, cap * sizeof *p);
        if (!p)
            abort();
        t->ends = p;
        t->ends_cap = cap;
    }
    t->ends[t->nframes++] = t->len;
}

static void tconn_on_frame(sk_conn *c, const void *data, size_t len)
{
    tconn *t = tconn_of(c);
    if (!tconn_alive(t))
        return;
    tconn_append(t, data, len);
    if (t->echo) {
        int rc = sk_conn_write_frame(c, data, len);
        CHECK(rc == 0);
    }
    if (t->close_at && t->nframes == t->close_at) {
        sk_conn_close(c);
        t->write_after_close = sk_conn_write(c, "x", 1);
    }
    if (t->abort_at && t->nframes == t->abort_at)
        sk_conn_abort(c);
    if (t->pause_at && t->nframes == t->pause_at)
        sk_conn_pause_reading(c);
}

static void tconn_on_eof(sk_conn *c)
{
    tconn *t = tconn_of(c);
    if (!tconn_alive(t))
        return;
    t->eofs++;
    t->eof = true;
    if (t->close_on_eof)
        sk_conn_close(c);
}

static void tconn_on_drain(sk_conn *c)
{
    tconn *t = tconn_of(c);
    if (!tconn_alive(t))
        return;
    t->drains++;
    t->drained = true;
}

static void tconn_on_close(sk_conn *c, int reason)
{
    tconn *t = tconn_of(c);
    if (t->closes != 0)
        test_fail(__FILE__, __LINE__, "on_close called more than once");
    t->closes++;
    t->reason = reason;
    t->closed = true;
    t->conn = NULL;
}

const sk_conn_callbacks tconn_cbs = {
    .on_connect = tconn_on_connect,
    .on_frame = tconn_on_frame,
    .on_eof = tconn_on_eof,
    .on_drain = tconn_on_drain,
    .on_close = tconn_on_close,
};

const sk_conn_callbacks tconn_cbs_no_eof = {
    .on_connect = tconn_on_connect,
    .on_frame = tconn_on_frame,
    .on_eof = NULL,
    .on_drain = tconn_on_drain,
    .on_close = tconn_on_close,
};

void tconn_init(tconn *t)
{
    memset(t, 0, sizeof *t);
    t->write_after_close = 1; /* "not measured" */
}

void tconn_attach(tconn *t, sk_conn *c, const sk_conn_callbacks *cbs)
{
    t->conn = c;
    sk_conn_set_data(c, t);
    sk_conn_set_callbacks(c, cbs);
}

bool tconn_frame_is(const tconn *t, size_t i, const void *data, size_t len)
{
    if (i >= t->nframes)
        return false;
    size_t start = i ? t->ends[i - 1] : 0;
    size_t flen = t->ends[i] - start;
    return flen == len && (len == 0 || memcmp(t->data + start, data, len) == 0);
}

bool tconn_frame_is_str(const tconn *t, size_t i, const char *s)
{
    return tconn_frame_is(t, i, s, strlen(s));
}

void tconn_finish(sk_loop *loop, tconn *t)
{
    if (t->conn && !t->closed) {
        sk_conn_abort(t->conn);
        run_until(loop, &t->closed, 5000);
        if (!t->closed)
            test_fail(__FILE__, __LINE__, "on_close did not follow sk_conn_abort");
    }
    free(t->data);
    free(t->ends);
    t->data = NULL;
    t->ends = NULL;
    t->len = t->cap = t->nframes = t->ends_cap = 0;
}

/* ---- tserver ---- */

static void sink_frame(sk_conn *c, const void *data, size_t len)
{
}

static void sink_close(sk_conn *c, int reason)
{
}

static const sk_conn_callbacks sink_cbs = {.on_frame = sink_frame, .on_close = sink_close};

static void tserver_on_accept(sk_listener *l, sk_conn *c)
{
    tserver *s = sk_listener_data(l);
    if (s->naccepted >= TSERVER_MAX) {
        test_fail(__FILE__, __LINE__, "tserver: more conns than TSERVER_MAX");
        sk_conn_set_callbacks(c, &sink_cbs);
        sk_conn_abort(c);
        return;
    }
    tconn *t = &s->conns[s->naccepted++];
    tconn_init(t);
    t->echo = s->echo;
    t->close_on_eof = s->close_on_eof;
    tconn_attach(t, c, s->cbs);
    if (s->kind != SK_FRAME_RAW || s->max) {
        int rc = sk_conn_set_framing(c, s->kind, s->max);
        CHECK(rc == 0);
    }
    if (s->idle_ms) {
        int rc = sk_conn_set_idle_timeout(c, s->idle_ms);
        CHECK(rc == 0);
    }
    if (s->pause)
        sk_conn_pause_reading(c);
}

void tserver_init(tserver *s, sk_loop *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->kind = SK_FRAME_LINE;
    s->cbs = &tconn_cbs;
    for (int i = 0; i < TSERVER_MAX; i++)
        tconn_init(&s->conns[i]);
}

int tserver_listen(tserver *s, const sk_addr *bind_addr, const sk_listen_options *opts)
{
    sk_addr any;
    if (!bind_addr) {
        int rc = sk_addr_from_ip(&any, "127.0.0.1", 0);
        if (rc < 0)
            return rc;
        bind_addr = &any;
    }
    int rc = sk_listener_open(s->loop, bind_addr, opts, tserver_on_accept, s, &s->l);
    if (rc < 0) {
        s->l = NULL;
        return rc;
    }
    return sk_listener_addr(s->l, &s->addr);
}

typedef struct {
    tserver *s;
    int n;
} accept_wait;

static bool accepted_enough(void *arg)
{
    accept_wait *w = arg;
    return w->s->naccepted >= w->n;
}

bool tserver_wait_accept(tserver *s, int n, int timeout_ms)
{
    accept_wait w = {s, n};
    return run_until_fn(s->loop, accepted_enough, &w, timeout_ms);
}

void tserver_close(tserver *s)
{
    for (int i = 0; i < s->naccepted; i++)
        tconn_finish(s->loop, &s->conns[i]);
    if (s->l) {
        sk_listener_close(s->l);
        /* one iteration for whatever the close left to the loop (see
         * listener_close_then_loop_free_at_once for the case without it) */
        sk_loop_run_once(s->loop, 0);
    }
    s->l = NULL;
}
