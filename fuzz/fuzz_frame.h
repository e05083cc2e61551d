/* The body shared by the two framer targets: one-shot parsing against streaming in chunks.
 *
 * Input layout: byte 0 picks the maximum frame size, byte 1 seeds the chunk sizes, the rest is
 * the stream. First the stream is cut into frames in one pass (as if it all arrived in one
 * read); then it is fed in random chunks through a reassembly buffer the way sk_conn does
 * (keep the unfinished tail, append the next chunk, parse again). Both must give the same
 * frames, the same error at the same place, and every frame must lie inside its buffer. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sockit/sockit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAMES 4096

typedef struct frames {
    size_t n;
    size_t off[MAX_FRAMES], len[MAX_FRAMES]; /* payload position in the whole stream */
    int error;                               /* 0 or the framer's error */
    size_t error_at;                         /* stream offset where the failing frame began */
} frames;

static void check_frame(const sk_frame *f, size_t avail, size_t max)
{
    if (f->consumed == 0 || f->consumed > avail || f->offset + f->length > f->consumed)
        abort();
    if (FRAME_KIND != SK_FRAME_RAW && f->length > max)
        abort();
}

static void one_shot(const uint8_t *s, size_t len, size_t max, frames *out)
{
    size_t pos = 0;
    out->n = 0;
    out->error = 0;
    while (pos < len && out->n < MAX_FRAMES) {
        sk_frame f;
        int r = sk_frame_next(FRAME_KIND, max, s + pos, len - pos, &f);
        if (r == 0)
            break;
        if (r < 0) {
            if (r != -EMSGSIZE)
                abort();
            out->error = r;
            out->error_at = pos;
            break;
        }
        check_frame(&f, len - pos, max);
        out->off[out->n] = pos + f.offset;
        out->len[out->n] = f.length;
        out->n++;
        pos += f.consumed;
    }
}

static uint32_t next_rand(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t maxes[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 1024, 65536};
    size_t max = maxes[data[0] % (sizeof maxes / sizeof maxes[0])];
    uint32_t seed = data[1];
    const uint8_t *s = data + 2;
    size_t len = size - 2;

    frames *whole = malloc(sizeof *whole);
    uint8_t *buf = malloc(len + 1);
    if (!whole || !buf)
        abort();
    one_shot(s, len, max, whole);

    /* Streaming: buf[0..have) is what is not yet framed; base is its stream offset. */
    size_t have = 0, base = 0, fed = 0, nframes = 0;
    int error = 0;
    size_t error_at = 0;
    while (fed < len && !error && nframes < whole->n + 1 && nframes < MAX_FRAMES) {
        size_t chunk = 1 + next_rand(&seed) % 97;
        if (chunk > len - fed)
            chunk = len - fed;
        memcpy(buf + have, s + fed, chunk);
        have += chunk;
        fed += chunk;
        size_t pos = 0;
        while (pos < have && nframes < MAX_FRAMES) {
            sk_frame f;
            int r = sk_frame_next(FRAME_KIND, max, buf + pos, have - pos, &f);
            if (r == 0)
                break;
            if (r < 0) {
                error = r;
                error_at = base + pos;
                break;
            }
            check_frame(&f, have - pos, max);
            if (FRAME_KIND != SK_FRAME_RAW) {
                /* same frame as the one-shot pass, at the same stream offset */
                if (nframes >= whole->n || whole->off[nframes] != base + pos + f.offset ||
                    whole->len[nframes] != f.length)
                    abort();
            }
            nframes++;
            pos += f.consumed;
        }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        base += pos;
    }
    if (FRAME_KIND != SK_FRAME_RAW) {
        /* A line over the maximum may be seen earlier in one piece than in small chunks (the
         * framer refuses once it has more than max bytes without a newline), but both passes
         * must agree on where it is and on every frame before it. */
        if (nframes < MAX_FRAMES && whole->n < MAX_FRAMES) {
            if (error != whole->error || nframes != whole->n)
                abort();
            if (error && error_at != whole->error_at)
                abort();
        }
    } else if (error) {
        abort(); /* raw framing never fails */
    }
    free(buf);
    free(whole);
    return 0;
}
