/* sockit — what happens on a loop, as data: events to a sink, and counters.
 *
 * Events. The loop hands each fact to the sink set with sk_loop_set_events(): a listener is
 * ready, a connection was accepted or refused (and why), an outgoing one is up, a layer (TLS)
 * came up or failed, a conn closed (with its reason, and with SK_EVENTS_CONN_STATS its bytes
 * and duration), accepting paused because descriptors ran out, and, with SK_EVENTS_TRACE, each
 * socket step (socket, bind, listen, accept, recv, send, shutdown, close) as a line of text.
 * The library formats nothing else: a text log, JSON lines and metrics are formatters of these.
 * The sink runs on the loop's thread, inside the loop; pointers in an event are valid only
 * during the call. Refusals and accept pauses can come in floods, so they arrive as reports:
 * the first at once (count 1, period_ms 0), then at most one per listener, cause and
 * sk_listen_options.log_interval_ms with the count since the last; the counters count each.
 *
 * Counters. Every loop counts as it goes, whether a sink is set or not. sk_loop_counters()
 * copies them from any thread without a lock: each counter is written only by the loop's own
 * thread and read atomically, so a reader summing several loops (workers) sees each counter
 * whole, if not all of them at the same instant.
 */
#ifndef SOCKIT_EVENT_H
#define SOCKIT_EVENT_H

#include <stdint.h>

#include "addr.h"
#include "conn.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_listener sk_listener;

typedef enum sk_event_kind {
    SK_EV_LISTENING,     /* listener, addr (ours): ready for connections */
    SK_EV_ACCEPTED,      /* listener, conn: accepted and admitted */
    SK_EV_REFUSED,       /* listener, addr (the last peer), cause (sk_refuse_cause), limit, and
                          * count refusals in the last period_ms (a report: see below) */
    SK_EV_ACCEPT_PAUSED, /* listener, err (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM), limit (the
                          * pause, ms), and count pauses in the last period_ms (a report) */
    SK_EV_CONNECTED,     /* conn: an outgoing conn is up, layers included */
    SK_EV_LAYER_UP,      /* conn, layer ("tls"): a layer finished starting (a handshake) */
    SK_EV_LAYER_FAILED,  /* conn, layer, err: it could not start; SK_EV_CLOSED follows */
    SK_EV_INPUT_DROPPED, /* conn, bytes_in: the stream ended inside a frame; those bytes lost */
    SK_EV_CLOSED,        /* conn, err (0: clean), cause (sk_close_cause), and with
                          * SK_EVENTS_CONN_STATS: bytes_in, bytes_out, duration_ms */
    SK_EV_NOTICE,        /* text: something the library did on its own (a stale socket file
                          * removed before bind) */
    SK_EV_TRACE,         /* text: one socket step; only with SK_EVENTS_TRACE */
} sk_event_kind;

/* Why a connection was refused before the user saw it (SK_EV_REFUSED, counters). */
typedef enum sk_refuse_cause {
    SK_REFUSE_MAX_CONNS, /* sk_listen_options.max_conns live already */
    SK_REFUSE_PER_IP,    /* max_per_ip live from that address already */
    SK_REFUSE_DENIED,    /* the deny list, or not on the allow list */
    SK_REFUSE_NO_MEMORY, /* the conn could not be made */
    /* With sk_listen_options.accept_proxy (include/sockit/proxy.h): */
    SK_REFUSE_PROXY_UNTRUSTED,     /* the source is not in proxy_from */
    SK_REFUSE_PROXY_TIMEOUT,       /* no whole header within proxy_timeout_ms */
    SK_REFUSE_PROXY_TRUNCATED,     /* the peer ended (or reset) inside the header */
    SK_REFUSE_PROXY_BAD_SIGNATURE, /* neither "PROXY " nor the v2 signature */
    SK_REFUSE_PROXY_TOO_LONG,      /* a v1 line over 107 bytes, a v2 header over 4 KiB */
    SK_REFUSE_PROXY_BAD_ADDRESS,   /* an address or port that is not canonical */
    SK_REFUSE_PROXY_CRC_MISMATCH,  /* a CRC32C TLV that does not match */
    SK_REFUSE_PROXY_INVALID,       /* any other malformed header (err: the sk_proxy_error) */
    SK_REFUSE__COUNT
} sk_refuse_cause;

/* How a conn ended, in a few kinds (SK_EV_CLOSED, counters): sk_close_cause_of(reason). */
typedef enum sk_close_cause {
    SK_CLOSE_CLEAN,           /* both sides ended normally */
    SK_CLOSE_RESET,           /* the peer reset the connection, or it broke (-ECONNRESET, -EPIPE) */
    SK_CLOSE_TIMEOUT,         /* a connect, handshake, idle or linger deadline passed */
    SK_CLOSE_FRAME_TOO_LARGE, /* the peer sent a frame over the limit (-EMSGSIZE) */
    SK_CLOSE_QUEUE_LIMIT,     /* the output queue passed its limit (-ENOBUFS) */
    SK_CLOSE_TLS_ERROR,       /* a TLS handshake or record failed */
    SK_CLOSE_TRUNCATED,       /* the peer ended TLS without close_notify */
    SK_CLOSE_REFUSED,         /* an outgoing connect was refused */
    SK_CLOSE_OTHER,
    SK_CLOSE__COUNT
} sk_close_cause;

sk_close_cause sk_close_cause_of(int reason);
/* Short names for logs and metric labels: "clean", "reset", "timeout", "frame_too_large",
 * "queue_limit", "tls_error", "truncated", "refused", "other"; "max_conns", "per_ip",
 * "denied", "no_memory", "proxy_untrusted", "proxy_timeout", "proxy_truncated",
 * "proxy_bad_signature", "proxy_too_long", "proxy_bad_address", "proxy_crc_mismatch",
 * "proxy_invalid". */
const char *sk_close_cause_name(sk_close_cause cause);
const char *sk_refuse_cause_name(sk_refuse_cause cause);

typedef struct sk_event {
    sk_event_kind kind;
    sk_loop *loop;
    sk_listener *listener;
    sk_conn *conn;
    const sk_addr *addr;
    int err;
    int cause;
    const char *layer;
    const char *text;
    uint64_t bytes_in, bytes_out, duration_ms;
    uint64_t count, period_ms; /* REFUSED, ACCEPT_PAUSED: a report of count in period_ms */
    uint64_t limit;            /* REFUSED: the limit that refused (max_conns, max_per_ip) */
} sk_event;

typedef void (*sk_event_cb)(const sk_event *ev, void *arg);
enum {
    SK_EVENTS_TRACE = 1 << 0,      /* also SK_EV_TRACE: a line per socket step (costly) */
    SK_EVENTS_CONN_STATS = 1 << 1, /* count bytes and time per conn for SK_EV_CLOSED (each conn
                                    * made from then on carries about 100 bytes more) */
};
/* Send this loop's events to cb (NULL: none, the default). */
void sk_loop_set_events(sk_loop *loop, unsigned flags, sk_event_cb cb, void *arg);

typedef struct sk_counters {
    uint64_t accepted;  /* conns accepted and admitted */
    uint64_t connects;  /* outgoing conns started (sk_conn_connect) */
    uint64_t connected; /* ... of which came up */
    uint64_t closed;    /* conns ended, either kind */
    uint64_t active;    /* accepted + connects - closed */
    uint64_t refused[SK_REFUSE__COUNT];
    uint64_t closed_by[SK_CLOSE__COUNT];
    uint64_t bytes_in, bytes_out; /* through conns (after TLS: what the user reads and writes) */
    uint64_t layer_failures;      /* handshakes that failed */
    uint64_t accept_pauses;       /* descriptor exhaustion */
} sk_counters;

/* Copy the loop's counters into out. Safe from any thread while the loop runs. */
void sk_loop_counters(const sk_loop *loop, sk_counters *out);

#ifdef __cplusplus
}
#endif
#endif
