/* The gRPC port's TLS from files (see tls_files.h). */
#include "tls_files.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"

#define NFILES 3 /* cert, key, ca: the order of the watch group */

struct ps_tls_files {
  char *paths[NFILES]; /* paths[2] NULL without a client CA */
  size_t npaths;
  struct ps_tls_ctx *ctx;
};

static const char *const flag_of[NFILES] = {"--tls-cert", "--tls-key", "--tls-client-ca"};

/* Which file an error of tls.c is about: its words start with "cert:", "key" or "ca:". */
static size_t culprit(const char *words) {
  if (strncmp(words, "key", 3) == 0) return 1;
  if (strncmp(words, "ca:", 3) == 0) return 2;
  return 0;
}

/* The gauge, and a warning when the certificate is already out of date: it loads (a renewal may be on its
 * way), but every verifying client will refuse it. */
static void set_expiry(const struct ps_tls_files *f) {
  int64_t t;
  ps_metrics_declare(PS_TLS_EXPIRY_METRIC, PS_METRIC_GAUGE,
                     "notAfter of the certificate served on the gRPC port (seconds since the epoch).");
  if (ps_tls_ctx_not_after(f->ctx, &t) != 0) return;
  ps_metrics_set(PS_TLS_EXPIRY_METRIC, "listener=\"grpc\"", (double)t);
  if (t < (int64_t)time(NULL))
    ps_log(PS_LOG_WARN, "the TLS certificate has expired; clients will refuse it", "file", f->paths[0], NULL);
}

static void count_reload(const char *result) {
  ps_metrics_add(PS_TLS_RELOADS_METRIC, strcmp(result, "ok") == 0 ? "result=\"ok\"" : "result=\"failed\"", 1);
}

static void declare_reloads(void) {
  ps_metrics_declare(PS_TLS_RELOADS_METRIC, PS_METRIC_COUNTER,
                     "Reloads of the gRPC port's TLS files after a change or SIGHUP, by result (ok, failed: "
                     "the certificate in use was kept).");
  ps_metrics_add(PS_TLS_RELOADS_METRIC, "result=\"ok\"", 0);
  ps_metrics_add(PS_TLS_RELOADS_METRIC, "result=\"failed\"", 0);
}

static void pem_of(struct ps_tls_pem *pem, char *const data[NFILES], const size_t len[NFILES]) {
  *pem = (struct ps_tls_pem){.cert = data[0],
                             .cert_len = len[0],
                             .key = data[1],
                             .key_len = len[1],
                             .ca = data[2],
                             .ca_len = len[2]};
}

int ps_tls_files_load(const char *cert, const char *key, const char *ca, struct ps_tls_files **out, char *err,
                      size_t errlen) {
  *out = NULL;
  struct ps_tls_files *f = calloc(1, sizeof *f);
  if (f == NULL) return UV_ENOMEM;
  const char *paths[NFILES] = {cert, key, ca};
  f->npaths = ca != NULL ? 3 : 2;
  char *data[NFILES] = {0};
  size_t len[NFILES] = {0};
  int r = 0;
  for (size_t i = 0; i < f->npaths && r == 0; i++) {
    if ((f->paths[i] = strdup(paths[i])) == NULL) {
      r = UV_ENOMEM;
      break;
    }
    char why[PS_TLS_ERR_MAX + 64];
    r = ps_file_read_sync(paths[i], PS_FILEWATCH_MAX_BYTES, &data[i], &len[i], why, sizeof why);
    if (r != 0) snprintf(err, errlen, "%s: %s", flag_of[i], why);
  }
  if (r == 0) {
    struct ps_tls_pem pem;
    pem_of(&pem, data, len);
    char why[PS_TLS_ERR_MAX];
    r = ps_tls_ctx_server(&pem, &f->ctx, why, sizeof why);
    if (r != 0) {
      size_t i = culprit(why);
      snprintf(err, errlen, "%s %s: %s", flag_of[i], paths[i], why);
    }
  }
  for (size_t i = 0; i < NFILES; i++) {
    if (data[i] != NULL) OPENSSL_cleanse(data[i], len[i]); /* the key's bytes do not linger in the heap */
    free(data[i]);
  }
  if (r != 0) {
    ps_tls_files_free(f);
    return r;
  }
  set_expiry(f);
  declare_reloads();
  *out = f;
  return 0;
}

struct ps_tls_ctx *ps_tls_files_ctx(const struct ps_tls_files *f) {
  return f->ctx;
}

/* A group changed (or SIGHUP): every file was re-read. Any failure keeps the certificate in use. */
static void changed_cb(void *arg, const struct ps_file_content *files, size_t n) {
  struct ps_tls_files *f = arg;
  char why[PS_TLS_ERR_MAX + PS_FILEWATCH_MAX_PATH];
  for (size_t i = 0; i < n; i++) {
    if (files[i].err == 0) continue;
    ps_file_error(files[i].path, files[i].err, 0, why, sizeof why);
    ps_log(PS_LOG_ERROR, "cannot reload the TLS files; keeping the certificate in use", "flag", flag_of[i],
           "error", why, NULL);
    count_reload("failed");
    return;
  }
  char *data[NFILES] = {0};
  size_t len[NFILES] = {0};
  for (size_t i = 0; i < n && i < NFILES; i++) {
    data[i] = (char *)files[i].data;
    len[i] = files[i].len;
  }
  struct ps_tls_pem pem;
  pem_of(&pem, data, len);
  if (ps_tls_ctx_reload(f->ctx, &pem, why, sizeof why) != 0) {
    /* A writer that replaces the certificate and then the key (not the kubelet's atomic swap) can be seen
     * half done: this fails, and the next poll, after the key changed too, succeeds. */
    size_t i = culprit(why);
    ps_log(PS_LOG_ERROR, "cannot reload the TLS files; keeping the certificate in use", "flag", flag_of[i],
           "file", f->paths[i], "error", why, NULL);
    count_reload("failed");
    return;
  }
  set_expiry(f);
  count_reload("ok");
  int64_t t = 0;
  char not_after[32] = "";
  if (ps_tls_ctx_not_after(f->ctx, &t) == 0) {
    time_t tt = (time_t)t;
    struct tm tm;
    strftime(not_after, sizeof not_after, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
  }
  ps_log(PS_LOG_INFO, "TLS certificate reloaded; new connections get it, open ones keep theirs", "file",
         f->paths[0], "not_after", not_after, NULL);
}

int ps_tls_files_watch(struct ps_tls_files *f, struct ps_filewatch *w, struct ps_filewatch_group **group) {
  return ps_filewatch_add(w, (const char *const *)f->paths, f->npaths, changed_cb, f, group);
}

void ps_tls_files_free(struct ps_tls_files *f) {
  if (f == NULL) return;
  ps_tls_ctx_free(f->ctx);
  for (size_t i = 0; i < NFILES; i++) free(f->paths[i]);
  free(f);
}
