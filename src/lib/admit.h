/* Admission control for a listener (admit.c): the limits on live conns (in all, and per client
 * IP), the allow / deny lists, and the refusals: answered, closed, counted and logged at a
 * limited rate. The listener asks before it makes a conn, and hands the conn the release that
 * keeps the counts. Private to the library. */
#ifndef SOCKIT_ADMIT_H
#define SOCKIT_ADMIT_H

#include "internal.h"

typedef struct sk__admit sk__admit;

/* What sk__admit_check decided, besides 0 (admit) and -ENOMEM. */
enum { SK__REFUSED = 1 };

/* The limits, lists and messages of o, copied (o need not outlive the call). 0 or -ENOMEM,
 * with nothing left behind. */
int sk__admit_new(sk_loop *loop, const sk_listen_options *o, sk__admit **out);
/* The listener closed: log what the rate limit held back and stop. The counts live on while
 * conns do (they outlive the listener); the last one's release frees them. */
void sk__admit_close(sk__admit *a);

/* A socket just accepted from peer. 0: admit it; *slot then goes to sk__admit_enter once the
 * conn exists, or to sk__admit_abandon. SK__REFUSED: the fd is answered, closed, counted and
 * logged. -ENOMEM: no room to count it (the caller drops it). */
int sk__admit_check(sk__admit *a, int fd, const sk_addr *peer, sk__release **slot);
/* Count the new conn as live; give it the slot (sk__conn_set_release) to tell its close. */
void sk__admit_enter(sk__admit *a, sk__release *slot);
/* The conn could not be made after all. */
void sk__admit_abandon(sk__admit *a, sk__release *slot);

/* The live conns and the refusals so far, into those fields of st. */
void sk__admit_stats(const sk__admit *a, sk_listener_stats *st);

#endif
