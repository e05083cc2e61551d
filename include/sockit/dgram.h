/* sockit — datagram endpoints: UDP over IPv4 and IPv6, and Unix datagram sockets, on the loop.
 *
 * One sk_dgram is one socket. It is bound (a server: any number of peers, each datagram comes
 * with its sender's address), connected (a client: one peer, and the kernel's ICMP "port
 * unreachable" surfaces as -ECONNREFUSED), or both.
 *
 * Receiving. Datagrams are read in batches (recvmmsg, up to `batch` per system call) into
 * buffers the dgram owns, and each is handed to on_datagram whole, with its sender. A datagram
 * longer than max_size is never cut silently: it arrives with truncated set and size giving its
 * real length (MSG_TRUNC), so the user can report it and drop it.
 *
 * Sending. sk_dgram_send() hands a datagram to the kernel at once (batch 1) or gathers the
 * datagrams sent during one loop iteration and passes them to sendmmsg together (batch > 1;
 * the replies to one received batch leave in one system call). When the kernel's buffer is full
 * (EAGAIN, ENOBUFS) datagrams wait in a bounded queue; when that is full too, the send is refused
 * with -ENOBUFS. sk_dgram_writable() turns false at half the queue; on_drain follows when it has
 * emptied again, so a sender can stop and resume instead of losing datagrams.
 *
 * Errors the kernel reports about a datagram already handed over (ICMP errors on a connected
 * socket, a Unix peer that has gone) arrive through on_error; they never close the dgram.
 * Callbacks never run from inside a call you make: errors found during sk_dgram_send() are
 * reported later in the same loop iteration.
 *
 * Closing is immediate (there is no stream to finish): sk_dgram_close() makes one last attempt
 * to send what is queued, closes the socket, removes a Unix socket file it created, and frees
 * the dgram at the end of the loop iteration, so closing from a callback is safe. No callback
 * runs after sk_dgram_close() returns.
 */
#ifndef SOCKIT_DGRAM_H
#define SOCKIT_DGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_dgram sk_dgram;

#define SK_DGRAM_BATCH_DEFAULT 16
#define SK_DGRAM_BATCH_MAX 64
#define SK_DGRAM_MAX_SIZE_DEFAULT 65536 /* the largest UDP payload, 65507 bytes, fits */
#define SK_DGRAM_QUEUE_DEFAULT 256

typedef struct sk_dgram_options {
    /* Datagrams per recvmmsg/sendmmsg call: 0 means SK_DGRAM_BATCH_DEFAULT (fewer when
     * max_size is over 64 KiB, so the buffers stay within 1 MiB); 1 turns batching off (one
     * recvmsg/sendmsg per datagram); at most SK_DGRAM_BATCH_MAX. */
    unsigned batch;
    /* The longest datagram received whole; 0 means SK_DGRAM_MAX_SIZE_DEFAULT. */
    size_t max_size;
    /* Datagrams held while the kernel's buffer is full; 0 means SK_DGRAM_QUEUE_DEFAULT. Raised
     * to at least 4 * batch. */
    unsigned max_queue;
    /* SO_RCVBUF / SO_SNDBUF in bytes; 0 leaves the OS default. */
    int rcvbuf, sndbuf;
    /* On [::]: IPv6 only (default: dual-stack where the OS allows). */
    bool v6only;
} sk_dgram_options;

/* One received datagram; valid only during the callback. */
typedef struct sk_datagram {
    const void *data;
    size_t len;          /* bytes in data */
    size_t size;         /* its real length: > len when truncated */
    bool truncated;      /* longer than max_size: data holds only the first len bytes */
    const sk_addr *from; /* the sender; a Unix sender that did not bind has an empty name */
} sk_datagram;

typedef struct sk_dgram_callbacks {
    /* One datagram. Must not be NULL. */
    void (*on_datagram)(sk_dgram *d, const sk_datagram *dg);
    /* An error the kernel reported: -ECONNREFUSED (a connected UDP peer's port is closed, or a
     * Unix peer's socket is gone), -EHOSTUNREACH, -EMSGSIZE (a queued datagram too large), ...
     * peer: where the failed datagram was going, when known (else NULL). The dgram stays open.
     * NULL: errors are only counted. */
    void (*on_error)(sk_dgram *d, int err, const sk_addr *peer);
    /* The send queue emptied after sk_dgram_writable() turned false or a send was refused. */
    void (*on_drain)(sk_dgram *d);
} sk_dgram_callbacks;

/* Open a datagram socket of bind_addr's or connect_to's family (both may be given; at least one
 * must be). bind_addr: bind there (port 0: the OS picks; for a Unix path, a stale socket file
 * that nobody has bound is replaced, a live one gives -EADDRINUSE). connect_to: connect there,
 * so sk_dgram_send() may pass NULL and only that peer's datagrams arrive; a Unix client with no
 * bind_addr is bound to an automatic abstract name, so the server can reply. opts and out may
 * be NULL; callbacks must outlive the dgram. 0 or a negative errno (-ENOENT, -ECONNREFUSED for
 * a Unix path nobody serves; -EADDRINUSE, -EACCES ...). */
int sk_dgram_open(sk_loop *loop, const sk_addr *bind_addr, const sk_addr *connect_to,
                  const sk_dgram_options *opts, const sk_dgram_callbacks *callbacks, void *data,
                  sk_dgram **out);

/* Send one datagram to `to` (NULL on a connected dgram). 0: sent or queued; -ENOBUFS: the queue
 * is full, nothing was queued; -EMSGSIZE: longer than UDP allows (65507 bytes over IPv4, 65527
 * over IPv6); -EDESTADDRREQ: no address (or a Unix peer without a name); -EBADF after close. */
int sk_dgram_send(sk_dgram *d, const void *data, size_t len, const sk_addr *to);

/* Datagrams queued in user space (not yet taken by the kernel). */
size_t sk_dgram_queued_datagrams(const sk_dgram *d);
/* False from half the queue until on_drain. */
bool sk_dgram_writable(const sk_dgram *d);

/* Stop and restart reading (input backpressure: the kernel's buffer fills, then the kernel
 * drops). Datagrams already read are held and delivered after the resume. */
void sk_dgram_pause_reading(sk_dgram *d);
void sk_dgram_resume_reading(sk_dgram *d);

void sk_dgram_close(sk_dgram *d);

/* The address really bound (the port the OS chose; an automatic Unix name). */
int sk_dgram_local_addr(const sk_dgram *d, sk_addr *out);
void sk_dgram_set_data(sk_dgram *d, void *data);
void *sk_dgram_data(const sk_dgram *d);
int sk_dgram_fd(const sk_dgram *d);
sk_loop *sk_dgram_loop(const sk_dgram *d);

typedef struct sk_dgram_stats {
    uint64_t received;    /* datagrams delivered, truncated ones included */
    uint64_t truncated;   /* of those, longer than max_size */
    uint64_t sent;        /* datagrams the kernel took */
    uint64_t refused;     /* sends refused because the queue was full (-ENOBUFS) */
    uint64_t send_errors; /* datagrams dropped after the kernel refused them (see on_error) */
    uint64_t recv_calls;  /* recvmmsg/recvmsg calls that returned data */
    uint64_t send_calls;  /* sendmmsg/sendmsg calls that sent something */
} sk_dgram_stats;
void sk_dgram_get_stats(const sk_dgram *d, sk_dgram_stats *out);

#ifdef __cplusplus
}
#endif
#endif
