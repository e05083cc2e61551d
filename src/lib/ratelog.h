/* Log lines about events that can repeat without end (refused connections, accept pauses): the
 * first at once, then at most one line per interval and cause, with the count since the last
 * line, so that a flood of connections cannot flood the log (ratelog.c). Private. */
#ifndef SOCKIT_RATELOG_H
#define SOCKIT_RATELOG_H

#include "internal.h"

#define SK__RATELOG_CAUSES 11 /* admit.c has the most */

/* Write the line for count events of cause in the last secs seconds (0 for the first line);
 * peer (NULL when unknown) sent the last of them. */
typedef void (*sk__ratelog_line)(void *arg, int cause, uint64_t count, double secs,
                                 const sk_addr *peer);

/* Embedded in its owner, so that setting it up cannot fail. */
typedef struct sk__ratelog {
    sk_loop *loop;
    sk__ratelog_line line;
    void *arg;
    uint32_t interval_ms;
    sk_timer *timer; /* made when the first line is held back */
    struct {
        uint64_t unreported; /* events since the last line */
        uint64_t logged_at;  /* sk_loop_now() of the last line */
        bool ever;
    } causes[SK__RATELOG_CAUSES];
} sk__ratelog;

void sk__ratelog_init(sk__ratelog *r, sk_loop *loop, uint32_t interval_ms, sk__ratelog_line line,
                      void *arg);
/* One event: its line now, or counted into the next one (cause < SK__RATELOG_CAUSES). */
void sk__ratelog_note(sk__ratelog *r, int cause, const sk_addr *peer);
/* Write what is held back, and free the timer: the owner is going away. */
void sk__ratelog_flush(sk__ratelog *r);

#endif
