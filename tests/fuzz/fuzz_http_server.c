/* libFuzzer driver for http_server.c, the HTTP/1.1 server layer shared by prescale's side door and the demo
 * app: the bytes a client could send, fed in memory in reads of a size chosen by the first input byte,
 * while the second byte decides, request by request, whether the handler answers at once or holds the
 * request and answers it before the next read (as the demo app does after its service time), and with
 * which flags. So the paths fuzz_health_http cannot reach are exercised too: input stashed behind a
 * pending request, the resume after a late answer, and a request cancelled when the connection goes.
 *
 * Checked: the handler never gets a request while another of the connection is pending (responses in
 * request order); every request is answered or cancelled, and freed (ASan's leak check); output is a
 * sequence of status lines with Content-Length. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"

static struct {
  uint8_t policy;
  unsigned calls;
  struct ps_http_server_req *held;
} f;

static unsigned flags_for(unsigned n) { return (f.policy >> 7) && (n & 1u) ? PS_HTTP_SERVER_CLOSE : 0; }

static void check_rc(int rc) {
  if (rc != 0 && rc != UV_EPIPE && rc != UV_ENOMEM) abort();
}

static void handler(struct ps_http_server_req *req, void *arg) {
  if (f.held != NULL) abort(); /* one request at a time per connection */
  unsigned n = f.calls++;
  size_t len;
  const char *path = ps_http_server_req_path(req, &len);
  (void)ps_http_server_req_method(req);
  if ((f.policy >> (n % 7)) & 1u) {
    f.held = req;
    return;
  }
  check_rc(ps_http_server_respond(req, n % 3 ? 200 : 405, "text/plain", path, len, flags_for(n)));
}

static void on_cancel(struct ps_http_server_req *req, void *arg) {
  if (req != f.held) abort();
  f.held = NULL;
  if (ps_http_server_respond(req, 200, "text/plain", "x", 1, 0) != UV_EPIPE) abort();
}

static void check_output(const struct ps_buf *out) {
  if (out->len == 0) return;
  if (out->len < 12 || memcmp(out->data, "HTTP/1.1 ", 9) != 0) abort();
  if (strstr(out->data, "Content-Length: ") == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t chunk = data[0] ? data[0] : size; /* 0: one read */
  memset(&f, 0, sizeof(f));
  f.policy = data[1];
  data += 2;
  size -= 2;
  struct ps_http_server_config cfg = {
      .handler = handler, .on_cancel = on_cancel, .idle_ms = 1, .allow = "GET, HEAD", .log_prefix = "fuzz "};
  struct ps_buf out;
  ps_buf_init(&out);
  struct ps_http_server_conn *c = ps_http_server_mem_new(&cfg, &out);
  if (c == NULL) return 0;
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0;) {
    size_t n = size - off < chunk ? size - off : chunk;
    rc = ps_http_server_mem_feed(c, data + off, n);
    off += n;
    if (f.held != NULL) {
      /* Answered before the next read: what waited behind it is parsed by the next ps_http_server_mem_feed.
       */
      struct ps_http_server_req *req = f.held;
      f.held = NULL;
      check_rc(ps_http_server_respond(req, 200, "text/plain", "late\n", 5, flags_for(f.calls)));
    }
  }
  /* Let what waited behind the last late answer through, then the client goes (a request still pending
   * is cancelled). */
  if (rc == 0) rc = ps_http_server_mem_feed(c, NULL, 0);
  if (rc != 0 && rc != UV_EOF) abort();
  ps_http_server_mem_free(c);
  if (f.held != NULL) abort();
  check_output(&out);
  ps_buf_free(&out);
  return 0;
}
