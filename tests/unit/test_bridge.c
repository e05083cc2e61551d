/* Bridges: two conns joined. The outside ends are raw sockets the test controls: `client`
 * connects to a listener whose conn is side a; side b connects to a raw listening socket whose
 * accepted end is `target`. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_internal.h"
#include "util.h"

typedef struct fixture {
    sk_loop *loop;
    sk_listener *l;
    sk_conn *a, *b;
    bool b_up, done;
    sk_bridge *br;
    sk_bridge_result r;
    int ends;          /* on_end calls */
    int end_reason[2]; /* per direction */
    int client, target, target_listener;
} fixture;

static void keep_accepted(sk_listener *l, sk_conn *c)
{
    fixture *f = sk_listener_data(l);
    f->a = c;
}

static void b_connected(sk_conn *c)
{
    fixture *f = sk_conn_data(c);
    f->b_up = true;
}

static void b_frame(sk_conn *c, const void *data, size_t len)
{
    (void)c, (void)data, (void)len; /* nothing arrives before the join */
}

static const sk_conn_callbacks b_callbacks = {.on_connect = b_connected, .on_frame = b_frame};

static void bridge_done(sk_bridge *br, const sk_bridge_result *r, void *arg)
{
    (void)br;
    fixture *f = arg;
    f->r = *r;
    f->done = true;
}

static bool have_a(void *arg)
{
    return ((fixture *)arg)->a != NULL;
}

static void side_ended(sk_bridge *br, sk_bridge_dir dir, int reason, void *arg)
{
    fixture *f = arg;
    f->ends++;
    f->end_reason[dir] = reason;
}

/* Everything up and joined: client <-> a ~ b <-> target. flags: sk_bridge_options.flags. */
static bool fixture_open(fixture *f, unsigned flags)
{
    memset(f, 0, sizeof *f);
    f->client = f->target = f->target_listener = -1;
    if (sk_loop_new(&f->loop) != 0)
        return false;
    sk_addr any, front, back;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    if (sk_listener_open(f->loop, &any, NULL, keep_accepted, f, &f->l) != 0)
        return false;
    sk_listener_addr(f->l, &front);
    f->target_listener = raw_listen(AF_INET, 4, &back);
    f->client = raw_connect(&front);
    if (f->target_listener < 0 || f->client < 0 ||
        sk_conn_connect(f->loop, &back, 5000, &b_callbacks, f, &f->b) != 0)
        return false;
    if (!run_until(f->loop, &f->b_up, 5000) || !run_until_fn(f->loop, have_a, f, 5000))
        return false;
    f->target = accept4(f->target_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    sk_bridge_options o = {.flags = flags, .on_end = side_ended};
    return f->target >= 0 && sk_bridge_join(f->a, f->b, &o, bridge_done, f, &f->br) == 0;
}

static void fixture_close(fixture *f)
{
    int fds[] = {f->client, f->target, f->target_listener};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (f->l)
        sk_listener_close(f->l);
    if (f->loop) {
        run_until(f->loop, &f->done, 3000);
        sk_loop_run_once(f->loop, 0);
        sk_loop_free(f->loop);
    }
}

/* Each behaviour is checked on both paths: splice (plain sockets, the default) and copy. */
#define BOTH_PATHS(name)                                                                           \
    static void name(unsigned flags);                                                              \
    TEST(name##_spliced)                                                                           \
    {                                                                                              \
        name(0);                                                                                   \
    }                                                                                              \
    TEST(name##_copied)                                                                            \
    {                                                                                              \
        name(SK_BRIDGE_NO_SPLICE);                                                                 \
    }                                                                                              \
    static void name(unsigned flags)

BOTH_PATHS(bridge_carries_bytes_both_ways_and_half_closes)
{
    fixture f;
    REQUIRE(fixture_open(&f, flags));
    CHECK(sk_bridge_spliced(f.br, SK_BRIDGE_A_TO_B) == !flags);
    CHECK(sk_bridge_spliced(f.br, SK_BRIDGE_B_TO_A) == !flags);
    char buf[64];
    int end;
    REQUIRE(raw_send_all(f.loop, f.client, "hello", 5, 5000) == 0);
    CHECK(raw_recv(f.loop, f.target, buf, 5, 5000, &end) == 5 && memcmp(buf, "hello", 5) == 0);
    REQUIRE(raw_send_all(f.loop, f.target, "world!", 6, 5000) == 0);
    CHECK(raw_recv(f.loop, f.client, buf, 6, 5000, &end) == 6 && memcmp(buf, "world!", 6) == 0);

    /* the client's FIN reaches the target; the target's direction still flows */
    shutdown(f.client, SHUT_WR);
    CHECK(raw_recv(f.loop, f.target, buf, 1, 5000, &end) == 0 && end == RAW_EOF);
    REQUIRE(raw_send_all(f.loop, f.target, "late", 4, 5000) == 0);
    CHECK(raw_recv(f.loop, f.client, buf, 4, 5000, &end) == 4 && memcmp(buf, "late", 4) == 0);
    CHECK(!f.done);
    /* and the target's FIN ends the bridge, cleanly on both sides */
    shutdown(f.target, SHUT_WR);
    CHECK(raw_recv(f.loop, f.client, buf, 1, 5000, &end) == 0 && end == RAW_EOF);
    CHECK(run_until(f.loop, &f.done, 5000));
    CHECK(f.r.a_reason == 0 && f.r.b_reason == 0);
    CHECK(f.r.a_to_b == 5 && f.r.b_to_a == 10);
    CHECK(!f.r.spliced); /* a few bytes stay on the copy: splice is for bulk */
    CHECK(f.ends == 2 && f.end_reason[0] == 0 && f.end_reason[1] == 0); /* a FIN each way */
    fixture_close(&f);
}

BOTH_PATHS(bridge_carries_a_reset)
{
    fixture f;
    REQUIRE(fixture_open(&f, flags));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(f.target, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(f.target); /* RST */
    f.target = -1;
    CHECK(raw_wait_end(f.loop, f.client, 5000, NULL) == -ECONNRESET);
    CHECK(run_until(f.loop, &f.done, 5000));
    CHECK(f.r.b_reason == -ECONNRESET);
    CHECK(f.end_reason[SK_BRIDGE_B_TO_A] == -ECONNRESET);
    fixture_close(&f);
}

BOTH_PATHS(bridge_backpressure_bounds_memory)
{
    /* The target reads nothing: the bridge stops reading the client once b's queue passes
     * its high watermark, so what it holds stays bounded while the client pushes 16 MiB. */
    enum { TOTAL = 16 << 20, CHUNK = 65536 };
    fixture f;
    REQUIRE(fixture_open(&f, flags));
    unsigned char *buf = malloc(CHUNK);
    REQUIRE(buf);
    size_t sent = 0, max_queued = 0;
    uint64_t deadline = util_now_ms() + 3000;
    while (sent < TOTAL && util_now_ms() < deadline) {
        fill_pattern(buf, CHUNK, sent);
        ssize_t n = send(f.client, buf, CHUNK, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n; /* a partial send: the pattern restarts at sent next time */
        sk_loop_run_once(f.loop, n > 0 ? 0 : 10);
        size_t q = sk_conn_queued_bytes(f.b);
        max_queued = q > max_queued ? q : max_queued;
    }
    CHECK(sent < TOTAL);                    /* the client was held back */
    CHECK(max_queued <= 64 * 1024 + CHUNK); /* high watermark plus one read */
    printf("  %s: client pushed %zu KiB before it was held back; b's queue peaked at %zu KiB\n",
           flags ? "copy" : "splice", sent / 1024, max_queued / 1024);
    /* now the target reads: everything arrives, in order */
    shutdown(f.client, SHUT_WR);
    size_t got = 0;
    int end = RAW_GOT;
    while (got < sent && end == RAW_GOT) {
        size_t want = sent - got < CHUNK ? sent - got : CHUNK;
        size_t n = raw_recv(f.loop, f.target, buf, want, 5000, &end);
        CHECK(check_pattern(buf, n, got) == n);
        got += n;
    }
    CHECK(got == sent);
    free(buf);
    fixture_close(&f);
    CHECK(f.done && f.r.spliced == !flags); /* megabytes: bulk, spliced where allowed */
}

/* A filter that upper-cases what the client sends and forwards the FIN behind it. */
static void upper_filter(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len, void *arg)
{
    int *calls = arg;
    (*calls)++;
    char buf[256];
    if (!data) {
        sk_bridge_forward(br, dir, NULL, 0);
        return;
    }
    for (size_t i = 0; i < len && i < sizeof buf; i++) {
        char ch = ((const char *)data)[i];
        buf[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
    }
    sk_bridge_forward(br, dir, buf, len < sizeof buf ? len : sizeof buf);
}

TEST(bridge_filter_changes_bytes_and_forwards_the_fin)
{
    /* Set on a bridge that may splice: that direction copies from then on; the other may
     * still splice. */
    fixture f;
    REQUIRE(fixture_open(&f, 0));
    int calls = 0;
    REQUIRE(sk_bridge_set_filter(f.br, SK_BRIDGE_A_TO_B, upper_filter, &calls) == 0);
    CHECK(!sk_bridge_spliced(f.br, SK_BRIDGE_A_TO_B));
    CHECK(sk_bridge_spliced(f.br, SK_BRIDGE_B_TO_A));
    char buf[64];
    int end;
    REQUIRE(raw_send_all(f.loop, f.client, "hello", 5, 5000) == 0);
    CHECK(raw_recv(f.loop, f.target, buf, 5, 5000, &end) == 5 && memcmp(buf, "HELLO", 5) == 0);
    REQUIRE(raw_send_all(f.loop, f.target, "back", 4, 5000) == 0);
    CHECK(raw_recv(f.loop, f.client, buf, 4, 5000, &end) == 4 && memcmp(buf, "back", 4) == 0);
    shutdown(f.client, SHUT_WR);
    CHECK(raw_recv(f.loop, f.target, buf, 1, 5000, &end) == 0 && end == RAW_EOF);
    CHECK(calls == 2); /* the bytes, then the FIN */
    shutdown(f.target, SHUT_WR);
    CHECK(run_until(f.loop, &f.done, 5000));
    CHECK(f.r.a_to_b == 5 && f.r.b_to_a == 4);
    fixture_close(&f);
}

/* A filter that keeps what it gets and holds the reading: a link that delivers later. */
typedef struct held {
    sk_bridge *br;
    char data[64];
    size_t len;
    bool fin;
} held;

static void holding_filter(sk_bridge *br, sk_bridge_dir dir, const void *data, size_t len,
                           void *arg)
{
    held *h = arg;
    h->br = br;
    if (!data) {
        h->fin = true;
        return;
    }
    size_t n = len < sizeof h->data - h->len ? len : sizeof h->data - h->len;
    memcpy(h->data + h->len, data, n);
    h->len += n;
    sk_bridge_hold(br, dir, true);
}

TEST(bridge_filter_can_hold_and_forward_later)
{
    fixture f;
    REQUIRE(fixture_open(&f, SK_BRIDGE_NO_SPLICE));
    held h = {0};
    REQUIRE(sk_bridge_set_filter(f.br, SK_BRIDGE_A_TO_B, holding_filter, &h) == 0);
    char buf[64];
    int end;
    REQUIRE(raw_send_all(f.loop, f.client, "later", 5, 5000) == 0);
    for (int i = 0; i < 100 && h.len < 5; i++)
        sk_loop_run_once(f.loop, 10);
    CHECK(h.len == 5);
    CHECK(raw_recv(f.loop, f.target, buf, 5, 50, &end) == 0 && end == -ETIMEDOUT); /* held */
    CHECK(sk_bridge_forward(f.br, SK_BRIDGE_A_TO_B, h.data, h.len) == 0);
    sk_bridge_hold(f.br, SK_BRIDGE_A_TO_B, false);
    CHECK(raw_recv(f.loop, f.target, buf, 5, 5000, &end) == 5 && memcmp(buf, "later", 5) == 0);
    fixture_close(&f);
}

/* ---- a conn joined to descriptors (sk_bridge_join_fds), as `sockit connect` uses it:
 * client socket <-> a ~ (in pipe, out pipe) */

typedef struct fdfix {
    fixture f;        /* only a, client and the loop are used */
    int in_w, in_r;   /* the test writes in_w; the bridge reads in_r */
    int out_r, out_w; /* the bridge writes out_w; the test reads out_r */
} fdfix;

static bool fdfix_open(fdfix *x)
{
    fixture *f = &x->f;
    memset(x, 0, sizeof *x);
    f->client = f->target = f->target_listener = -1;
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
        return false;
    x->in_r = in[0], x->in_w = in[1], x->out_r = out[0], x->out_w = out[1];
    set_nonblock(x->out_r, true);
    sk_addr any, front;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    if (sk_loop_new(&f->loop) != 0 ||
        sk_listener_open(f->loop, &any, NULL, keep_accepted, f, &f->l) != 0)
        return false;
    sk_listener_addr(f->l, &front);
    f->client = raw_connect(&front);
    if (f->client < 0 || !run_until_fn(f->loop, have_a, f, 5000))
        return false;
    sk_bridge_options o = {.on_end = side_ended};
    return sk_bridge_join_fds(f->a, x->in_r, x->out_w, &o, bridge_done, f, &f->br) == 0;
}

static void fdfix_close(fdfix *x)
{
    /* The test's ends first: input ends, output has no reader, so the bridge ends; its own
     * ends after it is gone (it never closes them). */
    int ours[] = {x->in_w, x->out_r}, its[] = {x->in_r, x->out_w};
    for (int i = 0; i < 2; i++)
        if (ours[i] > 0)
            close(ours[i]);
    fixture_close(&x->f);
    for (int i = 0; i < 2; i++)
        if (its[i] > 0)
            close(its[i]);
}

/* Read want bytes from a non-blocking pipe, running the loop between tries: the bytes read. */
static size_t pipe_read(sk_loop *loop, int fd, void *buf, size_t want, int timeout_ms)
{
    size_t got = 0;
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    while (got < want && util_now_ms() < deadline) {
        ssize_t n = read(fd, (char *)buf + got, want - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        else
            sk_loop_run_once(loop, 10);
    }
    return got;
}

TEST(bridge_fds_carry_bytes_both_ways_and_eof_is_a_fin)
{
    fdfix x;
    REQUIRE(fdfix_open(&x));
    fixture *f = &x.f;
    char buf[64];
    int end;
    REQUIRE(write(x.in_w, "up", 2) == 2);
    CHECK(raw_recv(f->loop, f->client, buf, 2, 5000, &end) == 2 && memcmp(buf, "up", 2) == 0);
    REQUIRE(raw_send_all(f->loop, f->client, "down", 4, 5000) == 0);
    CHECK(pipe_read(f->loop, x.out_r, buf, 4, 5000) == 4 && memcmp(buf, "down", 4) == 0);
    close(x.in_w); /* standard input ends: a FIN to the peer, the other direction still flows */
    x.in_w = -1;
    CHECK(raw_recv(f->loop, f->client, buf, 1, 5000, &end) == 0 && end == RAW_EOF);
    REQUIRE(raw_send_all(f->loop, f->client, "more", 4, 5000) == 0);
    CHECK(pipe_read(f->loop, x.out_r, buf, 4, 5000) == 4 && memcmp(buf, "more", 4) == 0);
    shutdown(f->client, SHUT_WR); /* and the peer's FIN ends the bridge */
    CHECK(run_until(f->loop, &f->done, 5000));
    CHECK(f->r.a_reason == 0 && f->r.b_reason == 0);
    CHECK(f->r.a_to_b == 8 && f->r.b_to_a == 2);
    CHECK(fcntl(x.out_w, F_GETFD) >= 0 && fcntl(x.in_r, F_GETFD) >= 0); /* still open */
    fdfix_close(&x);
}

TEST(bridge_fds_output_reader_gone_resets_the_conn)
{
    fdfix x;
    REQUIRE(fdfix_open(&x));
    fixture *f = &x.f;
    close(x.out_r); /* nobody reads the output: writing it fails with EPIPE */
    x.out_r = -1;
    REQUIRE(raw_send_all(f->loop, f->client, "lost", 4, 5000) == 0);
    CHECK(raw_wait_end(f->loop, f->client, 5000, NULL) == -ECONNRESET);
    CHECK(run_until(f->loop, &f->done, 5000));
    CHECK(f->r.b_reason == -EPIPE);
    fdfix_close(&x);
}

TEST(bridge_fds_slow_output_holds_the_conn_back)
{
    /* The output is never read: the pipe fills, the bridge queues at most its high mark plus a
     * read, and stops reading the socket, so the peer is held back. */
    enum { CHUNK = 65536, TOTAL = 16 << 20 };
    fdfix x;
    REQUIRE(fdfix_open(&x));
    fixture *f = &x.f;
    unsigned char *buf = malloc(CHUNK);
    REQUIRE(buf);
    memset(buf, 'x', CHUNK);
    size_t sent = 0;
    uint64_t deadline = util_now_ms() + 3000;
    while (sent < TOTAL && util_now_ms() < deadline) {
        ssize_t n = send(f->client, buf, CHUNK, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        sk_loop_run_once(f->loop, n > 0 ? 0 : 10);
    }
    CHECK(sent < TOTAL);
    printf("  the peer pushed %zu KiB before it was held back\n", sent / 1024);
    free(buf);
    fdfix_close(&x);
}

TEST(bridge_fds_read_a_regular_file)
{
    /* epoll refuses regular files: the bridge reads one from the loop in chunks. */
    enum { SIZE = 300000 };
    fdfix x;
    char path[] = "/tmp/sockit-bridge-XXXXXX";
    int file = mkstemp(path);
    REQUIRE(file >= 0);
    unlink(path);
    unsigned char *data = malloc(SIZE), *got = malloc(SIZE);
    REQUIRE(data && got);
    fill_pattern(data, SIZE, 0);
    REQUIRE(write(file, data, SIZE) == SIZE && lseek(file, 0, SEEK_SET) == 0);
    /* Open as usual, then swap the pipe for the file before the loop runs again. */
    memset(&x, 0, sizeof x);
    fixture *f = &x.f;
    f->client = f->target = f->target_listener = -1;
    int out[2];
    REQUIRE(pipe2(out, O_CLOEXEC | O_NONBLOCK) == 0);
    x.out_r = out[0], x.out_w = out[1], x.in_r = file, x.in_w = -1;
    sk_addr any, front;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    REQUIRE(sk_loop_new(&f->loop) == 0);
    REQUIRE(sk_listener_open(f->loop, &any, NULL, keep_accepted, f, &f->l) == 0);
    sk_listener_addr(f->l, &front);
    f->client = raw_connect(&front);
    REQUIRE(f->client >= 0 && run_until_fn(f->loop, have_a, f, 5000));
    REQUIRE(sk_bridge_join_fds(f->a, file, x.out_w, NULL, bridge_done, f, &f->br) == 0);
    int end;
    CHECK(raw_recv(f->loop, f->client, got, SIZE, 5000, &end) == SIZE);
    CHECK(check_pattern(got, SIZE, 0) == SIZE);
    CHECK(raw_recv(f->loop, f->client, got, 1, 5000, &end) == 0 && end == RAW_EOF);
    free(data);
    free(got);
    fdfix_close(&x);
}

/* Bulk both ways turns each direction to splice; the ends then go through the splice path:
 * a FIN after all the bytes, the other direction still flowing, and a reset. */
static size_t pump(fixture *f, int from, int to, size_t total, unsigned char *buf, size_t cap)
{
    size_t sent = 0, got = 0;
    uint64_t deadline = util_now_ms() + 5000;
    while (got < total && util_now_ms() < deadline) {
        if (sent < total) {
            size_t n = total - sent < cap ? total - sent : cap;
            fill_pattern(buf, n, sent);
            ssize_t w = send(from, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        sk_loop_run_once(f->loop, 1);
        ssize_t r = recv(to, buf, cap, MSG_DONTWAIT);
        if (r > 0) {
            if (check_pattern(buf, (size_t)r, got) != (size_t)r)
                return 0;
            got += (size_t)r;
        }
    }
    return got;
}

TEST(bridge_bulk_splices_and_carries_fin_then_reset)
{
    enum { TOTAL = 1 << 20, CHUNK = 65536 };
    fixture f;
    REQUIRE(fixture_open(&f, 0));
    unsigned char *buf = malloc(CHUNK);
    REQUIRE(buf);
    CHECK(pump(&f, f.client, f.target, TOTAL, buf, CHUNK) == TOTAL);
    CHECK(pump(&f, f.target, f.client, TOTAL, buf, CHUNK) == TOTAL);
    uint64_t up, down;
    sk_bridge_counts(f.br, &up, &down);
    CHECK(up == TOTAL && down == TOTAL);
    CHECK(sk__conn_spliced_bytes(f.a) > 0 && sk__conn_spliced_bytes(f.b) > 0); /* both ways */
    /* the client's FIN, behind spliced bytes; the target's direction still flows */
    shutdown(f.client, SHUT_WR);
    int end;
    CHECK(raw_recv(f.loop, f.target, buf, 1, 5000, &end) == 0 && end == RAW_EOF);
    CHECK(pump(&f, f.target, f.client, TOTAL, buf, CHUNK) == TOTAL);
    /* and a reset from the target reaches the client as a reset */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(f.target, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(f.target);
    f.target = -1;
    CHECK(raw_wait_end(f.loop, f.client, 5000, NULL) == -ECONNRESET);
    CHECK(run_until(f.loop, &f.done, 5000));
    CHECK(f.r.spliced && f.r.a_to_b == TOTAL && f.r.b_to_a == 2u * TOTAL);
    free(buf);
    fixture_close(&f);
}
