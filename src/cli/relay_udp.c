/* sockit relay for datagrams: a session per client address. (Being written.) */
#include "relay.h"

int relay_udp(relay_args *a)
{
    (void)a;
    die(EXIT_USAGE, "relay: udp:// and unix-dgram: are not supported yet");
}
