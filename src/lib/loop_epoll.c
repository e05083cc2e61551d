/* The epoll backend: the only file that knows epoll (its table is sk__backend_epoll, see
 * backend.h). An io with no interest is not in the epoll set at all (loop.c unwatches it),
 * because epoll reports hang-ups even for an empty event mask and a paused conn would otherwise
 * be woken forever.
 *
 * Level-triggered: a conn that stops reading (backpressure) simply drops SK_READABLE, and a
 * socket with more data than one read took is reported again next iteration, which keeps the
 * loop fair between busy and quiet clients. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "backend.h"

#define MAX_EVENTS 256

struct sk__backend {
    int epfd;
};

static int epoll_init(sk__backend **out)
{
    sk__backend *b = malloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        int err = -errno;
        free(b);
        return err;
    }
    *out = b;
    return 0;
}

static void epoll_close(sk__backend *b)
{
    close(b->epfd);
    free(b);
}

static int ctl(sk__backend *b, int op, sk__io *io, unsigned events)
{
    struct epoll_event ev = {
        .events = (events & SK_READABLE ? EPOLLIN | EPOLLRDHUP : 0u) |
                  (events & SK_WRITABLE ? EPOLLOUT : 0u),
        .data.ptr = io,
    };
    return epoll_ctl(b->epfd, op, io->fd, &ev) < 0 ? -errno : 0;
}

static int epoll_watch(sk__backend *b, sk__io *io, unsigned events)
{
    return ctl(b, EPOLL_CTL_ADD, io, events);
}

static int epoll_modify(sk__backend *b, sk__io *io, unsigned events)
{
    return ctl(b, EPOLL_CTL_MOD, io, events);
}

static int epoll_unwatch(sk__backend *b, sk__io *io)
{
    return ctl(b, EPOLL_CTL_DEL, io, 0);
}

static int epoll_wait_and_run(sk__backend *b, int timeout_ms, uint64_t *now)
{
    struct epoll_event evs[MAX_EVENTS]; /* on the stack: a callback that runs the loop itself
                                         * must not overwrite the rest of this batch */
    int n = epoll_wait(b->epfd, evs, MAX_EVENTS, timeout_ms);
    *now = sk__monotonic_ms();
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        sk__io *io = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        unsigned events = 0;
        /* A hang-up or error is reported as readable: the read then sees EOF or the error. */
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            events |= SK_READABLE;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            events |= SK_WRITABLE;
        /* io->fd < 0: closed earlier in this batch; its memory lives until the iteration ends. */
        if (io->fd >= 0)
            io->cb(io, events);
    }
    return n;
}

const sk__backend_ops sk__backend_epoll = {
    .name = "epoll",
    .init = epoll_init,
    .watch = epoll_watch,
    .modify = epoll_modify,
    .unwatch = epoll_unwatch,
    .wait = epoll_wait_and_run,
    .close = epoll_close,
    .closes_remove = true,
};
