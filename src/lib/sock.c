/* Socket helpers that listeners, conns and dgrams share: making a socket the loop can use,
 * binding (a crashed server's Unix socket file is replaced, a live one never), the options
 * set the same way everywhere, and names for tracing. Nothing here knows the objects built on
 * top of a socket, so every other socket file may depend on this one and none on each other. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

const char *sk__family_name(int family)
{
    return family == AF_INET    ? "inet"
           : family == AF_INET6 ? "inet6"
           : family == AF_UNIX  ? "unix"
                                : "?";
}

int sk__socket(sk_loop *loop, int family, int type)
{
    /* Non-blocking for the loop; close-on-exec, so a child the user starts inherits nothing. */
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    SK_TRACE(loop, "socket fd=%d %s %s", fd, sk__family_name(family),
             type == SOCK_STREAM ? "stream" : "dgram");
    return fd;
}

/* A Unix socket file nobody serves (a crashed server's) may be replaced: connecting to it is
 * refused. A live server's file answers, and stays. */
static bool unix_path_is_stale(const struct sockaddr_un *sun, socklen_t len, int type)
{
    struct stat st;
    if (sun->sun_path[0] == '\0' || lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return false;
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool stale = connect(fd, (const struct sockaddr *)sun, len) < 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

int sk__sock_bind(sk_loop *loop, int fd, int type, const sk_addr *addr)
{
    const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
    int err = bind(fd, sa, addr->len) == 0 ? 0 : errno;
    if (err == EADDRINUSE && addr->ss.ss_family == AF_UNIX &&
        unix_path_is_stale((const struct sockaddr_un *)sa, addr->len, type)) {
        const char *path = ((const struct sockaddr_un *)sa)->sun_path;
        char text[sizeof((struct sockaddr_un *)0)->sun_path + 32];
        snprintf(text, sizeof text, "removing stale socket file %s", path);
        sk__emit(loop, &(sk_event){.kind = SK_EV_NOTICE, .text = text});
        unlink(path);
        err = bind(fd, sa, addr->len) == 0 ? 0 : errno;
    }
    if (err)
        return -err;
    if (sk__trace_on(loop)) {
        char name[SK_ADDR_STRLEN];
        sk_addr_format(addr, name, sizeof name);
        sk__trace(loop, "bind fd=%d %s", fd, name);
    }
    return 0;
}

const char *sk__sock_unix_path(const sk_addr *addr)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->ss;
    if (addr->ss.ss_family != AF_UNIX || addr->len <= offsetof(struct sockaddr_un, sun_path) ||
        sun->sun_path[0] == '\0')
        return NULL;
    return sun->sun_path;
}

void sk__sock_v6only(int fd, int family, bool on)
{
    int v = on;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v);
}

void sk__sock_nodelay(int fd, int family)
{
    /* Frames are whole when written: Nagle's delay would only hold back a reply. */
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
}
