/* A connection's bytes: the output queue and its backpressure, and the input side: reading,
 * cutting frames, holding a partial one, EOF. Bytes pass through the conn's layer stack
 * (layer.h); the ends and the interest they lead to are conn_core.c's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_internal.h"

/* ---------------------------------------------------------------- the byte path
 * Through the top layer when the conn has layers, straight to the socket when not: a plain
 * conn pays one branch, not an indirect call. */

static ssize_t conn_read(sk_conn *c, void *buf, size_t len)
{
    sk__layer *top = c->x->top;
    return top ? top->ops->read(top, buf, len) : sk__sock_recv(c->io.fd, buf, len);
}

static ssize_t conn_writev(sk_conn *c, const struct iovec *iov, int iovcnt)
{
    sk__layer *top = c->x->top;
    return top ? top->ops->writev(top, iov, iovcnt) : sk__sock_writev(c->io.fd, iov, iovcnt);
}

/* ---------------------------------------------------------------- output */

static int queue_bytes(sk_conn *c, const struct iovec *iov, int iovcnt, size_t skip, size_t n)
{
    if (!sk__conn_own(c))
        return -ENOMEM;
    outq *q = c->x->out;
    size_t queued = q ? q->len : 0;
    if (!q || q->head + q->len + n > q->cap) {
        size_t need = queued + n;
        size_t cap = q ? q->cap : 0;
        if (cap < 4096)
            cap = 4096;
        while (cap < need)
            cap *= 2;
        if (q && q->head > 0 && need <= q->cap) {
            memmove(q->data, q->data + q->head, q->len);
            q->head = 0;
        } else {
            outq *nq = malloc(sizeof *nq + cap);
            if (!nq)
                return -ENOMEM;
            nq->head = 0;
            nq->len = queued;
            nq->cap = cap;
            if (q)
                memcpy(nq->data, q->data + q->head, q->len);
            free(q);
            c->x->out = q = nq;
        }
    }
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(q->data + q->head + q->len, (const uint8_t *)iov[i].iov_base + skip, len - skip);
        q->len += len - skip;
        skip = 0;
    }
    if (q->len > c->x->high)
        c->flags |= F_ABOVE_HIGH;
    return 0;
}

SK_API int sk_conn_writev(sk_conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->flags & (F_CLOSED | F_CLOSING | F_SHUT_WANTED))
        return -EPIPE;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    size_t queued = c->x->out ? c->x->out->len : 0;
    if (queued + total > c->x->limit)
        return -ENOBUFS;
    size_t sent = 0;
    if (!sk__conn_has_output(c) && !(c->flags & (F_CONNECTING | F_STARTING))) {
        ssize_t n = conn_writev(c, iov, iovcnt);
        if (n < 0 && n != -EAGAIN) {
            sk__conn_fail(c, (int)n);
            return (int)n;
        }
        if (n > 0) {
            sent = (size_t)n;
            sk__conn_count_out(c, sent);
            sk__conn_touch(c);
            SK_TRACE(c->loop, "send fd=%d %zd bytes", c->io.fd, n);
        }
    }
    if (sent < total) {
        int rc = queue_bytes(c, iov, iovcnt, sent, total - sent);
        if (rc < 0) {
            sk__conn_fail(c, rc);
            return rc;
        }
        sk__conn_update_interest(c);
    }
    return 0;
}

SK_API int sk_conn_write(sk_conn *c, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return sk_conn_writev(c, &iov, 1);
}

static const char newline[] = "\n";

SK_API int sk_conn_write_frame(sk_conn *c, const void *data, size_t len)
{
    uint8_t prefix[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                         (uint8_t)len};
    struct iovec iov[2] = {{.iov_base = (void *)data, .iov_len = len}};
    switch ((sk_frame_kind)c->frame_kind) {
    case SK_FRAME_LINE:
        iov[1] = (struct iovec){.iov_base = (void *)newline, .iov_len = 1};
        return sk_conn_writev(c, iov, 2);
    case SK_FRAME_LEN32:
        if (len > UINT32_MAX)
            return -EMSGSIZE;
        iov[1] = iov[0];
        iov[0] = (struct iovec){.iov_base = prefix, .iov_len = 4};
        return sk_conn_writev(c, iov, 2);
    case SK_FRAME_RAW: break;
    }
    return sk_conn_writev(c, iov, 1);
}

SK_API size_t sk_conn_queued_bytes(const sk_conn *c)
{
    return (c->x->out ? c->x->out->len : 0) + sk__conn_pipe_bytes(c);
}

/* What the splice pipe holds goes out before the queue: while a conn is spliced nothing is
 * queued (a write waits behind the pipe), so this is the order the bytes came in. 0, or the
 * conn failed. */
static int flush_pipe(sk_conn *c)
{
    while (sk__conn_pipe_bytes(c)) {
        ssize_t n = sk__splice_out(c);
        if (n == -EAGAIN)
            return 0;
        if (n < 0) {
            sk__conn_fail(c, (int)n);
            return -1;
        }
        SK_TRACE(c->loop, "splice fd=%d %zd bytes out", c->io.fd, n);
        sk__conn_count_out(c, (size_t)n);
        sk__conn_touch(c);
    }
    return 0;
}

SK_API bool sk_conn_writable(const sk_conn *c)
{
    return !(c->flags & (F_ABOVE_HIGH | F_CLOSED | F_CLOSING | F_SHUT_WANTED));
}

/* The socket took more: send what is queued until the kernel's buffer is full again. */
void sk__conn_flush(sk_conn *c)
{
    if (c->x->sp && flush_pipe(c) < 0)
        return;
    outq *q = sk__conn_pipe_bytes(c) ? NULL : c->x->out;
    while (q && q->len) {
        struct iovec iov = {.iov_base = q->data + q->head, .iov_len = q->len};
        ssize_t n = conn_writev(c, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            sk__conn_fail(c, (int)n);
            return;
        }
        SK_TRACE(c->loop, "send fd=%d %zd bytes", c->io.fd, n);
        sk__conn_count_out(c, (size_t)n);
        sk__conn_touch(c);
        q->head += (size_t)n;
        q->len -= (size_t)n;
    }
    if (q && q->len == 0) {
        free(q);
        c->x->out = NULL;
    }
    size_t queued = sk_conn_queued_bytes(c);
    if ((c->flags & F_ABOVE_HIGH) && queued <= c->x->low) {
        c->flags &= (uint16_t)~F_ABOVE_HIGH;
        if (c->cb->on_drain && !(c->flags & (F_CLOSING | F_CLOSED)))
            c->cb->on_drain(c);
    }
    if (c->flags & F_CLOSED)
        return;
    if (!sk__conn_has_output(c))
        sk__conn_after_flush(c);
    sk__conn_update_interest(c);
}

/* ---------------------------------------------------------------- input */

static bool delivering(const sk_conn *c)
{
    return !(c->flags & (F_PAUSED | F_CLOSING | F_CLOSED));
}

static void frame_error(sk_conn *c, int err)
{
    SK_TRACE(c->loop, "frame fd=%d longer than %u bytes: reset after the replies", c->io.fd,
             c->x->max_frame);
    /* Flush what we owe, then reset: the rest of the oversized input is discarded, and a reset
     * (not a FIN, which reads as "all done") tells the peer its data was not taken. */
    c->close_reason = err;
    c->flags |= F_RESET_WANTED;
    if (c->x->in) {
        free(c->x->in);
        c->x->in = NULL;
        c->x->in_len = c->x->in_cap = 0;
    }
    sk__conn_begin_close(c);
}

/* Keep data[0..len) in c->x->in for later (a partial frame, or frames held while paused). */
static int keep_rest(sk_conn *c, const uint8_t *data, size_t len)
{
    if (!c->x->in && len == 0)
        return 0; /* nothing held, nothing to hold: the common case stays allocation-free */
    if (!sk__conn_own(c))
        return -ENOMEM;
    bool inside = c->x->in && data >= c->x->in && data <= c->x->in + c->x->in_len;
    if (inside) { /* the rest of what was held: move it to the front */
        memmove(c->x->in, data, len);
        c->x->in_len = (uint32_t)len;
    } else if (len) {
        if (len > c->x->in_cap) {
            uint8_t *in = realloc(c->x->in, len);
            if (!in)
                return -ENOMEM;
            c->x->in = in;
            c->x->in_cap = (uint32_t)len;
        }
        memcpy(c->x->in, data, len);
        c->x->in_len = (uint32_t)len;
    } else {
        c->x->in_len = 0;
    }
    if (c->x->in_len == 0) {
        free(c->x->in);
        c->x->in = NULL;
        c->x->in_cap = 0;
    }
    return 0;
}

/* Cut data into frames and hand each to on_frame; keep an unfinished one. */
static void deliver(sk_conn *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && delivering(c)) {
        sk_frame f;
        int r =
            sk_frame_next((sk_frame_kind)c->frame_kind, c->x->max_frame, data + off, len - off, &f);
        if (r == 0)
            break;
        if (r < 0) {
            frame_error(c, r);
            return;
        }
        if (c->cb->on_frame)
            c->cb->on_frame(c, data + off + f.offset, f.length);
        off += f.consumed;
    }
    if (c->flags & (F_CLOSING | F_CLOSED)) {
        keep_rest(c, data, 0);
        return;
    }
    if (keep_rest(c, data + off, len - off) < 0)
        sk__conn_fail(c, -ENOMEM);
}

static void report_eof(sk_conn *c);

/* Frames held while reading was paused, and a FIN that arrived behind them. */
void sk__conn_deliver_held(sk_conn *c)
{
    if (c->flags & F_PEER_EOF)
        report_eof(c);
    else if (c->x->in_len && delivering(c))
        deliver(c, c->x->in, c->x->in_len);
}

/* Where to read: after a partial frame in c->x->in, or into the loop's buffer. */
static uint8_t *read_target(sk_conn *c, size_t *room)
{
    if (!c->x->in_len) {
        *room = SK__READ_BUF;
        return sk__loop_read_buf(c->loop);
    }
    size_t want = (size_t)c->x->max_frame + 8;
    if (c->x->in_cap < want && c->x->in_cap - c->x->in_len < 4096) {
        size_t cap = c->x->in_cap * 2;
        if (cap < c->x->in_len + 4096)
            cap = c->x->in_len + 4096;
        if (cap > want)
            cap = want;
        uint8_t *in = realloc(c->x->in, cap);
        if (in) {
            c->x->in = in;
            c->x->in_cap = (uint32_t)cap;
        }
    }
    *room = c->x->in_cap - c->x->in_len;
    return c->x->in + c->x->in_len;
}

/* Tell the user about the FIN once every complete frame before it is delivered. */
static void report_eof(sk_conn *c)
{
    if (c->x->in_len && delivering(c))
        deliver(c, c->x->in, c->x->in_len);
    if (c->flags & (F_CLOSING | F_CLOSED | F_PAUSED | F_EOF_REPORTED))
        return; /* paused: sk_conn_resume_reading() brings us back here */
    c->flags |= F_EOF_REPORTED;
    if (c->x->in_len && c->frame_kind == SK_FRAME_LINE) {
        /* A last line without its newline is still a line: the FIN ends it, as it does for
         * every line-reading program (read, fgets, Python's readline). */
        if (c->cb->on_frame)
            c->cb->on_frame(c, c->x->in, c->x->in_len);
        keep_rest(c, c->x->in, 0);
        if (c->flags & (F_CLOSING | F_CLOSED))
            return;
    }
    if (c->x->in_len) {
        /* The stream ended inside a frame: nothing can complete it. */
        sk__emit(c->loop,
                 &(sk_event){.kind = SK_EV_INPUT_DROPPED, .conn = c, .bytes_in = c->x->in_len});
        keep_rest(c, c->x->in, 0);
    }
    if (c->cb->on_eof)
        c->cb->on_eof(c);
    else
        sk__conn_begin_close(c);
    /* Both directions are done and the user kept the conn: nothing more can happen on it. */
    if (!(c->flags & (F_CLOSING | F_CLOSED)) && !sk__conn_has_output(c))
        sk__conn_after_flush(c);
}

static void peer_eof(sk_conn *c)
{
    c->flags |= F_PEER_EOF;
    if ((c->flags & F_CLOSING) && !sk__conn_has_output(c) && !(c->flags & F_RESET_WANTED)) {
        sk__conn_finish(c, c->close_reason); /* done: no interest change before the close */
        return;
    }
    sk__conn_update_interest(c); /* no more reading: the FIN is in */
    if (!(c->flags & F_CLOSING))
        report_eof(c);
    else if (!sk__conn_has_output(c))
        sk__conn_reset_soon(c); /* F_RESET_WANTED: once what we sent is acknowledged */
}

/* The socket's bytes go into the joined conn's pipe, and on from there at once; reading stops
 * while that conn is above its high watermark, as the bridge's copy path does (its on_drain
 * resumes it). 1: handled; 0: splice turned itself off, read as usual. */
static int splice_readable(sk_conn *c)
{
    ssize_t n = sk__splice_in(c);
    if (n == SK__SPLICE_OFF)
        return 0;
    if (n == -EAGAIN)
        return 1;
    if (n < 0) {
        sk__conn_fail(c, (int)n);
        return 1;
    }
    if (n == 0) {
        SK_TRACE(c->loop, "splice fd=%d eof", c->io.fd);
        peer_eof(c);
        return 1;
    }
    SK_TRACE(c->loop, "splice fd=%d %zd bytes in", c->io.fd, n);
    sk__conn_count_in(c, (size_t)n);
    sk__conn_touch(c);
    sk_conn *to = c->x->sp->to;
    if (sk__conn_pipe_bytes(to) > to->x->high)
        to->flags |= F_ABOVE_HIGH;
    sk__conn_flush(to);
    /* The flush may have closed either conn (a reset, which unlinks them): look again. */
    if (!(c->flags & F_CLOSED) && c->x->sp->to && !sk_conn_writable(to)) {
        c->flags |= F_PAUSED;
        sk__conn_update_interest(c);
    }
    return 1;
}

void sk__conn_on_readable(sk_conn *c)
{
    if (c->x->sp && c->x->sp->to && !(c->flags & F_CLOSING) && splice_readable(c))
        return;
    size_t room = SK__READ_BUF;
    uint8_t *buf = (c->flags & F_CLOSING) ? sk__loop_read_buf(c->loop) : read_target(c, &room);
    if (room == 0) {
        sk__conn_fail(c, -ENOMEM); /* a held frame could not grow its buffer */
        return;
    }
    ssize_t n = conn_read(c, buf, room);
    if (n == -EAGAIN) {
        if (c->x->top)
            sk__conn_update_interest(c); /* a layer's read may need writability */
        return;
    }
    if (n == SK_ERR_TLS_TRUNCATED && !(c->flags & F_CLOSING)) {
        /* A FIN without close_notify: what was decrypted is delivered and what we owe is still
         * sent, as after a clean end; only the close reason says it may have been cut short. */
        SK_TRACE(c->loop, "recv fd=%d eof without close_notify", c->io.fd);
        c->close_reason = SK_ERR_TLS_TRUNCATED;
        peer_eof(c);
        return;
    }
    if (n < 0) {
        /* Closing: the peer's way of ending (even without close_notify) does not matter. */
        if (c->flags & F_CLOSING)
            sk__conn_finish(c, c->close_reason);
        else
            sk__conn_fail(c, (int)n);
        return;
    }
    if (n == 0) {
        SK_TRACE(c->loop, "recv fd=%d eof", c->io.fd);
        peer_eof(c);
        return;
    }
    SK_TRACE(c->loop, "recv fd=%d %zd bytes", c->io.fd, n);
    sk__conn_count_in(c, (size_t)n);
    if (c->flags & F_CLOSING)
        return; /* discarded, and no progress: a peer that keeps sending cannot delay the close */
    sk__conn_touch(c);
    if (c->frame_kind == SK_FRAME_RAW && !c->x->in_len) {
        if (c->cb->on_frame)
            c->cb->on_frame(c, buf, (size_t)n);
        return;
    }
    if (buf == c->x->in + c->x->in_len) {
        c->x->in_len += (uint32_t)n;
        deliver(c, c->x->in, c->x->in_len);
    } else {
        deliver(c, buf, (size_t)n);
    }
}
