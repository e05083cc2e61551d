/* sk_frame_next and friends: pure functions on buffers. Every buffer handed to sk_frame_next is
 * a heap copy of exactly len bytes, so a read past the end shows up under AddressSanitizer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* sk_frame_next on an exact-size heap copy of buf[0..len). */
static int scan(sk_frame_kind kind, size_t max, const void *buf, size_t len, sk_frame *f)
{
    void *copy = calloc(1, len ? len : 1);
    if (!copy)
        abort();
    if (len)
        memcpy(copy, buf, len);
    memset(f, 0xa5, sizeof *f);
    int rc = sk_frame_next(kind, max, copy, len, f);
    free(copy);
    return rc;
}

static int scan_str(sk_frame_kind kind, size_t max, const char *s, sk_frame *f)
{
    return scan(kind, max, s, strlen(s), f);
}

static bool frame_is(const sk_frame *f, size_t offset, size_t length, size_t consumed)
{
    return f->offset == offset && f->length == length && f->consumed == consumed;
}

/* ---- SK_FRAME_LINE ---- */

TEST(frame_line_lf)
{
    sk_frame f;
    CHECK(scan_str(SK_FRAME_LINE, 100, "hello\n", &f) == 1);
    CHECK(frame_is(&f, 0, 5, 6));
    /* only the first of several lines; the rest is left for the next call */
    CHECK(scan_str(SK_FRAME_LINE, 100, "ab\ncdef\n", &f) == 1);
    CHECK(frame_is(&f, 0, 2, 3));
    CHECK(scan_str(SK_FRAME_LINE, 100, "cdef\n", &f) == 1);
    CHECK(frame_is(&f, 0, 4, 5));
    /* bytes after the newline do not matter */
    CHECK(scan_str(SK_FRAME_LINE, 100, "x\nincomplete", &f) == 1);
    CHECK(frame_is(&f, 0, 1, 2));
}

TEST(frame_line_crlf)
{
    sk_frame f;
    CHECK(scan_str(SK_FRAME_LINE, 100, "hello\r\n", &f) == 1);
    CHECK(frame_is(&f, 0, 5, 7));
    /* a '\r' that is not just before the '\n' is data */
    CHECK(scan_str(SK_FRAME_LINE, 100, "a\rb\n", &f) == 1);
    CHECK(frame_is(&f, 0, 3, 4));
    /* only one '\r' is dropped */
    CHECK(scan_str(SK_FRAME_LINE, 100, "ab\r\r\n", &f) == 1);
    CHECK(frame_is(&f, 0, 3, 5));
}

TEST(frame_line_empty)
{
    sk_frame f;
    CHECK(scan_str(SK_FRAME_LINE, 100, "\n", &f) == 1);
    CHECK(frame_is(&f, 0, 0, 1));
    CHECK(scan_str(SK_FRAME_LINE, 100, "\r\n", &f) == 1);
    CHECK(frame_is(&f, 0, 0, 2));
    CHECK(scan_str(SK_FRAME_LINE, 100, "\n\nabc\n", &f) == 1);
    CHECK(frame_is(&f, 0, 0, 1));
}

TEST(frame_line_incomplete)
{
    sk_frame f;
    CHECK(scan(SK_FRAME_LINE, 100, "", 0, &f) == 0);
    CHECK(scan_str(SK_FRAME_LINE, 100, "abc", &f) == 0);
    CHECK(scan_str(SK_FRAME_LINE, 100, "a", &f) == 0);
    /* a '\r' alone is not a terminator */
    CHECK(scan_str(SK_FRAME_LINE, 100, "abc\r", &f) == 0);
    CHECK(scan_str(SK_FRAME_LINE, 100, "\r", &f) == 0);
}

TEST(frame_line_exactly_max)
{
    sk_frame f;
    CHECK(scan_str(SK_FRAME_LINE, 8, "12345678\n", &f) == 1);
    CHECK(frame_is(&f, 0, 8, 9));
    /* max bytes and no newline yet: still waiting, not an error */
    CHECK(scan_str(SK_FRAME_LINE, 8, "12345678", &f) == 0);
    /* max 1: a one-byte line is fine */
    CHECK(scan_str(SK_FRAME_LINE, 1, "x\n", &f) == 1);
    CHECK(frame_is(&f, 0, 1, 2));
}

TEST(frame_line_crlf_exactly_max)
{
    /* The frame excludes the terminator, so "12345678\r\n" is an 8-byte frame: within max 8. */
    sk_frame f;
    int rc = scan_str(SK_FRAME_LINE, 8, "12345678\r\n", &f);
    CHECK(rc == 1);
    if (rc == 1)
        CHECK(frame_is(&f, 0, 8, 10));
}

TEST(frame_line_over_max)
{
    sk_frame f;
    /* one byte over, no newline yet */
    CHECK(scan_str(SK_FRAME_LINE, 8, "123456789", &f) == -EMSGSIZE);
    /* one byte over, newline present */
    CHECK(scan_str(SK_FRAME_LINE, 8, "123456789\n", &f) == -EMSGSIZE);
    CHECK(scan_str(SK_FRAME_LINE, 8, "123456789\r\n", &f) == -EMSGSIZE);
    /* far over */
    char big[300];
    memset(big, 'z', sizeof big);
    CHECK(scan(SK_FRAME_LINE, 8, big, sizeof big, &f) == -EMSGSIZE);
    /* an earlier short line still comes out first */
    CHECK(scan_str(SK_FRAME_LINE, 8, "ok\n123456789", &f) == 1);
    CHECK(frame_is(&f, 0, 2, 3));
}

TEST(frame_line_many_in_buffer)
{
    /* walk a buffer of 1000 lines with sk_frame_next, as a conn would */
    size_t cap = 1000 * 16, len = 0;
    char *buf = malloc(cap);
    REQUIRE(buf);
    for (int i = 0; i < 1000; i++)
        len += (size_t)snprintf(buf + len, cap - len, i % 2 ? "line %d\r\n" : "line %d\n", i);
    size_t pos = 0;
    int n = 0;
    while (pos < len) {
        sk_frame f;
        int rc = sk_frame_next(SK_FRAME_LINE, 100, buf + pos, len - pos, &f);
        if (rc != 1) {
            CHECK(rc == 1);
            break;
        }
        char want[32];
        int wl = snprintf(want, sizeof want, "line %d", n);
        CHECK(f.length == (size_t)wl);
        CHECK(memcmp(buf + pos + f.offset, want, (size_t)wl) == 0);
        CHECK(f.consumed > 0);
        pos += f.consumed;
        n++;
    }
    CHECK(n == 1000);
    CHECK(pos == len);
    free(buf);
}

/* ---- SK_FRAME_LEN32 ---- */

TEST(frame_len32_basic)
{
    sk_frame f;
    const unsigned char one[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    CHECK(scan(SK_FRAME_LEN32, 100, one, sizeof one, &f) == 1);
    CHECK(frame_is(&f, 4, 5, 9));
    /* trailing bytes (the next frame) are not consumed */
    const unsigned char two[] = {0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'c'};
    CHECK(scan(SK_FRAME_LEN32, 100, two, sizeof two, &f) == 1);
    CHECK(frame_is(&f, 4, 2, 6));
    CHECK(scan(SK_FRAME_LEN32, 100, two + 6, sizeof two - 6, &f) == 1);
    CHECK(frame_is(&f, 4, 1, 5));
}

TEST(frame_len32_big_endian)
{
    /* the prefix is big-endian: 00 00 01 00 is 256 */
    unsigned char buf[4 + 256];
    memset(buf, 'q', sizeof buf);
    buf[0] = 0, buf[1] = 0, buf[2] = 1, buf[3] = 0;
    sk_frame f;
    CHECK(scan(SK_FRAME_LEN32, 1000, buf, sizeof buf, &f) == 1);
    CHECK(frame_is(&f, 4, 256, 260));
    CHECK(scan(SK_FRAME_LEN32, 1000, buf, sizeof buf - 1, &f) == 0);
    /* 00 01 00 00 is 65536, above 1000 */
    unsigned char big[] = {0, 1, 0, 0};
    CHECK(scan(SK_FRAME_LEN32, 1000, big, sizeof big, &f) == -EMSGSIZE);
}

TEST(frame_len32_prefix_split)
{
    const unsigned char msg[] = {0, 0, 0, 3, 'x', 'y', 'z'};
    sk_frame f;
    /* every proper prefix of the frame, including a split length prefix, asks for more */
    for (size_t n = 0; n < sizeof msg; n++)
        CHECK(scan(SK_FRAME_LEN32, 100, msg, n, &f) == 0);
    CHECK(scan(SK_FRAME_LEN32, 100, msg, sizeof msg, &f) == 1);
    CHECK(frame_is(&f, 4, 3, 7));
}

TEST(frame_len32_zero_length)
{
    const unsigned char z[] = {0, 0, 0, 0};
    sk_frame f;
    CHECK(scan(SK_FRAME_LEN32, 100, z, sizeof z, &f) == 1);
    CHECK(frame_is(&f, 4, 0, 4));
    const unsigned char zz[] = {0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(scan(SK_FRAME_LEN32, 100, zz, sizeof zz, &f) == 1);
    CHECK(frame_is(&f, 4, 0, 4));
    /* a zero-length frame fits under any limit */
    CHECK(scan(SK_FRAME_LEN32, 1, z, sizeof z, &f) == 1);
}

TEST(frame_len32_exactly_max)
{
    unsigned char buf[4 + 16];
    memset(buf, 'm', sizeof buf);
    buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = 16;
    sk_frame f;
    CHECK(scan(SK_FRAME_LEN32, 16, buf, sizeof buf, &f) == 1);
    CHECK(frame_is(&f, 4, 16, 20));
    /* header of an exactly-max frame with the payload still missing: wait */
    CHECK(scan(SK_FRAME_LEN32, 16, buf, 4, &f) == 0);
    CHECK(scan(SK_FRAME_LEN32, 16, buf, 19, &f) == 0);
}

TEST(frame_len32_over_max)
{
    unsigned char buf[4 + 17];
    memset(buf, 'm', sizeof buf);
    buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = 17;
    sk_frame f;
    /* refused as soon as the prefix is known, before the payload arrives */
    CHECK(scan(SK_FRAME_LEN32, 16, buf, 4, &f) == -EMSGSIZE);
    CHECK(scan(SK_FRAME_LEN32, 16, buf, sizeof buf, &f) == -EMSGSIZE);
    /* the largest prefix must not wrap around in size arithmetic */
    const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    CHECK(scan(SK_FRAME_LEN32, SK_FRAME_DEFAULT_MAX, huge, sizeof huge, &f) == -EMSGSIZE);
    const unsigned char over_default[] = {0, 1, 0, 1};
    CHECK(scan(SK_FRAME_LEN32, SK_FRAME_DEFAULT_MAX, over_default, 4, &f) == -EMSGSIZE);
    const unsigned char at_default[] = {0, 1, 0, 0};
    CHECK(scan(SK_FRAME_LEN32, SK_FRAME_DEFAULT_MAX, at_default, 4, &f) == 0);
}

/* ---- SK_FRAME_RAW ---- */

TEST(frame_raw)
{
    sk_frame f;
    CHECK(scan(SK_FRAME_RAW, 100, "", 0, &f) == 0);
    CHECK(scan_str(SK_FRAME_RAW, 100, "abc\ndef", &f) == 1);
    CHECK(frame_is(&f, 0, 7, 7));
    CHECK(scan_str(SK_FRAME_RAW, 100, "x", &f) == 1);
    CHECK(frame_is(&f, 0, 1, 1));
    const unsigned char bin[] = {0, 0, 0, 9, 0xff};
    CHECK(scan(SK_FRAME_RAW, 100, bin, sizeof bin, &f) == 1);
    CHECK(frame_is(&f, 0, 5, 5));
}

/* ---- names ---- */

TEST(frame_kind_parse_and_name)
{
    sk_frame_kind k = (sk_frame_kind)77;
    CHECK(sk_frame_kind_parse("raw", &k) == 0 && k == SK_FRAME_RAW);
    CHECK(sk_frame_kind_parse("line", &k) == 0 && k == SK_FRAME_LINE);
    CHECK(sk_frame_kind_parse("len32", &k) == 0 && k == SK_FRAME_LEN32);
    CHECK(sk_frame_kind_parse("bogus", &k) == -EINVAL);
    CHECK(sk_frame_kind_parse("", &k) == -EINVAL);
    CHECK(sk_frame_kind_parse("len3", &k) == -EINVAL);
    CHECK(sk_frame_kind_parse("len322", &k) == -EINVAL);
    CHECK(sk_frame_kind_parse("line ", &k) == -EINVAL);

    const sk_frame_kind kinds[] = {SK_FRAME_RAW, SK_FRAME_LINE, SK_FRAME_LEN32};
    const char *names[] = {"raw", "line", "len32"};
    for (int i = 0; i < 3; i++) {
        const char *name = sk_frame_kind_name(kinds[i]);
        REQUIRE(name != NULL);
        CHECK(strcmp(name, names[i]) == 0);
        sk_frame_kind back = (sk_frame_kind)77;
        CHECK(sk_frame_kind_parse(name, &back) == 0 && back == kinds[i]);
    }
}
