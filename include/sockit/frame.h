/* sockit — message framing over a byte stream.
 *
 * TCP delivers a stream: one send may arrive in many reads and many sends in one read. A framer
 * cuts the stream back into messages. sk_conn uses these functions; they are public so that a
 * program (or a fuzzer) can use them on any buffer.
 *
 *   SK_FRAME_RAW    every read is delivered as it came (no reassembly)
 *   SK_FRAME_LINE   a frame ends at '\n'; a '\r' just before it is dropped too; the frame
 *                   excludes the terminator. On a conn, bytes left without '\n' at the
 *                   peer's EOF are delivered as a last frame before on_eof.
 *   SK_FRAME_LEN32  a 4-byte big-endian length, then that many bytes; the frame is the payload
 */
#ifndef SOCKIT_FRAME_H
#define SOCKIT_FRAME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_frame_kind {
    SK_FRAME_RAW = 0,
    SK_FRAME_LINE = 1,
    SK_FRAME_LEN32 = 2,
} sk_frame_kind;

#define SK_FRAME_DEFAULT_MAX (64u * 1024u)

typedef struct sk_frame {
    size_t offset;   /* where the payload starts in the scanned buffer */
    size_t length;   /* payload length */
    size_t consumed; /* bytes of the buffer this frame used, header and terminator included */
} sk_frame;

/* Look for the first complete frame in buf[0..len).
 * Returns 1 and fills f when one is there; 0 when more bytes are needed; -EMSGSIZE when the
 * frame in progress is longer than max (a line longer than max with no newline yet, or a length
 * prefix above max). For SK_FRAME_RAW any len > 0 is one frame. */
int sk_frame_next(sk_frame_kind kind, size_t max, const void *buf, size_t len, sk_frame *f);

/* Parse "raw", "line" or "len32". 0 or -EINVAL. */
int sk_frame_kind_parse(const char *name, sk_frame_kind *out);
const char *sk_frame_kind_name(sk_frame_kind kind);

#ifdef __cplusplus
}
#endif
#endif
