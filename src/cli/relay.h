/* sockit relay: what relay.c (streams: TCP, Unix, TLS), relay_udp.c (datagrams: UDP,
 * unix-dgram) and relay_pick.c (which target next) share.
 *
 * A relay is owned by its command, as a server is: everything below is reached through the
 * relay object (sk_loop_data of its loop), never a global (tests/static_state_check). */
#ifndef SOCKIT_RELAY_H
#define SOCKIT_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sockit/sockit.h>

#include "cli.h"

/* The most targets one relay takes: a pair marks the ones it tried in a 64-bit set. */
#define RELAY_MAX_TARGETS 64
/* Addresses kept per target: a name may resolve to several (IPv4 and IPv6 of localhost). */
#define RELAY_TARGET_ADDRS 8

/* One TARGET of the command line. A target whose connect fails or times out is marked down
 * for --down-time and skipped by relay_pick() until then (passive health). */
typedef struct relay_target {
    const char *text; /* as the user wrote it, for messages */
    sk_addrspec spec;
    sk_addr addrs[RELAY_TARGET_ADDRS];
    int addr_count;
    uint64_t down_until; /* loop time (ms) it is up again; 0: up */
    uint32_t active;     /* open pairs (streams) or sessions (datagrams) using it */
    uint64_t picked;     /* times chosen */
} relay_target;

typedef enum { BALANCE_ROUNDROBIN, BALANCE_LEASTCONN, BALANCE_FIRST } relay_balance;

/* The targets and how to choose among them (relay_pick.c). */
typedef struct relay_pool {
    relay_target *targets;
    size_t count;
    relay_balance balance;
    size_t next;      /* roundrobin: where the next search starts */
    uint64_t down_ms; /* --down-time */
} relay_pool;

/* The target to try first for a new client: by the balance, among those up; when every
 * target is down, the one whose down time ends first (a relay never refuses a client without
 * trying). Returns its index. */
size_t relay_pick(relay_pool *p, uint64_t now);
/* The target to try after `tried` of them failed for this client (tried[i] true: failed), or
 * -1 when all have. Skips targets that are down unless nothing else is left. */
long relay_pick_next(relay_pool *p, const bool *tried, uint64_t now);
/* t failed (refused, timed out, unreachable): down until now + down_ms. True when it was up
 * before (the caller logs a target going down once, not per client). */
bool relay_mark_down(relay_pool *p, relay_target *t, uint64_t now);
/* t is not marked down at now. */
bool relay_target_up(const relay_target *t, uint64_t now);
/* Parse --balance: 0, or -1 for an unknown name. */
int relay_balance_parse(const char *text, relay_balance *out);

/* Everything the command line says (relay.c parses it; both halves read it). */
typedef struct relay_args {
    const char *listen_text;
    sk_addrspec listen;
    relay_pool pool;
    uint64_t connect_timeout_ms; /* --connect-timeout, default 5 s */
    uint64_t idle_ms;            /* --idle-timeout: 0 never (streams); datagrams default 60 s */
    bool idle_given;
    uint64_t drain_ms; /* --drain-timeout, default 30 s; 0 no limit */
    uint32_t max_clients, max_per_ip;
    uint32_t max_sessions; /* --max-sessions: datagram sessions (default 10000) */
    sk_cidr *allow, *deny;
    size_t nallow, ndeny;
    size_t max_datagram; /* --max-frame for datagrams: the largest one relayed (default 65535) */
    int backlog;
    uint64_t handshake_ms; /* --handshake-timeout (TLS LISTEN); 0: 10 s */
    bool no_splice;
    proxy_cli proxy;      /* --accept-proxy ... and --send-proxy */
    bool proxy_unique_id; /* --proxy-unique-id: a UNIQUE_ID TLV per connection */
    tls_cli tls_in;       /* terminating TLS on a tls:// LISTEN: --cert --key, protocol options */
    tls_cli tls_out;      /* originating TLS to tls:// targets: --ca --pin --insecure --sni */
    verbosity verbosity;
} relay_args;

/* relay_udp.c: run the datagram relay (LISTEN and every TARGET udp:// or unix-dgram:) until a
 * signal; the exit status. Called by cmd_relay() after the arguments are checked and the
 * targets resolved. */
int relay_udp(relay_args *a);

#endif
