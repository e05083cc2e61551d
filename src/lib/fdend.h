/* A descriptor end (fdend.c): a descriptor to read and another to write, with a conn's manners.
 * Private to the library; bridge.c is its user. */
#ifndef SOCKIT_FDEND_H
#define SOCKIT_FDEND_H

#include "internal.h"

typedef struct sk__fdend sk__fdend;

/* What the end tells its owner. Never called from inside a call the owner makes, except
 * on_end from sk__fdend_close() and from a write that failed. */
typedef struct sk__fdend_hooks {
    void (*on_data)(void *arg, const void *data, size_t len); /* valid during the call */
    void (*on_eof)(void *arg);                                /* the input ended */
    void (*on_drain)(void *arg);           /* the output queue went below its low mark */
    void (*on_end)(void *arg, int reason); /* closed, or failed (reason < 0); nothing follows */
} sk__fdend_hooks;

/* 0, -EINVAL (the same descriptor twice, or a negative one), -ENOMEM. Input is not wanted yet. */
int sk__fdend_open(sk_loop *loop, int in_fd, int out_fd, const sk__fdend_hooks *hooks, void *arg,
                   sk__fdend **out);
void sk__fdend_want_input(sk__fdend *e, bool want);
/* Write or queue (at most 1 MiB): 0, -EPIPE after a shutdown or close, -ENOBUFS, or the
 * write's failure (then on_end has run). */
int sk__fdend_write(sk__fdend *e, const void *data, size_t len);
bool sk__fdend_writable(const sk__fdend *e); /* false above 64 KiB queued until on_drain */
void sk__fdend_shutdown(sk__fdend *e);       /* no more output */
/* Stop reading; once the queue is written (at_once: now) on_end(0) follows. */
void sk__fdend_close(sk__fdend *e, bool at_once);
void sk__fdend_free(sk__fdend *e); /* the descriptors stay open */

#endif
