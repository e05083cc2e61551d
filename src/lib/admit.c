/* Admission control: see admit.h. The per-IP counts are a hash table (FNV-1a, chained, grown
 * by doubling) made only with max_per_ip; an entry lives while a conn from its IP does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "ratelog.h"

/* Why a connection was refused: each has its own counter and its own log rate limit. */
enum {
    CAUSE_FULL,
    CAUSE_PER_IP,
    CAUSE_DENIED,
    CAUSE_PROXY_UNTRUSTED, /* and the PROXY header's failures, in sk_refuse_cause's order */
    CAUSE_PROXY_TIMEOUT,
    CAUSE_PROXY_TRUNCATED,
    CAUSE_PROXY_BAD_SIGNATURE,
    CAUSE_PROXY_TOO_LONG,
    CAUSE_PROXY_BAD_ADDRESS,
    CAUSE_PROXY_CRC_MISMATCH,
    CAUSE_PROXY_INVALID,
    NCAUSES
};

/* Live conns from one client IP. */
typedef struct ipent {
    sk__release release; /* a conn from this IP closed */
    struct ipent *next;
    sk__admit *adm;
    uint32_t count;
    int family;
    uint8_t ip[16];
} ipent;

struct sk__admit {
    sk__release release; /* a conn counted without a per-IP entry closed */
    bool closed;         /* the listener is gone; the last release frees this */
    uint64_t live;
    ipent **buckets; /* per-IP counts, only with max_per_ip */
    size_t nbuckets, nentries;
    uint32_t max_conns, max_per_ip;
    sk_cidr *allow, *deny, *proxy_from;
    size_t allow_count, deny_count, proxy_from_count;
    char *full_message, *per_ip_message;
    uint64_t refused[NCAUSES];
    sk__ratelog log;
};

/* ---------------------------------------------------------------- per-IP counts */

static size_t ip_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

static size_t ip_hash(int family, const uint8_t *ip, size_t nbuckets)
{
    uint32_t h = 2166136261u ^ (uint32_t)family; /* FNV-1a */
    for (size_t i = 0; i < ip_len(family); i++)
        h = (h ^ ip[i]) * 16777619u;
    return h & (nbuckets - 1);
}

static ipent **ip_slot(sk__admit *a, int family, const uint8_t *ip)
{
    ipent **p = &a->buckets[ip_hash(family, ip, a->nbuckets)];
    while (*p && !((*p)->family == family && memcmp((*p)->ip, ip, ip_len(family)) == 0))
        p = &(*p)->next;
    return p;
}

static void ip_grow(sk__admit *a)
{
    size_t n = a->nbuckets * 2;
    ipent **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (ipent *e = a->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t h = ip_hash(e->family, e->ip, n);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(a->buckets);
    a->buckets = b;
    a->nbuckets = n;
}

static void release_ip(sk__release *r);

/* The entry for an address, created with count 0 if missing; NULL when out of memory. */
static ipent *ip_get(sk__admit *a, int family, const uint8_t *ip)
{
    if (!a->buckets) {
        a->buckets = calloc(64, sizeof *a->buckets);
        if (!a->buckets)
            return NULL;
        a->nbuckets = 64;
    }
    ipent **p = ip_slot(a, family, ip);
    if (*p)
        return *p;
    ipent *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->release.fn = release_ip;
    e->adm = a;
    e->family = family;
    memcpy(e->ip, ip, ip_len(family));
    *p = e;
    if (++a->nentries > a->nbuckets)
        ip_grow(a);
    return e;
}

/* Forget an entry no conn counts against any more. */
static void ip_put(sk__admit *a, ipent *e)
{
    if (e->count)
        return;
    ipent **p = ip_slot(a, e->family, e->ip);
    *p = e->next;
    a->nentries--;
    free(e);
}

/* ---------------------------------------------------------------- life cycle */

static void admit_free(sk__admit *a)
{
    for (size_t i = 0; i < a->nbuckets; i++)
        for (ipent *e = a->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(a->buckets);
    free(a->allow);
    free(a->deny);
    free(a->proxy_from);
    free(a->full_message);
    free(a->per_ip_message);
    free(a);
}

static void conn_left(sk__admit *a)
{
    a->live--;
    if (a->closed && a->live == 0)
        admit_free(a);
}

/* Called by a conn counted without a per-IP entry when it closes. */
static void release_conn(sk__release *r)
{
    conn_left((sk__admit *)r);
}

static void release_ip(sk__release *r)
{
    ipent *e = (ipent *)r;
    sk__admit *a = e->adm;
    e->count--;
    ip_put(a, e);
    conn_left(a);
}

static void report(void *arg, int cause, uint64_t n, double secs, const sk_addr *peer);

static int copy_list(sk_cidr **dst, size_t *dst_count, const sk_cidr *src, size_t count)
{
    if (!count)
        return 0;
    *dst = malloc(count * sizeof *src);
    if (!*dst)
        return -ENOMEM;
    memcpy(*dst, src, count * sizeof *src);
    *dst_count = count;
    return 0;
}

static int copy_text(char **dst, const char *src)
{
    return src && !(*dst = strdup(src)) ? -ENOMEM : 0;
}

int sk__admit_new(sk_loop *loop, const sk_listen_options *o, sk__admit **out)
{
    sk__admit *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->release.fn = release_conn;
    a->max_conns = o->max_conns;
    a->max_per_ip = o->max_per_ip;
    sk__ratelog_init(&a->log, loop, o->log_interval_ms ? o->log_interval_ms : 1000, report, a);
    if (copy_list(&a->allow, &a->allow_count, o->allow, o->allow_count) < 0 ||
        copy_list(&a->deny, &a->deny_count, o->deny, o->deny_count) < 0 ||
        copy_list(&a->proxy_from, &a->proxy_from_count, o->proxy_from, o->proxy_from_count) < 0 ||
        copy_text(&a->full_message, o->full_message) < 0 ||
        copy_text(&a->per_ip_message, o->per_ip_message) < 0) {
        admit_free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

void sk__admit_close(sk__admit *a)
{
    sk__ratelog_flush(&a->log); /* what the rate limit held back is still worth a line */
    a->closed = true;
    if (a->live == 0)
        admit_free(a);
}

/* ---------------------------------------------------------------- refusals */

/* Our causes, as the public ones. */
static const sk_refuse_cause public_cause[NCAUSES] = {
    [CAUSE_FULL] = SK_REFUSE_MAX_CONNS,
    [CAUSE_PER_IP] = SK_REFUSE_PER_IP,
    [CAUSE_DENIED] = SK_REFUSE_DENIED,
    [CAUSE_PROXY_UNTRUSTED] = SK_REFUSE_PROXY_UNTRUSTED,
    [CAUSE_PROXY_TIMEOUT] = SK_REFUSE_PROXY_TIMEOUT,
    [CAUSE_PROXY_TRUNCATED] = SK_REFUSE_PROXY_TRUNCATED,
    [CAUSE_PROXY_BAD_SIGNATURE] = SK_REFUSE_PROXY_BAD_SIGNATURE,
    [CAUSE_PROXY_TOO_LONG] = SK_REFUSE_PROXY_TOO_LONG,
    [CAUSE_PROXY_BAD_ADDRESS] = SK_REFUSE_PROXY_BAD_ADDRESS,
    [CAUSE_PROXY_CRC_MISMATCH] = SK_REFUSE_PROXY_CRC_MISMATCH,
    [CAUSE_PROXY_INVALID] = SK_REFUSE_PROXY_INVALID,
};

/* The rate limit's report: one SK_EV_REFUSED for n refusals in the last secs seconds. */
static void report(void *arg, int cause, uint64_t n, double secs, const sk_addr *peer)
{
    sk__admit *a = arg;
    sk_event ev = {.kind = SK_EV_REFUSED,
                   .addr = peer,
                   .cause = (int)public_cause[cause],
                   .count = n,
                   .period_ms = (uint64_t)(secs * 1000.0 + 0.5),
                   .limit = cause == CAUSE_FULL     ? a->max_conns
                            : cause == CAUSE_PER_IP ? a->max_per_ip
                                                    : 0};
    sk__emit(a->log.loop, &ev);
}

/* Count a refusal; the message to answer it with, or NULL. */
static const char *count_refusal(sk__admit *a, int cause)
{
    a->refused[cause]++;
    sk__count(&sk__loop_events(a->log.loop)->n.refused[public_cause[cause]], 1);
    return cause == CAUSE_FULL ? a->full_message : cause == CAUSE_PER_IP ? a->per_ip_message : NULL;
}

/* Accepted, but refused: say why (when there is something to say) and close. */
static void refuse(sk__admit *a, int fd, int cause, const sk_addr *peer)
{
    const char *text = count_refusal(a, cause);
    if (text)
        send(fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL);
    /* Read what the client already sent (a little, without waiting): closing with unread input
     * would send a reset, which can destroy the message before the client reads it. */
    char sink[4096];
    for (int i = 0; i < 4 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    SK_TRACE(a->log.loop, "close fd=%d refused", fd);
    close(fd);
    sk__ratelog_note(&a->log, cause, peer);
}

/* ---------------------------------------------------------------- deciding */

/* The cause that refuses peer, or NCAUSES; *ent gets its per-IP entry when one is kept (NULL
 * when out of memory: -ENOMEM). */
static int decide(sk__admit *a, const sk_addr *peer, ipent **ent)
{
    *ent = NULL;
    if ((a->allow_count || a->deny_count) &&
        !sk_cidr_admit(a->allow, a->allow_count, a->deny, a->deny_count, peer))
        return CAUSE_DENIED;
    if (a->max_conns && a->live >= a->max_conns)
        return CAUSE_FULL;
    int family;
    uint8_t ip[16];
    if (!a->max_per_ip || !sk__addr_ip(peer, &family, ip))
        return NCAUSES;
    ipent *e = ip_get(a, family, ip);
    if (!e)
        return -ENOMEM;
    if (e->count >= a->max_per_ip)
        return CAUSE_PER_IP;
    *ent = e;
    return NCAUSES;
}

int sk__admit_check(sk__admit *a, int fd, const sk_addr *peer, sk__release **slot)
{
    ipent *e;
    int cause = decide(a, peer, &e);
    if (cause < 0)
        return cause;
    if (cause != NCAUSES) {
        refuse(a, fd, cause, peer);
        return SK__REFUSED;
    }
    *slot = e ? &e->release : &a->release;
    return 0;
}

int sk__admit_check_conn(sk__admit *a, sk_conn *c, const sk_addr *peer, sk__release **slot)
{
    ipent *e;
    int cause = decide(a, peer, &e);
    if (cause < 0)
        return cause;
    if (cause != NCAUSES) {
        const char *text = count_refusal(a, cause);
        if (text)
            sk_conn_write(c, text, strlen(text));
        sk_conn_close(c); /* flushes the message; unread input is discarded, not reset */
        sk__ratelog_note(&a->log, cause, peer);
        return SK__REFUSED;
    }
    *slot = e ? &e->release : &a->release;
    return 0;
}

int sk__admit_trusted(sk__admit *a, int fd, const sk_addr *source)
{
    if (!a->proxy_from_count || sk_cidr_admit(a->proxy_from, a->proxy_from_count, NULL, 0, source))
        return 0;
    refuse(a, fd, CAUSE_PROXY_UNTRUSTED, source);
    return SK__REFUSED;
}

void sk__admit_proxy_failed(sk__admit *a, int err, const sk_addr *source)
{
    int cause = err == -ETIMEDOUT ? CAUSE_PROXY_TIMEOUT
                : err == SK_PROXY_TRUNCATED || err == -ECONNRESET || err == 0
                    ? CAUSE_PROXY_TRUNCATED
                : err == SK_PROXY_BAD_SIGNATURE ? CAUSE_PROXY_BAD_SIGNATURE
                : err == SK_PROXY_TOO_LONG      ? CAUSE_PROXY_TOO_LONG
                : err == SK_PROXY_BAD_ADDRESS || err == SK_PROXY_BAD_PORT ? CAUSE_PROXY_BAD_ADDRESS
                : err == SK_PROXY_CRC_MISMATCH                            ? CAUSE_PROXY_CRC_MISMATCH
                                                                          : CAUSE_PROXY_INVALID;
    count_refusal(a, cause);
    sk__ratelog_note(&a->log, cause, source);
}

void sk__admit_enter(sk__admit *a, sk__release *slot)
{
    a->live++;
    if (slot != &a->release)
        ((ipent *)slot)->count++;
}

void sk__admit_abandon(sk__admit *a, sk__release *slot)
{
    if (slot != &a->release)
        ip_put(a, (ipent *)slot);
}

void sk__admit_stats(const sk__admit *a, sk_listener_stats *st)
{
    st->live = a->live;
    st->refused_full = a->refused[CAUSE_FULL];
    st->refused_per_ip = a->refused[CAUSE_PER_IP];
    st->refused_denied = a->refused[CAUSE_DENIED];
}
