/* sockit bench: a load generator. This file parses the options, starts the worker threads
 * (bench_work.c, one sk_loop each), keeps the clock (warm-up, measured window, progress line
 * once a second), and prints the result as a short table or one JSON object.
 *
 * Every run is bounded: --warmup + -t + a second of grace (idle: --warmup bounds the opening). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

static const char bench_usage[] =
    "usage: sockit bench ADDRESS [options]\n"
    "\n"
    "Load a server at ADDRESS (HOST:PORT, tls://HOST:PORT or unix:PATH) and measure it:\n"
    "throughput, latency percentiles, errors.\n"
    "\n"
    "modes (-m):\n"
    "  echo      (default) C connections, each with D messages of S bytes in flight; every\n"
    "            echoed byte is checked; latency per message\n"
    "  connect   open, read until the server closes, close, repeat: connections per second\n"
    "  bulk      send (and/or receive) as fast as possible: Gbit/s\n"
    "  idle      open C connections and hold them (what the server pays per connection)\n"
    "\n"
    "options:\n"
    "  -m, --mode MODE        echo, connect, bulk or idle\n"
    "  -c, --connections N    concurrent connections (echo, connect: 10; bulk: 1; idle: 1000)\n"
    "  -d, --depth N          echo: messages in flight per connection (default 1)\n"
    "  -s, --size BYTES       echo: message size (default 64); bulk: write size (default 128K)\n"
    "  -t, --duration SECS    measured time (default 5); idle: how long to hold\n"
    "      --warmup SECS      unmeasured time first (default 1); idle: the longest time\n"
    "                         allowed to open every connection (default 10)\n"
    "      --rate N           echo: N messages per second in total; latency then counts\n"
    "                         from when each message was due (coordinated-omission safe)\n"
    "      --threads N        worker threads, each with its own event loop (default 1)\n"
    "      --direction DIR    bulk: send (default, to a discard server), recv (from a\n"
    "                         source server) or both (to an echo server)\n"
    "      --timeout SECS     give up on a connect after SECS (default 5)\n"
    "      --ca FILE          tls://: trust these CAs instead of the system's\n"
    "      --pin sha256:HEX   tls://: accept exactly the certificate with this fingerprint\n"
    "      --insecure         tls://: accept any certificate\n"
    "      --send-proxy v1|v2 start each connection with a PROXY header (to measure a\n"
    "                         server's --accept-proxy)\n"
    "      --server-pid PID   also measure that server: CPU time (its whole process tree)\n"
    "                         per message or connection, and memory (RSS)\n"
    "      --json             print one JSON object instead of the table\n"
    "  -q, --quiet            no progress line\n"
    "  -h, --help             this help\n"
    "\n"
    "On a terminal, a progress line is updated every second. SIGINT ends the run early and\n"
    "prints what was measured. Exit status: 0 done, 1 nothing could be measured (no server,\n"
    "every connection failed) or an echoed byte did not match, 2 usage error.\n";

typedef struct bench_args {
    const char *address;
    bool json, quiet;
    int server_pid;
    uint64_t duration_ms, warmup_ms;
    bool conns_set, size_set, warmup_set, dir_set;
    tls_cli tls;
} bench_args;

static const struct option long_options[] = {
    {"mode", required_argument, NULL, 'm'},
    {"connections", required_argument, NULL, 'c'},
    {"depth", required_argument, NULL, 'd'},
    {"size", required_argument, NULL, 's'},
    {"duration", required_argument, NULL, 't'},
    {"warmup", required_argument, NULL, 'W'},
    {"rate", required_argument, NULL, 'r'},
    {"threads", required_argument, NULL, 'T'},
    {"direction", required_argument, NULL, 'D'},
    {"timeout", required_argument, NULL, 'o'},
    {"server-pid", required_argument, NULL, 'P'},
    {"ca", required_argument, NULL, 'C'},
    {"pin", required_argument, NULL, 'N'},
    {"insecure", no_argument, NULL, 'k'},
    PROXY_CLI_SEND_OPTION,
    {"json", no_argument, NULL, 'j'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {0},
};

static const char *const mode_names[] = {"echo", "connect", "bulk", "idle"};

static bench_mode parse_mode(const char *text)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(text, mode_names[i]))
            return (bench_mode)i;
    die(EXIT_USAGE, "--mode: unknown mode '%s' (use echo, connect, bulk or idle)", text);
}

static int parse_direction(const char *text)
{
    if (!strcmp(text, "send"))
        return BULK_SEND;
    if (!strcmp(text, "recv"))
        return BULK_RECV;
    if (!strcmp(text, "both"))
        return BULK_BOTH;
    die(EXIT_USAGE, "--direction: unknown direction '%s' (use send, recv or both)", text);
}

static void check_options(const bench_config *cfg, const bench_args *a, bool depth_set)
{
    if (cfg->rate && cfg->mode != BENCH_ECHO)
        die(EXIT_USAGE, "--rate is for echo mode only (see 'sockit bench --help')");
    if (depth_set && cfg->mode != BENCH_ECHO)
        die(EXIT_USAGE, "--depth is for echo mode only (see 'sockit bench --help')");
    if (a->dir_set && cfg->mode != BENCH_BULK)
        die(EXIT_USAGE, "--direction is for bulk mode only (see 'sockit bench --help')");
    if (a->size_set && (cfg->mode == BENCH_CONNECT || cfg->mode == BENCH_IDLE))
        die(EXIT_USAGE, "--size is for echo and bulk modes (see 'sockit bench --help')");
    if (cfg->threads > cfg->conns)
        die(EXIT_USAGE, "--threads %u is more than the %u connections (use at most -c)",
            cfg->threads, cfg->conns);
    if ((uint64_t)cfg->size * cfg->depth > (64u << 20))
        die(EXIT_USAGE, "--size x --depth is %llu bytes in flight per connection (at most 64M)",
            (unsigned long long)cfg->size * cfg->depth);
    if (a->duration_ms == 0)
        die(EXIT_USAGE, "-t: the duration must be above 0 seconds (for example -t 5)");
}

static void parse_args(int argc, char **argv, bench_config *cfg, bench_args *a)
{
    *cfg = (bench_config){
        .mode = BENCH_ECHO, .depth = 1, .threads = 1, .bulk_dir = BULK_SEND, .timeout_ms = 5000};
    *a = (bench_args){.duration_ms = 5000, .warmup_ms = 1000};
    bool depth_set = false;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":m:c:d:s:t:qh", long_options, NULL)) != -1) {
        switch (ch) {
        case 'm': cfg->mode = parse_mode(optarg); break;
        case 'c':
            cfg->conns = (uint32_t)parse_count("-c", optarg, 1, 1000000);
            a->conns_set = true;
            break;
        case 'd':
            cfg->depth = (uint32_t)parse_count("-d", optarg, 1, 65536);
            depth_set = true;
            break;
        case 's':
            cfg->size = parse_count("-s", optarg, 1, 1u << 20);
            a->size_set = true;
            break;
        case 't': a->duration_ms = parse_seconds_ms("-t", optarg); break;
        case 'W':
            a->warmup_ms = parse_seconds_ms("--warmup", optarg);
            a->warmup_set = true;
            break;
        case 'r': cfg->rate = parse_count("--rate", optarg, 1, 1000000000); break;
        case 'T': cfg->threads = (uint32_t)parse_count("--threads", optarg, 1, 256); break;
        case 'D':
            cfg->bulk_dir = parse_direction(optarg);
            a->dir_set = true;
            break;
        case 'o': cfg->timeout_ms = parse_seconds_ms("--timeout", optarg); break;
        case 'P': a->server_pid = (int)parse_count("--server-pid", optarg, 1, 1 << 30); break;
        case 'C': a->tls.ca = optarg; break;
        case 'N': a->tls.pin = optarg; break;
        case 'k': a->tls.insecure = true; break;
        case OPT_SEND_PROXY: {
            proxy_cli p = {0};
            proxy_cli_option(&p, ch, optarg);
            cfg->send_proxy = p.send_version;
            /* Documentation addresses (RFC 5737): what the server logs does not matter here. */
            sk_addr src, dst;
            sk_addr_from_ip(&src, "192.0.2.1", 40000);
            sk_addr_from_ip(&dst, "192.0.2.2", 443);
            sk_proxy_write_opts o = {.version = p.send_version,
                                     .command = SK_PROXY_CMD_PROXY,
                                     .transport = SK_PROXY_STREAM,
                                     .src = &src,
                                     .dst = &dst};
            int n = sk_proxy_write(cfg->proxy_header, sizeof cfg->proxy_header, &o);
            cfg->proxy_header_len = n > 0 ? (size_t)n : 0;
            break;
        }
        case 'j': a->json = true; break;
        case 'q': a->quiet = true; break;
        case 'h': fputs(bench_usage, stdout); exit(EXIT_OK);
        case ':':
            die(EXIT_USAGE, "option '%s' needs a value (see 'sockit bench --help')",
                argv[optind - 1]);
        default:
            die(EXIT_USAGE, "unknown option '%s' (see 'sockit bench --help')", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        die(EXIT_USAGE, "bench needs an address: sockit bench HOST:PORT (see 'sockit bench "
                        "--help')");
    a->address = argv[optind++];
    if (optind < argc)
        die(EXIT_USAGE,
            "unexpected argument '%s': bench takes one ADDRESS (see 'sockit bench "
            "--help')",
            argv[optind]);
    if (!a->conns_set)
        cfg->conns = cfg->mode == BENCH_BULK ? 1 : cfg->mode == BENCH_IDLE ? 1000 : 10;
    if (!a->size_set)
        cfg->size = cfg->mode == BENCH_BULK ? 128 * 1024 : 64;
    if (cfg->mode == BENCH_IDLE && !a->warmup_set)
        a->warmup_ms = 10000;
    check_options(cfg, a, depth_set);
}

static void resolve(bench_config *cfg, const char *text, const tls_cli *tls)
{
    sk_addrspec spec;
    char err[256];
    if (sk_addr_parse(text, -1, &spec, err, sizeof err) < 0)
        die(EXIT_USAGE, "bad address '%s': %s", text, err);
    if (spec.scheme == SK_SCHEME_UDP)
        die(EXIT_USAGE,
            "'%s': udp:// is not supported by bench yet (use tcp://, tls:// or "
            "unix:)",
            text);
    if (spec.scheme == SK_SCHEME_TLS) {
        tls_cli_client_ctx(tls, &cfg->tls);
        snprintf(cfg->tls_name, sizeof cfg->tls_name, "%s", spec.host[0] ? spec.host : "localhost");
    } else if (tls->ca || tls->pin || tls->insecure) {
        die(EXIT_USAGE,
            "--ca, --pin and --insecure need a tls:// address (sockit bench "
            "tls://%s ...)",
            text);
    }
    if (!spec.is_unix && spec.host[0] == '\0')
        snprintf(spec.host, sizeof spec.host, "localhost");
    if (!spec.is_unix && spec.port == 0)
        die(EXIT_USAGE, "bad address '%s': port 0 cannot be connected to (use 1-65535)", text);
    int n = sk_addr_resolve(&spec, 0, &cfg->addr, 1);
    if (n < 0)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec.host, sk_strerror(n),
            hint_for(n, false, 0));
    char shown[SK_ADDR_STRLEN];
    sk_addr_format(&cfg->addr, shown, sizeof shown);
    snprintf(cfg->name, sizeof cfg->name, "%s%s", cfg->tls ? "tls://" : "", shown);
}

/* Every connection needs a descriptor: raise the soft limit, and the hard one when allowed. */
static uint64_t raise_fd_limit(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur >= want)
        return rl.rlim_cur;
    if (rl.rlim_max < want) {
        struct rlimit both = {.rlim_cur = want, .rlim_max = want};
        if (setrlimit(RLIMIT_NOFILE, &both) == 0)
            return want;
    }
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

/* ---------------------------------------------------------------- the run */

typedef struct totals {
    uint64_t messages, bytes_tx, bytes_rx, errors, mismatches, open, opened, attempts;
    int first_error;
    bool all_finished;
} totals;

static void sum_counters(bench_worker *ws, uint32_t n, totals *t)
{
    memset(t, 0, sizeof *t);
    t->all_finished = true;
    for (uint32_t i = 0; i < n; i++) {
        bench_counters *k = &ws[i].ctr;
        t->messages += ctr_get(&k->messages);
        t->bytes_tx += ctr_get(&k->bytes_tx);
        t->bytes_rx += ctr_get(&k->bytes_rx);
        t->errors += ctr_get(&k->errors);
        t->mismatches += ctr_get(&k->mismatches);
        t->open += ctr_get(&k->open);
        t->opened += ctr_get(&k->opened);
        t->attempts += ctr_get(&k->attempts_done);
        int e = atomic_load(&k->first_error);
        if (e && !t->first_error)
            t->first_error = e;
        if (!atomic_load(&k->finished))
            t->all_finished = false;
    }
}

static double seconds_since(uint64_t ns)
{
    return (double)(bench_now_ns() - ns) / 1e9;
}

/* Wait up to ms for SIGINT or SIGTERM (blocked in every thread). True if one came. */
static bool wait_signal(uint64_t ms)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    return sigtimedwait(&set, NULL, &ts) > 0;
}

typedef struct run {
    bench_config cfg;
    _Atomic int phase; /* PHASE_*: the workers read it */
    uint8_t *pattern;  /* echo and bulk: what every connection sends */
    bench_args args;
    bench_worker *workers;
    uint64_t t_start, t_measure, t_end;
    bool interrupted, progress;
    totals last; /* at the previous progress line */
    uint64_t last_ns;
    uint64_t idle_open_ns; /* idle: how long opening took */
    proc_sample srv0, srv1;
    uint64_t nofile;
    uint64_t open_at_end; /* connections open when the measured time ended */
} run;

static void progress_line(run *r)
{
    totals t;
    sum_counters(r->workers, r->cfg.threads, &t);
    uint64_t now = bench_now_ns();
    double dt = (double)(now - r->last_ns) / 1e9;
    const char *phase = r->t_measure ? "" : r->cfg.mode == BENCH_IDLE ? " opening" : " warm-up";
    char what[128];
    switch (r->cfg.mode) {
    case BENCH_ECHO:
        snprintf(what, sizeof what, "%.0f msg/s", (double)(t.messages - r->last.messages) / dt);
        break;
    case BENCH_CONNECT:
        snprintf(what, sizeof what, "%.0f conn/s", (double)(t.opened - r->last.opened) / dt);
        break;
    case BENCH_BULK:
        snprintf(what, sizeof what, "%.2f Gbit/s",
                 (double)(t.bytes_tx + t.bytes_rx - r->last.bytes_tx - r->last.bytes_rx) * 8 / dt /
                     1e9);
        break;
    case BENCH_IDLE:
        snprintf(what, sizeof what, "%llu of %u open", (unsigned long long)t.open, r->cfg.conns);
        break;
    }
    fprintf(stderr, "\r\033[K%5.1fs%s  %s  conns %llu  errors %llu  mismatches %llu",
            seconds_since(r->t_start), phase, what, (unsigned long long)t.open,
            (unsigned long long)t.errors, (unsigned long long)t.mismatches);
    fflush(stderr);
    r->last = t;
    r->last_ns = now;
}

/* Sleep until deadline_ns, drawing the progress line every second. False: stop now (a signal,
 * or nothing more can happen). */
static bool run_until(run *r, uint64_t deadline_ns, bool (*enough)(run *r))
{
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= deadline_ns)
            return true;
        uint64_t next_line = r->last_ns + 1000000000u;
        uint64_t until = r->progress && next_line < deadline_ns ? next_line : deadline_ns;
        uint64_t ms = until > now ? (until - now + 999999) / 1000000 : 0;
        if (ms > 50)
            ms = 50; /* look at the counters often: every connection may be gone */
        if (wait_signal(ms)) {
            r->interrupted = true;
            return false;
        }
        if (r->progress && bench_now_ns() >= next_line)
            progress_line(r);
        totals t;
        sum_counters(r->workers, r->cfg.threads, &t);
        if (t.all_finished)
            return false;
        if (enough && enough(r))
            return true;
        /* No server there: after a second without a single connection, stop trying. */
        if (t.opened == 0 && t.errors > 0 && seconds_since(r->t_start) > 1.0)
            return false;
    }
}

static bool all_opened(run *r)
{
    totals t;
    sum_counters(r->workers, r->cfg.threads, &t);
    return t.attempts >= r->cfg.conns;
}

static void start_workers(run *r)
{
    bench_config *cfg = &r->cfg;
    r->workers = calloc(cfg->threads, sizeof *r->workers);
    if (!r->workers)
        die(EXIT_RUNTIME, "out of memory");
    for (uint32_t i = 0; i < cfg->threads; i++) {
        bench_worker *w = &r->workers[i];
        w->cfg = cfg;
        w->phase = &r->phase;
        w->pattern = r->pattern;
        w->first = (uint32_t)((uint64_t)cfg->conns * i / cfg->threads);
        w->count = (uint32_t)((uint64_t)cfg->conns * (i + 1) / cfg->threads) - w->first;
        hist_init(&w->hist);
        int rc = sk_loop_new(&w->loop);
        if (rc < 0)
            die(EXIT_RUNTIME, "cannot create an event loop: %s", sk_strerror(rc));
    }
    for (uint32_t i = 0; i < cfg->threads; i++) {
        int rc = pthread_create(&r->workers[i].thread, NULL, bench_worker_main, &r->workers[i]);
        if (rc != 0)
            die(EXIT_RUNTIME, "cannot start a worker thread: %s", strerror(rc));
    }
}

static void run_bench(run *r)
{
    bench_config *cfg = &r->cfg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit it; we take them here */
    atomic_store(&r->phase, PHASE_WARMUP);
    if (r->args.server_pid)
        proc_sample_take(r->args.server_pid, &r->srv0);
    r->t_start = r->last_ns = bench_now_ns();
    start_workers(r);
    bool go_on;
    if (cfg->mode == BENCH_IDLE) {
        go_on = run_until(r, r->t_start + r->args.warmup_ms * 1000000u, all_opened);
        r->idle_open_ns = bench_now_ns() - r->t_start;
    } else {
        go_on = run_until(r, r->t_start + r->args.warmup_ms * 1000000u, NULL);
    }
    r->t_measure = bench_now_ns();
    if (r->args.server_pid && cfg->mode != BENCH_IDLE)
        proc_sample_take(r->args.server_pid, &r->srv0);
    atomic_store(&r->phase, PHASE_MEASURE);
    if (go_on)
        run_until(r, r->t_measure + r->args.duration_ms * 1000000u, NULL);
    if (r->args.server_pid)
        proc_sample_take(r->args.server_pid, &r->srv1);
    totals t;
    sum_counters(r->workers, cfg->threads, &t);
    r->open_at_end = t.open;
    atomic_store(&r->phase, PHASE_DONE);
    r->t_end = bench_now_ns();
    if (r->progress) {
        progress_line(r);
        fputs("\r\033[K", stderr);
    }
    for (uint32_t i = 0; i < cfg->threads; i++)
        bench_worker_stop(&r->workers[i]);
    for (uint32_t i = 0; i < cfg->threads; i++)
        pthread_join(r->workers[i].thread, NULL);
}

/* ---------------------------------------------------------------- the report */

typedef struct result {
    totals t;
    bench_hist hist;
    double secs, client_cpu_s;
    double per_s; /* messages (echo) or connections (connect) per second */
    double tx_gbps, rx_gbps;
    bool server;
    double server_cpu_s, server_cpu_us_per; /* per message or connection */
    double rss_per_conn;                    /* idle: bytes */
} result;

static void compute(run *r, result *res)
{
    memset(res, 0, sizeof *res);
    sum_counters(r->workers, r->cfg.threads, &res->t);
    hist_init(&res->hist);
    for (uint32_t i = 0; i < r->cfg.threads; i++)
        hist_merge(&res->hist, &r->workers[i].hist);
    res->secs = (double)(r->t_end - r->t_measure) / 1e9;
    if (res->secs <= 0)
        res->secs = 1e-9;
    res->per_s = (double)res->t.messages / res->secs;
    res->tx_gbps = (double)res->t.bytes_tx * 8 / res->secs / 1e9;
    res->rx_gbps = (double)res->t.bytes_rx * 8 / res->secs / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->client_cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    res->server = r->srv0.ok && r->srv1.ok;
    if (res->server) {
        res->server_cpu_s = r->srv1.cpu_s - r->srv0.cpu_s;
        if (res->t.messages)
            res->server_cpu_us_per = res->server_cpu_s * 1e6 / (double)res->t.messages;
        if (r->cfg.mode == BENCH_IDLE && r->open_at_end)
            res->rss_per_conn = ((double)r->srv1.rss_kib - (double)r->srv0.rss_kib) * 1024.0 /
                                (double)r->open_at_end;
    }
}

static const char *error_text(int err)
{
    if (err == -ESHUTDOWN)
        return "the server closed the connection";
    if (err == -EPROTO)
        return "the server sent back more than it was sent";
    return sk_strerror(err);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void print_json(const run *r, const result *res)
{
    const bench_config *cfg = &r->cfg;
    const bench_hist *h = &res->hist;
    printf("{\"mode\":\"%s\",\"address\":", mode_names[cfg->mode]);
    print_json_string(cfg->name);
    printf(",\"connections\":%u,\"depth\":%u,\"size\":%zu,\"threads\":%u,\"rate\":%llu", cfg->conns,
           cfg->mode == BENCH_ECHO ? cfg->depth : 0,
           cfg->mode == BENCH_ECHO || cfg->mode == BENCH_BULK ? cfg->size : 0, cfg->threads,
           (unsigned long long)cfg->rate);
    if (cfg->mode == BENCH_BULK)
        printf(",\"direction\":\"%s\"", cfg->bulk_dir == BULK_SEND   ? "send"
                                        : cfg->bulk_dir == BULK_RECV ? "recv"
                                                                     : "both");
    printf(",\"warmup_s\":%.3f,\"duration_s\":%.3f,\"interrupted\":%s", r->args.warmup_ms / 1e3,
           res->secs, r->interrupted ? "true" : "false");
    printf(",\"messages\":%llu,\"per_second\":%.1f", (unsigned long long)res->t.messages,
           res->per_s);
    printf(",\"bytes_sent\":%llu,\"bytes_received\":%llu", (unsigned long long)res->t.bytes_tx,
           (unsigned long long)res->t.bytes_rx);
    printf(",\"sent_gbit_per_s\":%.4f,\"received_gbit_per_s\":%.4f", res->tx_gbps, res->rx_gbps);
    printf(",\"latency_us\":{\"count\":%llu,\"min\":%llu,\"mean\":%.1f,\"p50\":%llu,"
           "\"p90\":%llu,\"p99\":%llu,\"p99_9\":%llu,\"max\":%llu}",
           (unsigned long long)h->count, (unsigned long long)(h->count ? h->min : 0),
           h->count ? (double)h->sum / (double)h->count : 0.0,
           (unsigned long long)hist_percentile(h, 50), (unsigned long long)hist_percentile(h, 90),
           (unsigned long long)hist_percentile(h, 99), (unsigned long long)hist_percentile(h, 99.9),
           (unsigned long long)h->max);
    printf(",\"errors\":%llu,\"mismatches\":%llu,\"first_error\":",
           (unsigned long long)res->t.errors, (unsigned long long)res->t.mismatches);
    if (res->t.first_error)
        print_json_string(error_text(res->t.first_error));
    else
        printf("null");
    printf(",\"connections_opened\":%llu,\"connections_open_at_end\":%llu",
           (unsigned long long)res->t.opened, (unsigned long long)r->open_at_end);
    if (cfg->mode == BENCH_IDLE)
        printf(",\"open_s\":%.3f", (double)r->idle_open_ns / 1e9);
    printf(",\"client_cpu_s\":%.3f,\"nofile_limit\":%llu", res->client_cpu_s,
           (unsigned long long)r->nofile);
    if (res->server) {
        printf(",\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_us_per_%s\":%.4f,"
               "\"rss_kib_start\":%llu,\"rss_kib_end\":%llu",
               r->args.server_pid, res->server_cpu_s,
               cfg->mode == BENCH_CONNECT ? "connection" : "message", res->server_cpu_us_per,
               (unsigned long long)r->srv0.rss_kib, (unsigned long long)r->srv1.rss_kib);
        if (cfg->mode == BENCH_IDLE)
            printf(",\"rss_bytes_per_connection\":%.1f", res->rss_per_conn);
        putchar('}');
    }
    printf("}\n");
}

static void print_table(const run *r, const result *res)
{
    const bench_config *cfg = &r->cfg;
    const bench_hist *h = &res->hist;
    printf("sockit bench %s %s: %u connection%s", mode_names[cfg->mode], cfg->name, cfg->conns,
           cfg->conns == 1 ? "" : "s");
    if (cfg->mode == BENCH_ECHO)
        printf(", depth %u, %zu-byte messages", cfg->depth, cfg->size);
    if (cfg->rate)
        printf(", %llu msg/s asked", (unsigned long long)cfg->rate);
    printf(", %u thread%s, %.1f s measured%s\n", cfg->threads, cfg->threads == 1 ? "" : "s",
           res->secs, r->interrupted ? " (interrupted)" : "");
    const char *unit = cfg->mode == BENCH_CONNECT ? "connections" : "messages";
    switch (cfg->mode) {
    case BENCH_ECHO:
    case BENCH_CONNECT:
        printf("  %-12s %llu  (%.0f/s)\n", unit, (unsigned long long)res->t.messages, res->per_s);
        printf("  %-12s p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu  (mean %.1f)\n",
               "latency, us", (unsigned long long)hist_percentile(h, 50),
               (unsigned long long)hist_percentile(h, 90),
               (unsigned long long)hist_percentile(h, 99),
               (unsigned long long)hist_percentile(h, 99.9), (unsigned long long)h->max,
               h->count ? (double)h->sum / (double)h->count : 0.0);
        break;
    case BENCH_IDLE:
        printf("  %-12s %llu of %u, opened in %.2f s\n", "open", (unsigned long long)r->open_at_end,
               cfg->conns, (double)r->idle_open_ns / 1e9);
        break;
    case BENCH_BULK: break;
    }
    if (cfg->mode != BENCH_IDLE)
        printf("  %-12s sent %.3f Gbit/s, received %.3f Gbit/s\n", "throughput", res->tx_gbps,
               res->rx_gbps);
    printf("  %-12s %llu", "errors", (unsigned long long)res->t.errors);
    if (res->t.first_error)
        printf("  (first: %s)", error_text(res->t.first_error));
    printf("\n");
    if (cfg->mode == BENCH_ECHO)
        printf("  %-12s %llu\n", "mismatches", (unsigned long long)res->t.mismatches);
    if (res->server) {
        printf("  %-12s pid %d: %.2f s of CPU", "server", r->args.server_pid, res->server_cpu_s);
        if (res->t.messages)
            printf(", %.3f us per %s", res->server_cpu_us_per,
                   cfg->mode == BENCH_CONNECT ? "connection" : "message");
        printf("; RSS %llu KiB", (unsigned long long)r->srv1.rss_kib);
        if (cfg->mode == BENCH_IDLE)
            printf(" (+%.0f bytes per connection)", res->rss_per_conn);
        printf("\n");
    }
    printf("  %-12s %.2f s of CPU\n", "client", res->client_cpu_s);
}

/* Exit status: 1 when nothing could be measured or an echoed byte was wrong. */
static int verdict(const run *r, const result *res)
{
    const bench_config *cfg = &r->cfg;
    bool nothing = cfg->mode == BENCH_IDLE   ? res->t.opened == 0
                   : cfg->mode == BENCH_BULK ? res->t.bytes_tx + res->t.bytes_rx == 0
                                             : res->t.messages == 0;
    if (nothing) {
        int err = res->t.first_error;
        if (err && res->t.opened == 0)
            msg("cannot connect to %s: %s%s", cfg->name, error_text(err),
                hint_for(err, sk_addr_is_unix(&cfg->addr), sk_addr_port(&cfg->addr)));
        else if (err)
            msg("nothing measured on %s: %s", cfg->name, error_text(err));
        else
            msg("nothing measured on %s in %.1f s (is it an %s server? try a longer -t)", cfg->name,
                res->secs, cfg->mode == BENCH_CONNECT ? "greeting" : "echo");
        return EXIT_RUNTIME;
    }
    if (res->t.mismatches) {
        msg("%llu echoed message%s from %s did not match what was sent",
            (unsigned long long)res->t.mismatches, res->t.mismatches == 1 ? "" : "s", cfg->name);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

int cmd_bench(int argc, char **argv)
{
    run r = {0};
    parse_args(argc, argv, &r.cfg, &r.args);
    resolve(&r.cfg, r.args.address, &r.args.tls);
    uint64_t want = (uint64_t)r.cfg.conns + 64;
    r.nofile = raise_fd_limit(want);
    if (r.nofile < want)
        msg("warning: only %llu file descriptors allowed (hard limit), %llu wanted for %u "
            "connections: some will fail (raise 'ulimit -Hn' as root)",
            (unsigned long long)r.nofile, (unsigned long long)want, r.cfg.conns);
    if ((r.cfg.mode == BENCH_ECHO || r.cfg.mode == BENCH_BULK) &&
        !(r.pattern = bench_pattern_new()))
        die(EXIT_RUNTIME, "out of memory (for the 2 MiB pattern the connections send)");
    r.progress = !r.args.quiet && isatty(STDERR_FILENO);
    run_bench(&r);
    result res;
    compute(&r, &res);
    if (r.args.json)
        print_json(&r, &res);
    else if (res.t.opened > 0 || res.t.errors == 0)
        print_table(&r, &res); /* with no connection at all, the error line says it all */
    fflush(stdout);
    int status = verdict(&r, &res);
    for (uint32_t i = 0; i < r.cfg.threads; i++)
        sk_loop_free(r.workers[i].loop);
    free(r.workers);
    free(r.pattern);
    sk_tls_ctx_free(r.cfg.tls);
    return status;
}
