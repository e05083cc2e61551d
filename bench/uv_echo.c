/* An echo server on libuv, written the way libuv's own examples and Node's streams do it:
 * reads land in one shared slab, uv_try_write() sends straight away, and only what the kernel
 * leaves over is copied into a uv_write request. A client whose queue grows past 64 KiB is not
 * read until it drains.
 *
 *   uv_echo [PORT]   listens on 127.0.0.1:PORT (0: any free port); prints
 *                    "listening on 127.0.0.1:PORT" on stderr. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define HIGH_WATER 65536

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req;

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void alloc_slab(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536];
    buf->base = slab;
    buf->len = sizeof slab;
}

static void after_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    uv_stream_t *s = req->handle;
    free(w->buf.base);
    free(w);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (s->write_queue_size < HIGH_WATER / 4 && !uv_is_closing((uv_handle_t *)s))
        uv_read_start(s, alloc_slab, NULL); /* a no-op while reading */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void echo(uv_stream_t *s, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = s->write_queue_size ? UV_EAGAIN : uv_try_write(s, &b, 1);
    if (n == (int)len)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    write_req *w = malloc(sizeof *w);
    w->buf = uv_buf_init(malloc(len - sent), (unsigned)(len - sent));
    memcpy(w->buf.base, data + sent, len - sent);
    uv_write(&w->req, s, &w->buf, 1, after_write);
    if (s->write_queue_size > HIGH_WATER)
        uv_read_stop(s);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0)
        echo(s, buf->base, (size_t)nread);
    else if (nread < 0 && !uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *client = malloc(sizeof *client);
    uv_tcp_init(server->loop, client);
    if (uv_accept(server, (uv_stream_t *)client) == 0) {
        uv_tcp_nodelay(client, 1);
        uv_read_start((uv_stream_t *)client, alloc_slab, on_read);
    } else {
        uv_close((uv_handle_t *)client, on_close);
    }
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(), which raises SIGPIPE */
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in sa;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &sa);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (rc) {
        fprintf(stderr, "uv_echo: %s\n", uv_strerror(rc));
        return 1;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &len);
    fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    return uv_run(loop, UV_RUN_DEFAULT);
}
