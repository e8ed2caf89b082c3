/* Tests src/prom_servers.c: the --prometheus-config servers at run time. Startup errors name the server,
 * the key and the file, never the secret; the header block of a request (credentials, configured headers,
 * the trigger's customHeaders minus what the configuration sets); the TLS context chosen (configured, which
 * unsafeSsl does not change, and not listed); and reloads on a real loop with real files through filewatch: a
 * rewritten token is used by the next request, a file that goes away keeps the old one. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "cert_fixture.h"
#include "filewatch.h"
#include "http_client.h"
#include "loop_fixture.h"
#include "prom_config.h"
#include "prom_servers.h"

static char dir[64];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/ps-test-psrv-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(prom_servers, .init = setup, .fini = teardown, .timeout = 30);

static char *file(const char *name, const char *text) { return ps_test_write_file(dir, name, text); }

/* Parses yaml (DIR replaced by the test's folder) and builds the servers: their ps_prom_servers_new result,
 * err set. */
static int build(const char *yaml, struct ps_prom_servers **out, char *err, size_t errlen) {
  char text[4096], *w = text;
  for (const char *r = yaml; *r != '\0' && w < text + sizeof text - 80;) {
    if (strncmp(r, "DIR", 3) == 0) {
      w += sprintf(w, "%s", dir);
      r += 3;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
  struct ps_prom_config cfg;
  char cfgname[128];
  snprintf(cfgname, sizeof cfgname, "%s/cfg.yaml", dir);
  cr_assert_eq(ps_prom_config_parse(text, strlen(text), cfgname, &cfg, err, errlen), 0, "%s", err);
  int rc = ps_prom_servers_new(&cfg, out, err, errlen);
  ps_prom_config_free(&cfg);
  return rc;
}

/* The header block and options a request to url gets. */
static void apply(struct ps_prom_servers *s, const char *url, bool unsafe, const char *custom,
                  struct ps_http_opts *o, struct ps_buf *b) {
  memset(o, 0, sizeof *o);
  ps_buf_init(b);
  cr_assert_eq(ps_prom_servers_apply(s, url, unsafe, custom, o, b), 0);
}

Test(prom_servers, startup_errors_name_the_key_and_file_never_the_secret) {
  struct ps_prom_servers *s;
  char err[1024];
  free(file("bad.pem", "not a certificate\n"));
  cr_assert_eq(build("servers:\n  - url: https://p:9090\n    tls_config: {ca_file: DIR/bad.pem}\n", &s, err,
                     sizeof err),
               UV_EINVAL);
  cr_assert(strstr(err, "servers[0] (https://p:9090)") && strstr(err, "tls_config.ca_file") &&
                strstr(err, "/bad.pem"),
            "%s", err);
  /* a key that is not the certificate's */
  struct ps_test_cert ca, a, b;
  ps_test_cert_ca(&ca, "ca");
  ps_test_cert_leaf(&a, &ca, 2);
  ps_test_cert_leaf(&b, &ca, 3);
  free(file("a.crt", a.cert));
  free(file("b.key", b.key));
  cr_assert_eq(build("servers:\n  - url: https://p:9090\n    tls_config: {cert_file: DIR/a.crt, key_file: "
                     "DIR/b.key}\n",
                     &s, err, sizeof err),
               UV_EINVAL);
  cr_assert(strstr(err, "tls_config.cert_file") && strstr(err, "/b.key"), "%s", err);
  cr_assert_null(strstr(err, "PRIVATE"), "%s", err);
  ps_test_cert_free(&ca);
  ps_test_cert_free(&a);
  ps_test_cert_free(&b);
  /* an empty token, one with a line break inside: named, not quoted */
  free(file("empty", " \n"));
  cr_assert_eq(build("servers:\n  - url: http://p:9090\n    authorization: {credentials_file: DIR/empty}\n",
                     &s, err, sizeof err),
               UV_EINVAL);
  cr_assert(strstr(err, "authorization.credentials_file") && strstr(err, "/empty is empty"), "%s", err);
  free(file("two-lines", "secret-part-one\nsecret-part-two\n"));
  cr_assert_eq(
      build("servers:\n  - url: http://p:9090\n    authorization: {credentials_file: DIR/two-lines}\n", &s,
            err, sizeof err),
      UV_EINVAL);
  cr_assert(strstr(err, "control character"), "%s", err);
  cr_assert_null(strstr(err, "secret-part"), "%s", err);
}

Test(prom_servers, headers_of_a_request) {
  struct ps_prom_servers *s;
  char err[1024];
  free(file("token", "  tok-abc\n"));
  free(file("pw", "s3cret\n"));
  cr_assert_eq(build("servers:\n"
                     "  - url: http://a:9090\n"
                     "    authorization: {credentials_file: DIR/token}\n"
                     "    headers: {X-Scope-OrgID: team-a}\n"
                     "  - url: http://b:9090\n"
                     "    basic_auth: {username: keda, password_file: DIR/pw}\n"
                     "  - url: http://c:9090\n"
                     "    authorization: {type: Token, credentials: inline-1}\n",
                     &s, err, sizeof err),
               0, "%s", err);
  struct ps_http_opts o;
  struct ps_buf b;
  /* the configured tenant and the credentials win over the trigger's; its other headers stay */
  apply(s, "http://a:9090/prom", false, "Authorization: Bearer theirs\r\nX-Scope-OrgID: other\r\nX-A: 1\r\n",
        &o, &b);
  cr_assert_str_eq(b.data, "X-A: 1\r\nAuthorization: Bearer tok-abc\r\nX-Scope-OrgID: team-a\r\n");
  cr_assert_eq(o.headers, b.data);
  cr_assert_null(o.tls); /* http: no context; https without tls_config: the client's default */
  ps_prom_servers_wipe(&b);
  apply(s, "http://b:9090", false, NULL, &o, &b);
  cr_assert_str_eq(b.data, "Authorization: Basic a2VkYTpzM2NyZXQ=\r\n"); /* keda:s3cret */
  ps_prom_servers_wipe(&b);
  apply(s, "http://c:9090", false, NULL, &o, &b);
  cr_assert_str_eq(b.data, "Authorization: Token inline-1\r\n");
  ps_prom_servers_wipe(&b);
  /* a server not listed: the trigger's headers only, no context unless unsafeSsl */
  apply(s, "http://a:90901", false, "X-Scope-OrgID: other\r\n", &o, &b);
  cr_assert_str_eq(b.data, "X-Scope-OrgID: other\r\n");
  cr_assert_null(o.tls);
  ps_prom_servers_wipe(&b);
  apply(s, "https://z:1", true, NULL, &o, &b);
  cr_assert_not_null(o.tls);
  ps_prom_servers_wipe(&b);
  ps_prom_servers_free(s);
  /* no --prometheus-config: the trigger's headers pass as they are */
  apply(NULL, "http://a:9090", false, "X-A: 1\r\n", &o, &b);
  cr_assert_str_eq(b.data, "X-A: 1\r\n");
  ps_prom_servers_wipe(&b);
}

Test(prom_servers, tls_contexts_and_server_name) {
  struct ps_test_cert ca, leaf;
  ps_test_cert_ca(&ca, "ca");
  ps_test_cert_leaf(&leaf, &ca, 2);
  free(file("ca.pem", ca.cert));
  free(file("c.crt", leaf.cert));
  free(file("c.key", leaf.key));
  struct ps_prom_servers *s;
  char err[1024];
  cr_assert_eq(build("servers:\n  - url: https://a:9091\n    tls_config: {ca_file: DIR/ca.pem, cert_file: "
                     "DIR/c.crt, key_file: DIR/c.key, server_name: prom.internal}\n",
                     &s, err, sizeof err),
               0, "%s", err);
  struct ps_http_opts o, u, n;
  struct ps_buf b;
  apply(s, "https://a:9091", false, NULL, &o, &b);
  ps_prom_servers_wipe(&b);
  apply(s, "https://a:9091", true, NULL, &u, &b);
  ps_prom_servers_wipe(&b);
  apply(s, "https://other:9091", true, NULL, &n, &b);
  ps_prom_servers_wipe(&b);
  cr_assert_not_null(o.tls);
  cr_assert_not_null(n.tls);
  /* the configured server keeps its verified context whatever the trigger's unsafeSsl says; a server not
   * listed gets the shared one without verification */
  cr_assert_eq(u.tls, o.tls);
  cr_assert_neq(n.tls, o.tls);
  cr_assert_str_eq(o.tls_server_name, "prom.internal");
  cr_assert_null(n.tls_server_name);
  ps_prom_servers_free(s);
  ps_test_cert_free(&ca);
  ps_test_cert_free(&leaf);
}

/* ---- reloads on a real loop ---------------------------------------------------------------------- */

static struct ps_prom_servers *srv;
static const char *want;

static bool header_is(void *unused) {
  (void)unused;
  struct ps_http_opts o;
  struct ps_buf b;
  apply(srv, "http://a:9090", false, NULL, &o, &b);
  bool same = strcmp(b.data, want) == 0;
  ps_prom_servers_wipe(&b);
  return same;
}

static size_t nfailed(void) {
  size_t ok, failed;
  ps_prom_servers_reloads(srv, &ok, &failed);
  return failed;
}

static bool watch_ready(void *unused) {
  (void)unused;
  return ps_prom_servers_watch_ready(srv);
}

static size_t failed_before;

static bool failed_again(void *unused) {
  (void)unused;
  return nfailed() > failed_before;
}

static void replace(const char *name, const char *text) {
  char *tmp = file("tmp", text), path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rename(tmp, path), 0);
  free(tmp);
}

Test(prom_servers, a_rewritten_token_is_used_and_a_missing_one_keeps_the_old) {
  uv_loop_t loop;
  cr_assert_eq(uv_loop_init(&loop), 0);
  struct ps_filewatch *w;
  cr_assert_eq(ps_filewatch_new(&loop, 20, &w), 0);
  free(file("token", "tok-1\n"));
  char err[1024];
  cr_assert_eq(build("servers:\n  - url: http://a:9090\n    authorization: {credentials_file: DIR/token}\n",
                     &srv, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(ps_prom_servers_watch(srv, w, err, sizeof err), 0, "%s", err);
  want = "Authorization: Bearer tok-1\r\n";
  cr_assert(header_is(NULL));
  /* a change is delivered once the watcher's first read is in (filewatch.h, "The baseline") */
  cr_assert(ps_test_run_until(&loop, watch_ready, NULL, 10000));
  replace("token", "tok-2\n");
  want = "Authorization: Bearer tok-2\r\n";
  cr_assert(ps_test_run_until(&loop, header_is, NULL, 10000), "the rotated token was not used");
  /* a line break inside: refused, the old one stays */
  failed_before = nfailed();
  replace("token", "tok-3\nX-Injected: 1\n");
  cr_assert(ps_test_run_until(&loop, failed_again, NULL, 10000), "the bad token was not refused");
  cr_assert(header_is(NULL));
  /* gone (a kubelet swap half done, a wrong path): the old one stays, and a later good one is taken */
  char path[128];
  snprintf(path, sizeof path, "%s/token", dir);
  cr_assert_eq(unlink(path), 0);
  failed_before = nfailed();
  cr_assert(ps_test_run_until(&loop, failed_again, NULL, 10000), "the missing file was not reported");
  cr_assert(header_is(NULL));
  replace("token", "tok-4");
  want = "Authorization: Bearer tok-4\r\n";
  cr_assert(ps_test_run_until(&loop, header_is, NULL, 10000), "the token after the failures was not used");
  ps_filewatch_close(w);
  ps_prom_servers_free(srv);
  srv = NULL;
  PS_LOOP_END(&loop);
}
