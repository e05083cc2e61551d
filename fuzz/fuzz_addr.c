/* libFuzzer target for the address parser, and for resolve + format on what it accepts.
 * Only numeric hosts, the wildcard and Unix paths are resolved, so a run never asks DNS. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sockit/sockit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when resolving the host cannot leave this machine: empty, or an IP literal. */
static int host_is_numeric(const char *host)
{
    char ip[sizeof(((sk_addrspec *)0)->host)];
    unsigned char bin[sizeof(struct in6_addr)];
    size_t n = strcspn(host, "%"); /* a zone is looked up locally (if_nametoindex) */
    if (host[0] == '\0')
        return 1;
    memcpy(ip, host, n);
    ip[n] = '\0';
    return inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parser takes a C string: give it one with the input's bytes, up to a first NUL. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    sk_addrspec spec;
    char err[128];
    int default_port = size ? (int)data[0] - 1 : -1; /* exercise -1 and several defaults */
    int rc = sk_addr_parse(text, default_port, &spec, err, sizeof err);
    if (rc != 0) {
        if (rc != -EINVAL || err[0] == '\0')
            abort(); /* every refusal must say why */
    } else if (spec.is_unix || host_is_numeric(spec.host)) {
        sk_addr addrs[4];
        char buf[SK_ADDR_STRLEN];
        int n = sk_addr_resolve(&spec, (int)(size & 1), addrs, 4);
        for (int i = 0; i < n; i++) {
            int want = sk_addr_format(&addrs[i], buf, sizeof buf);
            if (want < 0 || (size_t)want >= sizeof buf || strlen(buf) != (size_t)want)
                abort(); /* SK_ADDR_STRLEN must fit anything */
            if (sk_addr_format(&addrs[i], buf, (size_t)(size % 8)) != want)
                abort();
            (void)sk_addr_port(&addrs[i]);
            (void)sk_addr_is_unix(&addrs[i]);
        }
    }
    (void)sk_strerror(rc);
    free(text);
    return 0;
}
