/* Rate-limited log lines: see ratelog.h. One timer serves every cause: it fires when the
 * earliest held-back line is due, and re-arms itself for the rest. */
#include "ratelog.h"

void sk__ratelog_init(sk__ratelog *r, sk_loop *loop, uint32_t interval_ms, sk__ratelog_line line,
                      void *arg)
{
    *r = (sk__ratelog){.loop = loop, .line = line, .arg = arg, .interval_ms = interval_ms};
}

static void report(sk__ratelog *r, int cause, const sk_addr *peer)
{
    uint64_t now = sk_loop_now(r->loop);
    double secs = r->causes[cause].ever ? (double)(now - r->causes[cause].logged_at) / 1000.0 : 0.0;
    r->line(r->arg, cause, r->causes[cause].unreported, secs, peer);
    r->causes[cause].unreported = 0;
    r->causes[cause].logged_at = now;
    r->causes[cause].ever = true;
}

/* Report what was held back, for every cause whose interval has passed; re-arm for the rest. */
static void timer_fired(sk_timer *t, void *arg)
{
    sk__ratelog *r = arg;
    uint64_t now = sk_loop_now(r->loop), next = 0;
    for (int i = 0; i < SK__RATELOG_CAUSES; i++) {
        if (!r->causes[i].unreported)
            continue;
        uint64_t due = r->causes[i].logged_at + r->interval_ms;
        if (now >= due)
            report(r, i, NULL);
        else if (!next || due - now < next)
            next = due - now;
    }
    if (next)
        sk_timer_start(t, next, 0);
}

void sk__ratelog_note(sk__ratelog *r, int cause, const sk_addr *peer)
{
    r->causes[cause].unreported++;
    uint64_t now = sk_loop_now(r->loop);
    uint64_t due = r->causes[cause].logged_at + r->interval_ms;
    if (!r->causes[cause].ever || now >= due) {
        report(r, cause, peer);
        return;
    }
    if (!r->timer && sk_timer_new(r->loop, timer_fired, r, &r->timer) < 0)
        return; /* out of memory: the count waits for the next event's line */
    if (!sk_timer_active(r->timer))
        sk_timer_start(r->timer, due - now, 0);
}

void sk__ratelog_flush(sk__ratelog *r)
{
    for (int i = 0; i < SK__RATELOG_CAUSES; i++)
        if (r->causes[i].unreported)
            report(r, i, NULL);
    sk_timer_free(r->timer);
    r->timer = NULL;
}
