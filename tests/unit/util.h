/* Shared helpers for the unit tests: raw loopback sockets that the test controls byte by byte,
 * bounded waits that keep the loop running, child processes with a deadline, and "tconn", a
 * record of everything a conn's callbacks saw (plus a small listener fixture, "tserver").
 *
 * Every wait here is bounded by a deadline; the deadline only decides that a test failed. */
#ifndef SOCKIT_TEST_UTIL_H
#define SOCKIT_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "check.h"

/* ---- time and waiting ---- */
uint64_t util_now_ms(void);
/* Run the loop until done(arg) is true or timeout_ms pass. Returns done(arg). */
bool run_until_fn(sk_loop *loop, bool (*done)(void *arg), void *arg, int timeout_ms);
/* Run the loop until a timer of ms fires (for checks that something did NOT happen). */
void run_for(sk_loop *loop, int ms);

/* ---- raw sockets (loopback only) ---- */
int set_nonblock(int fd, bool on);
/* A listening socket on 127.0.0.1:0 (family AF_INET) or [::1]:0 (AF_INET6); fd or -errno. */
int raw_listen(int family, int backlog, sk_addr *out);
/* A TCP socket bound to 127.0.0.1:0 that does not listen; fd or -errno. */
int raw_bind_only(sk_addr *out);
/* Connect (blocking; loopback handshakes complete in the kernel), then make it non-blocking. */
int raw_connect(const sk_addr *addr);
/* Start a non-blocking connect; fd or -errno. */
int raw_connect_nb(const sk_addr *addr);
/* Bytes waiting in fd's receive queue. */
size_t fionread(int fd);

/* How a raw read ended. */
enum { RAW_GOT = 0, RAW_EOF = 1 };
/* Read up to want bytes from a non-blocking fd, running the loop (may be NULL) between tries.
 * Returns the bytes read; *end is RAW_GOT (all of want), RAW_EOF, -errno, or -ETIMEDOUT. */
size_t raw_recv(sk_loop *loop, int fd, void *buf, size_t want, int timeout_ms, int *end);
/* Read and discard until EOF (0), an error (-errno) or the deadline (-ETIMEDOUT).
 * *extra (may be NULL) gets the bytes discarded. */
int raw_wait_end(sk_loop *loop, int fd, int timeout_ms, size_t *extra);
/* Send everything, running the loop while the socket is full. 0 or -errno. */
int raw_send_all(sk_loop *loop, int fd, const void *buf, size_t len, int timeout_ms);

/* A byte pattern that depends on the stream offset, to check order and completeness. */
void fill_pattern(unsigned char *buf, size_t len, size_t offset);
/* Index of the first wrong byte, or len when all are right. */
size_t check_pattern(const unsigned char *buf, size_t len, size_t offset);
/* Write a 4-byte big-endian length then the payload (none when NULL); returns 4 + n. */
size_t put_len32(unsigned char *dst, const void *payload, size_t n);

/* ---- child processes ---- */
/* Fork; the child runs fn(arg, fd) where fd is the write end of a pipe to the parent, then
 * _exit()s with fn's return value. *from_child gets the read end (non-blocking). pid or -errno. */
pid_t child_start(int (*fn)(void *arg, int to_parent), void *arg, int *from_child);
/* Read exactly len bytes from a child's pipe within timeout_ms: 0, or -1. */
int child_read(int fd, void *buf, size_t len, int timeout_ms);
/* Wait for the child: its exit status; -1 if it was still running at the deadline (it is then
 * killed by pid and reaped); -2 if a signal ended it (*signo gets the signal; may be NULL). */
int child_wait(pid_t pid, int timeout_ms, int *signo);

/* ---- tconn: what one conn's callbacks saw, and what they do ---- */
typedef struct tconn {
    sk_conn *conn; /* NULL once on_close has run */
    /* frames received, concatenated; ends[i] is where frame i ends in data */
    unsigned char *data;
    size_t len, cap;
    size_t *ends;
    size_t nframes, ends_cap;
    int connects, eofs, drains, closes, late_calls;
    int reason; /* on_close's reason */
    bool connected, eof, drained, closed;
    /* behaviour, set by the test */
    bool echo;             /* write every frame back with sk_conn_write_frame */
    size_t close_at;       /* sk_conn_close() in on_frame when nframes reaches it (0: never) */
    size_t abort_at;       /* sk_conn_abort() likewise */
    size_t pause_at;       /* sk_conn_pause_reading() likewise */
    int write_after_close; /* sk_conn_write's result right after close_at's close */
    bool close_on_connect; /* in on_connect: write "x\n", then sk_conn_close() */
    bool close_on_eof;     /* in on_eof: sk_conn_close() */
} tconn;

/* Callbacks that record into the tconn in sk_conn_data(). */
extern const sk_conn_callbacks tconn_cbs;        /* with on_eof */
extern const sk_conn_callbacks tconn_cbs_no_eof; /* on_eof NULL: the conn closes at the FIN */

void tconn_init(tconn *t);
void tconn_attach(tconn *t, sk_conn *c, const sk_conn_callbacks *cbs);
/* Is frame i exactly data[0..len)? */
bool tconn_frame_is(const tconn *t, size_t i, const void *data, size_t len);
bool tconn_frame_is_str(const tconn *t, size_t i, const char *s);
/* Abort the conn if still open, run the loop until on_close, free the record's buffers. */
void tconn_finish(sk_loop *loop, tconn *t);

/* ---- tserver: a listener whose accepted conns are tconns ---- */
#define TSERVER_MAX 32
typedef struct tserver {
    sk_loop *loop;
    sk_listener *l;
    sk_addr addr; /* the address really bound */
    /* applied to each accepted conn */
    sk_frame_kind kind;
    size_t max;
    bool echo;
    bool pause; /* pause reading at accept */
    bool close_on_eof;
    uint64_t idle_ms; /* 0: none */
    const sk_conn_callbacks *cbs;
    tconn conns[TSERVER_MAX];
    int naccepted;
} tserver;

/* Defaults: SK_FRAME_LINE, max 0, no echo, tconn_cbs. */
void tserver_init(tserver *s, sk_loop *loop);
/* Listen on bind_addr (NULL: 127.0.0.1:0); fills s->addr. 0 or the listener's error. */
int tserver_listen(tserver *s, const sk_addr *bind_addr, const sk_listen_options *opts);
/* Run the loop until n conns were accepted. */
bool tserver_wait_accept(tserver *s, int n, int timeout_ms);
/* Finish every accepted conn, close the listener. */
void tserver_close(tserver *s);

#endif
