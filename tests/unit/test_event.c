/* Events and counters: what a sink sees and what sk_loop_counters() says for conns that come
 * and go, with and without per-conn statistics. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

typedef struct seen {
    sk_event_kind kinds[64];
    size_t n;
    int closed_err, closed_cause;
    uint64_t closed_in, closed_out;
    const char *layer;
} seen;

static void record(const sk_event *ev, void *arg)
{
    seen *s = arg;
    if (ev->kind == SK_EV_TRACE)
        return;
    if (s->n < sizeof s->kinds / sizeof s->kinds[0])
        s->kinds[s->n++] = ev->kind;
    if (ev->kind == SK_EV_CLOSED && !s->closed_in) {
        s->closed_err = ev->err;
        s->closed_cause = ev->cause;
        s->closed_in = ev->bytes_in;
        s->closed_out = ev->bytes_out;
    }
}

static size_t count_kind(const seen *s, sk_event_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->kinds[i] == k;
    return n;
}

/* One client connects to an echo server, sends a line, gets it back, closes. */
static void echo_once(unsigned flags, seen *s, sk_counters *after)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_loop_set_events(loop, flags, record, s);
    tserver srv;
    tserver_init(&srv, loop);
    srv.kind = SK_FRAME_LINE;
    srv.echo = true;
    srv.cbs = &tconn_cbs_no_eof; /* the server closes at the client's FIN */
    REQUIRE(tserver_listen(&srv, NULL, NULL) == 0);
    tconn cl;
    tconn_init(&cl);
    REQUIRE(sk_conn_connect(loop, &srv.addr, 5000, &tconn_cbs, &cl, &cl.conn) == 0);
    CHECK(sk_conn_set_framing(cl.conn, SK_FRAME_LINE, 0) == 0);
    CHECK(run_until(loop, &cl.connected, 5000));
    CHECK(sk_conn_write_frame(cl.conn, "hello", 5) == 0);
    uint64_t deadline = util_now_ms() + 5000;
    while (cl.nframes < 1 && util_now_ms() < deadline)
        sk_loop_run_once(loop, 10);
    CHECK(cl.nframes == 1);
    sk_conn_close(cl.conn);
    CHECK(run_until(loop, &cl.closed, 5000));
    REQUIRE(srv.naccepted == 1);
    CHECK(run_until(loop, &srv.conns[0].closed, 5000));
    sk_loop_counters(loop, after);
    tconn_finish(loop, &cl);
    tserver_close(&srv);
    sk_loop_free(loop);
}

TEST(event_counters_count_a_conn_pair)
{
    seen s = {0};
    sk_counters c;
    echo_once(0, &s, &c);
    CHECK(c.accepted == 1);
    CHECK(c.connects == 1);
    CHECK(c.connected == 1);
    CHECK(c.active == 0);
    CHECK(c.closed == 2); /* the client and the server side */
    CHECK(c.closed_by[SK_CLOSE_CLEAN] == 2);
    /* "hello\n" out and back, on each side */
    CHECK(c.bytes_in == 12 && c.bytes_out == 12);
    CHECK(count_kind(&s, SK_EV_LISTENING) == 1);
    CHECK(count_kind(&s, SK_EV_ACCEPTED) == 1);
    CHECK(count_kind(&s, SK_EV_CONNECTED) == 1);
    CHECK(count_kind(&s, SK_EV_CLOSED) == 2);
    CHECK(s.closed_in == 0); /* no per-conn statistics unless asked */
}

TEST(event_conn_stats_report_bytes_at_close)
{
    seen s = {0};
    sk_counters c;
    echo_once(SK_EVENTS_CONN_STATS, &s, &c);
    CHECK(count_kind(&s, SK_EV_CLOSED) == 2);
    CHECK(s.closed_err == 0 && s.closed_cause == SK_CLOSE_CLEAN);
    CHECK(s.closed_in == 6 && s.closed_out == 6);
}

TEST(event_close_causes_have_names)
{
    CHECK(sk_close_cause_of(0) == SK_CLOSE_CLEAN);
    CHECK(sk_close_cause_of(-ECONNRESET) == SK_CLOSE_RESET);
    CHECK(sk_close_cause_of(-EMSGSIZE) == SK_CLOSE_FRAME_TOO_LARGE);
    CHECK(sk_close_cause_of(SK_ERR_TLS_TRUNCATED) == SK_CLOSE_TRUNCATED);
    CHECK(sk_close_cause_of(-EIO) == SK_CLOSE_OTHER);
    CHECK(strcmp(sk_close_cause_name(SK_CLOSE_FRAME_TOO_LARGE), "frame_too_large") == 0);
    CHECK(strcmp(sk_close_cause_name((sk_close_cause)99), "other") == 0);
    CHECK(strcmp(sk_refuse_cause_name(SK_REFUSE_PER_IP), "per_ip") == 0);
}
