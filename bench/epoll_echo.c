/* The floor: an echo server as plain as an epoll server can be. One thread, level-triggered,
 * one 64 KiB buffer for every read, the socket's fd as epoll's data. Only a write the kernel
 * did not take whole is kept, and then that client is not read until it is flushed.
 *
 *   epoll_echo [PORT]      listens on 127.0.0.1:PORT (0, the default: any free port) and
 *                          prints "listening on 127.0.0.1:PORT" on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct pending {
    size_t off, len;
    char data[];
};

static struct pending **pending; /* by fd, only for clients with unsent output */
static size_t pending_cap;

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    if ((size_t)fd < pending_cap) {
        free(pending[fd]);
        pending[fd] = NULL;
    }
}

static void watch(int ep, int op, int fd, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(ep, op, fd, &ev);
}

/* Send data; keep what the kernel does not take and wait for EPOLLOUT. */
static void send_all(int ep, int fd, const char *data, size_t len)
{
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) {
        drop(ep, fd);
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (sent == len)
        return;
    if ((size_t)fd >= pending_cap) {
        size_t cap = (size_t)fd * 2 + 64;
        pending = realloc(pending, cap * sizeof *pending);
        memset(pending + pending_cap, 0, (cap - pending_cap) * sizeof *pending);
        pending_cap = cap;
    }
    struct pending *p = malloc(sizeof *p + len - sent);
    p->off = 0;
    p->len = len - sent;
    memcpy(p->data, data + sent, p->len);
    pending[fd] = p;
    watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
}

static void flush(int ep, int fd)
{
    struct pending *p = pending[fd];
    ssize_t n = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN)
            drop(ep, fd);
        return;
    }
    p->off += (size_t)n;
    if (p->off == p->len) {
        free(p);
        pending[fd] = NULL;
        watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
    }
}

int main(int argc, char **argv)
{
    static char buf[65536];
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(argc > 1 ? atoi(argv[1]) : 0)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t salen = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
        perror("epoll_echo: bind/listen");
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&sa, &salen);
    fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));

    int ep = epoll_create1(0);
    watch(ep, EPOLL_CTL_ADD, lfd, EPOLLIN);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
                    watch(ep, EPOLL_CTL_ADD, c, EPOLLIN);
                }
                continue;
            }
            if ((size_t)fd < pending_cap && pending[fd]) {
                flush(ep, fd);
                continue;
            }
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r > 0)
                send_all(ep, fd, buf, (size_t)r);
            else if (r == 0 || errno != EAGAIN)
                drop(ep, fd);
        }
    }
}
