/* IP ranges: parsing (with the error texts), matching IPv4, IPv6 and IPv4-mapped peers,
 * formatting, and the allow / deny decision. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "check.h"
#include "util.h"

static sk_addr ip(const char *text)
{
    sk_addr a;
    memset(&a, 0, sizeof a);
    sk_addr_from_ip(&a, text, 1234);
    return a;
}

static bool parses_to(const char *text, const char *want)
{
    sk_cidr c;
    char err[160], buf[SK_CIDR_STRLEN];
    if (sk_cidr_parse(text, &c, err, sizeof err) != 0)
        return false;
    sk_cidr_format(&c, buf, sizeof buf);
    return strcmp(buf, want) == 0;
}

static bool refused_with(const char *text, const char *needle)
{
    sk_cidr c;
    char err[160] = "";
    return sk_cidr_parse(text, &c, err, sizeof err) == -EINVAL && strstr(err, needle) != NULL;
}

TEST(cidr_parse_valid)
{
    CHECK(parses_to("10.0.0.0/8", "10.0.0.0/8"));
    CHECK(parses_to("10.1.2.3/8", "10.0.0.0/8")); /* host bits cleared */
    CHECK(parses_to("192.168.1.77/26", "192.168.1.64/26"));
    CHECK(parses_to("127.0.0.1", "127.0.0.1/32"));
    CHECK(parses_to("0.0.0.0/0", "0.0.0.0/0"));
    CHECK(parses_to("::1", "::1/128"));
    CHECK(parses_to("::1/128", "::1/128"));
    CHECK(parses_to("2001:db8:ffff::1/33", "2001:db8:8000::/33"));
    CHECK(parses_to("::/0", "::/0"));
    CHECK(parses_to("::ffff:10.0.0.1/120", "::ffff:10.0.0.0/120"));
}

TEST(cidr_parse_errors_say_why)
{
    CHECK(refused_with("", "no address"));
    CHECK(refused_with("/8", "no address"));
    CHECK(refused_with("10.0.0.0/", "nothing after '/'"));
    CHECK(refused_with("10.0.0.0/33", "0-32"));
    CHECK(refused_with("::1/129", "0-128"));
    CHECK(refused_with("10.0.0.0/8x", "not a number"));
    CHECK(refused_with("10.0.0.0/-1", "not a number"));
    CHECK(refused_with("10.0.0.0/99999999999999999999", "not a number"));
    CHECK(refused_with("localhost/8", "not an IPv4 or IPv6"));
    CHECK(refused_with("10.0.0/8", "not an IPv4 or IPv6"));
    CHECK(refused_with("[::1]/128", "not an IPv4 or IPv6"));
    CHECK(refused_with("fe80::1%eth0/64", "not an IPv4 or IPv6"));
    CHECK(refused_with("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa/64", "too long"));
    sk_cidr c;
    CHECK(sk_cidr_parse("nope", &c, NULL, 0) == -EINVAL); /* err may be NULL */
}

TEST(cidr_match)
{
    sk_cidr net8, host, v6, all4, all6;
    REQUIRE(sk_cidr_parse("10.0.0.0/8", &net8, NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("127.0.0.2", &host, NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("2001:db8::/32", &v6, NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("0.0.0.0/0", &all4, NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("::/0", &all6, NULL, 0) == 0);
    sk_addr a = ip("10.200.3.4"), b = ip("11.0.0.1"), m = ip("::ffff:10.9.9.9");
    sk_addr h = ip("127.0.0.2"), h2 = ip("127.0.0.3");
    sk_addr x = ip("2001:db8:1::5"), y = ip("2001:db9::1"), lo6 = ip("::1");
    CHECK(sk_cidr_match(&net8, &a));
    CHECK(!sk_cidr_match(&net8, &b));
    CHECK(sk_cidr_match(&net8, &m)); /* a dual-stack listener's view of an IPv4 peer */
    CHECK(sk_cidr_match(&host, &h));
    CHECK(!sk_cidr_match(&host, &h2));
    CHECK(sk_cidr_match(&v6, &x));
    CHECK(!sk_cidr_match(&v6, &y));
    CHECK(!sk_cidr_match(&v6, &a));
    CHECK(sk_cidr_match(&all4, &b));
    CHECK(!sk_cidr_match(&all4, &lo6)); /* families never mix */
    CHECK(sk_cidr_match(&all6, &lo6));
    CHECK(!sk_cidr_match(&all6, &m));
    sk_addr u;
    REQUIRE(sk_addr_from_unix(&u, "/tmp/x.sock") == 0);
    CHECK(!sk_cidr_match(&all4, &u));
    CHECK(!sk_cidr_match(&all6, &u));
}

TEST(cidr_admit_deny_wins)
{
    sk_cidr allow[2], deny[1];
    REQUIRE(sk_cidr_parse("127.0.0.0/8", &allow[0], NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("::1", &allow[1], NULL, 0) == 0);
    REQUIRE(sk_cidr_parse("127.0.0.2/32", &deny[0], NULL, 0) == 0);
    sk_addr a = ip("127.0.0.1"), d = ip("127.0.0.2"), o = ip("192.0.2.1"), v6 = ip("::1");
    sk_addr v6b = ip("::2");
    CHECK(sk_cidr_admit(allow, 2, deny, 1, &a));
    CHECK(!sk_cidr_admit(allow, 2, deny, 1, &d));
    CHECK(!sk_cidr_admit(allow, 2, deny, 1, &o));
    CHECK(sk_cidr_admit(allow, 2, deny, 1, &v6));
    CHECK(!sk_cidr_admit(allow, 2, deny, 1, &v6b));
    /* no allow list: everything but the denied */
    CHECK(sk_cidr_admit(NULL, 0, deny, 1, &o));
    CHECK(!sk_cidr_admit(NULL, 0, deny, 1, &d));
    CHECK(sk_cidr_admit(NULL, 0, NULL, 0, &d));
    sk_addr u;
    REQUIRE(sk_addr_from_unix(&u, "/tmp/x.sock") == 0);
    CHECK(sk_cidr_admit(allow, 2, deny, 1, &u)); /* file permissions guard Unix sockets */
}

TEST(cidr_format_truncates_like_snprintf)
{
    sk_cidr c;
    REQUIRE(sk_cidr_parse("2001:db8::/32", &c, NULL, 0) == 0);
    char buf[8];
    int n = sk_cidr_format(&c, buf, sizeof buf);
    CHECK(n == (int)strlen("2001:db8::/32"));
    CHECK(strlen(buf) == sizeof buf - 1);
    CHECK(sk_cidr_format(&c, NULL, 0) == n);
}
