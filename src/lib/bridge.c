/* A bridge: two conns joined (include/sockit/bridge.h). The copy path is built on the public
 * conn API alone: each side's callbacks move bytes to the other side and carry its ends
 * across. The splice path (plain sockets on both sides) is the conn's own (conn_splice.c):
 * the bridge only links the two conns and keeps the ends. */
#include <errno.h>
#include <stdlib.h>

#include "conn_internal.h"

typedef struct side {
    sk_conn *conn;
    struct side *other;
    sk_bridge *br;
    uint64_t bytes; /* read here and passed on (copied; splice counts its own) */
    sk_bridge_filter_cb filter;
    void *filter_arg;
    int reason;
    uint64_t spliced_at_close; /* sk__conn_spliced_bytes() when the conn closed */
    bool eof, closed, spliced;
} side;

struct sk_bridge {
    side s[2];
    sk_bridge_done_cb done;
    sk_bridge_end_cb on_end;
    void *arg;
};

static sk_bridge_dir dir_of(const side *s)
{
    return s == &s->br->s[0] ? SK_BRIDGE_A_TO_B : SK_BRIDGE_B_TO_A;
}

/* Pass bytes read from s on to the other side. */
static int forward(side *s, const void *data, size_t len)
{
    side *o = s->other;
    if (o->closed)
        return -EPIPE; /* the other side is gone or going: nothing can carry this any more */
    if (!data) {       /* the FIN, after what came before it */
        sk_conn_shutdown(o->conn);
        if (o->eof) { /* both directions are done */
            sk_conn_close(s->conn);
            sk_conn_close(o->conn);
        }
        return 0;
    }
    int rc = sk_conn_write(o->conn, data, len);
    if (rc < 0)
        return rc;
    s->bytes += len;
    if (!sk_conn_writable(o->conn))
        sk_conn_pause_reading(s->conn); /* until the other side's on_drain */
    return 0;
}

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    side *s = sk_conn_data(c);
    if (s->filter)
        s->filter(s->br, dir_of(s), data, len, s->filter_arg);
    else
        forward(s, data, len);
}

static void on_drain(sk_conn *c)
{
    side *s = sk_conn_data(c);
    if (!s->other->closed)
        sk_conn_resume_reading(s->other->conn);
}

static void on_eof(sk_conn *c)
{
    side *s = sk_conn_data(c);
    side *o = s->other;
    s->eof = true;
    if (s->br->on_end)
        s->br->on_end(s->br, dir_of(s), 0, s->br->arg);
    if (o->closed) {
        sk_conn_close(c);
        return;
    }
    if (s->filter)
        s->filter(s->br, dir_of(s), NULL, 0, s->filter_arg);
    else
        forward(s, NULL, 0);
}

static void on_close(sk_conn *c, int reason)
{
    side *s = sk_conn_data(c);
    side *o = s->other;
    s->closed = true;
    s->reason = reason;
    s->spliced_at_close = sk__conn_spliced_bytes(c);
    if (!s->eof && reason != 0 && s->br->on_end)
        s->br->on_end(s->br, dir_of(s), reason, s->br->arg);
    if (!o->closed) {
        if (sk_close_cause_of(reason) == SK_CLOSE_RESET)
            sk_conn_abort(o->conn);
        else
            sk_conn_close(o->conn);
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
    free(br);
}

static const sk_conn_callbacks side_callbacks = {
    .on_frame = on_frame, .on_eof = on_eof, .on_drain = on_drain, .on_close = on_close};

/* Both sides plain sockets with nothing queued or held: the bytes can skip user space. */
static bool can_splice(const sk_conn *a, const sk_conn *b)
{
    const sk_conn *c[2] = {a, b};
    for (int i = 0; i < 2; i++)
        if (c[i]->x->top || c[i]->x->out || c[i]->x->in_len ||
            (c[i]->flags & (F_PEER_EOF | F_CLOSING | F_CLOSED | F_SHUT_WANTED)))
            return false;
    return true;
}

SK_API int sk_bridge_join(sk_conn *a, sk_conn *b, const sk_bridge_options *opts,
                          sk_bridge_done_cb done, void *arg, sk_bridge **out)
{
    sk_bridge_options o = opts ? *opts : (sk_bridge_options){0};
    sk_bridge *br = calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    if (sk_conn_set_framing(a, SK_FRAME_RAW, 0) < 0 ||
        sk_conn_set_framing(b, SK_FRAME_RAW, 0) < 0) {
        free(br);
        return -ENOMEM;
    }
    bool splice = !(o.flags & SK_BRIDGE_NO_SPLICE) && can_splice(a, b) &&
                  sk__conn_splice_to(a, b, o.pipe_size) == 0;
    if (splice && sk__conn_splice_to(b, a, o.pipe_size) < 0) {
        sk__conn_splice_to(a, NULL, 0);
        splice = false;
    }
    br->done = done;
    br->on_end = o.on_end;
    br->arg = arg;
    sk_conn *conns[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        br->s[i] = (side){.conn = conns[i], .other = &br->s[1 - i], .br = br, .spliced = splice};
        sk_conn_set_data(conns[i], &br->s[i]);
        sk_conn_set_callbacks(conns[i], &side_callbacks);
        sk_conn_resume_reading(conns[i]);
    }
    if (out)
        *out = br;
    return 0;
}

SK_API void sk_bridge_close(sk_bridge *br)
{
    for (int i = 0; i < 2; i++)
        if (!br->s[i].closed)
            sk_conn_close(br->s[i].conn);
}

SK_API void sk_bridge_counts(const sk_bridge *br, uint64_t *a_to_b, uint64_t *b_to_a)
{
    uint64_t n[2];
    for (int i = 0; i < 2; i++) {
        const side *s = &br->s[i];
        n[i] = s->bytes + (s->closed ? s->spliced_at_close : sk__conn_spliced_bytes(s->conn));
    }
    *a_to_b = n[0];
    *b_to_a = n[1];
}

SK_API bool sk_bridge_spliced(const sk_bridge *br, sk_bridge_dir dir)
{
    return br->s[dir].spliced;
}

SK_API int sk_bridge_set_filter(sk_bridge *br, sk_bridge_dir dir, sk_bridge_filter_cb fn, void *arg)
{
    side *s = &br->s[dir];
    if (fn && s->spliced && !s->closed) {
        sk__conn_splice_to(s->conn, NULL, 0); /* what its pipe holds still goes out first */
        s->spliced = false;
    }
    s->filter = fn;
    s->filter_arg = arg;
    return 0;
}

SK_API int sk_bridge_forward(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len)
{
    side *s = &br->s[dir];
    if (s->other->closed || (s->other->conn->flags & F_SHUT_WANTED))
        return -EPIPE;
    return forward(s, data, len);
}

SK_API void sk_bridge_hold(sk_bridge *br, sk_bridge_dir dir, bool hold)
{
    side *s = &br->s[dir];
    if (s->closed)
        return;
    if (hold)
        sk_conn_pause_reading(s->conn);
    else if (sk_conn_writable(s->other->conn) || s->other->closed)
        sk_conn_resume_reading(s->conn);
}
