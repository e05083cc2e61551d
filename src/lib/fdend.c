/* A descriptor end: one descriptor read, another written (standard input and output), on the
 * loop, with the same manners as a conn: reading only while wanted, a bounded output queue with
 * watermarks, a close that delivers what is queued first. bridge.c joins one to a conn
 * (sk_bridge_join_fds). Private: fdend.h.
 *
 * The descriptors are the caller's: they are never closed and their flags never changed (a
 * terminal's or a pipe's open file is shared with other processes, and O_NONBLOCK set on it
 * would surprise them). So a write to a blocking output may wait for its reader, as `cat` does;
 * a regular file, which epoll refuses, is read from a timer that fires while reading is
 * wanted. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdend.h"

#define OUT_HIGH (64 * 1024)
#define OUT_LOW (16 * 1024)
#define OUT_LIMIT (1024 * 1024)

struct sk__fdend {
    sk_loop *loop;
    const sk__fdend_hooks *hooks;
    void *arg;
    int in_fd, out_fd;
    sk_timer *in_timer; /* in_fd is a regular file */
    bool in_watched, in_wanted, in_done;
    bool out_watched, above_high, shut_wanted, closing, ended;
    bool sigpipe_ignored; /* the program ignores SIGPIPE: a plain write() is safe */
    uint8_t *q;           /* output the descriptor did not take yet */
    size_t q_head, q_len, q_cap;
};

static void end_now(sk__fdend *e, int reason)
{
    if (e->ended)
        return;
    e->ended = true;
    e->in_wanted = false;
    if (e->in_watched)
        sk_loop_watch_modify(e->loop, e->in_fd, 0);
    if (e->in_timer)
        sk_timer_stop(e->in_timer);
    if (e->out_watched)
        sk_loop_watch_modify(e->loop, e->out_fd, 0);
    e->hooks->on_end(e->arg, reason);
}

/* ---------------------------------------------------------------- input */

static void read_input(sk__fdend *e)
{
    if (!e->in_wanted || e->in_done || e->ended)
        return;
    uint8_t *buf = sk__loop_read_buf(e->loop);
    ssize_t n;
    do
        n = read(e->in_fd, buf, SK__READ_BUF);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0) {
        end_now(e, -errno);
        return;
    }
    if (n == 0) {
        e->in_done = true;
        sk__fdend_want_input(e, false);
        e->hooks->on_eof(e->arg);
        return;
    }
    e->hooks->on_data(e->arg, buf, (size_t)n);
    if (e->in_timer && e->in_wanted && !e->in_done && !e->ended)
        sk_timer_start(e->in_timer, 0, 0); /* a file: the next chunk on the next iteration */
}

static void in_ready(sk_loop *loop, int fd, unsigned events, void *arg)
{
    read_input(arg);
}

static void in_timer_fired(sk_timer *t, void *arg)
{
    read_input(arg);
}

void sk__fdend_want_input(sk__fdend *e, bool want)
{
    want = want && !e->in_done && !e->ended;
    if (want == e->in_wanted)
        return;
    e->in_wanted = want;
    if (e->in_timer) {
        if (want)
            sk_timer_start(e->in_timer, 0, 0);
        else
            sk_timer_stop(e->in_timer);
    } else if (e->in_watched) {
        sk_loop_watch_modify(e->loop, e->in_fd, want ? SK_READABLE : 0);
    }
}

/* ---------------------------------------------------------------- output */

static void out_ready(sk_loop *loop, int fd, unsigned events, void *arg);

/* A write to a pipe whose reader is gone raises SIGPIPE, which would kill a program that did
 * not ignore it: a library must not. Sockets have MSG_NOSIGNAL; for a descriptor the signal is
 * blocked for the call and, if the call raised it, taken back before it is unblocked. */
static ssize_t write_quietly(const sk__fdend *e, const void *buf, size_t len)
{
    if (e->sigpipe_ignored)
        return write(e->out_fd, buf, len);
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    ssize_t n = write(e->out_fd, buf, len);
    int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        struct timespec now = {0, 0};
        sigtimedwait(&pipe_only, NULL, &now);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

/* Write what is queued: 0, or a failure code. */
static int flush(sk__fdend *e)
{
    while (e->q_len) {
        ssize_t n = write_quietly(e, e->q + e->q_head, e->q_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            return -errno;
        e->q_head += (size_t)n;
        e->q_len -= (size_t)n;
    }
    if (e->q_len == 0)
        e->q_head = 0;
    bool want_out = e->q_len > 0;
    if (want_out && !e->out_watched) {
        int rc = sk_loop_watch(e->loop, e->out_fd, SK_WRITABLE, out_ready, e);
        if (rc < 0)
            return rc;
        e->out_watched = true;
    } else if (e->out_watched) {
        sk_loop_watch_modify(e->loop, e->out_fd, want_out ? SK_WRITABLE : 0);
    }
    return 0;
}

/* After progress: drain and the end of a shutdown or close. */
static void after_flush(sk__fdend *e)
{
    if (e->above_high && e->q_len <= OUT_LOW) {
        e->above_high = false;
        e->hooks->on_drain(e->arg);
    }
    if (e->q_len == 0 && e->closing)
        end_now(e, 0);
}

static void out_ready(sk_loop *loop, int fd, unsigned events, void *arg)
{
    sk__fdend *e = arg;
    if (e->ended)
        return;
    int rc = flush(e);
    if (rc < 0)
        end_now(e, rc);
    else
        after_flush(e);
}

int sk__fdend_write(sk__fdend *e, const void *data, size_t len)
{
    if (e->ended || e->closing || e->shut_wanted)
        return -EPIPE;
    if (e->q_len + len > OUT_LIMIT)
        return -ENOBUFS;
    if (e->q_head + e->q_len + len > e->q_cap) {
        if (e->q_head) {
            memmove(e->q, e->q + e->q_head, e->q_len);
            e->q_head = 0;
        }
        if (e->q_len + len > e->q_cap) {
            size_t cap = e->q_cap ? e->q_cap : 4096;
            while (cap < e->q_len + len)
                cap *= 2;
            uint8_t *q = realloc(e->q, cap);
            if (!q)
                return -ENOMEM;
            e->q = q;
            e->q_cap = cap;
        }
    }
    memcpy(e->q + e->q_head + e->q_len, data, len);
    e->q_len += len;
    int rc = flush(e);
    if (rc < 0) {
        end_now(e, rc);
        return rc;
    }
    if (e->q_len > OUT_HIGH)
        e->above_high = true;
    return 0;
}

bool sk__fdend_writable(const sk__fdend *e)
{
    return !e->ended && !e->closing && !e->shut_wanted && !e->above_high;
}

void sk__fdend_shutdown(sk__fdend *e)
{
    e->shut_wanted = true; /* a descriptor has no FIN: no more output is all it means */
}

void sk__fdend_close(sk__fdend *e, bool at_once)
{
    if (e->ended)
        return;
    e->closing = true;
    sk__fdend_want_input(e, false);
    if (at_once || e->q_len == 0)
        end_now(e, 0);
}

/* ---------------------------------------------------------------- life */

int sk__fdend_open(sk_loop *loop, int in_fd, int out_fd, const sk__fdend_hooks *hooks, void *arg,
                   sk__fdend **out)
{
    if (in_fd == out_fd || in_fd < 0 || out_fd < 0)
        return -EINVAL;
    sk__fdend *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    *e = (sk__fdend){.loop = loop, .hooks = hooks, .arg = arg, .in_fd = in_fd, .out_fd = out_fd};
    struct sigaction sa;
    e->sigpipe_ignored = sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
    int rc = sk_loop_watch(loop, in_fd, 0, in_ready, e);
    if (rc == 0)
        rc = sk_loop_watch_modify(loop, in_fd, SK_READABLE); /* a file is refused here */
    if (rc == 0) {
        e->in_watched = true;
        sk_loop_watch_modify(loop, in_fd, 0);
    } else if (rc == -EPERM) {
        sk_loop_unwatch(loop, in_fd);
        rc = sk_timer_new(loop, in_timer_fired, e, &e->in_timer);
    }
    if (rc < 0) {
        if (!e->in_timer)
            sk_loop_unwatch(loop, in_fd);
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void sk__fdend_free(sk__fdend *e)
{
    if (!e)
        return;
    if (e->in_watched)
        sk_loop_unwatch(e->loop, e->in_fd);
    if (e->out_watched)
        sk_loop_unwatch(e->loop, e->out_fd);
    sk_timer_free(e->in_timer);
    free(e->q);
    free(e);
}
