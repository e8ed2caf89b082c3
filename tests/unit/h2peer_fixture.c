#include "h2peer_fixture.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void write_cb(uv_write_t *req, int status) { free(req); }

void ps_test_h2peer_flush(struct ps_test_h2peer *p) {
  if (p->eof || uv_is_closing((uv_handle_t *)&p->tcp)) return;
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(p->s, &data);
    cr_assert_geq(n, 0);
    if (n == 0) break;
    uv_write_t *w = malloc(sizeof *w + (size_t)n);
    memcpy(w + 1, data, (size_t)n);
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&p->tcp, &b, 1, write_cb) != 0) free(w);
  }
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b) {
  static char buf[65536];
  b->base = buf;
  b->len = sizeof buf;
}

static void read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  struct ps_test_h2peer *p = h->data;
  if (n < 0) {
    p->eof = true;
    uv_read_stop(h);
    return;
  }
  cr_assert_eq(nghttp2_session_mem_recv(p->s, (const uint8_t *)b->base, (size_t)n), n);
  ps_test_h2peer_flush(p);
}

void ps_test_h2peer_read_start(struct ps_test_h2peer *p) {
  p->tcp.data = p;
  uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
}
