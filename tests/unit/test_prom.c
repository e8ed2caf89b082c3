/* Tests src/prom.c: URL building, and range queries against a real Prometheus started here
 * (skipped when /usr/bin/prometheus is missing) and a fake API server for errors and chunk seams. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "loop_fixture.h"
#include "prom.h"
#include "prom_fixture.h"

/* ==== URL building ================================================================================= */

static char *url_of(const char *base, const char *q, int64_t s, int64_t e, int64_t step) {
  static struct ps_buf b;
  ps_buf_free(&b);
  int err = ps_prom_range_url(&b, base, q, s, e, step, NULL);
  return err == 0 ? b.data : NULL;
}

Test(prom, range_url_basic) {
  cr_assert_str_eq(
      url_of("http://prom:9090", "up", 1700000000000, 1700000060000, 15000),
      "http://prom:9090/api/v1/query_range?query=up&start=1700000000.000&end=1700000060.000&step=15");
  /* trailing slash not doubled, path prefix kept */
  cr_assert_str_eq(url_of("http://h:9090/prom/", "up", 1500, 2250, 1500),
                   "http://h:9090/prom/api/v1/query_range?query=up&start=1.500&end=2.250&step=1.500");
  cr_assert_str_eq(url_of("http://h", "up", -1500, 0, 1),
                   "http://h/api/v1/query_range?query=up&start=-1.500&end=0.000&step=0.001");
}

Test(prom, range_url_escaping) {
  const char *q = "sum(rate(http_requests_total{job=\"api\", code=~\"5..\"}[5m])) + 1 & x=y é";
  const char *want =
      "http://h/api/v1/query_range?query="
      "sum%28rate%28http_requests_total%7Bjob%3D%22api%22%2C%20code%3D~%225..%22%7D%5B5m%5D%29%29"
      "%20%2B%201%20%26%20x%3Dy%20%C3%A9&start=0.000&end=1.000&step=1";
  cr_assert_str_eq(url_of("http://h", q, 0, 1000, 1000), want);
  cr_assert_str_eq(url_of("http://h", "a/b?c#d%'", 0, 0, 1000),
                   "http://h/api/v1/query_range?query=a%2Fb%3Fc%23d%25%27&start=0.000&end=0.000&step=1");
  cr_assert_str_eq(url_of("http://h", "A-Z_a.z~09", 0, 0, 1000),
                   "http://h/api/v1/query_range?query=A-Z_a.z~09&start=0.000&end=0.000&step=1");
}

Test(prom, range_url_rejects) {
  cr_assert_null(url_of("http://h", "up", 0, 1000, 0));
  cr_assert_null(url_of("http://h", "up", 0, 1000, -5));
  cr_assert_null(url_of("http://h", "up", 2000, 1000, 1000));
  cr_assert_null(url_of("", "up", 0, 1000, 1000));
  cr_assert_null(url_of("http://h", "", 0, 1000, 1000));
  char *big = malloc(PS_HTTP_MAX_URL);
  memset(big, '{', PS_HTTP_MAX_URL - 1);
  big[PS_HTTP_MAX_URL - 1] = '\0';
  cr_assert_null(url_of("http://h", big, 0, 1000, 1000)); /* every byte triples: over the URL limit */
  free(big);
  /* a failed append leaves what was in the buffer */
  struct ps_buf b;
  ps_buf_init(&b);
  ps_buf_puts(&b, "keep");
  cr_assert_eq(ps_prom_range_url(&b, "http://h", "up", 5, 1, 1, NULL), UV_EINVAL);
  cr_assert_str_eq(b.data, "keep");
  ps_buf_free(&b);
}

/* namespace and queryParameters (KEDA's prometheus keys) follow prescale's own parameters, every key and
 * value percent-encoded (RFC 3986 2.1): '&', '=', '#', '+', spaces and UTF-8 stay inside their part. */
Test(prom, range_url_params) {
  struct ps_kv_list l;
  char err[128];
  cr_assert_eq(ps_kv_list_parse("tenant=a&b, x=1+1=2", &l, err, sizeof err), UV_EINVAL); /* two '=' */
  cr_assert_eq(ps_kv_list_parse("tenant=a&b #c, dedup=true, é=ü", &l, err, sizeof err), 0, "%s", err);
  struct ps_prom_params pp = {.ns = "team a", .query_params = &l};
  struct ps_buf b;
  ps_buf_init(&b);
  cr_assert_eq(ps_prom_range_url(&b, "http://h:9090", "up", 0, 1000, 1000, &pp), 0);
  cr_assert_str_eq(b.data, "http://h:9090/api/v1/query_range?query=up&start=0.000&end=1.000&step=1"
                           "&namespace=team%20a&dedup=true&tenant=a%26b%20%23c&%C3%A9=%C3%BC");
  ps_buf_reset(&b);
  pp.ns = NULL; /* each part alone */
  cr_assert_eq(ps_prom_range_url(&b, "http://h", "up", 0, 0, 1000, &pp), 0);
  cr_assert(strstr(b.data, "&step=1&dedup=true&tenant=") != NULL, "%s", b.data);
  ps_buf_reset(&b);
  pp = (struct ps_prom_params){.ns = "ns1"};
  cr_assert_eq(ps_prom_range_url(&b, "http://h", "up", 0, 0, 1000, &pp), 0);
  cr_assert_str_eq(b.data, "http://h/api/v1/query_range?query=up&start=0.000&end=0.000&step=1&namespace=ns1");
  ps_buf_free(&b);
  ps_kv_list_free(&l);
}

/* What namespace and queryParameters add counts toward PS_HTTP_MAX_URL, and the refusal says so. */
Test(prom, url_problem_counts_the_params) {
  char *v = malloc(PS_KV_LIST_MAX_VALUE + 1), *list = malloc(4 * (PS_KV_LIST_MAX_VALUE + 8));
  memset(v, ' ', PS_KV_LIST_MAX_VALUE);
  v[0] = v[PS_KV_LIST_MAX_VALUE - 1] = 'x'; /* not trimmed: 4096 bytes, 12 KiB encoded */
  v[PS_KV_LIST_MAX_VALUE] = '\0';
  sprintf(list, "a=%s,b=%s", v, v);
  struct ps_kv_list l;
  char why[512];
  cr_assert_eq(ps_kv_list_parse(list, &l, why, sizeof why), 0, "%s", why);
  struct ps_prom_params pp = {.query_params = &l};
  struct ps_buf b;
  ps_buf_init(&b);
  cr_assert_eq(ps_prom_range_url(&b, "http://h", "up", 0, 0, 1000, &pp), UV_EINVAL);
  cr_assert_eq(ps_prom_url_problem(why, sizeof why, "http://h", "up", 0, 0, 1000, &pp), UV_E2BIG);
  cr_assert(
      strstr(why, "the query is 2 bytes, 2 once percent-encoded, and namespace and queryParameters add") !=
          NULL,
      "%s", why);
  ps_buf_free(&b);
  ps_kv_list_free(&l);
  free(v);
  free(list);
}

/* A URL refused for its length is explained: its size, by how much it is over, and the query's size. */
Test(prom, url_problem_says_which_limit_and_by_how_much) {
  char why[512];
  size_t qlen = 6000;
  char *q = malloc(qlen + 1);
  memcpy(q, "sum(x)", 6);
  memset(q + 6, ' ', qlen - 6); /* a space encodes as %20: 3 bytes */
  q[qlen] = '\0';
  struct ps_buf b;
  ps_buf_init(&b);
  cr_assert_eq(ps_prom_range_url(&b, "http://h:9090", q, 0, 1000, 1000, NULL), UV_EINVAL);
  ps_buf_free(&b);
  cr_assert_eq(ps_prom_url_problem(why, sizeof why, "http://h:9090", q, 0, 1000, 1000, NULL), UV_E2BIG);
  /* "http://h:9090/api/v1/query_range?query=" + "sum%28x%29" + 3 x 5994 + "&start=0.000&end=1.000&step=1" */
  size_t want = strlen("http://h:9090/api/v1/query_range?query=") + 10 + 3 * (qlen - 6) +
                strlen("&start=0.000&end=1.000&step=1");
  char expect[512];
  snprintf(
      expect, sizeof expect,
      "the Prometheus request URL would be %zu bytes, %zu over the limit of %d bytes (PS_HTTP_MAX_URL): the "
      "query is %zu bytes, %zu once percent-encoded; shorten it (e.g. with a recording rule)",
      want, want - PS_HTTP_MAX_URL, PS_HTTP_MAX_URL, qlen, 10 + 3 * (qlen - 6));
  cr_assert_str_eq(why, expect);
  /* Not the reason: 0, and buf untouched. */
  why[0] = '\0';
  cr_assert_eq(ps_prom_url_problem(why, sizeof why, "http://h:9090", "up", 0, 1000, 1000, NULL), 0);
  cr_assert_eq(ps_prom_url_problem(why, sizeof why, "http://h:9090", "up", 5, 1, 1000, NULL), 0);
  cr_assert_str_eq(why, "");
  free(q);
}

/* ==== loop harness ================================================================================= */

static uv_loop_t loop;
static struct ps_http_client *http;
static bool is_set(void *flag) { return *(bool *)flag; }

struct qres {
  bool done;
  int calls;
  int err;
  char msg[1024];
  struct ps_sample *s;
  size_t n;
};

static void qcb(void *arg, int err, const char *errmsg, const struct ps_sample *samples, size_t n) {
  struct qres *q = arg;
  q->calls++;
  q->done = true;
  q->err = err;
  if (err != 0) {
    cr_assert_not_null(errmsg);
    snprintf(q->msg, sizeof q->msg, "%s", errmsg);
    return;
  }
  q->n = n;
  q->s = malloc((n ? n : 1) * sizeof *q->s);
  if (n) memcpy(q->s, samples, n * sizeof *samples);
}

static void query(const char *base, const char *q, int64_t s, int64_t e, int64_t step, struct qres *out) {
  memset(out, 0, sizeof *out);
  cr_assert_eq(ps_prom_query_range(http, base, q, s, e, step, 10000, qcb, out, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &out->done, 30000), "no answer to %s", q);
  cr_assert_eq(out->calls, 1);
}

/* ==== fake Prometheus API ========================================================================== */

struct fake {
  uv_tcp_t listener;
  int port;
  int accepted, requests;
  int status;       /* reply status; 200 generates a matrix from the query's start/end/step */
  const char *body; /* fixed body when status != 200 (or when set) */
  int series;       /* series in a generated matrix (0: 1) */
  bool fat;         /* generated samples padded to PS_PROM_MAX_SAMPLE_BYTES, as big as a sample may be */
  bool chunked;     /* Transfer-Encoding: chunked, no Content-Length */
  int64_t starts[16], ends[16];
  char last_req[32768]; /* the request line and headers of the last request */
};

struct fconn {
  uv_tcp_t tcp;
  char buf[32768];
  size_t len;
};

static struct fake fake;
static bool fake_open;

static void fconn_closed(uv_handle_t *h) { free(h->data); }
static void fwrite_cb(uv_write_t *w, int st) {
  free(w->data);
  free(w);
}

static int64_t param_ms(const char *req, const char *name) {
  const char *p = strstr(req, name);
  cr_assert_not_null(p, "no %s in %s", name, req);
  return llround(strtod(p + strlen(name), NULL) * 1000);
}

static void fake_reply(struct fconn *fc, const char *req) {
  struct ps_buf body, out;
  ps_buf_init(&body);
  ps_buf_init(&out);
  int i = fake.requests++;
  snprintf(fake.last_req, sizeof fake.last_req, "%s", req);
  if (fake.body != NULL) {
    ps_buf_puts(&body, fake.body);
  } else {
    int64_t s = param_ms(req, "&start="), e = param_ms(req, "&end="), step = param_ms(req, "&step=");
    if (i < 16) {
      fake.starts[i] = s;
      fake.ends[i] = e;
    }
    ps_buf_puts(&body, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
    for (int k = 0; k < (fake.series > 0 ? fake.series : 1); k++) {
      ps_buf_printf(&body, "%s{\"metric\":{\"k\":\"%d\"},\"values\":[", k ? "," : "", k);
      for (int64_t t = s; t <= e; t += step) {
        size_t at = body.len;
        ps_buf_printf(&body, "%s[%lld.%03lld,\"%lld\"]", t == s ? "" : ",", (long long)(t / 1000),
                      (long long)(t % 1000), (long long)(t / step));
        while (fake.fat && body.len - at < PS_PROM_MAX_SAMPLE_BYTES) ps_buf_puts(&body, " ");
      }
      ps_buf_puts(&body, "]}");
    }
    ps_buf_puts(&body, "]}}");
  }
  const char *ctype = body.len && body.data[0] == '{' ? "application/json" : "text/html";
  if (fake.chunked) {
    ps_buf_printf(&out, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n",
                  fake.status, ctype, body.len);
    ps_buf_append(&out, body.data, body.len);
    ps_buf_puts(&out, "\r\n0\r\n\r\n");
  } else {
    ps_buf_printf(&out, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", fake.status,
                  ctype, body.len);
    ps_buf_append(&out, body.data, body.len);
  }
  ps_buf_free(&body);
  uv_write_t *w = malloc(sizeof *w);
  w->data = out.data;
  uv_buf_t b = uv_buf_init(out.data, (unsigned)out.len);
  cr_assert_eq(uv_write(w, (uv_stream_t *)&fc->tcp, &b, 1, fwrite_cb), 0);
}

static void falloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  struct fconn *fc = h->data;
  b->base = fc->buf + fc->len;
  b->len = sizeof fc->buf - fc->len - 1;
}

static void fread_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct fconn *fc = s->data;
  if (n < 0) {
    uv_close((uv_handle_t *)s, fconn_closed);
    return;
  }
  fc->len += (size_t)n;
  fc->buf[fc->len] = '\0';
  char *end;
  while ((end = strstr(fc->buf, "\r\n\r\n")) != NULL) {
    *end = '\0';
    fake_reply(fc, fc->buf);
    size_t rl = (size_t)(end - fc->buf) + 4;
    memmove(fc->buf, fc->buf + rl, fc->len - rl + 1);
    fc->len -= rl;
  }
}

static void on_conn(uv_stream_t *srv, int status) {
  struct fconn *fc = calloc(1, sizeof *fc);
  uv_tcp_init(&loop, &fc->tcp);
  fc->tcp.data = fc;
  cr_assert_eq(uv_accept(srv, (uv_stream_t *)&fc->tcp), 0);
  fake.accepted++;
  uv_read_start((uv_stream_t *)&fc->tcp, falloc, fread_cb);
}

static void fake_start(int status, const char *body) {
  memset(&fake, 0, sizeof fake);
  fake.status = status;
  fake.body = body;
  uv_tcp_init(&loop, &fake.listener);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  cr_assert_eq(uv_tcp_bind(&fake.listener, (struct sockaddr *)&sa, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&fake.listener, 8, on_conn), 0);
  int len = sizeof sa;
  uv_tcp_getsockname(&fake.listener, (struct sockaddr *)&sa, &len);
  fake.port = ntohs(sa.sin_port);
  fake_open = true;
}

static char *fake_base(void) {
  static char b[64];
  snprintf(b, sizeof b, "http://127.0.0.1:%d", fake.port);
  return b;
}

/* ==== real Prometheus ============================================================================== */

static struct ps_test_prom prom; /* its own config (a self-scrape), so only ps_test_prom_stop is shared */

struct ready {
  bool done;
  int status;
};

static void ready_cb(void *arg, int err, const char *msg, const struct ps_http_response *resp) {
  struct ready *r = arg;
  r->done = true;
  r->status = err == 0 ? resp->status : err;
}

/* Starts Prometheus scraping itself every second; waits until /-/ready says 200. */
static void prom_start(void) {
  if (access("/usr/bin/prometheus", X_OK) != 0)
    cr_skip_test("/usr/bin/prometheus not found: install the prometheus package to run this test");
  strcpy(prom.dir, "/tmp/ps-prom-XXXXXX");
  cr_assert_not_null(mkdtemp(prom.dir));
  prom.port = ps_test_free_port();
  cr_assert_gt(prom.port, 0);
  char cfg[128], data[128], listen[64], log[128];
  snprintf(cfg, sizeof cfg, "%s/prometheus.yml", prom.dir);
  snprintf(data, sizeof data, "--storage.tsdb.path=%s/data", prom.dir);
  snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", prom.port);
  snprintf(log, sizeof log, "%s/log", prom.dir);
  FILE *f = fopen(cfg, "w");
  fprintf(f,
          "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
          "  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
          prom.port);
  fclose(f);
  char cfgarg[160];
  snprintf(cfgarg, sizeof cfgarg, "--config.file=%s", cfg);
  prom.pid = fork();
  cr_assert(prom.pid >= 0);
  if (prom.pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/usr/bin/prometheus", "prometheus", cfgarg, data, listen, "--log.level=warn", (char *)NULL);
    _exit(127);
  }
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/-/ready", prom.port);
  uint64_t deadline = uv_now(&loop) + 60000;
  for (;;) {
    struct ready r = {0};
    cr_assert_eq(ps_http_get(http, url, 2000, ready_cb, &r, NULL), 0);
    cr_assert(ps_test_run_until(&loop, is_set, &r.done, 5000));
    if (r.status == 200) return;
    int st;
    cr_assert_eq(waitpid(prom.pid, &st, WNOHANG), 0, "prometheus exited; see %s", log);
    cr_assert(uv_now(&loop) < deadline, "prometheus not ready after 60 s (last: %d)", r.status);
    /* Poll again in 100 ms: readiness has no event to wait on but the endpoint itself. */
    bool tick = false;
    ps_test_run_until(&loop, is_set, &tick, 100);
  }
}

/* ==== fixture ====================================================================================== */

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(ps_http_client_new(&loop, &http), 0);
}

/* Closes the client and the fake; its connections close when they read the client's EOF. Every test ends
 * with this, then PS_LOOP_END, which runs the loop dry (bounded) and fails the test on anything left open. */
static void stop_fake_and_client(void) {
  ps_http_client_close(http);
  http = NULL;
  if (fake_open) uv_close((uv_handle_t *)&fake.listener, NULL);
  fake_open = false;
}

/* Stops a real Prometheus, even after a failed test. */
static void teardown(void) { ps_test_prom_stop(&prom, 0); }

TestSuite(prom_loop, .init = setup, .fini = teardown, .timeout = 120);

/* ==== against the fake ============================================================================= */

Test(prom_loop, chunks_meet_without_duplicates) {
  fake_start(200, NULL);
  int64_t step = 15000, start = 1700000000000 + 7; /* an odd start: seams are start + k*step */
  int64_t points = 2 * PS_PROM_MAX_POINTS + 3000;
  int64_t end = start + (points - 1) * step + step / 2; /* a ragged end: the last point is before it */
  struct qres q;
  query(fake_base(), "up", start, end, step, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(fake.requests, 3);
  cr_assert_eq(fake.accepted, 1); /* sequential requests share the keep-alive connection */
  cr_assert_eq(fake.starts[0], start);
  cr_assert_eq(fake.ends[0], start + (PS_PROM_MAX_POINTS - 1) * step);
  cr_assert_eq(fake.starts[1], start + PS_PROM_MAX_POINTS * step);
  cr_assert_eq(fake.ends[1], start + (2 * PS_PROM_MAX_POINTS - 1) * step);
  cr_assert_eq(fake.starts[2], start + 2 * PS_PROM_MAX_POINTS * step);
  cr_assert_eq(fake.ends[2], start + (points - 1) * step);
  cr_assert_eq(q.n, (size_t)points);
  for (int64_t i = 0; i < points; i++) cr_assert_eq(q.s[i].t_ms, start + i * step, "at %lld", (long long)i);
  free(q.s);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(prom_loop, single_point_range) {
  fake_start(200, NULL);
  struct qres q;
  query(fake_base(), "up", 60000, 60000, 60000, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, 1);
  cr_assert_eq(q.s[0].t_ms, 60000);
  free(q.s);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(prom_loop, http_errors) {
  struct {
    int status;
    const char *body;
    int err;
    const char *needle;
  } cases[] = {
      {400, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"invalid parameter \\\"query\\\"\"}",
       UV_EINVAL, "invalid parameter \"query\""},
      {422, "{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"expanding series: boom\"}",
       UV_EAGAIN, "expanding series: boom"},
      {503, "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"TSDB not ready\"}", UV_EAGAIN,
       "TSDB not ready"},
      /* Not the API: the status, its reason and the server, then the head of the body. */
      {502, "<html><body>Bad Gateway</body></html>", UV_EPROTO,
       "answered 502 Bad Gateway (expected a Prometheus API response): <html>"},
      {404, "404 page not found\n", UV_EPROTO, "answered 404 Not Found"},
      {503, "upstream connect error", UV_EPROTO, "answered 503 Service Unavailable"},
      {500, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}", UV_EPROTO,
       "answered 500 Internal Server Error"},
      {418, "teapot", UV_EPROTO, "answered 418 (expected"},
      /* Credentials refused: UV_EACCES, named as such, and the body is not repeated (a gateway may echo
       * the request's headers, tokens included). */
      {401, "Unauthorized: Authorization: Bearer s3cret", UV_EACCES, "answered 401 Unauthorized (check"},
      {403, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"tenant X-Scope-OrgID s3cret\"}",
       UV_EACCES, "answered 403 Forbidden (check its credentials"},
      {200, "not json", UV_EPROTO, "not JSON"},
      {200,
       "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\"1\"]]},"
       "{\"values\":[[1,\"1\"]]}]}}",
       UV_EINVAL, "2 series"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fake_start(cases[i].status, cases[i].body);
    struct qres q;
    query(fake_base(), "up", 0, 60000, 15000, &q);
    cr_expect_eq(q.err, cases[i].err, "case %zu: %s", i, q.msg);
    cr_expect(strstr(q.msg, cases[i].needle) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, q.msg,
              cases[i].needle);
    cr_expect(strchr(q.msg, '\n') == NULL);
    if ((cases[i].status != 200 && cases[i].err == UV_EPROTO) || cases[i].err == UV_EACCES) {
      char server[128];
      snprintf(server, sizeof server, "prometheus %s answered %d", fake_base(), cases[i].status);
      cr_expect(strncmp(q.msg, server, strlen(server)) == 0, "case %zu: \"%s\" does not start with \"%s\"", i,
                q.msg, server);
    }
    cr_expect(strstr(q.msg, "s3cret") == NULL, "case %zu: %s", i, q.msg);
    uv_close((uv_handle_t *)&fake.listener, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* the close completes before fake_start reuses the handle */
    fake_open = false;
  }
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* A range query carries the trigger's extra header lines and parameters on every request, copies of
 * them: the caller's strings are gone before the request is even sent. */
Test(prom_loop, headers_and_params_are_sent_and_copied) {
  fake_start(200, NULL);
  struct ps_kv_list l;
  char err[128];
  cr_assert_eq(ps_kv_list_parse("dedup=false", &l, err, sizeof err), 0);
  char *ns = strdup("team-a"), *headers = strdup("X-Scope-OrgID: team-a\r\n");
  struct ps_prom_params pp = {.ns = ns, .query_params = &l};
  struct ps_http_opts o = {.timeout_ms = 10000, .cls = PS_HTTP_URGENT, .headers = headers};
  struct qres q;
  memset(&q, 0, sizeof q);
  int64_t step = 1000, points = PS_PROM_MAX_POINTS + 10; /* two requests */
  cr_assert_eq(
      ps_prom_query_range_opts(http, fake_base(), "up", 0, (points - 1) * step, step, &o, &pp, qcb, &q, NULL),
      0);
  ps_kv_list_free(&l);
  memset(ns, 'x', strlen(ns));
  memset(headers, 'x', strlen(headers));
  free(ns);
  free(headers);
  cr_assert(ps_test_run_until(&loop, is_set, &q.done, 30000));
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(fake.requests, 2);
  cr_assert(strstr(fake.last_req, "&step=1&namespace=team-a&dedup=false HTTP/1.1\r\n") != NULL, "%s",
            fake.last_req);
  cr_assert(strstr(fake.last_req, "\r\nAccept-Encoding: identity\r\nX-Scope-OrgID: team-a") != NULL, "%s",
            fake.last_req);
  free(q.s);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* A request that carried header lines (customHeaders, credentials) does not repeat a non-API answer's
 * body: a proxy may echo the request, and its tokens with it. */
Test(prom_loop, an_error_page_is_not_repeated_when_headers_were_sent) {
  fake_start(502, "Bad Gateway: you sent Authorization: Bearer s3cret");
  struct ps_http_opts o = {
      .timeout_ms = 10000, .cls = PS_HTTP_URGENT, .headers = "Authorization: Bearer s3cret\r\n"};
  struct qres q;
  memset(&q, 0, sizeof q);
  cr_assert_eq(ps_prom_query_range_opts(http, fake_base(), "up", 0, 1000, 1000, &o, NULL, qcb, &q, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &q.done, 30000));
  cr_assert_eq(q.err, UV_EPROTO);
  char want[160];
  snprintf(want, sizeof want, "prometheus %s answered 502 Bad Gateway (expected a Prometheus API response)",
           fake_base());
  cr_assert_str_eq(q.msg, want);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

static void count_turn(uv_prepare_t *h) { (*(uint64_t *)h->data)++; }

/* The largest answer a chunk may be: PS_PROM_MAX_POINTS samples each as big as PS_PROM_MAX_SAMPLE_BYTES.
 * It is accepted whole, and read over many loop turns (PS_HTTP_READ_BURST at most a turn), not in one. */
Test(prom_loop, largest_legitimate_answer_is_accepted_over_many_turns) {
  fake_start(200, NULL);
  fake.fat = true;
  uv_prepare_t turns;
  uint64_t n_turns = 0;
  uv_prepare_init(&loop, &turns);
  turns.data = &n_turns;
  uv_prepare_start(&turns, count_turn);
  struct qres q;
  int64_t step = 15000, start = 1700000000000;
  query(fake_base(), "up", start, start + (PS_PROM_MAX_POINTS - 1) * step, step, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, PS_PROM_MAX_POINTS);
  for (size_t i = 0; i < q.n; i++) cr_assert_eq(q.s[i].t_ms, start + (int64_t)i * step);
  size_t body = (size_t)PS_PROM_MAX_POINTS * PS_PROM_MAX_SAMPLE_BYTES;
  cr_assert_geq(n_turns, body / (PS_HTTP_READ_BURST + 65536), "%llu turns", (unsigned long long)n_turns);
  free(q.s);
  uv_close((uv_handle_t *)&turns, NULL);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* An answer of at least `bytes`: one series with a label that long, or series of 100 samples until it is. */
static void make_big_body(struct ps_buf *b, int one_series, size_t bytes) {
  ps_buf_init(b);
  ps_buf_puts(b, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
  if (one_series) {
    ps_buf_puts(b, "{\"metric\":{\"big\":\"");
    while (b->len < bytes) ps_buf_puts(b, "0123456789abcdef");
    ps_buf_puts(b, "\"},\"values\":[[1,\"1\"]]}");
  } else {
    for (int k = 0; b->len < bytes; k++) {
      ps_buf_printf(b, "%s{\"metric\":{\"k\":\"%d\"},\"values\":[", k ? "," : "", k);
      for (int i = 0; i < 100; i++) ps_buf_printf(b, "%s[%d,\"%d.25\"]", i ? "," : "", 1700000000 + i, k);
      ps_buf_puts(b, "]}");
    }
  }
  ps_buf_puts(b, "]}}");
}

/* Over PS_PROM_MAX_RESPONSE: refused as the body streams in (or at once for a Content-Length), with a
 * message that names the limit; when the part read held several series, the query is to blame. */
Test(prom_loop, answers_over_the_limit) {
  char limit[64];
  snprintf(limit, sizeof limit, "the answer exceeds %zu bytes", (size_t)PS_PROM_MAX_RESPONSE);
  struct {
    int one_series;
    bool chunked;
    int err;
    const char *needle;
  } cases[] = {
      {1, false, UV_E2BIG, limit}, /* declared too long by Content-Length: refused before any byte */
      {1, true, UV_E2BIG, limit},  /* streamed past the limit */
      {0, true, UV_EINVAL, "query returned at least "},
      {0, false, UV_E2BIG, limit},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct ps_buf big;
    make_big_body(&big, cases[i].one_series, (size_t)PS_PROM_MAX_RESPONSE + 1);
    fake_start(200, big.data);
    fake.chunked = cases[i].chunked;
    struct qres q;
    query(fake_base(), "up", 0, 60000, 15000, &q);
    cr_expect_eq(q.err, cases[i].err, "case %zu: %s", i, q.msg);
    cr_expect(strstr(q.msg, cases[i].needle) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, q.msg,
              cases[i].needle);
    cr_expect(strstr(q.msg, "aggregate it, e.g. sum(...)") != NULL, "case %zu: %s", i, q.msg);
    cr_expect(strchr(q.msg, '\n') == NULL);
    uv_close((uv_handle_t *)&fake.listener, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    fake_open = false;
    ps_buf_free(&big);
  }
  /* The same many series within the limit get the exact count. */
  struct ps_buf some;
  make_big_body(&some, 0, 100000);
  fake_start(200, some.data);
  struct qres q;
  query(fake_base(), "up", 0, 60000, 15000, &q);
  cr_assert_eq(q.err, UV_EINVAL, "%s", q.msg);
  int series = 0;
  for (const char *m = some.data; (m = strstr(m, "{\"metric\"")) != NULL; m++) series++;
  char want[64];
  snprintf(want, sizeof want, "query returned %d series;", series);
  cr_assert_gt(series, 1);
  cr_assert(strstr(q.msg, want) != NULL, "%s lacks %s", q.msg, want);
  ps_buf_free(&some);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(prom_loop, connection_refused_passes_through) {
  int port = ps_test_free_port();
  cr_assert_gt(port, 0);
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
  struct qres q;
  query(base, "up", 0, 60000, 15000, &q);
  cr_assert_eq(q.err, UV_ECONNREFUSED);
  cr_assert(strstr(q.msg, "connection refused") != NULL, "%s", q.msg);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(prom_loop, bad_arguments_fail_synchronously) {
  struct qres q = {0};
  cr_assert_eq(ps_prom_query_range(http, "http://h", "up", 0, 1000, 0, 1000, qcb, &q, NULL), UV_EINVAL);
  cr_assert_eq(ps_prom_query_range(http, "http://h", "up", 2000, 1000, 1000, 1000, qcb, &q, NULL), UV_EINVAL);
  cr_assert_eq(ps_prom_query_range(http, "http://h", "up", 0, 1000, 1000, 0, qcb, &q, NULL), UV_EINVAL);
  cr_assert_eq(ps_prom_query_range(http, "http://h", "up", 0, (int64_t)PS_PROM_MAX_RANGE_POINTS * 1000, 1000,
                                   1000, qcb, &q, NULL),
               UV_EINVAL);
  cr_assert_eq(ps_prom_query_range(http, "http://h", "up", INT64_MIN, INT64_MAX, 1, 1000, qcb, &q, NULL),
               UV_EINVAL);
  cr_assert_eq(ps_prom_query_range(http, "ftp://h", "up", 0, 1000, 1000, 1000, qcb, &q, NULL),
               UV_EPROTONOSUPPORT);
  cr_assert_eq(ps_prom_query_range(http, "http://h h", "up", 0, 1000, 1000, 1000, qcb, &q, NULL), UV_EINVAL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(q.calls, 0);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(prom_loop, cancel_never_calls_back) {
  fake_start(200, NULL);
  struct qres q = {0};
  struct ps_prom_req *r = NULL;
  cr_assert_eq(ps_prom_query_range(http, fake_base(), "up", 0, 600000, 1000, 5000, qcb, &q, &r), 0);
  cr_assert_not_null(r);
  ps_prom_cancel(r);
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert_eq(q.calls, 0);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* ==== against a real Prometheus ==================================================================== */

static int64_t now_ms(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

Test(prom_loop, real_prometheus) {
  prom_start();
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d/", prom.port);

  /* A real series appears after the first self-scrape. */
  struct qres q;
  int64_t deadline = now_ms() + 30000;
  for (;;) {
    int64_t end = now_ms() / 1000 * 1000;
    query(base, "prometheus_build_info", end - 60000, end, 1000, &q);
    cr_assert_eq(q.err, 0, "%s", q.msg);
    if (q.n > 0) {
      for (size_t i = 0; i < q.n; i++) {
        cr_assert_eq(q.s[i].v, 1.0);
        cr_assert_eq((q.s[i].t_ms - (end - 60000)) % 1000, 0);
        cr_assert(i == 0 || q.s[i].t_ms > q.s[i - 1].t_ms);
      }
      free(q.s);
      break;
    }
    free(q.s);
    cr_assert(now_ms() < deadline, "no prometheus_build_info sample after 30 s");
    bool tick = false;
    ps_test_run_until(&loop, is_set, &tick, 200);
  }

  /* vector(1) has a value at every step: 4 h at 1 s is 14401 points, fetched in two requests. */
  int64_t end = now_ms() / 1000 * 1000, start = end - 4 * 3600 * 1000;
  query(base, "vector(1)", start, end, 1000, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, 14401);
  for (size_t i = 0; i < q.n; i++) {
    cr_assert_eq(q.s[i].t_ms, start + (int64_t)i * 1000, "sample %zu", i);
    cr_assert_eq(q.s[i].v, 1.0);
  }
  free(q.s);

  /* Prometheus's own errors come through with its words. */
  query(base, "sum(", start, end, 60000, &q);
  cr_assert_eq(q.err, UV_EINVAL, "%s", q.msg);
  cr_assert(strstr(q.msg, "parse error") != NULL, "%s", q.msg);

  query(base, "up or vector(1)", end - 60000, end, 1000, &q);
  cr_assert_eq(q.err, UV_EINVAL, "%s", q.msg);
  cr_assert(strstr(q.msg, "2 series") != NULL, "%s", q.msg);

  /* Special values come back as strings and decode. */
  query(base, "vector(+Inf)", end - 2000, end, 1000, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, 3);
  cr_assert(isinf(q.s[0].v));
  free(q.s);
  query(base, "vector(0/0)", end - 2000, end, 1000, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, 3);
  cr_assert(isnan(q.s[2].v));
  free(q.s);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* ==== a large answer from a real Prometheus, with backfilled history ================================= */

#define BIG_POINTS  (4 * PS_PROM_MAX_POINTS) /* ps_big_load: one sample a second, four chunks' worth */
#define MANY_SERIES 200                      /* ps_many_load: more than one answer may hold together */
#define MANY_POINTS 300

/* The value of ps_big_load at second i: 15 significant digits, so that an answer is about 33 bytes a
 * sample, as real gauges are. */
static double big_value(int64_t i) { return 1000.0 + (double)i * 0.001234567; }

/* Writes the OpenMetrics history (ending at end_s) and turns it into TSDB blocks with promtool, in the
 * data folder Prometheus is then started on. */
static void backfill(const char *dir, int64_t end_s) {
  if (access("/usr/bin/promtool", X_OK) != 0) cr_skip_test("/usr/bin/promtool not found");
  char om[320], cmd[1024];
  snprintf(om, sizeof om, "%s/backfill.om", dir);
  FILE *f = fopen(om, "w");
  cr_assert_not_null(f);
  fputs("# TYPE ps_big_load gauge\n", f);
  for (int64_t i = 0; i < BIG_POINTS; i++)
    fprintf(f, "ps_big_load{job=\"big\"} %.17g %lld\n", big_value(i),
            (long long)(end_s - BIG_POINTS + 1 + i));
  fputs("# TYPE ps_many_load gauge\n", f);
  for (int k = 0; k < MANY_SERIES; k++)
    for (int i = 0; i < MANY_POINTS; i++)
      fprintf(f, "ps_many_load{job=\"many\",k=\"%d\"} %.17g %lld\n", k, big_value(i + k),
              (long long)(end_s - MANY_POINTS + 1 + i));
  fputs("# EOF\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "/usr/bin/promtool tsdb create-blocks-from openmetrics '%s' '%s/data' > '%s/promtool.log' 2>&1",
           om, dir, dir);
  cr_assert_eq(system(cmd), 0, "promtool failed; see %s/promtool.log", dir);
  unlink(om);
}

struct turns {
  uint64_t turn, last_turn;
  size_t in_turn, max_in_turn, total;
  struct ps_prom_dec *dec;
};

static void count_prom_turn(uv_prepare_t *h) { ((struct turns *)h->data)->turn++; }

static int decode_sink(void *arg, const char *data, size_t len) {
  struct turns *t = arg;
  if (t->turn != t->last_turn) t->in_turn = 0;
  t->last_turn = t->turn;
  t->in_turn += len;
  t->total += len;
  if (t->in_turn > t->max_in_turn) t->max_in_turn = t->in_turn;
  return ps_prom_dec_feed(t->dec, data, len);
}

struct got {
  bool done;
  int err, status;
};

static void got_cb(void *arg, int err, const char *msg, const struct ps_http_response *resp) {
  struct got *g = arg;
  g->done = true;
  g->err = err;
  g->status = err == 0 ? resp->status : 0;
}

Test(prom_loop, large_answers_from_a_real_prometheus) {
  if (access(PS_TEST_PROMETHEUS_BIN, X_OK) != 0) cr_skip_test("%s not found", PS_TEST_PROMETHEUS_BIN);
  strcpy(prom.dir, "/tmp/ps-prom-big-XXXXXX");
  cr_assert_not_null(mkdtemp(prom.dir));
  int64_t end_s = now_ms() / 1000 - 3600; /* an hour ago: whole blocks, well inside the retention */
  backfill(prom.dir, end_s);
  char why[512];
  cr_assert_eq(ps_test_prom_start(&prom, ps_test_free_port(), why, sizeof why), 0, "%s", why);

  /* Four chunks of 11,000 samples of 33 bytes, decoded as they stream in: every value exact, and the
   * loop turned all along (a prepare handle counts the turns). */
  uv_prepare_t prep;
  struct turns t = {0};
  uv_prepare_init(&loop, &prep);
  prep.data = &t;
  uv_prepare_start(&prep, count_prom_turn);
  int64_t start = (end_s - BIG_POINTS + 1) * 1000, end = end_s * 1000;
  struct qres q;
  uint64_t before = t.turn;
  query(prom.url, "ps_big_load", start, end, 1000, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, BIG_POINTS);
  for (int64_t i = 0; i < BIG_POINTS; i++) {
    cr_assert_eq(q.s[i].t_ms, start + i * 1000, "sample %lld", (long long)i);
    cr_assert_eq(q.s[i].v, big_value(i), "sample %lld: %.17g", (long long)i, q.s[i].v);
  }
  free(q.s);
  cr_assert_geq(t.turn - before, 4 * 2, "%llu turns", (unsigned long long)(t.turn - before));

  /* One chunk through the client's sink: its 360 KB are decoded over several turns, never more than a
   * burst and a read in one. */
  struct ps_buf url;
  ps_buf_init(&url);
  cr_assert_eq(ps_prom_range_url(&url, prom.url, "ps_big_load", start,
                                 start + (PS_PROM_MAX_POINTS - 1) * 1000, 1000, NULL),
               0);
  struct ps_sample *arr = NULL;
  size_t n = 0, cap = 0;
  cr_assert_eq(ps_prom_dec_new(&arr, &n, &cap, &t.dec), 0);
  struct ps_http_req *hr;
  struct got g = {0};
  cr_assert_eq(ps_http_get(http, url.data, 30000, got_cb, &g, &hr), 0);
  ps_http_set_body(hr, PS_PROM_MAX_RESPONSE, decode_sink, &t);
  cr_assert(ps_test_run_until(&loop, is_set, &g.done, 30000));
  cr_assert_eq(g.err, 0);
  cr_assert_eq(g.status, 200);
  char err[PS_PROM_MAX_ERROR_TEXT];
  cr_assert_eq(ps_prom_dec_finish(t.dec, err, sizeof err, NULL), 0, "%s", err);
  ps_prom_dec_free(t.dec);
  cr_assert_eq(n, PS_PROM_MAX_POINTS);
  cr_assert_gt(t.total, PS_HTTP_READ_BURST, "%zu bytes", t.total);
  cr_assert_leq(t.max_in_turn, PS_HTTP_READ_BURST + 65536, "%zu bytes in one turn", t.max_in_turn);
  free(arr);
  ps_buf_free(&url);

  /* 200 series: more than an answer may hold. Refused as it streams in, naming the series. */
  int64_t mstart = (end_s - MANY_POINTS + 1) * 1000;
  query(prom.url, "ps_many_load", mstart, end, 1000, &q);
  cr_assert_eq(q.err, UV_EINVAL, "%s", q.msg);
  cr_assert(strstr(q.msg, "query returned at least ") != NULL && strstr(q.msg, "sum(...)") != NULL, "%s",
            q.msg);
  /* Aggregated, it is one series again. */
  query(prom.url, "sum(ps_many_load)", mstart, end, 1000, &q);
  cr_assert_eq(q.err, 0, "%s", q.msg);
  cr_assert_eq(q.n, MANY_POINTS);
  free(q.s);

  uv_close((uv_handle_t *)&prep, NULL);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}
