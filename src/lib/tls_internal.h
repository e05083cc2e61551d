/* sockit TLS, private: what tls.c (contexts) and tls_conn.c (the per-connection layer)
 * share. */
#ifndef SOCKIT_TLS_INTERNAL_H
#define SOCKIT_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "internal.h"
#include "layer.h"

struct sk_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool insecure;
    unsigned char pin[32];
    bool has_pin;
    unsigned char alpn[256]; /* wire format: length-prefixed names */
    unsigned alpn_len;
};

/* One conn's TLS: a layer (first, so a layer pointer is a pointer to this). */
typedef struct sk__tls {
    sk__layer layer;
    SSL *ssl;
    sk_tls_ctx *ctx;
    char *name;     /* the host we verify and send as SNI */
    unsigned wants; /* readiness the last operation needs: SK_READABLE / SK_WRITABLE */
    bool verified;
    /* A read that returned data also met the end (close_notify, an error) behind it: OpenSSL
     * has consumed that record, so the socket will not announce it; pending() says so until
     * the next read reports it. */
    bool end_behind_data;
    char error[256];
    char names[200]; /* the peer certificate's names, noted while verifying: OpenSSL does not
                      * keep a certificate it refused, and the error message needs them */
} sk__tls;

/* OpenSSL's queued error as one readable phrase ("wrong version number"); clears the queue. */
void sk__tls_take_error(char *buf, size_t len);
/* The certificate's DNS and IP names, comma-separated, for "the certificate is for ...". */
void sk__tls_peer_names(X509 *cert, char *buf, size_t len);

#endif
