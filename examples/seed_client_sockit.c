/* seed_client_raw.c again, with libsockit: connect, print all the server sends, close.
 *   seed_client_sockit [HOST PORT]    without them it asks on standard input, like the seed
 * sk_addr_parse checks the text, sk_addr_resolve looks the name up, sk_conn_connect connects
 * without blocking; each read arrives in on_frame, and on_close ends the program. */
#include <stdio.h>
#include <string.h>

#include <sockit/sockit.h>

static sk_addr addrs[8];
static int naddrs, next, cur; /* addresses resolved, the next to try, the one being tried */
static int connected;
static int status = 1;

static void on_frame(sk_conn *c, const void *data, size_t len)
{
    (void)c;
    fwrite(data, 1, len, stdout);
}

static void on_connect(sk_conn *c)
{
    (void)c;
    connected = 1; /* no other address is needed */
}

static int try_next(sk_loop *loop);

static void on_close(sk_conn *c, int reason)
{
    char name[SK_ADDR_STRLEN];
    if (reason == 0) {
        status = 0;
    } else {
        sk_addr_format(&addrs[cur], name, sizeof name);
        fprintf(stderr, "seed_client_sockit: %s %s: %s\n",
                connected ? "connection to" : "cannot connect to", name, sk_strerror(reason));
    }
    if (reason == 0 || connected || try_next(sk_conn_loop(c)) < 0)
        sk_loop_stop(sk_conn_loop(c)); /* done, or no address left to try */
}

static const sk_conn_callbacks callbacks = {
    .on_connect = on_connect, .on_frame = on_frame, .on_close = on_close};

static int try_next(sk_loop *loop)
{
    sk_conn *c;
    while (next < naddrs) { /* every address the name has, in order */
        cur = next++;
        int rc = sk_conn_connect(loop, &addrs[cur], 10000, &callbacks, NULL, &c);
        if (rc == 0)
            return 0;
        fprintf(stderr, "seed_client_sockit: connect: %s\n", sk_strerror(rc));
    }
    return -1;
}

static int ask(const char *prompt, char *buf, size_t len)
{
    fputs(prompt, stdout);
    fflush(stdout);
    if (!fgets(buf, (int)len, stdin))
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    char host[256], port[32], text[300], err[256];
    if (argc == 3) {
        snprintf(host, sizeof host, "%s", argv[1]);
        snprintf(port, sizeof port, "%s", argv[2]);
    } else if (argc != 1 || ask("Enter server address: ", host, sizeof host) < 0 ||
               ask("Enter server port: ", port, sizeof port) < 0) {
        fprintf(stderr, "usage: seed_client_sockit [HOST PORT] (or give both on standard input)\n");
        return 2;
    }
    const char *v6 = strchr(host, ':') ? "[" : ""; /* an IPv6 host needs brackets */
    snprintf(text, sizeof text, "%s%s%s:%s", v6, host, *v6 ? "]" : "", port);

    sk_addrspec spec;
    sk_loop *loop;
    if (sk_addr_parse(text, -1, &spec, err, sizeof err) < 0) {
        fprintf(stderr, "seed_client_sockit: %s\n", err);
        return 2;
    }
    naddrs = sk_addr_resolve(&spec, 0, addrs, sizeof addrs / sizeof addrs[0]);
    if (naddrs < 0) {
        fprintf(stderr, "seed_client_sockit: cannot resolve %s: %s\n", host, sk_strerror(naddrs));
        return 1;
    }
    int rc = sk_loop_new(&loop);
    if (rc < 0) {
        fprintf(stderr, "seed_client_sockit: sk_loop_new: %s\n", sk_strerror(rc));
        return 1;
    }
    if (try_next(loop) == 0 && (rc = sk_loop_run(loop)) < 0) {
        fprintf(stderr, "seed_client_sockit: sk_loop_run: %s\n", sk_strerror(rc));
        status = 1;
    }
    sk_loop_free(loop);
    return fflush(stdout) == 0 && !ferror(stdout) ? status : 1;
}
