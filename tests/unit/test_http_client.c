/* Tests src/http_client*.c (one API, http_client.h): URL splitting, and real requests on loopback against a
 * fake HTTP server written here (on the same libuv loop) that injects the faults a real server would not:
 * garbage, stalls, resets, odd chunk splits, oversize bodies, dropped keep-alive connections. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "http_client.h"
#include "http_token.h"
#include "loop_fixture.h"
#include "metrics.h"

/* ==== URL splitting ================================================================================ */

static int split(const char *url, char *host, int *port, const char **path) {
  return ps_http_url_split(url, host, 256, port, path);
}

Test(http_client, url_split_good) {
  char host[256];
  int port;
  const char *path;
  cr_assert_eq(split("http://prom:9090/api/v1/query?x=1", host, &port, &path), 0);
  cr_assert_str_eq(host, "prom");
  cr_assert_eq(port, 9090);
  cr_assert_str_eq(path, "/api/v1/query?x=1");
  cr_assert_eq(split("http://example.com", host, &port, &path), 0);
  cr_assert_str_eq(host, "example.com");
  cr_assert_eq(port, 80);
  cr_assert_str_eq(path, "/");
  cr_assert_eq(split("HTTP://[::1]:8080/p", host, &port, &path), 0);
  cr_assert_str_eq(host, "::1");
  cr_assert_eq(port, 8080);
  cr_assert_str_eq(path, "/p");
  cr_assert_eq(split("http://[fe80::1:2]/", host, &port, &path), 0);
  cr_assert_str_eq(host, "fe80::1:2");
  cr_assert_eq(port, 80);
  cr_assert_eq(split("http://10.0.0.1:65535/", host, &port, &path), 0);
  cr_assert_eq(port, 65535);
  cr_assert_eq(split("http://prometheus-k8s.monitoring.svc:9090/prom/", host, &port, &path), 0);
  cr_assert_str_eq(host, "prometheus-k8s.monitoring.svc");
  cr_assert_str_eq(path, "/prom/");
  /* https: port 443 by default (RFC 9110 4.2.2) */
  cr_assert_eq(split("https://thanos-querier.openshift-monitoring.svc", host, &port, &path), 0);
  cr_assert_str_eq(host, "thanos-querier.openshift-monitoring.svc");
  cr_assert_eq(port, 443);
  cr_assert_str_eq(path, "/");
  cr_assert_eq(split("HTTPS://[::1]:9091/api", host, &port, &path), 0);
  cr_assert_str_eq(host, "::1");
  cr_assert_eq(port, 9091);
  cr_assert_str_eq(path, "/api");
}

/* The control bytes (http_token.h), the one check for header values, labels, namespaces and the lines of
 * text from a peer: CTL is 0x00-0x1F and DEL (RFC 5234 B.1), a field value may hold HTAB of them (RFC 9110
 * 5.5); over every byte, UTF-8's included. */
Test(http_client, control_bytes_over_every_byte) {
  char all[256];
  for (int ch = 0; ch < 256; ch++) {
    bool ctl = ch < 0x20 || ch == 0x7f;
    cr_assert_eq(ps_ctl((unsigned char)ch), ctl, "byte 0x%02x", ch);
    cr_assert_eq(ps_field_ctl((unsigned char)ch), ctl && ch != '\t', "byte 0x%02x", ch);
    if (ch > 0) all[ch - 1] = (char)ch;
  }
  all[255] = '\0';
  ps_ctl_to_space(all);
  for (int ch = 1; ch < 256; ch++)
    cr_assert_eq((unsigned char)all[ch - 1], ch < 0x20 || ch == 0x7f ? ' ' : ch, "byte 0x%02x", ch);
  /* A header line holding a control byte in its value is refused, HTAB excepted. */
  cr_assert_eq(ps_http_headers_check("X-A: a\tb\r\n"), 0);
  cr_assert_eq(ps_http_headers_check("X-A: a\x01b\r\n"), UV_EINVAL);
  cr_assert_eq(ps_http_headers_check("X-A: a\x7f\r\n"), UV_EINVAL);
  cr_assert_eq(ps_http_headers_check("X-A: a\nb\r\n"), UV_EINVAL);
  cr_assert_eq(ps_http_headers_check("X-A: caf\xc3\xa9\r\n"), 0);
}

Test(http_client, url_split_bad) {
  char host[256];
  int port;
  const char *path;
  const char *bad[] = {
      "https://prom:9090?x", "ftp://x/",          "prom:9090/",       "http://",       "http:///path",
      "http://:80/",         "http://user:pw@h/", "http://h@/",       "http://h:0/",   "http://h:65536/",
      "http://h:/",          "http://h:80x/",     "http://h:123456/", "http://[::1/",  "http://[::1]x/",
      "http://[]/",          "http://[zz]/",      "http://h/#frag",   "http://#frag",  "http://h/a b",
      "http://h?q=1",        "http://h\r\n/",     "http://ho st/",    "http://h/\x01", "http://h%41/",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_eq(split(bad[i], host, &port, &path), UV_EINVAL, "accepted %s", bad[i]);
  char small[4];
  cr_assert_eq(ps_http_url_split("http://abcd/", small, sizeof small, &port, &path), UV_EINVAL);
  cr_assert_eq(ps_http_url_split("http://abc/", small, sizeof small, &port, &path), 0);
  char *huge = malloc(PS_HTTP_MAX_URL + 100);
  strcpy(huge, "http://h/");
  memset(huge + 9, 'a', PS_HTTP_MAX_URL);
  huge[PS_HTTP_MAX_URL + 9] = '\0';
  cr_assert_eq(split(huge, host, &port, &path), UV_EINVAL);
  free(huge);
}

/* ==== response parsing without sockets ============================================================= */

static int parse(const char *resp, size_t piece, int *status, struct ps_buf *body) {
  ps_buf_reset(body);
  return ps_http_parse_response(resp, strlen(resp), piece, status, body);
}

Test(http_client, parse_response_every_split) {
  const char *cases[][2] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;x=y\r\nd\r\n0\r\nT: v\r\n\r\n",
       "abcd"},
      {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", "to the end"},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok"},
      {"HTTP/1.1 204 No Content\r\n\r\n", ""},
  };
  struct ps_buf body;
  ps_buf_init(&body);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    size_t len = strlen(cases[c][0]);
    for (size_t piece = 1; piece <= len; piece++) {
      int status = 0;
      cr_assert_eq(parse(cases[c][0], piece, &status, &body), 0, "case %zu piece %zu", c, piece);
      cr_assert_eq(status, c == 4 ? 204 : 200);
      cr_assert_str_eq(body.data ? body.data : "", cases[c][1], "case %zu piece %zu", c, piece);
    }
  }
  ps_buf_free(&body);
}

Test(http_client, parse_response_errors) {
  struct ps_buf body;
  ps_buf_init(&body);
  int st;
  cr_assert_eq(parse("SSH-2.0-OpenSSH\r\n", 0, &st, &body), UV_EPROTO);
  cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, &st, &body), UV_ECONNRESET);
  cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Le", 0, &st, &body), UV_ECONNRESET);
  cr_assert_eq(parse("", 0, &st, &body), UV_ECONNRESET);
  cr_assert_eq(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, &st, &body),
               UV_EPROTO);
  cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, &st, &body),
               UV_EPROTO);
  cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 33554433\r\n\r\n", 0, &st, &body), UV_E2BIG);
  cr_assert_eq(parse("HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", 0, &st, &body), UV_EPROTO);
  /* interim responses count toward the header limit together */
  struct ps_buf many;
  ps_buf_init(&many);
  for (int i = 0; i < 3000; i++) ps_buf_puts(&many, "HTTP/1.1 100 Continue\r\nX-Pad: 0123456789\r\n\r\n");
  cr_assert_eq(ps_http_parse_response(many.data, many.len, 0, &st, NULL), UV_E2BIG);
  ps_buf_free(&many);
  ps_buf_free(&body);
}

/* ==== loop harness ================================================================================= */

static uv_loop_t loop;
static struct ps_http_client *client;

static bool is_set(void *flag) { return *(bool *)flag; }

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(ps_http_client_new(&loop, &client), 0);
}

/* ==== fake server ================================================================================== */

enum mode {
  M_OK,              /* 200 with Content-Length, keep-alive */
  M_GARBAGE,         /* not HTTP */
  M_STALL,           /* reads the request, never answers */
  M_RESET_MID_BODY,  /* promises 1000 bytes, sends 10, resets */
  M_CHUNKED_SPLIT,   /* chunked body written in odd pieces */
  M_BIG_CL,          /* Content-Length over PS_HTTP_MAX_RESPONSE */
  M_BIG_CHUNKED,     /* chunked body that never ends */
  M_BIG_HEADER,      /* a header over PS_HTTP_MAX_HEADER_BYTES */
  M_CLOSE_AFTER,     /* answers with keep-alive, then closes the connection */
  M_CONN_CLOSE_HDR,  /* says Connection: close but leaves the socket open */
  M_CLOSE_DELIMITED, /* no length: the body ends with the connection */
  M_DROP_SECOND,     /* closes a connection on its second request without answering */
  M_HTTP10,          /* HTTP/1.0 answer without keep-alive */
  M_DROP_ALL,        /* closes every connection on its first request without answering */
  M_STALL_FIRST,     /* never answers on the first connection accepted; M_OK on the others */
};

struct fake {
  uv_tcp_t listener;
  int port;
  enum mode mode;
  int accepted;
  int requests;
  int open_conns;
  int peak_open;        /* the most connections open at once */
  char last_req[32768]; /* room for PS_HTTP_MAX_EXTRA_HEADERS */
  char url[256];        /* what fake_start returned */
  bool listener_open;
};

struct fconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct fake *f;
  char buf[32768];
  size_t len;
  int nreq;
  int piece;
  int chunks_sent;
  bool closing;
};

static struct fake fake;
static bool open_conns_is(void *n) { return fake.open_conns == *(int *)n; }
static bool requests_is(void *n) { return fake.requests == *(int *)n; }
static struct fconn *fconns[64];
static int nfconns;

struct wreq {
  uv_write_t w;
  struct fconn *fc;
  int then; /* 0 nothing, 1 close, 2 reset, 3 next big chunk */
  char data[];
};

static void fconn_closed(uv_handle_t *h) {
  struct fconn *fc = h->data;
  if (h == (uv_handle_t *)&fc->tcp) {
    fc->f->open_conns--;
    uv_close((uv_handle_t *)&fc->timer, NULL);
    /* the struct itself is freed at teardown, after the loop has run the timer's close */
  }
}

static void fconn_close(struct fconn *fc) {
  if (fc->closing) return;
  fc->closing = true;
  uv_timer_stop(&fc->timer);
  uv_close((uv_handle_t *)&fc->tcp, fconn_closed);
}

static void fsend(struct fconn *fc, const char *s, size_t n, int then);

static void big_chunk(struct fconn *fc) {
  static char chunk[(1 << 20) + 32];
  size_t hl = (size_t)sprintf(chunk, "100000\r\n");
  memset(chunk + hl, 'x', 1 << 20);
  memcpy(chunk + hl + (1 << 20), "\r\n", 2);
  fc->chunks_sent++;
  fsend(fc, chunk, hl + (1 << 20) + 2, fc->chunks_sent < 40 ? 3 : 1);
}

static void fwrite_cb(uv_write_t *w, int status) {
  struct wreq *wr = (struct wreq *)w;
  struct fconn *fc = wr->fc;
  if (!fc->closing) {
    if (status != 0 || wr->then == 1)
      fconn_close(fc);
    else if (wr->then == 2) {
      fc->closing = true;
      uv_tcp_close_reset(&fc->tcp, fconn_closed);
    } else if (wr->then == 3)
      big_chunk(fc);
  }
  free(wr);
}

static void fsend(struct fconn *fc, const char *s, size_t n, int then) {
  if (fc->closing) return;
  struct wreq *wr = malloc(sizeof *wr + n);
  memcpy(wr->data, s, n);
  wr->fc = fc;
  wr->then = then;
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
  if (uv_write(&wr->w, (uv_stream_t *)&fc->tcp, &b, 1, fwrite_cb) != 0) {
    free(wr);
    fconn_close(fc);
  }
}

static void fsend_str(struct fconn *fc, const char *s, int then) { fsend(fc, s, strlen(s), then); }

static const char *chunk_pieces[] = {
    "HTTP/1.1 200 OK\r\nTrans",
    "fer-Encoding: chunked\r\nContent-Type: text/plain\r",
    "\n\r\n5\r\nhel",
    "lo\r",
    "\n6;ext=1\r\n wor",
    "ld\r",
    "\n0",
    "\r\n",
    "\r\n",
};

static void piece_cb(uv_timer_t *t) {
  struct fconn *fc = t->data;
  int n = (int)(sizeof chunk_pieces / sizeof chunk_pieces[0]);
  fsend_str(fc, chunk_pieces[fc->piece++], 0);
  if (fc->piece < n) uv_timer_start(&fc->timer, piece_cb, 2, 0);
}

static void respond_ok(struct fconn *fc, const char *extra, int then) {
  char body[64], resp[512];
  int bl = snprintf(body, sizeof body, "{\"conn\":%d,\"req\":%d}", fc->f->accepted, fc->nreq);
  snprintf(resp, sizeof resp,
           "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", extra, bl,
           body);
  fsend_str(fc, resp, then);
}

static void handle_request(struct fconn *fc) {
  struct fake *f = fc->f;
  fc->nreq++;
  f->requests++;
  switch (f->mode) {
  case M_OK: respond_ok(fc, "", 0); break;
  case M_GARBAGE: fsend_str(fc, "SSH-2.0-OpenSSH_9.2\r\n\r\n", 0); break;
  case M_STALL: break;
  case M_RESET_MID_BODY: fsend_str(fc, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789", 2); break;
  case M_CHUNKED_SPLIT:
    fc->piece = 0;
    uv_timer_start(&fc->timer, piece_cb, 0, 0);
    break;
  case M_BIG_CL: fsend_str(fc, "HTTP/1.1 200 OK\r\nContent-Length: 40000000\r\n\r\n{", 0); break;
  case M_BIG_CHUNKED:
    fsend_str(fc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    big_chunk(fc);
    break;
  case M_BIG_HEADER: {
    size_t n = 70 << 10;
    char *r = malloc(n + 100);
    int hl = sprintf(r, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(r + hl, 'h', n);
    strcpy(r + hl + n, "\r\nContent-Length: 0\r\n\r\n");
    fsend_str(fc, r, 0);
    free(r);
    break;
  }
  case M_CLOSE_AFTER: respond_ok(fc, "", 1); break;
  case M_CONN_CLOSE_HDR: respond_ok(fc, "Connection: close\r\n", 0); break;
  case M_CLOSE_DELIMITED: fsend_str(fc, "HTTP/1.1 200 OK\r\n\r\nuntil the end", 1); break;
  case M_DROP_SECOND:
    if (fc->nreq >= 2)
      fconn_close(fc);
    else
      respond_ok(fc, "", 0);
    break;
  case M_DROP_ALL: fconn_close(fc); break;
  case M_STALL_FIRST:
    if (fc != fconns[0]) respond_ok(fc, "", 0);
    break;
  case M_HTTP10: fsend_str(fc, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0); break;
  }
}

static void falloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  struct fconn *fc = h->data;
  b->base = fc->buf + fc->len;
  b->len = sizeof fc->buf - fc->len;
}

static void fread_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct fconn *fc = s->data;
  if (n < 0) {
    fconn_close(fc);
    return;
  }
  fc->len += (size_t)n;
  char *end;
  while (!fc->closing && (end = memmem(fc->buf, fc->len, "\r\n\r\n", 4)) != NULL) {
    size_t rl = (size_t)(end - fc->buf) + 4;
    size_t cp = rl < sizeof fc->f->last_req - 1 ? rl : sizeof fc->f->last_req - 1;
    memcpy(fc->f->last_req, fc->buf, cp);
    fc->f->last_req[cp] = '\0';
    memmove(fc->buf, fc->buf + rl, fc->len - rl);
    fc->len -= rl;
    handle_request(fc);
  }
  if (fc->len == sizeof fc->buf) fconn_close(fc);
}

static void on_conn(uv_stream_t *srv, int status) {
  struct fake *f = srv->data;
  if (status != 0 || nfconns == 64) return;
  struct fconn *fc = calloc(1, sizeof *fc);
  fc->f = f;
  uv_tcp_init(&loop, &fc->tcp);
  uv_timer_init(&loop, &fc->timer);
  fc->tcp.data = fc->timer.data = fc;
  fconns[nfconns++] = fc;
  if (uv_accept(srv, (uv_stream_t *)&fc->tcp) != 0) {
    fconn_close(fc);
    return;
  }
  f->accepted++;
  f->open_conns++;
  if (f->open_conns > f->peak_open) f->peak_open = f->open_conns;
  uv_read_start((uv_stream_t *)&fc->tcp, falloc, fread_cb);
}

/* Starts the fake on `ip` (an IPv6 literal if v6); returns the URL of `path` on it (kept in fake.url). */
static const char *fake_start_at(enum mode mode, const char *ip, bool v6, const char *path) {
  memset(&fake, 0, sizeof fake);
  nfconns = 0;
  fake.mode = mode;
  cr_assert_eq(uv_tcp_init(&loop, &fake.listener), 0);
  fake.listener.data = &fake;
  fake.listener_open = true;
  struct sockaddr_storage ss;
  if (v6)
    uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss);
  else
    uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss);
  cr_assert_eq(uv_tcp_bind(&fake.listener, (struct sockaddr *)&ss, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&fake.listener, 16, on_conn), 0);
  int len = sizeof ss;
  uv_tcp_getsockname(&fake.listener, (struct sockaddr *)&ss, &len);
  fake.port =
      v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  snprintf(fake.url, sizeof fake.url, v6 ? "http://[%s]:%d%s" : "http://%s:%d%s", ip, fake.port, path);
  return fake.url;
}

static const char *fake_start(enum mode mode, const char *path) {
  return fake_start_at(mode, "127.0.0.1", false, path);
}

/* Closes the client and the fake server. Every test ends with this, then PS_LOOP_END, which runs the loop
 * dry (bounded) and fails the test on anything left open. */
static void stop_fake_and_client(void) {
  if (client != NULL) ps_http_client_close(client);
  client = NULL;
  if (fake.listener_open) uv_close((uv_handle_t *)&fake.listener, NULL);
  fake.listener_open = false;
  for (int i = 0; i < nfconns; i++) fconn_close(fconns[i]);
}

/* The fake's connections are freed only now: PS_LOOP_END ran their handles' closes. */
static void teardown(void) {
  for (int i = 0; i < nfconns; i++) free(fconns[i]);
  nfconns = 0;
}

TestSuite(http_loop, .init = setup, .fini = teardown, .timeout = 60);

/* ==== requests ===================================================================================== */

struct result {
  bool done;
  int calls;
  bool called_inside_get;
  int err;
  char msg[600];
  int status;
  char *body;
  size_t body_len;
  char ctype[128];
};

static bool in_get;

static void result_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp) {
  struct result *r = arg;
  r->calls++;
  r->done = true;
  r->called_inside_get = in_get;
  r->err = err;
  if (err != 0) {
    cr_assert_not_null(errmsg);
    cr_assert_null(resp);
    snprintf(r->msg, sizeof r->msg, "%s", errmsg);
    return;
  }
  cr_assert_null(errmsg);
  r->status = resp->status;
  free(r->body);
  r->body = malloc(resp->body_len + 1);
  memcpy(r->body, resp->body, resp->body_len + 1);
  cr_assert_eq(resp->body[resp->body_len], '\0');
  r->body_len = resp->body_len;
  snprintf(r->ctype, sizeof r->ctype, "%s", resp->content_type);
}

static int get(const char *url, uint64_t timeout_ms, struct result *r, struct ps_http_req **out) {
  memset(r, 0, sizeof *r);
  in_get = true;
  int err = ps_http_get(client, url, timeout_ms, result_cb, r, out);
  in_get = false;
  return err;
}

/* A request that must succeed with status 200. */
static void get_ok(const char *url, struct result *r) {
  cr_assert_eq(get(url, 5000, r, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &r->done, 10000), "no callback for %s", url);
  cr_assert_eq(r->calls, 1);
  cr_assert_eq(r->err, 0, "%s: %s", url, r->msg);
  cr_assert_eq(r->status, 200);
}

/* A request that must fail with err, with a message containing needle. */
static void get_fails(const char *url, uint64_t timeout_ms, int err, const char *needle) {
  struct result r;
  cr_assert_eq(get(url, timeout_ms, &r, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &r.done, 10000), "no callback for %s", url);
  cr_assert_eq(r.calls, 1);
  cr_assert(!r.called_inside_get);
  cr_assert_eq(r.err, err, "expected %s, got %s (%s)", uv_err_name(err), r.err ? uv_err_name(r.err) : "0",
               r.msg);
  cr_assert(strstr(r.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", r.msg, needle);
}

Test(http_loop, refuses_bad_requests_synchronously) {
  struct result r;
  cr_assert_eq(get("ftp://127.0.0.1:1/", 1000, &r, NULL), UV_EPROTONOSUPPORT);
  cr_assert_eq(get("http://user@127.0.0.1:1/", 1000, &r, NULL), UV_EINVAL);
  cr_assert_eq(get("not a url", 1000, &r, NULL), UV_EINVAL);
  cr_assert_eq(get("127.0.0.1:1/x://y", 1000, &r, NULL), UV_EINVAL);
  cr_assert_eq(get("http://127.0.0.1:1/", 0, &r, NULL), UV_EINVAL);
  uv_run(&loop, UV_RUN_DEFAULT); /* nothing may be pending */
  cr_assert_eq(r.calls, 0);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, content_length_response_and_request_headers) {
  const char *url = fake_start(M_OK, "/api/v1/query?query=up&x=%20");
  struct result r;
  get_ok(url, &r);
  cr_assert(!r.called_inside_get);
  cr_assert_str_eq(r.body, "{\"conn\":1,\"req\":1}");
  cr_assert_eq(r.body_len, strlen(r.body));
  cr_assert_str_eq(r.ctype, "application/json");
  char host[64];
  snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", fake.port);
  const char *line = "GET /api/v1/query?query=up&x=%20 HTTP/1.1\r\n";
  cr_assert(strncmp(fake.last_req, line, strlen(line)) == 0, "%s", fake.last_req);
  cr_assert(strstr(fake.last_req, host) != NULL, "%s", fake.last_req);
  cr_assert(strstr(fake.last_req, "\r\nUser-Agent: prescale/0.1\r\n") != NULL);
  cr_assert(strstr(fake.last_req, "\r\nAccept: application/json\r\n") != NULL);
  cr_assert(strstr(fake.last_req, "\r\nAccept-Encoding: identity\r\n") != NULL);
  free(r.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

static int get_with_headers(const char *url, const char *headers, struct result *r) {
  memset(r, 0, sizeof *r);
  struct ps_http_opts o = {.timeout_ms = 5000, .cls = PS_HTTP_URGENT, .headers = headers};
  return ps_http_get_opts(client, url, &o, result_cb, r, NULL);
}

/* Extra header lines go after the client's own, as given, and are copied: the second request waits in the
 * queue (one slot) while the caller's buffer is overwritten and freed. */
Test(http_loop, extra_headers_are_sent_after_the_clients_own) {
  ps_http_client_set_limits(client, 1, 4);
  const char *url = fake_start(M_OK, "/q");
  const char *want = "X-Scope-OrgID: team-a\r\nAuthorization: Bearer t0k\r\n";
  char *h1 = strdup("X-First: 1\r\n"), *h2 = strdup(want);
  struct result r1, r2;
  cr_assert_eq(get_with_headers(url, h1, &r1), 0);
  cr_assert_eq(get_with_headers(url, h2, &r2), 0);
  struct ps_http_stats st;
  ps_http_client_stats(client, &st);
  cr_assert_eq(st.queued, 1, "the second request waits for the slot");
  memset(h1, 'x', strlen(h1));
  memset(h2, 'x', strlen(h2));
  free(h1);
  free(h2);
  cr_assert(ps_test_run_until(&loop, is_set, &r2.done, 10000));
  cr_assert_eq(r1.err, 0, "%s", r1.msg);
  cr_assert_eq(r2.err, 0, "%s", r2.msg);
  cr_assert_eq(fake.requests, 2);
  char tail[256];
  snprintf(tail, sizeof tail, "\r\nAccept-Encoding: identity\r\n%s\r\n", want);
  size_t n = strlen(fake.last_req), tl = strlen(tail);
  cr_assert(n > tl && strcmp(fake.last_req + n - tl, tail) == 0, "%s", fake.last_req);
  cr_assert(strstr(fake.last_req, "X-First") == NULL);
  free(r1.body);
  free(r2.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* Header lines that could smuggle a header or a request, or take over the framing, are refused before
 * anything is sent; so is a block over PS_HTTP_MAX_EXTRA_HEADERS, while one of exactly that size goes. */
Test(http_loop, extra_headers_are_checked) {
  const char *url = fake_start(M_OK, "/");
  static const char *const bad[] = {
      "X-A: b",                           /* no CRLF at the end */
      "X-A: b\nX-B: c\r\n",               /* bare LF */
      "X-A: b\rX-B: c\r\n",               /* bare CR */
      "X-A: b\0\r\n",                     /* NUL: the line ends there, without CRLF */
      "X-A: b\r\n\r\nGET / HTTP/1.1\r\n", /* an empty line, then a second request */
      "X-A: \x01\r\n",                    /* a control byte */
      ": v\r\n",                          /* empty name */
      "X A: v\r\n",                       /* not a token */
      "X-A v\r\n",                        /* no colon */
      "Host: evil\r\n",
      "content-length: 5\r\n",
      "Transfer-Encoding: chunked\r\n",
      "CONNECTION: close\r\n",
      "Accept-Encoding: gzip\r\n",
      "X-Ok: 1\r\nUpgrade: h2c\r\n", /* a good line does not excuse the next */
  };
  struct result r;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(ps_http_headers_check(bad[i]), UV_EINVAL, "case %zu", i);
    cr_assert_eq(get_with_headers(url, bad[i], &r), UV_EINVAL, "case %zu", i);
  }
  cr_assert_eq(ps_http_headers_check(NULL), 0);
  cr_assert_eq(ps_http_headers_check(""), 0);
  cr_assert_eq(ps_http_headers_check("X-Tab: a\tb \x80\r\nx-Scope-orgid:team-a\r\n"), 0);
  /* the bound: a header of exactly PS_HTTP_MAX_EXTRA_HEADERS bytes, then one byte more */
  char *big = malloc(PS_HTTP_MAX_EXTRA_HEADERS + 2);
  size_t hl = (size_t)sprintf(big, "X-Big: ");
  memset(big + hl, 'v', PS_HTTP_MAX_EXTRA_HEADERS - hl - 2);
  strcpy(big + PS_HTTP_MAX_EXTRA_HEADERS - 2, "\r\n");
  cr_assert_eq(strlen(big), PS_HTTP_MAX_EXTRA_HEADERS);
  cr_assert_eq(get_with_headers(url, big, &r), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &r.done, 10000));
  cr_assert_eq(r.err, 0, "%s", r.msg);
  cr_assert(strstr(fake.last_req, big) != NULL);
  cr_assert_eq(fake.requests, 1, "only the good request was sent");
  free(r.body);
  memmove(big + 1, big, PS_HTTP_MAX_EXTRA_HEADERS + 1);
  big[0] = 'X';
  cr_assert_eq(get_with_headers(url, big, &r), UV_EINVAL);
  free(big);
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert_eq(fake.requests, 1);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, connection_refused_names_the_address) {
  /* A port that was just free: bind, read it, close. */
  uv_tcp_t t;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_init(&loop, &t);
  cr_assert_eq(uv_tcp_bind(&t, (struct sockaddr *)&sa, 0), 0);
  int len = sizeof sa;
  uv_tcp_getsockname(&t, (struct sockaddr *)&sa, &len);
  int port = ntohs(sa.sin_port);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  char url[128], want[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/api", port);
  snprintf(want, sizeof want, "connect 127.0.0.1:%d: connection refused", port);
  get_fails(url, 3000, UV_ECONNREFUSED, want);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, connect_that_never_completes_times_out, .timeout = 30) {
  /* A plain socket listening with backlog 0 that nobody accepts from: once one connection fills its
   * queue, Linux drops further SYNs, so the client's connect hangs as against a blackholed address. */
  int l = socket(AF_INET, SOCK_STREAM, 0), filler = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(l, 0), 0);
  socklen_t len = sizeof sa;
  getsockname(l, (struct sockaddr *)&sa, &len);
  cr_assert_eq(connect(filler, (struct sockaddr *)&sa, sizeof sa), 0); /* completes in the kernel */
  char url[128], want[128];
  int port = ntohs(sa.sin_port);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
  snprintf(want, sizeof want, "connect 127.0.0.1:%d: timed out after %d ms", port,
           PS_HTTP_CONNECT_TIMEOUT_MS);
  get_fails(url, PS_HTTP_CONNECT_TIMEOUT_MS + 5000, UV_ETIMEDOUT, want);
  close(filler);
  close(l);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, garbage_is_eproto) {
  const char *url = fake_start(M_GARBAGE, "/");
  get_fails(url, 3000, UV_EPROTO, "malformed HTTP response from 127.0.0.1:");
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, stall_times_out) {
  const char *url = fake_start(M_STALL, "/slow");
  /* Scaled: under memcheck on a busy machine the connection and the fake's read took over 300 ms, and the
   * request timed out before the fake saw it. */
  uint64_t timeout = 300 * ps_test_timeout_scale();
  char want[200];
  snprintf(want, sizeof want, "GET %s: timed out after %llu ms", url, (unsigned long long)timeout);
  /* The request's timer counts from the loop's cached time, which lags the clock by as long as the loop
   * last waited or worked (long on a busy machine): bring it to now, so the timer and t0 start together. */
  uv_update_time(&loop);
  uint64_t t0 = uv_hrtime();
  get_fails(url, timeout, UV_ETIMEDOUT, want);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  cr_assert(ms >= timeout - 10 && ms < 10 * timeout, "took %llu ms", (unsigned long long)ms);
  cr_assert_eq(fake.requests, 1);
  /* The timed-out connection is closed, not pooled: the server sees it go. */
  cr_assert(ps_test_run_until(&loop, open_conns_is, &(int){0}, 5000));
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, reset_mid_body) {
  const char *url = fake_start(M_RESET_MID_BODY, "/");
  get_fails(url, 3000, UV_ECONNRESET, "in the middle of the response");
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, chunked_split_in_odd_places) {
  const char *url = fake_start(M_CHUNKED_SPLIT, "/c");
  struct result r;
  get_ok(url, &r);
  cr_assert_str_eq(r.body, "hello world");
  cr_assert_str_eq(r.ctype, "text/plain");
  free(r.body);
  get_ok(url, &r); /* and the connection stays usable */
  cr_assert_str_eq(r.body, "hello world");
  cr_assert_eq(fake.accepted, 1);
  free(r.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, declared_body_over_limit) {
  const char *url = fake_start(M_BIG_CL, "/");
  get_fails(url, 3000, UV_E2BIG, "response body exceeds 33554432 bytes");
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, streamed_body_over_limit) {
  const char *url = fake_start(M_BIG_CHUNKED, "/");
  get_fails(url, 20000, UV_E2BIG, "response body exceeds 33554432 bytes");
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* ---- streamed bodies (ps_http_set_body) ---- */

struct sink {
  size_t total;
  char head[128];
  int fail_with;      /* returned from the first call when set */
  uint64_t turn;      /* loop turns so far (a prepare handle counts them) */
  uint64_t last_turn; /* the turn of the last piece */
  size_t in_turn;     /* bytes received in that turn */
  size_t max_in_turn; /* the most bytes received in one turn */
};

static void count_turn(uv_prepare_t *h) { ((struct sink *)h->data)->turn++; }

/* Counts the loop's turns into k (the test closes the handle). */
static void count_turns(uv_prepare_t *turns, struct sink *k) {
  uv_prepare_init(&loop, turns);
  turns->data = k;
  uv_prepare_start(turns, count_turn);
}

static int sink_cb(void *arg, const char *data, size_t len) {
  struct sink *k = arg;
  if (k->fail_with != 0) return k->fail_with;
  if (k->total < sizeof k->head - 1) {
    size_t n = len < sizeof k->head - 1 - k->total ? len : sizeof k->head - 1 - k->total;
    memcpy(k->head + k->total, data, n);
  }
  k->total += len;
  if (k->turn != k->last_turn) k->in_turn = 0;
  k->last_turn = k->turn;
  k->in_turn += len;
  if (k->in_turn > k->max_in_turn) k->max_in_turn = k->in_turn;
  return 0;
}

static void get_streamed(const char *url, size_t max_body, struct sink *k, struct result *r) {
  struct ps_http_req *req;
  cr_assert_eq(get(url, 20000, r, &req), 0);
  ps_http_set_body(req, max_body, sink_cb, k);
  cr_assert(ps_test_run_until(&loop, is_set, &r->done, 30000), "no callback for %s", url);
  cr_assert_eq(r->calls, 1);
}

Test(http_loop, streamed_body_goes_to_the_sink) {
  const char *url = fake_start(M_OK, "/s");
  struct sink k = {0};
  struct result r;
  get_streamed(url, 1000, &k, &r);
  cr_assert_eq(r.err, 0, "%s", r.msg);
  cr_assert_eq(r.body_len, 0); /* nothing collected */
  cr_assert_str_eq(r.body, "");
  cr_assert_str_eq(k.head, "{\"conn\":1,\"req\":1}");
  free(r.body);
  get_ok(url, &r); /* the connection is reused, and the next request collects as before */
  cr_assert_str_eq(r.body, "{\"conn\":1,\"req\":2}");
  free(r.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, per_request_body_limit) {
  const char *url = fake_start(M_BIG_CL, "/");
  struct sink k = {0};
  struct result r;
  get_streamed(url, 1000, &k, &r);
  cr_assert_eq(r.err, UV_E2BIG);
  cr_assert(strstr(r.msg, "response body exceeds 1000 bytes (Content-Length 40000000)") != NULL, "%s", r.msg);
  cr_assert_eq(k.total, 0); /* refused at the headers */
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, sink_error_ends_the_request) {
  const char *url = fake_start(M_OK, "/");
  struct sink k = {.fail_with = UV_ENOMEM};
  struct result r;
  get_streamed(url, 1000, &k, &r);
  cr_assert_eq(r.err, UV_ENOMEM);
  cr_assert(strstr(r.msg, "response body refused") != NULL, "%s", r.msg);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* A body that arrives faster than it is consumed is read PS_HTTP_READ_BURST (plus one read) a loop turn
 * at most, and cut at the request's own limit as it streams. */
Test(http_loop, streamed_body_is_read_a_burst_per_turn) {
  const char *url = fake_start(M_BIG_CHUNKED, "/");
  uv_prepare_t turns;
  struct sink k = {0};
  count_turns(&turns, &k);
  struct result r;
  size_t limit = 8u << 20;
  get_streamed(url, limit, &k, &r);
  cr_assert_eq(r.err, UV_E2BIG, "%s", r.msg);
  cr_assert(strstr(r.msg, "response body exceeds 8388608 bytes") != NULL, "%s", r.msg);
  cr_assert(k.total <= limit && k.total > limit - 65536, "%zu bytes", k.total);
  cr_assert_leq(k.max_in_turn, PS_HTTP_READ_BURST + 65536, "%zu bytes in one turn", k.max_in_turn);
  cr_assert_geq(k.turn, limit / (PS_HTTP_READ_BURST + 65536));
  uv_close((uv_handle_t *)&turns, NULL);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* The burst is the client's, not each connection's: four large answers streaming at once on four
 * connections are read PS_HTTP_READ_BURST (plus one read) a turn all together, as one is. Per connection,
 * a turn read up to four bursts (a restart's first loads answering at once: restart_bench.py). */
#define CONCURRENT_STREAMS 4
Test(http_loop, concurrent_bodies_share_one_burst_per_turn) {
  const char *url = fake_start(M_BIG_CHUNKED, "/");
  uv_prepare_t turns;
  struct sink k = {0};
  count_turns(&turns, &k);
  struct result r[CONCURRENT_STREAMS];
  size_t limit = 2u << 20;
  for (int i = 0; i < CONCURRENT_STREAMS; i++) {
    struct ps_http_req *req;
    cr_assert_eq(get(url, 20000, &r[i], &req), 0);
    ps_http_set_body(req, limit, sink_cb, &k);
  }
  for (int i = 0; i < CONCURRENT_STREAMS; i++) {
    cr_assert(ps_test_run_until(&loop, is_set, &r[i].done, 30000), "no callback for request %d", i);
    cr_assert_eq(r[i].err, UV_E2BIG, "%s", r[i].msg);
  }
  cr_assert_eq(nfconns, CONCURRENT_STREAMS, "%d connections", nfconns);
  cr_assert_geq(k.total, CONCURRENT_STREAMS * (limit - 65536), "%zu bytes", k.total);
  cr_assert_leq(k.max_in_turn, PS_HTTP_READ_BURST + 65536, "%zu bytes in one turn", k.max_in_turn);
  uv_close((uv_handle_t *)&turns, NULL);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, headers_over_limit) {
  const char *url = fake_start(M_BIG_HEADER, "/");
  get_fails(url, 3000, UV_E2BIG, "response headers exceed 65536 bytes");
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, keep_alive_reuses_one_connection) {
  const char *url = fake_start(M_OK, "/a");
  struct result r;
  for (int i = 1; i <= 3; i++) {
    get_ok(url, &r);
    char want[64];
    snprintf(want, sizeof want, "{\"conn\":1,\"req\":%d}", i);
    cr_assert_str_eq(r.body, want);
    free(r.body);
  }
  cr_assert_eq(fake.accepted, 1);
  cr_assert_eq(fake.requests, 3);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* The next request is started from inside the previous one's callback, as ps_prom does for chunks. */
struct chain {
  int left;
  struct result r;
  const char *url;
};

static void chain_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp) {
  struct chain *ch = arg;
  cr_assert_eq(err, 0, "%s", errmsg ? errmsg : "");
  if (--ch->left == 0) {
    ch->r.done = true;
    return;
  }
  cr_assert_eq(ps_http_get(client, ch->url, 3000, chain_cb, ch, NULL), 0);
}

Test(http_loop, request_from_inside_callback_reuses_connection) {
  struct chain ch = {.left = 5, .url = fake_start(M_OK, "/chain")};
  cr_assert_eq(ps_http_get(client, ch.url, 3000, chain_cb, &ch, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &ch.r.done, 10000));
  cr_assert_eq(fake.accepted, 1);
  cr_assert_eq(fake.requests, 5);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, connection_close_is_honoured) {
  /* the server leaves its socket open: only the header says close */
  const char *url = fake_start(M_CONN_CLOSE_HDR, "/");
  struct result r;
  get_ok(url, &r);
  free(r.body);
  get_ok(url, &r);
  free(r.body);
  cr_assert_eq(fake.accepted, 2);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, http10_is_not_reused) {
  const char *url = fake_start(M_HTTP10, "/");
  struct result r;
  get_ok(url, &r);
  cr_assert_str_eq(r.body, "ok");
  free(r.body);
  get_ok(url, &r);
  free(r.body);
  cr_assert_eq(fake.accepted, 2);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, close_delimited_body) {
  const char *url = fake_start(M_CLOSE_DELIMITED, "/");
  struct result r;
  get_ok(url, &r);
  cr_assert_str_eq(r.body, "until the end");
  free(r.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, server_closing_idle_connection_then_new_request) {
  const char *url = fake_start(M_CLOSE_AFTER, "/");
  struct result r;
  get_ok(url, &r);
  free(r.body);
  /* Wait until the server has closed its side, and let the client see the EOF. */
  cr_assert(ps_test_run_until(&loop, open_conns_is, &(int){0}, 5000));
  get_ok(url, &r);
  free(r.body);
  cr_assert_eq(fake.accepted, 2);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, stale_keep_alive_is_retried_once) {
  /* The server drops the pooled connection exactly when the second request arrives on it: the race a
   * client meets when a server's idle timeout fires as it reuses a connection. */
  const char *url = fake_start(M_DROP_SECOND, "/");
  struct result r;
  get_ok(url, &r);
  free(r.body);
  get_ok(url, &r);
  cr_assert_str_eq(r.body, "{\"conn\":2,\"req\":1}");
  free(r.body);
  cr_assert_eq(fake.accepted, 2);
  cr_assert_eq(fake.requests, 3);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, fresh_connection_dropped_is_not_retried) {
  /* Only a reused connection may be stale; a fresh one closed without an answer is the server's answer,
   * and a retry is made once only. */
  const char *url = fake_start(M_OK, "/");
  struct result r;
  get_ok(url, &r); /* conn 1, pooled */
  free(r.body);
  fake.mode = M_DROP_ALL;
  get_fails(url, 3000, UV_ECONNRESET, "closed the connection without responding");
  cr_assert_eq(fake.accepted, 2); /* conn 1 reused and dropped, conn 2 fresh and dropped: no third */
  cr_assert_eq(fake.requests, 3);
  get_fails(url, 3000, UV_ECONNRESET, "closed the connection without responding");
  cr_assert_eq(fake.accepted, 3);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, cancel_never_calls_back) {
  const char *url = fake_start(M_STALL, "/");
  struct result r;
  struct ps_http_req *h = NULL;
  cr_assert_eq(get(url, 5000, &r, &h), 0);
  cr_assert_not_null(h);
  cr_assert(ps_test_run_until(&loop, requests_is, &(int){1}, 5000));
  ps_http_cancel(h);
  cr_assert(ps_test_run_until(&loop, open_conns_is, &(int){0}, 5000),
            "the cancelled request's connection was not closed");
  cr_assert_eq(r.calls, 0);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, cancel_before_connect) {
  /* No server: the loop then runs dry exactly when the cancelled request has let go of everything. */
  const char *url = "http://127.0.0.1:1/";
  struct result r;
  struct ps_http_req *h = NULL;
  cr_assert_eq(get(url, 5000, &r, &h), 0);
  ps_http_cancel(h); /* DNS still in flight */
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(r.calls, 0);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, client_close_cancels_pending) {
  const char *url = fake_start(M_STALL, "/");
  struct result r1, r2;
  cr_assert_eq(get(url, 5000, &r1, NULL), 0);
  cr_assert_eq(get(url, 5000, &r2, NULL), 0);
  cr_assert(ps_test_run_until(&loop, requests_is, &(int){2}, 5000));
  ps_http_client_close(client);
  client = NULL;
  cr_assert_eq(r1.calls, 1);
  cr_assert_eq(r1.err, UV_ECANCELED);
  cr_assert_eq(r2.calls, 1);
  cr_assert_eq(r2.err, UV_ECANCELED);
  /* PS_LOOP_END asserts that the loop drains and closes: the cancelled requests let go of everything. */
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, concurrent_requests_and_pool_limit) {
  const char *url = fake_start(M_OK, "/");
  enum { N = 8 };
  struct result r[N];
  for (int i = 0; i < N; i++) cr_assert_eq(get(url, 5000, &r[i], NULL), 0);
  for (int i = 0; i < N; i++) {
    cr_assert(ps_test_run_until(&loop, is_set, &r[i].done, 10000));
    cr_assert_eq(r[i].err, 0, "%s", r[i].msg);
    free(r[i].body);
  }
  cr_assert_eq(fake.accepted, N);
  /* At most PS_HTTP_MAX_IDLE_PER_HOST stay pooled: the server sees the others closed. */
  cr_assert(ps_test_run_until(&loop, open_conns_is, &(int){PS_HTTP_MAX_IDLE_PER_HOST}, 5000),
            "%d connections open", fake.open_conns);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, localhost_name_resolves) {
  fake_start(M_OK, "/");
  char url[128];
  snprintf(url, sizeof url, "http://localhost:%d/x", fake.port);
  struct result r;
  get_ok(url, &r);
  free(r.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

Test(http_loop, ipv6_literal) {
  uv_tcp_t probe;
  struct sockaddr_in6 sa;
  uv_ip6_addr("::1", 0, &sa);
  uv_tcp_init(&loop, &probe);
  int ok = uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0);
  uv_close((uv_handle_t *)&probe, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (ok != 0) cr_skip_test("no IPv6 loopback here (%s)", uv_strerror(ok));
  const char *url = fake_start_at(M_OK, "::1", true, "/v6");
  char host[64];
  struct result r;
  get_ok(url, &r);
  free(r.body);
  snprintf(host, sizeof host, "\r\nHost: [::1]:%d\r\n", fake.port);
  cr_assert(strstr(fake.last_req, host) != NULL, "%s", fake.last_req);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* The descriptors outgoing connections may hold (ps_http_client_set_limits, from ps_net_fd_budget): a
 * request beyond them waits for a slot, without a connection, and goes when one is given back. */
Test(http_loop, connection_budget_holds_a_request_beyond_it_until_a_slot_frees) {
  ps_http_client_set_limits(client, PS_HTTP_DEFAULT_MAX_INFLIGHT, 2);
  const char *url = fake_start(M_STALL, "/stall");
  struct result r[3];
  struct ps_http_req *h[3];
  for (int i = 0; i < 2; i++) cr_assert_eq(get(url, 10000, &r[i], &h[i]), 0);
  cr_assert(ps_test_run_until(&loop, requests_is, &(int){2}, 5000));
  /* Both connections hold a request in flight: the third waits in the queue. */
  cr_assert_eq(get(url, 10000, &r[2], &h[2]), 0);
  struct ps_http_stats st;
  ps_http_client_stats(client, &st);
  cr_assert_eq(st.queued, 1);
  cr_assert_eq(st.conns, 2);
  /* One is given back: the third gets its connection and reaches the server. */
  ps_http_cancel(h[0]);
  cr_assert(ps_test_run_until(&loop, requests_is, &(int){3}, 5000), "the third request was not sent");
  cr_assert_eq(fake.accepted, 3);
  cr_assert_not(r[1].done);
  cr_assert_not(r[2].done);
  ps_http_cancel(h[1]);
  ps_http_cancel(h[2]);
  cr_assert(ps_test_run_until(&loop, open_conns_is, &(int){0}, 5000));
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* Idle keep-alive connections give their slot up: with room for one, two hosts take turns. */
Test(http_loop, connection_budget_closes_an_idle_connection_for_a_new_one) {
  ps_http_client_set_limits(client, PS_HTTP_DEFAULT_MAX_INFLIGHT, 1);
  const char *url = fake_start(M_OK, "/a");
  char other[128];
  snprintf(other, sizeof other, "http://localhost:%d/b", fake.port);
  struct result ok;
  get_ok(url, &ok);
  free(ok.body);
  get_ok(other, &ok); /* the pooled connection to 127.0.0.1 is closed for it */
  free(ok.body);
  cr_assert_eq(fake.accepted, 2);
  cr_assert(ps_test_run_until(&loop, open_conns_is, &(int){1}, 5000), "%d open", fake.open_conns);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* ==== fan-out: the per-server cap, the queue, the connection budget ================================ */

static bool all_done(void *arg) {
  struct result *r = arg;
  for (; r->calls >= 0 && r->status != -1; r++)
    if (!r->done) return false;
  return true;
}

/* 40 requests at once with --prometheus-max-inflight 4: the server never sees more than 4 connections,
 * the client never holds more than 4 slots, and every request is answered (the rest queued meanwhile). */
Test(http_loop, cap_is_never_exceeded) {
  ps_http_client_set_limits(client, 4, PS_HTTP_MAX_CONNS);
  const char *url = fake_start(M_OK, "/");
  enum { N = 40 };
  struct result r[N + 1];
  for (int i = 0; i < N; i++) cr_assert_eq(get(url, 5000, &r[i], NULL), 0);
  memset(&r[N], 0, sizeof r[N]);
  r[N].status = -1; /* end mark for all_done */
  struct ps_http_stats st;
  ps_http_client_stats(client, &st);
  cr_assert_eq(st.inflight, 4);
  cr_assert_eq(st.queued, N - 4);
  char labels[64];
  snprintf(labels, sizeof labels, "server=\"127.0.0.1:%d\"", fake.port);
  cr_assert_eq(ps_metrics_get("prescale_prometheus_inflight", labels), 4);
  cr_assert_eq(ps_metrics_get("prescale_prometheus_queued", labels), N - 4);
  cr_assert(ps_test_run_until(&loop, all_done, r, 20000));
  for (int i = 0; i < N; i++) {
    cr_assert_eq(r[i].err, 0, "%d: %s", i, r[i].msg);
    cr_assert_eq(r[i].status, 200);
    free(r[i].body);
  }
  ps_http_client_stats(client, &st);
  cr_assert_eq(st.peak_inflight, 4, "the cap was reached and never passed");
  cr_assert_leq(st.peak_conns, 4);
  cr_assert_leq(fake.peak_open, 4, "the server saw %d connections at once", fake.peak_open);
  cr_assert_leq(fake.accepted, 4, "connections are reused, not churned: %d", fake.accepted);
  cr_assert_eq(st.inflight, 0);
  cr_assert_eq(st.queued, 0);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

static int order[16], norder;
struct ordered {
  struct result r;
  int id;
};
static void ordered_cb(void *arg, int err, const char *errmsg, const struct ps_http_response *resp) {
  struct ordered *o = arg;
  o->r.done = true;
  o->r.calls++;
  o->r.err = err;
  if (norder < 16) order[norder++] = o->id;
}

static void get_class(const char *url, struct ordered *o, int id, enum ps_http_class cls) {
  memset(o, 0, sizeof *o);
  o->id = id;
  struct ps_http_opts opts = {.timeout_ms = 5000, .queue_timeout_ms = 10000, .cls = cls};
  cr_assert_eq(ps_http_get_opts(client, url, &opts, ordered_cb, o, NULL), 0);
}

static bool ordered_all(void *arg) { return norder == *(int *)arg; }

/* With one slot: requests are served first come first served within a class, and urgent ones (first
 * loads) before background ones (refreshes) queued earlier. */
Test(http_loop, queue_is_fifo_and_urgent_first) {
  ps_http_client_set_limits(client, 1, PS_HTTP_MAX_CONNS);
  const char *url = fake_start(M_OK, "/");
  struct ordered o[7];
  norder = 0;
  get_class(url, &o[0], 0, PS_HTTP_BACKGROUND); /* takes the slot at once */
  get_class(url, &o[1], 1, PS_HTTP_BACKGROUND);
  get_class(url, &o[2], 2, PS_HTTP_BACKGROUND);
  get_class(url, &o[3], 3, PS_HTTP_URGENT);
  get_class(url, &o[4], 4, PS_HTTP_BACKGROUND);
  get_class(url, &o[5], 5, PS_HTTP_URGENT);
  get_class(url, &o[6], 6, PS_HTTP_URGENT);
  cr_assert(ps_test_run_until(&loop, ordered_all, &(int){7}, 20000));
  int want[] = {0, 3, 5, 6, 1, 2, 4};
  for (int i = 0; i < 7; i++) {
    cr_assert_eq(o[i].r.err, 0);
    cr_assert_eq(order[i], want[i], "position %d: request %d, want %d", i, order[i], want[i]);
  }
  cr_assert_eq(fake.accepted, 1, "one slot, one connection");
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* With one slot: r1 (timeout r1_ms) takes it on a fake in `mode`; r2 queues behind it with its own
 * timeout, queue bound and class, and the loop runs until r2's callback. */
static void one_slot_then_second(enum mode mode, uint64_t r1_ms, struct result *r1, struct result *r2,
                                 struct ps_http_opts o) {
  ps_http_client_set_limits(client, 1, PS_HTTP_MAX_CONNS);
  const char *url = fake_start(mode, "/");
  cr_assert_eq(get(url, r1_ms, r1, NULL), 0);
  memset(r2, 0, sizeof *r2);
  cr_assert_eq(ps_http_get_opts(client, url, &o, result_cb, r2, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_set, &r2->done, 20000));
}

/* The request timeout starts when the request leaves the queue. r1 holds the only slot until it times
 * out (300 ms, the fake never answers on the first connection); r2, with a 250 ms timeout, waits longer
 * than that for the slot and still succeeds on a fresh connection. */
Test(http_loop, queue_wait_does_not_count_against_the_timeout) {
  struct result r1, r2;
  /* Both timeouts scaled alike (memcheck: a fresh connection took over 250 ms on a busy machine). */
  uint64_t scale = ps_test_timeout_scale();
  one_slot_then_second(
      M_STALL_FIRST, 300 * scale, &r1, &r2,
      (struct ps_http_opts){.timeout_ms = 250 * scale, .queue_timeout_ms = 20000, .cls = PS_HTTP_URGENT});
  cr_assert(r1.done);
  cr_assert_eq(r1.err, UV_ETIMEDOUT);
  cr_assert_eq(r2.err, 0, "%s", r2.msg);
  cr_assert_eq(r2.status, 200);
  free(r2.body);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* A request that waits its queue bound fails with PS_HTTP_ERR_QUEUE_TIMEOUT and is never sent. */
Test(http_loop, queue_bound_drops_unsent) {
  struct result r1, r2;
  one_slot_then_second(
      M_STALL, 20000, &r1, &r2,
      (struct ps_http_opts){.timeout_ms = 20000, .queue_timeout_ms = 100, .cls = PS_HTTP_BACKGROUND});
  cr_assert_eq(r2.err, PS_HTTP_ERR_QUEUE_TIMEOUT);
  cr_assert(strstr(r2.msg, "--prometheus-max-inflight") != NULL, "%s", r2.msg);
  cr_assert(strstr(r2.msg, "not sent") != NULL, "%s", r2.msg);
  /* r1 may still be on its way to the fake (a slow machine, valgrind): r2's queue bound can pass before
   * r1's bytes arrive. Wait for r1, then check that r2 never followed. */
  int one = 1;
  cr_assert(ps_test_run_until(&loop, requests_is, &one, 20000), "r1 never reached the server");
  cr_assert_eq(fake.requests, 1, "only r1 reached the server");
  cr_assert(!r1.done);
  cr_assert_geq(ps_metrics_get("prescale_prometheus_queue_timeouts_total", ""), 1);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}

/* Sockets open in this process (libuv keeps a /dev/null of its own once, which is not counted). */
static int count_sockets(void) {
  DIR *d = opendir("/proc/self/fd");
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    char path[300], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t k = readlink(path, target, sizeof target - 1);
    if (k > 0 && strncmp(target, "socket:", 7) == 0) n++;
  }
  closedir(d);
  return n;
}

static bool conns_are(void *arg) {
  struct ps_http_stats st;
  ps_http_client_stats(client, &st);
  return st.conns == (size_t) * (int *)arg;
}

/* A black-hole server (a listening socket that never accepts, so connects hang or stall): 30 requests
 * with a cap of 4 hold 4 descriptors, not 30; the others wait in the queue. */
Test(http_loop, black_hole_holds_at_most_cap_descriptors) {
  ps_http_client_set_limits(client, 4, PS_HTTP_MAX_CONNS);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(ls, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(ls, 1), 0);
  socklen_t sl = sizeof sa;
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
  int before = count_sockets();
  enum { N = 30 };
  struct result r[N];
  for (int i = 0; i < N; i++) cr_assert_eq(get(url, 20000, &r[i], NULL), 0);
  cr_assert(ps_test_run_until(&loop, conns_are, &(int){4}, 10000));
  struct ps_http_stats st;
  ps_http_client_stats(client, &st);
  cr_assert_eq(st.inflight, 4);
  cr_assert_eq(st.queued, N - 4);
  int during = count_sockets();
  cr_assert_leq(during - before, 4, "%d sockets for %d requests", during - before, N);
  ps_http_client_close(client);
  client = NULL;
  for (int i = 0; i < N; i++) cr_assert_eq(r[i].err, UV_ECANCELED);
  close(ls);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
  cr_assert_eq(count_sockets(), before - 1, "every socket went back (and the listener)");
}

/* The connection budget (what ps_net_fd_budget leaves outgoing connections, test_net): capped at
 * PS_HTTP_MAX_CONNS, at least 1; and at the budget no more connections open than it allows, whatever the
 * per-server cap. */
Test(http_loop, connection_budget) {
  ps_http_client_set_limits(client, 16, 1u << 20);
  cr_assert_eq(ps_metrics_get("prescale_prometheus_connections_limit", ""), PS_HTTP_MAX_CONNS);
  ps_http_client_set_limits(client, 16, 0);
  cr_assert_eq(ps_metrics_get("prescale_prometheus_connections_limit", ""), 1);
  ps_http_client_set_limits(client, 16, 2);
  const char *url = fake_start(M_STALL, "/");
  struct result r[6];
  for (int i = 0; i < 6; i++) cr_assert_eq(get(url, 20000, &r[i], NULL), 0);
  cr_assert(ps_test_run_until(&loop, requests_is, &(int){2}, 10000));
  struct ps_http_stats st;
  ps_http_client_stats(client, &st);
  cr_assert_eq(st.inflight, 2);
  cr_assert_eq(st.queued, 4);
  cr_assert_leq(st.peak_conns, 2);
  cr_assert_eq(fake.open_conns, 2);
  stop_fake_and_client();
  PS_LOOP_END(&loop);
}
