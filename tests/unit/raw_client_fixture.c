#include "raw_client_fixture.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "loop_fixture.h"

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct ps_test_client *c = h->data;
  buf->base = c->in + c->in_len;
  buf->len = sizeof c->in - 1 - c->in_len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct ps_test_client *c = s->data;
  if (n > 0) {
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
  } else if (n < 0) {
    c->eof = true;
    c->eof_at = uv_now(s->loop);
    uv_read_stop(s);
  }
}

static void write_cb(uv_write_t *w, int status) { cr_assert_eq(status, 0); }

static void connect_cb(uv_connect_t *req, int status) {
  struct ps_test_client *c = req->data;
  cr_assert_eq(status, 0);
  uv_buf_t b = uv_buf_init((char *)c->request, (unsigned)strlen(c->request));
  c->sent_at = uv_now(c->tcp.loop);
  cr_assert_eq(uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, write_cb), 0);
  cr_assert_eq(uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb), 0);
}

void ps_test_client_start(struct ps_test_client *c, uv_loop_t *loop, int port, const char *request) {
  memset(c, 0, sizeof *c);
  c->request = request;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  cr_assert_eq(uv_tcp_init(loop, &c->tcp), 0);
  c->tcp.data = c->connect.data = c;
  cr_assert_eq(uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&sa, connect_cb), 0);
}

static void closed_cb(uv_handle_t *h) { ((struct ps_test_client *)h->data)->closed = true; }
static bool is_closed(void *arg) { return ((struct ps_test_client *)arg)->closed; }

void ps_test_client_close(struct ps_test_client *c) {
  uv_close((uv_handle_t *)&c->tcp, closed_cb);
  cr_assert(ps_test_run_until(c->tcp.loop, is_closed, c, 5000));
}

bool ps_test_client_eof(void *c) { return ((struct ps_test_client *)c)->eof; }

int ps_test_count_responses(const char *s) {
  int n = 0;
  const char *p = s ? s : "", *end = p + strlen(p);
  for (;;) {
    const char *head_end = strstr(p, "\r\n\r\n");
    const char *cl = strstr(p, "Content-Length: ");
    if (head_end == NULL || cl == NULL || cl > head_end) return n;
    size_t body = strtoul(cl + 16, NULL, 10);
    if (body > (size_t)(end - head_end - 4)) return n;
    n++;
    p = head_end + 4 + body;
  }
}
