/* sockit — the event loop: descriptors, timers, signals, wake-ups from other threads.
 *
 * A loop and everything on it belong to the thread that runs it. The only function another
 * thread may call is sk_loop_post(). Callbacks never run re-entrantly from inside a call you
 * make (closing a conn from its own callback is safe: the close callback runs later in the same
 * loop iteration).
 */
#ifndef SOCKIT_LOOP_H
#define SOCKIT_LOOP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_loop sk_loop;
typedef struct sk_timer sk_timer;

/* A new loop on the backend the environment variable SOCKIT_BACKEND names: "epoll", the only
 * one so far, and the default when it is unset or empty. An unknown name fails with
 * SK_ERR_BACKEND. The choice is an environment variable rather than an argument so that any
 * program built on sockit (the sockit command, its test suites) can be run on another backend
 * without a change to its code, and the one signature keeps working for every caller. */
int sk_loop_new(sk_loop **out);
/* The loop's backend: "epoll". */
const char *sk_loop_backend_name(const sk_loop *loop);
/* Frees the loop. Close conns and listeners first; timers and watches still on it are freed. */
void sk_loop_free(sk_loop *loop);

/* Run until sk_loop_stop() is called. Returns 0, or a negative errno if the backend (epoll)
 * itself fails. */
int sk_loop_run(sk_loop *loop);
/* Run one iteration, waiting at most timeout_ms (-1: until something happens). For tests. */
int sk_loop_run_once(sk_loop *loop, int timeout_ms);
/* Make sk_loop_run() return after the current iteration (or at once, if it is not running
 * yet: a stop made before sk_loop_run() is not lost). Loop thread only. */
void sk_loop_stop(sk_loop *loop);

/* One pointer of the user's on the loop (a server that owns it, say): NULL until set. */
void sk_loop_set_data(sk_loop *loop, void *data);
void *sk_loop_data(const sk_loop *loop);

/* Milliseconds on the monotonic clock, read again each time a wait ends (before any callback). */
uint64_t sk_loop_now(const sk_loop *loop);

/* ---- descriptors you own (standard input, pipes, anything pollable) ---- */
enum { SK_READABLE = 1, SK_WRITABLE = 2 };
/* events has SK_READABLE/SK_WRITABLE; on a hang-up or error both are reported as readable. */
typedef void (*sk_watch_cb)(sk_loop *loop, int fd, unsigned events, void *arg);
int sk_loop_watch(sk_loop *loop, int fd, unsigned events, sk_watch_cb cb, void *arg);
int sk_loop_watch_modify(sk_loop *loop, int fd, unsigned events);
int sk_loop_unwatch(sk_loop *loop, int fd);

/* ---- timers: one-shot or repeating, millisecond resolution, kept in a binary heap ---- */
typedef void (*sk_timer_cb)(sk_timer *timer, void *arg);
int sk_timer_new(sk_loop *loop, sk_timer_cb cb, void *arg, sk_timer **out);
/* (Re)start: first fire after after_ms, then every repeat_ms (0: once). Timers due at the same
 * millisecond fire in the order they were started. */
void sk_timer_start(sk_timer *timer, uint64_t after_ms, uint64_t repeat_ms);
void sk_timer_stop(sk_timer *timer);
bool sk_timer_active(const sk_timer *timer);
/* Stops and frees. Safe from inside the timer's own callback. */
void sk_timer_free(sk_timer *timer);

/* ---- signals, delivered on the loop through signalfd ---- */
/* Blocks signo in the calling thread (call before starting other threads, which inherit the
 * mask) and calls cb on the loop each time it arrives. SIGPIPE never needs this: sockit sends
 * with MSG_NOSIGNAL. */
typedef void (*sk_signal_cb)(sk_loop *loop, int signo, void *arg);
int sk_loop_on_signal(sk_loop *loop, int signo, sk_signal_cb cb, void *arg);

/* ---- other threads ---- */
/* Run fn(loop, arg) on the loop's thread soon. Safe from any thread; 0 or -ENOMEM. */
typedef void (*sk_post_cb)(sk_loop *loop, void *arg);
int sk_loop_post(sk_loop *loop, sk_post_cb fn, void *arg);

/* What happens on the loop, as events to a sink, and its counters: see event.h. */

#ifdef __cplusplus
}
#endif
#endif
