/* Addresses (parse, resolve, format) and error texts. Nothing here touches the network: the only
 * names looked up are "localhost" and a name under .invalid, which no resolver may answer. */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "check.h"

/* Parses text and reports, on stderr, what differs from the expected spec. */
static bool parses_to(const char *text, int default_port, const char *host, uint16_t port)
{
    sk_addrspec spec;
    char err[256];
    int rc = sk_addr_parse(text, default_port, &spec, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "  parse '%s': %d %s\n", text, rc, err);
        return false;
    }
    if (spec.is_unix || strcmp(spec.host, host) != 0 || spec.port != port) {
        fprintf(stderr, "  parse '%s': host '%s' port %u unix %d\n", text, spec.host,
                (unsigned)spec.port, (int)spec.is_unix);
        return false;
    }
    return true;
}

static bool parses_to_unix(const char *text, const char *path)
{
    sk_addrspec spec;
    char err[256];
    int rc = sk_addr_parse(text, -1, &spec, err, sizeof err);
    if (rc != 0 || !spec.is_unix || strcmp(spec.path, path) != 0) {
        fprintf(stderr, "  parse '%s': %d %s path '%s'\n", text, rc, err, spec.path);
        return false;
    }
    return true;
}

/* The text must be refused with -EINVAL and a message that names the bad part (key). */
static bool refused(const char *text, int default_port, const char *key)
{
    sk_addrspec spec;
    char err[256] = "untouched";
    int rc = sk_addr_parse(text, default_port, &spec, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, key)) {
        fprintf(stderr, "  parse '%.60s': rc %d, message '%s' (wanted '%s')\n", text, rc, err, key);
        return false;
    }
    return true;
}

static sk_scheme scheme_of(const char *text)
{
    sk_addrspec spec;
    return sk_addr_parse(text, 1, &spec, NULL, 0) == 0 ? spec.scheme : (sk_scheme)-1;
}

/* parse + resolve + format; the formatted text of the first address, or "" on failure. */
static const char *round_trip(const char *text, char *buf, size_t len)
{
    sk_addrspec spec;
    sk_addr addr;
    buf[0] = '\0';
    if (sk_addr_parse(text, -1, &spec, NULL, 0) == 0 && sk_addr_resolve(&spec, 0, &addr, 1) == 1)
        sk_addr_format(&addr, buf, len);
    return buf;
}

TEST(addr_parse_host_port)
{
    CHECK(parses_to("127.0.0.1:80", -1, "127.0.0.1", 80));
    CHECK(parses_to("localhost:8080", -1, "localhost", 8080));
    CHECK(parses_to("example.org:443", -1, "example.org", 443));
    CHECK(parses_to("host:65535", -1, "host", 65535));
    CHECK(parses_to("host:00080", -1, "host", 80));
    CHECK(parses_to("[::1]:80", -1, "::1", 80));
    CHECK(parses_to("[2001:db8::1]:443", -1, "2001:db8::1", 443));
    CHECK(parses_to("[fe80::1%eth0]:80", -1, "fe80::1%eth0", 80));
    CHECK(parses_to("[fe80::1%2]:80", -1, "fe80::1%2", 80));
    CHECK(parses_to("[::ffff:127.0.0.1]:7", -1, "::ffff:127.0.0.1", 7));
}

TEST(addr_parse_port_only_and_zero)
{
    CHECK(parses_to(":9000", -1, "", 9000));
    CHECK(parses_to("9000", -1, "", 9000));
    CHECK(parses_to(":0", -1, "", 0));
    CHECK(parses_to("0", -1, "", 0));
    CHECK(parses_to("host:0", -1, "host", 0));
    CHECK(parses_to("[::]:0", -1, "::", 0));
}

TEST(addr_parse_default_port)
{
    CHECK(parses_to("localhost", 80, "localhost", 80));
    CHECK(parses_to("10.1.2.3", 0, "10.1.2.3", 0));
    CHECK(parses_to("[::1]", 443, "::1", 443));
    CHECK(parses_to("tcp://example.org", 7, "example.org", 7));
    CHECK(refused("localhost", -1, "missing port"));
    CHECK(refused("[::1]", -1, "[::1]:PORT"));
    CHECK(refused("localhost", 70000, "default port"));
    CHECK(refused("localhost", -2, "default port"));
}

TEST(addr_parse_schemes)
{
    CHECK(parses_to("tcp://127.0.0.1:80", -1, "127.0.0.1", 80));
    CHECK(parses_to("udp://[::1]:53", -1, "::1", 53));
    CHECK(parses_to("tls://localhost:443", -1, "localhost", 443));
    CHECK(parses_to("TCP://:8080", -1, "", 8080));
    CHECK(scheme_of("host:1") == SK_SCHEME_NONE);
    CHECK(scheme_of("tcp://host:1") == SK_SCHEME_TCP);
    CHECK(scheme_of("udp://host:1") == SK_SCHEME_UDP);
    CHECK(scheme_of("tls://host:1") == SK_SCHEME_TLS);
    CHECK(scheme_of("unix:///tmp/s") == SK_SCHEME_UNIX);
    CHECK(scheme_of("unix:/tmp/s") == SK_SCHEME_UNIX);
    CHECK(scheme_of("tls://unix:/tmp/s") == SK_SCHEME_TLS);
}

TEST(addr_parse_unix_dgram)
{
    CHECK(parses_to_unix("unix-dgram:/tmp/d.sock", "/tmp/d.sock"));
    CHECK(parses_to_unix("unix-dgram:@name", "@name"));
    CHECK(parses_to_unix("unix-dgram:///tmp/d.sock", "/tmp/d.sock"));
    CHECK(parses_to_unix("UNIX-DGRAM:rel.sock", "rel.sock"));
    CHECK(scheme_of("unix-dgram:/tmp/s") == SK_SCHEME_UNIX_DGRAM);
    CHECK(scheme_of("unix-dgram:///tmp/s") == SK_SCHEME_UNIX_DGRAM);
    CHECK(scheme_of("unix:/tmp/s") == SK_SCHEME_UNIX);
    CHECK(refused("unix-dgram:", -1, "empty Unix socket path"));
    CHECK(refused("unix-dgram://", -1, "empty Unix socket path"));
    CHECK(refused("unix-dgrm://x", -1, "unix-dgram://"));
}

TEST(addr_parse_unix)
{
    CHECK(parses_to_unix("unix:/tmp/s", "/tmp/s"));
    CHECK(parses_to_unix("unix:relative.sock", "relative.sock"));
    CHECK(parses_to_unix("unix:@name", "@name"));
    CHECK(parses_to_unix("unix:///tmp/s", "/tmp/s"));
    CHECK(parses_to_unix("unix://@name", "@name"));
    CHECK(parses_to_unix("tls://unix:/run/x.sock", "/run/x.sock"));
    CHECK(parses_to_unix("unix:/tmp/a://b", "/tmp/a://b"));

    /* unix:///tmp/s and unix:/tmp/s are the same spec, byte for byte. */
    sk_addrspec a, b;
    REQUIRE(sk_addr_parse("unix:///tmp/s", -1, &a, NULL, 0) == 0);
    REQUIRE(sk_addr_parse("unix:/tmp/s", -1, &b, NULL, 0) == 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);

    char path[120];
    memset(path, 'p', sizeof path);
    memcpy(path, "unix:/", 6);
    path[5 + 107] = '\0'; /* exactly 107 bytes of path: the most that fits */
    CHECK(parses_to_unix(path, path + 5));
}

TEST(addr_parse_bad_port)
{
    CHECK(refused("host:70000", -1, "70000"));
    CHECK(refused("host:70000", -1, "out of range"));
    CHECK(refused("host:65536", -1, "65536"));
    CHECK(refused("host:99999999999999999999999", -1, "out of range"));
    CHECK(refused("host:abc", -1, "'abc'"));
    CHECK(refused("host:abc", -1, "not a number"));
    CHECK(refused("host:-1", -1, "-1"));
    CHECK(refused("host:+1", -1, "+1"));
    CHECK(refused("host:8o", -1, "8o"));
    CHECK(refused("host:", -1, "missing port"));
    CHECK(refused("host:", 80, "missing port"));
    CHECK(refused(":", -1, "missing port"));
    CHECK(refused("[::1]:", -1, "missing port"));
    CHECK(refused("70000", -1, "70000"));
    CHECK(refused("[::1]:x", -1, "'x'"));
}

TEST(addr_parse_bad_host)
{
    CHECK(refused("", -1, "empty address"));
    CHECK(refused(NULL, -1, "empty address"));
    CHECK(refused("tcp://", -1, "empty address"));
    CHECK(refused("[::1", -1, "]"));
    CHECK(refused("[::1", -1, "[::1"));
    CHECK(refused("[::1:80", -1, "missing ']'"));
    CHECK(refused("::1:80", -1, "brackets"));
    CHECK(refused("::1", 80, "brackets"));
    CHECK(refused("2001:db8::1:443", -1, "[2001:db8::1]:PORT"));
    CHECK(refused("[]:80", -1, "empty IPv6"));
    CHECK(refused("[127.0.0.1]:80", -1, "not an IPv6 address"));
    CHECK(refused("[localhost]:80", -1, "not an IPv6 address"));
    CHECK(refused("[fe80::1%]:80", -1, "empty zone"));
    CHECK(refused("[fe80::1%aaaaaaaaaaaaaaaaaaaa]:80", -1, "zone"));
    CHECK(refused("[::1]x:80", -1, "unexpected"));
    CHECK(refused("[::1]]:80", -1, "unexpected"));
    CHECK(refused("foo://host:80", -1, "'foo://'"));
    CHECK(refused("http://host:80", -1, "unknown scheme"));
    CHECK(refused("a b:80", -1, "space"));
    CHECK(refused("a\tb:80", -1, "control"));
    CHECK(refused("a/b:80", -1, "'/'"));
    CHECK(refused("user@host:80", -1, "'@'"));

    char host[310];
    memset(host, 'h', 300);
    memcpy(host + 300, ":80", 4);
    CHECK(refused(host, -1, "host name too long"));
    host[255] = '\0'; /* 255 characters is the most a name may have */
    CHECK(parses_to(host, 80, host, 80));
    host[255] = 'h';
    host[256] = '\0';
    CHECK(refused(host, 80, "too long"));
}

/* The kernel refuses a link-local address without its interface (a bare EINVAL), so the parser
 * does, with the fix; the example interface depends on the machine, the rest does not. */
TEST(addr_parse_link_local_needs_zone)
{
    CHECK(refused("[fe80::1]:80", -1, "fe80::1 is a link-local address: add the interface"));
    CHECK(refused("[fe80::1]:80", -1, "as in [fe80::1%"));
    CHECK(refused("[fe80::1]:80", -1, "]:80"));
    CHECK(refused("[fe80::1]", 12345, "]:12345"));
    CHECK(refused("udp://[FE80::abcd]:0", -1, "FE80::abcd is a link-local"));
    CHECK(refused("[febf::1]:80", -1, "link-local"));
    CHECK(refused("[ff02::1]:80", -1, "link-local"));
    CHECK(refused("[fe80::1]:x", -1, "'x' is not a number")); /* the port is checked first */
    CHECK(parses_to("[fe80::1%lo]:80", -1, "fe80::1%lo", 80));
    CHECK(parses_to("[fec0::1]:80", -1, "fec0::1", 80)); /* just past fe80::/10 */
    CHECK(parses_to("[ff05::1]:80", -1, "ff05::1", 80));
}

TEST(addr_parse_bad_unix)
{
    CHECK(refused("unix:", -1, "empty Unix socket path"));
    CHECK(refused("unix://", -1, "empty Unix socket path"));
    CHECK(refused("unix:@", -1, "empty abstract"));

    char text[220];
    memcpy(text, "unix:/", 6);
    memset(text + 6, 'p', 199);
    text[205] = '\0'; /* a 200-byte path */
    CHECK(refused(text, -1, "Unix socket path too long"));
    CHECK(refused(text, -1, "107"));
    text[5 + 108] = '\0'; /* one byte over */
    CHECK(refused(text, -1, "too long"));
    text[5] = '@';
    CHECK(refused(text, -1, "abstract socket name too long"));
}

TEST(addr_parse_error_buffer)
{
    sk_addrspec spec;
    CHECK(sk_addr_parse("host:abc", -1, &spec, NULL, 0) == -EINVAL);
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(sk_addr_parse("host:abc", -1, &spec, small, sizeof small) == -EINVAL);
    CHECK(small[sizeof small - 1] == '\0');
    CHECK(strlen(small) == sizeof small - 1);

    /* A control byte in the input is not copied into the message. */
    char err[256];
    CHECK(sk_addr_parse("host:\x1b[31m", -1, &spec, err, sizeof err) == -EINVAL);
    CHECK(strchr(err, '\x1b') == NULL);
    /* Success leaves an empty message. */
    strcpy(err, "old");
    CHECK(sk_addr_parse("host:1", -1, &spec, err, sizeof err) == 0);
    CHECK(err[0] == '\0');
}

TEST(addr_resolve_numeric)
{
    sk_addrspec spec;
    sk_addr out[4];
    char buf[SK_ADDR_STRLEN];
    REQUIRE(sk_addr_parse("127.0.0.1:80", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, 0, out, 4) == 1);
    CHECK(sk_addr_family(&out[0]) == AF_INET);
    CHECK(sk_addr_port(&out[0]) == 80);
    CHECK(out[0].len == sizeof(struct sockaddr_in));
    CHECK(!sk_addr_is_unix(&out[0]));

    REQUIRE(sk_addr_parse("[::1]:8080", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, SK_RESOLVE_PASSIVE, out, 4) == 1);
    CHECK(sk_addr_family(&out[0]) == AF_INET6);
    CHECK(sk_addr_port(&out[0]) == 8080);
    CHECK(out[0].len == sizeof(struct sockaddr_in6));
    sk_addr_format(&out[0], buf, sizeof buf);
    CHECK(strcmp(buf, "[::1]:8080") == 0);

    CHECK(sk_addr_resolve(&spec, 0, out, 0) == -EINVAL);
    CHECK(sk_addr_resolve(NULL, 0, out, 1) == -EINVAL);
}

TEST(addr_resolve_wildcard)
{
    sk_addrspec spec;
    sk_addr out[4];
    char buf[SK_ADDR_STRLEN];
    REQUIRE(sk_addr_parse(":0", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, SK_RESOLVE_PASSIVE, out, 4) == 2);
    sk_addr_format(&out[0], buf, sizeof buf);
    CHECK(strcmp(buf, "[::]:0") == 0);
    sk_addr_format(&out[1], buf, sizeof buf);
    CHECK(strcmp(buf, "0.0.0.0:0") == 0);

    REQUIRE(sk_addr_parse("5555", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, SK_RESOLVE_PASSIVE, out, 1) == 1);
    sk_addr_format(&out[0], buf, sizeof buf);
    CHECK(strcmp(buf, "[::]:5555") == 0);

    /* Without PASSIVE there is nothing to bind: a client goes to this machine, IPv4 first. */
    REQUIRE(sk_addr_resolve(&spec, 0, out, 4) == 2);
    sk_addr_format(&out[0], buf, sizeof buf);
    CHECK(strcmp(buf, "127.0.0.1:5555") == 0);
    sk_addr_format(&out[1], buf, sizeof buf);
    CHECK(strcmp(buf, "[::1]:5555") == 0);
}

TEST(addr_resolve_localhost_ipv4_first)
{
    sk_addrspec spec;
    sk_addr out[8];
    REQUIRE(sk_addr_parse("localhost:7", -1, &spec, NULL, 0) == 0);
    int n = sk_addr_resolve(&spec, 0, out, 8);
    REQUIRE(n >= 1);
    CHECK(sk_addr_family(&out[0]) == AF_INET);
    bool seen_v6 = false;
    for (int i = 0; i < n; i++) {
        CHECK(sk_addr_port(&out[i]) == 7);
        if (sk_addr_family(&out[i]) == AF_INET6)
            seen_v6 = true;
        else
            CHECK(!seen_v6); /* no IPv4 address after an IPv6 one */
        for (int j = 0; j < i; j++)
            CHECK(out[i].len != out[j].len || memcmp(&out[i].ss, &out[j].ss, out[i].len) != 0);
    }
}

TEST(addr_resolve_unknown_name)
{
    sk_addrspec spec;
    sk_addr out[2];
    REQUIRE(sk_addr_parse("no-such-host.invalid:80", -1, &spec, NULL, 0) == 0);
    int rc = sk_addr_resolve(&spec, 0, out, 2);
    /* Without a network the resolver may fail either way; both are correct answers. */
    CHECK(rc == SK_ERR_NONAME || rc == SK_ERR_DNSFAIL);
}

TEST(addr_resolve_zone)
{
    sk_addrspec spec;
    sk_addr out[1];
    char buf[SK_ADDR_STRLEN];
    unsigned lo = if_nametoindex("lo");
    REQUIRE(lo != 0);
    REQUIRE(sk_addr_parse("[fe80::1%lo]:80", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, 0, out, 1) == 1);
    CHECK(((struct sockaddr_in6 *)(void *)&out[0].ss)->sin6_scope_id == lo);
    sk_addr_format(&out[0], buf, sizeof buf);
    CHECK(strcmp(buf, "[fe80::1%lo]:80") == 0);

    char text[64];
    snprintf(text, sizeof text, "[fe80::1%%%u]:80", lo);
    REQUIRE(sk_addr_parse(text, -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, 0, out, 1) == 1);
    CHECK(((struct sockaddr_in6 *)(void *)&out[0].ss)->sin6_scope_id == lo);

    /* An interface that does not exist is an error of its own, not a name to send to DNS. */
    REQUIRE(sk_addr_parse("[fe80::1%nosuchif9]:80", -1, &spec, NULL, 0) == 0);
    CHECK(sk_addr_resolve(&spec, 0, out, 1) == SK_ERR_NOIFACE);
    REQUIRE(sk_addr_parse("[fe80::1%4000000000]:80", -1, &spec, NULL, 0) == 0);
    CHECK(sk_addr_resolve(&spec, 0, out, 1) == SK_ERR_NOIFACE); /* no interface has that index */
    CHECK(sk_addr_from_ip(&out[0], "fe80::1%nosuchif9", 80) == SK_ERR_NOIFACE);
}

TEST(addr_resolve_unix)
{
    sk_addrspec spec;
    sk_addr out[2];
    size_t base = offsetof(struct sockaddr_un, sun_path);
    REQUIRE(sk_addr_parse("unix:/tmp/x.sock", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, SK_RESOLVE_PASSIVE, out, 2) == 1);
    CHECK(sk_addr_is_unix(&out[0]));
    CHECK(sk_addr_family(&out[0]) == AF_UNIX);
    CHECK(sk_addr_port(&out[0]) == 0);
    CHECK(out[0].len == base + strlen("/tmp/x.sock") + 1);

    REQUIRE(sk_addr_parse("unix:@abs", -1, &spec, NULL, 0) == 0);
    REQUIRE(sk_addr_resolve(&spec, 0, out, 2) == 1);
    const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)&out[0].ss;
    CHECK(out[0].len == base + 1 + 3);
    CHECK(sun->sun_path[0] == '\0');
    CHECK(memcmp(sun->sun_path + 1, "abs", 3) == 0);

    /* A hand-built spec whose path has no terminator. */
    memset(spec.path, 'p', sizeof spec.path);
    CHECK(sk_addr_resolve(&spec, 0, out, 2) == -ENAMETOOLONG);
}

TEST(addr_format_round_trip)
{
    static const char *const texts[] = {
        "127.0.0.1:80",      "0.0.0.0:0",           "255.255.255.255:65535", "[::1]:80",
        "[2001:db8::1]:443", "[::ffff:10.0.0.1]:8", "unix:/tmp/s",           "unix:relative",
        "unix:@abstract",    "unix:@a b",
    };
    char buf[SK_ADDR_STRLEN];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        round_trip(texts[i], buf, sizeof buf);
        if (strcmp(buf, texts[i]) != 0)
            fprintf(stderr, "  '%s' came back as '%s'\n", texts[i], buf);
        CHECK(strcmp(buf, texts[i]) == 0);
    }
    CHECK(strcmp(round_trip("unix:///tmp/s", buf, sizeof buf), "unix:/tmp/s") == 0);
    CHECK(strcmp(round_trip("tcp://[::1]:5", buf, sizeof buf), "[::1]:5") == 0);
}

TEST(addr_format_edges)
{
    sk_addr a;
    char buf[SK_ADDR_STRLEN];
    /* An unnamed Unix address, as the client end of a connection reports it. */
    memset(&a, 0, sizeof a);
    a.ss.ss_family = AF_UNIX;
    a.len = sizeof(sa_family_t);
    CHECK(sk_addr_format(&a, buf, sizeof buf) == 5);
    CHECK(strcmp(buf, "unix:") == 0);

    /* The longest path and abstract name both fit in SK_ADDR_STRLEN. */
    char path[110];
    memset(path, 'q', sizeof path);
    path[107] = '\0';
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    CHECK(sk_addr_format(&a, buf, sizeof buf) == 5 + 107);
    path[0] = '@';
    path[108] = '\0';
    path[107] = 'q';
    REQUIRE(sk_addr_from_unix(&a, path) == 0);
    CHECK(sk_addr_format(&a, buf, sizeof buf) == 5 + 108);
    CHECK(strncmp(buf, "unix:@qqq", 9) == 0);

    /* Like snprintf: the wanted length, truncated and terminated output. */
    REQUIRE(sk_addr_from_ip(&a, "127.0.0.1", 80) == 0);
    memset(buf, 'x', sizeof buf);
    CHECK(sk_addr_format(&a, buf, 5) == 12);
    CHECK(strcmp(buf, "127.") == 0);
    CHECK(sk_addr_format(&a, NULL, 0) == 12);
    CHECK(sk_addr_format(&a, buf, 1) == 12);
    CHECK(buf[0] == '\0');
}

TEST(addr_from_ip_and_unix)
{
    sk_addr a;
    CHECK(sk_addr_from_ip(&a, "10.0.0.1", 9) == 0);
    CHECK(sk_addr_family(&a) == AF_INET && sk_addr_port(&a) == 9);
    CHECK(sk_addr_from_ip(&a, "::", 0) == 0);
    CHECK(sk_addr_family(&a) == AF_INET6 && sk_addr_port(&a) == 0);
    CHECK(sk_addr_from_ip(&a, "[::1]", 1) == -EINVAL);
    CHECK(sk_addr_from_ip(&a, "localhost", 1) == -EINVAL);
    CHECK(sk_addr_from_ip(&a, "", 1) == -EINVAL);
    CHECK(sk_addr_from_ip(&a, "1.2.3.4:5", 1) == -EINVAL);
    CHECK(sk_addr_from_ip(&a, "fe80::1%", 1) == -EINVAL);
    CHECK(sk_addr_from_ip(NULL, "::1", 1) == -EINVAL);
    CHECK(sk_addr_from_ip(&a, NULL, 1) == -EINVAL);

    CHECK(sk_addr_from_unix(&a, "/tmp/s") == 0);
    CHECK(sk_addr_is_unix(&a));
    CHECK(sk_addr_from_unix(&a, "") == -EINVAL);
    CHECK(sk_addr_from_unix(&a, "@") == -EINVAL);
    char path[120];
    memset(path, 'p', sizeof path);
    path[108] = '\0';
    CHECK(sk_addr_from_unix(&a, path) == -EINVAL);

    CHECK(sk_addr_family(NULL) == AF_UNSPEC);
    CHECK(sk_addr_port(NULL) == 0);
    CHECK(!sk_addr_is_unix(NULL));
}

TEST(error_texts)
{
    CHECK(strcmp(sk_strerror(SK_ERR_NONAME), "host name not known") == 0);
    CHECK(strcmp(sk_strerror(SK_ERR_NODATA), "no address of that family for this host") == 0);
    CHECK(strcmp(sk_strerror(SK_ERR_DNSFAIL), "name resolution failed temporarily") == 0);
    CHECK(strstr(sk_strerror(SK_ERR_NOIFACE), "no such network interface") != NULL);
    CHECK(strcmp(sk_strerror(-ECONNREFUSED), "connection refused") == 0);
    CHECK(strcmp(sk_strerror(-EADDRINUSE), "address already in use") == 0);
    CHECK(strcmp(sk_strerror(-EACCES), "permission denied") == 0);
    CHECK(strcmp(sk_strerror(-ETIMEDOUT), "connection timed out") == 0);
    CHECK(strcmp(sk_strerror(-EMSGSIZE), "message too long") == 0);
    CHECK(strcmp(sk_strerror(-EIO), "input/output error") == 0);
    CHECK(strcmp(sk_strerror(-ENOBUFS), "no buffer space available") == 0);
    CHECK(strcmp(sk_strerror(-EMFILE), "too many open files") == 0);
    CHECK(strcmp(sk_strerror(-4000), "error -4000") == 0);
    CHECK(strcmp(sk_strerror(0), "success") == 0);
    for (int e = -6000; e <= 10; e++) {
        const char *s = sk_strerror(e);
        CHECK(s != NULL && s[0] != '\0');
    }
    CHECK(sk_strerror(-2147483647 - 1) != NULL);
    CHECK(sk_strerror(2147483647) != NULL);
    CHECK(strcmp(sk_version(), SOCKIT_VERSION) == 0);
}
