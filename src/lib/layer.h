/* Transport layers: the stack a conn's bytes pass through between the socket and the user.
 *
 * The socket is always the bottom (it is not an allocated layer: a plain conn has no layers at
 * all, and pays nothing for them). Above it, in this order when present:
 *   PROXY header  reads the PROXY protocol header before anything else sees a byte (planned)
 *   TLS           tls.c: encrypts, decrypts, handshakes
 * Each layer reads and writes through the one below (sk__layer_read_below and
 * sk__layer_write_below), so a layer never knows what is under it, and conn.c knows only the
 * top of the stack and this table: which layers a conn has is none of its business.
 *
 * In the manner of HAProxy's transport layers and Redis's connection types: one small table of
 * functions per kind, one instance per conn, owned by the conn from sk__conn_push_layer() on. */
#ifndef SOCKIT_LAYER_H
#define SOCKIT_LAYER_H

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "internal.h"

typedef struct sk__layer sk__layer;

typedef struct sk__layer_ops {
    const char *name; /* "tls" */
    /* Bring the layer up (a handshake, a header): 1 done, 0 in progress (wants() says for
     * what), or a failure code. Called only once the layers below are up. NULL: nothing to do. */
    int (*start)(sk__layer *l);
    /* Bytes read into buf (up to len), 0 at a clean end, -EAGAIN to wait, or a failure code
     * (SK_ERR_TLS_TRUNCATED: an end that may have cut the peer short). */
    ssize_t (*read)(sk__layer *l, void *buf, size_t len);
    /* Bytes taken (maybe fewer than offered), -EAGAIN, or a failure code. */
    ssize_t (*writev)(sk__layer *l, const struct iovec *iov, int iovcnt);
    /* Half-close our direction (TLS: close_notify), then ask the layer below to do the same. */
    void (*shutdown)(sk__layer *l);
    /* Readiness the last operation waits for beyond the obvious one (SK_READABLE for a write
     * that needs a record read first, and the reverse); 0 when none. */
    unsigned (*wants)(const sk__layer *l);
    /* Bytes already inside the layer that the socket's readiness will not announce. */
    bool (*pending)(const sk__layer *l);
    /* Free the layer (the socket stays open: the conn owns it). */
    void (*destroy)(sk__layer *l);
    /* An address the layer knows better than the socket (a PROXY header's client, local
     * true: the address the client connected to): 0, or -1 when it does not. NULL: never. */
    int (*addr)(const sk__layer *l, bool local, sk_addr *out);
    /* Up, holding nothing, and adding nothing to the bytes: the socket may be read and
     * written around it (splice). NULL: never. */
    bool (*passthrough)(const sk__layer *l);
} sk__layer_ops;

/* Embedded at the start of each layer's own state. */
struct sk__layer {
    const sk__layer_ops *ops;
    sk__layer *below; /* NULL: the socket */
    sk_conn *conn;    /* set by sk__conn_push_layer */
    int fd;           /* the conn's socket, for the bottom layer's I/O */
    bool up;          /* start() has finished */
};

/* ---- the socket, the bottom of every stack ---- */

static inline ssize_t sk__sock_recv(int fd, void *buf, size_t len)
{
    ssize_t n;
    do
        n = recv(fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static inline ssize_t sk__sock_writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n;
    do {
        if (iovcnt == 1) /* send(), not sendmsg(), where one buffer is enough: it is cheaper */
            n = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* ---- a layer talks to the one below it through these ---- */

static inline ssize_t sk__layer_read_below(sk__layer *l, void *buf, size_t len)
{
    return l->below ? l->below->ops->read(l->below, buf, len) : sk__sock_recv(l->fd, buf, len);
}

static inline ssize_t sk__layer_write_below(sk__layer *l, const struct iovec *iov, int iovcnt)
{
    return l->below ? l->below->ops->writev(l->below, iov, iovcnt)
                    : sk__sock_writev(l->fd, iov, iovcnt);
}

static inline void sk__layer_shutdown_below(sk__layer *l)
{
    if (l->below)
        l->below->ops->shutdown(l->below);
    else
        shutdown(l->fd, SHUT_WR);
}

/* ---- conn.c's side ---- */

/* Put l on top of c's stack (c owns it from here, also on failure) and start bringing it up,
 * within timeout_ms (0: 10 s) of now; on_connect follows once every layer is up. 0, -EINVAL
 * (closing, or the conn is already past its start), or -ENOMEM. */
int sk__conn_push_layer(sk_conn *c, sk__layer *l, uint64_t timeout_ms);
/* The address a layer of c knows (the topmost that does): 0, or -1. */
int sk__conn_layer_addr(const sk_conn *c, bool local, sk_addr *out);
/* Every layer of c is passthrough (or c has none). */
bool sk__conn_layers_passthrough(const sk_conn *c);
/* The topmost layer of this kind on c, or NULL. */
sk__layer *sk__conn_find_layer(const sk_conn *c, const sk__layer_ops *ops);

#endif
