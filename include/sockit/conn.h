/* sockit — a connection: a buffered, framed byte stream over TCP or a Unix stream socket.
 *
 * Writes go straight to the kernel; only what it does not take is copied into the conn's queue,
 * which the loop drains when the socket becomes writable. SIGPIPE never fires.
 *
 * Backpressure: past the high watermark sk_conn_writable() turns false; when the queue falls to
 * the low watermark, on_drain is called. A write that would take the queue past the hard limit
 * is refused with -ENOBUFS and nothing of it is queued.
 *
 * Life cycle. A conn comes from a listener (accepted) or from sk_conn_connect(). on_close is
 * always the last callback, exactly once; the conn is freed right after it returns.
 *   sk_conn_close()    stop reading, flush the queue, send FIN, discard input until the peer's
 *                      FIN (at most the linger time, so an unread request never turns the close
 *                      into a reset that destroys what we sent), then close.
 *   sk_conn_shutdown() flush the queue, then half-close the write side; reading goes on.
 *   sk_conn_abort()    close at once with a reset (SO_LINGER 0); the queue is dropped.
 * The peer's FIN is reported by on_eof; writing may go on after it. Without an on_eof callback,
 * the conn is closed (sk_conn_close) at the peer's FIN. Over TLS, a FIN without close_notify
 * is an end too (what was decrypted is delivered, writing may go on), but on_close then gets
 * SK_ERR_TLS_TRUNCATED: the peer may have meant to send more.
 */
#ifndef SOCKIT_CONN_H
#define SOCKIT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "addr.h"
#include "frame.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_conn sk_conn;

typedef struct sk_conn_callbacks {
    /* Outgoing conns: the connection is up. */
    void (*on_connect)(sk_conn *c);
    /* One frame (SK_FRAME_RAW: whatever one read returned). data lives until the callback
     * returns. Must not be NULL. */
    void (*on_frame)(sk_conn *c, const void *data, size_t len);
    /* The peer sent FIN: it will send no more. NULL: close the conn. */
    void (*on_eof)(sk_conn *c);
    /* The queue fell to the low watermark after passing the high one. */
    void (*on_drain)(sk_conn *c);
    /* Last call; the socket is still open during it (sk_conn_peer_name works) and closed
     * right after. reason: 0 after a clean close (ours or the peer's), else a negative code:
     * -ECONNREFUSED, -ETIMEDOUT (connect or idle timeout), -ECONNRESET, -EMSGSIZE (a frame over
     * the maximum), -EPIPE, -ENOBUFS ... */
    void (*on_close)(sk_conn *c, int reason);
} sk_conn_callbacks;

/* Connect without blocking to addr; on_connect or on_close(-ECONNREFUSED / -ETIMEDOUT ...)
 * follows. timeout_ms 0 waits for the kernel's own limit. callbacks must outlive the conn.
 * out may be NULL: the callbacks receive the conn. */
int sk_conn_connect(sk_loop *loop, const sk_addr *addr, uint64_t timeout_ms,
                    const sk_conn_callbacks *callbacks, void *data, sk_conn **out);

/* An accepted conn starts with no callbacks: set them in the accept callback. */
void sk_conn_set_callbacks(sk_conn *c, const sk_conn_callbacks *callbacks);
void sk_conn_set_data(sk_conn *c, void *data);
void *sk_conn_data(const sk_conn *c);

/* Framing of input and of sk_conn_write_frame(). max: the largest frame accepted (0: the
 * default, SK_FRAME_DEFAULT_MAX). A frame over max closes the conn with -EMSGSIZE: what is
 * queued is still sent, then the conn is reset (not a FIN, which would read as "all done"), so
 * the peer learns that its data was refused. */
int sk_conn_set_framing(sk_conn *c, sk_frame_kind kind, size_t max);

/* Defaults: low 16 KiB, high 64 KiB, limit 1 MiB. Needs low <= high <= limit. 0 or -EINVAL. */
int sk_conn_set_watermarks(sk_conn *c, size_t low, size_t high, size_t limit);
/* Close with -ETIMEDOUT after ms without input or output progress (0: never, the default). */
int sk_conn_set_idle_timeout(sk_conn *c, uint64_t ms);
/* How long sk_conn_close() waits for the peer's FIN (default 2000 ms). */
void sk_conn_set_linger(sk_conn *c, uint64_t ms);

/* Send bytes as they are. 0, or -ENOBUFS (over the hard limit: nothing sent), -EPIPE (closed
 * or shut down for writing), or the socket's error. */
int sk_conn_write(sk_conn *c, const void *data, size_t len);
int sk_conn_writev(sk_conn *c, const struct iovec *iov, int iovcnt);
/* Send one frame in the conn's framing: a length prefix for SK_FRAME_LEN32, a '\n' after it
 * for SK_FRAME_LINE, nothing for SK_FRAME_RAW. */
int sk_conn_write_frame(sk_conn *c, const void *data, size_t len);

/* Bytes queued in user space (not yet taken by the kernel). */
size_t sk_conn_queued_bytes(const sk_conn *c);
/* False while the queue is above the high watermark (until on_drain). */
bool sk_conn_writable(const sk_conn *c);

/* True while input waits to be read: in the socket, or already decrypted inside TLS. A server
 * that stops gracefully closes a conn once this is false and the conn is writable. */
bool sk_conn_input_pending(const sk_conn *c);

/* Stop and restart reading (input backpressure). Frames already read wait in the conn. */
void sk_conn_pause_reading(sk_conn *c);
void sk_conn_resume_reading(sk_conn *c);

void sk_conn_close(sk_conn *c);
void sk_conn_shutdown(sk_conn *c);
void sk_conn_abort(sk_conn *c);

int sk_conn_peer_addr(const sk_conn *c, sk_addr *out);
int sk_conn_local_addr(const sk_conn *c, sk_addr *out);
/* Format the peer's address ("127.0.0.1:50312"); as sk_addr_format. A Unix peer is usually
 * unnamed: "unix:" followed by nothing, so services add the fd themselves when it matters. */
int sk_conn_peer_name(const sk_conn *c, char *buf, size_t len);
/* The socket, for getsockopt() and the like. Do not dup() it or pass it to another process:
 * the conn closes it without first taking it off epoll (close() does that, one system call
 * fewer per conn), which holds only while no other descriptor shares its open file. (After a
 * fork() the library always unregisters first: a child may hold it.) */
int sk_conn_fd(const sk_conn *c);
sk_loop *sk_conn_loop(const sk_conn *c);

#ifdef __cplusplus
}
#endif
#endif
