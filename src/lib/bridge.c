/* A bridge: two ends joined (include/sockit/bridge.h). Side a is always a conn; side b is a
 * conn (sk_bridge_join) or a pair of descriptors (sk_bridge_join_fds, fdend.c). The rules are
 * written once, on either kind of side: what one side reads is written to the other, which
 * pauses the reader while it is above its high watermark; an end of input becomes a FIN (a
 * shutdown) on the other side; a reset becomes a reset; both inputs ended close both. For two
 * plain conns the bytes skip user space: conn_splice.c moves them, the bridge keeps the ends. */
#include <errno.h>
#include <stdlib.h>

#include "conn_internal.h"
#include "fdend.h"

typedef struct side {
    sk_conn *conn; /* a conn side */
    sk__fdend *fd; /* or the descriptor side (b only) */
    struct side *other;
    sk_bridge *br;
    uint64_t bytes;            /* read here and passed on (copied; splice counts its own) */
    uint64_t spliced_at_close; /* sk__conn_spliced_bytes() when the conn closed */
    sk_bridge_filter_cb filter;
    void *filter_arg;
    int reason;
    bool eof, closed;
    bool splice_ok; /* both ends are plain sockets: this direction may splice */
    bool spliced;   /* it does now */
} side;

/* A direction starts on the copy and turns to splice at its first read this large: the socket
 * had that much waiting, which is bulk. Idle and chatty pairs (however long they live) never
 * take pipes, two descriptors and kernel buffers per direction, and a small message costs
 * less copied than spliced. HAProxy's splice-auto decides alike, when a read fills a buffer. */
#define SPLICE_READ (16 * 1024)

struct sk_bridge {
    side s[2];
    size_t pipe_size;
    sk_bridge_done_cb done;
    sk_bridge_end_cb on_end;
    void *arg;
};

static sk_bridge_dir dir_of(const side *s)
{
    return s == &s->br->s[0] ? SK_BRIDGE_A_TO_B : SK_BRIDGE_B_TO_A;
}

/* ---------------------------------------------------------------- either kind of side */

static int side_write(side *s, const void *data, size_t len)
{
    return s->conn ? sk_conn_write(s->conn, data, len) : sk__fdend_write(s->fd, data, len);
}

static bool side_writable(const side *s)
{
    return s->conn ? sk_conn_writable(s->conn) : sk__fdend_writable(s->fd);
}

static void side_reading(side *s, bool on)
{
    if (!s->conn)
        sk__fdend_want_input(s->fd, on);
    else if (on)
        sk_conn_resume_reading(s->conn);
    else
        sk_conn_pause_reading(s->conn);
}

static void side_shutdown(side *s)
{
    if (s->conn)
        sk_conn_shutdown(s->conn);
    else
        sk__fdend_shutdown(s->fd);
}

static void side_close(side *s, bool reset)
{
    if (s->conn && reset)
        sk_conn_abort(s->conn);
    else if (s->conn)
        sk_conn_close(s->conn);
    else
        sk__fdend_close(s->fd, reset);
}

/* ---------------------------------------------------------------- the rules */

static bool can_splice(const sk_conn *from, const sk_conn *to);

/* After bytes went the copy way: a bulk direction whose ends allow it turns to splice. The
 * other side must hold nothing queued (its pipe is drained before its queue, so bytes copied
 * earlier would come after those spliced later); if it does, a later chunk tries again. */
static void maybe_splice(side *s, size_t read)
{
    side *o = s->other;
    if (!s->splice_ok || s->spliced || s->filter || read < SPLICE_READ ||
        !can_splice(s->conn, o->conn))
        return;
    if (sk__conn_splice_to(s->conn, o->conn, s->br->pipe_size) == 0)
        s->spliced = true;
}

/* Pass bytes read from s on to the other side (data NULL: the FIN behind them). */
static int forward(side *s, const void *data, size_t len)
{
    side *o = s->other;
    if (o->closed)
        return -EPIPE; /* the other side is gone or going: nothing can carry this any more */
    if (!data) {
        side_shutdown(o);
        if (o->eof) { /* both directions are done */
            side_close(s, false);
            side_close(o, false);
        }
        return 0;
    }
    int rc = side_write(o, data, len);
    if (rc < 0)
        return rc;
    s->bytes += len;
    if (!side_writable(o))
        side_reading(s, false); /* until the other side drains */
    else
        maybe_splice(s, len);
    return 0;
}

static void got_bytes(side *s, const void *data, size_t len)
{
    if (s->filter)
        s->filter(s->br, dir_of(s), data, len, s->filter_arg);
    else
        forward(s, data, len);
}

static void drained(side *s)
{
    if (!s->other->closed)
        side_reading(s->other, true);
}

static void got_eof(side *s)
{
    side *o = s->other;
    s->eof = true;
    if (s->br->on_end)
        s->br->on_end(s->br, dir_of(s), 0, s->br->arg);
    if (o->closed) {
        side_close(s, false);
        return;
    }
    if (s->filter)
        s->filter(s->br, dir_of(s), NULL, 0, s->filter_arg);
    else
        forward(s, NULL, 0);
}

/* s is closed for good: carry its end across, and once both are closed, report and free. */
static void closed(side *s, int reason)
{
    side *o = s->other;
    s->closed = true;
    s->reason = reason;
    if (s->conn)
        s->spliced_at_close = sk__conn_spliced_bytes(s->conn);
    if (!s->eof && reason != 0 && s->br->on_end)
        s->br->on_end(s->br, dir_of(s), reason, s->br->arg);
    if (!o->closed) {
        side_close(o, sk_close_cause_of(reason) == SK_CLOSE_RESET);
        return;
    }
    sk_bridge *br = s->br;
    uint64_t a_to_b, b_to_a;
    sk_bridge_counts(br, &a_to_b, &b_to_a);
    sk_bridge_result r = {.a_reason = br->s[0].reason,
                          .b_reason = br->s[1].reason,
                          .a_to_b = a_to_b,
                          .b_to_a = b_to_a,
                          .spliced = br->s[0].spliced_at_close || br->s[1].spliced_at_close};
    if (br->done)
        br->done(br, &r, br->arg);
    sk__fdend_free(br->s[1].fd);
    free(br);
}

/* ---------------------------------------------------------------- a conn side */

static void conn_frame(sk_conn *c, const void *data, size_t len)
{
    got_bytes(sk_conn_data(c), data, len);
}

static void conn_drain(sk_conn *c)
{
    drained(sk_conn_data(c));
}

static void conn_eof(sk_conn *c)
{
    got_eof(sk_conn_data(c));
}

static void conn_close(sk_conn *c, int reason)
{
    closed(sk_conn_data(c), reason);
}

static const sk_conn_callbacks side_callbacks = {
    .on_frame = conn_frame, .on_eof = conn_eof, .on_drain = conn_drain, .on_close = conn_close};

/* ---------------------------------------------------------------- a descriptor side */

static void fd_data(void *arg, const void *data, size_t len)
{
    got_bytes(arg, data, len);
}

static void fd_eof(void *arg)
{
    got_eof(arg);
}

static void fd_drain(void *arg)
{
    drained(arg);
}

static void fd_end(void *arg, int reason)
{
    closed(arg, reason);
}

static const sk__fdend_hooks fd_hooks = {
    .on_data = fd_data, .on_eof = fd_eof, .on_drain = fd_drain, .on_end = fd_end};

/* ---------------------------------------------------------------- joining */

/* Both ends plain sockets (or layers that add nothing now), the reader holding no partial
 * input, the writer nothing queued, neither ending: from's bytes can skip user space. */
static bool can_splice(const sk_conn *from, const sk_conn *to)
{
    const sk_conn *c[2] = {from, to};
    for (int i = 0; i < 2; i++)
        if (!sk__conn_layers_passthrough(c[i]) || c[i]->x->out || c[i]->x->in_len ||
            (c[i]->flags & (F_PEER_EOF | F_CLOSING | F_CLOSED | F_SHUT_WANTED)))
            return false;
    return true;
}

/* Plain sockets on both sides, or layers that will be passthrough (a PROXY header read): the
 * direction may splice once it is bulk. TLS never. */
static bool may_splice(const sk_conn *c)
{
    for (const sk__layer *l = c->x->top; l; l = l->below)
        if (!l->ops->passthrough)
            return false;
    return true;
}

static sk_bridge *new_bridge(const sk_bridge_options *o, sk_bridge_done_cb done, void *arg)
{
    sk_bridge *br = calloc(1, sizeof *br);
    if (!br)
        return NULL;
    br->done = done;
    br->on_end = o->on_end;
    br->arg = arg;
    for (int i = 0; i < 2; i++)
        br->s[i] = (side){.other = &br->s[1 - i], .br = br};
    return br;
}

static void take_conn(side *s, sk_conn *c, bool splice_ok)
{
    s->conn = c;
    s->splice_ok = splice_ok;
    sk_conn_set_data(c, s);
    sk_conn_set_callbacks(c, &side_callbacks);
    sk_conn_resume_reading(c);
}

SK_API int sk_bridge_join(sk_conn *a, sk_conn *b, const sk_bridge_options *opts,
                          sk_bridge_done_cb done, void *arg, sk_bridge **out)
{
    sk_bridge_options o = opts ? *opts : (sk_bridge_options){0};
    sk_bridge *br = new_bridge(&o, done, arg);
    if (!br)
        return -ENOMEM;
    if (sk_conn_set_framing(a, SK_FRAME_RAW, 0) < 0 ||
        sk_conn_set_framing(b, SK_FRAME_RAW, 0) < 0) {
        free(br);
        return -ENOMEM;
    }
    bool splice = !(o.flags & SK_BRIDGE_NO_SPLICE) && may_splice(a) && may_splice(b);
    br->pipe_size = o.pipe_size;
    take_conn(&br->s[0], a, splice);
    take_conn(&br->s[1], b, splice);
    if (out)
        *out = br;
    return 0;
}

SK_API int sk_bridge_join_fds(sk_conn *a, int in_fd, int out_fd, const sk_bridge_options *opts,
                              sk_bridge_done_cb done, void *arg, sk_bridge **out)
{
    sk_bridge_options o = opts ? *opts : (sk_bridge_options){0};
    sk_bridge *br = new_bridge(&o, done, arg);
    if (!br)
        return -ENOMEM;
    int rc = sk_conn_set_framing(a, SK_FRAME_RAW, 0);
    if (rc == 0)
        rc = sk__fdend_open(sk_conn_loop(a), in_fd, out_fd, &fd_hooks, &br->s[1], &br->s[1].fd);
    if (rc < 0) {
        free(br);
        return rc;
    }
    take_conn(&br->s[0], a, false);
    sk__fdend_want_input(br->s[1].fd, true);
    if (out)
        *out = br;
    return 0;
}

/* ---------------------------------------------------------------- while joined */

SK_API void sk_bridge_close(sk_bridge *br)
{
    /* Each side once: closing one may close the other and free the bridge. */
    side *a = &br->s[0], *b = &br->s[1];
    bool b_open = !b->closed;
    if (!a->closed)
        side_close(a, false); /* a conn: its end comes later, from the loop */
    if (b_open && !b->closed)
        side_close(b, false);
}

SK_API void sk_bridge_counts(const sk_bridge *br, uint64_t *a_to_b, uint64_t *b_to_a)
{
    uint64_t n[2];
    for (int i = 0; i < 2; i++) {
        const side *s = &br->s[i];
        n[i] = s->bytes;
        if (s->conn)
            n[i] += s->closed ? s->spliced_at_close : sk__conn_spliced_bytes(s->conn);
    }
    *a_to_b = n[0];
    *b_to_a = n[1];
}

SK_API bool sk_bridge_spliced(const sk_bridge *br, sk_bridge_dir dir)
{
    const side *s = &br->s[dir];
    return s->spliced || (s->splice_ok && !s->filter);
}

SK_API int sk_bridge_set_filter(sk_bridge *br, sk_bridge_dir dir, sk_bridge_filter_cb fn, void *arg)
{
    side *s = &br->s[dir];
    if (fn && s->spliced && !s->closed)
        sk__conn_splice_to(s->conn, NULL, 0); /* what its pipe holds still goes out first */
    if (fn)
        s->spliced = false;
    s->filter = fn;
    s->filter_arg = arg;
    return 0;
}

SK_API int sk_bridge_forward(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len)
{
    return forward(&br->s[dir], data, len); /* -EPIPE once the other side is closed */
}

SK_API void sk_bridge_hold(sk_bridge *br, sk_bridge_dir dir, bool hold)
{
    side *s = &br->s[dir];
    if (s->closed)
        return;
    if (hold)
        side_reading(s, false);
    else if (s->other->closed || side_writable(s->other))
        side_reading(s, true);
}
