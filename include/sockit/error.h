/* sockit — errors.
 *
 * Every function that can fail returns 0 (or a count) on success and a negative errno value on
 * failure, e.g. -ECONNREFUSED. A few failures have no errno of their own; they get codes below
 * -4096, outside the range the kernel uses. sk_strerror() turns any of them into text.
 */
#ifndef SOCKIT_ERROR_H
#define SOCKIT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SK_ERR_NONAME = -5001,  /* host name not known (getaddrinfo EAI_NONAME) */
    SK_ERR_NODATA = -5002,  /* host known, but has no address of the asked family */
    SK_ERR_DNSFAIL = -5003, /* name server failed or could not be reached (try again) */
    /* -5004 was SK_ERR_FRAME, which nothing returned; the number stays unused. */
    SK_ERR_TLS = -5005,        /* the TLS handshake or a TLS record failed (see sk_tls_describe) */
    SK_ERR_TLS_VERIFY = -5006, /* the peer's certificate was refused */
    SK_ERR_TLS_TRUNCATED = -5007, /* the peer ended the TCP stream without TLS close_notify */
    SK_ERR_NOIFACE = -5008,       /* an IPv6 zone (the part after '%') names no interface here */
    SK_ERR_BACKEND = -5009,       /* SOCKIT_BACKEND names no event-loop backend of this build */
};

/* Text for a code from any sockit function ("connection refused"). Never NULL, thread-safe. */
const char *sk_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
