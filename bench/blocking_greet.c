/* The simplest greeting server there is: one client at a time, blocking calls, no event loop.
 * accept, write the greeting, close, again.
 *
 *   blocking_greet [PORT]  listens on 127.0.0.1:PORT (0: any free port) and prints
 *                          "listening on 127.0.0.1:PORT" on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static const char greeting[] = "Hi from server\n";
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(argc > 1 ? atoi(argv[1]) : 0)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t salen = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
        perror("blocking_greet: bind/listen");
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&sa, &salen);
    fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            continue;
        send(c, greeting, sizeof greeting - 1, MSG_NOSIGNAL);
        close(c);
    }
}
