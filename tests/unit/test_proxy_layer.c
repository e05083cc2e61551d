/* The PROXY protocol on conns (proxy_layer.c, listener.c with accept_proxy): a real listener on
 * 127.0.0.1 and raw client sockets that send headers byte by byte; sk_proxy_send on an
 * outgoing conn towards a raw listening socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define WAIT_MS 5000
#define PFIX_MAX 8

/* ---------------------------------------------------------------- the fixture */

typedef struct pconn {
    sk_conn *c;
    int peer_rc, local_rc; /* sk_conn_peer_addr / sk_conn_local_addr in the accept callback */
    char peer[SK_ADDR_STRLEN], local[SK_ADDR_STRLEN];
    int hdr_rc; /* sk_conn_proxy_header in the accept callback */
    sk_proxy_header hdr;
    char via[SK_ADDR_STRLEN];
    char authority[64], alpn[16], unique_id[160];
    unsigned char *data; /* everything read, concatenated */
    size_t len, cap;
    bool closed;
    int reason;
} pconn;

typedef struct pfix {
    sk_loop *loop;
    sk_listener *l;
    sk_addr addr;
    pconn conns[PFIX_MAX];
    int n;
    int refused_ev[SK_REFUSE__COUNT]; /* SK_EV_REFUSED events by cause */
    uint64_t refused_count[SK_REFUSE__COUNT];
    int accepted_ev;
    sk_tls_ctx *tls; /* set: the accept callback starts TLS (server) on each conn */
    int tls_rc;
} pfix;

static void copy_bytes(char *dst, size_t cap, sk_proxy_bytes b)
{
    size_t n = b.data ? (b.len < cap - 1 ? b.len : cap - 1) : 0;
    if (n)
        memcpy(dst, b.data, n);
    dst[n] = '\0';
}

static void pc_frame(sk_conn *c, const void *data, size_t len)
{
    pconn *p = sk_conn_data(c);
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 1024;
        while (cap < p->len + len)
            cap *= 2;
        unsigned char *d = realloc(p->data, cap);
        if (!d)
            abort();
        p->data = d;
        p->cap = cap;
    }
    memcpy(p->data + p->len, data, len);
    p->len += len;
}

static void pc_close(sk_conn *c, int reason)
{
    pconn *p = sk_conn_data(c);
    p->closed = true;
    p->reason = reason;
    p->c = NULL;
}

static const sk_conn_callbacks pc_cbs = {.on_frame = pc_frame, .on_close = pc_close};

static void pf_accept(sk_listener *l, sk_conn *c)
{
    pfix *f = sk_listener_data(l);
    if (f->n >= PFIX_MAX) {
        test_fail(__FILE__, __LINE__, "more conns than PFIX_MAX");
        static const sk_conn_callbacks none = {.on_frame = pc_frame};
        sk_conn_set_callbacks(c, &none);
        sk_conn_abort(c);
        return;
    }
    pconn *p = &f->conns[f->n++];
    memset(p, 0, sizeof *p);
    p->c = c;
    sk_addr a;
    p->peer_rc = sk_conn_peer_addr(c, &a);
    if (p->peer_rc == 0)
        sk_addr_format(&a, p->peer, sizeof p->peer);
    p->local_rc = sk_conn_local_addr(c, &a);
    if (p->local_rc == 0)
        sk_addr_format(&a, p->local, sizeof p->local);
    sk_addr via = {0};
    p->hdr_rc = sk_conn_proxy_header(c, &p->hdr, &via);
    if (p->hdr_rc == 0) {
        sk_addr_format(&via, p->via, sizeof p->via);
        copy_bytes(p->authority, sizeof p->authority, p->hdr.authority);
        copy_bytes(p->alpn, sizeof p->alpn, p->hdr.alpn);
        copy_bytes(p->unique_id, sizeof p->unique_id, p->hdr.unique_id);
    }
    sk_conn_set_data(c, p);
    sk_conn_set_callbacks(c, &pc_cbs); /* no on_eof: the client's FIN closes the conn */
    CHECK(sk_conn_set_framing(c, SK_FRAME_RAW, 0) == 0);
    if (f->tls)
        f->tls_rc = sk_tls_start(c, f->tls, NULL, WAIT_MS);
}

static void pf_event(const sk_event *ev, void *arg)
{
    pfix *f = arg;
    if (ev->kind == SK_EV_ACCEPTED)
        f->accepted_ev++;
    if (ev->kind == SK_EV_REFUSED && ev->cause >= 0 && ev->cause < SK_REFUSE__COUNT) {
        f->refused_ev[ev->cause]++;
        f->refused_count[ev->cause] += ev->count;
    }
}

/* A listener with accept_proxy (opts may set the rest; accept_proxy is forced on). */
static bool pf_open(pfix *f, sk_listen_options *opts)
{
    memset(f, 0, sizeof *f);
    if (sk_loop_new(&f->loop) != 0)
        return false;
    sk_loop_set_events(f->loop, 0, pf_event, f);
    sk_listen_options o = {0};
    if (opts)
        o = *opts;
    o.accept_proxy = true;
    sk_addr any;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    if (sk_listener_open(f->loop, &any, &o, pf_accept, f, &f->l) != 0)
        return false;
    return sk_listener_addr(f->l, &f->addr) == 0;
}

static void pf_close(pfix *f)
{
    for (int i = 0; i < f->n; i++) {
        pconn *p = &f->conns[i];
        if (p->c && !p->closed) {
            sk_conn_abort(p->c);
            run_until(f->loop, &p->closed, WAIT_MS);
        }
        free(p->data);
        p->data = NULL;
    }
    if (f->l)
        sk_listener_close(f->l);
    if (f->loop) {
        sk_loop_run_once(f->loop, 0);
        sk_loop_free(f->loop);
    }
    memset(f, 0, sizeof *f);
}

/* Forget the accepted conns (after each has closed) so that a loop over many clients can
 * reuse the slots. */
static void pf_reset_conns(pfix *f)
{
    for (int i = 0; i < f->n; i++) {
        CHECK(f->conns[i].closed);
        free(f->conns[i].data);
        memset(&f->conns[i], 0, sizeof f->conns[i]);
    }
    f->n = 0;
}

static uint64_t refused_counter(const pfix *f, sk_refuse_cause cause)
{
    sk_counters n;
    sk_loop_counters(f->loop, &n);
    return n.refused[cause];
}

typedef struct {
    pfix *f;
    int n;
    size_t len; /* conns[n - 1] has read at least this much */
} accept_wait;

static bool got_accept(void *arg)
{
    accept_wait *w = arg;
    return w->f->n >= w->n && w->f->conns[w->n - 1].len >= w->len;
}

/* Run until n conns were accepted and the n-th has read len bytes. */
static bool pf_wait(pfix *f, int n, size_t len)
{
    accept_wait w = {f, n, len};
    return run_until_fn(f->loop, got_accept, &w, WAIT_MS);
}

typedef struct {
    pfix *f;
    sk_refuse_cause cause;
} refuse_wait;

static bool got_refusal(void *arg)
{
    refuse_wait *w = arg;
    return refused_counter(w->f, w->cause) >= 1 && w->f->refused_ev[w->cause] >= 1;
}

/* A v2 header for src -> dst (TCP, PROXY command) with the options in o (may be NULL). */
static int v2_header(unsigned char *buf, size_t cap, const char *src, uint16_t sport,
                     const char *dst, uint16_t dport, const sk_proxy_write_opts *extra)
{
    sk_addr s, d;
    if (sk_addr_from_ip(&s, src, sport) < 0 || sk_addr_from_ip(&d, dst, dport) < 0)
        return -EINVAL;
    sk_proxy_write_opts o = {0};
    if (extra)
        o = *extra;
    o.version = 2;
    o.command = SK_PROXY_CMD_PROXY;
    o.transport = SK_PROXY_STREAM;
    o.src = &s;
    o.dst = &d;
    return sk_proxy_write(buf, cap, &o);
}

static void v1_header(char *buf, size_t cap, const char *src, uint16_t sport)
{
    snprintf(buf, cap, "PROXY TCP4 %s 198.51.100.2 %u 443\r\n", src, (unsigned)sport);
}

/* The address a raw socket has, as sockit formats it. */
static void sock_name(int fd, bool peer, char *buf, size_t len)
{
    sk_addr a = {.len = sizeof a.ss};
    int rc = peer ? getpeername(fd, (struct sockaddr *)&a.ss, &a.len)
                  : getsockname(fd, (struct sockaddr *)&a.ss, &a.len);
    if (rc < 0 || sk_addr_format(&a, buf, len) < 0)
        snprintf(buf, len, "?");
}

/* ---------------------------------------------------------------- a header split anywhere */

/* Send hdr[0..split), let the loop read it (no accept may come yet), then the rest of the
 * header and the payload; the accept callback must see the header's addresses and the conn
 * read exactly the payload. split == hlen + 1: header and payload in one send. false when
 * something was wrong (reported). */
static bool one_split(pfix *f, const unsigned char *hdr, size_t hlen, size_t split,
                      const unsigned char *payload, size_t plen, const char *want_peer,
                      const char *want_local)
{
    int fd = raw_connect(&f->addr);
    unsigned char *all = malloc(hlen + plen);
    if (fd < 0 || !all) {
        test_fail(__FILE__, __LINE__, "no client socket or no memory");
        free(all);
        return false;
    }
    memcpy(all, hdr, hlen);
    memcpy(all + hlen, payload, plen);
    size_t first = split <= hlen ? split : hlen + plen;
    CHECK(raw_send_all(f->loop, fd, all, first, WAIT_MS) == 0);
    run_for(f->loop, 2); /* the server reads what is there; the header is not whole */
    if (split < hlen && f->n != 0) {
        test_fail(__FILE__, __LINE__, "accepted before the header was whole");
        fprintf(stderr, "    split at %zu of %zu\n", split, hlen);
    }
    if (first < hlen + plen)
        CHECK(raw_send_all(f->loop, fd, all + first, hlen + plen - first, WAIT_MS) == 0);
    free(all);
    bool ok = pf_wait(f, 1, plen);
    CHECK(ok);
    bool good = ok;
    if (!ok) {
        int refused = 0;
        for (int i = 0; i < SK_REFUSE__COUNT; i++)
            refused += f->refused_ev[i];
        fprintf(stderr, "    split at %zu of %zu: %d accepted (%zu bytes read), %d refused\n",
                split, hlen, f->n, f->n ? f->conns[0].len : 0, refused);
    }
    if (ok) {
        pconn *p = &f->conns[0];
        good = p->peer_rc == 0 && strcmp(p->peer, want_peer) == 0 && p->local_rc == 0 &&
               strcmp(p->local, want_local) == 0 && p->len == plen &&
               memcmp(p->data, payload, plen) == 0;
        if (!good) {
            test_fail(__FILE__, __LINE__, "header split: wrong addresses or payload");
            fprintf(stderr, "    split at %zu of %zu: peer %s local %s, %zu payload bytes\n", split,
                    hlen, p->peer, p->local, p->len);
        }
    }
    close(fd);
    if (f->n && f->conns[0].c && !run_until(f->loop, &f->conns[0].closed, WAIT_MS)) {
        sk_conn_abort(f->conns[0].c);
        run_until(f->loop, &f->conns[0].closed, WAIT_MS);
    }
    pf_reset_conns(f);
    return good;
}

static void split_everywhere(const unsigned char *hdr, size_t hlen, const char *want_peer,
                             const char *want_local)
{
    pfix f;
    REQUIRE(pf_open(&f, NULL));
    static const unsigned char payload[] = "payload after the header\n";
    /* the first failure ends the sweep (each would wait out the deadline) */
    size_t split = 1;
    while (split <= hlen + 1 &&
           one_split(&f, hdr, hlen, split, payload, sizeof payload - 1, want_peer, want_local))
        split++;
    CHECK(split == hlen + 2);
    /* a payload longer than one read of the layer, in the same send as the header */
    enum { BIG = 5000 };
    unsigned char *big = malloc(BIG);
    REQUIRE(big);
    fill_pattern(big, BIG, 0);
    one_split(&f, hdr, hlen, hlen + 1, big, BIG, want_peer, want_local);
    free(big);
    if (split == hlen + 2)
        CHECK(f.accepted_ev == (int)hlen + 2);
    for (int i = 0; i < SK_REFUSE__COUNT; i++)
        CHECK(refused_counter(&f, (sk_refuse_cause)i) == 0);
    pf_close(&f);
}

TEST(proxy_layer_v1_split_at_every_byte)
{
    char line[128];
    v1_header(line, sizeof line, "192.0.2.1", 5000);
    split_everywhere((const unsigned char *)line, strlen(line), "192.0.2.1:5000",
                     "198.51.100.2:443");
}

TEST(proxy_layer_v2_split_at_every_byte)
{
    unsigned char hdr[512];
    sk_proxy_write_opts o = {.authority = {(const uint8_t *)"example.com", 11}};
    int n = v2_header(hdr, sizeof hdr, "192.0.2.1", 5000, "198.51.100.2", 443, &o);
    REQUIRE(n > 16);
    split_everywhere(hdr, (size_t)n, "192.0.2.1:5000", "198.51.100.2:443");
}

TEST(proxy_layer_v2_tcp6_split_at_every_byte)
{
    unsigned char hdr[512];
    sk_addr s, d;
    REQUIRE(sk_addr_from_ip(&s, "2001:db8::7", 40000) == 0);
    REQUIRE(sk_addr_from_ip(&d, "2001:db8::1", 8443) == 0);
    sk_proxy_write_opts o = {.version = 2, .command = SK_PROXY_CMD_PROXY, .src = &s, .dst = &d};
    int n = sk_proxy_write(hdr, sizeof hdr, &o);
    REQUIRE(n > 16);
    split_everywhere(hdr, (size_t)n, "[2001:db8::7]:40000", "[2001:db8::1]:8443");
}

/* ---------------------------------------------------------------- LOCAL, TLVs, via */

TEST(proxy_layer_local_keeps_socket_addresses)
{
    pfix f;
    REQUIRE(pf_open(&f, NULL));
    unsigned char hdr[64];
    sk_proxy_write_opts o = {.version = 2, .command = SK_PROXY_CMD_LOCAL};
    int n = sk_proxy_write(hdr, sizeof hdr, &o);
    REQUIRE(n == 16);
    int fd = raw_connect(&f.addr);
    REQUIRE(fd >= 0);
    REQUIRE(raw_send_all(f.loop, fd, hdr, (size_t)n, WAIT_MS) == 0);
    REQUIRE(pf_wait(&f, 1, 0)); /* the payload apart (with the header: the split tests) */
    REQUIRE(raw_send_all(f.loop, fd, "ping", 4, WAIT_MS) == 0);
    REQUIRE(pf_wait(&f, 1, 4));
    char own[SK_ADDR_STRLEN], listen_name[SK_ADDR_STRLEN];
    sock_name(fd, false, own, sizeof own);
    sk_addr_format(&f.addr, listen_name, sizeof listen_name);
    pconn *p = &f.conns[0];
    CHECK(p->peer_rc == 0 && strcmp(p->peer, own) == 0);
    CHECK(p->local_rc == 0 && strcmp(p->local, listen_name) == 0);
    CHECK(p->hdr_rc == 0 && p->hdr.command == SK_PROXY_CMD_LOCAL && p->hdr.version == 2);
    CHECK(p->len == 4 && memcmp(p->data, "ping", 4) == 0);
    close(fd);
    pf_close(&f);
}

TEST(proxy_layer_v1_unknown_keeps_socket_addresses)
{
    pfix f;
    REQUIRE(pf_open(&f, NULL));
    int fd = raw_connect(&f.addr);
    REQUIRE(fd >= 0);
    REQUIRE(raw_send_all(f.loop, fd, "PROXY UNKNOWN\r\n", 15, WAIT_MS) == 0);
    REQUIRE(pf_wait(&f, 1, 0));
    REQUIRE(raw_send_all(f.loop, fd, "hi", 2, WAIT_MS) == 0);
    REQUIRE(pf_wait(&f, 1, 2));
    char own[SK_ADDR_STRLEN];
    sock_name(fd, false, own, sizeof own);
    CHECK(f.conns[0].peer_rc == 0 && strcmp(f.conns[0].peer, own) == 0);
    CHECK(f.conns[0].len == 2 && memcmp(f.conns[0].data, "hi", 2) == 0);
    close(fd);
    pf_close(&f);
}

TEST(proxy_layer_header_tlvs_and_via)
{
    pfix f;
    REQUIRE(pf_open(&f, NULL));
    unsigned char hdr[512];
    sk_proxy_write_opts o = {.authority = {(const uint8_t *)"chat.example.org", 16},
                             .alpn = {(const uint8_t *)"h2", 2},
                             .unique_id = {(const uint8_t *)"req-0001-abcdef", 15},
                             .crc32c = true};
    int n = v2_header(hdr, sizeof hdr, "203.0.113.7", 5000, "198.51.100.2", 443, &o);
    REQUIRE(n > 16);
    int fd = raw_connect(&f.addr);
    REQUIRE(fd >= 0);
    REQUIRE(raw_send_all(f.loop, fd, hdr, (size_t)n, WAIT_MS) == 0);
    REQUIRE(pf_wait(&f, 1, 0));
    pconn *p = &f.conns[0];
    char own[SK_ADDR_STRLEN];
    sock_name(fd, false, own, sizeof own);
    CHECK(p->hdr_rc == 0);
    CHECK(p->hdr.version == 2 && p->hdr.command == SK_PROXY_CMD_PROXY);
    CHECK(p->hdr.transport == SK_PROXY_STREAM);
    CHECK(strcmp(p->authority, "chat.example.org") == 0);
    CHECK(strcmp(p->alpn, "h2") == 0);
    CHECK(strcmp(p->unique_id, "req-0001-abcdef") == 0);
    CHECK(p->hdr.crc_present);
    CHECK(!p->hdr.ssl.present);
    CHECK(strcmp(p->via, own) == 0); /* the proxy: the socket's own peer */
    CHECK(strcmp(p->peer, "203.0.113.7:5000") == 0);
    /* the TLV values stay readable while the conn lives */
    sk_proxy_header again;
    sk_addr via;
    REQUIRE(p->c && sk_conn_proxy_header(p->c, &again, &via) == 0);
    CHECK(again.authority.len == 16 && memcmp(again.authority.data, "chat.example.org", 16) == 0);
    CHECK(sk_conn_proxy_header(p->c, NULL, NULL) == 0);
    close(fd);
    pf_close(&f);
}

/* ---------------------------------------------------------------- refusals */

/* Connect, send what (may be NULL), optionally close our side; the server must close the
 * connection, count cause once and report it as SK_EV_REFUSED; nothing is accepted. */
static void refused_for(sk_listen_options *opts, const void *what, size_t len, bool then_close,
                        sk_refuse_cause cause)
{
    pfix f;
    REQUIRE(pf_open(&f, opts));
    int fd = raw_connect(&f.addr);
    REQUIRE(fd >= 0);
    if (len)
        REQUIRE(raw_send_all(f.loop, fd, what, len, WAIT_MS) == 0);
    if (then_close) {
        shutdown(fd, SHUT_WR);
    }
    int end = raw_wait_end(f.loop, fd, WAIT_MS, NULL);
    CHECK(end == 0 || end == -ECONNRESET); /* closed by the server, not our deadline */
    refuse_wait w = {&f, cause};
    CHECK(run_until_fn(f.loop, got_refusal, &w, WAIT_MS));
    CHECK(refused_counter(&f, cause) == 1);
    CHECK(f.refused_ev[cause] == 1 && f.refused_count[cause] == 1);
    for (int i = 0; i < SK_REFUSE__COUNT; i++)
        if (i != (int)cause) {
            CHECK(refused_counter(&f, (sk_refuse_cause)i) == 0);
            CHECK(f.refused_ev[i] == 0);
        }
    CHECK(f.n == 0 && f.accepted_ev == 0);
    sk_listener_stats st;
    sk_listener_get_stats(f.l, &st);
    CHECK(st.live == 0);
    close(fd);
    pf_close(&f);
}

TEST(proxy_layer_refuses_untrusted_source)
{
    sk_cidr from;
    REQUIRE(sk_cidr_parse("10.0.0.0/8", &from, NULL, 0) == 0);
    sk_listen_options o = {.proxy_from = &from, .proxy_from_count = 1};
    char line[128];
    v1_header(line, sizeof line, "192.0.2.1", 5000);
    refused_for(&o, line, strlen(line), false, SK_REFUSE_PROXY_UNTRUSTED);
}

TEST(proxy_layer_trusted_source_is_accepted)
{
    sk_cidr from[2];
    REQUIRE(sk_cidr_parse("10.0.0.0/8", &from[0], NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("127.0.0.0/8", &from[1], NULL, 0) == 0);
    sk_listen_options o = {.proxy_from = from, .proxy_from_count = 2};
    pfix f;
    REQUIRE(pf_open(&f, &o));
    char line[128];
    v1_header(line, sizeof line, "192.0.2.1", 5000);
    int fd = raw_connect(&f.addr);
    REQUIRE(fd >= 0);
    REQUIRE(raw_send_all(f.loop, fd, line, strlen(line), WAIT_MS) == 0);
    CHECK(pf_wait(&f, 1, 0));
    CHECK(strcmp(f.conns[0].peer, "192.0.2.1:5000") == 0);
    close(fd);
    pf_close(&f);
}

TEST(proxy_layer_refuses_on_timeout)
{
    sk_listen_options o = {.proxy_timeout_ms = 100};
    refused_for(&o, NULL, 0, false, SK_REFUSE_PROXY_TIMEOUT);
}

TEST(proxy_layer_refuses_partial_header_on_timeout)
{
    sk_listen_options o = {.proxy_timeout_ms = 100};
    refused_for(&o, "PROXY TCP4 1", 12, false, SK_REFUSE_PROXY_TIMEOUT);
}

TEST(proxy_layer_refuses_truncated)
{
    char line[128];
    v1_header(line, sizeof line, "192.0.2.1", 5000);
    refused_for(NULL, line, strlen(line) / 2, true, SK_REFUSE_PROXY_TRUNCATED);
}

TEST(proxy_layer_refuses_truncated_v2)
{
    unsigned char hdr[256];
    int n = v2_header(hdr, sizeof hdr, "192.0.2.1", 5000, "198.51.100.2", 443, NULL);
    REQUIRE(n > 16);
    refused_for(NULL, hdr, (size_t)n / 2, true, SK_REFUSE_PROXY_TRUNCATED);
}

TEST(proxy_layer_refuses_bad_signature)
{
    refused_for(NULL, "GET / HTTP/1.0\r\n\r\n", 18, false, SK_REFUSE_PROXY_BAD_SIGNATURE);
}

TEST(proxy_layer_refuses_too_long)
{
    char line[200];
    memset(line, '1', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    refused_for(NULL, line, sizeof line, false, SK_REFUSE_PROXY_TOO_LONG);
}

TEST(proxy_layer_refuses_bad_address)
{
    const char *line = "PROXY TCP4 010.0.0.1 10.0.0.2 1000 2000\r\n";
    refused_for(NULL, line, strlen(line), false, SK_REFUSE_PROXY_BAD_ADDRESS);
}

TEST(proxy_layer_refuses_bad_port)
{
    const char *line = "PROXY TCP4 10.0.0.1 10.0.0.2 01000 2000\r\n";
    refused_for(NULL, line, strlen(line), false, SK_REFUSE_PROXY_BAD_ADDRESS);
}

TEST(proxy_layer_refuses_crc_mismatch)
{
    unsigned char hdr[256];
    sk_proxy_write_opts o = {.crc32c = true};
    int n = v2_header(hdr, sizeof hdr, "192.0.2.1", 5000, "198.51.100.2", 443, &o);
    REQUIRE(n > 28);
    hdr[16 + 3] ^= 0x01; /* the source address's last byte; the CRC is left as it was */
    refused_for(NULL, hdr, (size_t)n, false, SK_REFUSE_PROXY_CRC_MISMATCH);
}

TEST(proxy_layer_refuses_invalid)
{
    /* v2 with version 1 in the version nibble */
    unsigned char hdr[256];
    int n = v2_header(hdr, sizeof hdr, "192.0.2.1", 5000, "198.51.100.2", 443, NULL);
    REQUIRE(n > 16);
    hdr[12] = 0x11;
    refused_for(NULL, hdr, (size_t)n, false, SK_REFUSE_PROXY_INVALID);
}

TEST(proxy_layer_refuses_invalid_v1_family)
{
    const char *line = "PROXY TCP5 10.0.0.1 10.0.0.2 1000 2000\r\n";
    refused_for(NULL, line, strlen(line), false, SK_REFUSE_PROXY_INVALID);
}

/* ---------------------------------------------------------------- admission by the header */

static int send_header_conn(pfix *f, const char *src, uint16_t sport)
{
    char line[128];
    v1_header(line, sizeof line, src, sport);
    int fd = raw_connect(&f->addr);
    if (fd >= 0 && raw_send_all(f->loop, fd, line, strlen(line), WAIT_MS) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

TEST(proxy_layer_max_per_ip_counts_the_header_source)
{
    sk_listen_options o = {.max_per_ip = 1, .per_ip_message = "too many\n"};
    pfix f;
    REQUIRE(pf_open(&f, &o));
    int a = send_header_conn(&f, "192.0.2.7", 1111);
    REQUIRE(a >= 0);
    REQUIRE(pf_wait(&f, 1, 0));
    CHECK(strcmp(f.conns[0].peer, "192.0.2.7:1111") == 0);
    /* another socket, the same header source: refused, with the message */
    int b = send_header_conn(&f, "192.0.2.7", 2222);
    REQUIRE(b >= 0);
    char buf[64];
    int end;
    size_t got = raw_recv(f.loop, b, buf, sizeof buf, WAIT_MS, &end);
    CHECK(end == RAW_EOF && got == 9 && memcmp(buf, "too many\n", 9) == 0);
    refuse_wait w = {&f, SK_REFUSE_PER_IP};
    CHECK(run_until_fn(f.loop, got_refusal, &w, WAIT_MS));
    CHECK(refused_counter(&f, SK_REFUSE_PER_IP) == 1);
    CHECK(f.n == 1);
    /* a different header source from the same 127.0.0.1 socket address: accepted */
    int c = send_header_conn(&f, "192.0.2.8", 3333);
    REQUIRE(c >= 0);
    CHECK(pf_wait(&f, 2, 0));
    CHECK(strcmp(f.conns[1].peer, "192.0.2.8:3333") == 0);
    sk_listener_stats st;
    sk_listener_get_stats(f.l, &st);
    CHECK(st.refused_per_ip == 1 && st.live == 2);
    /* the first one leaves: its source may come again */
    close(a);
    CHECK(run_until(f.loop, &f.conns[0].closed, WAIT_MS));
    int d = send_header_conn(&f, "192.0.2.7", 4444);
    REQUIRE(d >= 0);
    CHECK(pf_wait(&f, 3, 0));
    close(b);
    close(c);
    close(d);
    pf_close(&f);
}

TEST(proxy_layer_allow_list_applies_to_the_header_source)
{
    sk_cidr allow;
    REQUIRE(sk_cidr_parse("192.0.2.0/24", &allow, NULL, 0) == 0); /* not 127.0.0.1 */
    sk_listen_options o = {.allow = &allow, .allow_count = 1};
    pfix f;
    REQUIRE(pf_open(&f, &o));
    int a = send_header_conn(&f, "192.0.2.9", 1000);
    REQUIRE(a >= 0);
    CHECK(pf_wait(&f, 1, 0));
    int b = send_header_conn(&f, "203.0.113.5", 1000);
    REQUIRE(b >= 0);
    CHECK(raw_wait_end(f.loop, b, WAIT_MS, NULL) == 0);
    refuse_wait w = {&f, SK_REFUSE_DENIED};
    CHECK(run_until_fn(f.loop, got_refusal, &w, WAIT_MS));
    CHECK(refused_counter(&f, SK_REFUSE_DENIED) == 1);
    CHECK(f.n == 1);
    close(a);
    close(b);
    pf_close(&f);
}

TEST(proxy_layer_slow_header_does_not_block_others)
{
    sk_listen_options o = {.proxy_timeout_ms = 60000}; /* the deadline is not what is tested */
    pfix f;
    REQUIRE(pf_open(&f, &o));
    char slow_line[128], fast_line[128];
    v1_header(slow_line, sizeof slow_line, "192.0.2.1", 1001);
    v1_header(fast_line, sizeof fast_line, "192.0.2.2", 1002);
    int slow = raw_connect(&f.addr);
    REQUIRE(slow >= 0);
    REQUIRE(raw_send_all(f.loop, slow, slow_line, 5, WAIT_MS) == 0);
    run_for(f.loop, 5);
    int fast = raw_connect(&f.addr);
    REQUIRE(fast >= 0);
    REQUIRE(raw_send_all(f.loop, fast, fast_line, strlen(fast_line), WAIT_MS) == 0);
    CHECK(pf_wait(&f, 1, 0));
    REQUIRE(raw_send_all(f.loop, fast, "x", 1, WAIT_MS) == 0);
    CHECK(pf_wait(&f, 1, 1));
    CHECK(strcmp(f.conns[0].peer, "192.0.2.2:1002") == 0);
    /* the slow one finishes its header later and is accepted too */
    REQUIRE(raw_send_all(f.loop, slow, slow_line + 5, strlen(slow_line) - 5, WAIT_MS) == 0);
    CHECK(pf_wait(&f, 2, 0));
    if (f.n == 2)
        CHECK(strcmp(f.conns[1].peer, "192.0.2.1:1001") == 0);
    close(slow);
    close(fast);
    pf_close(&f);
}

/* ---------------------------------------------------------------- sending */

typedef struct out_fix {
    sk_loop *loop;
    int lfd, target;
    sk_addr back;
    sk_conn *c;
    bool up, closed;
    int reason;
    const char *write_on_connect;
} out_fix;

static void out_connected(sk_conn *c)
{
    out_fix *o = sk_conn_data(c);
    o->up = true;
    if (o->write_on_connect)
        CHECK(sk_conn_write(c, o->write_on_connect, strlen(o->write_on_connect)) == 0);
}

static void out_frame(sk_conn *c, const void *data, size_t len)
{
    (void)c, (void)data, (void)len;
}

static void out_close(sk_conn *c, int reason)
{
    out_fix *o = sk_conn_data(c);
    o->closed = true;
    o->reason = reason;
    o->c = NULL;
}

static const sk_conn_callbacks out_cbs = {
    .on_connect = out_connected, .on_frame = out_frame, .on_close = out_close};

static bool out_open(out_fix *o)
{
    memset(o, 0, sizeof *o);
    o->lfd = o->target = -1;
    if (sk_loop_new(&o->loop) != 0)
        return false;
    o->lfd = raw_listen(AF_INET, 4, &o->back);
    return o->lfd >= 0 && sk_conn_connect(o->loop, &o->back, WAIT_MS, &out_cbs, o, &o->c) == 0;
}

static bool out_accept(out_fix *o)
{
    uint64_t end = util_now_ms() + WAIT_MS;
    while (o->target < 0 && util_now_ms() < end) {
        o->target = accept4(o->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (o->target < 0)
            sk_loop_run_once(o->loop, 10);
    }
    return o->target >= 0;
}

static void out_close_all(out_fix *o)
{
    if (o->c && !o->closed) {
        sk_conn_abort(o->c);
        run_until(o->loop, &o->closed, WAIT_MS);
    }
    if (o->target >= 0)
        close(o->target);
    if (o->lfd >= 0)
        close(o->lfd);
    if (o->loop) {
        sk_loop_run_once(o->loop, 0);
        sk_loop_free(o->loop);
    }
}

TEST(proxy_layer_send_v2_then_payload)
{
    out_fix o;
    REQUIRE(out_open(&o));
    sk_addr s, d;
    REQUIRE(sk_addr_from_ip(&s, "203.0.113.7", 5000) == 0);
    REQUIRE(sk_addr_from_ip(&d, "198.51.100.2", 443) == 0);
    sk_proxy_write_opts w = {.version = 2,
                             .command = SK_PROXY_CMD_PROXY,
                             .src = &s,
                             .dst = &d,
                             .unique_id = {(const uint8_t *)"id-42", 5},
                             .crc32c = true};
    unsigned char want[256];
    int n = sk_proxy_write(want, sizeof want, &w);
    REQUIRE(n > 16);
    REQUIRE(sk_proxy_send(o.c, &w, WAIT_MS) == 0);
    /* written before the conn is up: queued behind the header */
    CHECK(sk_conn_write(o.c, "early,", 6) == 0);
    o.write_on_connect = "payload\n";
    CHECK(run_until(o.loop, &o.up, WAIT_MS));
    REQUIRE(out_accept(&o));
    unsigned char got[512];
    int end;
    size_t total = (size_t)n + 14;
    size_t r = raw_recv(o.loop, o.target, got, total, WAIT_MS, &end);
    CHECK(r == total && end == RAW_GOT);
    CHECK(memcmp(got, want, (size_t)n) == 0);
    CHECK(memcmp(got + n, "early,payload\n", 14) == 0);
    sk_proxy_header h;
    CHECK(sk_proxy_parse(got, r, &h) == n);
    CHECK(sk_conn_proxy_header(o.c, NULL, NULL) == -ENOENT); /* it sent one, read none */
    /* nothing more */
    run_for(o.loop, 20);
    CHECK(fionread(o.target) == 0);
    out_close_all(&o);
}

TEST(proxy_layer_send_v1_own_addresses)
{
    out_fix o;
    REQUIRE(out_open(&o));
    sk_proxy_write_opts w = {.version = 1, .command = SK_PROXY_CMD_PROXY};
    REQUIRE(sk_proxy_send(o.c, &w, WAIT_MS) == 0);
    o.write_on_connect = "hello\n";
    CHECK(run_until(o.loop, &o.up, WAIT_MS));
    REQUIRE(out_accept(&o));
    char got[256];
    int end;
    char peer[SK_ADDR_STRLEN], own[SK_ADDR_STRLEN], expect[256];
    sock_name(o.target, true, peer, sizeof peer); /* the conn's own address */
    sock_name(o.target, false, own, sizeof own);  /* the address it connected to */
    sk_addr pa = {.len = sizeof pa.ss}, oa = {.len = sizeof oa.ss};
    getpeername(o.target, (struct sockaddr *)&pa.ss, &pa.len);
    getsockname(o.target, (struct sockaddr *)&oa.ss, &oa.len);
    int elen = snprintf(expect, sizeof expect, "PROXY TCP4 127.0.0.1 127.0.0.1 %u %u\r\nhello\n",
                        (unsigned)sk_addr_port(&pa), (unsigned)sk_addr_port(&oa));
    size_t r = raw_recv(o.loop, o.target, got, (size_t)elen, WAIT_MS, &end);
    got[r] = '\0';
    CHECK(r == (size_t)elen && memcmp(got, expect, (size_t)elen) == 0);
    if (r != (size_t)elen || memcmp(got, expect, (size_t)elen) != 0)
        fprintf(stderr, "    got %s    want %s    (peer %s, own %s)\n", got, expect, peer, own);
    out_close_all(&o);
}

TEST(proxy_layer_send_rejects_what_it_cannot_say)
{
    out_fix o;
    REQUIRE(out_open(&o));
    /* own addresses with TLVs: refused */
    sk_proxy_write_opts w = {
        .version = 2, .command = SK_PROXY_CMD_PROXY, .alpn = {(const uint8_t *)"h2", 2}};
    CHECK(sk_proxy_send(o.c, &w, WAIT_MS) == -EINVAL);
    /* v3 */
    sk_proxy_write_opts v3 = {.version = 3, .command = SK_PROXY_CMD_LOCAL};
    CHECK(sk_proxy_send(o.c, &v3, WAIT_MS) == -EINVAL);
    out_close_all(&o);
}

TEST(proxy_layer_send_header_before_tls_client_hello)
{
    out_fix o;
    REQUIRE(out_open(&o));
    sk_tls_options to = {.insecure = true};
    sk_tls_ctx *cctx = NULL;
    char err[256];
    REQUIRE(sk_tls_ctx_new(&to, &cctx, err, sizeof err) == 0);
    sk_addr s, d;
    REQUIRE(sk_addr_from_ip(&s, "203.0.113.7", 5000) == 0);
    REQUIRE(sk_addr_from_ip(&d, "198.51.100.2", 443) == 0);
    sk_proxy_write_opts w = {.version = 2, .command = SK_PROXY_CMD_PROXY, .src = &s, .dst = &d};
    unsigned char want[128];
    int n = sk_proxy_write(want, sizeof want, &w);
    REQUIRE(n > 16);
    REQUIRE(sk_proxy_send(o.c, &w, WAIT_MS) == 0);
    REQUIRE(sk_tls_start(o.c, cctx, "localhost", WAIT_MS) == 0);
    REQUIRE(out_accept(&o));
    unsigned char got[256];
    int end;
    size_t r = raw_recv(o.loop, o.target, got, (size_t)n + 6, WAIT_MS, &end);
    CHECK(r == (size_t)n + 6);
    CHECK(memcmp(got, want, (size_t)n) == 0);
    CHECK(got[n] == 0x16);     /* a TLS handshake record */
    CHECK(got[n + 5] == 0x01); /* ClientHello */
    CHECK(!o.up);              /* no handshake without a server */
    out_close_all(&o);
    sk_tls_ctx_free(cctx);
}

TEST(proxy_layer_expect_then_tls_server)
{
    /* accept_proxy and TLS on one listener: the header comes first, then the handshake; the
     * client's conn sends the header with sk_proxy_send under its TLS. */
    pfix f;
    REQUIRE(pf_open(&f, NULL));
    sk_tls_options so = {.server = true, .self_signed = true};
    sk_tls_options co = {.insecure = true};
    sk_tls_ctx *sctx = NULL, *cctx = NULL;
    char err[256];
    REQUIRE(sk_tls_ctx_new(&so, &sctx, err, sizeof err) == 0);
    REQUIRE(sk_tls_ctx_new(&co, &cctx, err, sizeof err) == 0);
    f.tls = sctx;
    out_fix o = {.loop = f.loop, .lfd = -1, .target = -1};
    REQUIRE(sk_conn_connect(f.loop, &f.addr, WAIT_MS, &out_cbs, &o, &o.c) == 0);
    sk_addr s, d;
    REQUIRE(sk_addr_from_ip(&s, "203.0.113.9", 6000) == 0);
    REQUIRE(sk_addr_from_ip(&d, "198.51.100.2", 443) == 0);
    sk_proxy_write_opts w = {.version = 1, .command = SK_PROXY_CMD_PROXY, .src = &s, .dst = &d};
    REQUIRE(sk_proxy_send(o.c, &w, WAIT_MS) == 0);
    REQUIRE(sk_tls_start(o.c, cctx, NULL, WAIT_MS) == 0);
    o.write_on_connect = "over tls\n";
    /* the ClientHello follows the header at once: it may arrive in the header's read */
    REQUIRE(pf_wait(&f, 1, 0));
    pconn *p = &f.conns[0];
    CHECK(strcmp(p->peer, "203.0.113.9:6000") == 0);
    CHECK(f.tls_rc == 0);
    CHECK(run_until(f.loop, &o.up, WAIT_MS));
    CHECK(pf_wait(&f, 1, 9));
    CHECK(p->len == 9 && memcmp(p->data, "over tls\n", 9) == 0);
    if (o.c && !o.closed) {
        sk_conn_abort(o.c);
        run_until(f.loop, &o.closed, WAIT_MS);
    }
    pf_close(&f);
    sk_tls_ctx_free(sctx);
    sk_tls_ctx_free(cctx);
}
