/* seed_server_raw.c again, with libsockit: greet each client with "Hi from server", hang up.
 *   seed_server_sockit [PORT [HOST [COUNT]]]    defaults: 12345, 127.0.0.1, 0 (serve forever)
 * sk_listener_open_spec does socket, SO_REUSEADDR, bind and listen; the loop accepts; the conn
 * sends without SIGPIPE and closes gracefully (flush, FIN, wait for the client's FIN).
 * SIGINT or SIGTERM stops it cleanly once the clients being served are done. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sockit/sockit.h>

static const char greeting[] = "Hi from server\n";
static sk_loop *loop;
static sk_listener *listener;
static long remaining; /* clients still to serve; 0: forever */
static int active;     /* conns accepted and not yet closed */
static int done;       /* no more clients: stop when active falls to 0 */

static void stop_when_idle(void)
{
    if (done && active == 0)
        sk_loop_stop(loop);
}

static void ignore_input(sk_conn *c, const void *data, size_t len)
{
    (void)c, (void)data, (void)len;
}

static void on_close(sk_conn *c, int reason)
{
    (void)c;
    if (reason != 0)
        fprintf(stderr, "seed_server_sockit: client: %s\n", sk_strerror(reason));
    active--;
    stop_when_idle();
}

static const sk_conn_callbacks client_callbacks = {.on_frame = ignore_input, .on_close = on_close};

static void on_accept(sk_listener *l, sk_conn *c)
{
    sk_conn_set_callbacks(c, &client_callbacks);
    active++;
    int rc = sk_conn_write(c, greeting, sizeof greeting - 1);
    if (rc < 0)
        fprintf(stderr, "seed_server_sockit: write: %s\n", sk_strerror(rc));
    sk_conn_close(c); /* on_close follows once the goodbye is complete */
    if (remaining > 0 && --remaining == 0) {
        done = 1;
        sk_listener_pause(l);
    }
}

static void on_signal(sk_loop *lp, int signo, void *arg)
{
    (void)lp, (void)signo, (void)arg;
    done = 1;
    sk_listener_pause(listener);
    stop_when_idle();
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "seed_server_sockit: %s: %s\n", what, sk_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    const char *port = argc > 1 ? argv[1] : "12345";
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    remaining = argc > 3 ? atol(argv[3]) : 0;
    char text[300], err[256], name[SK_ADDR_STRLEN];
    const char *v6 = strchr(host, ':') ? "[" : ""; /* an IPv6 host needs brackets */
    snprintf(text, sizeof text, "%s%s%s:%s", v6, host, *v6 ? "]" : "", port);
    sk_addrspec spec;
    if (sk_addr_parse(text, -1, &spec, err, sizeof err) < 0) {
        fprintf(stderr, "seed_server_sockit: %s\n", err);
        return 2;
    }
    int rc = sk_loop_new(&loop);
    if (rc < 0)
        return fail("sk_loop_new", rc);
    /* Signals first: from now on SIGINT and SIGTERM wait for the loop instead of killing us. */
    if ((rc = sk_loop_on_signal(loop, SIGINT, on_signal, NULL)) < 0 ||
        (rc = sk_loop_on_signal(loop, SIGTERM, on_signal, NULL)) < 0) {
        sk_loop_free(loop);
        return fail("sk_loop_on_signal", rc);
    }
    rc = sk_listener_open_spec(loop, &spec, NULL, on_accept, NULL, &listener);
    if (rc < 0) {
        fprintf(stderr, "seed_server_sockit: cannot listen on %s: %s\n", text, sk_strerror(rc));
        sk_loop_free(loop);
        return 1;
    }
    sk_addr bound; /* the address really bound: the OS picks the port for 0 */
    if ((rc = sk_listener_addr(listener, &bound)) < 0)
        fail("sk_listener_addr", rc);
    else if (sk_addr_format(&bound, name, sizeof name) >= 0)
        fprintf(stderr, "listening on %s\n", name);
    if (rc == 0 && (rc = sk_loop_run(loop)) < 0)
        fail("sk_loop_run", rc);
    sk_listener_close(listener);
    sk_loop_free(loop);
    return rc == 0 ? 0 : 1;
}
