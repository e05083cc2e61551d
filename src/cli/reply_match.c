/* Matching replies to datagrams: see reply_match.h. */
#include "reply_match.h"

/* FNV-1a: a fast hash, enough to tell apart the datagrams of one session. */
static uint64_t hash_bytes(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

void reply_match_sent(reply_match *m, const void *data, size_t len)
{
    m->sent[m->next].hash = hash_bytes(data, len);
    m->sent[m->next].used = true;
    m->sent[m->next].answered = false;
    m->next = (m->next + 1) % REPLY_WINDOW;
}

bool reply_match_reply(reply_match *m, const void *data, size_t len)
{
    uint64_t h = hash_bytes(data, len);
    size_t oldest_unanswered = REPLY_WINDOW;
    bool answered_same = false;
    for (size_t k = 0; k < REPLY_WINDOW; k++) { /* oldest first */
        size_t i = (m->next + k) % REPLY_WINDOW;
        if (!m->sent[i].used)
            continue;
        if (m->sent[i].answered) {
            answered_same = answered_same || m->sent[i].hash == h;
            continue;
        }
        if (m->sent[i].hash == h) {
            m->sent[i].answered = true;
            return true;
        }
        if (oldest_unanswered == REPLY_WINDOW)
            oldest_unanswered = i;
    }
    if (answered_same || oldest_unanswered == REPLY_WINDOW)
        return false;
    m->sent[oldest_unanswered].answered = true;
    return true;
}
