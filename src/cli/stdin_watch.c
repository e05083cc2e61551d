/* Standard input on the loop, read only while the reader can take more (cli.h). The one piece
 * connect's stream and datagram clients shared line for line: a pipe or terminal is watched by
 * the loop; a regular file, which epoll refuses (it is always readable), is read from a timer
 * that fires at once while reading is wanted. */
#include <errno.h>
#include <unistd.h>

#include "cli.h"

static void fd_ready(sk_loop *loop, int fd, unsigned events, void *arg)
{
    stdin_watch *w = arg;
    w->ready(w->arg);
}

static void timer_fired(sk_timer *t, void *arg)
{
    stdin_watch *w = arg;
    w->ready(w->arg);
}

void stdin_watch_start(stdin_watch *w, sk_loop *loop, void (*ready)(void *arg), void *arg)
{
    *w = (stdin_watch){.loop = loop, .ready = ready, .arg = arg};
    /* Asked for readability at once: the loop may register a descriptor only when it waits for
     * something, and only the registration tells a regular file (-EPERM) apart. */
    int rc = sk_loop_watch(loop, STDIN_FILENO, SK_READABLE, fd_ready, w);
    if (rc == -EPERM) {
        w->is_file = true;
        if (sk_timer_new(loop, timer_fired, w, &w->file_timer) < 0)
            die(EXIT_RUNTIME, "out of memory");
    } else if (rc < 0) {
        die(EXIT_RUNTIME, "cannot watch standard input: %s", sk_strerror(rc));
    } else {
        w->registered = w->watching = true;
    }
}

void stdin_watch_want(stdin_watch *w, bool want)
{
    if (w->is_file) {
        if (want)
            sk_timer_start(w->file_timer, 0, 0);
        else
            sk_timer_stop(w->file_timer);
        return;
    }
    if (w->registered && want != w->watching) {
        sk_loop_watch_modify(w->loop, STDIN_FILENO, want ? SK_READABLE : 0);
        w->watching = want;
    }
}

void stdin_watch_stop(stdin_watch *w)
{
    if (w->registered)
        sk_loop_unwatch(w->loop, STDIN_FILENO);
    sk_timer_free(w->file_timer);
    w->registered = w->watching = false;
    w->file_timer = NULL;
}
