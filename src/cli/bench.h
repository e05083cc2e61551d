/* sockit bench: what its files share. bench.c parses options, runs the clock and prints;
 * bench_work.c is one worker thread with its own loop; bench_hist.c the latency histogram;
 * bench_proc.c reads a server's CPU time and memory from /proc. */
#ifndef SOCKIT_BENCH_H
#define SOCKIT_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sockit/sockit.h>

typedef enum { BENCH_ECHO, BENCH_CONNECT, BENCH_BULK, BENCH_IDLE } bench_mode;
enum { BULK_SEND = 1, BULK_RECV = 2, BULK_BOTH = 3 };

/* ---- latency histogram: log-linear, in microseconds ----
 * Values below 16 have a bucket each; above, every power of two [2^k, 2^(k+1)) is cut into 16
 * equal sub-buckets, so a percentile is within 1/16 (6.25 %) of the truth, at any scale. */
#define HIST_SUB 16
#define HIST_BUCKETS (HIST_SUB + 60 * HIST_SUB)
typedef struct bench_hist {
    uint64_t count, sum, min, max;
    uint64_t bucket[HIST_BUCKETS];
} bench_hist;

void hist_init(bench_hist *h);
void hist_record(bench_hist *h, uint64_t us);
void hist_merge(bench_hist *into, const bench_hist *from);
/* The value at percentile p (0..100]: the middle of its bucket, never above the true maximum. */
uint64_t hist_percentile(const bench_hist *h, double p);

/* ---- what a run asks for ---- */
typedef struct bench_config {
    bench_mode mode;
    sk_addr addr;
    char name[SK_ADDR_STRLEN + 8]; /* with "tls://" in front for TLS */
    uint32_t conns, depth, threads;
    size_t size;
    int bulk_dir;
    uint64_t rate;            /* messages per second in total; 0: as fast as replies come */
    uint64_t timeout_ms;      /* connect timeout */
    sk_tls_ctx *tls;          /* tls:// addresses; NULL for plain TCP and Unix */
    int send_proxy;           /* --send-proxy: 1 or 2 (a PROXY header per connection); 0 none */
    uint8_t proxy_header[64]; /* plain TCP: written as each connection comes up */
    size_t proxy_header_len;
    char tls_name[256]; /* the name verified and sent as SNI */
} bench_config;

/* ---- the run's phase, set by the main thread, read by every worker (bench_worker.phase) ---- */
enum { PHASE_WARMUP = 0, PHASE_MEASURE = 1, PHASE_DONE = 2 };

/* Counters a worker alone writes and the main thread reads while it runs. */
typedef struct bench_counters {
    _Atomic uint64_t messages;           /* measured: echoed messages, completed connections */
    _Atomic uint64_t bytes_tx, bytes_rx; /* measured */
    _Atomic uint64_t errors;             /* connections refused, reset, closed early (any phase) */
    _Atomic uint64_t mismatches;         /* echoed messages with a wrong byte (any phase) */
    _Atomic uint64_t open;               /* connections open now */
    _Atomic uint64_t opened;             /* connections that came up, in all */
    _Atomic uint64_t attempts_done;      /* idle: connects finished, either way */
    _Atomic int first_error;             /* the first error seen, as a negative code */
    _Atomic bool finished;               /* nothing more will happen (every connection is gone) */
} bench_counters;

typedef struct bench_worker {
    pthread_t thread;
    sk_loop *loop;
    const bench_config *cfg;
    const _Atomic int *phase; /* the run's PHASE_*, which the main thread moves on */
    const uint8_t *pattern;   /* echo and bulk: from bench_pattern_new(), shared, read-only */
    uint32_t first, count;    /* its connections: numbers first .. first+count-1 */
    bench_counters ctr;
    bench_hist hist; /* measured latencies; read by the main thread after join */
    void *priv;      /* bench_work.c's own state */
} bench_worker;

/* The worker thread's body: runs the worker's loop until bench_worker_stop(). */
void *bench_worker_main(void *arg);
/* From the main thread: make the worker's loop return. */
void bench_worker_stop(bench_worker *w);

/* The pattern every echo connection sends: byte o of connection i is table[(off_i + o) % PLEN].
 * Made once per run and freed by its caller; NULL when out of memory. */
uint8_t *bench_pattern_new(void);

/* Monotonic time in nanoseconds. */
uint64_t bench_now_ns(void);

static inline void ctr_add(_Atomic uint64_t *a, uint64_t n)
{
    /* One writer per counter: a plain relaxed load and store, no locked instruction. */
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t ctr_get(_Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* ---- a server process, read from /proc ---- */
typedef struct proc_sample {
    bool ok;
    double cpu_s;     /* user + system of the process, its threads and its children */
    uint64_t rss_kib; /* the process's own resident set */
} proc_sample;
void proc_sample_take(int pid, proc_sample *out);

#endif
