/* The event-loop backend: what loop.c needs from the kernel's readiness API, as a table of
 * functions. Each backend file (loop_epoll.c today; io_uring or kqueue beside it later)
 * exports one const table; sk_loop_new() picks one by name and loop.c calls only through it,
 * so a backend is added without touching loop.c's users. Private to the library. */
#ifndef SOCKIT_BACKEND_H
#define SOCKIT_BACKEND_H

#include <time.h>

#include "internal.h"

/* One loop's state in a backend (an epoll descriptor and its event buffer, a ring, ...). */
typedef struct sk__backend sk__backend;

typedef struct sk__backend_ops {
    const char *name; /* what SOCKIT_BACKEND says to choose it */
    /* Make the state for one loop: 0 or -errno, with nothing left behind on failure. */
    int (*init)(sk__backend **out);
    /* Interest in io->fd (events: SK_READABLE | SK_WRITABLE, never 0): for an io not watched
     * yet, and to change it. 0 or -errno. */
    int (*watch)(sk__backend *b, sk__io *io, unsigned events);
    int (*modify)(sk__backend *b, sk__io *io, unsigned events);
    /* No interest at all: the io must not be reported again. 0 or -errno. */
    int (*unwatch)(sk__backend *b, sk__io *io);
    /* Wait up to timeout_ms (-1: no limit), set *now to sk__monotonic_ms() as soon as the
     * wait ends, then call each ready io's callback with SK_READABLE / SK_WRITABLE (a hang-up
     * or an error as readable), skipping an io whose fd is < 0 by then. Events seen, 0 when
     * a signal cut the wait short, or -errno. */
    int (*wait)(sk__backend *b, int timeout_ms, uint64_t *now);
    void (*close)(sk__backend *b);
    /* Closing a descriptor (the last one to its open file) removes its interest by itself, so
     * an unwatch right before the close can be skipped (epoll: yes). */
    bool closes_remove;
} sk__backend_ops;

extern const sk__backend_ops sk__backend_epoll;

/* CLOCK_MONOTONIC in milliseconds: the loop's clock. Inline, so that a backend reading it
 * does not depend on loop.c. */
static inline uint64_t sk__monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
