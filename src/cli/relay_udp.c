/* sockit relay for datagrams (LISTEN and every TARGET udp:// or unix-dgram:): a session per
 * client address.
 *
 * The first datagram from a new client address opens a session: a target is picked
 * (relay_pick.c) and a socket connected to it, so whatever the target sends back on that
 * socket belongs to that client and leaves from the LISTEN socket to the client's address.
 * Datagrams go through one by one, never merged or split.
 *
 * Sessions live in a hash table keyed by the client address, at most --max-sessions of them.
 * When the table is full a new client's datagrams are dropped (counted, logged at most once a
 * second); live sessions are never evicted to make room, because source addresses are cheap
 * to forge with UDP and eviction would let a flood of them push every real client out. Every
 * session is also on a list ordered by its last datagram (either way), least recent first: the
 * one sweep timer expires from the front of it after --idle-timeout, so expiry costs nothing
 * per datagram but two pointer moves.
 *
 * A target that answers with ICMP port unreachable (on_error -ECONNREFUSED on a session's
 * socket; a gone Unix socket gives the same) is marked down for --down-time, logged once, and
 * the session that met it moves to a target that is up, if any: most protocols over UDP retry,
 * and the retry then reaches a target that answers. With no target up it stays where it is.
 *
 * Memory. Every socket has batch 1: it reads into the loop's shared 64 KiB buffer (no receive
 * buffers per session) and sends straight from there, so the steady path allocates nothing
 * (a batched socket copies each datagram it sends into an allocation of its own). A session is
 * one struct and one sk_dgram; while the kernel refuses a send the dgram holds at most
 * SESSION_QUEUE / 2 datagrams (it turns unwritable there, and the relay drops rather than
 * queue more: UDP would have dropped them too), the LISTEN socket 128 replies. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <time.h>

#include "relay.h"

#define LISTEN_RCVBUF (1 << 20) /* absorbs bursts from many clients; the kernel may cap it */
#define SESSION_QUEUE 32        /* see above: at most 16 held per session */
#define BUCKETS_START 64
#define LOG_EVERY_MS 1000
#define SCRATCH_SIZE (65536 + 256) /* the largest datagram and a PROXY header */

typedef struct udp_relay udp_relay;

typedef struct session {
    udp_relay *r;
    sk_dgram *d; /* connected to the target */
    sk_addr client;
    uint64_t hash;
    size_t target;
    uint64_t last;     /* loop time of the last datagram, either way */
    uint64_t up, down; /* datagrams to the target, and back to the client */
    struct session *hnext;
    struct session *older, *newer; /* the idle list */
} session;

/* Datagrams dropped for one reason: counted, and logged at most once a second. */
typedef struct droplog {
    uint64_t total, unlogged, logged_at;
    bool logged;
} droplog;

struct udp_relay {
    sk_loop *loop;
    logger log;
    relay_args *a;
    sk_dgram *listen;
    session **buckets;
    size_t nbuckets, max_buckets; /* powers of two */
    size_t count;
    uint64_t seed;
    session *oldest, *newest;
    sk_timer *sweep;
    droplog full, busy, denied, no_target, bad_header;
    sk_addr bound;    /* the listening address: a sent PROXY header's destination */
    uint8_t *scratch; /* --send-proxy: header + payload, one datagram */
    uint64_t from_clients, to_targets, from_targets, to_clients;
    uint64_t oversize, unanswerable, sessions, expired, moved;
    int signals_seen;
};

/* ---------------------------------------------------------------- names and messages */

static void client_name(const sk_addr *a, char *buf, size_t len)
{
    if (sk_addr_is_unix(a) && a->len <= offsetof(struct sockaddr_un, sun_path))
        snprintf(buf, len, "an unnamed Unix socket");
    else
        sk_addr_format(a, buf, len);
}

/* One more datagram dropped for d's reason: logged now if nothing was said in the last
 * second, else counted into the next line. */
static void dropped(udp_relay *r, droplog *d, const char *why)
{
    uint64_t now = sk_loop_now(r->loop);
    d->total++;
    d->unlogged++;
    if (d->logged && now - d->logged_at < LOG_EVERY_MS)
        return;
    if (!d->logged)
        log_warn(&r->log, "dropped a datagram: %s", why);
    else
        log_warn(&r->log, "dropped %llu datagrams in the last %.1f s: %s",
                 (unsigned long long)d->unlogged, (double)(now - d->logged_at) / 1000.0, why);
    d->logged = true;
    d->logged_at = now;
    d->unlogged = 0;
}

/* As serve udp:// reports it: the first one as a warning, the rest with -v. */
static void report_oversize(udp_relay *r, const sk_datagram *dg, const char *from)
{
    if (r->oversize++ == 0)
        log_warn(&r->log,
                 "datagram of %zu bytes from %s is longer than --max-frame (%zu "
                 "bytes): truncated, so dropped (raise --max-frame; -v shows further ones)",
                 dg->size, from, r->a->max_datagram);
    else
        log_info(&r->log, "datagram of %zu bytes from %s truncated to %zu: dropped", dg->size, from,
                 dg->len);
}

/* t failed for a session (refused, no socket there): down for --down-time, logged once. */
static void target_failed(udp_relay *r, relay_target *t, int err)
{
    if (relay_mark_down(&r->a->pool, t, sk_loop_now(r->loop)))
        log_warn(&r->log, "target %s is down (%s); skipping it for %.1f s", t->text,
                 sk_strerror(err), (double)r->a->pool.down_ms / 1000.0);
}

static bool is_down_error(int err)
{
    /* ENOENT, ENOTCONN: a Unix target whose socket file went, or whose socket closed. */
    return err == -ECONNREFUSED || err == -ENOENT || err == -ENOTCONN;
}

/* ---------------------------------------------------------------- the session table */

/* FNV-1a over the address bytes, from a random start per run, so colliding source addresses
 * cannot simply be computed in advance. It is no keyed hash (SipHash would be); a determined
 * flood can still lengthen chains, but never past --max-sessions sessions in all. */
static uint64_t addr_hash(const udp_relay *r, const sk_addr *a)
{
    const unsigned char *p = (const unsigned char *)&a->ss;
    uint64_t h = 14695981039346656037ull ^ r->seed;
    for (socklen_t i = 0; i < a->len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static bool addr_equal(const sk_addr *a, const sk_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static session *lookup(udp_relay *r, const sk_addr *client, uint64_t h)
{
    for (session *s = r->buckets[h & (r->nbuckets - 1)]; s; s = s->hnext)
        if (s->hash == h && addr_equal(&s->client, client))
            return s;
    return NULL;
}

/* Double the table when it holds a session per bucket; out of memory keeps the old one
 * (longer chains, still correct). */
static void maybe_grow(udp_relay *r)
{
    if (r->count < r->nbuckets || r->nbuckets >= r->max_buckets)
        return;
    size_t n = r->nbuckets * 2;
    session **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < r->nbuckets; i++)
        for (session *s = r->buckets[i], *next; s; s = next) {
            next = s->hnext;
            s->hnext = b[s->hash & (n - 1)];
            b[s->hash & (n - 1)] = s;
        }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
}

static void list_unlink(udp_relay *r, session *s)
{
    if (s->older)
        s->older->newer = s->newer;
    else
        r->oldest = s->newer;
    if (s->newer)
        s->newer->older = s->older;
    else
        r->newest = s->older;
    s->older = s->newer = NULL;
}

static void list_append(udp_relay *r, session *s)
{
    s->older = r->newest;
    s->newer = NULL;
    if (r->newest)
        r->newest->newer = s;
    else
        r->oldest = s;
    r->newest = s;
}

/* A datagram went through s: it is the most recently active now. */
static void touch(udp_relay *r, session *s)
{
    s->last = sk_loop_now(r->loop);
    if (r->newest != s) {
        list_unlink(r, s);
        list_append(r, s);
    }
}

static void session_free(udp_relay *r, session *s)
{
    session **pp = &r->buckets[s->hash & (r->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    list_unlink(r, s);
    if (s->d) {
        sk_dgram_close(s->d);
        r->a->pool.targets[s->target].active--;
    }
    r->count--;
    free(s);
}

/* ---------------------------------------------------------------- sessions */

static const sk_dgram_callbacks session_callbacks;

/* Errors that say nothing about a target but about this process (out of descriptors or
 * memory): every other target would fail the same way, and none should be marked down. */
static bool is_local_error(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -ENOBUFS;
}

/* Connect s to target `first`, or to the next one whose socket can be opened (a Unix target
 * with no socket file fails here; a UDP one only later, by ICMP). 0, or the last error. */
static int session_connect(udp_relay *r, session *s, size_t first, const bool *tried_before)
{
    relay_pool *pool = &r->a->pool;
    bool tried[RELAY_MAX_TARGETS] = {false};
    if (tried_before)
        memcpy(tried, tried_before, pool->count * sizeof *tried);
    sk_dgram_options o = {.batch = 1, .max_size = r->a->max_datagram, .max_queue = SESSION_QUEUE};
    int rc = -EDESTADDRREQ;
    for (long i = (long)first; i >= 0; i = relay_pick_next(pool, tried, sk_loop_now(r->loop))) {
        relay_target *t = &pool->targets[i];
        rc = sk_dgram_open(r->loop, NULL, &t->addrs[0], &o, &session_callbacks, s, &s->d);
        if (rc == 0) {
            s->target = (size_t)i;
            t->active++;
            t->picked++;
            return 0;
        }
        s->d = NULL;
        if (is_local_error(rc))
            return rc;
        target_failed(r, t, rc); /* also a wrong socket type there: not a target either */
        tried[i] = true;
    }
    return rc;
}

static session *session_new(udp_relay *r, const sk_addr *client, uint64_t h)
{
    const relay_args *a = r->a;
    if (!sk_cidr_admit(a->allow, a->nallow, a->deny, a->ndeny, client)) {
        dropped(r, &r->denied, "the client is not admitted by --allow/--deny");
        return NULL;
    }
    if (r->count >= a->max_sessions) {
        dropped(r, &r->full,
                "the session table is full (--max-sessions); datagrams from new clients "
                "are dropped until a session expires");
        return NULL;
    }
    session *s = calloc(1, sizeof *s);
    if (!s) {
        dropped(r, &r->no_target, "out of memory for a new session");
        return NULL;
    }
    s->r = r;
    s->client = *client;
    s->hash = h;
    int rc = session_connect(r, s, relay_pick(&r->a->pool, sk_loop_now(r->loop)), NULL);
    if (rc < 0) {
        free(s);
        char why[160];
        snprintf(why, sizeof why, "no target could be reached for a new client (%s)",
                 sk_strerror(rc));
        dropped(r, &r->no_target, why);
        return NULL;
    }
    size_t b = h & (r->nbuckets - 1);
    s->hnext = r->buckets[b];
    r->buckets[b] = s;
    s->last = sk_loop_now(r->loop);
    list_append(r, s);
    r->count++;
    r->sessions++;
    maybe_grow(r);
    if (a->idle_ms && !sk_timer_active(r->sweep))
        sk_timer_start(r->sweep, a->idle_ms, 0);
    char name[SK_ADDR_STRLEN];
    client_name(client, name, sizeof name);
    log_info(&r->log, "%s: new session to %s", name, a->pool.targets[s->target].text);
    return s;
}

/* s's target refused: it is down; move s to a target that is up, if there is one. */
static void session_move(udp_relay *r, session *s, int err)
{
    relay_pool *pool = &r->a->pool;
    relay_target *from = &pool->targets[s->target];
    target_failed(r, from, err);
    bool tried[RELAY_MAX_TARGETS] = {false};
    tried[s->target] = true;
    long next = relay_pick_next(pool, tried, sk_loop_now(r->loop));
    if (next < 0 || !relay_target_up(&pool->targets[next], sk_loop_now(r->loop)))
        return; /* nothing better: stay, the target may come back */
    char name[SK_ADDR_STRLEN];
    client_name(&s->client, name, sizeof name);
    sk_dgram_close(s->d); /* safe from its own callback */
    s->d = NULL;
    from->active--;
    if (session_connect(r, s, (size_t)next, tried) < 0) {
        log_info(&r->log, "%s: session closed: no target can be reached", name);
        session_free(r, s);
        return;
    }
    r->moved++;
    log_info(&r->log, "%s: session moved from %s to %s", name, from->text,
             pool->targets[s->target].text);
}

/* A reply from the target: back to the client, from the LISTEN socket. */
static void target_datagram(sk_dgram *d, const sk_datagram *dg)
{
    session *s = sk_dgram_data(d);
    udp_relay *r = s->r;
    r->from_targets++;
    if (dg->truncated) {
        char from[SK_ADDR_STRLEN + 16];
        snprintf(from, sizeof from, "target %s", r->a->pool.targets[s->target].text);
        report_oversize(r, dg, from);
        return;
    }
    touch(r, s);
    if (!sk_dgram_writable(r->listen)) {
        dropped(r, &r->busy, "replies arrive faster than clients take them");
        return;
    }
    int rc = sk_dgram_send(r->listen, dg->data, dg->len, &s->client);
    if (rc == -ENOBUFS) {
        dropped(r, &r->busy, "replies arrive faster than clients take them");
    } else if (rc < 0) {
        char name[SK_ADDR_STRLEN];
        client_name(&s->client, name, sizeof name);
        log_info(&r->log, "cannot reply to %s: %s", name, sk_strerror(rc));
    } else {
        s->down++;
        r->to_clients++;
    }
}

static void target_error(sk_dgram *d, int err, const sk_addr *peer)
{
    session *s = sk_dgram_data(d);
    udp_relay *r = s->r;
    if (is_down_error(err)) {
        session_move(r, s, err);
        return;
    }
    log_info(&r->log, "datagram to %s failed: %s", r->a->pool.targets[s->target].text,
             sk_strerror(err));
}

static const sk_dgram_callbacks session_callbacks = {.on_datagram = target_datagram,
                                                     .on_error = target_error};

/* ---------------------------------------------------------------- the LISTEN socket */

/* The PROXY protocol on datagrams, one header in each (the spec's datagram form):
 * --accept-proxy takes the header off what a client (a proxy) sent, --send-proxy puts one on
 * for the target, naming the client (the header's, if one came) and the relay's address. The
 * session stays keyed by the sender: replies go back to it. Returns the payload's length and
 * sets *payload (NULL: drop it). */
static size_t proxy_datagram(udp_relay *r, const sk_datagram *dg, const uint8_t **payload)
{
    const uint8_t *data = dg->data;
    size_t len = dg->len;
    sk_proxy_header h = {0};
    const sk_addr *client = dg->from;
    *payload = NULL;
    if (r->a->proxy.accept) {
        int rc = sk_proxy_parse_datagram(data, len, &h);
        if (rc < 0) {
            dropped(r, &r->bad_header, "no valid PROXY v2 header at its start (--accept-proxy)");
            return 0;
        }
        data += rc;
        len -= (size_t)rc;
        if (h.command == SK_PROXY_CMD_PROXY && h.src.len)
            client = &h.src;
    }
    if (!r->a->proxy.send_version) {
        *payload = data;
        return len;
    }
    bool same = client->ss.ss_family == r->bound.ss.ss_family;
    sk_proxy_write_opts o = {.version = 2,
                             .command = same ? SK_PROXY_CMD_PROXY : SK_PROXY_CMD_LOCAL,
                             .transport = SK_PROXY_DGRAM,
                             .src = same ? client : NULL,
                             .dst = same ? &r->bound : NULL,
                             .crc32c = r->a->proxy.send_crc};
    int n = sk_proxy_write(r->scratch, SCRATCH_SIZE, &o);
    if (n < 0 || (size_t)n + len > SCRATCH_SIZE) {
        dropped(r, &r->bad_header, "no room for its PROXY header");
        return 0;
    }
    memcpy(r->scratch + n, data, len);
    *payload = r->scratch;
    return (size_t)n + len;
}

static void client_datagram(sk_dgram *d, const sk_datagram *dg)
{
    udp_relay *r = sk_dgram_data(d);
    char name[SK_ADDR_STRLEN];
    r->from_clients++;
    if (dg->truncated) {
        client_name(dg->from, name, sizeof name);
        report_oversize(r, dg, name);
        return;
    }
    if (sk_addr_is_unix(dg->from) && dg->from->len <= offsetof(struct sockaddr_un, sun_path)) {
        /* All unnamed senders look alike: no session could tell them apart, nor answer. */
        if (r->unanswerable++ == 0)
            log_warn(&r->log, "a datagram came from a Unix socket without a name: it cannot be "
                              "relayed (the client must bind its socket; sockit connect does)");
        return;
    }
    const uint8_t *payload = dg->data;
    size_t len = dg->len;
    if (r->a->proxy.accept || r->a->proxy.send_version) {
        len = proxy_datagram(r, dg, &payload);
        if (!payload)
            return;
    }
    uint64_t h = addr_hash(r, dg->from);
    session *s = lookup(r, dg->from, h);
    if (!s && !(s = session_new(r, dg->from, h)))
        return;
    touch(r, s);
    if (!sk_dgram_writable(s->d)) {
        dropped(r, &r->busy, "a target takes datagrams slower than its clients send them");
        return;
    }
    int rc = sk_dgram_send(s->d, payload, len, NULL);
    if (rc == -ENOBUFS) {
        dropped(r, &r->busy, "a target takes datagrams slower than its clients send them");
    } else if (rc < 0) {
        client_name(dg->from, name, sizeof name);
        log_info(&r->log, "%s: cannot send %zu bytes to %s: %s", name, len,
                 r->a->pool.targets[s->target].text, sk_strerror(rc));
    } else {
        s->up++;
        r->to_targets++;
    }
}

static void listen_error(sk_dgram *d, int err, const sk_addr *peer)
{
    udp_relay *r = sk_dgram_data(d);
    char name[SK_ADDR_STRLEN] = "a client";
    if (peer)
        client_name(peer, name, sizeof name);
    log_info(&r->log, "reply to %s failed: %s", name, sk_strerror(err));
}

static const sk_dgram_callbacks listen_callbacks = {.on_datagram = client_datagram,
                                                    .on_error = listen_error};

/* Bind LISTEN (the first resolved address this machine has) or exit, as serve udp:// does. */
static void open_listen(udp_relay *r)
{
    const sk_addrspec *spec = &r->a->listen;
    sk_addr addrs[16];
    int n = sk_addr_resolve(spec, SK_RESOLVE_PASSIVE, addrs, 16);
    if (n < 0)
        die(EXIT_RUNTIME, "cannot resolve '%s': %s%s", spec->host, sk_strerror(n),
            hint_for(n, false, 0));
    sk_dgram_options o = {.batch = 1, .max_size = r->a->max_datagram, .rcvbuf = LISTEN_RCVBUF};
    int rc = -EADDRNOTAVAIL;
    for (int i = 0; i < n; i++) {
        rc = sk_dgram_open(r->loop, &addrs[i], NULL, &o, &listen_callbacks, r, &r->listen);
        /* Only a missing address family (no IPv6 here) moves on to the next address. */
        if (rc == 0 || (rc != -EAFNOSUPPORT && rc != -EADDRNOTAVAIL && rc != -EPROTONOSUPPORT))
            break;
    }
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot listen on %s: %s%s", r->a->listen_text, sk_strerror(rc),
            hint_for(rc, spec->is_unix, spec->port));
    char name[SK_ADDR_STRLEN + 16];
    sk_dgram_local_addr(r->listen, &r->bound);
    dgram_name(&r->bound, name, sizeof name);
    log_notice(&r->log, "listening on %s", name);
}

/* ---------------------------------------------------------------- expiry, stopping */

static void sweep_fired(sk_timer *t, void *arg)
{
    udp_relay *r = arg;
    uint64_t now = sk_loop_now(r->loop), idle = r->a->idle_ms;
    while (r->oldest && now - r->oldest->last >= idle) {
        session *s = r->oldest;
        char name[SK_ADDR_STRLEN];
        client_name(&s->client, name, sizeof name);
        log_info(&r->log,
                 "%s: session expired (idle %.1f s); %llu datagrams to %s, %llu "
                 "back",
                 name, (double)(now - s->last) / 1000.0, (unsigned long long)s->up,
                 r->a->pool.targets[s->target].text, (unsigned long long)s->down);
        r->expired++;
        session_free(r, s);
    }
    if (r->oldest)
        sk_timer_start(t, r->oldest->last + idle - now, 0);
}

static void on_signal(sk_loop *loop, int signo, void *arg)
{
    udp_relay *r = arg;
    if (r->signals_seen++) {
        msg("second signal: exiting at once");
        exit(EXIT_RUNTIME);
    }
    log_info(&r->log, "%s: stopping; %zu sessions open", strsignal(signo), r->count);
    sk_loop_stop(loop); /* datagrams have no stream to finish: everything closes at once */
}

static void log_counts(const udp_relay *r)
{
    log_info(&r->log,
             "%llu sessions (%llu expired, %llu moved); datagrams: %llu from clients, "
             "%llu to targets, %llu from targets, %llu to clients; dropped: %llu too "
             "long, %llu table full, %llu backpressure, %llu not admitted, %llu no "
             "target, %llu unnamed",
             (unsigned long long)r->sessions, (unsigned long long)r->expired,
             (unsigned long long)r->moved, (unsigned long long)r->from_clients,
             (unsigned long long)r->to_targets, (unsigned long long)r->from_targets,
             (unsigned long long)r->to_clients, (unsigned long long)r->oversize,
             (unsigned long long)r->full.total, (unsigned long long)r->busy.total,
             (unsigned long long)r->denied.total, (unsigned long long)r->no_target.total,
             (unsigned long long)r->unanswerable);
}

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* no entropy yet (early boot): better than none */
    return (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)ts.tv_sec;
}

int relay_udp(relay_args *a)
{
    udp_relay state = {.a = a, .nbuckets = BUCKETS_START}, *r = &state;
    /* Admission by counts is per connection; a datagram session is bounded by its own. */
    if (a->max_clients || a->max_per_ip)
        die(EXIT_USAGE, "--max-clients and --max-per-ip are for streams; with datagrams, "
                        "--max-sessions bounds the sessions");
    r->max_buckets = BUCKETS_START;
    while (r->max_buckets < a->max_sessions)
        r->max_buckets *= 2;
    if (a->proxy.send_version == 1)
        die(EXIT_USAGE, "--send-proxy v1 cannot name datagrams: use v2 (or v2,crc32c)");
    if (a->proxy.nfrom || a->proxy.timeout_ms)
        die(EXIT_USAGE, "--proxy-from and --proxy-timeout are for streams (a datagram's "
                        "header comes with it)");
    if (a->proxy.send_version && !(r->scratch = malloc(SCRATCH_SIZE)))
        die(EXIT_RUNTIME, "out of memory");
    r->seed = random_seed();
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    int rc = sk_loop_new(&r->loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "cannot create the event loop: %s", sk_strerror(rc));
    if (!r->buckets || sk_timer_new(r->loop, sweep_fired, r, &r->sweep) < 0)
        die(EXIT_RUNTIME, "out of memory");
    sk_loop_set_data(r->loop, r);
    setup_logging(r->loop, &r->log, a->verbosity);
    sk_loop_on_signal(r->loop, SIGINT, on_signal, r);
    sk_loop_on_signal(r->loop, SIGTERM, on_signal, r);
    open_listen(r);
    rc = sk_loop_run(r->loop);
    if (rc < 0)
        die(EXIT_RUNTIME, "event loop failed: %s", sk_strerror(rc));
    log_counts(r);
    while (r->oldest)
        session_free(r, r->oldest);
    sk_dgram_close(r->listen);    /* removes a Unix socket file */
    sk_loop_run_once(r->loop, 0); /* let deferred frees run */
    sk_timer_free(r->sweep);
    sk_loop_free(r->loop);
    free(r->buckets);
    free(r->scratch);
    return EXIT_OK;
}
