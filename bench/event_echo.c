/* An echo server on libevent, the way its book writes one: an evconnlistener, a bufferevent
 * per client, and a read callback that moves the whole input buffer to the output buffer
 * (evbuffer chains change hands; nothing is copied). The output is capped at 64 KiB with a
 * write watermark: past it the client is not read until the output drains.
 *
 *   event_echo [PORT]   listens on 127.0.0.1:PORT (0: any free port); prints
 *                       "listening on 127.0.0.1:PORT" on stderr. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define HIGH_WATER 65536

static void on_read(struct bufferevent *bev, void *arg)
{
    bufferevent_write_buffer(bev, bufferevent_get_input(bev));
    if (evbuffer_get_length(bufferevent_get_output(bev)) > HIGH_WATER)
        bufferevent_disable(bev, EV_READ);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    /* Called when the output falls to the low watermark. */
    bufferevent_enable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct event_base *base = evconnlistener_get_base(l);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, HIGH_WATER / 4, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN); /* bufferevents write with writev(), which raises SIGPIPE */
    struct event_base *base = event_base_new();
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(argc > 1 ? atoi(argv[1]) : 0)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct evconnlistener *l =
        evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&sa, sizeof sa);
    if (!l) {
        perror("event_echo: bind/listen");
        return 1;
    }
    socklen_t salen = sizeof sa;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sa, &salen);
    fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    return event_base_dispatch(base);
}
