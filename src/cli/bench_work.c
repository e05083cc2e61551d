/* sockit bench: one worker thread. It owns an sk_loop and a share of the connections and shares
 * nothing with the other workers but the phase flag and its own counters (bench.h).
 *
 * echo     each connection keeps up to depth messages of size bytes in flight; the bytes come
 *          from a pattern that differs per connection, so every echoed byte is checked where it
 *          lands, and a message's latency runs from its send (or, with --rate, from when it
 *          was due) to the arrival of its last byte.
 *   connect  open, read until the server closes, close, again: connections per second.
 *   bulk     write (and/or read) as fast as the socket takes it.
 *   idle     open every connection (at most 256 connects in flight), then hold them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* The pattern's period: just above the largest message (1 MiB), and odd so that messages of a
 * power-of-two size do not line up with it; stored twice over so any window is contiguous. */
#define PLEN ((1u << 20) + 7u)
#define IDLE_CONNECTS_IN_FLIGHT 256
#define RETRY_MS 10

uint8_t *bench_pattern_new(void)
{
    uint8_t *pattern = malloc(2u * PLEN);
    if (!pattern)
        return NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < PLEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (uint8_t)(x >> 24);
    }
    memcpy(pattern + PLEN, pattern, PLEN);
    return pattern;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct wstate wstate;

typedef struct bconn {
    sk_conn *c;
    wstate *ws;
    uint32_t no;       /* the connection's number in the whole run */
    uint32_t off;      /* where its stream starts in the pattern */
    uint64_t tx, rx;   /* bytes of its stream sent and received */
    uint64_t *sent_ns; /* echo: send (or due) time of each message in flight, a ring of depth */
    uint64_t due_ns;   /* --rate: when the next message is due */
    uint64_t start_ns; /* connect: when this connection was begun */
    bool up, bad, got_eof, waiting;
} bconn;

struct wstate {
    bench_worker *w;
    const bench_config *cfg;
    bconn *conns;
    uint64_t *ring;
    uint64_t interval_ns; /* --rate: between two messages of one connection */
    int tick_fd;          /* --rate: a timerfd, finer than the loop's millisecond timers */
    uint64_t armed_ns, last_tick_ns, tick_spacing_ns;
    sk_timer *retry; /* connect: restarts connections that failed, after RETRY_MS */
    uint32_t next_open, pending;
    bool stopping;
};

static bool measuring(const wstate *ws)
{
    return atomic_load_explicit(ws->w->phase, memory_order_relaxed) == PHASE_MEASURE;
}

static bool done(const wstate *ws)
{
    return ws->stopping || atomic_load_explicit(ws->w->phase, memory_order_relaxed) == PHASE_DONE;
}

static void note_error(wstate *ws, int reason)
{
    ctr_add(&ws->w->ctr.errors, 1);
    int none = 0;
    atomic_compare_exchange_strong(&ws->w->ctr.first_error, &none, reason ? reason : -ESHUTDOWN);
}

/* Write n bytes of b's stream, in pieces no longer than the pattern's period. */
static int write_stream(bconn *b, uint64_t n)
{
    while (n) {
        uint32_t pos = (uint32_t)((b->off + b->tx) % PLEN);
        size_t piece = n < PLEN ? (size_t)n : PLEN;
        int rc = sk_conn_write(b->c, b->ws->w->pattern + pos, piece);
        if (rc < 0)
            return rc; /* on_close follows */
        b->tx += piece;
        n -= piece;
        if (measuring(b->ws))
            ctr_add(&b->ws->w->ctr.bytes_tx, piece);
    }
    return 0;
}

/* TLS on a conn just begun: on_connect then comes after the handshake. */
static void start_tls(wstate *ws, bconn *b)
{
    const bench_config *cfg = ws->cfg;
    if (sk_tls_start(b->c, cfg->tls, cfg->tls_name, cfg->timeout_ms) < 0)
        sk_conn_abort(b->c); /* on_close follows, and counts the error */
}

/* ---------------------------------------------------------------- echo */

/* Send as many messages as depth (and, with --rate, the schedule) allows. */
static void arm_tick(wstate *ws, uint64_t at_ns);

static void echo_pump(bconn *b)
{
    wstate *ws = b->ws;
    const bench_config *cfg = ws->cfg;
    if (!b->up || done(ws))
        return;
    uint64_t sent = b->tx / cfg->size, received = b->rx / cfg->size;
    uint64_t room = cfg->depth - (sent - received);
    if (!room)
        return;
    uint64_t n = 0;
    uint64_t now = bench_now_ns();
    if (cfg->rate) {
        /* Latency counts from the time a message was due, not from when a free slot let it
         * go: a server that stalls cannot hide the stall by delaying our sends. */
        while (n < room && b->due_ns <= now) {
            b->sent_ns[(sent + n) % cfg->depth] = b->due_ns;
            b->due_ns += ws->interval_ns;
            n++;
        }
    } else {
        for (; n < room; n++)
            b->sent_ns[(sent + n) % cfg->depth] = now;
    }
    if (n && write_stream(b, n * cfg->size) < 0)
        return;
    if (cfg->rate && n < room)
        arm_tick(ws, b->due_ns); /* a reply makes room otherwise */
}

static void echo_frame(sk_conn *c, const void *data, size_t len)
{
    bconn *b = sk_conn_data(c);
    wstate *ws = b->ws;
    const bench_config *cfg = ws->cfg;
    const uint8_t *p = data;
    uint64_t now = bench_now_ns();
    bool meas = measuring(ws);
    if (b->rx + len > b->tx) {
        /* More came back than we sent: the server invented bytes. */
        ctr_add(&ws->w->ctr.mismatches, 1);
        note_error(ws, -EPROTO);
        sk_conn_abort(c);
        return;
    }
    if (meas)
        ctr_add(&ws->w->ctr.bytes_rx, len);
    while (len) {
        size_t in_msg = (size_t)(b->rx % cfg->size);
        size_t seg = cfg->size - in_msg < len ? cfg->size - in_msg : len;
        uint32_t pos = (uint32_t)((b->off + b->rx) % PLEN);
        if (memcmp(p, ws->w->pattern + pos, seg) != 0)
            b->bad = true;
        b->rx += seg;
        p += seg;
        len -= seg;
        if (in_msg + seg < cfg->size)
            break; /* the message is not complete yet */
        uint64_t idx = (b->rx / cfg->size - 1) % cfg->depth;
        if (meas) {
            uint64_t t = b->sent_ns[idx];
            hist_record(&ws->w->hist, now > t ? (now - t) / 1000u : 0);
            ctr_add(&ws->w->ctr.messages, 1);
        }
        if (b->bad) {
            ctr_add(&ws->w->ctr.mismatches, 1);
            b->bad = false;
        }
    }
    echo_pump(b);
}

/* ---------------------------------------------------------------- bulk */

static void bulk_pump(bconn *b)
{
    if (!b->up || !(b->ws->cfg->bulk_dir & BULK_SEND))
        return;
    /* The watermarks are 0: the conn turns unwritable as soon as the kernel leaves anything
     * over, and on_drain calls us again once that is gone. */
    while (!done(b->ws) && sk_conn_writable(b->c))
        if (write_stream(b, b->ws->cfg->size) < 0)
            return;
}

static void bulk_frame(sk_conn *c, const void *data, size_t len)
{
    bconn *b = sk_conn_data(c);
    b->rx += len;
    if (measuring(b->ws))
        ctr_add(&b->ws->w->ctr.bytes_rx, len);
}

static void bulk_drain(sk_conn *c)
{
    bulk_pump(sk_conn_data(c));
}

/* ---------------------------------------------------------------- echo, bulk and idle */

static void open_more(wstate *ws);

/* --send-proxy on plain TCP: the same header for every connection, written as it comes up (one
 * send, as a real proxy's client side costs); over TLS it is a layer under the handshake. */
static void write_proxy_header(sk_conn *c, const bench_config *cfg)
{
    if (cfg->proxy_header_len && !cfg->tls)
        sk_conn_write(c, cfg->proxy_header, cfg->proxy_header_len);
}

static void stream_connect(sk_conn *c)
{
    bconn *b = sk_conn_data(c);
    wstate *ws = b->ws;
    const bench_config *cfg = ws->cfg;
    write_proxy_header(c, cfg);
    b->up = true;
    ws->pending--;
    ctr_add(&ws->w->ctr.open, 1);
    ctr_add(&ws->w->ctr.opened, 1);
    ctr_add(&ws->w->ctr.attempts_done, 1);
    switch (cfg->mode) {
    case BENCH_ECHO: {
        /* The queue never holds more than what is in flight. */
        size_t limit = cfg->size * cfg->depth * 2;
        sk_conn_set_watermarks(c, 16384, 65536, limit > (1u << 20) ? limit : (1u << 20));
        uint64_t now = bench_now_ns();
        b->due_ns = now + (ws->interval_ns / cfg->conns) * b->no % (ws->interval_ns + 1);
        echo_pump(b);
        break;
    }
    case BENCH_BULK:
        sk_conn_set_watermarks(c, 0, 0, cfg->size * 2);
        bulk_pump(b);
        break;
    case BENCH_IDLE: open_more(ws); break;
    case BENCH_CONNECT: break;
    }
}

static void stream_eof(sk_conn *c)
{
    sk_conn_close(c); /* the server closed: on_close counts it */
}

static void check_finished(wstate *ws)
{
    bench_counters *k = &ws->w->ctr;
    bool more_to_open = ws->cfg->mode == BENCH_IDLE && ws->next_open < ws->w->count;
    if (ctr_get(&k->open) == 0 && ws->pending == 0 && !more_to_open)
        atomic_store(&k->finished, true);
}

static void stream_close(sk_conn *c, int reason)
{
    bconn *b = sk_conn_data(c);
    wstate *ws = b->ws;
    b->c = NULL;
    if (b->up) {
        b->up = false;
        atomic_store_explicit(&ws->w->ctr.open, ctr_get(&ws->w->ctr.open) - 1,
                              memory_order_relaxed);
    } else {
        ws->pending--; /* the connect failed */
        ctr_add(&ws->w->ctr.attempts_done, 1);
    }
    if (done(ws))
        return;
    note_error(ws, reason);
    if (ws->cfg->mode == BENCH_IDLE)
        open_more(ws);
    check_finished(ws);
}

static const sk_conn_callbacks echo_callbacks = {
    .on_connect = stream_connect,
    .on_frame = echo_frame,
    .on_eof = stream_eof,
    .on_close = stream_close,
};

static const sk_conn_callbacks bulk_callbacks = {
    .on_connect = stream_connect,
    .on_frame = bulk_frame,
    .on_eof = stream_eof,
    .on_drain = bulk_drain,
    .on_close = stream_close,
};

/* --send-proxy: a header with the connection's own addresses, before TLS. */
static int send_proxy(wstate *ws, bconn *b)
{
    sk_proxy_write_opts o = {.version = ws->cfg->send_proxy,
                             .command = SK_PROXY_CMD_PROXY,
                             .transport = SK_PROXY_STREAM};
    if (sk_proxy_send(b->c, &o, ws->cfg->timeout_ms) < 0)
        sk_conn_abort(b->c); /* out of memory: its close counts the failure */
    return 0;
}

static void start_stream(wstate *ws, bconn *b)
{
    const sk_conn_callbacks *cb = ws->cfg->mode == BENCH_BULK ? &bulk_callbacks : &echo_callbacks;
    b->tx = b->rx = 0;
    int rc = sk_conn_connect(ws->w->loop, &ws->cfg->addr, ws->cfg->timeout_ms, cb, b, &b->c);
    if (rc == 0 && ws->cfg->send_proxy && ws->cfg->tls)
        rc = send_proxy(ws, b);
    if (rc == 0 && ws->cfg->tls)
        start_tls(ws, b);
    if (rc < 0) {
        b->c = NULL;
        note_error(ws, rc);
        ctr_add(&ws->w->ctr.attempts_done, 1);
        return;
    }
    ws->pending++;
}

static void open_more(wstate *ws)
{
    while (!done(ws) && ws->pending < IDLE_CONNECTS_IN_FLIGHT && ws->next_open < ws->w->count)
        start_stream(ws, &ws->conns[ws->next_open++]);
    check_finished(ws);
}

/* ---------------------------------------------------------------- connect */

static void start_connect(wstate *ws, bconn *b);

static void connect_frame(sk_conn *c, const void *data, size_t len)
{
    bconn *b = sk_conn_data(c);
    b->rx += len; /* counted when the connection completes, with it */
}

static void connect_eof(sk_conn *c)
{
    bconn *b = sk_conn_data(c);
    b->got_eof = true;
    sk_conn_close(c);
}

static void connect_close(sk_conn *c, int reason)
{
    bconn *b = sk_conn_data(c);
    wstate *ws = b->ws;
    b->c = NULL;
    if (done(ws))
        return;
    if (reason == 0 && b->got_eof) {
        if (measuring(ws)) {
            uint64_t now = bench_now_ns();
            hist_record(&ws->w->hist, (now - b->start_ns) / 1000u);
            ctr_add(&ws->w->ctr.messages, 1);
            ctr_add(&ws->w->ctr.bytes_rx, b->rx);
        }
        ctr_add(&ws->w->ctr.opened, 1);
        start_connect(ws, b);
        return;
    }
    /* Refused, reset, timed out: count it and try again a little later, not in a tight loop. */
    note_error(ws, reason);
    b->waiting = true;
    if (!sk_timer_active(ws->retry))
        sk_timer_start(ws->retry, RETRY_MS, 0);
}

static void connect_up(sk_conn *c)
{
    bconn *b = sk_conn_data(c);
    write_proxy_header(c, b->ws->cfg);
}

static const sk_conn_callbacks connect_callbacks = {
    .on_connect = connect_up,
    .on_frame = connect_frame,
    .on_eof = connect_eof,
    .on_close = connect_close,
};

static void start_connect(wstate *ws, bconn *b)
{
    b->got_eof = false;
    b->waiting = false;
    b->rx = 0;
    b->start_ns = bench_now_ns();
    int rc = sk_conn_connect(ws->w->loop, &ws->cfg->addr, ws->cfg->timeout_ms, &connect_callbacks,
                             b, &b->c);
    if (rc == 0 && ws->cfg->send_proxy && ws->cfg->tls)
        rc = send_proxy(ws, b);
    if (rc == 0 && ws->cfg->tls)
        start_tls(ws, b);
    if (rc < 0) {
        b->c = NULL;
        note_error(ws, rc);
        b->waiting = true;
        if (!sk_timer_active(ws->retry))
            sk_timer_start(ws->retry, RETRY_MS, 0);
    }
}

static void retry_fired(sk_timer *t, void *arg)
{
    wstate *ws = arg;
    for (uint32_t i = 0; i < ws->w->count && !done(ws); i++)
        if (ws->conns[i].waiting)
            start_connect(ws, &ws->conns[i]);
}

/* ---------------------------------------------------------------- --rate ticks */

/* A timerfd with nanosecond resolution wakes the worker when the earliest message is due. Each
 * wake-up scans the worker's connections, so wake-ups are spaced by at least half a
 * microsecond per connection: a message may go out a little late, and its latency (counted
 * from when it was due) shows it. */
static void arm_tick(wstate *ws, uint64_t at_ns)
{
    uint64_t earliest = ws->last_tick_ns + ws->tick_spacing_ns;
    if (at_ns < earliest)
        at_ns = earliest;
    if (ws->armed_ns && ws->armed_ns <= at_ns)
        return;
    ws->armed_ns = at_ns;
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(at_ns / 1000000000u),
                     .tv_nsec = (long)(at_ns % 1000000000u)},
    };
    timerfd_settime(ws->tick_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void tick(sk_loop *loop, int fd, unsigned events, void *arg)
{
    wstate *ws = arg;
    uint64_t expirations;
    if (read(fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        return;
    ws->armed_ns = 0;
    ws->last_tick_ns = bench_now_ns();
    for (uint32_t i = 0; i < ws->w->count; i++)
        echo_pump(&ws->conns[i]);
}

static int start_ticks(wstate *ws)
{
    ws->tick_spacing_ns = ws->w->count <= 64 ? 0 : (uint64_t)ws->w->count * 500u;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* the default lets a wake-up come 50 us late */
    ws->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ws->tick_fd < 0)
        return -errno;
    return sk_loop_watch(ws->w->loop, ws->tick_fd, SK_READABLE, tick, ws);
}

/* ---------------------------------------------------------------- the thread */

static void stop_posted(sk_loop *loop, void *arg)
{
    wstate *ws = ((bench_worker *)arg)->priv;
    ws->stopping = true;
    sk_loop_stop(loop);
}

void bench_worker_stop(bench_worker *w)
{
    sk_loop_post(w->loop, stop_posted, w);
}

static int worker_setup(bench_worker *w, wstate *ws)
{
    const bench_config *cfg = w->cfg;
    ws->w = w;
    ws->cfg = cfg;
    ws->tick_fd = -1;
    ws->conns = calloc(w->count ? w->count : 1, sizeof *ws->conns);
    if (!ws->conns)
        return -ENOMEM;
    if (cfg->mode == BENCH_ECHO) {
        ws->ring = calloc((size_t)(w->count ? w->count : 1) * cfg->depth, sizeof *ws->ring);
        if (!ws->ring)
            return -ENOMEM;
    }
    for (uint32_t i = 0; i < w->count; i++) {
        bconn *b = &ws->conns[i];
        b->ws = ws;
        b->no = w->first + i;
        b->off = (uint32_t)(((uint64_t)b->no * 2654435761u) % PLEN);
        if (ws->ring)
            b->sent_ns = ws->ring + (size_t)i * cfg->depth;
    }
    if (cfg->rate && cfg->mode == BENCH_ECHO && w->count) {
        ws->interval_ns = (uint64_t)(1e9 * cfg->conns / (double)cfg->rate);
        int rc = start_ticks(ws);
        if (rc < 0)
            return rc;
    }
    if (cfg->mode == BENCH_CONNECT && sk_timer_new(w->loop, retry_fired, ws, &ws->retry) < 0)
        return -ENOMEM;
    return 0;
}

static void worker_start(wstate *ws)
{
    bench_worker *w = ws->w;
    switch (w->cfg->mode) {
    case BENCH_IDLE: open_more(ws); break;
    case BENCH_CONNECT:
        for (uint32_t i = 0; i < w->count; i++)
            start_connect(ws, &ws->conns[i]);
        break;
    default:
        for (uint32_t i = 0; i < w->count; i++)
            start_stream(ws, &ws->conns[i]);
        check_finished(ws);
        break;
    }
}

void *bench_worker_main(void *arg)
{
    bench_worker *w = arg;
    wstate ws = {0};
    w->priv = &ws;
    int rc = worker_setup(w, &ws);
    if (rc < 0) {
        int none = 0;
        atomic_compare_exchange_strong(&w->ctr.first_error, &none, rc);
        atomic_store(&w->ctr.finished, true);
    } else {
        worker_start(&ws);
        sk_loop_run(w->loop);
    }
    ws.stopping = true;
    for (uint32_t i = 0; i < w->count; i++)
        if (ws.conns && ws.conns[i].c)
            sk_conn_abort(ws.conns[i].c);
    sk_loop_run_once(w->loop, 0); /* the close callbacks, and the frees after them */
    if (ws.tick_fd >= 0) {
        sk_loop_unwatch(w->loop, ws.tick_fd);
        close(ws.tick_fd);
    }
    sk_timer_free(ws.retry);
    free(ws.conns);
    free(ws.ring);
    return NULL;
}
