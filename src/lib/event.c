/* Events and counters: see include/sockit/event.h. The loop owns one sk__events (loop.c);
 * everything else reaches it through sk__loop_events(). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

SK_API void sk_loop_set_events(sk_loop *loop, unsigned flags, sk_event_cb cb, void *arg)
{
    sk__events *e = sk__loop_events(loop);
    e->cb = cb;
    e->arg = arg;
    e->flags = cb ? flags : 0;
}

void sk__emit(sk_loop *loop, sk_event *ev)
{
    sk__events *e = sk__loop_events(loop);
    if (!e->cb)
        return;
    ev->loop = loop;
    e->cb(ev, e->arg);
}

bool sk__trace_on(sk_loop *loop)
{
    return sk__loop_events(loop)->flags & SK_EVENTS_TRACE;
}

void sk__trace(sk_loop *loop, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sk__emit(loop, &(sk_event){.kind = SK_EV_TRACE, .text = line});
}

bool sk__conn_stats_on(sk_loop *loop)
{
    return sk__loop_events(loop)->flags & SK_EVENTS_CONN_STATS;
}

static uint64_t read_counter(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

SK_API void sk_loop_counters(const sk_loop *loop, sk_counters *out)
{
    const sk__counters *n = &sk__loop_events((sk_loop *)loop)->n;
    out->accepted = read_counter(&n->accepted);
    out->connects = read_counter(&n->connects);
    out->connected = read_counter(&n->connected);
    out->closed = read_counter(&n->closed);
    for (int i = 0; i < SK_REFUSE__COUNT; i++)
        out->refused[i] = read_counter(&n->refused[i]);
    for (int i = 0; i < SK_CLOSE__COUNT; i++)
        out->closed_by[i] = read_counter(&n->closed_by[i]);
    out->bytes_in = read_counter(&n->bytes_in);
    out->bytes_out = read_counter(&n->bytes_out);
    out->layer_failures = read_counter(&n->layer_failures);
    out->accept_pauses = read_counter(&n->accept_pauses);
    /* Each read is whole but not simultaneous: never let a close seen before its open make
     * the difference negative. */
    uint64_t opened = out->accepted + out->connects;
    out->active = opened > out->closed ? opened - out->closed : 0;
}

SK_API sk_close_cause sk_close_cause_of(int reason)
{
    switch (reason) {
    case 0: return SK_CLOSE_CLEAN;
    case -ECONNRESET:
    case -EPIPE:
    case -ECONNABORTED: return SK_CLOSE_RESET;
    case -ETIMEDOUT: return SK_CLOSE_TIMEOUT;
    case -EMSGSIZE: return SK_CLOSE_FRAME_TOO_LARGE;
    case -ENOBUFS: return SK_CLOSE_QUEUE_LIMIT;
    case SK_ERR_TLS:
    case SK_ERR_TLS_VERIFY: return SK_CLOSE_TLS_ERROR;
    case SK_ERR_TLS_TRUNCATED: return SK_CLOSE_TRUNCATED;
    case -ECONNREFUSED: return SK_CLOSE_REFUSED;
    default: return SK_CLOSE_OTHER;
    }
}

SK_API const char *sk_close_cause_name(sk_close_cause cause)
{
    static const char *const names[SK_CLOSE__COUNT] = {
        [SK_CLOSE_CLEAN] = "clean",
        [SK_CLOSE_RESET] = "reset",
        [SK_CLOSE_TIMEOUT] = "timeout",
        [SK_CLOSE_FRAME_TOO_LARGE] = "frame_too_large",
        [SK_CLOSE_QUEUE_LIMIT] = "queue_limit",
        [SK_CLOSE_TLS_ERROR] = "tls_error",
        [SK_CLOSE_TRUNCATED] = "truncated",
        [SK_CLOSE_REFUSED] = "refused",
        [SK_CLOSE_OTHER] = "other",
    };
    return (unsigned)cause < SK_CLOSE__COUNT ? names[cause] : "other";
}

SK_API const char *sk_refuse_cause_name(sk_refuse_cause cause)
{
    static const char *const names[SK_REFUSE__COUNT] = {
        [SK_REFUSE_MAX_CONNS] = "max_conns",
        [SK_REFUSE_PER_IP] = "per_ip",
        [SK_REFUSE_DENIED] = "denied",
        [SK_REFUSE_NO_MEMORY] = "no_memory",
        [SK_REFUSE_PROXY_UNTRUSTED] = "proxy_untrusted",
        [SK_REFUSE_PROXY_TIMEOUT] = "proxy_timeout",
        [SK_REFUSE_PROXY_TRUNCATED] = "proxy_truncated",
        [SK_REFUSE_PROXY_BAD_SIGNATURE] = "proxy_bad_signature",
        [SK_REFUSE_PROXY_TOO_LONG] = "proxy_too_long",
        [SK_REFUSE_PROXY_BAD_ADDRESS] = "proxy_bad_address",
        [SK_REFUSE_PROXY_CRC_MISMATCH] = "proxy_crc_mismatch",
        [SK_REFUSE_PROXY_INVALID] = "proxy_invalid",
    };
    return (unsigned)cause < SK_REFUSE__COUNT ? names[cause] : "other";
}
