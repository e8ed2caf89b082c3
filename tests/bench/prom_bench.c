/* `make bench`: a 30 MB answer from Prometheus, as prescale read it before (cJSON over the whole body, in
 * one callback) and as it reads it now (the streaming decoder, fed as the connection reads, capped at
 * PS_PROM_MAX_RESPONSE).
 *
 * Answers (synthetic, in Prometheus's own format: seconds with 3 decimals, values as Go writes them):
 *  - "one series": a single series of 30 MB (about 880,000 samples). No Prometheus sends this for one
 *    chunk (11,000 points at most), but it is the most the decoder can be made to store;
 *  - "300 series": 300 series of 30 MB in all, what a query that forgot its sum(...) returns;
 *  - "largest legitimate": PS_PROM_MAX_POINTS samples, each padded to PS_PROM_MAX_SAMPLE_BYTES;
 *  - "typical": PS_PROM_MAX_POINTS samples as Prometheus writes them (about 30 bytes each).
 * Figures, each case in a child process of its own (peak RSS is the kernel's VmHWM, reset before the case
 * by /proc/self/clear_refs, minus the RSS at that moment, which holds the body as the test's source):
 *  - before: the body collected in a ps_buf by 64 KiB reads (as http_client did), parsed by cJSON, the
 *    series walked into an array (as prom.c did): all in one loop callback, so the stall is the whole;
 *  - decoder: the body fed to ps_prom_dec_feed in 64 KiB reads, PS_HTTP_READ_BURST a loop turn: the
 *    stall is the longest turn (no cap: the decoder alone);
 *  - client: the whole path on a libuv loop, ps_prom_query_range against a loopback server thread that
 *    sends the body chunked (as Prometheus does); the stall is the longest loop turn from the request to
 *    its callback (a prepare handle stamps every turn), with what the callback got and the wall time.
 * Stalls are CPU time of the loop's thread (CLOCK_THREAD_CPUTIME_ID), so that a shared machine taking the
 * core away does not count as a stall of prescale's own.
 * Never pass/fail on speed. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "http_client.h"
#include "prom.h"

#define BIG_BYTES  (30u << 20)
#define READ_BYTES 65536 /* http_client's READ_BUF_SIZE */

/* ---- answers ---- */

static void body_new(struct ps_buf *b, int kind) {
  ps_buf_init(b);
  ps_buf_puts(b, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
  long long t0 = 1700000000000LL;
  if (kind == 0 || kind == 1) { /* 30 MB: one series, or 300 */
    int series = kind == 0 ? 1 : 300;
    size_t per = BIG_BYTES / (size_t)series;
    for (int k = 0; k < series; k++) {
      ps_buf_printf(b, "%s{\"metric\":{\"instance\":\"10.0.%d.%d:9100\",\"job\":\"node\"},\"values\":[",
                    k ? "," : "", k / 256, k % 256);
      size_t start = b->len;
      for (long long i = 0; b->len - start < per; i++)
        ps_buf_printf(b, "%s[%lld.%03lld,\"%.15g\"]", i ? "," : "", (t0 + i * 15001) / 1000,
                      (t0 + i * 15001) % 1000, 1234.5 + (double)(i % 977) / 7.0);
      ps_buf_puts(b, "]}");
    }
  } else { /* one chunk's worth: 11,000 points, padded or not */
    ps_buf_puts(b, "{\"metric\":{},\"values\":[");
    for (long long i = 0; i < PS_PROM_MAX_POINTS; i++) {
      size_t at = b->len;
      ps_buf_printf(b, "%s[%lld.%03lld,\"%.15g\"]", i ? "," : "", (t0 + i * 15000) / 1000,
                    (t0 + i * 15000) % 1000, 1234.5 + (double)(i % 977) / 7.0);
      while (kind == 2 && b->len - at < PS_PROM_MAX_SAMPLE_BYTES) ps_buf_puts(b, " ");
    }
    ps_buf_puts(b, "]}");
  }
  ps_buf_puts(b, "]}}");
}

static const char *kind_name[] = {"one series, 30 MB", "300 series, 30 MB", "largest legitimate",
                                  "typical (11,000 points)"};

/* ---- measuring ---- */

/* CPU time of the calling thread (the loop's): what a turn costs, without the time a busy machine takes the
 * core away (wall clock on a shared machine is mostly that). */
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double wall_ms(void) { return (double)uv_hrtime() / 1e6; }

static long status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t fl = strlen(field);
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, field, fl) == 0) v = strtol(line + fl, NULL, 10);
  if (f != NULL) fclose(f);
  return v;
}

/* Resets the peak RSS to the current RSS (Linux 4.0+) and returns that RSS in kB. */
static long peak_reset(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f != NULL) {
    fputs("5", f);
    fclose(f);
  }
  return status_kb("VmRSS:");
}

/* ---- before: cJSON over the whole body ---- */

static void run_before(const struct ps_buf *src, double *stall, long *extra_kb, char *what, size_t wl) {
  long base = peak_reset();
  double t = now_ms();
  struct ps_buf body; /* what http_client collected, 64 KiB read by read */
  ps_buf_init(&body);
  for (size_t off = 0; off < src->len; off += READ_BYTES)
    ps_buf_append(&body, src->data + off, src->len - off < READ_BYTES ? src->len - off : READ_BYTES);
  cJSON *root = cJSON_ParseWithLength(body.data, body.len);
  cJSON *result = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "result");
  int series = cJSON_GetArraySize(result);
  size_t n = 0;
  if (series == 1) {
    cJSON *values = cJSON_GetObjectItem(result->child, "values");
    struct ps_sample *s = malloc((size_t)cJSON_GetArraySize(values) * sizeof *s);
    for (cJSON *it = values->child; it != NULL; it = it->next, n++) {
      s[n].t_ms = (int64_t)(cJSON_GetArrayItem(it, 0)->valuedouble * 1000);
      s[n].v = strtod(cJSON_GetArrayItem(it, 1)->valuestring, NULL);
    }
    free(s);
  }
  long peak = status_kb("VmHWM:");
  cJSON_Delete(root);
  ps_buf_free(&body);
  *stall = now_ms() - t;
  *extra_kb = peak - base;
  snprintf(what, wl, series == 1 ? "%zu samples" : "%d series (refused)", series == 1 ? n : (size_t)series);
}

/* ---- now: the decoder alone ---- */

static void run_decoder(const struct ps_buf *src, double *stall, long *extra_kb, char *what, size_t wl) {
  long base = peak_reset();
  struct ps_sample *s = NULL;
  size_t n = 0, cap = 0;
  struct ps_prom_dec *d;
  ps_prom_dec_new(&s, &n, &cap, &d);
  *stall = 0;
  double t_all = now_ms();
  for (size_t off = 0; off < src->len;) {
    double t = now_ms();
    for (size_t burst = 0; burst < PS_HTTP_READ_BURST && off < src->len; burst += READ_BYTES) {
      size_t k = src->len - off < READ_BYTES ? src->len - off : READ_BYTES;
      ps_prom_dec_feed(d, src->data + off, k);
      off += k;
    }
    double dt = now_ms() - t;
    if (dt > *stall) *stall = dt;
  }
  char err[PS_PROM_MAX_ERROR_TEXT] = "";
  double t = now_ms();
  int rc = ps_prom_dec_finish(d, err, sizeof err, NULL);
  if (now_ms() - t > *stall) *stall = now_ms() - t; /* the sort, when one is needed */
  *extra_kb = status_kb("VmHWM:") - base;
  double mbps = (double)src->len / 1e3 / (now_ms() - t_all);
  if (rc == 0)
    snprintf(what, wl, "%zu samples, %.0f MB/s", n, mbps);
  else
    snprintf(what, wl, "%.0f MB/s: %.60s", mbps, err);
  ps_prom_dec_free(d);
  free(s);
}

/* ---- now: the whole path on a loop ---- */

struct server {
  int fd;
  const struct ps_buf *body;
};

static void *serve(void *arg) {
  struct server *sv = arg;
  int c = accept(sv->fd, NULL, NULL);
  char req[65536];
  size_t got = 0;
  while (c >= 0 && got < sizeof req - 1) {
    ssize_t r = read(c, req + got, sizeof req - 1 - got);
    if (r <= 0) break;
    got += (size_t)r;
    req[got] = '\0';
    if (strstr(req, "\r\n\r\n") != NULL) break;
  }
  char head[256];
  int hl =
      snprintf(head, sizeof head,
               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
  bool ok = c >= 0 && write(c, head, (size_t)hl) == hl;
  for (size_t off = 0; ok && off < sv->body->len; off += 32768) { /* chunks as Go's writer sends them */
    size_t k = sv->body->len - off < 32768 ? sv->body->len - off : 32768;
    hl = snprintf(head, sizeof head, "%zx\r\n", k);
    ok = write(c, head, (size_t)hl) == hl && write(c, sv->body->data + off, k) == (ssize_t)k &&
         write(c, "\r\n", 2) == 2;
  }
  if (ok && write(c, "0\r\n\r\n", 5) != 5) ok = false;
  if (c >= 0) close(c);
  return NULL;
}

struct run {
  double last, max_turn;
  bool done;
  int err;
  char msg[PS_PROM_MAX_ERROR_TEXT * 2];
  size_t n;
};

static void turn_cb(uv_prepare_t *h) {
  struct run *r = h->data;
  double t = now_ms();
  if (r->last > 0 && t - r->last > r->max_turn) r->max_turn = t - r->last;
  r->last = t;
}

static void done_cb(void *arg, int err, const char *errmsg, const struct ps_sample *s, size_t n) {
  struct run *r = arg;
  r->done = true;
  r->err = err;
  r->n = n;
  snprintf(r->msg, sizeof r->msg, "%s", errmsg ? errmsg : "");
}

static void run_client(const struct ps_buf *src, double *stall, long *extra_kb, char *what, size_t wl) {
  signal(SIGPIPE, SIG_IGN); /* the client hangs up on an answer over the limit */
  struct server sv = {.fd = socket(AF_INET, SOCK_STREAM, 0), .body = src};
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(sv.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(sv.fd, 1) != 0 ||
      getsockname(sv.fd, (struct sockaddr *)&a, &al) != 0) {
    snprintf(what, wl, "no loopback socket");
    return;
  }
  pthread_t th;
  pthread_create(&th, NULL, serve, &sv);
  long base = peak_reset();
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ps_http_client *http;
  ps_http_client_new(&loop, &http);
  struct run r = {0};
  uv_prepare_t turns;
  uv_prepare_init(&loop, &turns);
  turns.data = &r;
  uv_prepare_start(&turns, turn_cb);
  char base_url[64];
  snprintf(base_url, sizeof base_url, "http://127.0.0.1:%d", ntohs(a.sin_port));
  double t = wall_ms();
  int64_t start = 1700000000000LL, step = 15000;
  ps_prom_query_range(http, base_url, "up", start, start + (PS_PROM_MAX_POINTS - 1) * step, step, 60000,
                      done_cb, &r, NULL);
  while (!r.done) uv_run(&loop, UV_RUN_ONCE);
  double total = wall_ms() - t;
  *extra_kb = status_kb("VmHWM:") - base;
  *stall = r.max_turn;
  uv_close((uv_handle_t *)&turns, NULL);
  ps_http_client_close(http);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  shutdown(sv.fd, SHUT_RDWR);
  pthread_join(th, NULL);
  close(sv.fd);
  if (r.err == 0)
    snprintf(what, wl, "%zu samples in %.0f ms", r.n, total);
  else
    snprintf(what, wl, "%s after %.0f ms: %.90s", uv_err_name(r.err), total, strstr(r.msg, ": ") + 2);
}

/* ---- main ---- */

typedef void (*runner)(const struct ps_buf *, double *, long *, char *, size_t);

/* Runs one case in a child (a clean heap and its own peak) and prints its line. */
static void one_case(const char *how, runner fn, int kind) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    struct ps_buf body;
    body_new(&body, kind);
    double stall = 0;
    long extra = 0;
    char what[200] = "";
    fn(&body, &stall, &extra, what, sizeof what);
    printf("  %-8s %-24s %9.2f MB %10.1f ms %9.1f MB (%4.1fx)  %s\n", how, kind_name[kind],
           (double)body.len / 1e6, stall, (double)extra / 1024.0, (double)extra * 1024.0 / (double)body.len,
           what);
    fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
}

int main(void) {
  printf("Prometheus answers: the longest loop stall and the peak memory above the body, per answer\n");
  printf("(PS_PROM_MAX_RESPONSE %zu bytes, PS_HTTP_READ_BURST %u bytes)\n", (size_t)PS_PROM_MAX_RESPONSE,
         PS_HTTP_READ_BURST);
  printf("  %-8s %-24s %12s %13s %20s  %s\n", "path", "answer", "body", "stall", "peak RSS (x body)",
         "result");
  for (int kind = 0; kind < 4; kind++) {
    one_case("before", run_before, kind);
    one_case("decoder", run_decoder, kind);
    one_case("client", run_client, kind);
  }
  return 0;
}
