/* Datagram endpoints: UDP over IPv4 and IPv6, Unix datagram sockets, batching, truncation,
 * ICMP errors on connected sockets, send backpressure, pause/resume, close from a callback.
 * Raw sockets play the independent peer; everything is on loopback or in a temp directory. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

#define MAX_SEEN 256

/* What one dgram's callbacks saw, and what they do. */
typedef struct tdgram {
    sk_dgram *d;
    int count;
    size_t len[MAX_SEEN], size[MAX_SEEN];
    bool truncated[MAX_SEEN];
    unsigned char first[MAX_SEEN]; /* the first byte of each */
    sk_addr from;                  /* of the last one */
    int errors, last_error, drains;
    bool echo;      /* send each datagram back to its sender */
    int echo_rc;    /* the last echo's result */
    int pause_at;   /* pause reading when count reaches it (0: never) */
    int close_at;   /* close when count reaches it (0: never) */
    int late_calls; /* callbacks after close */
    bool closed;
} tdgram;

static void t_datagram(sk_dgram *d, const sk_datagram *dg)
{
    tdgram *t = sk_dgram_data(d);
    if (t->closed) {
        t->late_calls++;
        return;
    }
    if (t->count < MAX_SEEN) {
        t->len[t->count] = dg->len;
        t->size[t->count] = dg->size;
        t->truncated[t->count] = dg->truncated;
        t->first[t->count] = dg->len ? ((const unsigned char *)dg->data)[0] : 0;
    }
    t->count++;
    t->from = *dg->from;
    if (t->echo)
        t->echo_rc = sk_dgram_send(d, dg->data, dg->len, dg->from);
    if (t->pause_at && t->count == t->pause_at)
        sk_dgram_pause_reading(d);
    if (t->close_at && t->count == t->close_at) {
        sk_dgram_close(d);
        t->closed = true;
    }
}

static void t_error(sk_dgram *d, int err, const sk_addr *peer)
{
    tdgram *t = sk_dgram_data(d);
    if (t->closed)
        t->late_calls++;
    t->errors++;
    t->last_error = err;
}

static void t_drain(sk_dgram *d)
{
    tdgram *t = sk_dgram_data(d);
    if (t->closed)
        t->late_calls++;
    t->drains++;
}

static const sk_dgram_callbacks tcbs = {
    .on_datagram = t_datagram, .on_error = t_error, .on_drain = t_drain};

static int t_open(sk_loop *loop, tdgram *t, const sk_addr *bind_addr, const sk_addr *connect_to,
                  const sk_dgram_options *o)
{
    memset(t, 0, sizeof *t);
    return sk_dgram_open(loop, bind_addr, connect_to, o, &tcbs, t, &t->d);
}

static void t_close(sk_loop *loop, tdgram *t)
{
    if (!t->closed && t->d)
        sk_dgram_close(t->d);
    t->closed = true;
    sk_loop_run_once(loop, 0); /* the deferred free */
}

typedef struct wait_count {
    const tdgram *t;
    int n;
} wait_count;

static bool count_reached(void *arg)
{
    wait_count *w = arg;
    return w->t->count >= w->n;
}

static bool wait_datagrams(sk_loop *loop, const tdgram *t, int n)
{
    wait_count w = {t, n};
    return run_until_fn(loop, count_reached, &w, 5000);
}

static bool has_error(void *arg)
{
    return ((tdgram *)arg)->errors > 0;
}

/* A raw datagram socket bound to the loopback of family (port 0); fd or -errno. */
static int raw_udp(int family, sk_addr *bound)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    sk_addr a;
    sk_addr_from_ip(&a, family == AF_INET ? "127.0.0.1" : "::1", 0);
    if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (bound) {
        bound->len = sizeof bound->ss;
        getsockname(fd, (struct sockaddr *)&bound->ss, &bound->len);
    }
    return fd;
}

static ssize_t raw_sendto(int fd, const void *buf, size_t len, const sk_addr *to)
{
    return sendto(fd, buf, len, 0, (const struct sockaddr *)&to->ss, to->len);
}

/* Receive one datagram on a non-blocking raw socket, running the loop meanwhile. */
static ssize_t raw_recv_dgram(sk_loop *loop, int fd, void *buf, size_t len, int timeout_ms)
{
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        ssize_t n = recv(fd, buf, len, MSG_TRUNC);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return n < 0 ? -errno : n;
        if (util_now_ms() >= deadline)
            return -ETIMEDOUT;
        sk_loop_run_once(loop, 5);
    }
}

static bool ipv6_loopback(void)
{
    int fd = raw_udp(AF_INET6, NULL);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static bool make_tmpdir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/sockit-dgram-XXXXXX");
    return mkdtemp(dir) != NULL;
}

/* ---- UDP ---- */

static void echo_roundtrip(int family)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any, srv_addr, cli_addr;
    sk_addr_from_ip(&any, family == AF_INET ? "127.0.0.1" : "::1", 0);
    tdgram srv, cli;
    REQUIRE(t_open(loop, &srv, &any, NULL, NULL) == 0);
    srv.echo = true;
    REQUIRE(sk_dgram_local_addr(srv.d, &srv_addr) == 0);
    CHECK(sk_addr_port(&srv_addr) != 0);
    CHECK(sk_addr_family(&srv_addr) == family);
    /* an sk_dgram client, connected */
    REQUIRE(t_open(loop, &cli, NULL, &srv_addr, NULL) == 0);
    REQUIRE(sk_dgram_local_addr(cli.d, &cli_addr) == 0);
    CHECK(sk_dgram_send(cli.d, "one", 3, NULL) == 0);
    CHECK(sk_dgram_send(cli.d, "two!", 4, NULL) == 0);
    CHECK(sk_dgram_send(cli.d, "", 0, NULL) == 0); /* an empty datagram is a datagram */
    CHECK(wait_datagrams(loop, &cli, 3));
    CHECK(srv.count == 3 && srv.echo_rc == 0);
    CHECK(cli.count == 3);
    CHECK(cli.len[0] == 3 && cli.first[0] == 'o');
    CHECK(cli.len[1] == 4 && cli.first[1] == 't');
    CHECK(cli.len[2] == 0 && !cli.truncated[2]);
    /* each datagram came with its sender */
    CHECK(sk_addr_port(&srv.from) == sk_addr_port(&cli_addr));
    CHECK(sk_addr_port(&cli.from) == sk_addr_port(&srv_addr));
    sk_dgram_stats st;
    sk_dgram_get_stats(srv.d, &st);
    CHECK(st.received == 3 && st.sent == 3 && st.truncated == 0);
    t_close(loop, &cli);
    t_close(loop, &srv);
    sk_loop_free(loop);
}

TEST(dgram_udp4_echo)
{
    echo_roundtrip(AF_INET);
}

TEST(dgram_udp6_echo)
{
    if (!ipv6_loopback()) {
        fprintf(stderr, "  (no IPv6 loopback here: skipped)\n");
        return;
    }
    echo_roundtrip(AF_INET6);
}

/* Many datagrams from raw peers: every one echoed to the right peer; batching really batches. */
static void many_peers(unsigned batch)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any, srv_addr;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    tdgram srv;
    sk_dgram_options o = {.batch = batch};
    REQUIRE(t_open(loop, &srv, &any, NULL, &o) == 0);
    srv.echo = true;
    REQUIRE(sk_dgram_local_addr(srv.d, &srv_addr) == 0);
    enum { PEERS = 4, EACH = 40 };
    int fds[PEERS];
    for (int p = 0; p < PEERS; p++) {
        fds[p] = raw_udp(AF_INET, NULL);
        REQUIRE(fds[p] >= 0);
    }
    /* All sent before the loop runs: the server finds a full socket and reads it in batches. */
    for (int i = 0; i < EACH; i++)
        for (int p = 0; p < PEERS; p++) {
            unsigned char msg[8] = {(unsigned char)p, (unsigned char)i};
            CHECK(raw_sendto(fds[p], msg, sizeof msg, &srv_addr) == (ssize_t)sizeof msg);
        }
    int wrong = 0, got = 0;
    for (int p = 0; p < PEERS; p++)
        for (int i = 0; i < EACH; i++) {
            unsigned char buf[64];
            ssize_t n = raw_recv_dgram(loop, fds[p], buf, sizeof buf, 5000);
            if (n != 8) {
                CHECK(n == 8);
                break;
            }
            got++;
            if (buf[0] != p || buf[1] != i)
                wrong++;
        }
    CHECK(got == PEERS * EACH);
    CHECK(wrong == 0);
    sk_dgram_stats st;
    sk_dgram_get_stats(srv.d, &st);
    CHECK(st.received == PEERS * EACH);
    CHECK(st.sent == PEERS * EACH);
    if (batch == 1) {
        CHECK(st.recv_calls == st.received);
        CHECK(st.send_calls == st.sent);
    } else {
        /* 160 waiting datagrams in batches of 16 take about 10 calls, not 160. */
        CHECK(st.recv_calls * 4 <= st.received);
        CHECK(st.send_calls * 4 <= st.sent);
    }
    for (int p = 0; p < PEERS; p++)
        close(fds[p]);
    t_close(loop, &srv);
    sk_loop_free(loop);
}

TEST(dgram_batched_many_peers)
{
    many_peers(16);
}

TEST(dgram_unbatched_many_peers)
{
    many_peers(1);
}

TEST(dgram_truncated_reported)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any, srv_addr;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    for (unsigned batch = 1; batch <= 16; batch += 15) {
        tdgram srv;
        sk_dgram_options o = {.batch = batch, .max_size = 100};
        REQUIRE(t_open(loop, &srv, &any, NULL, &o) == 0);
        REQUIRE(sk_dgram_local_addr(srv.d, &srv_addr) == 0);
        int fd = raw_udp(AF_INET, NULL);
        REQUIRE(fd >= 0);
        unsigned char big[200];
        memset(big, 'x', sizeof big);
        CHECK(raw_sendto(fd, big, 200, &srv_addr) == 200);
        CHECK(raw_sendto(fd, big, 100, &srv_addr) == 100);
        CHECK(wait_datagrams(loop, &srv, 2));
        CHECK(srv.truncated[0] && srv.len[0] == 100 && srv.size[0] == 200);
        CHECK(!srv.truncated[1] && srv.len[1] == 100 && srv.size[1] == 100);
        sk_dgram_stats st;
        sk_dgram_get_stats(srv.d, &st);
        CHECK(st.truncated == 1 && st.received == 2);
        close(fd);
        t_close(loop, &srv);
    }
    sk_loop_free(loop);
}

TEST(dgram_largest_udp_datagram)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any, srv_addr;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    tdgram srv, cli;
    REQUIRE(t_open(loop, &srv, &any, NULL, NULL) == 0);
    srv.echo = true;
    REQUIRE(sk_dgram_local_addr(srv.d, &srv_addr) == 0);
    REQUIRE(t_open(loop, &cli, NULL, &srv_addr, NULL) == 0);
    static unsigned char big[65508];
    memset(big, 'b', sizeof big);
    CHECK(sk_dgram_send(cli.d, big, 65508, NULL) == -EMSGSIZE); /* over IPv4's limit */
    CHECK(sk_dgram_send(cli.d, big, 65507, NULL) == 0);
    CHECK(wait_datagrams(loop, &cli, 1));
    CHECK(srv.len[0] == 65507 && !srv.truncated[0]);
    CHECK(cli.len[0] == 65507 && !cli.truncated[0] && cli.first[0] == 'b');
    t_close(loop, &cli);
    t_close(loop, &srv);
    sk_loop_free(loop);
}

TEST(dgram_send_needs_address)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    tdgram srv;
    REQUIRE(t_open(loop, &srv, &any, NULL, NULL) == 0);
    CHECK(sk_dgram_send(srv.d, "x", 1, NULL) == -EDESTADDRREQ);
    sk_addr unnamed = {.len = 0};
    unnamed.ss.ss_family = AF_UNIX;
    CHECK(sk_dgram_send(srv.d, "x", 1, &unnamed) == -EDESTADDRREQ);
    /* no address at all, no callbacks: refused */
    sk_dgram *d = NULL;
    CHECK(sk_dgram_open(loop, NULL, NULL, NULL, &tcbs, NULL, &d) == -EINVAL);
    sk_dgram_callbacks none = {0};
    CHECK(sk_dgram_open(loop, &any, NULL, NULL, &none, NULL, &d) == -EINVAL);
    t_close(loop, &srv);
    sk_loop_free(loop);
}

/* A connected UDP socket whose peer's port is closed: the ICMP error surfaces as -ECONNREFUSED. */
TEST(dgram_connected_refused)
{
    for (unsigned batch = 1; batch <= 16; batch += 15) {
        sk_loop *loop;
        REQUIRE(sk_loop_new(&loop) == 0);
        sk_addr closed;
        int fd = raw_udp(AF_INET, &closed);
        REQUIRE(fd >= 0);
        close(fd); /* nobody there now */
        tdgram cli;
        sk_dgram_options o = {.batch = batch};
        REQUIRE(t_open(loop, &cli, NULL, &closed, &o) == 0);
        CHECK(sk_dgram_send(cli.d, "anyone?", 7, NULL) == 0);
        CHECK(run_until_fn(loop, has_error, &cli, 5000));
        CHECK(cli.last_error == -ECONNREFUSED);
        CHECK(cli.count == 0);
        /* the dgram lives on: a second datagram gets the same answer */
        int before = cli.errors;
        CHECK(sk_dgram_send(cli.d, "again", 5, NULL) == 0);
        for (int i = 0; i < 100 && cli.errors == before; i++)
            sk_loop_run_once(loop, 20);
        CHECK(cli.errors > before && cli.last_error == -ECONNREFUSED);
        t_close(loop, &cli);
        sk_loop_free(loop);
    }
}

/* ---- Unix datagram sockets ---- */

TEST(dgram_unix_echo_and_cleanup)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/d.sock", dir);
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr srv_addr;
    REQUIRE(sk_addr_from_unix(&srv_addr, path) == 0);
    tdgram srv, cli;
    REQUIRE(t_open(loop, &srv, &srv_addr, NULL, NULL) == 0);
    srv.echo = true;
    /* the client binds an automatic abstract name, so the reply finds it */
    REQUIRE(t_open(loop, &cli, NULL, &srv_addr, NULL) == 0);
    sk_addr cli_addr;
    REQUIRE(sk_dgram_local_addr(cli.d, &cli_addr) == 0);
    char name[SK_ADDR_STRLEN];
    sk_addr_format(&cli_addr, name, sizeof name);
    CHECK(strncmp(name, "unix:@", 6) == 0);
    CHECK(sk_dgram_send(cli.d, "ping", 4, NULL) == 0);
    CHECK(wait_datagrams(loop, &cli, 1));
    CHECK(cli.len[0] == 4 && cli.first[0] == 'p');
    sk_addr_format(&srv.from, name, sizeof name);
    CHECK(strncmp(name, "unix:@", 6) == 0);
    /* bigger than 64 KiB fits a Unix datagram but not the default buffer: truncated, reported */
    size_t big_len = 100000;
    unsigned char *big = malloc(big_len);
    REQUIRE(big);
    memset(big, 'u', big_len);
    srv.echo = false;
    CHECK(sk_dgram_send(cli.d, big, big_len, NULL) == 0);
    CHECK(wait_datagrams(loop, &srv, 2));
    CHECK(srv.truncated[1] && srv.size[1] == big_len && srv.len[1] == 65536);
    free(big);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    t_close(loop, &cli);
    t_close(loop, &srv);
    CHECK(stat(path, &st) < 0 && errno == ENOENT); /* the file went with the server */
    sk_loop_free(loop);
    rmdir(dir);
}

TEST(dgram_unix_stale_file_replaced)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/stale.sock", dir);
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    /* a crashed server's file: bound, then closed without unlinking */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    REQUIRE(bind(fd, (struct sockaddr *)&a.ss, a.len) == 0);
    close(fd);
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tdgram srv, other;
    REQUIRE(t_open(loop, &srv, &a, NULL, NULL) == 0);
    /* a live one is not taken over */
    CHECK(t_open(loop, &other, &a, NULL, NULL) == -EADDRINUSE);
    t_close(loop, &srv);
    /* a client to a path nobody serves fails at once */
    tdgram cli;
    CHECK(t_open(loop, &cli, NULL, &a, NULL) == -ENOENT);
    sk_loop_free(loop);
    rmdir(dir);
}

TEST(dgram_unix_unnamed_sender)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/u.sock", dir);
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    tdgram srv;
    REQUIRE(t_open(loop, &srv, &a, NULL, NULL) == 0);
    srv.echo = true;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* never bound: no name */
    REQUIRE(fd >= 0);
    CHECK(raw_sendto(fd, "hi", 2, &a) == 2);
    CHECK(wait_datagrams(loop, &srv, 1));
    CHECK(sk_addr_is_unix(&srv.from));
    CHECK(srv.echo_rc == -EDESTADDRREQ); /* nobody to answer */
    close(fd);
    t_close(loop, &srv);
    sk_loop_free(loop);
    rmdir(dir);
}

/* A peer that does not read: sends queue, then are refused; draining brings on_drain. */
TEST(dgram_backpressure_and_drain)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/slow.sock", dir);
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    int slow = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(slow >= 0);
    REQUIRE(bind(slow, (struct sockaddr *)&a.ss, a.len) == 0);
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    for (unsigned batch = 1; batch <= 4; batch += 3) {
        tdgram cli;
        sk_dgram_options o = {.batch = batch, .max_queue = 16};
        REQUIRE(t_open(loop, &cli, NULL, &a, &o) == 0);
        int sent = 0, rc = 0;
        unsigned char msg[512] = {0};
        while (sent < 100000) {
            rc = sk_dgram_send(cli.d, msg, sizeof msg, NULL);
            if (rc < 0)
                break;
            sent++;
            if (sent % 8 == 0)
                sk_loop_run_once(loop, 0);
        }
        CHECK(rc == -ENOBUFS);
        CHECK(!sk_dgram_writable(cli.d));
        CHECK(sk_dgram_queued_datagrams(cli.d) == 16);
        CHECK(cli.drains == 0);
        /* the peer reads everything: every accepted datagram arrives, then on_drain */
        int got = 0;
        uint64_t deadline = util_now_ms() + 5000;
        while (cli.drains == 0 && util_now_ms() < deadline) {
            unsigned char buf[1024];
            while (recv(slow, buf, sizeof buf, 0) > 0)
                got++;
            sk_loop_run_once(loop, 5);
        }
        CHECK(cli.drains == 1);
        CHECK(sk_dgram_writable(cli.d));
        CHECK(sk_dgram_queued_datagrams(cli.d) == 0);
        unsigned char buf[1024];
        while (recv(slow, buf, sizeof buf, 0) > 0)
            got++;
        CHECK(got == sent);
        sk_dgram_stats st;
        sk_dgram_get_stats(cli.d, &st);
        CHECK(st.refused == 1 && st.sent == (uint64_t)sent && st.send_errors == 0);
        CHECK(cli.errors == 0);
        t_close(loop, &cli);
    }
    close(slow);
    unlink(path);
    sk_loop_free(loop);
    rmdir(dir);
}

/* ---- pause, resume, close ---- */

TEST(dgram_pause_holds_rest_of_batch)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any, srv_addr;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    tdgram srv;
    REQUIRE(t_open(loop, &srv, &any, NULL, NULL) == 0);
    srv.pause_at = 3;
    REQUIRE(sk_dgram_local_addr(srv.d, &srv_addr) == 0);
    int fd = raw_udp(AF_INET, NULL);
    REQUIRE(fd >= 0);
    for (unsigned char i = 0; i < 10; i++)
        CHECK(raw_sendto(fd, &i, 1, &srv_addr) == 1);
    CHECK(wait_datagrams(loop, &srv, 3));
    run_for(loop, 50);
    CHECK(srv.count == 3); /* paused: the other 7 wait */
    sk_dgram_resume_reading(srv.d);
    CHECK(wait_datagrams(loop, &srv, 10));
    for (int i = 0; i < 10; i++)
        CHECK(srv.first[i] == i); /* in order, none lost */
    close(fd);
    t_close(loop, &srv);
    sk_loop_free(loop);
}

TEST(dgram_close_inside_callback)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr any, srv_addr;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    tdgram srv;
    REQUIRE(t_open(loop, &srv, &any, NULL, NULL) == 0);
    srv.echo = true;
    srv.close_at = 2;
    REQUIRE(sk_dgram_local_addr(srv.d, &srv_addr) == 0);
    int fd = raw_udp(AF_INET, NULL);
    REQUIRE(fd >= 0);
    for (unsigned char i = 0; i < 5; i++)
        CHECK(raw_sendto(fd, &i, 1, &srv_addr) == 1);
    CHECK(wait_datagrams(loop, &srv, 2));
    run_for(loop, 30);
    CHECK(srv.count == 2 && srv.late_calls == 0);
    /* the replies sent before the close still went out */
    unsigned char b;
    CHECK(raw_recv_dgram(loop, fd, &b, 1, 2000) == 1 && b == 0);
    CHECK(raw_recv_dgram(loop, fd, &b, 1, 2000) == 1 && b == 1);
    close(fd);
    sk_loop_free(loop);
}
