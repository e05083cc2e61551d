/* The PROXY protocol options serve, relay and connect share (cli.h): --accept-proxy,
 * --proxy-from, --proxy-timeout on a listener; --send-proxy on an outgoing connection. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool proxy_cli_option(proxy_cli *p, int ch, const char *arg)
{
    switch (ch) {
    case OPT_ACCEPT_PROXY: p->accept = true; return true;
    case OPT_PROXY_FROM: add_cidr("--proxy-from", arg, &p->from, &p->nfrom); return true;
    case OPT_PROXY_TIMEOUT:
        p->timeout_ms = parse_seconds_ms("--proxy-timeout", arg);
        if (p->timeout_ms == 0)
            die(EXIT_USAGE, "--proxy-timeout: 0 would close every connection (use a time > 0)");
        return true;
    case OPT_SEND_PROXY:
        if (!strcmp(arg, "v1"))
            p->send_version = 1;
        else if (!strcmp(arg, "v2"))
            p->send_version = 2;
        else if (!strcmp(arg, "v2,crc32c"))
            p->send_version = 2, p->send_crc = true;
        else
            die(EXIT_USAGE, "--send-proxy: unknown version '%s' (use v1, v2 or v2,crc32c)", arg);
        return true;
    default: return false;
    }
}

void proxy_cli_check(const proxy_cli *p)
{
    if ((p->nfrom || p->timeout_ms) && !p->accept)
        die(EXIT_USAGE, "--proxy-from and --proxy-timeout go with --accept-proxy (every "
                        "connection then starts with a PROXY header)");
}

void proxy_cli_listen(const proxy_cli *p, sk_listen_options *lo)
{
    lo->accept_proxy = p->accept;
    lo->proxy_from = p->from;
    lo->proxy_from_count = p->nfrom;
    lo->proxy_timeout_ms = (uint32_t)(p->timeout_ms > UINT32_MAX ? UINT32_MAX : p->timeout_ms);
}

void proxy_cli_free(proxy_cli *p)
{
    free(p->from);
    p->from = NULL;
    p->nfrom = 0;
}
