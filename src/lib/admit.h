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
/* The same for a conn that exists already (a PROXY header was read first, and peer is the
 * address it gave): a refused conn is answered and closed through the conn. */
int sk__admit_check_conn(sk__admit *a, sk_conn *c, const sk_addr *peer, sk__release **slot);
/* accept_proxy: 0 if source may connect at all (proxy_from); SK__REFUSED: answered, closed,
 * counted and logged. */
int sk__admit_trusted(sk__admit *a, int fd, const sk_addr *source);
/* A conn from source failed its PROXY header with err (an sk_proxy_error, -ETIMEDOUT, an end
 * inside the header): counted and logged by cause. */
void sk__admit_proxy_failed(sk__admit *a, int err, const sk_addr *source);

/* Count the new conn as live; give it the slot (sk__conn_set_release) to tell its close. */
void sk__admit_enter(sk__admit *a, sk__release *slot);
/* The conn could not be made after all. */
void sk__admit_abandon(sk__admit *a, sk__release *slot);

/* The live conns and the refusals so far, into those fields of st. */
void sk__admit_stats(const sk__admit *a, sk_listener_stats *st);

#endif
