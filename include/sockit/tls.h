/* sockit — TLS over a conn, through OpenSSL, safe by default.
 *
 * A context holds the configuration shared by many conns (certificates, trust, protocol
 * versions). sk_tls_start() turns a conn into a TLS conn: everything else — framing,
 * backpressure, timeouts, half-close — works unchanged on top of it.
 *
 * Client contexts verify the server's chain (system store, or ca_file) and its host name or IP
 * address, and send SNI, unless told otherwise. TLS 1.2 is the minimum on both sides, with
 * forward-secret AEAD suites only; renegotiation is off.
 */
#ifndef SOCKIT_TLS_H
#define SOCKIT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_tls_ctx sk_tls_ctx;

typedef struct sk_tls_options {
    bool server;
    /* Our certificate chain and key (PEM). A server without them must set self_signed. */
    const char *cert_file;
    const char *key_file;
    /* Server: make an ephemeral self-signed certificate (P-256, for localhost, 127.0.0.1, ::1)
     * in memory; sk_tls_ctx_fingerprint() tells clients what to pin. */
    bool self_signed;
    /* Client: trust these CAs instead of the system store. Server: ask for a client certificate
     * and require one signed by these CAs (mutual TLS). */
    const char *ca_file;
    /* Client: skip chain and name verification (a warning is the caller's job). */
    bool insecure;
    /* Client: accept exactly the certificate with this SHA-256 ("sha256:HEX", colons allowed)
     * instead of verifying the chain; the name is not checked either. */
    const char *pin;
    /* ALPN protocols, comma-separated ("h2,http/1.1"). Server: the first of the client's that
     * is also ours is chosen. */
    const char *alpn;
    /* TLS 1.2 cipher list in OpenSSL's syntax ("ECDHE+AESGCM"). NULL: forward-secret AEAD
     * suites only (ECDHE with AES-GCM or ChaCha20-Poly1305); the server's order decides. */
    const char *ciphers;
    /* TLS 1.3 suites, colon-separated ("TLS_AES_128_GCM_SHA256"). NULL: OpenSSL's default. */
    const char *ciphersuites;
    /* The lowest protocol version: "1.2" (NULL means this) or "1.3". */
    const char *min_version;
} sk_tls_options;

/* Make a context. On failure returns a negative code and writes a sentence naming the file or
 * setting and the fix into err. */
int sk_tls_ctx_new(const sk_tls_options *opts, sk_tls_ctx **out, char *err, size_t errlen);
void sk_tls_ctx_free(sk_tls_ctx *ctx);
/* "sha256:AB:CD:..." of the context's own certificate. 0, or -ENOENT without one. */
int sk_tls_ctx_fingerprint(const sk_tls_ctx *ctx, char *buf, size_t len);

/* Start TLS on c: right after sk_conn_connect() (client; name is the host to verify and send
 * as SNI, NULL to skip both) or in the accept callback (server; name unused). on_connect is
 * called once the handshake is done — for accepted conns too. The handshake must finish within
 * timeout_ms (0: 10 s). Writes made before then are queued. 0 or a negative code. */
int sk_tls_start(sk_conn *c, sk_tls_ctx *ctx, const char *name, uint64_t timeout_ms);

typedef struct sk_tls_info {
    const char *version;     /* "TLSv1.3" */
    const char *cipher;      /* "TLS_AES_256_GCM_SHA384" */
    const char *sni;         /* the name the client asked for, or NULL */
    char alpn[64];           /* the protocol agreed, or "" */
    char peer_subject[256];  /* the peer certificate's subject, or "" */
    char peer_names[256];    /* its DNS and IP names, comma-separated, or "" */
    bool verified;           /* chain and name checked and good (or the pin matched) */
    bool pinned;             /* accepted by its pin: chain, name and dates were not checked */
    bool peer_expired;       /* the peer certificate is outside its validity dates */
    char peer_not_after[32]; /* its last valid day, "2020-02-01", or "" */
    /* Why the handshake failed, one sentence: "certificate verify failed: self-signed
     * certificate", "the certificate is for localhost, 127.0.0.1, not example.org", ... */
    char error[256];
} sk_tls_info;

/* Fill info for a TLS conn (valid in any callback, on_close included). -EINVAL if not TLS. */
int sk_tls_describe(const sk_conn *c, sk_tls_info *info);
bool sk_tls_active(const sk_conn *c);

#ifdef __cplusplus
}
#endif
#endif
