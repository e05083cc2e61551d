/* UDP echo rate of libsockit's sk_dgram, with batching (recvmmsg/sendmmsg, the default batch
 * of 16) and without (batch 1: one recvmsg/sendmsg per datagram), measured in one run.
 *
 * A server thread runs an sk_dgram echo on 127.0.0.1; the main thread is the load: PEERS raw
 * sockets, each keeping WINDOW datagrams of SIZE bytes in flight (sendmmsg/recvmmsg, identical
 * for every server setting). The two settings alternate ROUNDS times; the figure is echoed
 * datagrams per second (one datagram in and one out per echo), the best of the rounds. Client
 * and server share the machine's cores: compare the figures with each other, not across
 * machines. Built and run by bench/udp_rate. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sockit/sockit.h>

#define PEERS 8
#define WINDOW 32
#define SIZE 64

typedef struct server {
    sk_loop *loop;
    sk_dgram *d;
    sk_addr addr;
    pthread_t thread;
} server;

static void echo(sk_dgram *d, const sk_datagram *dg)
{
    sk_dgram_send(d, dg->data, dg->len, dg->from);
}

static const sk_dgram_callbacks echo_callbacks = {.on_datagram = echo};

static void *server_main(void *arg)
{
    server *s = arg;
    sk_loop_run(s->loop);
    return NULL;
}

static void stop_loop(sk_loop *loop, void *arg)
{
    sk_loop_stop(loop);
}

static int server_start(server *s, unsigned batch)
{
    sk_addr any;
    sk_addr_from_ip(&any, "127.0.0.1", 0);
    sk_dgram_options o = {.batch = batch, .rcvbuf = 4 << 20, .sndbuf = 4 << 20};
    if (sk_loop_new(&s->loop) < 0 ||
        sk_dgram_open(s->loop, &any, NULL, &o, &echo_callbacks, s, &s->d) < 0)
        return -1;
    sk_dgram_local_addr(s->d, &s->addr);
    return pthread_create(&s->thread, NULL, server_main, s) == 0 ? 0 : -1;
}

static void server_stop(server *s, sk_dgram_stats *st)
{
    sk_loop_post(s->loop, stop_loop, NULL);
    pthread_join(s->thread, NULL);
    sk_dgram_get_stats(s->d, st);
    sk_dgram_close(s->d);
    sk_loop_run_once(s->loop, 0);
    sk_loop_free(s->loop);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Send n datagrams on fd to the server. The count sent. */
static int send_some(int fd, const sk_addr *to, int n)
{
    static char payload[SIZE];
    struct mmsghdr msgs[WINDOW];
    struct iovec iov = {.iov_base = payload, .iov_len = SIZE};
    for (int i = 0; i < n; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (void *)&to->ss;
        msgs[i].msg_hdr.msg_namelen = to->len;
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT);
    return r < 0 ? 0 : r;
}

static int recv_some(int fd)
{
    static char bufs[WINDOW][SIZE + 1];
    struct mmsghdr msgs[WINDOW];
    struct iovec iov[WINDOW];
    for (int i = 0; i < WINDOW; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = sizeof bufs[i]};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(fd, msgs, WINDOW, MSG_DONTWAIT, NULL);
    return r < 0 ? 0 : r;
}

typedef struct result {
    double rate;
    unsigned long long lost;
    sk_dgram_stats st;
} result;

/* Keep WINDOW datagrams in flight per peer for secs; echoes per second. */
static result measure(unsigned batch, double secs)
{
    result res = {0};
    server s;
    if (server_start(&s, batch) < 0) {
        fprintf(stderr, "udp_rate: cannot start the server\n");
        exit(1);
    }
    int fds[PEERS], inflight[PEERS];
    struct pollfd pfds[PEERS];
    for (int p = 0; p < PEERS; p++) {
        fds[p] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int big = 1 << 20;
        setsockopt(fds[p], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        sk_addr local;
        sk_addr_from_ip(&local, "127.0.0.1", 0);
        bind(fds[p], (struct sockaddr *)&local.ss, local.len);
        inflight[p] = send_some(fds[p], &s.addr, WINDOW);
        pfds[p] = (struct pollfd){.fd = fds[p], .events = POLLIN};
    }
    unsigned long long echoed = 0, counted = 0;
    double start = now_s(), warm = start + 0.3, end = warm + secs;
    bool counting = false;
    for (;;) {
        double t = now_s();
        if (!counting && t >= warm) {
            counting = true;
            counted = echoed;
        }
        if (t >= end)
            break;
        int n = poll(pfds, PEERS, 100);
        if (n == 0) { /* a whole window lost (nothing for 100 ms): count it, start again */
            for (int p = 0; p < PEERS; p++) {
                res.lost += (unsigned long long)inflight[p];
                inflight[p] = send_some(fds[p], &s.addr, WINDOW);
            }
            continue;
        }
        for (int p = 0; p < PEERS; p++) {
            if (!(pfds[p].revents & POLLIN))
                continue;
            int got = recv_some(fds[p]);
            echoed += (unsigned long long)got;
            inflight[p] -= got;
            inflight[p] += send_some(fds[p], &s.addr, WINDOW - inflight[p]);
        }
    }
    res.rate = (double)(echoed - counted) / (now_s() - warm);
    server_stop(&s, &res.st);
    for (int p = 0; p < PEERS; p++)
        close(fds[p]);
    return res;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    int rounds = argc > 2 ? atoi(argv[2]) : 2;
    if (secs <= 0 || rounds <= 0) {
        fprintf(stderr, "usage: udp_rate [SECONDS per measurement] [ROUNDS]\n");
        return 2;
    }
    unsigned batches[2] = {SK_DGRAM_BATCH_DEFAULT, 1};
    result best[2] = {{0}};
    printf("UDP echo through sk_dgram on 127.0.0.1: %d peers x %d in flight, %d-byte datagrams,"
           " %.1f s x %d rounds\n",
           PEERS, WINDOW, SIZE, secs, rounds);
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 2; i++) {
            result x = measure(batches[i], secs);
            printf("  round %d  batch %2u: %9.0f datagrams/s echoed  (server: %.2f datagrams "
                   "per recv call, %.2f per send call; %llu lost)\n",
                   r + 1, batches[i], x.rate,
                   x.st.recv_calls ? (double)x.st.received / (double)x.st.recv_calls : 0.0,
                   x.st.send_calls ? (double)x.st.sent / (double)x.st.send_calls : 0.0, x.lost);
            fflush(stdout);
            if (x.rate > best[i].rate)
                best[i] = x;
        }
    printf("best: with batching (batch %u) %.0f datagrams/s, without (batch 1) %.0f "
           "datagrams/s: %.2fx\n",
           batches[0], best[0].rate, best[1].rate,
           best[1].rate > 0 ? best[0].rate / best[1].rate : 0.0);
    return 0;
}
