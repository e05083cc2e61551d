/* The seed client in plain BSD sockets: connect, print all the server sends, close.
 *   seed_client_raw [HOST PORT]    without them it asks on standard input, like the seed
 * Unlike the seed's single recv(1024), it reads until the server's FIN: TCP is a byte stream,
 * and one message may arrive in several pieces. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    char host[256], port[32];
    if (argc == 3) {
        snprintf(host, sizeof host, "%s", argv[1]);
        snprintf(port, sizeof port, "%s", argv[2]);
    } else if (argc != 1 || ask("Enter server address: ", host, sizeof host) < 0 ||
               ask("Enter server port: ", port, sizeof port) < 0) {
        fprintf(stderr, "usage: seed_client_raw [HOST PORT] (or give both on standard input)\n");
        return 2;
    }

    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0' || atol(port) < 1 || atol(port) > 65535) {
        fprintf(stderr, "seed_client_raw: bad port '%s' (use 1-65535)\n", port);
        return 2;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "seed_client_raw: cannot resolve %s port %s: %s\n", host, port,
                gai_strerror(rc));
        return 1;
    }
    int fd = -1, err = 0;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) { /* every address the name has, in order */
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno; /* (an EINTR here would need poll(); we install no signal handler) */
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            err = errno;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "seed_client_raw: cannot connect to %s port %s: %s\n", host, port,
                strerror(err));
        return 1;
    }

    char buf[1024];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) != 0) { /* 0: the server closed (EOF) */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("seed_client_raw: recv");
            close(fd);
            return 1;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            perror("seed_client_raw: stdout");
            close(fd);
            return 1;
        }
    }
    close(fd);
    return fflush(stdout) == 0 ? 0 : 1;
}
