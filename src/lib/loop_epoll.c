/* The epoll backend: the only file that knows epoll. A second backend (io_uring, kqueue) would
 * implement the same three functions from internal.h. An io with no interest is not in the epoll
 * set at all (loop.c deletes it), because epoll reports hang-ups even for an empty event mask and
 * a paused conn would otherwise be woken forever.
 *
 * Level-triggered: a conn that stops reading (backpressure) simply drops SK_READABLE, and a
 * socket with more data than one read took is reported again next iteration, which keeps the
 * loop fair between busy and quiet clients. */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

#define MAX_EVENTS 256

int sk__backend_open(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static uint32_t to_epoll(unsigned events)
{
    return (events & SK_READABLE ? EPOLLIN | EPOLLRDHUP : 0u) |
           (events & SK_WRITABLE ? EPOLLOUT : 0u);
}

int sk__backend_ctl(int bfd, int op, sk__io *io, unsigned events)
{
    static const int ops[] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL};
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    return epoll_ctl(bfd, ops[op], io->fd, &ev) < 0 ? -errno : 0;
}

int sk__backend_poll(int bfd, int timeout_ms, uint64_t *now)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(bfd, evs, MAX_EVENTS, timeout_ms);
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
