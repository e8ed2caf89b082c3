/* Tests src/http_server.c, the HTTP/1.1 server connection layer: in memory (no socket, no loop) for the
 * limits, framing, keep-alive and the order of late answers, then over real loopback sockets behind net.c,
 * with the client in the same loop, for what needs the loop: the resume after a late answer, the idle timeout
 * and a client that goes away before its answer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "http_server.h"
#include "loop_fixture.h"
#include "net.h"
#include "raw_client_fixture.h"

/* ------------------------------------------------------------------------------------------------ */
/* A test server: answers at once with the path as body, except paths under /late, which it holds    */
/* ------------------------------------------------------------------------------------------------ */

#define MAX_HELD 8

static struct {
  int calls;   /* handler calls */
  int cancels; /* on_cancel calls */
  int cancel_rc;
  int rejects; /* on_reject calls */
  int last_reject;
  char reject_path[64];
  char method[16];
  struct ps_http_server_req *held[MAX_HELD]; /* requests to answer later, in arrival order */
  int nheld;
  unsigned flags; /* passed to ps_http_server_respond by the handler */
} h;

/* Answers with the request's path as body, so that the order of responses is visible. */
static int answer(struct ps_http_server_req *req, unsigned flags) {
  size_t n;
  const char *path = ps_http_server_req_path(req, &n);
  char body[80];
  int len = snprintf(body, sizeof(body), "%.*s\n", (int)(n < 64 ? n : 64), path);
  return ps_http_server_respond(req, 200, "text/plain", body, (size_t)len, flags);
}

static void handler(struct ps_http_server_req *req, void *arg) {
  cr_assert_eq(arg, &h);
  h.calls++;
  snprintf(h.method, sizeof(h.method), "%s", ps_http_server_req_method(req));
  size_t n;
  const char *path = ps_http_server_req_path(req, &n);
  if (n >= 5 && memcmp(path, "/late", 5) == 0) {
    cr_assert_lt(h.nheld, MAX_HELD);
    h.held[h.nheld++] = req;
    return;
  }
  if (n == 4 && memcmp(path, "/405", 4) == 0) {
    ps_http_server_respond(req, 405, "text/plain", "no\n", 3, 0);
    return;
  }
  answer(req, h.flags);
}

/* Takes the oldest held request (the application's pointer, owned by the test from here). */
static struct ps_http_server_req *take_held(void) {
  cr_assert_gt(h.nheld, 0);
  struct ps_http_server_req *req = h.held[0];
  memmove(h.held, h.held + 1, (size_t)(h.nheld - 1) * sizeof(h.held[0]));
  h.nheld--;
  return req;
}

/* The client went away: answer at once (nothing can be sent) and forget the request. */
static void on_cancel(struct ps_http_server_req *req, void *arg) {
  h.cancels++;
  for (int i = 0; i < h.nheld; i++)
    if (h.held[i] == req) {
      memmove(h.held + i, h.held + i + 1, (size_t)(h.nheld - i - 1) * sizeof(h.held[0]));
      h.nheld--;
      break;
    }
  h.cancel_rc = answer(req, 0);
}

static void on_reject(int status, const char *path, size_t n, void *arg) {
  h.rejects++;
  h.last_reject = status;
  snprintf(h.reject_path, sizeof(h.reject_path), "%.*s", (int)(n < 63 ? n : 63), path);
}

static struct ps_http_server_config cfg;

static void reset(void) {
  memset(&h, 0, sizeof(h));
  cfg = (struct ps_http_server_config){.handler = handler,
                                       .on_cancel = on_cancel,
                                       .on_reject = on_reject,
                                       .arg = &h,
                                       .idle_ms = 5000,
                                       .allow = "GET, HEAD",
                                       .log_prefix = "test "};
}

#define REQ(s) (const uint8_t *)s, sizeof(s) - 1

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* ------------------------------------------------------------------------------------------------ */
/* In memory                                                                                        */
/* ------------------------------------------------------------------------------------------------ */

TestSuite(http_server_mem, .init = reset);

static const size_t chunkings[] = {0, 1, 2, 7, 1000, 4096};
#define NCHUNKINGS (sizeof(chunkings) / sizeof(chunkings[0]))

/* Feeds `in` with every chunking; each must give the same bytes and the same result, returned. */
static int feed_every_way(const char *in, size_t len, struct ps_buf *out) {
  struct ps_buf first;
  ps_buf_init(&first);
  int rc0 = ps_http_server_feed_mem(&cfg, (const uint8_t *)in, len, 0, &first);
  for (size_t i = 1; i < NCHUNKINGS; i++) {
    struct ps_buf o;
    ps_buf_init(&o);
    int rc = ps_http_server_feed_mem(&cfg, (const uint8_t *)in, len, chunkings[i], &o);
    cr_assert_eq(rc, rc0, "chunk %zu", chunkings[i]);
    cr_assert_eq(o.len, first.len, "chunk %zu", chunkings[i]);
    cr_assert_eq(memcmp(o.data, first.data, o.len), 0, "chunk %zu", chunkings[i]);
    ps_buf_free(&o);
  }
  ps_buf_reset(out);
  ps_buf_append(out, first.data ? first.data : "", first.len);
  ps_buf_free(&first);
  return rc0;
}

/* A request of `total` bytes: "GET <target> HTTP/1.1\r\nHost: a\r\nX-Pad: ppp\r\n\r\n", the target
 * `target_len` bytes long, the rest padding. */
static char *make_request(size_t target_len, size_t total, size_t *len) {
  struct ps_buf b;
  ps_buf_init(&b);
  ps_buf_puts(&b, "GET /");
  while (b.len < 4 + target_len) ps_buf_puts(&b, "t");
  ps_buf_puts(&b, " HTTP/1.1\r\nHost: a\r\n");
  if (total > 0) {
    ps_buf_puts(&b, "X-Pad: ");
    while (b.len < total - 4) ps_buf_puts(&b, "p");
    ps_buf_puts(&b, "\r\n");
  }
  ps_buf_puts(&b, "\r\n");
  cr_assert(total == 0 || b.len == total, "%zu != %zu", b.len, total);
  return ps_buf_steal(&b, len);
}

Test(http_server_mem, each_refusal_has_its_status_closes_and_is_reported) {
  struct {
    const char *in;
    int status;
    const char *path; /* what on_reject is told */
  } cases[] = {
      {"\x16\x03\x01 hello\r\n\r\n", 400, ""},
      {"GET /a HTTP/1.1\r\n\r\n", 400, "/a"},                                      /* no Host, RFC 9112 3.2 */
      {"GET /a HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n", 400, "/a"},                /* two Hosts */
      {"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505, "/a"},                           /* major version */
      {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n", 413, "/a"}, /* before the body */
      {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "/a"},
      {"POST /a?q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "/a"},
  };
  struct ps_buf out;
  ps_buf_init(&out);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    reset();
    cr_assert_eq(feed_every_way(cases[i].in, strlen(cases[i].in), &out), UV_EOF, "case %zu", i);
    char want[32];
    snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
    cr_assert(strncmp(out.data, want, strlen(want)) == 0, "case %zu: %s", i, out.data);
    cr_assert_not_null(strstr(out.data, "\r\nConnection: close\r\n"), "case %zu", i);
    cr_assert_eq(ps_test_count_responses(out.data), 1, "case %zu", i);
    cr_assert_eq(h.calls, 0, "case %zu: the handler saw a refused request", i);
    cr_assert_eq(h.last_reject, cases[i].status, "case %zu", i);
    cr_assert_str_eq(h.reject_path, cases[i].path, "case %zu: %s", i, h.reject_path);
  }
  ps_buf_free(&out);
}

Test(http_server_mem, head_limit_is_exact_431) {
  struct ps_buf out;
  ps_buf_init(&out);
  for (size_t extra = 0; extra <= 1; extra++) {
    size_t len;
    char *in = make_request(10, PS_HTTP_SERVER_MAX_HEAD + extra, &len);
    int rc = feed_every_way(in, len, &out);
    if (extra == 0) {
      cr_assert_eq(rc, 0);
      cr_assert(starts(out.data, "HTTP/1.1 200 "), "%s", out.data);
    } else {
      cr_assert_eq(rc, UV_EOF);
      cr_assert(starts(out.data, "HTTP/1.1 431 Request Header Fields Too Large\r\n"), "%s", out.data);
    }
    free(in);
  }
  ps_buf_free(&out);
}

/* RFC 9112 3: a target longer than the server wants to parse MUST get 414. The head limit applies, and the
 * status says which part broke it, whatever the reads. */
Test(http_server_mem, target_too_long_414) {
  struct ps_buf out;
  ps_buf_init(&out);
  size_t len;
  char *in = make_request(PS_HTTP_SERVER_MAX_HEAD + 100, 0, &len);
  cr_assert_eq(feed_every_way(in, len, &out), UV_EOF);
  cr_assert(starts(out.data, "HTTP/1.1 414 URI Too Long\r\n"), "%s", out.data);
  cr_assert(strstr(out.data, "\r\n\r\nuri too long\n") != NULL);
  cr_assert_eq(h.last_reject, 414);
  free(in);
  /* Around the limit: 414 as long as the target alone breaks it, never a status that depends on the
   * reads (feed_every_way checks), and 431 once the target is whole and the rest breaks it. */
  int seen414 = 0, seen431 = 0;
  for (size_t t = PS_HTTP_SERVER_MAX_HEAD - 8; t <= PS_HTTP_SERVER_MAX_HEAD + 2; t++) {
    in = make_request(t, 0, &len);
    int rc = feed_every_way(in, len, &out);
    cr_assert_eq(rc, UV_EOF, "target %zu", t);
    if (starts(out.data, "HTTP/1.1 414 "))
      seen414++;
    else if (starts(out.data, "HTTP/1.1 431 "))
      seen431++;
    else
      cr_assert_fail("target %zu: %s", t, out.data);
    if (4 + t > PS_HTTP_SERVER_MAX_HEAD) cr_assert(starts(out.data, "HTTP/1.1 414 "), "target %zu", t);
    free(in);
  }
  cr_assert_gt(seen414, 0);
  cr_assert_gt(seen431, 0);
  ps_buf_free(&out);
}

Test(http_server_mem, body_limit_is_exact_413) {
  struct ps_buf in, out;
  ps_buf_init(&out);
  for (size_t extra = 0; extra <= 1; extra++) {
    /* Chunked, so that the body is counted as it arrives: chunks of 4 KiB, then one sized so that the
     * body, framing included, is exactly the limit (+ extra). */
    ps_buf_init(&in);
    ps_buf_puts(&in, "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    size_t head = in.len;
    static const size_t full = 6 + 4096 + 2; /* "1000\r\n" data "\r\n" */
    while (in.len - head + full + 16 <= PS_HTTP_SERVER_MAX_BODY) {
      ps_buf_puts(&in, "1000\r\n");
      for (int j = 0; j < 4096; j++) ps_buf_puts(&in, "x");
      ps_buf_puts(&in, "\r\n");
    }
    size_t left = PS_HTTP_SERVER_MAX_BODY + extra - (in.len - head) - 5; /* the last "0\r\n\r\n" */
    size_t data = 0;
    for (size_t digits = 1; digits <= 4; digits++) {
      char hex[16];
      data = left - digits - 4; /* size line "<hex>\r\n", data, "\r\n" */
      if ((size_t)snprintf(hex, sizeof(hex), "%zx", data) == digits) break;
    }
    ps_buf_printf(&in, "%zx\r\n", data);
    for (size_t j = 0; j < data; j++) ps_buf_puts(&in, "y");
    ps_buf_puts(&in, "\r\n0\r\n\r\n");
    cr_assert_eq(in.len - head, PS_HTTP_SERVER_MAX_BODY + extra);
    int rc = feed_every_way(in.data, in.len, &out);
    if (extra == 0) {
      cr_assert_eq(rc, 0);
      cr_assert(starts(out.data, "HTTP/1.1 200 "), "%s", out.data);
    } else {
      cr_assert_eq(rc, UV_EOF);
      cr_assert(starts(out.data, "HTTP/1.1 413 Content Too Large\r\n"), "%s", out.data);
    }
    ps_buf_free(&in);
  }
  ps_buf_free(&out);
}

Test(http_server_mem, framing_head_405_and_paths) {
  struct ps_buf out;
  ps_buf_init(&out);
  static const char in[] = "HEAD /p?q=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                           "DELETE /405 HTTP/1.1\r\nHost: a\r\n\r\n"
                           "GET http://a:1/abs#f HTTP/1.1\r\nHost: a\r\n\r\n"
                           "GET https://a HTTP/1.1\r\nHost: a\r\n\r\n";
  cr_assert_eq(feed_every_way(in, sizeof(in) - 1, &out), 0);
  cr_assert_eq(h.calls / (int)NCHUNKINGS, 4);
  static const char want[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
                             "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 3\r\nAllow: GET, HEAD\r\n\r\nno\n"
                             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n/abs\n"
                             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n\n";
  cr_assert_str_eq(out.data, want);
  cr_assert_str_eq(h.method, "GET");
  ps_buf_free(&out);
}

Test(http_server_mem, keep_alive_versus_close) {
  struct {
    const char *in;
    unsigned flags;
    int rc;
    int responses;
    const char *header; /* a Connection header the first response must carry, or "" for none */
  } cases[] = {
      {"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0, 2, ""},
      /* the request after "Connection: close" is not answered (RFC 9112 9.6) */
      {"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 0, UV_EOF,
       1, "Connection: close\r\n"},
      {"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", 0, UV_EOF, 1, "Connection: close\r\n"},
      /* HTTP/1.0 persistence must be announced (RFC 9112 C.2.2) */
      {"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, 0, 1, "Connection: keep-alive\r\n"},
      /* the application asks to close (e.g. draining) */
      {"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", PS_HTTP_SERVER_CLOSE, UV_EOF,
       1, "Connection: close\r\n"},
      /* after an Upgrade the bytes would be another protocol (RFC 9110 7.8) */
      {"GET /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 0,
       UV_EOF, 1, "Connection: close\r\n"},
  };
  struct ps_buf out;
  ps_buf_init(&out);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    reset();
    h.flags = cases[i].flags;
    cr_assert_eq(feed_every_way(cases[i].in, strlen(cases[i].in), &out), cases[i].rc, "case %zu", i);
    cr_assert_eq(ps_test_count_responses(out.data), cases[i].responses, "case %zu: %s", i, out.data);
    const char *end = strstr(out.data, "\r\n\r\n");
    const char *conn = strstr(out.data, "Connection: ");
    if (cases[i].header[0] == '\0')
      cr_assert(conn == NULL, "case %zu: %s", i, out.data);
    else
      cr_assert(conn != NULL && conn < end && strncmp(conn, cases[i].header, strlen(cases[i].header)) == 0,
                "case %zu: %s", i, out.data);
  }
  ps_buf_free(&out);
}

/* A late answer keeps the order: nothing behind it is parsed until it is given, and giving it does not
 * run the handler from inside ps_http_server_respond (the next feed, or the loop, resumes). */
Test(http_server_mem, pipelining_with_a_late_answer_keeps_order) {
  struct ps_buf out;
  ps_buf_init(&out);
  struct ps_http_server_conn *c = ps_http_server_mem_new(&cfg, &out);
  cr_assert_not_null(c);
  static const char in[] = "GET /late1 HTTP/1.1\r\nHost: a\r\n\r\n"
                           "GET /now HTTP/1.1\r\nHost: a\r\n\r\n"
                           "GET /late2 HTTP/1.1\r\nHost: a\r\n\r\n"
                           "GET /last HTTP/1.1\r\nHost: a\r\n\r\n";
  /* the first read ends inside the second request */
  cr_assert_eq(ps_http_server_mem_feed(c, (const uint8_t *)in, 40), 0);
  cr_assert_eq(h.calls, 1);
  cr_assert_eq(out.len, 0);
  cr_assert_eq(ps_http_server_mem_feed(c, (const uint8_t *)in + 40, sizeof(in) - 1 - 40), 0);
  cr_assert_eq(h.calls, 1, "parsed past a request waiting for its answer");

  cr_assert_eq(answer(take_held(), 0), 0);
  cr_assert_eq(h.calls, 1, "the handler ran inside ps_http_server_respond");
  cr_assert_eq(ps_test_count_responses(out.data), 1);
  cr_assert_eq(ps_http_server_mem_feed(c, NULL, 0), 0); /* resumes: /now at once, /late2 held */
  cr_assert_eq(h.calls, 3);
  cr_assert_eq(ps_test_count_responses(out.data), 2);
  cr_assert_eq(answer(take_held(), 0), 0);
  cr_assert_eq(ps_http_server_mem_feed(c, NULL, 0), 0);
  cr_assert_eq(h.calls, 4);
  const char *r1 = strstr(out.data, "/late1\n"), *r2 = strstr(out.data, "/now\n"),
             *r3 = strstr(out.data, "/late2\n"), *r4 = strstr(out.data, "/last\n");
  cr_assert(r1 && r2 && r3 && r4 && r1 < r2 && r2 < r3 && r3 < r4, "%s", out.data);
  cr_assert_eq(ps_test_count_responses(out.data), 4);
  ps_http_server_mem_free(c);
  cr_assert_eq(h.cancels, 0);
  ps_buf_free(&out);
}

Test(http_server_mem, answer_after_the_client_closed) {
  struct ps_buf out;
  ps_buf_init(&out);
  /* With on_cancel: the application hears of it at once and answers (nothing is sent). */
  struct ps_http_server_conn *c = ps_http_server_mem_new(&cfg, &out);
  cr_assert_eq(ps_http_server_mem_feed(c, REQ("GET /late HTTP/1.1\r\nHost: a\r\n\r\n")), 0);
  cr_assert_eq(h.nheld, 1);
  ps_http_server_mem_free(c);
  cr_assert_eq(h.cancels, 1);
  cr_assert_eq(h.cancel_rc, UV_EPIPE);
  cr_assert_eq(h.nheld, 0);
  cr_assert_eq(out.len, 0);

  /* Without: the answer comes when it is ready, finds no connection and only frees the request (ASan
   * would see a use after free or a leak). */
  reset();
  cfg.on_cancel = NULL;
  c = ps_http_server_mem_new(&cfg, &out);
  cr_assert_eq(ps_http_server_mem_feed(c, REQ("HEAD /late HTTP/1.1\r\nHost: a\r\n\r\n")), 0);
  ps_http_server_mem_free(c);
  cr_assert_eq(answer(take_held(), 0), UV_EPIPE);
  cr_assert_eq(out.len, 0);
  ps_buf_free(&out);
}

/* A client pipelining without bound behind a slow request is closed; the late answer then sends nothing. */
Test(http_server_mem, stash_overflow_behind_a_late_answer_closes) {
  struct ps_buf out;
  ps_buf_init(&out);
  struct ps_http_server_conn *c = ps_http_server_mem_new(&cfg, &out);
  cr_assert_eq(ps_http_server_mem_feed(c, REQ("GET /late HTTP/1.1\r\nHost: a\r\n\r\n")), 0);
  static char junk[64 << 10];
  memset(junk, 'G', sizeof(junk));
  int rc = 0;
  for (size_t sent = 0; sent <= PS_HTTP_SERVER_MAX_STASH && rc == 0; sent += sizeof(junk))
    rc = ps_http_server_mem_feed(c, (const uint8_t *)junk, sizeof(junk));
  cr_assert_eq(rc, UV_EOF);
  cr_assert_eq(h.calls, 1);
  cr_assert_eq(answer(take_held(), 0), UV_EPIPE);
  cr_assert_eq(out.len, 0);
  ps_http_server_mem_free(c);
  cr_assert_eq(h.cancels, 0);
  ps_buf_free(&out);
}

/* ------------------------------------------------------------------------------------------------ */
/* Over loopback: server and client in one loop                                                     */
/* ------------------------------------------------------------------------------------------------ */

static uv_loop_t loop;
static struct ps_net_listener *listener;
static bool listener_closed;

static void *test_open(struct ps_net_conn *nc, void *arg) { return ps_http_server_open(nc, &cfg); }

static const struct ps_net_proto test_proto = {
    .on_open = test_open,
    .on_read = ps_http_server_on_read,
    .on_drain = ps_http_server_on_drain,
    .on_close = ps_http_server_on_close,
};

static void net_setup(void) {
  reset();
  cr_assert_eq(uv_loop_init(&loop), 0);
  listener_closed = false;
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &test_proto, NULL, &listener), 0);
}

static void listener_done(void *arg) { listener_closed = true; }
static bool is_listener_closed(void *arg) { return listener_closed; }

/* Every test ends with stop_server() then PS_LOOP_END. */
static void stop_server(void) {
  if (listener != NULL) ps_net_listener_close(listener, listener_done, NULL);
  listener = NULL;
  cr_assert(ps_test_run_until(&loop, is_listener_closed, NULL, 5000));
  /* Every request was answered or cancelled and answered: none is left held. */
  cr_assert_eq(h.nheld, 0);
}

TestSuite(http_server_net, .init = net_setup, .timeout = 30);

static void client_start(struct ps_test_client *c, const char *request) {
  ps_test_client_start(c, &loop, ps_net_listener_port(listener), request);
}

static int want;
static bool has_responses(void *arg) {
  struct ps_test_client *c = arg;
  return ps_test_count_responses(c->in) >= want;
}
static bool held_is(void *arg) { return h.nheld == want; }
static bool cancels_is(void *arg) { return h.cancels == want; }
static bool no_conns(void *arg) { return ps_net_listener_conns(listener) == 0; }

Test(http_server_net, late_answers_resume_the_pipeline_from_the_loop) {
  struct ps_test_client c;
  client_start(&c, "GET /late1 HTTP/1.1\r\nHost: t\r\n\r\nGET /now HTTP/1.1\r\nHost: t\r\n\r\n"
                   "GET /late2 HTTP/1.1\r\nHost: t\r\n\r\n");
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  cr_assert_eq(h.calls, 1);
  /* Answered from outside any callback: the response is written now, the rest is parsed by the loop. */
  cr_assert_eq(answer(take_held(), 0), 0);
  cr_assert_eq(h.calls, 1);
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  cr_assert_eq(h.calls, 3);
  cr_assert_eq(answer(take_held(), 0), 0);
  want = 3;
  cr_assert(ps_test_run_until(&loop, has_responses, &c, 5000));
  const char *r1 = strstr(c.in, "/late1\n"), *r2 = strstr(c.in, "/now\n"), *r3 = strstr(c.in, "/late2\n");
  cr_assert(r1 && r2 && r3 && r1 < r2 && r2 < r3, "%s", c.in);
  cr_assert_not(c.eof);
  ps_test_client_close(&c);
  stop_server();
  PS_LOOP_END(&loop);
}

static bool timer_fired;
static void fired_cb(uv_timer_t *t) { timer_fired = true; }
static bool has_fired(void *arg) { return timer_fired; }

/* The idle timeout does not run while a request waits for its answer, and starts again after it. */
Test(http_server_net, idle_timeout_suspended_while_an_answer_is_pending) {
  /* The timer also runs from the accept to the request, which a busy machine may read a while later. */
  cfg.idle_ms = 500;
  struct ps_test_client c;
  client_start(&c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  /* Three idle timeouts pass with the answer pending. */
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  timer_fired = false;
  uv_timer_start(&t, fired_cb, 3 * cfg.idle_ms, 0);
  cr_assert(ps_test_run_until(&loop, has_fired, NULL, 5000));
  uv_close((uv_handle_t *)&t, NULL);
  cr_assert_not(c.eof, "closed as idle while its answer was pending");
  uint64_t answered_at = uv_now(&loop);
  cr_assert_eq(answer(take_held(), 0), 0);
  want = 1;
  cr_assert(ps_test_run_until(&loop, has_responses, &c, 5000));
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &c, 5000), "idle connection not closed");
  cr_assert_geq(c.eof_at - answered_at, cfg.idle_ms - 5, "closed %llu ms after the answer",
                (unsigned long long)(c.eof_at - answered_at));
  ps_test_client_close(&c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(http_server_net, client_gone_before_the_answer_is_cancelled) {
  struct ps_test_client c;
  client_start(&c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  ps_test_client_close(&c);
  want = 1;
  cr_assert(ps_test_run_until(&loop, cancels_is, NULL, 5000));
  cr_assert_eq(h.cancel_rc, UV_EPIPE);
  cr_assert_eq(h.nheld, 0);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(http_server_net, answer_after_the_connection_is_freed_sends_nothing) {
  cfg.on_cancel = NULL;
  struct ps_test_client c;
  client_start(&c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  ps_test_client_close(&c);
  cr_assert(ps_test_run_until(&loop, no_conns, NULL, 5000));
  /* The connection's state is freed once its timer has closed: one more loop turn. */
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert_eq(answer(take_held(), 0), UV_EPIPE);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(http_server_net, listener_closed_with_an_answer_pending) {
  struct ps_test_client c;
  client_start(&c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  ps_net_listener_close(listener, listener_done, NULL);
  listener = NULL;
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &c, 5000));
  want = 1;
  cr_assert(ps_test_run_until(&loop, cancels_is, NULL, 5000));
  cr_assert_eq(c.in_len, 0);
  ps_test_client_close(&c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(http_server_net, connection_close_then_eof) {
  struct ps_test_client c;
  client_start(&c,
               "GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &c, 5000));
  cr_assert_eq(ps_test_count_responses(c.in), 1, "%s", c.in);
  cr_assert(strstr(c.in, "Connection: close\r\n") != NULL);
  cr_assert_eq(h.calls, 1);
  ps_test_client_close(&c);
  stop_server();
  PS_LOOP_END(&loop);
}

/* RFC 9110 5.1: a field name is a token; RFC 9112 5.1: a server MUST answer 400 to whitespace between a
 * field name and its colon. llhttp passes both of these on, so http_server checks the names itself. */
Test(http_server_mem, whitespace_in_a_header_name_is_400_and_closes) {
  const char *cases[] = {
      "GET /healthz HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", /* a space inside */
      "GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n",          /* before the colon */
      "GET /healthz HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
  };
  struct ps_buf out;
  ps_buf_init(&out);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    reset();
    cr_assert_eq(feed_every_way(cases[i], strlen(cases[i]), &out), UV_EOF, "case %zu", i);
    cr_assert(starts(out.data, "HTTP/1.1 400 "), "case %zu: %s", i, out.data);
    cr_assert_not_null(strstr(out.data, "\r\nConnection: close\r\n"), "case %zu", i);
    cr_assert_eq(h.calls, 0, "case %zu: the handler saw the request", i);
    cr_assert_eq(h.last_reject, 400, "case %zu", i);
  }
  /* Every tchar is still a name. */
  reset();
  const char *ok = "GET /healthz HTTP/1.1\r\nHost: a\r\nX-!#$%&'*+.^_`|~09az: b\r\n\r\n";
  feed_every_way(ok, strlen(ok), &out);
  cr_assert(starts(out.data, "HTTP/1.1 200 "), "%s", out.data);
  cr_assert_eq(h.calls, (int)NCHUNKINGS, "one call per chunking");
  ps_buf_free(&out);
}

/* ---- connection slots ----------------------------------------------------------------------------- */

static size_t want_conns;
static bool conns_are(void *arg) { return ps_net_listener_conns(listener) == want_conns; }

/* Starts a client and waits until the server has accepted it (so that accepts happen in this order). */
static void client_start_counted(struct ps_test_client *c, const char *request) {
  want_conns = ps_net_listener_conns(listener) + 1;
  client_start(c, request);
  cr_assert(ps_test_run_until(&loop, conns_are, NULL, 5000));
}

static void wait_responses(struct ps_test_client *c, int n) {
  want = n;
  cr_assert(ps_test_run_until(&loop, has_responses, c, 5000), "%d responses expected: %s", n, c->in);
}

Test(http_server_net, at_the_limit_the_longest_idle_connection_is_evicted_never_a_pending_one) {
  ps_net_listener_set_slots(listener, 3, NULL);
  struct ps_test_client c[6];
  /* c0 waits for its answer: not idle, never evicted. */
  client_start_counted(&c[0], "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  want = 1;
  cr_assert(ps_test_run_until(&loop, held_is, NULL, 5000));
  /* c1 sends half a request head and nothing more: idle since its accept (bytes are no progress). */
  client_start_counted(&c[1], "GET /slow HTTP/1.1\r\nHos");
  /* c2 is answered: idle since that answer, more recently than c1. */
  client_start_counted(&c[2], "GET /two HTTP/1.1\r\nHost: t\r\n\r\n");
  wait_responses(&c[2], 1);

  client_start(&c[3], "GET /three HTTP/1.1\r\nHost: t\r\n\r\n"); /* the limit: c1 goes */
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &c[1], 5000), "the longest-idle one was kept");
  cr_assert_eq(c[1].in_len, 0);
  wait_responses(&c[3], 1);
  client_start(&c[4], "GET /four HTTP/1.1\r\nHost: t\r\n\r\n"); /* c2 goes: answered before c3 */
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &c[2], 5000));
  cr_assert_eq(ps_test_count_responses(c[2].in), 1);
  wait_responses(&c[4], 1);
  cr_assert_not(c[0].eof, "a connection waiting for its answer was evicted");
  cr_assert_not(c[3].eof);
  cr_assert_eq(h.cancels, 0);

  /* c0 is answered: idle from now, the most recent. Next to go is c3. */
  cr_assert_eq(answer(take_held(), 0), 0);
  wait_responses(&c[0], 1);
  client_start(&c[5], "GET /five HTTP/1.1\r\nHost: t\r\n\r\n");
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &c[3], 5000));
  wait_responses(&c[5], 1);
  cr_assert_not(c[0].eof);
  cr_assert_not(c[4].eof);
  cr_assert_eq(ps_net_listener_evicted(listener), 3);
  cr_assert_eq(ps_net_listener_refused(listener), 0);
  for (int i = 0; i < 6; i++) ps_test_client_close(&c[i]);
  stop_server();
  PS_LOOP_END(&loop);
}

/* A client that sends its request head one byte every 20 ms and never ends it (slowloris). */
static struct ps_test_client slow;
static size_t slow_sent;
static void slow_tick(uv_timer_t *t) {
  if (slow.eof) return;
  uv_buf_t b = uv_buf_init("a", 1);
  if (uv_try_write((uv_stream_t *)&slow.tcp, &b, 1) == 1) slow_sent++;
}

Test(http_server_net, a_request_head_trickled_byte_by_byte_is_closed_at_the_idle_timeout) {
  cfg.idle_ms = 300;
  slow_sent = 0;
  client_start(&slow, "GET /slow HTTP/1.1\r\nHost: t\r\nX-Pad: ");
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, slow_tick, 20, 20);
  cr_assert(ps_test_run_until(&loop, ps_test_client_eof, &slow, 5000), "a trickling client was never closed");
  uv_close((uv_handle_t *)&t, NULL);
  /* Bytes kept arriving, yet the connection closed once the idle timeout passed since its accept. */
  cr_assert_geq(slow_sent, 2);
  cr_assert_geq(slow.eof_at - slow.sent_at, cfg.idle_ms - 5, "closed %llu ms after the accept",
                (unsigned long long)(slow.eof_at - slow.sent_at));
  cr_assert_eq(slow.in_len, 0);
  cr_assert_eq(h.calls, 0);
  ps_test_client_close(&slow);
  stop_server();
  PS_LOOP_END(&loop);
}
