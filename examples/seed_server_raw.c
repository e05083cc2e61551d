/* The seed server in plain BSD sockets: greet each client with "Hi from server", then hang up.
 *   seed_server_raw [PORT [HOST [COUNT]]]    defaults: 12345, 127.0.0.1, 0 (serve forever)
 * The seed's steps plus what it left out: every call checked, EINTR retried, MSG_NOSIGNAL (no
 * SIGPIPE), a half-close so the greeting is never destroyed by a reset, and the real port. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char greeting[] = "Hi from server\n";

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "seed_server_raw: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* send() until all of it went out: Python's sendall(). */
static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL); /* a gone client: EPIPE, not SIGPIPE */
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

/* Send, then FIN (shutdown), then read until the client's FIN: closing with unread input would
 * send a reset instead, and the reset can destroy the greeting before the client reads it. */
static void greet(int fd)
{
    struct timeval limit = {.tv_sec = 2}; /* do not wait forever for a silent client */
    char sink[512];
    ssize_t n;
    if (send_all(fd, greeting, sizeof greeting - 1) < 0)
        perror("seed_server_raw: send");
    else if (shutdown(fd, SHUT_WR) < 0)
        perror("seed_server_raw: shutdown");
    else if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) < 0)
        perror("seed_server_raw: setsockopt SO_RCVTIMEO");
    else
        while ((n = recv(fd, sink, sizeof sink, 0)) > 0 || (n < 0 && errno == EINTR))
            continue;
    if (close(fd) < 0)
        perror("seed_server_raw: close");
}

int main(int argc, char **argv)
{
    const char *port = argc > 1 ? argv[1] : "12345";
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    long count = argc > 3 ? atol(argv[3]) : 0; /* clients to serve; 0: forever */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0' || atol(port) > 65535) {
        fprintf(stderr, "seed_server_raw: bad port '%s' (use 1-65535, or 0 for any)\n", port);
        return 2;
    }
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "seed_server_raw: cannot listen on %s port %s: %s\n", host, port,
                gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol); /* 1. socket */
    if (fd < 0)
        die("socket");
    int one = 1; /* rebind at once after a restart, despite old connections in TIME_WAIT */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt SO_REUSEADDR");
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) /* 2. bind */
        die("bind");
    freeaddrinfo(ai);
    if (listen(fd, SOMAXCONN) < 0) /* 3. listen */
        die("listen");

    struct sockaddr_storage ss; /* the address really bound: the OS picks the port for 0 */
    socklen_t len = sizeof ss;
    char h[NI_MAXHOST], s[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        die("getsockname");
    rc = getnameinfo((struct sockaddr *)&ss, len, h, sizeof h, s, sizeof s,
                     NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc != 0) {
        fprintf(stderr, "seed_server_raw: getnameinfo: %s\n", gai_strerror(rc));
        return 1;
    }
    int v6 = ss.ss_family == AF_INET6;
    fprintf(stderr, "listening on %s%s%s:%s\n", v6 ? "[" : "", h, v6 ? "]" : "", s);

    for (long served = 0; count <= 0 || served < count;) {
        int c = accept(fd, NULL, NULL); /* 4. accept */
        if (c < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue; /* a signal, or a client that left before we took it */
        if (c < 0)
            die("accept");
        greet(c); /* 5. send, 6. close */
        served++;
    }
    if (close(fd) < 0) /* 7. close */
        die("close");
    return 0;
}
