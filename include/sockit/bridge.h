/* sockit — a bridge: two conns joined, bytes both ways (the relay's core).
 *
 * What one side reads, the other writes, in both directions at once, with backpressure each
 * way: while a side's queue is above its high watermark, the other side is not read, so a
 * bridge holds at most the two conns' queue limits in user space (sk_conn_set_watermarks; 1 MiB
 * each by default). A FIN from one side becomes a FIN to the other once what came before it is
 * delivered, and the other direction keeps flowing until its own FIN; a reset from one side
 * resets the other (nothing it still had queued could be delivered anyway); any other end
 * closes the other side gracefully, flushing what it has. Over TLS the layers turn FIN into
 * close_notify and back. When both sides are closed, the done callback reports each side's
 * close reason and the bytes each way; the bridge is freed after it returns.
 *
 * The bridge takes both conns over: their callbacks, data and framing (raw) are its own from
 * sk_bridge_join() on. Join conns that are up: accepted, or connected (after on_connect).
 */
#ifndef SOCKIT_BRIDGE_H
#define SOCKIT_BRIDGE_H

#include <stdint.h>

#include "conn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_bridge sk_bridge;

typedef struct sk_bridge_result {
    int a_reason, b_reason;  /* each conn's on_close reason (0: clean) */
    uint64_t a_to_b, b_to_a; /* bytes read from one side and written to the other */
} sk_bridge_result;

typedef void (*sk_bridge_done_cb)(sk_bridge *br, const sk_bridge_result *r, void *arg);

/* Join a and b. 0, or -ENOMEM (the conns are then untouched). out may be NULL. */
int sk_bridge_join(sk_conn *a, sk_conn *b, sk_bridge_done_cb done, void *arg, sk_bridge **out);
/* Close both sides gracefully (each flushes what it has queued); done follows. */
void sk_bridge_close(sk_bridge *br);
/* The bytes each way so far. */
void sk_bridge_counts(const sk_bridge *br, uint64_t *a_to_b, uint64_t *b_to_a);

#ifdef __cplusplus
}
#endif
#endif
