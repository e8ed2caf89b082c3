/* The gRPC port's TLS from files (src/tls_files.c): startup errors that name the flag and the file, and
 * rotation through a real filewatch on a real loop (files in a temporary directory, replaced as atomic
 * writers do). Each reload is awaited as an event (the reload counter), with a generous bound. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cert_fixture.h"
#include "filewatch.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "tls_files.h"

#define POLL_MS 20
#define WAIT_MS 10000

static uv_loop_t loop;
static char dir[64];
static struct ps_test_cert ca, leaf;

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) { return remove(path); }

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  snprintf(dir, sizeof dir, "/tmp/ps_tls_files_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  ps_test_cert_ca(&ca, "prescale test CA");
  ps_test_cert_leaf(&leaf, &ca, 2);
}

static void teardown(void) {
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  ps_test_cert_free(&ca);
  ps_test_cert_free(&leaf);
}

TestSuite(tls_files, .init = setup, .fini = teardown, .timeout = 60);

/* Writes dir/name through a temporary file renamed over it, so that no poll reads half; returns the path. */
static char *put(const char *name, const char *text) {
  char tmp[128];
  snprintf(tmp, sizeof tmp, "%s.tmp", name);
  char *t = ps_test_write_file(dir, tmp, text);
  char *path = malloc(strlen(dir) + strlen(name) + 2);
  sprintf(path, "%s/%s", dir, name);
  cr_assert_eq(rename(t, path), 0);
  free(t);
  return path;
}

static double metric(const char *name, const char *labels) {
  double v = ps_metrics_get(name, labels);
  return isnan(v) ? 0 : v;
}

static int load(const char *cert, const char *key, const char *ca_path, char *err, size_t len) {
  struct ps_tls_files *f = NULL;
  int r = ps_tls_files_load(cert, key, ca_path, &f, err, len);
  ps_tls_files_free(f);
  return r;
}

Test(tls_files, startup_errors_name_the_flag_and_the_file) {
  char *cert = put("tls.crt", leaf.cert), *key = put("tls.key", leaf.key), *cap = put("ca.crt", ca.cert);
  char *junk = put("junk.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
  struct ps_test_cert other;
  ps_test_cert_leaf(&other, &ca, 3);
  char *other_key = put("other.key", other.key);
  char missing[128], err[512], want[512];
  snprintf(missing, sizeof missing, "%s/missing.key", dir);

  cr_assert_eq(load(cert, key, cap, err, sizeof err), 0, "%s", err);
  cr_assert_eq(load(cert, missing, NULL, err, sizeof err), UV_ENOENT);
  snprintf(want, sizeof want, "--tls-key: read %s: no such file or directory", missing);
  cr_assert_str_eq(err, want);
  cr_assert_eq(load(junk, key, NULL, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want, "--tls-cert %s: cert: no valid PEM certificate", junk);
  cr_assert_str_eq(err, want);
  cr_assert_eq(load(cert, other_key, NULL, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want, "--tls-key %s: key does not match certificate", other_key);
  cr_assert_str_eq(err, want);
  cr_assert_eq(load(cert, key, junk, err, sizeof err), UV_EINVAL);
  snprintf(want, sizeof want, "--tls-client-ca %s: ca: no valid PEM certificate", junk);
  cr_assert_str_eq(err, want);
  /* A key given as the certificate: the words never quote it. */
  cr_assert_eq(load(key, key, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_null(strstr(err, "PRIVATE"), "%s", err);
  cr_assert_null(strstr(err, leaf.key + 28), "%s", err);

  ps_test_cert_free(&other);
  free(cert), free(key), free(cap), free(junk), free(other_key);
  PS_LOOP_END(&loop);
}

static double want_ok, want_failed;
static bool reloads_reached(void *arg) {
  return metric(PS_TLS_RELOADS_METRIC, "result=\"ok\"") >= want_ok &&
         metric(PS_TLS_RELOADS_METRIC, "result=\"failed\"") >= want_failed;
}

static struct ps_filewatch *watch;
static bool ready(void *g) { return ps_filewatch_group_ready(g); }

Test(tls_files, rotation_reloads_and_a_bad_file_keeps_the_certificate) {
  char *cert = put("tls.crt", leaf.cert), *key = put("tls.key", leaf.key);
  struct ps_tls_files *f = NULL;
  char err[512];
  cr_assert_eq(ps_tls_files_load(cert, key, NULL, &f, err, sizeof err), 0, "%s", err);
  int64_t first = 0, now = 0;
  cr_assert_eq(ps_tls_ctx_not_after(ps_tls_files_ctx(f), &first), 0);
  cr_assert_eq(metric(PS_TLS_EXPIRY_METRIC, "listener=\"grpc\""), (double)first);
  cr_assert_eq(metric(PS_TLS_RELOADS_METRIC, "result=\"ok\""), 0);

  cr_assert_eq(ps_filewatch_new(&loop, POLL_MS, &watch), 0);
  /* The baseline read of the group must finish before a change can be delivered. */
  struct ps_filewatch_group *g = NULL;
  cr_assert_eq(ps_tls_files_watch(f, watch, &g), 0);
  cr_assert(ps_test_run_until(&loop, ready, g, WAIT_MS));

  /* A renewed certificate (a new key, a later notAfter): reloaded, and the gauge follows. */
  struct ps_test_cert renewed;
  ps_test_cert_make(&renewed, &ca, "localhost", "DNS:localhost", -60, 90 * 86400, 7);
  free(put("tls.key", renewed.key));
  free(put("tls.crt", renewed.cert));
  want_ok = 1, want_failed = 0;
  cr_assert(ps_test_run_until(&loop, reloads_reached, NULL, WAIT_MS));
  /* A writer that replaced one file and not yet the other can be seen half done: a failure, then the
   * reload. Either way the last word is the renewed certificate. */
  cr_assert_eq(ps_tls_ctx_not_after(ps_tls_files_ctx(f), &now), 0);
  cr_assert_gt(now, first + 80 * 86400);
  cr_assert_eq(metric(PS_TLS_EXPIRY_METRIC, "listener=\"grpc\""), (double)now);

  /* A certificate that does not load: the renewed one stays. */
  double failed = metric(PS_TLS_RELOADS_METRIC, "result=\"failed\"");
  free(put("tls.crt", "garbage\n"));
  want_failed = failed + 1;
  cr_assert(ps_test_run_until(&loop, reloads_reached, NULL, WAIT_MS));
  int64_t kept = 0;
  cr_assert_eq(ps_tls_ctx_not_after(ps_tls_files_ctx(f), &kept), 0);
  cr_assert_eq(kept, now);
  cr_assert_eq(metric(PS_TLS_EXPIRY_METRIC, "listener=\"grpc\""), (double)now);

  /* A file that disappears: the same. */
  cr_assert_eq(remove(key), 0);
  want_failed = failed + 2;
  cr_assert(ps_test_run_until(&loop, reloads_reached, NULL, WAIT_MS));
  cr_assert_eq(ps_tls_ctx_not_after(ps_tls_files_ctx(f), &kept), 0);
  cr_assert_eq(kept, now);

  ps_filewatch_close(watch);
  PS_LOOP_END(&loop);
  ps_tls_files_free(f);
  ps_test_cert_free(&renewed);
  free(cert), free(key);
}
