/* The event loop: one iteration polls descriptors, fires due timers, then runs deferred tasks
 * (close callbacks, frames held during a pause). Timers live in a binary min-heap ordered by
 * (due time, start sequence), so equal deadlines fire in the order they were started. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

struct sk_timer {
    sk_loop *loop;
    sk_timer *prev, *next; /* every timer of the loop, so sk_loop_free() finds stopped ones */
    sk_timer_cb cb;
    void *arg;
    uint64_t due;
    uint64_t repeat;
    uint64_t seq;
    size_t heap_index; /* SIZE_MAX when not in the heap */
    bool firing;
    bool freed_while_firing;
};

typedef struct post_item {
    struct post_item *next;
    sk_post_cb fn;
    void *arg;
} post_item;

typedef struct watch {
    sk__io io;
    sk_loop *loop;
    sk_watch_cb cb;
    void *arg;
    struct watch *next;
} watch;

struct sk_loop {
    const sk__backend_ops *backend;
    sk__backend *backend_state;
    bool stopping;
    uint64_t now;
    /* timers */
    sk_timer **heap;
    size_t heap_len, heap_cap;
    size_t timer_count; /* heap_cap >= timer_count, so starting a timer never allocates */
    sk_timer *timers;   /* all of them, running or not */
    uint64_t timer_seq;
    /* deferred tasks, run in order at the end of an iteration */
    sk__io *tasks_head, *tasks_tail; /* deferred work, linked through next_deferred */
    /* signals */
    sk__io signal_io;
    sigset_t signal_mask;
    sk_signal_cb signal_cb[65];
    void *signal_arg[65];
    /* cross-thread posts */
    sk__io post_io;
    pthread_mutex_t post_lock;
    post_item *post_head, *post_tail;
    /* user-watched descriptors */
    watch *watches;
    sk__events events; /* the sink and the counters (event.c) */
    void *data;        /* the user's: sk_loop_set_data() */
    sk__accepting accepting;
    uint8_t read_buf[SK__READ_BUF];
};

/* ---------------------------------------------------------------- descriptors */

int sk__io_start(sk_loop *loop, sk__io *io, int fd, unsigned events, sk__io_cb cb)
{
    io->fd = fd;
    io->cb = cb;
    io->events = 0;
    return sk__io_update(loop, io, events);
}

int sk__io_update(sk_loop *loop, sk__io *io, unsigned events)
{
    if (events == io->events || io->fd < 0)
        return 0;
    const sk__backend_ops *be = loop->backend;
    int rc = io->events == 0 ? be->watch(loop->backend_state, io, events)
             : events == 0   ? be->unwatch(loop->backend_state, io)
                             : be->modify(loop->backend_state, io, events);
    if (rc == 0)
        io->events = events;
    return rc;
}

void sk__io_stop(sk_loop *loop, sk__io *io)
{
    sk__io_update(loop, io, 0);
}

/* Set in the parent at every fork(): from then on descriptors may be shared with a child. */
static atomic_bool forked;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void note_fork(void)
{
    atomic_store(&forked, true);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, note_fork, note_fork);
}

void sk__io_stop_for_close(sk_loop *loop, sk__io *io)
{
    if (io->events && !atomic_load_explicit(&forked, memory_order_relaxed) &&
        loop->backend->closes_remove) {
        io->events = 0; /* the close that follows unregisters it */
        return;
    }
    sk__io_stop(loop, io);
}

static void post_ready(sk__io *io, unsigned events);
static void signal_ready(sk__io *io, unsigned events);
static void run_tasks(sk_loop *loop);

/* Every backend this build has; the first is the default. */
static const sk__backend_ops *const backends[] = {&sk__backend_epoll};

/* The backend SOCKIT_BACKEND names (unset or empty: the default), or NULL for an unknown name. */
static const sk__backend_ops *choose_backend(void)
{
    const char *want = getenv("SOCKIT_BACKEND");
    if (!want || !*want)
        return backends[0];
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(want, backends[i]->name) == 0)
            return backends[i];
    return NULL;
}

SK_API int sk_loop_new(sk_loop **out)
{
    pthread_once(&fork_watch, watch_forks);
    const sk__backend_ops *be = choose_backend();
    if (!be)
        return SK_ERR_BACKEND;
    sk_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    loop->signal_io.fd = -1;
    loop->backend = be;
    int rc = be->init(&loop->backend_state);
    if (rc < 0) {
        free(loop);
        return rc;
    }
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rc = efd < 0 ? -errno : sk__io_start(loop, &loop->post_io, efd, SK_READABLE, post_ready);
    if (rc < 0) {
        if (efd >= 0)
            close(efd);
        be->close(loop->backend_state);
        free(loop);
        return rc;
    }
    pthread_mutex_init(&loop->post_lock, NULL);
    sigemptyset(&loop->signal_mask);
    loop->now = sk__monotonic_ms();
    *out = loop;
    return 0;
}

SK_API const char *sk_loop_backend_name(const sk_loop *loop)
{
    return loop->backend->name;
}

SK_API void sk_loop_free(sk_loop *loop)
{
    if (!loop)
        return;
    run_tasks(loop); /* frees of closed listeners and conns still waiting for the iteration end */
    while (loop->timers)
        sk_timer_free(loop->timers);
    free(loop->heap);
    while (loop->watches)
        sk_loop_unwatch(loop, loop->watches->io.fd);
    for (post_item *p = loop->post_head, *next; p; p = next) {
        next = p->next;
        free(p);
    }
    pthread_mutex_destroy(&loop->post_lock);
    close(loop->post_io.fd);
    if (loop->signal_io.fd >= 0)
        close(loop->signal_io.fd);
    loop->backend->close(loop->backend_state);
    free(loop);
}

SK_API uint64_t sk_loop_now(const sk_loop *loop)
{
    return loop->now;
}

uint8_t *sk__loop_read_buf(sk_loop *loop)
{
    return loop->read_buf;
}

/* ---------------------------------------------------------------- timers */

static bool timer_before(const sk_timer *a, const sk_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(sk_loop *loop, size_t i, sk_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_sift_up(sk_loop *loop, size_t i)
{
    sk_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_sift_down(sk_loop *loop, size_t i)
{
    sk_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static void heap_remove(sk_loop *loop, sk_timer *t)
{
    size_t i = t->heap_index;
    t->heap_index = SIZE_MAX;
    sk_timer *last = loop->heap[--loop->heap_len];
    if (last == t)
        return;
    heap_set(loop, i, last);
    heap_sift_up(loop, i);
    heap_sift_down(loop, last->heap_index);
}

static void heap_push(sk_loop *loop, sk_timer *t)
{
    heap_set(loop, loop->heap_len++, t);
    heap_sift_up(loop, t->heap_index);
}

SK_API int sk_timer_new(sk_loop *loop, sk_timer_cb cb, void *arg, sk_timer **out)
{
    sk_timer *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->loop = loop;
    t->cb = cb;
    t->arg = arg;
    t->heap_index = SIZE_MAX;
    /* Reserve the heap slot now, so that sk_timer_start() can never fail. */
    if (loop->timer_count == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 16;
        sk_timer **heap = realloc(loop->heap, cap * sizeof *heap);
        if (!heap) {
            free(t);
            return -ENOMEM;
        }
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    loop->timer_count++;
    t->next = loop->timers;
    if (t->next)
        t->next->prev = t;
    loop->timers = t;
    *out = t;
    return 0;
}

SK_API void sk_timer_start(sk_timer *t, uint64_t after_ms, uint64_t repeat_ms)
{
    sk_loop *loop = t->loop;
    if (t->heap_index != SIZE_MAX)
        heap_remove(loop, t);
    t->due = loop->now + after_ms;
    t->repeat = repeat_ms;
    t->seq = loop->timer_seq++;
    /* Cannot fail: every timer reserved its slot in sk_timer_new(). */
    heap_push(loop, t);
}

SK_API void sk_timer_stop(sk_timer *t)
{
    if (t->heap_index != SIZE_MAX)
        heap_remove(t->loop, t);
    t->repeat = 0;
}

SK_API bool sk_timer_active(const sk_timer *t)
{
    return t->heap_index != SIZE_MAX;
}

SK_API void sk_timer_free(sk_timer *t)
{
    if (!t)
        return;
    sk_timer_stop(t);
    sk_loop *loop = t->loop;
    loop->timer_count--;
    if (t->prev)
        t->prev->next = t->next;
    else
        loop->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    if (t->firing) {
        t->freed_while_firing = true;
        return;
    }
    free(t);
}

static void run_timers(sk_loop *loop)
{
    /* Bounded: a timer re-armed with 0 ms during this pass waits for the next iteration. */
    uint64_t limit_seq = loop->timer_seq;
    while (loop->heap_len) {
        sk_timer *t = loop->heap[0];
        if (t->due > loop->now || t->seq >= limit_seq)
            break;
        heap_remove(loop, t);
        if (t->repeat) {
            t->due = loop->now + t->repeat;
            t->seq = loop->timer_seq++;
            heap_push(loop, t);
        }
        t->firing = true;
        t->cb(t, t->arg);
        t->firing = false;
        if (t->freed_while_firing)
            free(t);
    }
}

static int next_timeout(const sk_loop *loop, int timeout_ms)
{
    if (loop->tasks_head)
        return 0;
    if (!loop->heap_len)
        return timeout_ms;
    uint64_t due = loop->heap[0]->due;
    uint64_t wait = due > loop->now ? due - loop->now : 0;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms < wait)
        return timeout_ms;
    return wait > INT32_MAX ? INT32_MAX : (int)wait;
}

/* ---------------------------------------------------------------- deferred tasks */

/* Ends every deferred list, so that a queued io's next_deferred is never NULL: that is its
 * "queued" flag, with no field of its own. */
static sk__io end_of_deferred;

void sk__defer(sk_loop *loop, sk__io *io)
{
    if (io->next_deferred)
        return; /* already queued */
    io->next_deferred = &end_of_deferred;
    if (loop->tasks_tail)
        loop->tasks_tail->next_deferred = io;
    else
        loop->tasks_head = io;
    loop->tasks_tail = io;
}

static void run_tasks(sk_loop *loop)
{
    /* Only the work queued before this pass: work queued meanwhile waits an iteration. */
    sk__io *io = loop->tasks_head;
    loop->tasks_head = loop->tasks_tail = NULL;
    while (io && io != &end_of_deferred) {
        sk__io *next = io->next_deferred;
        io->next_deferred = NULL;
        io->cb(io, SK__DEFERRED); /* may free the memory holding io */
        io = next;
    }
}

/* ---------------------------------------------------------------- running */

SK_API int sk_loop_run_once(sk_loop *loop, int timeout_ms)
{
    loop->now = sk__monotonic_ms();
    /* The backend reads the clock again as soon as the wait ends, before any callback runs:
     * a timer started or a deadline measured in a callback counts from now, not from when
     * the loop went to sleep (a stale clock cut active clients and short-changed timeouts). */
    int rc = loop->backend->wait(loop->backend_state, next_timeout(loop, timeout_ms), &loop->now);
    if (rc < 0)
        return rc;
    run_timers(loop);
    run_tasks(loop);
    return 0;
}

SK_API int sk_loop_run(sk_loop *loop)
{
    /* A stop asked for before run (a callback that failed at once) is honoured: run returns
     * without waiting. The flag is cleared on the way out, so the loop can run again. */
    int rc = 0;
    while (!loop->stopping && rc == 0)
        rc = sk_loop_run_once(loop, -1);
    loop->stopping = false;
    return rc;
}

SK_API void sk_loop_stop(sk_loop *loop)
{
    loop->stopping = true;
}

/* ---------------------------------------------------------------- user descriptors */

static void watch_ready(sk__io *io, unsigned events)
{
    watch *w = (watch *)io;
    w->cb(w->loop, io->fd, events, w->arg);
}

static watch *find_watch(sk_loop *loop, int fd, watch ***link)
{
    for (watch **p = &loop->watches; *p; p = &(*p)->next) {
        if ((*p)->io.fd == fd) {
            if (link)
                *link = p;
            return *p;
        }
    }
    return NULL;
}

SK_API int sk_loop_watch(sk_loop *loop, int fd, unsigned events, sk_watch_cb cb, void *arg)
{
    if (find_watch(loop, fd, NULL))
        return -EEXIST;
    watch *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->loop = loop;
    w->cb = cb;
    w->arg = arg;
    int rc = sk__io_start(loop, &w->io, fd, events, watch_ready);
    if (rc < 0) {
        free(w);
        return rc;
    }
    w->next = loop->watches;
    loop->watches = w;
    return 0;
}

SK_API int sk_loop_watch_modify(sk_loop *loop, int fd, unsigned events)
{
    watch *w = find_watch(loop, fd, NULL);
    return w ? sk__io_update(loop, &w->io, events) : -ENOENT;
}

SK_API int sk_loop_unwatch(sk_loop *loop, int fd)
{
    watch **link;
    watch *w = find_watch(loop, fd, &link);
    if (!w)
        return -ENOENT;
    sk__io_stop(loop, &w->io);
    *link = w->next;
    free(w);
    return 0;
}

/* ---------------------------------------------------------------- signals */

static void signal_ready(sk__io *io, unsigned events)
{
    sk_loop *loop = (sk_loop *)((char *)io - offsetof(sk_loop, signal_io));
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int signo = (int)si.ssi_signo;
        if (signo > 0 && signo < 65 && loop->signal_cb[signo])
            loop->signal_cb[signo](loop, signo, loop->signal_arg[signo]);
    }
}

SK_API int sk_loop_on_signal(sk_loop *loop, int signo, sk_signal_cb cb, void *arg)
{
    if (signo <= 0 || signo >= 65 || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    sigset_t mask = loop->signal_mask;
    sigaddset(&mask, signo);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        return -EINVAL;
    int fd = signalfd(loop->signal_io.fd, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (loop->signal_io.fd < 0) {
        int rc = sk__io_start(loop, &loop->signal_io, fd, SK_READABLE, signal_ready);
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    loop->signal_mask = mask;
    loop->signal_cb[signo] = cb;
    loop->signal_arg[signo] = arg;
    return 0;
}

/* ---------------------------------------------------------------- posts from other threads */

static void post_ready(sk__io *io, unsigned events)
{
    sk_loop *loop = (sk_loop *)((char *)io - offsetof(sk_loop, post_io));
    uint64_t count;
    if (read(io->fd, &count, sizeof count) < 0 && errno != EAGAIN)
        return;
    pthread_mutex_lock(&loop->post_lock);
    post_item *p = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_lock);
    while (p) {
        post_item *next = p->next;
        p->fn(loop, p->arg);
        free(p);
        p = next;
    }
}

SK_API int sk_loop_post(sk_loop *loop, sk_post_cb fn, void *arg)
{
    post_item *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->post_tail)
        loop->post_tail->next = p;
    else
        loop->post_head = p;
    loop->post_tail = p;
    pthread_mutex_unlock(&loop->post_lock);
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
    if (write(loop->post_io.fd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

/* ---------------------------------------------------------------- events */

sk__events *sk__loop_events(sk_loop *loop)
{
    return &loop->events;
}

SK_API void sk_loop_set_data(sk_loop *loop, void *data)
{
    loop->data = data;
}

SK_API void *sk_loop_data(const sk_loop *loop)
{
    return loop->data;
}

sk__accepting *sk__loop_accepting(sk_loop *loop)
{
    return &loop->accepting;
}
