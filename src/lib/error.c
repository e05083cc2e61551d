/* Error texts and the library version. */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sockit/error.h>
#include <sockit/sockit.h>

#include "internal.h"

/* glibc numbers its errnos below 134; a little headroom covers newer kernels and libcs. */
#define ERRNO_TEXTS 200
#define ERRNO_TEXT_LEN 64

/* Lower-cased copies of the C library's texts, built once. The library's own texts are
 * capitalised ("Connection refused"), ours are not, and the caller may keep our pointer
 * forever, so the copies live in static storage rather than in a per-call buffer. */
static char errno_texts[ERRNO_TEXTS][ERRNO_TEXT_LEN];
static pthread_once_t errno_texts_once = PTHREAD_ONCE_INIT;

static const char *libc_text(int e)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    return strerrordesc_np(e); /* a constant string, or NULL for an unknown number */
#else
    return strerror(e); /* only ever called under pthread_once */
#endif
}

static void build_errno_texts(void)
{
    for (int e = 1; e < ERRNO_TEXTS; e++) {
        const char *s = libc_text(e);
        if (!s || strncmp(s, "Unknown error", 13) == 0)
            continue;
        char *out = errno_texts[e];
        snprintf(out, ERRNO_TEXT_LEN, "%s", s);
        /* Lower-case "Connection refused" but leave acronyms such as "I/O error" alone. */
        if (out[0] >= 'A' && out[0] <= 'Z' && out[1] >= 'a' && out[1] <= 'z')
            out[0] = (char)(out[0] - 'A' + 'a');
    }
}

int sk__fail_text(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

SK_API const char *sk_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case SK_ERR_NONAME: return "host name not known";
    case SK_ERR_NODATA: return "no address of that family for this host";
    case SK_ERR_DNSFAIL: return "name resolution failed temporarily";
    case SK_ERR_TLS: return "TLS handshake failed";
    case SK_ERR_TLS_VERIFY: return "certificate verification failed";
    case SK_ERR_TLS_TRUNCATED: return "TLS stream truncated (the peer closed without close_notify)";
    case SK_ERR_NOIFACE: return "no such network interface on this machine ('ip link' lists them)";
    case SK_ERR_BACKEND:
        return "unknown event loop backend in SOCKIT_BACKEND (this build has: epoll)";
    default: break;
    }
    /* Codes are negative errnos; a positive errno passed by mistake reads the same. */
    int e = err < 0 && err > -ERRNO_TEXTS ? -err : err;
    if (e > 0 && e < ERRNO_TEXTS) {
        pthread_once(&errno_texts_once, build_errno_texts);
        if (errno_texts[e][0])
            return errno_texts[e];
    }
    /* Only numbers nobody knows get here; a per-thread buffer keeps this thread-safe. */
    static _Thread_local char unknown[32];
    snprintf(unknown, sizeof unknown, "error %d", err);
    return unknown;
}

SK_API const char *sk_version(void)
{
    return SOCKIT_VERSION;
}
