/* sockit — a bridge: two conns joined, bytes both ways (the relay's core).
 *
 * What one side reads, the other writes, in both directions at once, with backpressure each
 * way: while a side's queue is above its high watermark, the other side is not read, so a
 * bridge holds at most, per direction, the high watermark plus one read (64 KiB) in user space
 * (sk_conn_set_watermarks; 64 KiB by default). A FIN from one side becomes a FIN to the other
 * once what came before it is delivered, and the other direction keeps flowing until its own
 * FIN; a reset from one side resets the other (nothing it still had queued could be delivered
 * anyway); any other end closes the other side gracefully, flushing what it has. Over TLS the
 * layers turn FIN into close_notify and back. When both sides are closed, the done callback
 * reports each side's close reason and the bytes each way; the bridge is freed after it
 * returns.
 *
 * Zero copy. When both conns are plain sockets (TCP or Unix, no TLS) and no filter is set, a
 * direction whose socket had 16 KiB waiting at once (bulk) moves its bytes with splice(2) from
 * then on:
 * socket -> pipe -> socket, never through user space. Idle and chatty pairs stay on the copy
 * and hold no pipe; a bulk direction gets its own, sized with F_SETPIPE_SZ, which is then its
 * queue and its bound. Where splice is refused (an old kernel, a socket type without it) the
 * direction goes back to the copy, as it does when a filter is set.
 *
 * Filters. A filter sees each chunk read from one side before the other side gets it, and the
 * FIN behind them (data NULL, len 0); it passes them on with sk_bridge_forward(), at once or
 * later (from a timer: delays), changed or not, whole or in pieces, and may stop the reading
 * of the side it filters with sk_bridge_hold() (a slow link). The fault-injection toxics are
 * filters.
 *
 * The bridge takes both conns over: their callbacks, data and framing (raw) are its own from
 * sk_bridge_join() on. Join conns that are up: accepted, or connected (after on_connect);
 * paused reading is resumed.
 */
#ifndef SOCKIT_BRIDGE_H
#define SOCKIT_BRIDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_bridge sk_bridge;

/* A direction: bytes read from a written to b, or the reverse. */
typedef enum { SK_BRIDGE_A_TO_B = 0, SK_BRIDGE_B_TO_A = 1 } sk_bridge_dir;

typedef struct sk_bridge_result {
    int a_reason, b_reason;  /* each conn's on_close reason (0: clean) */
    uint64_t a_to_b, b_to_a; /* bytes read from one side and written to the other */
    bool spliced;            /* some bytes moved by splice(2) */
} sk_bridge_result;

typedef void (*sk_bridge_done_cb)(sk_bridge *br, const sk_bridge_result *r, void *arg);
/* The input of one side ended (dir: the direction it fed): reason 0 for its FIN, else why (a
 * reset: -ECONNRESET). */
typedef void (*sk_bridge_end_cb)(sk_bridge *br, sk_bridge_dir dir, int reason, void *arg);
/* See "Filters" above. data is valid only during the call: copy what is kept. */
typedef void (*sk_bridge_filter_cb)(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len,
                                    void *arg);

enum {
    SK_BRIDGE_NO_SPLICE = 1 << 0, /* always copy through user space */
};

typedef struct sk_bridge_options {
    unsigned flags;
    size_t pipe_size; /* splice: each direction's pipe; 0: 256 KiB (the kernel may round) */
    sk_bridge_end_cb on_end;
} sk_bridge_options;

/* Join a and b. opts may be NULL. 0, or -ENOMEM (the conns are then untouched). out may be
 * NULL. */
int sk_bridge_join(sk_conn *a, sk_conn *b, const sk_bridge_options *opts, sk_bridge_done_cb done,
                   void *arg, sk_bridge **out);
/* Join a to a pair of descriptors, as a command joins a connection to its standard input and
 * output: what a reads is written to out_fd, what in_fd gives is written to a (in_fd's end is
 * a FIN to a; a's FIN ends only that direction), with the same backpressure and ends. A pipe,
 * a terminal or a regular file each way (a file is read in chunks from the loop, as epoll
 * cannot watch one). The descriptors are never closed nor their flags changed: they may be
 * shared with other processes (a terminal), so on a blocking out_fd a write waits for its
 * reader, as cat's would. Side b of the bridge is the descriptors: its reason is a failure to
 * read or write them (-EPIPE: out_fd's reader went away). 0, -EINVAL (in_fd == out_fd), or
 * -ENOMEM. */
int sk_bridge_join_fds(sk_conn *a, int in_fd, int out_fd, const sk_bridge_options *opts,
                       sk_bridge_done_cb done, void *arg, sk_bridge **out);
/* Close both sides gracefully (each flushes what it has queued); done follows. */
void sk_bridge_close(sk_bridge *br);
/* The bytes each way so far. */
void sk_bridge_counts(const sk_bridge *br, uint64_t *a_to_b, uint64_t *b_to_a);
/* The direction moves its bytes with splice(2), or will once it is bulk (see above). */
bool sk_bridge_spliced(const sk_bridge *br, sk_bridge_dir dir);

/* Set (fn NULL: remove) the filter of one direction. A spliced direction turns to the copy
 * (what its pipe holds is still delivered first). 0, or -ENOMEM. */
int sk_bridge_set_filter(sk_bridge *br, sk_bridge_dir dir, sk_bridge_filter_cb fn, void *arg);
/* Hand bytes on in direction dir (data NULL, len 0: the FIN, after everything forwarded
 * before it). 0; -EPIPE when that side is gone or already got its FIN; -ENOBUFS over the
 * queue's limit. Reading of the source side pauses while the other side is above its high
 * watermark, as without a filter. */
int sk_bridge_forward(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len);
/* Stop (hold true) or restart the reading of direction dir's source side. */
void sk_bridge_hold(sk_bridge *br, sk_bridge_dir dir, bool hold);

#ifdef __cplusplus
}
#endif
#endif
