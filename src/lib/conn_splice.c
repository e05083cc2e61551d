/* Splice: bytes from one conn's socket into another's through a pipe, never through user
 * space (bridge.c joins two plain sockets this way). The pipe belongs to the conn it feeds and
 * is its output queue: conn_io.c drains it before the ordinary queue, counts it in the queued
 * bytes and the watermarks, and sends the FIN after it, so a spliced conn ends as any other.
 * Arrows: conn_io.c -> conn_splice.c -> conn_core.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "conn_internal.h"

#define PIPE_DEFAULT (256 * 1024)

static sk__splice *splice_state(sk_conn *c)
{
    if (c->x->sp)
        return c->x->sp;
    if (!sk__conn_own(c))
        return NULL;
    sk__splice *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    sp->pipe_r = sp->pipe_w = -1;
    sp->want = PIPE_DEFAULT;
    c->x->sp = sp;
    return sp;
}

int sk__conn_splice_to(sk_conn *a, sk_conn *b, size_t pipe_size)
{
    if (!b) {
        sk__splice *sp = a->x->sp;
        if (sp && sp->to) {
            if (sp->to->x->sp)
                sp->to->x->sp->from = NULL;
            sp->to = NULL;
        }
        return 0;
    }
    sk__splice *sa = splice_state(a), *sb = splice_state(b);
    if (!sa || !sb)
        return -ENOMEM;
    sa->to = b;
    sb->from = a;
    if (pipe_size)
        sb->want = pipe_size > (1u << 30) ? 1u << 30 : (uint32_t)pipe_size;
    return 0;
}

/* b's pipe, made now: 0, or a failure code (out of descriptors). */
static int make_pipe(sk__splice *sb)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    /* Past /proc/sys/fs/pipe-max-size an unprivileged process is refused: the default size
     * (64 KiB) still works, only with more system calls per byte. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, (int)sb->want);
    int cap = fcntl(fds[1], F_GETPIPE_SZ);
    sb->pipe_r = fds[0];
    sb->pipe_w = fds[1];
    sb->cap = cap > 0 ? (uint32_t)cap : 65536;
    return 0;
}

/* Back to recv() for a's input; nothing was moved by the failed call. */
static ssize_t turn_off(sk_conn *a)
{
    SK_TRACE(a->loop, "splice fd=%d refused: copying instead", a->io.fd);
    sk__conn_splice_to(a, NULL, 0);
    return SK__SPLICE_OFF;
}

ssize_t sk__splice_in(sk_conn *a)
{
    sk__splice *sa = a->x->sp;
    sk_conn *b = sa->to;
    sk__splice *sb = b->x->sp;
    if (sb->pipe_r < 0 && make_pipe(sb) < 0)
        return turn_off(a);
    size_t room = sb->cap - sb->len;
    if (room == 0)
        return -EAGAIN; /* the reader pauses before this: see conn_io.c */
    ssize_t n;
    do
        n = splice(sk__conn_socket(a), NULL, sb->pipe_w, NULL, room,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = errno;
        if (err == EAGAIN)
            return -EAGAIN;
        if (err == EINVAL || err == ENOSYS || err == EOPNOTSUPP)
            return turn_off(a);
        return -err;
    }
    sb->len += (uint32_t)n;
    sa->moved_in += (uint64_t)n;
    return n;
}

ssize_t sk__splice_out(sk_conn *c)
{
    sk__splice *sp = c->x->sp;
    ssize_t n;
    do
        n = splice(sp->pipe_r, NULL, c->io.fd, NULL, sp->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? -EAGAIN : -errno;
    sp->len -= (uint32_t)n;
    return n;
}

uint64_t sk__conn_spliced_bytes(const sk_conn *c)
{
    return c->x->sp ? c->x->sp->moved_in : 0;
}
