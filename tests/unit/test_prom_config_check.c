/* Tests src/prom_config_check.c: the rules on what a --prometheus-config file holds (exclusive and paired
 * keys, urls and duplicates, header names and values), each refusal with its exact words and no secret,
 * and ps_prom_config_match. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "prom_config.h"
#include "prom_config_fixture.h"

/* ---- checks across keys -------------------------------------------------------------------------- */

Test(prom_config_check, mutually_exclusive_and_paired_keys) {
  EXPECT_ERR(
      "servers:\n- url: http://a\n  authorization:\n    credentials: " SECRET "\n    credentials_file: /t\n",
      "prometheus-config /etc/p.yaml:3: servers[0].authorization: credentials and credentials_file are "
      "mutually exclusive");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  authorization: {type: Bearer}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].authorization: needs credentials_file (or credentials)");
  EXPECT_ERR("servers:\n- url: http://a\n  authorization: {type: Basic, credentials: " SECRET "}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].authorization: type: \"Basic\" is not allowed; use "
             "basic_auth: {username, password_file}");
  EXPECT_ERR("servers:\n- url: http://a\n  authorization: {type: 'Bearer x', credentials: " SECRET "}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].authorization: type: \"Bearer x\" is not an HTTP "
             "authentication scheme");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  authorization: {credentials: \"" SECRET "\\r\\nX-Evil: 1\"}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].authorization.credentials: must not contain control "
      "characters (CR, LF, NUL, ...)");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  basic_auth: {username: u, password: " SECRET ", password_file: /p}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].basic_auth: password and password_file are mutually "
      "exclusive");
  EXPECT_ERR("servers:\n- url: http://a\n  basic_auth: {password: " SECRET "}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].basic_auth: username is required");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  basic_auth: {username: 'a:b', password: " SECRET "}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].basic_auth: username must not contain ':' or control "
      "characters");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  basic_auth: {username: u, password: \"" SECRET "\\n\"}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].basic_auth.password: must not contain control characters "
      "(CR, LF, NUL, ...)");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  authorization: {credentials: " SECRET "}\n"
      "  basic_auth: {username: u, password: " SECRET "}\n",
      "prometheus-config /etc/p.yaml:4: servers[0]: authorization and basic_auth are mutually exclusive");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  tls_config: {cert_file: /c}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config: cert_file and key_file go together (a client "
      "certificate and its key); key_file is missing");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  tls_config: {key_file: /k}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config: cert_file and key_file go together (a client "
      "certificate and its key); cert_file is missing");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  tls_config: {ca_file: /c}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config: is for https:// servers; this url is http://");
  EXPECT_ERR("servers:\n- url: https://a\n  tls_config: {server_name: 'a b'}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].tls_config: server_name must be a host name");
  /* A NUL inside a double-quoted value would cut a C string short. */
  static const char nul[] = "servers:\n- url: https://a\n  tls_config: {ca_file: \"/a\\0/b\"}\n";
  cr_assert_str_eq(
      parse_err(nul, sizeof nul - 1),
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config.ca_file: the value must not contain a "
      "NUL byte");
}

Test(prom_config_check, urls) {
  EXPECT_ERR(
      "servers:\n- url: ftp://a\n",
      "prometheus-config /etc/p.yaml:2: servers[0].url: \"ftp://a\" is not an http:// or https:// URL");
  EXPECT_ERR("servers:\n- url: https://\n",
             "prometheus-config /etc/p.yaml:2: servers[0].url: \"https://\" has no host");
  EXPECT_ERR(
      "servers:\n- url: http://a/?x=1\n",
      "prometheus-config /etc/p.yaml:2: servers[0].url: \"http://a/?x=1\" must not have a query or fragment");
  EXPECT_ERR(
      "servers:\n- url: 'http://a b'\n",
      "prometheus-config /etc/p.yaml:2: servers[0].url: \"http://a b\" must not contain spaces or control "
      "characters");
  /* user:password@ is refused without quoting the url, whatever else is wrong with it. */
  EXPECT_ERR(
      "servers:\n- url: https://keda:" SECRET "@prom:9090\n",
      "prometheus-config /etc/p.yaml:2: servers[0].url: must not hold user:password@ (use basic_auth)");
  EXPECT_ERR(
      "servers:\n- url: htps://keda:" SECRET "@prom:9090\n",
      "prometheus-config /etc/p.yaml:2: servers[0].url: must not hold user:password@ (use basic_auth)");
  /* Duplicates: the same server after the trailing '/' is dropped, and scheme and host in any case. */
  EXPECT_ERR("servers:\n- url: https://p:9090\n- url: https://p:9090/\n",
             "prometheus-config /etc/p.yaml:3: servers[1].url: \"https://p:9090/\" is already the url of "
             "servers[0]");
  EXPECT_ERR("servers:\n- url: https://p:9090/api\n- url: http://q\n- url: HTTPS://P:9090/api\n",
             "prometheus-config /etc/p.yaml:4: servers[2].url: \"HTTPS://P:9090/api\" is already the url of "
             "servers[0]");
  /* Different paths are different servers (a path prefix of the other is fine: the longest wins). */
  struct ps_prom_config c;
  parse_ok("servers:\n- url: https://p:9090\n- url: https://p:9090/API\n- url: https://p:9090/api\n", &c);
  ps_prom_config_free(&c);
}

Test(prom_config_check, headers_cannot_smuggle) {
  EXPECT_ERR(
      "servers:\n- url: http://a\n  headers: {'X-A: " SECRET "': b}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].headers: a header name must be an HTTP token: letters, "
      "digits and !#$%&'*+-.^_`|~");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  headers: {'': b}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].headers: a header name must be an HTTP token: letters, "
      "digits and !#$%&'*+-.^_`|~");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  headers:\n    X-A: \"" SECRET "\\r\\nHost: evil\"\n",
      "prometheus-config /etc/p.yaml:4: servers[0].headers: header \"X-A\": the value must not contain "
      "control characters (CR, LF, NUL, ...)");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  headers:\n    X-A: \"" SECRET "\\n\"\n",
      "prometheus-config /etc/p.yaml:4: servers[0].headers: header \"X-A\": the value must not contain "
      "control characters (CR, LF, NUL, ...)");
  static const char nul[] = "servers:\n- url: http://a\n  headers: {X-A: \"" SECRET "\\0\"}\n";
  cr_assert_str_eq(
      parse_err(nul, sizeof nul - 1),
      "prometheus-config /etc/p.yaml:3: servers[0].headers: the value must not contain a NUL byte");
  const char *reserved = "cannot be set here (reserved: Accept, Accept-Encoding, Authorization, Connection, "
                         "Content-Encoding, Content-Length, Content-Type, Expect, Host, Keep-Alive, "
                         "Proxy-Authenticate, Proxy-Authorization, Proxy-Connection, TE, Trailer, "
                         "Transfer-Encoding, Upgrade, User-Agent, WWW-Authenticate)";
  const char *names[] = {"Authorization", "host", "CONTENT-LENGTH", "Transfer-Encoding", "Connection"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char yaml[256], want[512];
    snprintf(yaml, sizeof yaml, "servers:\n- url: http://a\n  headers: {%s: " SECRET "}\n", names[i]);
    snprintf(want, sizeof want, "prometheus-config /etc/p.yaml:3: servers[0].headers: header \"%s\" %s",
             names[i], reserved);
    EXPECT_ERR(yaml, want);
  }
  EXPECT_ERR("servers:\n- url: http://a\n  headers:\n    X-Scope-OrgID: a\n    x-scope-orgid: b\n",
             "prometheus-config /etc/p.yaml:5: servers[0].headers: header \"x-scope-orgid\" is given twice");
}

/* ---- ps_prom_config_match ------------------------------------------------------------------------ */

Test(prom_config_check, match_longest_prefix_at_a_boundary) {
  struct ps_prom_config c;
  parse_ok("servers:\n"
           "- url: https://p:9090\n"
           "- url: https://p:9090/tenant/a/\n"
           "- url: http://Mimir:8080/prometheus\n",
           &c);
  const struct ps_prom_server_cfg *root = &c.servers[0], *tenant = &c.servers[1], *mimir = &c.servers[2];
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090"), root);
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090/"), root, "trailing slashes are ignored");
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090//"), root);
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090/api"), root);
  cr_assert_null(ps_prom_config_match(&c, "https://p:90901"), "not at a boundary: another port");
  cr_assert_null(ps_prom_config_match(&c, "https://p:909"), "shorter than the url");
  cr_assert_null(ps_prom_config_match(&c, "https://p"));
  cr_assert_null(ps_prom_config_match(&c, "http://p:9090"), "another scheme");
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090/tenant/a"), tenant, "the longest prefix wins");
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090/tenant/a/x"), tenant);
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090/tenant/ab"), root, "a path boundary too");
  cr_assert_eq(ps_prom_config_match(&c, "HTTPS://P:9090/tenant/a"), tenant, "scheme and host in any case");
  cr_assert_eq(ps_prom_config_match(&c, "https://p:9090/Tenant/a"), root, "the path exactly");
  cr_assert_eq(ps_prom_config_match(&c, "http://mimir:8080/prometheus/"), mimir);
  cr_assert_null(ps_prom_config_match(&c, "http://mimir:8080/prom"));
  cr_assert_null(ps_prom_config_match(&c, "http://mimir:8080"));
  cr_assert_null(ps_prom_config_match(NULL, "https://p:9090"));
  cr_assert_null(ps_prom_config_match(&c, NULL));
  ps_prom_config_free(&c);
  struct ps_prom_config none = {0};
  cr_assert_null(ps_prom_config_match(&none, "https://p:9090"));
}
