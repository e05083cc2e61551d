/* A UDP echo load generator for `make bench`'s relay scenario (bench/relay_peers.py):
 * PEERS sockets, each its own source port (so a relay sees PEERS client addresses), each
 * keeping WINDOW datagrams of SIZE bytes in flight towards HOST:PORT (sendmmsg/recvmmsg);
 * the figure is echoed datagrams received back per second over SECS after WARMUP seconds.
 * A peer that gets nothing for 100 ms counts its window lost and sends a fresh one, so a
 * lossy path (socat forking per datagram) slows it down but never stalls it.
 * Plain sockets only (no libsockit), so it measures the path, not the library.
 * Usage: udp_load HOST PORT [SECS [WARMUP [PEERS [WINDOW [SIZE]]]]]; prints one JSON line. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXPEERS 64
#define MAXWINDOW 256
#define MAXSIZE 2048

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_some(int fd, int n, int size)
{
    static char payload[MAXSIZE];
    static struct mmsghdr msgs[MAXWINDOW];
    struct iovec iov = {.iov_base = payload, .iov_len = (size_t)size};
    if (n <= 0)
        return 0;
    for (int i = 0; i < n; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT);
    return r < 0 ? 0 : r;
}

static int recv_some(int fd, int window, unsigned long long *bad, int size)
{
    static char bufs[MAXWINDOW][MAXSIZE + 1];
    static struct mmsghdr msgs[MAXWINDOW];
    static struct iovec iov[MAXWINDOW];
    for (int i = 0; i < window; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = sizeof bufs[i]};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(fd, msgs, (unsigned)window, MSG_DONTWAIT, NULL);
    if (r < 0)
        return 0;
    for (int i = 0; i < r; i++)
        if ((int)msgs[i].msg_len != size)
            (*bad)++;
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: udp_load HOST PORT [SECS [WARMUP [PEERS [WINDOW [SIZE]]]]]\n");
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 4, warmup = argc > 4 ? atof(argv[4]) : 1;
    int peers = argc > 5 ? atoi(argv[5]) : 8, window = argc > 6 ? atoi(argv[6]) : 32;
    int size = argc > 7 ? atoi(argv[7]) : 64;
    if (peers < 1 || peers > MAXPEERS || window < 1 || window > MAXWINDOW || size < 1 ||
        size > MAXSIZE || secs <= 0) {
        fprintf(stderr, "udp_load: bad arguments\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "udp_load: bad host %s\n", argv[1]);
        return 2;
    }
    int fds[MAXPEERS], inflight[MAXPEERS];
    struct pollfd pfds[MAXPEERS];
    for (int p = 0; p < peers; p++) {
        fds[p] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int big = 1 << 20;
        setsockopt(fds[p], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        if (fds[p] < 0 || connect(fds[p], (struct sockaddr *)&to, sizeof to) < 0) {
            perror("udp_load: socket/connect");
            return 1;
        }
        inflight[p] = send_some(fds[p], window, size);
        pfds[p] = (struct pollfd){.fd = fds[p], .events = POLLIN};
    }
    unsigned long long echoed = 0, counted = 0, lost = 0, bad = 0, rounds_lost = 0;
    double start = now_s(), warm = start + warmup, end = warm + secs, t0 = warm;
    int counting = 0;
    for (;;) {
        double t = now_s();
        if (!counting && t >= warm) {
            counting = 1;
            counted = echoed;
            lost = 0;
            rounds_lost = 0;
            t0 = t;
        }
        if (t >= end)
            break;
        int n = poll(pfds, (nfds_t)peers, 100);
        if (n == 0) {
            rounds_lost++;
            for (int p = 0; p < peers; p++) {
                lost += (unsigned long long)inflight[p];
                inflight[p] = send_some(fds[p], window, size);
            }
            continue;
        }
        for (int p = 0; p < peers; p++) {
            if (!(pfds[p].revents & POLLIN))
                continue;
            int got = recv_some(fds[p], window, &bad, size);
            echoed += (unsigned long long)got;
            inflight[p] -= got;
            if (inflight[p] < 0)
                inflight[p] = 0;
            inflight[p] += send_some(fds[p], window - inflight[p], size);
        }
    }
    double el = now_s() - t0;
    printf("{\"datagrams_per_s\":%.1f,\"echoed\":%llu,\"seconds\":%.3f,\"lost\":%llu,"
           "\"stalls\":%llu,\"wrong_size\":%llu,\"peers\":%d,\"window\":%d,\"size\":%d}\n",
           (double)(echoed - counted) / el, echoed - counted, el, lost, rounds_lost, bad, peers,
           window, size);
    return echoed > counted ? 0 : 1;
}
