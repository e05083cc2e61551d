/* sockit: one command, several tools. main() only dispatches. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: sockit COMMAND [ARGS]\n"
    "\n"
    "A socket toolkit: TCP and Unix-socket servers and clients.\n"
    "\n"
    "commands:\n"
    "  serve [ADDRESS]     run a server: greet, echo, chat, discard or source\n"
    "  connect [ADDRESS]   connect and copy standard input and output, like nc\n"
    "  relay LISTEN TARGET  forward connections or datagrams to targets, balanced\n"
    "  bench ADDRESS       load a server and measure it: echo, connect, bulk, idle\n"
    "\n"
    "ADDRESS is HOST:PORT, [IPV6]:PORT, :PORT (every interface), PORT or unix:PATH,\n"
    "optionally with tcp:// or unix:// in front; udp://HOST:PORT or unix-dgram:PATH\n"
    "for datagrams.\n"
    "\n"
    "  sockit COMMAND --help   options of one command\n"
    "  sockit --version        the version\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage error. See sockit(1).\n";

/* Started with standard input, output or error closed (`<&-`, `>&-`), the next descriptor
 * opened (the epoll set, a socket) would take that number and be mistaken for the stream.
 * /dev/null takes the place instead: a closed input reads as EOF, a closed output discards,
 * as nc does. */
static void fill_closed_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        (void)open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY); /* takes the lowest: fd */
    }
}

int main(int argc, char **argv)
{
    fill_closed_std_fds();
    /* Sockets use MSG_NOSIGNAL; this covers a closed standard output (sockit connect | head). */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("sockit %s\n", sk_version());
        return EXIT_OK;
    }
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "connect"))
        return cmd_connect(argc - 1, argv + 1);
    if (!strcmp(cmd, "relay"))
        return cmd_relay(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(argc - 1, argv + 1);
    die(EXIT_USAGE,
        "unknown command '%s' (the commands are serve, connect, relay and bench; see "
        "'sockit --help')",
        cmd);
}
