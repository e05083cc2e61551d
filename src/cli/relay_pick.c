/* Which target a relay's new client goes to (relay.h): round robin, least connections, or the
 * first one up; a target that failed is skipped until its --down-time has passed. */
#include <string.h>

#include "relay.h"

bool relay_target_up(const relay_target *t, uint64_t now)
{
    return t->down_until <= now;
}

/* Among the targets not yet tried: the best one up by the balance, else (all down) the one
 * that comes up first. -1 when every target was tried. */
static long best(relay_pool *p, const bool *tried, uint64_t now)
{
    long up = -1, down = -1;
    for (size_t k = 0; k < p->count; k++) {
        /* Round robin starts its search where the last one ended; the others from the top. */
        size_t i = p->balance == BALANCE_ROUNDROBIN ? (p->next + k) % p->count : k;
        const relay_target *t = &p->targets[i];
        if (tried && tried[i])
            continue;
        if (!relay_target_up(t, now)) {
            if (down < 0 || t->down_until < p->targets[down].down_until)
                down = (long)i;
            continue;
        }
        if (up < 0) {
            up = (long)i;
            if (p->balance != BALANCE_LEASTCONN)
                break;
        } else if (t->active < p->targets[up].active) {
            up = (long)i;
        }
    }
    long chosen = up >= 0 ? up : down;
    if (chosen >= 0 && p->balance == BALANCE_ROUNDROBIN)
        p->next = ((size_t)chosen + 1) % p->count;
    return chosen;
}

size_t relay_pick(relay_pool *p, uint64_t now)
{
    long i = best(p, NULL, now);
    return i < 0 ? 0 : (size_t)i;
}

long relay_pick_next(relay_pool *p, const bool *tried, uint64_t now)
{
    return best(p, tried, now);
}

bool relay_mark_down(relay_pool *p, relay_target *t, uint64_t now)
{
    bool was_up = relay_target_up(t, now);
    t->down_until = now + p->down_ms;
    return was_up;
}

int relay_balance_parse(const char *text, relay_balance *out)
{
    static const char *const names[] = {"roundrobin", "leastconn", "first"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(text, names[i])) {
            *out = (relay_balance)i;
            return 0;
        }
    return -1;
}
