/* A bridge: two conns joined (include/sockit/bridge.h). It is built on the public conn API
 * alone: each side's callbacks move bytes to the other side and carry its ends across. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

typedef struct side {
    sk_conn *conn;
    struct side *other;
    sk_bridge *br;
    uint64_t bytes; /* read here, written to the other side */
    int reason;
    bool eof, closed;
} side;

struct sk_bridge {
    side s[2];
    sk_bridge_done_cb done;
    void *arg;
};

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    side *s = sk_conn_data(c);
    side *o = s->other;
    if (o->closed || sk_conn_write(o->conn, data, len) < 0)
        return; /* the other side is gone or going: nothing can carry this any more */
    s->bytes += len;
    if (!sk_conn_writable(o->conn))
        sk_conn_pause_reading(c); /* until the other side's on_drain */
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
    if (o->closed) {
        sk_conn_close(c);
        return;
    }
    sk_conn_shutdown(o->conn); /* FIN to the other side once what came before is delivered */
    if (o->eof) {              /* both directions are done */
        sk_conn_close(c);
        sk_conn_close(o->conn);
    }
}

static void on_close(sk_conn *c, int reason)
{
    side *s = sk_conn_data(c);
    side *o = s->other;
    s->closed = true;
    s->reason = reason;
    if (!o->closed) {
        if (sk_close_cause_of(reason) == SK_CLOSE_RESET)
            sk_conn_abort(o->conn);
        else
            sk_conn_close(o->conn);
        return;
    }
    sk_bridge *br = s->br;
    sk_bridge_result r = {.a_reason = br->s[0].reason,
                          .b_reason = br->s[1].reason,
                          .a_to_b = br->s[0].bytes,
                          .b_to_a = br->s[1].bytes};
    if (br->done)
        br->done(br, &r, br->arg);
    free(br);
}

static const sk_conn_callbacks side_callbacks = {
    .on_frame = on_frame, .on_eof = on_eof, .on_drain = on_drain, .on_close = on_close};

SK_API int sk_bridge_join(sk_conn *a, sk_conn *b, sk_bridge_done_cb done, void *arg,
                          sk_bridge **out)
{
    sk_bridge *br = calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    if (sk_conn_set_framing(a, SK_FRAME_RAW, 0) < 0 ||
        sk_conn_set_framing(b, SK_FRAME_RAW, 0) < 0) {
        free(br);
        return -ENOMEM;
    }
    br->done = done;
    br->arg = arg;
    sk_conn *conns[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        br->s[i] = (side){.conn = conns[i], .other = &br->s[1 - i], .br = br};
        sk_conn_set_data(conns[i], &br->s[i]);
        sk_conn_set_callbacks(conns[i], &side_callbacks);
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
    *a_to_b = br->s[0].bytes;
    *b_to_a = br->s[1].bytes;
}
