/* The event loop: timers, descriptors, signals, posts from other threads, stop, logging. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* ---- timers ---- */

#define MAX_FIRES 256

/* A log of timer firings, by id. */
typedef struct fire_log {
    int ids[MAX_FIRES];
    int n;
} fire_log;

typedef struct tmr {
    fire_log *log;
    int id;
    int count;
    int stop_at;  /* stop itself at this count (0: never) */
    int free_at;  /* free itself at this count (0: never) */
    int rearm_at; /* re-start itself (once, 5 ms) while count < this */
    sk_timer *timer;
    struct tmr *victim; /* stop (or free, if free_victim) this other timer when firing */
    bool free_victim;
    bool in_callback_active; /* sk_timer_active() seen from inside a one-shot's callback */
} tmr;

static void tmr_cb(sk_timer *timer, void *arg)
{
    tmr *t = arg;
    CHECK(timer == t->timer);
    t->count++;
    if (t->log && t->log->n < MAX_FIRES)
        t->log->ids[t->log->n++] = t->id;
    t->in_callback_active = sk_timer_active(timer);
    if (t->victim && t->victim->timer) {
        if (t->free_victim) {
            sk_timer_free(t->victim->timer);
            t->victim->timer = NULL;
        } else {
            sk_timer_stop(t->victim->timer);
        }
    }
    if (t->stop_at && t->count == t->stop_at)
        sk_timer_stop(timer);
    if (t->rearm_at && t->count < t->rearm_at)
        sk_timer_start(timer, 5, 0);
    if (t->free_at && t->count == t->free_at) {
        sk_timer_free(timer);
        t->timer = NULL;
    }
}

static int tmr_new(sk_loop *loop, tmr *t, fire_log *log, int id)
{
    memset(t, 0, sizeof *t);
    t->log = log;
    t->id = id;
    return sk_timer_new(loop, tmr_cb, t, &t->timer);
}

static void tmr_free(tmr *t)
{
    if (t->timer)
        sk_timer_free(t->timer);
    t->timer = NULL;
}

typedef struct {
    const fire_log *log;
    int n;
} log_wait;

static bool log_has(void *arg)
{
    log_wait *w = arg;
    return w->log->n >= w->n;
}

static bool wait_fires(sk_loop *loop, const fire_log *log, int n, int timeout_ms)
{
    log_wait w = {log, n};
    return run_until_fn(loop, log_has, &w, timeout_ms);
}

TEST(loop_new_free)
{
    sk_loop *loop = NULL;
    REQUIRE(sk_loop_new(&loop) == 0);
    REQUIRE(loop != NULL);
    uint64_t a = sk_loop_now(loop);
    CHECK(sk_loop_run_once(loop, 0) >= 0);
    CHECK(sk_loop_now(loop) >= a);
    sk_loop_free(loop);
}

TEST(timer_order)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr t30, t10, t20;
    REQUIRE(tmr_new(loop, &t30, &log, 30) == 0);
    REQUIRE(tmr_new(loop, &t10, &log, 10) == 0);
    REQUIRE(tmr_new(loop, &t20, &log, 20) == 0);
    CHECK(!sk_timer_active(t30.timer));
    sk_timer_start(t30.timer, 30, 0);
    sk_timer_start(t10.timer, 10, 0);
    sk_timer_start(t20.timer, 20, 0);
    CHECK(sk_timer_active(t30.timer) && sk_timer_active(t10.timer) && sk_timer_active(t20.timer));
    CHECK(wait_fires(loop, &log, 3, 5000));
    CHECK(log.n == 3);
    CHECK(log.ids[0] == 10 && log.ids[1] == 20 && log.ids[2] == 30);
    /* one-shot timers are inactive once fired, and were inactive inside their callback */
    CHECK(!sk_timer_active(t10.timer) && !sk_timer_active(t20.timer));
    CHECK(!sk_timer_active(t30.timer));
    CHECK(!t10.in_callback_active);
    run_for(loop, 40);
    CHECK(log.n == 3); /* none fires twice */
    tmr_free(&t30);
    tmr_free(&t10);
    tmr_free(&t20);
    sk_loop_free(loop);
}

TEST(timer_equal_deadlines_fire_in_start_order)
{
    /* 96 timers: deadlines 30, 10 and 20 ms interleaved, started in id order. The heap must fire
     * them by deadline, and those with the same deadline in the order they were started. */
    enum { N = 96 };
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr *t = calloc(N, sizeof *t);
    REQUIRE(t);
    static const uint64_t delay[3] = {30, 10, 20};
    for (int i = 0; i < N; i++)
        CHECK(tmr_new(loop, &t[i], &log, i) == 0);
    for (int i = 0; i < N; i++)
        sk_timer_start(t[i].timer, delay[i % 3], 0);
    CHECK(wait_fires(loop, &log, N, 5000));
    REQUIRE(log.n == N);
    int k = 0, wrong = 0;
    for (int pass = 1; pass <= 3; pass++) { /* delay index 1 (10 ms), 2 (20 ms), 0 (30 ms) */
        int which = pass % 3;
        for (int i = 0; i < N; i++) {
            if (i % 3 != which)
                continue;
            if (log.ids[k] != i && wrong++ == 0)
                fprintf(stderr, "  fire #%d: timer %d, expected %d\n", k, log.ids[k], i);
            k++;
        }
    }
    CHECK(wrong == 0);
    for (int i = 0; i < N; i++)
        tmr_free(&t[i]);
    free(t);
    sk_loop_free(loop);
}

TEST(timer_same_delay_fire_in_start_order)
{
    /* all started with the same delay in one go: start order is fire order */
    enum { N = 40 };
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr t[N];
    for (int i = 0; i < N; i++)
        CHECK(tmr_new(loop, &t[i], &log, i) == 0);
    /* start in a scrambled creation order so that creation order cannot pass for start order */
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = (i * 17 + 5) % N;
    for (int i = 0; i < N; i++)
        sk_timer_start(t[order[i]].timer, 15, 0);
    CHECK(wait_fires(loop, &log, N, 5000));
    REQUIRE(log.n == N);
    for (int i = 0; i < N; i++)
        CHECK(log.ids[i] == order[i]);
    for (int i = 0; i < N; i++)
        tmr_free(&t[i]);
    sk_loop_free(loop);
}

TEST(timer_stopped_never_fires)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr a, b, sentinel;
    REQUIRE(tmr_new(loop, &a, &log, 1) == 0);
    REQUIRE(tmr_new(loop, &b, &log, 2) == 0);
    REQUIRE(tmr_new(loop, &sentinel, &log, 3) == 0);
    sk_timer_start(a.timer, 10, 0);
    sk_timer_start(b.timer, 5, 0);
    sk_timer_start(sentinel.timer, 60, 0);
    sk_timer_stop(a.timer);
    CHECK(!sk_timer_active(a.timer));
    CHECK(sk_timer_active(b.timer));
    sk_timer_stop(a.timer); /* stopping twice is harmless */
    CHECK(wait_fires(loop, &log, 2, 5000));
    run_for(loop, 20);
    CHECK(a.count == 0);
    CHECK(b.count == 1);
    CHECK(sentinel.count == 1);
    CHECK(log.n == 2);
    tmr_free(&a);
    tmr_free(&b);
    tmr_free(&sentinel);
    sk_loop_free(loop);
}

TEST(timer_stopped_by_earlier_timer_same_iteration)
{
    /* a and b are due together; a fires first (started first) and stops b, or frees c:
     * neither b nor c may fire afterwards, even though they were already due */
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr a, b, c, d;
    REQUIRE(tmr_new(loop, &a, &log, 1) == 0);
    REQUIRE(tmr_new(loop, &b, &log, 2) == 0);
    REQUIRE(tmr_new(loop, &c, &log, 3) == 0);
    REQUIRE(tmr_new(loop, &d, &log, 4) == 0);
    a.victim = &b;
    d.victim = &c;
    d.free_victim = true;
    sk_timer_start(a.timer, 10, 0);
    sk_timer_start(d.timer, 10, 0);
    sk_timer_start(b.timer, 10, 0);
    sk_timer_start(c.timer, 10, 0);
    /* make sure all four are due before the loop looks at them */
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK(wait_fires(loop, &log, 2, 5000));
    run_for(loop, 20);
    CHECK(a.count == 1 && d.count == 1);
    CHECK(b.count == 0);
    CHECK(c.count == 0);
    CHECK(c.timer == NULL);
    CHECK(log.n == 2);
    tmr_free(&a);
    tmr_free(&b);
    tmr_free(&c);
    tmr_free(&d);
    sk_loop_free(loop);
}

TEST(timer_repeat_then_stop)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr r;
    REQUIRE(tmr_new(loop, &r, &log, 7) == 0);
    r.stop_at = 5;
    sk_timer_start(r.timer, 2, 3);
    CHECK(wait_fires(loop, &log, 5, 5000));
    CHECK(r.count == 5);
    CHECK(!sk_timer_active(r.timer));
    run_for(loop, 40);
    CHECK(r.count == 5);

    /* a repeating timer is active inside its callback, and can be stopped from outside */
    tmr s;
    fire_log log2 = {{0}, 0};
    REQUIRE(tmr_new(loop, &s, &log2, 8) == 0);
    sk_timer_start(s.timer, 1, 2);
    CHECK(wait_fires(loop, &log2, 3, 5000));
    CHECK(s.in_callback_active);
    CHECK(sk_timer_active(s.timer));
    sk_timer_stop(s.timer);
    int seen = s.count;
    run_for(loop, 30);
    CHECK(s.count == seen);
    tmr_free(&r);
    tmr_free(&s);
    sk_loop_free(loop);
}

TEST(timer_free_from_own_callback)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr rep, once, other;
    REQUIRE(tmr_new(loop, &rep, &log, 1) == 0);
    REQUIRE(tmr_new(loop, &once, &log, 2) == 0);
    REQUIRE(tmr_new(loop, &other, &log, 3) == 0);
    rep.free_at = 1;  /* a repeating timer frees itself on its first firing */
    once.free_at = 1; /* a one-shot frees itself */
    sk_timer_start(rep.timer, 1, 1);
    sk_timer_start(once.timer, 1, 0);
    sk_timer_start(other.timer, 3, 0);
    CHECK(wait_fires(loop, &log, 3, 5000));
    run_for(loop, 20);
    CHECK(rep.count == 1);
    CHECK(once.count == 1);
    CHECK(other.count == 1);
    CHECK(rep.timer == NULL && once.timer == NULL);
    tmr_free(&other);
    sk_loop_free(loop);
}

TEST(timer_restart_rearms)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    fire_log log = {{0}, 0};
    tmr a, b, c;
    REQUIRE(tmr_new(loop, &a, &log, 1) == 0);
    REQUIRE(tmr_new(loop, &b, &log, 2) == 0);
    REQUIRE(tmr_new(loop, &c, &log, 3) == 0);
    /* a long timer restarted short fires on the short deadline (10 min would exceed the bound) */
    sk_timer_start(a.timer, 600000, 0);
    sk_timer_start(a.timer, 5, 0);
    /* a short timer restarted long does not fire on the old deadline */
    sk_timer_start(b.timer, 5, 0);
    sk_timer_start(b.timer, 600000, 0);
    CHECK(wait_fires(loop, &log, 1, 5000));
    run_for(loop, 30);
    CHECK(a.count == 1); /* started twice, fires once: the restart replaced the first start */
    CHECK(b.count == 0);
    CHECK(sk_timer_active(b.timer));
    sk_timer_stop(b.timer);
    /* re-armed from inside its own callback, three times */
    c.rearm_at = 3;
    sk_timer_start(c.timer, 1, 0);
    CHECK(run_until_fn(loop, log_has, &(log_wait){&log, 4}, 5000));
    run_for(loop, 30);
    CHECK(c.count == 3);
    CHECK(!sk_timer_active(c.timer));
    /* a fired one-shot can be started again */
    sk_timer_start(a.timer, 1, 0);
    CHECK(run_until_fn(loop, log_has, &(log_wait){&log, 5}, 5000));
    CHECK(a.count == 2);
    tmr_free(&a);
    tmr_free(&b);
    tmr_free(&c);
    sk_loop_free(loop);
}

/* ---- descriptors ---- */

typedef struct watch_rec {
    int calls;
    int fd;
    unsigned events;
    sk_loop *loop;
    char got[16];
    int ngot;
    bool fired;
} watch_rec;

static void watch_cb(sk_loop *loop, int fd, unsigned events, void *arg)
{
    watch_rec *w = arg;
    w->calls++;
    w->fd = fd;
    w->events = events;
    w->loop = loop;
    w->fired = true;
    if (events & SK_READABLE) {
        ssize_t r = read(fd, w->got + w->ngot, sizeof w->got - (size_t)w->ngot);
        if (r > 0)
            w->ngot += (int)r;
    }
}

static void watch_unwatch_cb(sk_loop *loop, int fd, unsigned events, void *arg)
{
    watch_cb(loop, fd, events, arg);
    sk_loop_unwatch(loop, fd);
}

TEST(watch_pipe_readable)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    watch_rec w;
    memset(&w, 0, sizeof w);
    CHECK(sk_loop_watch(loop, p[0], SK_READABLE, watch_cb, &w) == 0);
    run_for(loop, 20);
    CHECK(w.calls == 0); /* nothing to read yet */
    CHECK(write(p[1], "A", 1) == 1);
    CHECK(run_until(loop, &w.fired, 5000));
    CHECK(w.fd == p[0]);
    CHECK(w.loop == loop);
    CHECK(w.events & SK_READABLE);
    CHECK(w.ngot == 1 && w.got[0] == 'A');
    /* after unwatch, no more callbacks */
    CHECK(sk_loop_unwatch(loop, p[0]) == 0);
    int calls = w.calls;
    CHECK(write(p[1], "B", 1) == 1);
    run_for(loop, 30);
    CHECK(w.calls == calls);
    sk_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(watch_pipe_hangup_is_readable)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    watch_rec w;
    memset(&w, 0, sizeof w);
    CHECK(sk_loop_watch(loop, p[0], SK_READABLE, watch_unwatch_cb, &w) == 0);
    close(p[1]);
    CHECK(run_until(loop, &w.fired, 5000));
    CHECK(w.events & SK_READABLE);
    sk_loop_free(loop);
    close(p[0]);
}

TEST(watch_writable_and_modify)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    watch_rec w;
    memset(&w, 0, sizeof w);
    /* the read end watched for reading only: silent */
    CHECK(sk_loop_watch(loop, p[1], SK_READABLE, watch_cb, &w) == 0);
    run_for(loop, 20);
    CHECK(w.calls == 0);
    /* now for writing: an empty pipe is writable */
    CHECK(sk_loop_watch_modify(loop, p[1], SK_WRITABLE) == 0);
    CHECK(run_until(loop, &w.fired, 5000));
    CHECK(w.fd == p[1]);
    CHECK(w.events & SK_WRITABLE);
    CHECK(sk_loop_unwatch(loop, p[1]) == 0);
    sk_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

/* ---- signals ---- */

typedef struct sig_rec {
    int count;
    int signo;
    void *arg_seen;
    sk_loop *loop;
    pthread_t thread;
    bool fired;
} sig_rec;

static void sig_cb(sk_loop *loop, int signo, void *arg)
{
    sig_rec *s = arg;
    s->count++;
    s->signo = signo;
    s->loop = loop;
    s->thread = pthread_self();
    s->fired = true;
}

TEST(loop_on_signal)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    sig_rec u1, u2;
    memset(&u1, 0, sizeof u1);
    memset(&u2, 0, sizeof u2);
    REQUIRE(sk_loop_on_signal(loop, SIGUSR1, sig_cb, &u1) == 0);
    REQUIRE(sk_loop_on_signal(loop, SIGUSR2, sig_cb, &u2) == 0);
    /* the signal is blocked now: raise() leaves it pending instead of killing the process */
    CHECK(raise(SIGUSR1) == 0);
    CHECK(u1.count == 0); /* not delivered re-entrantly */
    CHECK(run_until(loop, &u1.fired, 5000));
    CHECK(u1.signo == SIGUSR1);
    CHECK(u1.loop == loop);
    CHECK(pthread_equal(u1.thread, pthread_self()));
    CHECK(u2.count == 0);
    /* again, and the other one */
    u1.fired = false;
    CHECK(raise(SIGUSR2) == 0);
    CHECK(run_until(loop, &u2.fired, 5000));
    CHECK(u2.signo == SIGUSR2);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(run_until(loop, &u1.fired, 5000));
    CHECK(u1.count == 2);
    CHECK(u2.count == 1);
    sk_loop_free(loop);
}

/* ---- posts from other threads ---- */

typedef struct post_rec {
    sk_loop *loop;
    pthread_t loop_thread;
    int runs;
    int target;
    int wrong_thread;
    int post_errors;
    int per_thread;
    bool done;
} post_rec;

static void post_fn(sk_loop *loop, void *arg)
{
    post_rec *p = arg;
    if (!pthread_equal(pthread_self(), p->loop_thread) || loop != p->loop)
        p->wrong_thread++;
    p->runs++;
    if (p->runs >= p->target)
        p->done = true;
}

static void *post_thread(void *arg)
{
    post_rec *p = arg;
    /* give the loop a moment to be asleep in epoll_wait, so the post has to wake it */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < p->per_thread; i++)
        if (sk_loop_post(p->loop, post_fn, p) != 0)
            __atomic_add_fetch(&p->post_errors, 1, __ATOMIC_RELAXED);
    return NULL;
}

TEST(loop_post_from_thread_runs_on_loop_thread)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    post_rec p;
    memset(&p, 0, sizeof p);
    p.loop = loop;
    p.loop_thread = pthread_self();
    p.target = 1;
    p.per_thread = 1;
    pthread_t th;
    uint64_t start = util_now_ms();
    REQUIRE(pthread_create(&th, NULL, post_thread, &p) == 0);
    /* 10 s waits, while the thread posts after 20 ms: only the post's wake-up of the sleeping
     * loop ends the first wait early (5 s is a failure bound, not a speed requirement) */
    while (!p.done && util_now_ms() - start < 20000)
        sk_loop_run_once(loop, 10000);
    uint64_t took = util_now_ms() - start;
    pthread_join(th, NULL);
    CHECK(p.done);
    if (took >= 5000)
        fprintf(stderr, "  the post ran only after %llu ms: it did not wake the loop\n",
                (unsigned long long)took);
    CHECK(took < 5000);
    CHECK(p.runs == 1);
    CHECK(p.wrong_thread == 0);
    CHECK(p.post_errors == 0);
    sk_loop_free(loop);
}

TEST(loop_post_1000_all_run)
{
    enum { THREADS = 4, EACH = 250 };
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    post_rec p;
    memset(&p, 0, sizeof p);
    p.loop = loop;
    p.loop_thread = pthread_self();
    p.target = THREADS * EACH;
    p.per_thread = EACH;
    pthread_t th[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&th[i], NULL, post_thread, &p) == 0)
            started++;
    REQUIRE(started == THREADS);
    CHECK(run_until(loop, &p.done, 10000));
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    run_for(loop, 10);
    CHECK(p.runs == THREADS * EACH);
    CHECK(p.wrong_thread == 0);
    CHECK(p.post_errors == 0);
    sk_loop_free(loop);
}

TEST(loop_post_from_loop_thread_is_deferred)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    post_rec p;
    memset(&p, 0, sizeof p);
    p.loop = loop;
    p.loop_thread = pthread_self();
    p.target = 1;
    CHECK(sk_loop_post(loop, post_fn, &p) == 0);
    CHECK(p.runs == 0); /* callbacks never run inside a call we make */
    CHECK(run_until(loop, &p.done, 5000));
    CHECK(p.runs == 1);
    sk_loop_free(loop);
}

/* Posts left unrun when the loop is freed must not leak (LSan). */
TEST(loop_free_with_pending_posts)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    post_rec p;
    memset(&p, 0, sizeof p);
    p.loop = loop;
    p.loop_thread = pthread_self();
    p.target = 1000;
    for (int i = 0; i < 10; i++)
        CHECK(sk_loop_post(loop, post_fn, &p) == 0);
    sk_loop_free(loop);
    CHECK(p.wrong_thread == 0);
}

TEST(loop_free_releases_timers_and_watches)
{
    /* timers (started or not) and watches left on the loop are freed by sk_loop_free; LSan
     * reports a leak if not */
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    tmr a, b;
    REQUIRE(tmr_new(loop, &a, NULL, 1) == 0);
    REQUIRE(tmr_new(loop, &b, NULL, 2) == 0);
    sk_timer_start(a.timer, 100000, 0);
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    watch_rec w;
    memset(&w, 0, sizeof w);
    CHECK(sk_loop_watch(loop, p[0], SK_READABLE, watch_cb, &w) == 0);
    sk_loop_run_once(loop, 0);
    sk_loop_free(loop);
    close(p[0]);
    close(p[1]);
    CHECK(a.count == 0 && w.calls == 0);
}

/* ---- stop: sk_loop_run has no timeout of its own, so it runs in a child with a deadline ---- */

typedef struct stop_ctx {
    sk_loop *loop;
    int fired;
} stop_ctx;

static void stop_timer_cb(sk_timer *timer, void *arg)
{
    stop_ctx *c = arg;
    c->fired++;
    sk_loop_stop(c->loop);
}

/* Exit codes name the step that went wrong. */
static int child_stop_from_timer(void *arg, int to_parent)
{
    bool twice = arg != NULL;
    sk_loop *loop;
    if (sk_loop_new(&loop) != 0)
        return 10;
    stop_ctx c = {loop, 0};
    sk_timer *t;
    if (sk_timer_new(loop, stop_timer_cb, &c, &t) != 0)
        return 11;
    sk_timer_start(t, 10, 0);
    if (sk_loop_run(loop) != 0)
        return 12;
    if (c.fired != 1)
        return 13; /* run returned without the stop */
    if (twice) {
        sk_timer_start(t, 10, 0);
        if (sk_loop_run(loop) != 0)
            return 14;
        if (c.fired != 2)
            return 15; /* the second run returned at once: the old stop was still in force */
    }
    sk_timer_free(t);
    sk_loop_free(loop);
    return 0;
}

static void stop_post_fn(sk_loop *loop, void *arg)
{
    stop_ctx *c = arg;
    c->fired++;
    sk_loop_stop(loop);
}

static void *stop_post_thread(void *arg)
{
    stop_ctx *c = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    sk_loop_post(c->loop, stop_post_fn, c);
    return NULL;
}

static int child_stop_from_post(void *arg, int to_parent)
{
    sk_loop *loop;
    if (sk_loop_new(&loop) != 0)
        return 10;
    stop_ctx c = {loop, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, stop_post_thread, &c) != 0)
        return 11;
    int rc = sk_loop_run(loop);
    pthread_join(th, NULL);
    if (rc != 0)
        return 12;
    if (c.fired != 1)
        return 13;
    sk_loop_free(loop);
    return 0;
}

static void run_stop_child(int (*fn)(void *, int), void *arg)
{
    int fd = -1;
    pid_t pid = child_start(fn, arg, &fd);
    REQUIRE(pid > 0);
    int sig = 0;
    int status = child_wait(pid, 10000, &sig);
    close(fd);
    if (status != 0)
        fprintf(stderr, "  child: %s (status %d, signal %d)\n",
                status == -1 ? "sk_loop_run did not return within 10 s" : "failed", status, sig);
    CHECK(status == 0);
}

TEST(loop_stop_from_timer_returns_run)
{
    run_stop_child(child_stop_from_timer, NULL);
}

TEST(loop_run_again_after_stop)
{
    run_stop_child(child_stop_from_timer, (void *)1);
}

/* A stop made before sk_loop_run() (a connect that failed at once, say) is not lost. */
static int child_stop_before_run(void *arg, int to_parent)
{
    sk_loop *loop;
    if (sk_loop_new(&loop) != 0)
        return 10;
    sk_loop_stop(loop);
    if (sk_loop_run(loop) != 0) /* with nothing on the loop, this would wait forever */
        return 11;
    sk_loop_free(loop);
    return 0;
}

TEST(loop_stop_before_run_returns_at_once)
{
    run_stop_child(child_stop_before_run, NULL);
}

TEST(loop_stop_from_posted_fn_returns_run)
{
    run_stop_child(child_stop_from_post, NULL);
}

/* ---- events: the trace ---- */

typedef struct log_rec {
    int lines, non_trace;
    int bad_loop;
    sk_loop *loop;
    bool saw_socket, saw_bind, saw_listen, saw_listening;
} log_rec;

static void log_cb(const sk_event *ev, void *arg)
{
    log_rec *r = arg;
    if (ev->loop != r->loop)
        r->bad_loop++;
    if (ev->kind == SK_EV_LISTENING)
        r->saw_listening = ev->addr && sk_addr_port(ev->addr) != 0;
    if (ev->kind != SK_EV_TRACE) {
        r->non_trace++;
        return;
    }
    r->lines++;
    if (strncmp(ev->text, "socket", 6) == 0)
        r->saw_socket = true;
    if (strncmp(ev->text, "bind", 4) == 0)
        r->saw_bind = true;
    if (strncmp(ev->text, "listen", 6) == 0)
        r->saw_listen = true;
}

static void log_test_accept(sk_listener *l, sk_conn *c)
{
    (void)l;
    sk_conn_abort(c);
}

TEST(loop_trace_lines)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    log_rec r;
    memset(&r, 0, sizeof r);
    r.loop = loop;
    sk_loop_set_events(loop, SK_EVENTS_TRACE, log_cb, &r);
    sk_addr a;
    REQUIRE(sk_addr_from_ip(&a, "127.0.0.1", 0) == 0);
    sk_listener *l = NULL;
    CHECK(sk_listener_open(loop, &a, NULL, log_test_accept, NULL, &l) == 0);
    CHECK(r.lines >= 3);
    CHECK(r.saw_socket);
    CHECK(r.saw_bind);
    CHECK(r.saw_listen);
    CHECK(r.saw_listening); /* the event, with the real port */
    CHECK(r.bad_loop == 0);
    if (l)
        sk_listener_close(l);
    sk_loop_run_once(loop, 0);
    sk_loop_free(loop);
}

TEST(loop_trace_only_when_asked)
{
    sk_loop *loop;
    REQUIRE(sk_loop_new(&loop) == 0);
    log_rec r;
    memset(&r, 0, sizeof r);
    r.loop = loop;
    sk_loop_set_events(loop, 0, log_cb, &r);
    sk_addr a;
    REQUIRE(sk_addr_from_ip(&a, "127.0.0.1", 0) == 0);
    sk_listener *l = NULL;
    CHECK(sk_listener_open(loop, &a, NULL, log_test_accept, NULL, &l) == 0);
    CHECK(r.lines == 0);
    CHECK(r.saw_listening); /* facts still come */
    /* and with no sink at all, nothing breaks */
    sk_loop_set_events(loop, SK_EVENTS_TRACE, NULL, NULL);
    if (l)
        sk_listener_close(l);
    sk_loop_run_once(loop, 0);
    sk_loop_free(loop);
}

/* ---- the loop's clock after a long wait ---- */

static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct late_wake {
    sk_loop *loop;
    int pipe[2];
    uint64_t now_in_cb, real_in_cb, real_fired;
    sk_timer *timer;
};

static void *late_writer(void *arg)
{
    struct late_wake *w = arg;
    struct timespec d = {0, 400 * 1000000L};
    nanosleep(&d, NULL);
    ssize_t n = write(w->pipe[1], "x", 1);
    (void)n;
    return NULL;
}

static void late_timer_cb(sk_timer *timer, void *arg)
{
    struct late_wake *w = arg;
    w->real_fired = real_ms();
    sk_loop_stop(w->loop);
}

static void late_readable(sk_loop *loop, int fd, unsigned events, void *arg)
{
    struct late_wake *w = arg;
    char c;
    ssize_t n = read(fd, &c, 1);
    (void)n;
    w->now_in_cb = sk_loop_now(loop);
    w->real_in_cb = real_ms();
    sk_loop_unwatch(loop, fd);
    sk_timer_start(w->timer, 200, 0); /* must count from now, not from when the wait began */
}

TEST(clock_is_fresh_in_callbacks_after_a_long_wait)
{
    /* The loop sleeps 400 ms with nothing due; the descriptor's callback then sees the time of
     * waking, and a 200 ms timer started there fires 200 ms later, never at once. */
    struct late_wake w = {0};
    REQUIRE(sk_loop_new(&w.loop) == 0);
    REQUIRE(pipe(w.pipe) == 0);
    REQUIRE(sk_timer_new(w.loop, late_timer_cb, &w, &w.timer) == 0);
    REQUIRE(sk_loop_watch(w.loop, w.pipe[0], SK_READABLE, late_readable, &w) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, late_writer, &w) == 0);
    sk_loop_run(w.loop);
    pthread_join(th, NULL);
    CHECK(w.real_in_cb - w.now_in_cb < 100); /* stale by the whole wait (400 ms) before the fix */
    CHECK(w.real_fired >= w.real_in_cb + 190);
    sk_timer_free(w.timer);
    close(w.pipe[0]);
    close(w.pipe[1]);
    sk_loop_free(w.loop);
}

/* ---- the backend ---- */

/* SOCKIT_BACKEND chooses the backend at sk_loop_new: epoll by default (unset or empty), by
 * name, and an unknown name is a clear error, not a silent fallback. */
TEST(loop_backend_chosen_by_sockit_backend)
{
    const char *was = getenv("SOCKIT_BACKEND");
    char *saved = was ? strdup(was) : NULL;
    sk_loop *loop = NULL;
    unsetenv("SOCKIT_BACKEND");
    REQUIRE(sk_loop_new(&loop) == 0);
    CHECK(strcmp(sk_loop_backend_name(loop), "epoll") == 0);
    sk_loop_free(loop);
    const char *names[] = {"", "epoll"};
    for (size_t i = 0; i < 2; i++) {
        setenv("SOCKIT_BACKEND", names[i], 1);
        loop = NULL;
        CHECK(sk_loop_new(&loop) == 0);
        CHECK(loop && strcmp(sk_loop_backend_name(loop), "epoll") == 0);
        sk_loop_free(loop);
    }
    setenv("SOCKIT_BACKEND", "no-such-backend", 1);
    loop = NULL;
    CHECK(sk_loop_new(&loop) == SK_ERR_BACKEND);
    CHECK(loop == NULL);
    CHECK(strstr(sk_strerror(SK_ERR_BACKEND), "SOCKIT_BACKEND") != NULL);
    if (saved)
        setenv("SOCKIT_BACKEND", saved, 1);
    else
        unsetenv("SOCKIT_BACKEND");
    free(saved);
}
