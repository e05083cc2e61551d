/* Splice: bytes from one conn's socket to another's through a pipe, never through user space
 * (bridge.c joins plain sockets this way). Stub: being written. */
#include <errno.h>

#include "conn_internal.h"

int sk__conn_splice_to(sk_conn *a, sk_conn *b, size_t pipe_size)
{
    (void)a, (void)b, (void)pipe_size;
    return b ? -ENOMEM : 0;
}

ssize_t sk__splice_in(sk_conn *a)
{
    (void)a;
    return SK__SPLICE_OFF;
}

ssize_t sk__splice_out(sk_conn *c)
{
    (void)c;
    return -EAGAIN;
}

uint64_t sk__conn_spliced_bytes(const sk_conn *c)
{
    return c->x->sp ? c->x->sp->moved_in : 0;
}
