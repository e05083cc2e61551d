/* What the three parts of a conn share: conn_core.c (the cold part, the timer, interest, the
 * layer stack, the ends), conn_io.c (the output queue, reading and framing) and conn.c (the
 * life cycle and the API). Arrows: conn.c -> conn_io.c -> conn_core.c. Private. */
#ifndef SOCKIT_CONN_INTERNAL_H
#define SOCKIT_CONN_INTERNAL_H

#include "internal.h"
#include "layer.h"

enum {
    F_CONNECTING = 1 << 0,    /* connect() in progress */
    F_PAUSED = 1 << 1,        /* the user paused reading */
    F_PEER_EOF = 1 << 2,      /* the peer's FIN arrived */
    F_SHUT_WANTED = 1 << 3,   /* sk_conn_shutdown(): send FIN once the queue is empty */
    F_SHUT_DONE = 1 << 4,     /* our FIN is sent */
    F_CLOSING = 1 << 5,       /* sk_conn_close(): flush, FIN, linger; no more user callbacks */
    F_CLOSED = 1 << 6,        /* fd closed; on_close and free are queued */
    F_ABOVE_HIGH = 1 << 7,    /* the queue passed the high watermark; on_drain owed */
    F_EOF_REPORTED = 1 << 8,  /* on_eof was called (or the conn closed at the FIN) */
    F_STARTING = 1 << 9,      /* a layer is being brought up (a TLS handshake) */
    F_OUTGOING = 1 << 11,     /* made by sk_conn_connect(), not accepted */
    F_RESET_WANTED = 1 << 10, /* closing because we refused the peer's input: once what we
                               * sent has reached it, reset instead of FIN (sk__conn_reset_soon) */
};

typedef struct outq {
    size_t head, len, cap; /* bytes data[head .. head+len) wait for the kernel */
    uint8_t data[];
} outq;

/* A conn joined to another by splice (bridge.c, conn_splice.c). The pipe is this conn's
 * output on its way from `from`'s socket to ours; `to` is the conn whose pipe our input goes
 * into. Made at sk__conn_splice_to(); the pipe itself at the first byte. */
typedef struct sk__splice {
    sk_conn *to, *from;
    int pipe_r, pipe_w; /* -1 until the first byte */
    uint32_t len, cap;  /* bytes in the pipe, and its size */
    uint32_t want;      /* the size to ask for */
    uint64_t moved_in;  /* bytes read from our socket into to's pipe */
} sk__splice;

/* What only some conns need: settings that differ from the defaults, a deadline, buffered
 * bytes, layers. A new conn points at the shared read-only defaults (sk__conn_defaults) and
 * gets its own copy the first time it writes one of these (sk__conn_own), so an idle conn
 * costs only its hot part: 72 bytes. */
typedef struct sk__conn_cold {
    uint8_t *in; /* a partial frame, or frames held while paused */
    uint32_t in_len, in_cap;
    outq *out;
    sk__layer *top; /* the top of the layer stack; NULL: the socket alone */
    sk__splice *sp; /* joined by splice; NULL: not */
    sk_timer *timer;
    uint64_t last_active;
    uint32_t max_frame;
    uint32_t low, high, limit;
    uint32_t idle_ms, linger_ms, connect_ms, start_ms;
    /* With SK_EVENTS_CONN_STATS (the cold part is then made with the conn), for SK_EV_CLOSED. */
    uint64_t opened_ms, bytes_in, bytes_out;
} sk__conn_cold;

struct sk_conn {
    sk__io io; /* io.fd is -1 - fd once closed, until on_close has run */
    sk_loop *loop;
    const sk_conn_callbacks *cb;
    void *data;
    sk__conn_cold *x;     /* &sk__conn_defaults until the conn needs its own */
    sk__release *release; /* the listener's admission count, told when the conn closes */
    uint16_t flags;
    uint8_t frame_kind;
    int close_reason;
};

/* Output waits: in the queue, or in the splice pipe. */
static inline bool sk__conn_has_output(const sk_conn *c)
{
    return c->x->out || (c->x->sp && c->x->sp->len);
}
static inline size_t sk__conn_pipe_bytes(const sk_conn *c)
{
    return c->x->sp ? c->x->sp->len : 0;
}

/* ---- conn_core.c ---- */
extern const sk__conn_cold sk__conn_defaults;
bool sk__conn_owns_cold(const sk_conn *c);
/* The conn's own cold part, made on first use (last_active set to now): NULL if out of
 * memory. Call before writing any field of c->x. */
sk__conn_cold *sk__conn_own(sk_conn *c);
/* The socket, also while on_close runs (after the conn is closed for everything else). */
int sk__conn_socket(const sk_conn *c);
void sk__conn_free(sk_conn *c);  /* after on_close: layers, buffers, socket, conn */
void sk__conn_touch(sk_conn *c); /* progress: push the idle or linger deadline */
uint32_t sk__conn_current_period(const sk_conn *c);   /* the deadline the state needs, or 0 */
void sk__conn_arm_timer(sk_conn *c, uint32_t period); /* period ms after the last activity */
int sk__conn_make_timer(sk_conn *c);                  /* the one timer, now: 0 or -ENOMEM */
bool sk__conn_reading(const sk_conn *c);       /* reading is wanted (to deliver, or to discard) */
int sk__conn_start_layers(sk_conn *c);         /* 1 all up, 0 waiting, or a failure code */
bool sk__conn_layer_pending(const sk_conn *c); /* a layer holds bytes the socket will not show */
void sk__conn_send_fin(sk_conn *c);            /* half-close our direction, once */
void sk__conn_finish(sk_conn *c, int reason);  /* ended now; on_close, close(fd) at iteration end */
void sk__conn_fail(sk_conn *c, int reason);    /* finish, keeping a reason of ours if we had one */
void sk__conn_abort(sk_conn *c);               /* finish with a reset */
void sk__conn_after_flush(sk_conn *c);         /* the queue is empty: FIN, or finish, if due */
/* F_RESET_WANTED and the queue is empty: reset once the kernel's send queue is acknowledged. */
void sk__conn_reset_soon(sk_conn *c);
void sk__conn_begin_close(sk_conn *c); /* sk_conn_close() */

/* The conn moved n bytes in (or out): the loop's counters, and the conn's own if it has them. */
void sk__conn_count_in(sk_conn *c, size_t n);
void sk__conn_count_out(sk_conn *c, size_t n);
/* SK_EV_CLOSED and the close counters, once, just before on_close. */
void sk__conn_report_close(sk_conn *c);

/* Undo c's splice links both ways and close its pipe (what it holds is lost); the counts stay
 * until the conn is freed. */
void sk__conn_unsplice(sk_conn *c);

/* ---- conn_splice.c ---- */
/* From now on a's input goes into b's pipe (pipe_size 0: the default), or back to the copy
 * (b NULL; what a's old target still holds in its pipe is still delivered). 0 or -ENOMEM. */
int sk__conn_splice_to(sk_conn *a, sk_conn *b, size_t pipe_size);
/* The splice path turned itself off: read with recv() instead (no byte was lost). */
#define SK__SPLICE_OFF (-ENOSYS)
/* Move what a's socket has into its target's pipe: bytes, 0 at the peer's FIN, -EAGAIN,
 * SK__SPLICE_OFF, or a failure code. */
ssize_t sk__splice_in(sk_conn *a);
/* Move c's pipe into its socket: bytes, -EAGAIN, or a failure code. */
ssize_t sk__splice_out(sk_conn *c);
/* Bytes read from c's socket by splice so far. */
uint64_t sk__conn_spliced_bytes(const sk_conn *c);

/* ---- conn_io.c ---- */
void sk__conn_flush(sk_conn *c);
void sk__conn_on_readable(sk_conn *c);
void sk__conn_deliver_held(sk_conn *c);

#endif
