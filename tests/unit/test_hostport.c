/* Tests src/hostport.c: every form the listen addresses, gRPC targets and URL authorities take, and
 * every input the three parsers it replaced (net.c, http_client.c, client/grpc_client.c) refused. */
#include <criterion/criterion.h>
#include <string.h>
#include <uv.h>

#include "hostport.h"

#define ALL_FLAGS (PS_HOSTPORT_PORT_OPTIONAL | PS_HOSTPORT_PORT_ZERO | PS_HOSTPORT_EMPTY_HOST)

static int parse(const char *s, unsigned flags, char *host, int *port) {
  return ps_hostport_parse(s, strlen(s), flags, host, PS_HOSTPORT_HOST_MAX, port);
}

Test(hostport, ipv4_names_and_bracketed_ipv6) {
  static const struct {
    const char *in, *host;
    int port;
  } cases[] = {
      {"127.0.0.1:8080", "127.0.0.1", 8080},
      {"0.0.0.0:65535", "0.0.0.0", 65535},
      {"[::1]:9", "::1", 9},
      {"[fe80::1:2]:443", "fe80::1:2", 443},
      {"[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", 80},
      {"[ABCD::EF]:1", "ABCD::EF", 1},
      {"localhost:6000", "localhost", 6000},
      {"prometheus-k8s.monitoring.svc:9090", "prometheus-k8s.monitoring.svc", 9090},
      {"host_name.example:1", "host_name.example", 1},
      {"h:00080", "h", 80}, /* five digits at most, leading zeros included */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char host[PS_HOSTPORT_HOST_MAX];
    int port = -2;
    cr_assert_eq(parse(cases[i].in, 0, host, &port), 0, "%s refused", cases[i].in);
    cr_assert_str_eq(host, cases[i].host, "%s", cases[i].in);
    cr_assert_eq(port, cases[i].port, "%s", cases[i].in);
    /* The relaxations never change what the strict form accepts. */
    cr_assert_eq(parse(cases[i].in, ALL_FLAGS, host, &port), 0, "%s refused", cases[i].in);
    cr_assert_str_eq(host, cases[i].host, "%s", cases[i].in);
    cr_assert_eq(port, cases[i].port, "%s", cases[i].in);
  }
}

Test(hostport, refused_whatever_the_flags) {
  /* The union of the refusals of ps_net_parse_addr, ps_http_url_split's authority and the gRPC client's
   * target parser, each of which returned UV_EINVAL. */
  static const char *const bad[] = {
      "",                  /* nothing */
      "127.0.0.1:",        /* an empty port */
      "[::1]:",            /* an empty port after an IPv6 literal */
      "h:",                /* */
      "127.0.0.1:65536",   /* out of range */
      "127.0.0.1:123456",  /* too many digits */
      "h:99999",           /* */
      "127.0.0.1:8o",      /* not a digit */
      "h:1x",              /* */
      "h:-1",              /* signs and spaces are not digits */
      "h:+1",              /* */
      "h: 1",              /* */
      "h:80:90",           /* a second port */
      "[::1]:80x",         /* */
      "::1:80",            /* an IPv6 literal needs brackets */
      "[::1]80",           /* something other than ':' after ']' */
      "[::1]x",            /* */
      "[::1",              /* an unclosed bracket */
      "[",                 /* */
      "[]:80",             /* an empty literal */
      "[127.0.0.1]:80",    /* brackets are for IPv6 only */
      "[zz::1]:80",        /* not hex */
      "[fe80::1%eth0]:80", /* zone identifiers are not supported */
      "a b:80",            /* not a name */
      "user@h:80",         /* userinfo */
      "h%41:80",           /* percent-encoding */
      "h/x:80",            /* */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char host[PS_HOSTPORT_HOST_MAX];
    int port;
    cr_expect_eq(parse(bad[i], 0, host, &port), UV_EINVAL, "\"%s\" accepted", bad[i]);
    cr_expect_eq(parse(bad[i], ALL_FLAGS, host, &port), UV_EINVAL, "\"%s\" accepted with every flag", bad[i]);
  }
  char host[8];
  int port;
  cr_assert_eq(ps_hostport_parse(NULL, 0, ALL_FLAGS, host, sizeof host, &port), UV_EINVAL);
}

Test(hostport, missing_port_only_when_optional) {
  char host[PS_HOSTPORT_HOST_MAX];
  int port = 0;
  static const char *const no_port[] = {"127.0.0.1", "8080", "example.com", "[fe80::1:2]"};
  for (size_t i = 0; i < sizeof no_port / sizeof no_port[0]; i++) {
    cr_assert_eq(parse(no_port[i], 0, host, &port), UV_EINVAL, "%s", no_port[i]);
    cr_assert_eq(parse(no_port[i], PS_HOSTPORT_PORT_ZERO | PS_HOSTPORT_EMPTY_HOST, host, &port), UV_EINVAL);
    cr_assert_eq(parse(no_port[i], PS_HOSTPORT_PORT_OPTIONAL, host, &port), 0, "%s", no_port[i]);
    cr_assert_eq(port, PS_HOSTPORT_NO_PORT);
  }
  cr_assert_str_eq(host, "fe80::1:2");
  cr_assert_eq(parse("h:80", PS_HOSTPORT_PORT_OPTIONAL, host, &port), 0);
  cr_assert_eq(port, 80);
}

Test(hostport, port_zero_only_when_allowed) {
  char host[PS_HOSTPORT_HOST_MAX];
  int port = -2;
  cr_assert_eq(parse("127.0.0.1:0", 0, host, &port), UV_EINVAL);
  cr_assert_eq(parse("h:00000", PS_HOSTPORT_PORT_OPTIONAL, host, &port), UV_EINVAL);
  cr_assert_eq(parse("localhost:0", PS_HOSTPORT_PORT_ZERO, host, &port), 0);
  cr_assert_str_eq(host, "localhost");
  cr_assert_eq(port, 0);
  cr_assert_eq(parse("[::]:0", PS_HOSTPORT_PORT_ZERO, host, &port), 0);
  cr_assert_str_eq(host, "::");
}

Test(hostport, empty_host_only_when_allowed) {
  char host[PS_HOSTPORT_HOST_MAX];
  int port = -2;
  cr_assert_eq(parse(":6000", 0, host, &port), UV_EINVAL);
  cr_assert_eq(parse(":80", PS_HOSTPORT_PORT_OPTIONAL | PS_HOSTPORT_PORT_ZERO, host, &port), UV_EINVAL);
  cr_assert_eq(parse(":6000", PS_HOSTPORT_EMPTY_HOST, host, &port), 0);
  cr_assert_str_eq(host, "");
  cr_assert_eq(port, 6000);
  cr_assert_eq(parse(":", PS_HOSTPORT_EMPTY_HOST, host, &port), UV_EINVAL, "the port is still needed");
}

Test(hostport, reads_only_len_bytes) {
  /* A URL's authority ends at the path: the parser must not look past len. */
  const char *url_rest = "prom:9090/api/v1/query";
  char host[PS_HOSTPORT_HOST_MAX];
  int port = 0;
  cr_assert_eq(ps_hostport_parse(url_rest, 9, 0, host, sizeof host, &port), 0);
  cr_assert_str_eq(host, "prom");
  cr_assert_eq(port, 9090);
  cr_assert_eq(ps_hostport_parse("[::1]:80", 5, PS_HOSTPORT_PORT_OPTIONAL, host, sizeof host, &port), 0);
  cr_assert_str_eq(host, "::1");
  cr_assert_eq(port, PS_HOSTPORT_NO_PORT);
  cr_assert_eq(ps_hostport_parse("[::1]:80", 4, ALL_FLAGS, host, sizeof host, &port), UV_EINVAL, "no ']'");
  cr_assert_eq(ps_hostport_parse("h:80", 0, ALL_FLAGS, host, sizeof host, &port), UV_EINVAL);
}

Test(hostport, host_must_fit) {
  char small[4];
  int port;
  cr_assert_eq(ps_hostport_parse("abcd:1", 6, 0, small, sizeof small, &port), UV_EINVAL);
  cr_assert_eq(ps_hostport_parse("abc:1", 5, 0, small, sizeof small, &port), 0);
  cr_assert_str_eq(small, "abc");
  cr_assert_eq(ps_hostport_parse("[::12]:1", 8, 0, small, sizeof small, &port), UV_EINVAL);
  /* A DNS name's 253 characters fit; a host longer than PS_HOSTPORT_HOST_MAX - 1 never does. */
  char in[PS_HOSTPORT_HOST_MAX + 8], host[PS_HOSTPORT_HOST_MAX * 2];
  memset(in, 'a', PS_HOSTPORT_HOST_MAX - 1);
  strcpy(in + PS_HOSTPORT_HOST_MAX - 1, ":1");
  cr_assert_eq(ps_hostport_parse(in, strlen(in), 0, host, sizeof host, &port), 0);
  cr_assert_eq(strlen(host), PS_HOSTPORT_HOST_MAX - 1);
  memset(in, 'a', PS_HOSTPORT_HOST_MAX);
  strcpy(in + PS_HOSTPORT_HOST_MAX, ":1");
  cr_assert_eq(ps_hostport_parse(in, strlen(in), 0, host, sizeof host, &port), UV_EINVAL);
}

Test(hostport, format_brackets_ipv6_and_parses_back) {
  static const struct {
    const char *host;
    int port;
    const char *want;
  } cases[] = {
      {"127.0.0.1", 80, "127.0.0.1:80"},
      {"prom.monitoring.svc", 9090, "prom.monitoring.svc:9090"},
      {"::1", 9, "[::1]:9"},
      {"fe80::1:2", 65535, "[fe80::1:2]:65535"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[64], host[PS_HOSTPORT_HOST_MAX];
    int port;
    ps_hostport_format(out, sizeof out, cases[i].host, cases[i].port);
    cr_assert_str_eq(out, cases[i].want);
    cr_assert_eq(parse(out, 0, host, &port), 0, "%s", out);
    cr_assert_str_eq(host, cases[i].host);
    cr_assert_eq(port, cases[i].port);
  }
  char small[5];
  ps_hostport_format(small, sizeof small, "prom", 9090);
  cr_assert_str_eq(small, "prom", "truncated, and terminated");
}
