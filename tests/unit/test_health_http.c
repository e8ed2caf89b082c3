/* Tests src/health_http.c over real loopback connections: the server runs on this thread's uv loop behind
 * ps_net_listen; each test's client runs on a second thread with plain blocking sockets (receive timeout
 * bounded), records what it saw, and the assertions are made on the main thread after it is joined. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "health_http.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "net.h"

#define CLIENT_TIMEOUT_S 5     /* a blocking recv never waits longer than this */
#define TEST_TIMEOUT_MS  15000 /* the loop is stopped (and the test fails) after this, times the scale */
#define MAX_RESP         64
#define CBUF             (8u << 20)

/* ---- fixture: one loop, one listener ------------------------------------------------------------ */

static uv_loop_t loop;
static struct ps_health_http srv;
static struct ps_net_listener *listener;
static int port;
static atomic_bool ready_flag;
static uv_async_t done_async;
static uv_timer_t guard;
static bool timed_out;

static bool ready_cb(void *arg) { return atomic_load((atomic_bool *)arg); }

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  ps_metrics_reset();
  atomic_store(&ready_flag, true);
  srv = (struct ps_health_http){.loop = &loop, .ready = ready_cb, .ready_arg = &ready_flag};
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &ps_health_http_net_proto, &srv, &listener), 0);
  port = ps_net_listener_port(listener);
  cr_assert_gt(port, 0);
  timed_out = false;
}

/* Each test ends with PS_LOOP_END: stop_all() closed everything, nothing may be left on the loop. */
static void teardown(void) { ps_metrics_reset(); }

TestSuite(health_http, .init = setup, .fini = teardown, .timeout = 30);

static void stop_all(void) {
  if (listener != NULL) {
    ps_net_listener_close(listener, NULL, NULL);
    listener = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&done_async)) uv_close((uv_handle_t *)&done_async, NULL);
  if (!uv_is_closing((uv_handle_t *)&guard)) uv_close((uv_handle_t *)&guard, NULL);
}

static void done_cb(uv_async_t *a) { stop_all(); }

static void guard_cb(uv_timer_t *t) {
  timed_out = true;
  stop_all();
}

/* ---- client side (second thread) ------------------------------------------------------------------ */

struct resp {
  int status;
  long content_length; /* -1: absent */
  bool conn_close;
  bool keep_alive_hdr;
  char head[1024]; /* start of the header block, for header checks */
  char *body;      /* malloc'd, NUL-terminated */
  size_t body_len;
};

struct client {
  int fd;
  char *buf; /* bytes received and not yet parsed */
  size_t len;
  bool eof; /* the server closed (recv returned 0, or a reset) */
};

struct result {
  int n;
  struct resp r[MAX_RESP];
  bool eof; /* the connection was closed by the server at the end */
  bool sent_ok;
  bool parsed_early; /* backpressure test: the server parsed the last request before any answer was read */
  char note[128];    /* why the client gave up, if it did */
};

static struct result res;

static int cli_connect(struct client *c) {
  memset(c, 0, sizeof(*c));
  c->buf = malloc(CBUF);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  /* A small receive window keeps the kernel from absorbing what the server queues. */
  int rcvbuf = 16 << 10;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
}

static void cli_close(struct client *c) {
  close(c->fd);
  free(c->buf);
}

static bool cli_send(struct client *c, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    s += w;
    n -= (size_t)w;
  }
  return true;
}

static bool cli_fill(struct client *c) {
  if (c->eof || c->len == CBUF) return false;
  ssize_t n = recv(c->fd, c->buf + c->len, CBUF - c->len, 0);
  if (n == 0 || (n < 0 && errno == ECONNRESET)) {
    c->eof = true;
    return false;
  }
  if (n < 0) return false; /* timeout */
  c->len += (size_t)n;
  return true;
}

/* Reads one response; HEAD responses carry Content-Length but no body. */
static bool cli_response(struct client *c, bool head_request, struct resp *r) {
  memset(r, 0, sizeof(*r));
  char *end;
  while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
    if (!cli_fill(c)) return false;
  size_t hlen = (size_t)(end - c->buf) + 4;
  size_t copy = hlen < sizeof(r->head) - 1 ? hlen : sizeof(r->head) - 1;
  memcpy(r->head, c->buf, copy);
  if (sscanf(c->buf, "HTTP/1.1 %d ", &r->status) != 1) return false;
  r->content_length = -1;
  const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
  if (cl != NULL) r->content_length = strtol(cl + 18, NULL, 10);
  r->conn_close = strcasestr(r->head, "\r\nConnection: close\r\n") != NULL;
  r->keep_alive_hdr = strcasestr(r->head, "\r\nConnection: keep-alive\r\n") != NULL;
  size_t blen = head_request || r->content_length < 0 ? 0 : (size_t)r->content_length;
  while (c->len < hlen + blen)
    if (!cli_fill(c)) return false;
  r->body = malloc(blen + 1);
  memcpy(r->body, c->buf + hlen, blen);
  r->body[blen] = '\0';
  r->body_len = blen;
  memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
  c->len -= hlen + blen;
  return true;
}

/* True when the server closes the connection with nothing more sent. */
static bool cli_wait_eof(struct client *c) {
  while (cli_fill(c))
    ;
  return c->eof && c->len == 0;
}

/* What exchange() does, set by run_exchange() before the client thread starts. */
static struct {
  const char *req;
  size_t req_len;
  int n;
  const bool *head; /* HEAD-ness per response, or NULL for none */
  bool expect_eof;
} ex;

/* Sends ex.req, reads ex.n responses, then checks for EOF if asked. */
static void exchange(void) {
  struct client c;
  if (cli_connect(&c) != 0) {
    snprintf(res.note, sizeof(res.note), "connect: %s", strerror(errno));
    cli_close(&c);
    return;
  }
  res.sent_ok = cli_send(&c, ex.req, ex.req_len);
  for (int i = 0; i < ex.n; i++) {
    if (!cli_response(&c, ex.head != NULL && ex.head[i], &res.r[res.n])) {
      snprintf(res.note, sizeof(res.note), "response %d missing", i);
      break;
    }
    res.n++;
  }
  if (ex.expect_eof) res.eof = cli_wait_eof(&c);
  cli_close(&c);
}

static void (*client_fn)(void);

static void *client_main(void *arg) {
  client_fn();
  uv_async_send(&done_async);
  return NULL;
}

/* Runs `fn` on a client thread while this thread runs the server loop; returns when the loop is empty. */
static void run_client(void (*fn)(void)) {
  memset(&res, 0, sizeof(res));
  client_fn = fn;
  cr_assert_eq(uv_async_init(&loop, &done_async, done_cb), 0);
  cr_assert_eq(uv_timer_init(&loop, &guard), 0);
  cr_assert_eq(uv_timer_start(&guard, guard_cb, TEST_TIMEOUT_MS * ps_test_timeout_scale(), 0), 0);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, client_main, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(t, NULL);
  cr_assert_not(timed_out, "test timed out");
}

/* Runs exchange() on the client thread; all `n` responses must have come. */
static void run_exchange(const char *req, size_t req_len, int n, const bool *head, bool expect_eof) {
  ex.req = req;
  ex.req_len = req_len;
  ex.n = n;
  ex.head = head;
  ex.expect_eof = expect_eof;
  run_client(exchange);
  cr_assert_eq(res.n, n, "%s", res.note);
}

static void free_result(void) {
  for (int i = 0; i < res.n; i++) free(res.r[i].body);
}

#define REQ(s) s, sizeof(s) - 1

/* ---- routes ----------------------------------------------------------------------------------------- */

Test(health_http, healthz_ok) {
  run_exchange(REQ("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 1, NULL, false);
  cr_assert_eq(res.r[0].status, 200);
  cr_assert_str_eq(res.r[0].body, "ok\n");
  cr_assert_eq(res.r[0].content_length, 3);
  cr_assert_not_null(strstr(res.r[0].head, "Content-Type: text/plain; charset=utf-8\r\n"));
  cr_assert_not(res.r[0].conn_close);
  cr_assert_eq(ps_metrics_get("prescale_http_requests_total", "path=\"/healthz\",code=\"200\""), 1.0);
  free_result();
  PS_LOOP_END(&loop);
}

static void readyz_flips(void) {
  struct client c;
  if (cli_connect(&c) != 0) return;
  static const char req[] = "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n";
  for (int i = 0; i < 3; i++) {
    /* ready, not ready, ready again: the flag is read per request */
    atomic_store(&ready_flag, i != 1);
    if (!cli_send(&c, REQ(req)) || !cli_response(&c, false, &res.r[res.n])) break;
    res.n++;
  }
  cli_close(&c);
}

Test(health_http, readyz_follows_ready_flag) {
  run_client(readyz_flips);
  cr_assert_eq(res.n, 3);
  cr_assert_eq(res.r[0].status, 200);
  cr_assert_str_eq(res.r[0].body, "ready\n");
  cr_assert_eq(res.r[1].status, 503);
  cr_assert_str_eq(res.r[1].body, "not ready\n");
  cr_assert_eq(res.r[1].content_length, 10);
  cr_assert_eq(res.r[2].status, 200);
  cr_assert_eq(ps_metrics_get("prescale_http_requests_total", "path=\"/readyz\",code=\"503\""), 1.0);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, metrics_exposition) {
  cr_assert_eq(ps_metrics_declare("test_widgets_total", PS_METRIC_COUNTER, "Widgets seen."), 0);
  ps_metrics_add("test_widgets_total", "", 3);
  run_exchange(REQ("GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"), 1, NULL, false);
  cr_assert_eq(res.r[0].status, 200);
  cr_assert_not_null(strstr(res.r[0].head, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  cr_assert_not_null(strstr(res.r[0].body, "# TYPE test_widgets_total counter\n"));
  cr_assert_not_null(strstr(res.r[0].body, "\ntest_widgets_total 3\n"), "%s", res.r[0].body);
  cr_assert_not_null(strstr(res.r[0].body, "# TYPE prescale_http_requests_total counter\n"));
  cr_assert_eq((size_t)res.r[0].content_length, res.r[0].body_len);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, head_has_length_but_no_body) {
  static const bool head[] = {true, true, false};
  run_exchange(REQ("HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                   "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
               3, head, false);
  cr_assert_eq(res.r[0].status, 200);
  cr_assert_eq(res.r[0].content_length, 3);
  cr_assert_eq(res.r[0].body_len, 0);
  cr_assert_eq(res.r[1].status, 200);
  cr_assert_gt(res.r[1].content_length, 0);
  /* Had a body been sent after a HEAD response, it would be parsed here as the third status line. */
  cr_assert_eq(res.r[2].status, 200);
  cr_assert_str_eq(res.r[2].body, "ok\n");
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, unknown_path_404_counted_as_other) {
  run_exchange(REQ("GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /healthzz HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET http://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
               3, NULL, false);
  cr_assert_eq(res.r[0].status, 404);
  cr_assert_eq(res.r[1].status, 404);
  cr_assert_not(res.r[0].conn_close);
  cr_assert_eq(res.r[2].status, 200, "absolute-form target is routed (RFC 9112 3.2.2)");
  cr_assert_eq(ps_metrics_get("prescale_http_requests_total", "path=\"other\",code=\"404\""), 2.0);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, other_method_405_with_allow) {
  run_exchange(REQ("POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                   "DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"),
               3, NULL, false);
  cr_assert_eq(res.r[0].status, 405);
  cr_assert_not_null(strstr(res.r[0].head, "\r\nAllow: GET, HEAD\r\n"));
  cr_assert_eq(res.r[1].status, 405);
  /* the ignored body of the POST did not desynchronise the connection */
  cr_assert_eq(res.r[2].status, 200);
  cr_assert_eq(ps_metrics_get("prescale_http_requests_total", "path=\"/healthz\",code=\"405\""), 1.0);
  free_result();
  PS_LOOP_END(&loop);
}

/* ---- errors and limits ------------------------------------------------------------------------------ */

Test(health_http, garbage_400_and_close) {
  run_exchange(REQ("\x16\x03\x01 hello there\r\n\r\n"), 1, NULL, true);
  cr_assert_eq(res.r[0].status, 400);
  cr_assert(res.r[0].conn_close);
  cr_assert(res.eof);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, huge_headers_431_and_close) {
  size_t n = PS_HEALTH_HTTP_MAX_REQUEST + 1024;
  char *req = malloc(n + 64);
  int k = snprintf(req, 64, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
  memset(req + k, 'a', n);
  memcpy(req + k + n, "\r\n\r\n", 4);
  run_exchange(req, (size_t)k + n + 4, 1, NULL, true);
  free(req);
  cr_assert_eq(res.r[0].status, 431);
  cr_assert(res.r[0].conn_close);
  cr_assert(res.eof);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, headers_at_limit_accepted) {
  /* a head of exactly PS_HEALTH_HTTP_MAX_REQUEST bytes is accepted */
  const char *pre = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ";
  size_t k = strlen(pre), total = PS_HEALTH_HTTP_MAX_REQUEST;
  char *req = malloc(total);
  memcpy(req, pre, k);
  memset(req + k, 'a', total - k - 4);
  memcpy(req + total - 4, "\r\n\r\n", 4);
  run_exchange(req, total, 1, NULL, false);
  free(req);
  cr_assert_eq(res.r[0].status, 200);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, body_over_limit_413_and_close) {
  run_exchange(REQ("POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n"), 1, NULL, true);
  cr_assert_eq(res.r[0].status, 413);
  cr_assert(res.eof);
  free_result();
  PS_LOOP_END(&loop);
}

/* ---- persistence ------------------------------------------------------------------------------------ */

static void keep_alive_two(void) {
  struct client c;
  if (cli_connect(&c) != 0) return;
  /* the second request is sent only after the first answer: a real keep-alive round trip */
  for (int i = 0; i < 2; i++) {
    if (!cli_send(&c, REQ("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")) ||
        !cli_response(&c, false, &res.r[res.n]))
      break;
    res.n++;
  }
  cli_close(&c);
}

Test(health_http, keep_alive_two_requests_one_connection) {
  run_client(keep_alive_two);
  cr_assert_eq(res.n, 2);
  cr_assert_eq(res.r[0].status, 200);
  cr_assert_eq(res.r[1].status, 200);
  cr_assert_not(res.r[0].conn_close);
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, pipelined_answered_in_order) {
  run_exchange(REQ("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
               3, NULL, false);
  cr_assert_str_eq(res.r[0].body, "ready\n");
  cr_assert_eq(res.r[1].status, 404);
  cr_assert_str_eq(res.r[2].body, "ok\n");
  free_result();
  PS_LOOP_END(&loop);
}

Test(health_http, connection_close_honoured) {
  /* the request after "Connection: close" must not be answered (RFC 9112 9.6) */
  run_exchange(REQ("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                   "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
               1, NULL, true);
  cr_assert_eq(res.r[0].status, 200);
  cr_assert(res.r[0].conn_close);
  cr_assert(res.eof, "the server closed after the response");
  free_result();
  PS_LOOP_END(&loop);
}

static void http10(void) {
  struct client c;
  if (cli_connect(&c) != 0) return;
  if (cli_send(&c, REQ("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")) &&
      cli_response(&c, false, &res.r[res.n]))
    res.n++;
  if (cli_send(&c, REQ("GET /healthz HTTP/1.0\r\n\r\n")) && cli_response(&c, false, &res.r[res.n])) res.n++;
  res.eof = cli_wait_eof(&c);
  cli_close(&c);
}

Test(health_http, http10_closes_unless_keep_alive) {
  run_client(http10);
  cr_assert_eq(res.n, 2);
  cr_assert(res.r[0].keep_alive_hdr);
  cr_assert_not(res.r[0].conn_close);
  cr_assert(res.r[1].conn_close);
  cr_assert(res.eof);
  free_result();
  PS_LOOP_END(&loop);
}

static void idle(void) {
  struct client c;
  if (cli_connect(&c) != 0) return;
  uint64_t t0 = uv_hrtime();
  if (cli_send(&c, REQ("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")) && cli_response(&c, false, &res.r[0]))
    res.n++;
  res.eof = cli_wait_eof(&c);
  /* reuse `note` to report the elapsed time */
  snprintf(res.note, sizeof(res.note), "%llu", (unsigned long long)((uv_hrtime() - t0) / 1000000));
  cli_close(&c);
}

Test(health_http, idle_connection_closed) {
  /* The timer also runs from the accept to the request, which a busy machine may read a while later. */
  srv.idle_ms = 1000;
  run_client(idle);
  cr_assert_eq(res.n, 1);
  cr_assert(res.eof, "idle keep-alive connection closed by the server");
  long ms = strtol(res.note, NULL, 10);
  cr_assert_geq(ms, (long)srv.idle_ms - 10, "closed after %ld ms, before the idle timeout", ms);
  cr_assert_lt(ms, CLIENT_TIMEOUT_S * 1000);
  free_result();
  PS_LOOP_END(&loop);
}

#define PIPELINE_N 64
#define HOLD_MS    1000

static pthread_mutex_t probe_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t probe_cv = PTHREAD_COND_INITIALIZER;
static int probe_calls;

/* The readiness callback doubles as a probe of how far the server has parsed the pipeline. */
static bool probe_ready(void *arg) {
  pthread_mutex_lock(&probe_mu);
  probe_calls++;
  pthread_cond_signal(&probe_cv);
  pthread_mutex_unlock(&probe_mu);
  return true;
}

static void slow_reader(void) {
  /* PIPELINE_N /metrics requests and a final /readyz in one write; nothing is read for HOLD_MS. The
   * answers (~10 MiB) exceed PS_NET_HIGH_WATER plus what the kernel buffers, so the server must hold the
   * rest of the input back: /readyz must not be parsed (probe not called) until the client reads. */
  static const char one[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
  static const char last[] = "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n";
  char req[sizeof(one) * PIPELINE_N + sizeof(last)];
  size_t n = 0;
  for (int i = 0; i < PIPELINE_N; i++, n += sizeof(one) - 1) memcpy(req + n, one, sizeof(one) - 1);
  memcpy(req + n, last, sizeof(last) - 1);
  n += sizeof(last) - 1;
  struct client c;
  if (cli_connect(&c) != 0) return;
  res.sent_ok = cli_send(&c, req, n);

  /* A bounded wait for an event that must not happen. */
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += HOLD_MS / 1000;
  pthread_mutex_lock(&probe_mu);
  while (probe_calls == 0 && pthread_cond_timedwait(&probe_cv, &probe_mu, &deadline) == 0)
    ;
  res.parsed_early = probe_calls > 0;
  pthread_mutex_unlock(&probe_mu);

  for (int i = 0; i <= PIPELINE_N; i++) {
    struct resp r;
    if (!cli_response(&c, false, &r)) break;
    if (r.status == 200 && r.body_len > 0) res.n++;
    free(r.body);
  }
  cli_close(&c);
}

/* 64 answers of ~150 KiB: under memcheck (PS_TEST_TIMEOUT_SCALE 10) on a busy machine this took over the
 * suite's 30 s, so its kill bound is the scaled guard's; in a plain run the 15 s guard still ends a hang
 * first. */
Test(health_http, backpressure_holds_pipeline_until_read, .timeout = 180) {
  /* ~150 KiB of exposition per answer */
  cr_assert_eq(ps_metrics_declare("test_series", PS_METRIC_GAUGE, "Padding."), 0);
  char labels[64];
  for (int i = 0; i < 3000; i++) {
    snprintf(labels, sizeof(labels), "target=\"namespace/deployment-%04d\"", i);
    ps_metrics_set("test_series", labels, i);
  }
  srv.ready = probe_ready;
  probe_calls = 0;
  run_client(slow_reader);
  cr_assert(res.sent_ok);
  cr_assert_not(res.parsed_early, "the server kept parsing while its answers piled up unread");
  cr_assert_eq(res.n, PIPELINE_N + 1, "%d answers", res.n);
  cr_assert_eq(probe_calls, 1);
  cr_assert_eq(ps_metrics_get("prescale_http_requests_total", "path=\"/metrics\",code=\"200\""), PIPELINE_N);
  PS_LOOP_END(&loop);
}

/* ---- memory mode (the fuzzed path) ------------------------------------------------------------------- */

static void teardown_mem(void) { ps_metrics_reset(); }

Test(health_http_mem, split_reads_same_answers, .fini = teardown_mem) {
  static const char in[] = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nHEAD /readyz HTTP/1.1\r\nhOST: a\r\n\r\n"
                           "GET /x HTTP/1.1\r\nX-Host: b\r\nHost: a\r\n\r\n";
  struct ps_health_http s = {0};
  struct ps_buf whole, split;
  ps_buf_init(&whole);
  ps_buf_init(&split);
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)in, sizeof(in) - 1, 0, &whole), 0);
  for (size_t chunk = 1; chunk < 8; chunk++) {
    ps_buf_reset(&split);
    cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)in, sizeof(in) - 1, chunk, &split), 0);
    cr_assert_eq(split.len, whole.len);
    cr_assert_eq(memcmp(split.data, whole.data, whole.len), 0);
  }
  cr_assert_not_null(strstr(whole.data, "HTTP/1.1 404 Not Found\r\n"));
  ps_buf_free(&whole);
  ps_buf_free(&split);
}

Test(health_http_mem, version_and_smuggling_rejected, .fini = teardown_mem) {
  struct ps_health_http s = {0};
  struct ps_buf out;
  ps_buf_init(&out);
  static const char v2[] = "GET /healthz HTTP/2.0\r\n\r\n";
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)v2, sizeof(v2) - 1, 0, &out), UV_EOF);
  cr_assert_not_null(strstr(out.data, "HTTP/1.1 505 "));
  ps_buf_reset(&out);
  static const char cl2[] =
      "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)cl2, sizeof(cl2) - 1, 0, &out), UV_EOF);
  cr_assert_not_null(strstr(out.data, "HTTP/1.1 400 "));
  ps_buf_reset(&out);
  /* chunked body over the limit, sent in small chunks: refused while it arrives */
  struct ps_buf in;
  ps_buf_init(&in);
  ps_buf_puts(&in, "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 20; i++) {
    ps_buf_puts(&in, "1000\r\n");
    for (int j = 0; j < 4096; j++) ps_buf_puts(&in, "x");
    ps_buf_puts(&in, "\r\n");
  }
  ps_buf_puts(&in, "0\r\n\r\n");
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)in.data, in.len, 1000, &out), UV_EOF);
  cr_assert_not_null(strstr(out.data, "HTTP/1.1 413 "));
  ps_buf_free(&in);
  ps_buf_reset(&out);
  static const char nohost[] = "GET /healthz HTTP/1.1\r\n\r\n";
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)nohost, sizeof(nohost) - 1, 0, &out), UV_EOF);
  cr_assert_not_null(strstr(out.data, "HTTP/1.1 400 "), "HTTP/1.1 without Host (RFC 9112 3.2)");
  ps_buf_reset(&out);
  static const char twohosts[] = "GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n";
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)twohosts, sizeof(twohosts) - 1, 0, &out), UV_EOF);
  cr_assert_not_null(strstr(out.data, "HTTP/1.1 400 "));
  ps_buf_reset(&out);
  static const char v10[] = "GET /healthz HTTP/1.0\r\n\r\n";
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)v10, sizeof(v10) - 1, 7, &out), UV_EOF);
  cr_assert_not_null(strstr(out.data, "HTTP/1.1 200 "), "HTTP/1.0 needs no Host");
  ps_buf_free(&out);
}

/* The head limit is exact whatever the read boundaries: MAX bytes pass, MAX + 1 get 431. */
Test(health_http_mem, head_limit_is_exact, .fini = teardown_mem) {
  static const char pre[] = "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: ";
  struct ps_health_http s = {0};
  struct ps_buf in, out;
  ps_buf_init(&out);
  for (size_t extra = 0; extra <= 1; extra++) {
    size_t total = PS_HEALTH_HTTP_MAX_REQUEST + extra;
    ps_buf_init(&in);
    ps_buf_puts(&in, pre);
    while (in.len < total - 4) ps_buf_puts(&in, "p");
    ps_buf_puts(&in, "\r\n\r\n");
    cr_assert_eq(in.len, total);
    static const size_t chunks[] = {0, 1, 1000, 4096, PS_HEALTH_HTTP_MAX_REQUEST};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
      ps_buf_reset(&out);
      int rc = ps_health_http_feed_mem(&s, (const uint8_t *)in.data, in.len, chunks[i], &out);
      if (extra == 0) {
        cr_assert_eq(rc, 0, "chunk %zu", chunks[i]);
        cr_assert_not_null(strstr(out.data, "HTTP/1.1 200 "));
      } else {
        cr_assert_eq(rc, UV_EOF, "chunk %zu", chunks[i]);
        cr_assert_not_null(strstr(out.data, "HTTP/1.1 431 "), "chunk %zu", chunks[i]);
      }
    }
    ps_buf_free(&in);
  }
  ps_buf_free(&out);
}

/* RFC 9112 3: a request target longer than the server parses MUST get 414 (it got 431 before http_server.c);
 * the refusal is counted under the path received, the query being cut. */
Test(health_http_mem, target_too_long_414_counted_by_path, .fini = teardown_mem) {
  struct ps_health_http s = {0};
  struct ps_buf in, out;
  ps_buf_init(&in);
  ps_buf_init(&out);
  ps_buf_puts(&in, "GET /healthz?");
  while (in.len < PS_HEALTH_HTTP_MAX_REQUEST + 10) ps_buf_puts(&in, "a");
  ps_buf_puts(&in, " HTTP/1.1\r\nHost: a\r\n\r\n");
  cr_assert_eq(ps_health_http_feed_mem(&s, (const uint8_t *)in.data, in.len, 4096, &out), UV_EOF);
  cr_assert(strncmp(out.data, "HTTP/1.1 414 URI Too Long\r\n", 27) == 0, "%s", out.data);
  cr_assert_not_null(strstr(out.data, "\r\nConnection: close\r\n"));
  cr_assert_eq(ps_metrics_get("prescale_http_requests_total", "path=\"/healthz\",code=\"414\""), 1.0);
  ps_buf_free(&in);
  ps_buf_free(&out);
}
