/* Out of memory on every path that makes something: for each one (a loop, a timer, listeners
 * on TCP and Unix with and without admission lists, an outgoing conn, datagram sockets, TLS
 * contexts), allocation 1, 2, 3, ... is made to fail in turn until the call succeeds without
 * meeting a failure. Each failing call must return -ENOMEM and leave nothing behind: no block
 * (alloc_fail.h counts them), no descriptor, no socket file, and nothing queued on the loop
 * that would crash the next iteration. An accept that meets a failure drops that client alone.
 * make check runs the same under ASan and UBSan. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "util.h"

#define MAX_ALLOCS 200 /* no open path comes near; more means a loop that never ends */

typedef struct fix {
    sk_loop *loop; /* NULL for the path that makes the loop itself */
    void *made;    /* what a successful open made */
    sk_addr addr;
    sk_listen_options listen;
    sk_cidr cidrs[3];
    uint64_t timeout_ms;
    sk_dgram_options dgram;
    bool dgram_connect; /* connect to addr instead of binding it */
    sk_tls_options tls;
    int server_fd;  /* a raw listener for conns to connect to */
    char dir[64];   /* for Unix paths: made and removed by the test */
    char path[128]; /* a socket file that must not outlive a failed open */
} fix;

typedef struct oom_path {
    const char *name;
    int (*open)(fix *f);   /* the path under test: 0 or a negative code */
    void (*close)(fix *f); /* undo a successful open */
    /* A known bug, not fixed here: why a failure this path hides (the call succeeds) is
     * tolerated for now, printed as a note. Everything else is still checked. NULL: none. */
    const char *known_hidden;
} oom_path;

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Run the deferred work a close (or a failed open) queued: frees happen here, and a task left
 * behind with no callback would crash here. */
static void settle(fix *f)
{
    if (f->loop)
        sk_loop_run_once(f->loop, 0);
}

/* Did one failing open (allocation n) leave everything as it found it? */
static void check_nothing_left(const fix *f, const oom_path *p, unsigned n, int rc, long live,
                               int fds)
{
    if (rc == 0 && p->known_hidden) {
        fprintf(stderr, "  note: %s: allocation %u failed and the call succeeded: %s\n", p->name, n,
                p->known_hidden);
        rc = -ENOMEM;
    }
    if (rc != -ENOMEM)
        fprintf(stderr, "  %s: allocation %u failed, the call returned %d (%s)\n", p->name, n, rc,
                rc ? sk_strerror(rc) : "success, the failure was hidden");
    CHECK(rc == -ENOMEM);
    if (alloc_live() != live)
        fprintf(stderr, "  %s: allocation %u failed, %ld blocks left behind\n", p->name, n,
                alloc_live() - live);
    CHECK(alloc_live() == live);
    if (open_fds() != fds)
        fprintf(stderr, "  %s: allocation %u failed, %d descriptors left open\n", p->name, n,
                open_fds() - fds);
    CHECK(open_fds() == fds);
    if (f->path[0] && access(f->path, F_OK) == 0)
        fprintf(stderr, "  %s: allocation %u failed, %s left behind\n", p->name, n, f->path);
    CHECK(!f->path[0] || access(f->path, F_OK) != 0);
}

/* Fail allocation 1, 2, ... of the path until it succeeds without meeting a failure. */
static void fail_each_allocation(fix *f, const oom_path *p)
{
    for (unsigned n = 1; n <= MAX_ALLOCS; n++) {
        long live = alloc_live();
        int fds = open_fds();
        alloc_fail_nth(n);
        int rc = p->open(f);
        bool fired = alloc_fail_fired();
        alloc_fail_nth(0);
        if (rc == 0)
            p->close(f);
        settle(f);
        if (!fired) {
            CHECK(rc == 0);
            if (n == 1)
                fprintf(stderr, "  %s: allocates nothing (the test proves nothing)\n", p->name);
            CHECK(n > 1);
            return;
        }
        check_nothing_left(f, p, n, rc, live, fds);
    }
    fprintf(stderr, "  %s: still allocating after %d allocations\n", p->name, MAX_ALLOCS);
    CHECK(false);
}

/* A fixture with a loop (unless without_loop) and nothing else yet. */
static void fix_init(fix *f, bool with_loop)
{
    memset(f, 0, sizeof *f);
    f->server_fd = -1;
    if (with_loop)
        CHECK(sk_loop_new(&f->loop) == 0);
}

static bool fix_unix_path(fix *f, const char *name)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/sockit-alloc-XXXXXX");
    if (!mkdtemp(f->dir))
        return false;
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    return sk_addr_from_unix(&f->addr, f->path) == 0;
}

static void fix_free(fix *f)
{
    sk_loop_free(f->loop);
    if (f->server_fd >= 0)
        close(f->server_fd);
    if (f->path[0])
        unlink(f->path);
    if (f->dir[0])
        rmdir(f->dir);
}

/* Run one path on a fresh fixture (prepared by prep, which may be NULL), and check that the
 * fixture itself is gone without a trace afterwards. */
static void run_path(const oom_path *p, bool with_loop, bool (*prep)(fix *f))
{
    long live = alloc_live();
    int fds = open_fds();
    fix f;
    fix_init(&f, with_loop);
    if (!prep || prep(&f))
        fail_each_allocation(&f, p);
    else
        CHECK(!"the fixture could not be prepared");
    fix_free(&f);
    CHECK(alloc_live() == live);
    CHECK(open_fds() == fds);
}

/* ---------------------------------------------------------------- the loop and timers */

static int open_loop(fix *f)
{
    return sk_loop_new((sk_loop **)&f->made);
}

static void close_loop(fix *f)
{
    sk_loop_free(f->made);
}

TEST(alloc_failures_sk_loop_new)
{
    static const oom_path p = {"sk_loop_new", open_loop, close_loop, NULL};
    run_path(&p, false, NULL);
}

static void never(sk_timer *t, void *arg)
{
}

static int open_timer(fix *f)
{
    return sk_timer_new(f->loop, never, NULL, (sk_timer **)&f->made);
}

static void close_timer(fix *f)
{
    sk_timer_free(f->made);
}

TEST(alloc_failures_sk_timer_new)
{
    static const oom_path p = {"sk_timer_new", open_timer, close_timer, NULL};
    run_path(&p, true, NULL);
}

/* ---------------------------------------------------------------- listeners */

static void on_accept(sk_listener *l, sk_conn *c)
{
    sk_conn_abort(c);
}

static int open_listener(fix *f)
{
    return sk_listener_open(f->loop, &f->addr, &f->listen, on_accept, NULL,
                            (sk_listener **)&f->made);
}

static void close_listener(fix *f)
{
    sk_listener_close(f->made);
}

static const oom_path listener_path = {"sk_listener_open", open_listener, close_listener, NULL};

static bool prep_tcp(fix *f)
{
    return sk_addr_from_ip(&f->addr, "127.0.0.1", 0) == 0;
}

/* Every admission setting that copies something: both lists and both messages. */
static bool prep_tcp_admission(fix *f)
{
    sk_listen_options *o = &f->listen;
    o->max_conns = 10;
    o->max_per_ip = 2;
    bool ok = sk_cidr_parse("127.0.0.0/8", &f->cidrs[0], NULL, 0) == 0 &&
              sk_cidr_parse("::1", &f->cidrs[1], NULL, 0) == 0 &&
              sk_cidr_parse("10.0.0.0/8", &f->cidrs[2], NULL, 0) == 0;
    o->allow = f->cidrs;
    o->allow_count = 2;
    o->deny = f->cidrs + 2;
    o->deny_count = 1;
    o->full_message = "server full\n";
    o->per_ip_message = "too many\n";
    return ok && prep_tcp(f);
}

static bool prep_unix(fix *f)
{
    f->listen.unix_mode = 0600;
    return fix_unix_path(f, "l.sock");
}

TEST(alloc_failures_sk_listener_open_tcp)
{
    run_path(&listener_path, true, prep_tcp);
}

TEST(alloc_failures_sk_listener_open_with_limits_and_lists)
{
    run_path(&listener_path, true, prep_tcp_admission);
}

TEST(alloc_failures_sk_listener_open_unix)
{
    run_path(&listener_path, true, prep_unix);
}

/* ---------------------------------------------------------------- conns */

static int open_conn(fix *f)
{
    return sk_conn_connect(f->loop, &f->addr, f->timeout_ms, NULL, NULL, (sk_conn **)&f->made);
}

static void close_conn(fix *f)
{
    sk_conn_abort(f->made);
}

static bool prep_server(fix *f)
{
    f->server_fd = raw_listen(AF_INET, 512, &f->addr);
    return f->server_fd >= 0;
}

static bool prep_server_and_timeout(fix *f)
{
    f->timeout_ms = 5000;
    return prep_server(f);
}

TEST(alloc_failures_sk_conn_connect)
{
    static const oom_path p = {"sk_conn_connect", open_conn, close_conn, NULL};
    run_path(&p, true, prep_server);
}

TEST(alloc_failures_sk_conn_connect_with_timeout)
{
    /* The timer is made with the conn: a connect whose deadline could not be armed fails. */
    static const oom_path p = {"sk_conn_connect (timeout)", open_conn, close_conn, NULL};
    run_path(&p, true, prep_server_and_timeout);
}

/* ---------------------------------------------------------------- datagrams */

static void ignore_datagram(sk_dgram *d, const sk_datagram *dg)
{
}

static const sk_dgram_callbacks dgram_cbs = {.on_datagram = ignore_datagram};

static int open_dgram(fix *f)
{
    const sk_addr *bind = f->dgram_connect ? NULL : &f->addr;
    const sk_addr *peer = f->dgram_connect ? &f->addr : NULL;
    return sk_dgram_open(f->loop, bind, peer, &f->dgram, &dgram_cbs, NULL, (sk_dgram **)&f->made);
}

static void close_dgram(fix *f)
{
    sk_dgram_close(f->made);
}

static const oom_path dgram_path = {"sk_dgram_open", open_dgram, close_dgram, NULL};

/* Connected, one datagram per call: the dgram reads into the loop's buffer. */
static bool prep_udp_connected(fix *f)
{
    f->dgram_connect = true;
    f->dgram.batch = 1;
    return sk_addr_from_ip(&f->addr, "127.0.0.1", 9) == 0;
}

static bool prep_unix_dgram(fix *f)
{
    return fix_unix_path(f, "d.sock");
}

TEST(alloc_failures_sk_dgram_open_udp_batched)
{
    run_path(&dgram_path, true, prep_tcp);
}

TEST(alloc_failures_sk_dgram_open_udp_connected)
{
    run_path(&dgram_path, true, prep_udp_connected);
}

TEST(alloc_failures_sk_dgram_open_unix)
{
    run_path(&dgram_path, true, prep_unix_dgram);
}

/* ---------------------------------------------------------------- TLS contexts */

/* Only sockit's own allocations fail here: OpenSSL allocates through its own references. */
static int open_tls(fix *f)
{
    return sk_tls_ctx_new(&f->tls, (sk_tls_ctx **)&f->made, NULL, 0);
}

static void close_tls(fix *f)
{
    sk_tls_ctx_free(f->made);
}

static const oom_path tls_path = {"sk_tls_ctx_new", open_tls, close_tls, NULL};

static bool prep_tls_server(fix *f)
{
    f->tls = (sk_tls_options){.server = true, .self_signed = true, .alpn = "h2,http/1.1"};
    return true;
}

static bool prep_tls_client(fix *f)
{
    f->tls = (sk_tls_options){.insecure = true};
    return true;
}

TEST(alloc_failures_sk_tls_ctx_new)
{
    run_path(&tls_path, false, prep_tls_server);
    run_path(&tls_path, false, prep_tls_client);
}

/* ---------------------------------------------------------------- accepting */

static int accepted;

static void count_and_abort(sk_listener *l, sk_conn *c)
{
    accepted++;
    sk_conn_abort(c);
}

/* Accept one client with the nth allocation from now failing (0: none): did an allocation
 * fail? The client must see its connection end either way. */
static bool accept_one_with_failure(sk_loop *loop, const sk_addr *addr, unsigned n)
{
    int fd = raw_connect(addr);
    CHECK(fd >= 0);
    if (fd < 0)
        return false;
    alloc_fail_nth(n);
    int end = raw_wait_end(loop, fd, 5000, NULL);
    bool fired = alloc_fail_fired();
    alloc_fail_nth(0);
    CHECK(end == 0 || end == -ECONNRESET);
    close(fd);
    return fired;
}

/* At run time an accept that cannot get memory (a per-IP entry, the conn) drops that client
 * alone: no conn reaches on_accept, the counts stay right, nothing leaks. */
TEST(alloc_failures_accepting_with_per_ip_counts)
{
    long live0 = alloc_live();
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sk_addr addr;
    REQUIRE(sk_addr_from_ip(&addr, "127.0.0.1", 0) == 0);
    sk_listen_options o = {.max_conns = 100, .max_per_ip = 5};
    sk_listener *l;
    REQUIRE(sk_listener_open(loop, &addr, &o, count_and_abort, NULL, &l) == 0);
    REQUIRE(sk_listener_addr(l, &addr) == 0);
    accepted = 0;
    /* Made once and kept: the per-IP table, and the timer heap run_for() needs. */
    accept_one_with_failure(loop, &addr, 0);
    run_for(loop, 1);
    CHECK(accepted == 1);
    unsigned n = 1;
    for (; n <= MAX_ALLOCS; n++) {
        long live = alloc_live();
        int before = accepted;
        if (!accept_one_with_failure(loop, &addr, n))
            break;
        run_for(loop, 5); /* the frees of a conn that closed */
        CHECK(accepted == before);
        CHECK(alloc_live() == live);
        sk_listener_stats st;
        sk_listener_get_stats(l, &st);
        CHECK(st.live == 0);
    }
    CHECK(n > 1 && n <= MAX_ALLOCS);
    sk_listener_close(l);
    sk_loop_free(loop);
    CHECK(alloc_live() == live0);
}
