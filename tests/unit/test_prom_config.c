/* Tests src/prom_config.c: the --prometheus-config YAML parsed into its struct, the keys and types it
 * refuses with their exact words (file, line, key path) and never a secret in them, the YAML features it
 * refuses, the bounds, and the files it names checked by ps_prom_config_load on a real directory. The rules
 * across keys and ps_prom_config_match (prom_config_check.c) are test_prom_config_check.c's. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "prom_config.h"
#include "prom_config_fixture.h"

/* ---- the issue's example ------------------------------------------------------------------------- */

static const char example[] =
    "servers:\n"
    "  - url: https://thanos-querier.openshift-monitoring.svc:9091   # matched by prefix against "
    "serverAddress\n"
    "    authorization: {type: Bearer, credentials_file: "
    "/var/run/secrets/kubernetes.io/serviceaccount/token}\n"
    "    tls_config: {ca_file: /etc/prescale/ca.pem}\n"
    "  - url: https://prometheus.example:9090/\n"
    "    basic_auth: {username: keda, password_file: /etc/prescale/prom-password}\n"
    "    tls_config: {ca_file: ca.pem, cert_file: /etc/prescale/tls.crt, key_file: /etc/prescale/tls.key,\n"
    "                 server_name: prometheus.internal, insecure_skip_verify: false}\n"
    "    headers: {X-Scope-OrgID: team-a}\n";

Test(prom_config, the_issues_example) {
  struct ps_prom_config c;
  parse_ok(example, &c);
  cr_assert_eq(c.nservers, 2);
  const struct ps_prom_server_cfg *t = &c.servers[0], *p = &c.servers[1];
  cr_assert_str_eq(t->url, "https://thanos-querier.openshift-monitoring.svc:9091");
  cr_assert_str_eq(t->auth_type, "Bearer");
  cr_assert_null(t->credentials);
  cr_assert_str_eq(t->credentials_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  cr_assert_null(t->username);
  cr_assert_str_eq(t->ca_file, "/etc/prescale/ca.pem");
  cr_assert_null(t->cert_file);
  cr_assert_null(t->key_file);
  cr_assert_null(t->server_name);
  cr_assert_not(t->insecure_skip_verify);
  cr_assert_eq(t->nheaders, 0);

  cr_assert_str_eq(p->url, "https://prometheus.example:9090", "trailing '/' dropped");
  cr_assert_null(p->auth_type);
  cr_assert_str_eq(p->username, "keda");
  cr_assert_null(p->password);
  cr_assert_str_eq(p->password_file, "/etc/prescale/prom-password");
  cr_assert_str_eq(p->ca_file, "/etc/ca.pem", "a relative path is joined to the config's directory");
  cr_assert_str_eq(p->cert_file, "/etc/prescale/tls.crt");
  cr_assert_str_eq(p->key_file, "/etc/prescale/tls.key");
  cr_assert_str_eq(p->server_name, "prometheus.internal");
  cr_assert_not(p->insecure_skip_verify);
  cr_assert_eq(p->nheaders, 1);
  cr_assert_str_eq(p->headers[0].name, "X-Scope-OrgID");
  cr_assert_str_eq(p->headers[0].value, "team-a");
  ps_prom_config_free(&c);
  cr_assert_null(c.servers);
  cr_assert_eq(c.nservers, 0);
  ps_prom_config_free(&c); /* twice is harmless */
}

Test(prom_config, block_style_inline_secrets_and_defaults) {
  struct ps_prom_config c;
  parse_ok("servers:\n"
           "- url: http://mimir:8080/prometheus\n"
           "  authorization:\n"
           "    credentials: \"" SECRET "\"\n"
           "  headers:\n"
           "    X-Scope-OrgID: team-a|team-b\n"
           "    X-Empty:\n"
           "    x-tab: \"a\\tb\"\n"
           "- url: HTTPS://Prom:9090\n"
           "  basic_auth:\n"
           "    username: keda\n"
           "    password: " SECRET "\n"
           "  tls_config:\n"
           "    insecure_skip_verify: true\n"
           "- url: http://plain:9090\n",
           &c);
  cr_assert_eq(c.nservers, 3);
  cr_assert_str_eq(c.servers[0].auth_type, "Bearer", "type defaults to Bearer");
  cr_assert_str_eq(c.servers[0].credentials, SECRET);
  cr_assert_eq(c.servers[0].nheaders, 3);
  cr_assert_str_eq(c.servers[0].headers[0].value, "team-a|team-b");
  cr_assert_str_eq(c.servers[0].headers[1].name, "X-Empty");
  cr_assert_str_eq(c.servers[0].headers[1].value, "", "a null header value is empty");
  cr_assert_str_eq(c.servers[0].headers[2].value, "a\tb", "HTAB is allowed in a value");
  cr_assert_str_eq(c.servers[1].password, SECRET);
  cr_assert(c.servers[1].insecure_skip_verify);
  cr_assert_null(c.servers[2].auth_type);
  cr_assert_null(c.servers[2].username);
  ps_prom_config_free(&c);

  /* No servers at all is a valid (if idle) file; a relative path stays relative without a directory. */
  parse_ok("servers: []\n", &c);
  cr_assert_eq(c.nservers, 0);
  ps_prom_config_free(&c);
  char err[256];
  cr_assert_eq(ps_prom_config_parse("servers: [{url: 'https://p', tls_config: {ca_file: ca.pem}}]", 60,
                                    "p.yaml", &c, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(c.servers[0].ca_file, "ca.pem");
  ps_prom_config_free(&c);
}

/* ---- unknown and unsupported keys ---------------------------------------------------------------- */

Test(prom_config, unknown_keys_name_file_line_and_path) {
  EXPECT_ERR(
      "servers:\n"
      "  - url: https://a:9090\n"
      "  - url: https://b:9090\n"
      "    tls_config:\n"
      "      ca_file: /x\n"
      "\n"
      "      cafile: /y\n",
      "prometheus-config /etc/p.yaml:7: servers[1].tls_config: unknown key \"cafile\" (known: ca_file, "
      "cert_file, key_file, server_name, insecure_skip_verify)");
  EXPECT_ERR("server:\n  - url: http://a\n",
             "prometheus-config /etc/p.yaml:1: unknown key \"server\" (known: servers)");
  EXPECT_ERR("servers:\n- url: http://a\n  auth: {}\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: unknown key \"auth\" (known: url, authorization, "
             "basic_auth, tls_config, headers)");
  EXPECT_ERR("servers:\n- url: http://a\n  authorization: {token: x}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].authorization: unknown key \"token\" (known: type, "
             "credentials, credentials_file)");
  EXPECT_ERR("servers:\n- url: http://a\n  basic_auth: {user: x}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].basic_auth: unknown key \"user\" (known: username, "
             "password, password_file)");
  /* A key that is itself a pasted secret is quoted bounded, never more than PS_FLAGS_QUOTE_MAX bytes. */
  char big[400] = "servers:\n- url: http://a\n  ";
  memset(big + strlen(big), 'k', 200);
  strcat(big, ": 1\n");
  const char *e = parse_err(big, strlen(big));
  cr_assert(strstr(e, "...\"") != NULL && strlen(e) < 250, "%s", e);
}

Test(prom_config, prometheus_keys_prescale_does_not_support) {
  EXPECT_ERR("servers:\n- url: http://a\n  oauth2: {client_id: x}\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: \"oauth2\" is not supported by prescale");
  EXPECT_ERR("servers:\n- url: http://a\n  proxy_url: http://proxy:3128\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: \"proxy_url\" is not supported by prescale");
  EXPECT_ERR("servers:\n- url: http://a\n  follow_redirects: false\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: \"follow_redirects\" is not supported by prescale "
             "(prescale never follows redirects)");
  EXPECT_ERR("servers:\n- url: http://a\n  enable_http2: true\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: \"enable_http2\" is not supported by prescale "
             "(prescale speaks HTTP/1.1 to Prometheus)");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  bearer_token_file: /t\n",
      "prometheus-config /etc/p.yaml:3: servers[0]: \"bearer_token_file\" is not supported by prescale "
      "(use authorization: {credentials_file: ...})");
  EXPECT_ERR("servers:\n- url: http://a\n  bearer_token: " SECRET "\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: \"bearer_token\" is not supported by prescale "
             "(use authorization: {credentials: ...})");
  EXPECT_ERR("servers:\n- url: https://a\n  tls_config: {min_version: TLS13}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].tls_config: \"min_version\" is not supported by "
             "prescale (prescale uses TLS 1.2 or later)");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  tls_config: {ca: \"-----BEGIN\"}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config: \"ca\" is not supported by prescale (use "
      "ca_file)");
  EXPECT_ERR("servers:\n- url: https://a\n  basic_auth: {username_file: /u}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].basic_auth: \"username_file\" is not supported by "
             "prescale");
}

/* ---- types --------------------------------------------------------------------------------------- */

Test(prom_config, wrong_types) {
  EXPECT_ERR("servers:\n- url: [http://a]\n",
             "prometheus-config /etc/p.yaml:2: servers[0].url: expected a string, got a sequence");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  tls_config:\n    ca_file: [/a, /b]\n",
      "prometheus-config /etc/p.yaml:4: servers[0].tls_config.ca_file: expected a string, got a sequence "
      "(nothing nests deeper than 4 levels)");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  tls_config: {insecure_skip_verify: yes}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config.insecure_skip_verify: expected true or false, "
      "got \"yes\"");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  tls_config: {insecure_skip_verify: \"true\"}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].tls_config.insecure_skip_verify: expected true or false, "
      "got \"true\"");
  EXPECT_ERR("servers:\n- url: https://a\n  tls_config: https\n",
             "prometheus-config /etc/p.yaml:3: servers[0].tls_config: expected a mapping, got a scalar");
  EXPECT_ERR(
      "servers:\n- url: https://a\n  headers: [X-A]\n",
      "prometheus-config /etc/p.yaml:3: servers[0].headers: expected a mapping of header names to values, "
      "got a sequence");
  EXPECT_ERR(
      "servers: {url: http://a}\n",
      "prometheus-config /etc/p.yaml:1: servers: expected a sequence of servers (- url: ...), got a mapping");
  EXPECT_ERR("servers:\n- http://a\n",
             "prometheus-config /etc/p.yaml:2: servers[0]: expected a mapping (url: ...), got a scalar");
  EXPECT_ERR("- url: http://a\n",
             "prometheus-config /etc/p.yaml:1: expected a mapping with servers:, got a sequence");
  EXPECT_ERR("servers:\n- url: http://a\n  ? [a]\n  : b\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: a key must be a scalar, got a sequence");
  EXPECT_ERR(
      "servers:\n- url: http://a\n  authorization: {credentials: [" SECRET "]}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].authorization.credentials: expected a string, got a "
      "sequence (nothing nests deeper than 4 levels)");
  EXPECT_ERR("servers:\n- url: http://a\n  url: http://b\n",
             "prometheus-config /etc/p.yaml:3: servers[0]: key \"url\" is given twice");
  EXPECT_ERR("servers: []\nservers: []\n", "prometheus-config /etc/p.yaml:2: key \"servers\" is given twice");
  EXPECT_ERR("", "prometheus-config /etc/p.yaml:1: the file is empty (expected servers: ...)");
  EXPECT_ERR("# only a comment\n",
             "prometheus-config /etc/p.yaml:1: the file is empty (expected servers: ...)");
  EXPECT_ERR("{}\n", "prometheus-config /etc/p.yaml:1: servers: is required");
  EXPECT_ERR(
      "servers:\n- {}\n",
      "prometheus-config /etc/p.yaml:2: servers[0]: url is required (e.g. url: https://prometheus:9090)");
}

Test(prom_config, yaml_syntax_errors_say_where) {
  EXPECT_ERR(
      "servers:\n- url: http://a\n  headers: {X-A: b\n",
      "prometheus-config /etc/p.yaml:4: servers[0].headers: not valid YAML: while parsing a flow mapping, "
      "did not find expected ',' or '}'");
  EXPECT_ERR("servers:\n  - url: http://a\n bad: x\n",
             "prometheus-config /etc/p.yaml:3: not valid YAML: while parsing a block mapping, did not find "
             "expected key");
  /* A control byte in the file is libyaml's reader error, found as the input is decoded (so before any key
   * path): it has an offset, turned into a line. */
  EXPECT_ERR("servers:\n- url: http://a\n  headers: {X-A: \"\x01\"}\n",
             "prometheus-config /etc/p.yaml:3: not valid YAML: control characters are not "
             "allowed");
}

/* ---- YAML features that are refused -------------------------------------------------------------- */

Test(prom_config, anchors_aliases_tags_and_documents_are_refused) {
  EXPECT_ERR("servers:\n- &s {url: http://a}\n",
             "prometheus-config /etc/p.yaml:2: servers: YAML anchors (&name) are not supported");
  EXPECT_ERR("servers:\n- url: !!str http://a\n",
             "prometheus-config /etc/p.yaml:2: servers[0].url: YAML tags (!tag) are not supported");
  EXPECT_ERR("servers:\n- url: http://a\n---\nservers: []\n",
             "prometheus-config /etc/p.yaml:3: more than one YAML document (---): put every server under one "
             "servers:");
  /* Billion laughs: it fails at its first anchor, after a handful of events, whatever follows. */
  EXPECT_ERR("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
             "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
             "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
             "prometheus-config /etc/p.yaml:1: unknown key \"a\" (known: servers)");
  EXPECT_ERR("servers: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n",
             "prometheus-config /etc/p.yaml:1: servers: YAML anchors (&name) are not supported");
  EXPECT_ERR("servers:\n- url: http://a\n  headers: {X-A: *x}\n",
             "prometheus-config /etc/p.yaml:3: servers[0].headers: YAML aliases (*name) are not supported");
}

/* ---- bounds -------------------------------------------------------------------------------------- */

/* A file of n servers, each with h headers, into a malloc'd string. */
static char *many(size_t n, size_t h) {
  size_t cap = 64 + n * (64 + h * 32), len = 0;
  char *s = malloc(cap);
  cr_assert_not_null(s);
  len += (size_t)snprintf(s + len, cap - len, "servers:\n");
  for (size_t i = 0; i < n; i++) {
    len += (size_t)snprintf(s + len, cap - len, "- url: http://p%zu:9090\n", i);
    if (h > 0) len += (size_t)snprintf(s + len, cap - len, "  headers:\n");
    for (size_t k = 0; k < h; k++) len += (size_t)snprintf(s + len, cap - len, "    X-H%zu: v\n", k);
  }
  return s;
}

Test(prom_config, bounds_servers_headers_events) {
  struct ps_prom_config c;
  char *s = many(PS_PROM_CONFIG_MAX_SERVERS, 0);
  parse_ok(s, &c);
  cr_assert_eq(c.nservers, PS_PROM_CONFIG_MAX_SERVERS);
  ps_prom_config_free(&c);
  free(s);
  s = many(PS_PROM_CONFIG_MAX_SERVERS + 1, 0);
  cr_assert_str_eq(parse_err(s, strlen(s)),
                   "prometheus-config /etc/p.yaml:66: servers: more than 64 servers");
  free(s);

  s = many(1, PS_PROM_CONFIG_MAX_HEADERS);
  parse_ok(s, &c);
  cr_assert_eq(c.servers[0].nheaders, PS_PROM_CONFIG_MAX_HEADERS);
  ps_prom_config_free(&c);
  free(s);
  /* All the headers of a server, written out, within PS_PROM_CONFIG_MAX_HEADER_BYTES. */
  char hb[3 * 4096 + 128];
  int n = snprintf(hb, sizeof hb, "servers:\n- url: http://a\n  headers:\n    X-A: ");
  memset(hb + n, 'a', 4000); /* "X-A: " + 4000 + "\r\n": 4007 bytes */
  n += 4000;
  n += snprintf(hb + n, sizeof hb - (size_t)n, "\n    X-B: ");
  memset(hb + n, 'b', 4000); /* 8014 in all */
  n += 4000;
  hb[n] = '\0';
  parse_ok(hb, &c);
  ps_prom_config_free(&c);
  n += snprintf(hb + n, sizeof hb - (size_t)n, "\n    X-C: %0*d", 180, 0); /* 8014 + 187 > 8192 */
  cr_assert_str_eq(
      parse_err(hb, strlen(hb)),
      "prometheus-config /etc/p.yaml:6: servers[0].headers: the headers come to more than 8192 bytes");

  s = many(1, PS_PROM_CONFIG_MAX_HEADERS + 1);
  cr_assert_str_eq(parse_err(s, strlen(s)),
                   "prometheus-config /etc/p.yaml:36: servers[0].headers: more than 32 headers");
  free(s);

  /* Each server within its bounds, but all of them together past the events' bound. */
  s = many(PS_PROM_CONFIG_MAX_SERVERS, PS_PROM_CONFIG_MAX_HEADERS);
  const char *e = parse_err(s, strlen(s));
  cr_assert(
      strstr(e, ": more than 4096 YAML events (keys, values, starts and ends of mappings and sequences)") !=
          NULL,
      "%s", e);
  free(s);
}

Test(prom_config, bounds_sizes_and_depth) {
  /* One value: PS_PROM_CONFIG_MAX_SCALAR bytes pass, one more does not. */
  size_t cap = PS_PROM_CONFIG_MAX_SCALAR + 128;
  char *s = malloc(cap);
  cr_assert_not_null(s);
  for (size_t extra = 0; extra < 2; extra++) {
    int n = snprintf(s, cap, "servers:\n- url: http://a\n  authorization: {credentials: ");
    memset(s + n, 'x', PS_PROM_CONFIG_MAX_SCALAR + extra);
    strcpy(s + n + PS_PROM_CONFIG_MAX_SCALAR + extra, "}\n");
    struct ps_prom_config c;
    char err[512];
    int r = ps_prom_config_parse(s, strlen(s), FILE_NAME, &c, err, sizeof err);
    if (extra == 0) {
      cr_assert_eq(r, 0, "%s", err);
      cr_assert_eq(strlen(c.servers[0].credentials), PS_PROM_CONFIG_MAX_SCALAR);
      ps_prom_config_free(&c);
    } else {
      cr_assert_eq(r, UV_EINVAL);
      cr_assert_str_eq(err,
                       "prometheus-config /etc/p.yaml:3: servers[0].authorization.credentials: the value is "
                       "16385 bytes; the maximum is 16384");
    }
  }
  free(s);

  /* The whole file. */
  s = malloc(PS_PROM_CONFIG_MAX_BYTES + 2);
  memset(s, '#', PS_PROM_CONFIG_MAX_BYTES + 1);
  s[PS_PROM_CONFIG_MAX_BYTES + 1] = '\0';
  cr_assert_str_eq(parse_err(s, PS_PROM_CONFIG_MAX_BYTES + 1),
                   "prometheus-config /etc/p.yaml: the file is 262145 bytes; the maximum is 262144");
  free(s);

  /* Depth: 100000 nested sequences fail at the first one the schema does not expect, in a few events. */
  size_t deep = 100000;
  s = malloc(deep * 2 + 32);
  int n = snprintf(s, 32, "servers: ");
  memset(s + n, '[', deep);
  memset(s + n + deep, ']', deep);
  s[n + 2 * deep] = '\0';
  cr_assert_str_eq(
      parse_err(s, strlen(s)),
      "prometheus-config /etc/p.yaml:1: servers[0]: expected a mapping (url: ...), got a sequence");
  free(s);
  EXPECT_ERR(
      "servers:\n- url: http://a\n  headers: {X-A: {b: c}}\n",
      "prometheus-config /etc/p.yaml:3: servers[0].headers: expected a string, got a mapping (nothing nests "
      "deeper than 4 levels)");
}

/* ---- ps_prom_config_load: real files ------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *text, mode_t mode) {
  char p[128];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f, "%s", p);
  fputs(text, f);
  fclose(f);
  cr_assert_eq(chmod(p, mode), 0);
}

static int load(const char *dir, const char *name, struct ps_prom_config *c, char *err, size_t errlen) {
  char p[128];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return ps_prom_config_load(p, c, err, errlen);
}

Test(prom_config, load_checks_every_file_it_names) {
  char dir[] = "/tmp/test_prom_config_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  write_file(dir, "token", SECRET "\n", 0600);
  write_file(dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  write_file(dir, "good.yaml",
             "servers:\n"
             "- url: https://thanos:9091\n"
             "  authorization: {credentials_file: token}\n"
             "  tls_config: {ca_file: ca.pem}\n",
             0644);
  struct ps_prom_config c;
  char err[512] = "", want[512], p[128];
  cr_assert_eq(load(dir, "good.yaml", &c, err, sizeof err), 0, "%s", err);
  snprintf(p, sizeof p, "%s/token", dir);
  cr_assert_str_eq(c.servers[0].credentials_file, p, "resolved against the config's directory");
  ps_prom_config_free(&c);

  /* A missing file, named with its key and line. */
  write_file(dir, "missing.yaml",
             "servers:\n- url: https://thanos:9091\n  tls_config:\n    ca_file: /nonexistent/ca.pem\n", 0644);
  cr_assert_eq(load(dir, "missing.yaml", &c, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want,
           "prometheus-config %s/missing.yaml:4: servers[0].tls_config.ca_file: cannot read "
           "\"/nonexistent/ca.pem\": "
           "No such file or directory",
           dir);
  cr_assert_str_eq(err, want);
  cr_assert_null(c.servers);

  /* A directory where a file is expected. */
  write_file(dir, "dir.yaml",
             "servers:\n- url: https://t\n  basic_auth: {username: u, password_file: /tmp}\n", 0644);
  cr_assert_eq(load(dir, "dir.yaml", &c, err, sizeof err), UV_EINVAL);
  snprintf(
      want, sizeof want,
      "prometheus-config %s/dir.yaml:3: servers[0].basic_auth.password_file: \"/tmp\" is not a regular file",
      dir);
  cr_assert_str_eq(err, want);

  /* A path through a file, which no one can open, root included. */
  write_file(dir, "notdir.yaml", "servers:\n- url: https://t\n  tls_config: {ca_file: ca.pem/x}\n", 0644);
  cr_assert_eq(load(dir, "notdir.yaml", &c, err, sizeof err), UV_EINVAL);
  snprintf(
      want, sizeof want,
      "prometheus-config %s/notdir.yaml:3: servers[0].tls_config.ca_file: cannot read \"%s/ca.pem/x\": Not a "
      "directory",
      dir, dir);
  cr_assert_str_eq(err, want);

  /* A file this process cannot open (root opens it anyway: the case then says nothing). */
  write_file(dir, "secret", SECRET, 0000);
  write_file(dir, "perm.yaml", "servers:\n- url: https://t\n  authorization: {credentials_file: secret}\n",
             0644);
  if (geteuid() != 0) {
    cr_assert_eq(load(dir, "perm.yaml", &c, err, sizeof err), UV_EINVAL);
    snprintf(want, sizeof want,
             "prometheus-config %s/perm.yaml:3: servers[0].authorization.credentials_file: cannot read "
             "\"%s/secret\": Permission denied",
             dir, dir);
    cr_assert_str_eq(err, want);
  }

  /* The config file itself: missing, a directory, too large. */
  cr_assert_eq(load(dir, "nope.yaml", &c, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want, "prometheus-config %s/nope.yaml: cannot read: No such file or directory", dir);
  cr_assert_str_eq(err, want);
  cr_assert_eq(ps_prom_config_load(dir, &c, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want, "prometheus-config %s: not a regular file", dir);
  cr_assert_str_eq(err, want);
  char *big = malloc(PS_PROM_CONFIG_MAX_BYTES + 10);
  memset(big, '#', PS_PROM_CONFIG_MAX_BYTES + 9);
  big[PS_PROM_CONFIG_MAX_BYTES + 9] = '\0';
  write_file(dir, "big.yaml", big, 0644);
  free(big);
  cr_assert_eq(load(dir, "big.yaml", &c, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want,
           "prometheus-config %s/big.yaml: the file is 262145 bytes; the maximum is 262144", dir);
  cr_assert_str_eq(err, want, "read stops one byte past the bound");

  const char *names[] = {"token",  "ca.pem",    "good.yaml", "missing.yaml", "dir.yaml",
                         "secret", "perm.yaml", "big.yaml",  "notdir.yaml"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    cr_assert_eq(unlink(p), 0, "%s", p);
  }
  cr_assert_eq(rmdir(dir), 0);
}
