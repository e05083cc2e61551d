/* libFuzzer target for the IP range parser: what it accepts formats back to text that parses
 * to the same range; what it refuses comes with a reason; matching agrees with a bit-by-bit
 * comparison on an address taken from the input. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sockit/sockit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int bit(const uint8_t *b, unsigned i)
{
    return b[i / 8] >> (7 - i % 8) & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first 16 bytes (when there are more than 16) are an address to match; the rest is
     * the text. */
    uint8_t ip[16] = {0};
    if (size > 16) {
        memcpy(ip, data, 16);
        data += 16;
        size -= 16;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    sk_cidr c;
    char err[160];
    int rc = sk_cidr_parse(text, &c, err, sizeof err);
    if (rc != 0) {
        if (rc != -EINVAL || err[0] == '\0')
            abort();
        free(text);
        return 0;
    }
    unsigned bits = c.family == AF_INET ? 32 : 128;
    if ((c.family != AF_INET && c.family != AF_INET6) || c.prefix > bits)
        abort();
    for (unsigned i = c.prefix; i < bits; i++)
        if (bit(c.addr, i))
            abort(); /* host bits must be clear */
    char buf[SK_CIDR_STRLEN], small[7];
    int n = sk_cidr_format(&c, buf, sizeof buf);
    if (n <= 0 || (size_t)n >= sizeof buf || strlen(buf) != (size_t)n)
        abort();
    if (sk_cidr_format(&c, small, sizeof small) != n)
        abort();
    sk_cidr again;
    if (sk_cidr_parse(buf, &again, NULL, 0) != 0 || again.family != c.family ||
        again.prefix != c.prefix || memcmp(again.addr, c.addr, sizeof c.addr) != 0)
        abort();
    /* Matching, against the definition. */
    int want = 1;
    for (unsigned i = 0; i < c.prefix; i++)
        if (bit(ip, i) != bit(c.addr, i))
            want = 0;
    if (sk_cidr_match_ip(&c, c.family, ip) != want)
        abort();
    if (sk_cidr_match_ip(&c, c.family == AF_INET ? AF_INET6 : AF_INET, ip))
        abort();
    /* The same through an sk_addr; an IPv4 range also matches the IPv4-mapped form. */
    sk_addr a;
    char iptext[INET6_ADDRSTRLEN];
    inet_ntop(c.family, ip, iptext, sizeof iptext);
    if (sk_addr_from_ip(&a, iptext, 80) != 0)
        abort();
    /* An IPv4-mapped IPv6 peer is an IPv4 peer: IPv6 ranges never match it. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c.family == AF_INET6 && memcmp(ip, mapped, 12) == 0)
        want = 0;
    if (sk_cidr_match(&c, &a) != want || sk_cidr_admit(&c, 1, NULL, 0, &a) != want ||
        sk_cidr_admit(NULL, 0, &c, 1, &a) == want)
        abort();
    free(text);
    return 0;
}
