/* Framers: find the first complete frame in a buffer. Pure functions, no allocation, so the
 * fuzzers can drive them with any bytes. */
#include <errno.h>
#include <string.h>

#include "internal.h"

static int next_line(size_t max, const unsigned char *p, size_t len, sk_frame *f)
{
    /* A line may hold max payload bytes plus "\r\n"; look no further than that. */
    size_t window = len < max + 2 ? len : max + 2;
    const unsigned char *nl = memchr(p, '\n', window);
    if (!nl) {
        /* max + 1 bytes may still end as max bytes and "\r\n", but only if the last is '\r'. */
        bool over = len > max + 1 || (len == max + 1 && p[max] != '\r');
        return over ? -EMSGSIZE : 0;
    }
    size_t end = (size_t)(nl - p);
    size_t payload = end > 0 && p[end - 1] == '\r' ? end - 1 : end;
    if (payload > max)
        return -EMSGSIZE;
    f->offset = 0;
    f->length = payload;
    f->consumed = end + 1;
    return 1;
}

static int next_len32(size_t max, const unsigned char *p, size_t len, sk_frame *f)
{
    if (len < 4)
        return 0;
    size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | (size_t)p[3];
    if (n > max)
        return -EMSGSIZE;
    if (len - 4 < n)
        return 0;
    f->offset = 4;
    f->length = n;
    f->consumed = 4 + n;
    return 1;
}

SK_API int sk_frame_next(sk_frame_kind kind, size_t max, const void *buf, size_t len, sk_frame *f)
{
    switch (kind) {
    case SK_FRAME_RAW:
        if (len == 0)
            return 0;
        f->offset = 0;
        f->length = f->consumed = len;
        return 1;
    case SK_FRAME_LINE: return next_line(max, buf, len, f);
    case SK_FRAME_LEN32: return next_len32(max, buf, len, f);
    }
    return -EINVAL;
}

static const char *const kind_names[] = {"raw", "line", "len32"};

SK_API int sk_frame_kind_parse(const char *name, sk_frame_kind *out)
{
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (sk_frame_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

SK_API const char *sk_frame_kind_name(sk_frame_kind kind)
{
    return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}
