/* Listeners: TCP on loopback, Unix stream sockets, pause/resume, and running out of
 * descriptors (in a child process, which lowers its own RLIMIT_NOFILE). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

static bool make_tmpdir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/sockit-unit-XXXXXX");
    return mkdtemp(dir) != NULL;
}

/* A raw AF_UNIX stream socket bound to path; listening when backlog >= 0. fd or -errno. */
static int raw_unix(const char *path, int backlog)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path)
        return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
        (backlog >= 0 && listen(fd, backlog) < 0)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static int raw_unix_connect(const char *path)
{
    sk_addr a;
    int rc = sk_addr_from_unix(&a, path);
    if (rc < 0)
        return rc;
    return raw_connect(&a);
}

static bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- TCP ---- */

TEST(listener_addr_and_accessors)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    CHECK(sk_addr_family(&s.addr) == AF_INET);
    CHECK(sk_addr_port(&s.addr) != 0); /* the port the OS chose, not the 0 we asked for */
    CHECK(sk_listener_data(s.l) == &s);
    int fd = sk_listener_fd(s.l);
    CHECK(fd >= 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    CHECK(ntohs(sin.sin_port) == sk_addr_port(&s.addr));
    char text[SK_ADDR_STRLEN], want[SK_ADDR_STRLEN];
    sk_addr_format(&s.addr, text, sizeof text);
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)sk_addr_port(&s.addr));
    CHECK(strcmp(text, want) == 0);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_close_then_loop_free_at_once)
{
    /* the documented order: close the listener, then free the loop, with no iteration between:
     * nothing may leak (LSan) */
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    sk_listener_close(s.l);
    s.l = NULL;
    sk_loop_free(loop);
}

TEST(listener_accepts_and_counts)
{
    enum { N = 3 };
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    s.echo = true;
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(&s.addr);
        CHECK(fds[i] >= 0);
    }
    CHECK(tserver_wait_accept(&s, N, 5000));
    run_for(loop, 10);
    CHECK(s.naccepted == N);
    sk_listener_stats st;
    memset(&st, 0xff, sizeof st);
    sk_listener_get_stats(s.l, &st);
    CHECK(st.accepted == N);
    CHECK(st.fd_pauses == 0);
    /* each accepted conn talks to its own client */
    for (int i = 0; i < N; i++) {
        char msg[16], buf[16];
        int n = snprintf(msg, sizeof msg, "c%d\n", i);
        int end;
        if (fds[i] < 0)
            continue;
        CHECK(send(fds[i], msg, (size_t)n, 0) == n);
        CHECK(raw_recv(loop, fds[i], buf, (size_t)n, 5000, &end) == (size_t)n);
        CHECK(memcmp(buf, msg, (size_t)n) == 0);
    }
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_pause_resume)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    sk_listener_pause(s.l);
    int fd = raw_connect(&s.addr); /* completes in the kernel's backlog */
    REQUIRE(fd >= 0);
    run_for(loop, 50);
    CHECK(s.naccepted == 0);
    sk_listener_resume(s.l);
    CHECK(tserver_wait_accept(&s, 1, 5000));
    close(fd);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_address_in_use)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    tserver s2;
    tserver_init(&s2, loop);
    CHECK(tserver_listen(&s2, &s.addr, NULL) == -EADDRINUSE);
    CHECK(s2.l == NULL);
    /* the first one still works */
    int fd = raw_connect(&s.addr);
    CHECK(fd >= 0);
    CHECK(tserver_wait_accept(&s, 1, 5000));
    if (fd >= 0)
        close(fd);
    tserver_close(&s2);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_close_leaves_accepted_conns)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    s.echo = true;
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    int fd = raw_connect(&s.addr);
    REQUIRE(fd >= 0);
    CHECK(tserver_wait_accept(&s, 1, 5000));
    sk_listener_close(s.l);
    s.l = NULL;
    /* the accepted conn lives on */
    CHECK(send(fd, "still\n", 6, 0) == 6);
    char buf[8];
    int end;
    CHECK(raw_recv(loop, fd, buf, 6, 5000, &end) == 6);
    CHECK(memcmp(buf, "still\n", 6) == 0);
    CHECK(!s.conns[0].closed);
    /* and nobody listens any more */
    int fd2 = raw_connect(&s.addr);
    CHECK(fd2 == -ECONNREFUSED);
    if (fd2 >= 0)
        close(fd2);
    close(fd);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_ipv6_loopback)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr probe;
    int pfd = raw_listen(AF_INET6, 1, &probe);
    if (pfd < 0) {
        printf("  note: listener_ipv6_loopback SKIPPED: no IPv6 loopback here (%s)\n",
               sk_strerror(pfd));
        sk_loop_free(loop);
        return;
    }
    close(pfd);
    tserver s;
    tserver_init(&s, loop);
    s.echo = true;
    sk_addr a;
    REQUIRE(sk_addr_from_ip(&a, "::1", 0) == 0);
    REQUIRE(tserver_listen(&s, &a, NULL) == 0);
    CHECK(sk_addr_family(&s.addr) == AF_INET6);
    CHECK(sk_addr_port(&s.addr) != 0);
    tconn cl;
    tconn_init(&cl);
    REQUIRE(sk_conn_connect(loop, &s.addr, 5000, &tconn_cbs, &cl, &cl.conn) == 0);
    CHECK(sk_conn_set_framing(cl.conn, SK_FRAME_LINE, 0) == 0);
    CHECK(run_until(loop, &cl.connected, 5000));
    if (cl.conn)
        CHECK(sk_conn_write_frame(cl.conn, "six", 3) == 0);
    uint64_t deadline = util_now_ms() + 5000;
    while (cl.nframes < 1 && !cl.closed && util_now_ms() < deadline)
        sk_loop_run_once(loop, 10);
    CHECK(tconn_frame_is_str(&cl, 0, "six"));
    tconn_finish(loop, &cl);
    tserver_close(&s);
    sk_loop_free(loop);
}

/* ---- Unix stream sockets ---- */

TEST(listener_unix_echo_stale_file_and_unlink)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/sock", dir);
    /* a stale socket file: bound, then closed, nobody listening */
    int stale = raw_unix(path, -1);
    REQUIRE(stale >= 0);
    close(stale);
    REQUIRE(path_exists(path));

    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    s.echo = true;
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    int rc = tserver_listen(&s, &a, NULL);
    if (rc != 0)
        fprintf(stderr, "  sk_listener_open over a stale socket file: %s\n", sk_strerror(rc));
    CHECK(rc == 0);
    if (rc == 0) {
        CHECK(sk_addr_is_unix(&s.addr));
        /* a conn over the Unix socket, echoing */
        tconn cl;
        tconn_init(&cl);
        REQUIRE(sk_conn_connect(loop, &a, 5000, &tconn_cbs, &cl, &cl.conn) == 0);
        CHECK(sk_conn_set_framing(cl.conn, SK_FRAME_LINE, 0) == 0);
        CHECK(run_until(loop, &cl.connected, 5000));
        if (cl.conn)
            CHECK(sk_conn_write_frame(cl.conn, "over unix", 9) == 0);
        uint64_t deadline = util_now_ms() + 5000;
        while (cl.nframes < 1 && !cl.closed && util_now_ms() < deadline)
            sk_loop_run_once(loop, 10);
        CHECK(tconn_frame_is_str(&cl, 0, "over unix"));
        /* and a raw client */
        int fd = raw_unix_connect(path);
        CHECK(fd >= 0);
        if (fd >= 0) {
            char buf[8];
            int end;
            CHECK(send(fd, "raw\n", 4, 0) == 4);
            CHECK(raw_recv(loop, fd, buf, 4, 5000, &end) == 4 && memcmp(buf, "raw\n", 4) == 0);
            close(fd);
        }
        tconn_finish(loop, &cl);
        CHECK(path_exists(path));
    }
    tserver_close(&s);
    CHECK(!path_exists(path)); /* sk_listener_close removed the file */
    unlink(path);
    rmdir(dir);
    sk_loop_free(loop);
}

TEST(listener_unix_live_path_in_use)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/live", dir);
    int live = raw_unix(path, 4);
    REQUIRE(live >= 0);
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    CHECK(tserver_listen(&s, &a, NULL) == -EADDRINUSE);
    /* the live socket was left alone */
    CHECK(path_exists(path));
    int fd = raw_unix_connect(path);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    tserver_close(&s);
    sk_loop_free(loop);
    close(live);
    unlink(path);
    rmdir(dir);
}

TEST(listener_unix_mode)
{
    char dir[64], path[128];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/moded", dir);
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    sk_listen_options o;
    memset(&o, 0, sizeof o);
    o.unix_mode = 0640;
    CHECK(tserver_listen(&s, &a, &o) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0640);
    tserver_close(&s);
    CHECK(!path_exists(path));
    unlink(path);
    rmdir(dir);
    sk_loop_free(loop);
}

TEST(listener_unix_abstract)
{
    char name[64];
    snprintf(name, sizeof name, "@sockit-unit-%ld", (long)getpid());
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    s.echo = true;
    sk_addr a;
    REQUIRE(sk_addr_from_unix(&a, name) == 0);
    REQUIRE(tserver_listen(&s, &a, NULL) == 0);
    tconn cl;
    tconn_init(&cl);
    REQUIRE(sk_conn_connect(loop, &a, 5000, &tconn_cbs, &cl, &cl.conn) == 0);
    CHECK(sk_conn_set_framing(cl.conn, SK_FRAME_LINE, 0) == 0);
    CHECK(run_until(loop, &cl.connected, 5000));
    if (cl.conn)
        CHECK(sk_conn_write_frame(cl.conn, "abstract", 8) == 0);
    uint64_t deadline = util_now_ms() + 5000;
    while (cl.nframes < 1 && !cl.closed && util_now_ms() < deadline)
        sk_loop_run_once(loop, 10);
    CHECK(tconn_frame_is_str(&cl, 0, "abstract"));
    tconn_finish(loop, &cl);
    tserver_close(&s);
    sk_loop_free(loop);
}

/* ---- out of descriptors, in a child process ---- */

enum { FD_CLIENTS = 20, FD_HELD_MAX = 64, FD_SPARE = 6 };

typedef struct fd_report {
    int stage; /* how far the child got; 100 at the end */
    int err;
    int limit;
    int accepted_at_pause;
    int accepted_after_window;
    int accepted_final;
    uint64_t fd_pauses;
    uint64_t stats_accepted;
    long cpu_us;
    long wall_us;
} fd_report;

typedef struct fd_child {
    sk_loop *loop;
    sk_listener *l;
    sk_conn *held[FD_HELD_MAX];
    int nheld;
    int accepted;
    bool release;
    bool released;
    bool go;
    int go_fd;
} fd_child;

static void held_frame(sk_conn *c, const void *data, size_t len)
{
}

static void held_close(sk_conn *c, int reason)
{
    fd_child *st = sk_conn_data(c);
    for (int i = 0; i < st->nheld; i++)
        if (st->held[i] == c)
            st->held[i] = NULL;
}

static const sk_conn_callbacks held_cbs = {.on_frame = held_frame, .on_close = held_close};

static void fd_accept(sk_listener *l, sk_conn *c)
{
    fd_child *st = sk_listener_data(l);
    st->accepted++;
    sk_conn_set_data(c, st);
    sk_conn_set_callbacks(c, &held_cbs);
    if (st->release || st->nheld == FD_HELD_MAX) {
        sk_conn_abort(c); /* frees its descriptor for the next client */
        return;
    }
    st->held[st->nheld++] = c;
}

static void fd_release(sk_timer *t, void *arg)
{
    fd_child *st = arg;
    st->release = true;
    for (int i = 0; i < st->nheld; i++)
        if (st->held[i])
            sk_conn_abort(st->held[i]);
    st->released = true;
}

static bool fd_go(void *arg)
{
    fd_child *st = arg;
    char b;
    if (!st->go && read(st->go_fd, &b, 1) == 1)
        st->go = true;
    return st->go;
}

static bool fd_paused(void *arg)
{
    fd_child *st = arg;
    sk_listener_stats s;
    sk_listener_get_stats(st->l, &s);
    return s.fd_pauses >= 1;
}

static bool fd_all_accepted(void *arg)
{
    fd_child *st = arg;
    return st->accepted >= FD_CLIENTS;
}

static long tv_us(struct timeval tv)
{
    return (long)tv.tv_sec * 1000000L + (long)tv.tv_usec;
}

static int fd_child_report(int to_parent, fd_report *r, int stage, int err)
{
    r->stage = stage;
    r->err = err;
    ssize_t n = write(to_parent, r, sizeof *r);
    (void)n;
    return stage == 100 ? 0 : stage;
}

static int fd_child_main(void *arg, int to_parent)
{
    fd_report r;
    memset(&r, 0, sizeof r);
    fd_child st;
    memset(&st, 0, sizeof st);
    st.go_fd = *(int *)arg;
    set_nonblock(st.go_fd, true);
    int rc = sk_loop_new(&st.loop);
    if (rc != 0)
        return fd_child_report(to_parent, &r, 1, rc);
    sk_addr a;
    sk_addr_from_ip(&a, "127.0.0.1", 0);
    sk_listen_options o;
    memset(&o, 0, sizeof o);
    o.retry_ms = 50;
    rc = sk_listener_open(st.loop, &a, &o, fd_accept, &st, &st.l);
    if (rc != 0)
        return fd_child_report(to_parent, &r, 2, rc);
    sk_timer *release = NULL;
    rc = sk_timer_new(st.loop, fd_release, &st, &release);
    if (rc != 0)
        return fd_child_report(to_parent, &r, 3, rc);
    sk_listener_addr(st.l, &a);
    uint16_t port = sk_addr_port(&a);

    /* New descriptors get the lowest free numbers, below the soft limit; descriptors already
     * open above it stay open. So set the limit just past the FD_SPARE-th free number. */
    int limit = -1;
    for (int fd = 0, free_slots = 0; fd < 65536 && limit < 0; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF && ++free_slots == FD_SPARE)
            limit = fd + 1;
    if (limit < 0)
        return fd_child_report(to_parent, &r, 4, 0);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = (rlim_t)limit;
    r.limit = (int)rl.rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return fd_child_report(to_parent, &r, 4, -errno);

    if (write(to_parent, &port, sizeof port) != (ssize_t)sizeof port)
        return 5;
    /* the parent connects every client, then says go */
    if (!run_until_fn(st.loop, fd_go, &st, 20000))
        return fd_child_report(to_parent, &r, 6, 0);
    if (!run_until_fn(st.loop, fd_paused, &st, 10000)) {
        r.accepted_at_pause = st.accepted;
        return fd_child_report(to_parent, &r, 7, 0);
    }
    r.accepted_at_pause = st.accepted;

    /* one second, paused for lack of descriptors: how much CPU does the child use? */
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t w0 = util_now_ms();
    bool never = false;
    run_until(st.loop, &never, 1000);
    uint64_t w1 = util_now_ms();
    getrusage(RUSAGE_SELF, &ru1);
    r.cpu_us =
        tv_us(ru1.ru_utime) - tv_us(ru0.ru_utime) + tv_us(ru1.ru_stime) - tv_us(ru0.ru_stime);
    r.wall_us = (long)(w1 - w0) * 1000L;
    r.accepted_after_window = st.accepted;

    /* give descriptors back: every client must be accepted in the end */
    sk_timer_start(release, 10, 0);
    run_until_fn(st.loop, fd_all_accepted, &st, 15000);
    r.accepted_final = st.accepted;
    sk_listener_stats s;
    sk_listener_get_stats(st.l, &s);
    r.fd_pauses = s.fd_pauses;
    r.stats_accepted = s.accepted;
    return fd_child_report(to_parent, &r, 100, 0);
}

TEST(listener_survives_fd_exhaustion)
{
    if (getenv("SOCKIT_VALGRIND")) { /* Valgrind keeps descriptors of its own under the limit */
        printf("  skipped under Valgrind: it needs descriptors below the limit this test sets\n");
        return;
    }
    int go[2];
    REQUIRE(pipe2(go, O_CLOEXEC) == 0);
    int from = -1;
    pid_t pid = child_start(fd_child_main, &go[0], &from);
    close(go[0]);
    REQUIRE(pid > 0);
    int fds[FD_CLIENTS];
    for (int i = 0; i < FD_CLIENTS; i++)
        fds[i] = -1;
    uint16_t port = 0;
    bool have_port = child_read(from, &port, sizeof port, 10000) == 0;
    CHECK(have_port);
    if (have_port) {
        sk_addr a;
        CHECK(sk_addr_from_ip(&a, "127.0.0.1", port) == 0);
        for (int i = 0; i < FD_CLIENTS; i++) {
            fds[i] = raw_connect(&a);
            CHECK(fds[i] >= 0);
        }
        CHECK(write(go[1], "g", 1) == 1);
    }
    fd_report r;
    memset(&r, 0, sizeof r);
    bool have_report = have_port && child_read(from, &r, sizeof r, 40000) == 0;
    int sig = 0;
    int status = child_wait(pid, 5000, &sig);
    close(go[1]);
    close(from);
    for (int i = 0; i < FD_CLIENTS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (!have_report || r.stage != 100 || status != 0)
        fprintf(stderr, "  child: report %s, stage %d, err %d (%s), exit status %d, signal %d\n",
                have_report ? "read" : "missing", r.stage, r.err, sk_strerror(r.err), status, sig);
    REQUIRE(have_report);
    fprintf(stderr,
            "  child: limit %d, accepted %d at the first pause, %d after the window, "
            "%d at the end; fd_pauses %llu; cpu %ld us in %ld us\n",
            r.limit, r.accepted_at_pause, r.accepted_after_window, r.accepted_final,
            (unsigned long long)r.fd_pauses, r.cpu_us, r.wall_us);
    CHECK(r.stage == 100);
    CHECK(status == 0);
    CHECK(r.accepted_at_pause < FD_CLIENTS);     /* descriptors really ran out */
    CHECK(r.accepted_after_window < FD_CLIENTS); /* and stayed out during the window */
    CHECK(r.fd_pauses >= 1);
    CHECK(r.wall_us >= 900000);
    CHECK(r.cpu_us * 5 < r.wall_us); /* not spinning: under 20% of one CPU */
    CHECK(r.accepted_final == FD_CLIENTS);
    CHECK(r.stats_accepted == FD_CLIENTS);
}

/* ---------------------------------------------------------------- admission control */

/* The refusal reports (SK_EV_REFUSED) a loop's sink got, by cause. */
typedef struct loglines {
    int refused, full, per_ip, denied;
    uint64_t last_count, last_limit;
    char last_peer[SK_ADDR_STRLEN];
} loglines;

static void count_log(const sk_event *ev, void *arg)
{
    loglines *ll = arg;
    if (ev->kind != SK_EV_REFUSED)
        return;
    ll->refused++;
    ll->full += ev->cause == SK_REFUSE_MAX_CONNS;
    ll->per_ip += ev->cause == SK_REFUSE_PER_IP;
    ll->denied += ev->cause == SK_REFUSE_DENIED;
    ll->last_count = ev->count;
    ll->last_limit = ev->limit;
    ll->last_peer[0] = '\0';
    if (ev->addr)
        sk_addr_format(ev->addr, ll->last_peer, sizeof ll->last_peer);
}

/* A blocking connect from a chosen loopback source address (127.0.0.0/8 is all ours). */
static int connect_from(const char *src, const sk_addr *to)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &sin.sin_addr);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    set_nonblock(fd, true);
    return fd;
}

/* Read what the server sent to a refused client, up to its EOF. */
static size_t read_refusal(sk_loop *loop, int fd, char *buf, size_t len)
{
    int end;
    size_t n = raw_recv(loop, fd, buf, len - 1, 5000, &end);
    buf[n] = '\0';
    return end == RAW_EOF ? n : (size_t)-1;
}

TEST(listener_max_conns_refuses_with_message)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    loglines ll = {0};
    sk_loop_set_events(loop, 0, count_log, &ll);
    tserver s;
    tserver_init(&s, loop);
    sk_listen_options o = {
        .max_conns = 2, .full_message = "server full\n", .log_interval_ms = 60000};
    REQUIRE(tserver_listen(&s, NULL, &o) == 0);
    int a = raw_connect(&s.addr), b = raw_connect(&s.addr);
    CHECK(tserver_wait_accept(&s, 2, 5000));
    char buf[64];
    for (int i = 0; i < 3; i++) {
        int c = raw_connect(&s.addr);
        REQUIRE(c >= 0);
        CHECK(read_refusal(loop, c, buf, sizeof buf) == 12);
        CHECK(strcmp(buf, "server full\n") == 0);
        close(c);
    }
    sk_listener_stats st;
    sk_listener_get_stats(s.l, &st);
    CHECK(st.accepted == 2);
    CHECK(st.refused_full == 3);
    CHECK(st.live == 2);
    CHECK(s.naccepted == 2);
    CHECK(ll.full == 1); /* three refusals, one line inside the interval */
    /* a client leaves: its slot is free again */
    close(a);
    tconn_finish(loop, &s.conns[0]);
    sk_listener_get_stats(s.l, &st);
    CHECK(st.live == 1);
    int c = raw_connect(&s.addr);
    CHECK(tserver_wait_accept(&s, 3, 5000));
    /* the held-back refusals are reported when the listener closes */
    sk_listener_close(s.l);
    s.l = NULL;
    CHECK(ll.full == 2);
    CHECK(ll.last_count == 2 && ll.last_limit == 2); /* "refused 2 connections ...: limit 2" */
    close(b);
    close(c);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_max_per_ip_and_deny)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    loglines ll = {0};
    sk_loop_set_events(loop, 0, count_log, &ll);
    tserver s;
    tserver_init(&s, loop);
    sk_cidr deny;
    REQUIRE(sk_cidr_parse("127.0.0.3/32", &deny, NULL, 0) == 0);
    sk_listen_options o = {.max_per_ip = 2,
                           .per_ip_message = "busy\n",
                           .deny = &deny,
                           .deny_count = 1,
                           .log_interval_ms = 60000};
    REQUIRE(tserver_listen(&s, NULL, &o) == 0);
    int a1 = connect_from("127.0.0.1", &s.addr), a2 = connect_from("127.0.0.1", &s.addr);
    int b1 = connect_from("127.0.0.2", &s.addr);
    REQUIRE(a1 >= 0 && a2 >= 0 && b1 >= 0);
    CHECK(tserver_wait_accept(&s, 3, 5000));
    char buf[64];
    int a3 = connect_from("127.0.0.1", &s.addr);
    REQUIRE(a3 >= 0);
    CHECK(read_refusal(loop, a3, buf, sizeof buf) == 5);
    CHECK(strcmp(buf, "busy\n") == 0);
    int d = connect_from("127.0.0.3", &s.addr);
    REQUIRE(d >= 0);
    CHECK(read_refusal(loop, d, buf, sizeof buf) == 0); /* denied: closed without a word */
    int b2 = connect_from("127.0.0.2", &s.addr);        /* another address has its own count */
    CHECK(tserver_wait_accept(&s, 4, 5000));
    sk_listener_stats st;
    sk_listener_get_stats(s.l, &st);
    CHECK(st.refused_per_ip == 1);
    CHECK(st.refused_denied == 1);
    CHECK(st.live == 4);
    CHECK(ll.per_ip == 1 && ll.denied == 1);
    /* 127.0.0.1 leaves once: it may come back once */
    close(a1);
    tconn_finish(loop, &s.conns[0]);
    int a4 = connect_from("127.0.0.1", &s.addr);
    CHECK(tserver_wait_accept(&s, 5, 5000));
    /* conns outlive the listener; their release after it is closed must be safe */
    sk_listener_close(s.l);
    s.l = NULL;
    sk_loop_run_once(loop, 0);
    int fds[] = {a2, a3, b1, d, b2, a4};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_allow_list)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    sk_cidr allow;
    REQUIRE(sk_cidr_parse("127.0.0.2/32", &allow, NULL, 0) == 0);
    sk_listen_options o = {.allow = &allow, .allow_count = 1};
    REQUIRE(tserver_listen(&s, NULL, &o) == 0);
    int no = connect_from("127.0.0.1", &s.addr), yes = connect_from("127.0.0.2", &s.addr);
    REQUIRE(no >= 0 && yes >= 0);
    char buf[16];
    CHECK(read_refusal(loop, no, buf, sizeof buf) == 0);
    CHECK(tserver_wait_accept(&s, 1, 5000));
    sk_listener_stats st;
    sk_listener_get_stats(s.l, &st);
    CHECK(st.refused_denied == 1 && st.accepted == 1);
    close(no);
    close(yes);
    tserver_close(&s);
    sk_loop_free(loop);
}

TEST(listener_refusal_summary_after_interval)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    loglines ll = {0};
    sk_loop_set_events(loop, 0, count_log, &ll);
    tserver s;
    tserver_init(&s, loop);
    sk_cidr deny;
    REQUIRE(sk_cidr_parse("127.0.0.0/8", &deny, NULL, 0) == 0);
    sk_listen_options o = {.deny = &deny, .deny_count = 1, .log_interval_ms = 50};
    REQUIRE(tserver_listen(&s, NULL, &o) == 0);
    char buf[16];
    for (int i = 0; i < 20; i++) {
        int c = raw_connect(&s.addr);
        REQUIRE(c >= 0);
        CHECK(read_refusal(loop, c, buf, sizeof buf) == 0);
        close(c);
    }
    run_for(loop, 200); /* the summary timer reports the rest */
    sk_listener_stats st;
    sk_listener_get_stats(s.l, &st);
    CHECK(st.refused_denied == 20);
    CHECK(ll.denied >= 2 && ll.denied <= 20);
    CHECK(ll.last_count > 1 || ll.denied == 20); /* a report counts what it held back */
    tserver_close(&s);
    sk_loop_free(loop);
}

/* ---------------------------------------------------------------- TCP_NODELAY */

#include <netinet/tcp.h>

static int nodelay_of(int fd)
{
    int on = -1;
    socklen_t len = sizeof on;
    return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0 ? on : -1;
}

TEST(listener_accepted_sockets_have_nodelay)
{
    /* Set once on the listening socket (Linux passes it on), or per accept where it is not
     * passed on: either way every accepted socket has it, the first and the later ones. */
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tserver s;
    tserver_init(&s, loop);
    REQUIRE(tserver_listen(&s, NULL, NULL) == 0);
    int a = raw_connect(&s.addr), b = raw_connect(&s.addr), c = raw_connect(&s.addr);
    CHECK(tserver_wait_accept(&s, 3, 5000));
    for (int i = 0; i < s.naccepted; i++)
        CHECK(nodelay_of(sk_conn_fd(s.conns[i].conn)) == 1);
    close(a);
    close(b);
    close(c);
    tserver_close(&s);
    sk_loop_free(loop);
}
