/* libFuzzer target: whatever a client sends to a TLS port. The bytes go through a socketpair
 * into a server conn running sockit's TLS transport (handshake state, want-read/want-write,
 * errors, close), so the glue between the loop, the conn and OpenSSL meets hostile input:
 * truncated and garbled ClientHellos, plaintext, records after a failed handshake. The input
 * must never crash, leak or hang the server; each run is bounded in loop iterations. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static sk_tls_ctx *server_ctx(void)
{
    static sk_tls_ctx *ctx;
    if (!ctx) {
        sk_tls_options o = {.server = true, .self_signed = true};
        if (sk_tls_ctx_new(&o, &ctx, NULL, 0) < 0)
            abort();
    }
    return ctx;
}

static bool closed;

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    sk_conn_write(c, data, len); /* echo, in case a handshake ever completes */
}

static void on_close(sk_conn *c, int reason)
{
    closed = true;
}

static const sk_conn_callbacks callbacks = {.on_frame = on_frame, .on_close = on_close};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds[2];
    sk_loop *loop;
    sk_conn *c;
    if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) < 0)
        return 0;
    if (sk_loop_new(&loop) < 0)
        abort();
    if (sk__conn_accepted(loop, fds[0], &c) < 0)
        abort();
    closed = false;
    sk_conn_set_callbacks(c, &callbacks);
    if (sk_tls_start(c, server_ctx(), NULL, 1000) < 0)
        abort();
    /* The client: everything at once, then FIN; read and drop what the server answers. */
    if (write(fds[1], data, size) < 0) {
        /* a full socket buffer: the input is cut, which is one more kind of input */
    }
    shutdown(fds[1], SHUT_WR);
    char sink[65536];
    for (int i = 0; i < 200 && !closed; i++) {
        sk_loop_run_once(loop, 0);
        while (read(fds[1], sink, sizeof sink) > 0) {
        }
    }
    if (!closed)
        sk_conn_abort(c);
    sk_loop_run_once(loop, 0); /* the deferred close and free */
    close(fds[1]);
    sk_loop_free(loop);
    return 0;
}
