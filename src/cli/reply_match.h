/* Which datagram a reply answers, so that a duplicated reply (the network may deliver one
 * twice) is not taken for the answer to a datagram that got none. */
#ifndef SOCKIT_REPLY_MATCH_H
#define SOCKIT_REPLY_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The last REPLY_WINDOW datagrams sent are remembered (a hash of their bytes each); an older
 * one that is still unanswered stays counted as such, but a reply to it can no longer be told
 * from a duplicate. 256 is far more than a peer has in flight for a line-by-line client. */
#define REPLY_WINDOW 256

typedef struct reply_match {
    struct {
        uint64_t hash;
        bool used, answered;
    } sent[REPLY_WINDOW];
    size_t next; /* the slot of the next datagram sent; also the oldest one remembered */
} reply_match;

void reply_match_sent(reply_match *m, const void *data, size_t len);
/* True when the reply answers a datagram: the unanswered one with the same bytes (an echo),
 * else the oldest unanswered one (a server whose replies differ from what it got). False for
 * a duplicate (the same bytes as a datagram already answered, and no other) or a reply when
 * none is owed. */
bool reply_match_reply(reply_match *m, const void *data, size_t len);

#endif
