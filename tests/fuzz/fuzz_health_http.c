/* libFuzzer driver for the HTTP/1.1 health/metrics parser: the bytes a client could send, fed through
 * ps_health_http_feed_mem in reads of a size chosen by the first input byte, so that the pause/resume
 * bookkeeping and the head/body limits are exercised across read boundaries too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "health_http.h"
#include "metrics.h"

static bool ready_flip(void *arg) {
  unsigned *n = arg;
  return (++*n & 1u) != 0;
}

/* Every response the server writes starts with a status line and carries Content-Length. */
static void check_output(const struct ps_buf *out) {
  if (out->len == 0) return;
  if (out->len < 12 || memcmp(out->data, "HTTP/1.1 ", 9) != 0) abort();
  if (strstr(out->data, "Content-Length: ") == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned calls;
  struct ps_health_http srv = {.loop = NULL, .ready = ready_flip, .ready_arg = &calls};
  size_t chunk = 0;
  if (size > 0) {
    chunk = data[0]; /* 0: one read */
    data++;
    size--;
  }
  struct ps_buf out;
  ps_buf_init(&out);
  int rc = ps_health_http_feed_mem(&srv, data, size, chunk, &out);
  if (rc != 0 && rc != UV_EOF && rc != UV_ENOMEM) abort();
  check_output(&out);
  ps_buf_free(&out);
  /* Keep the registry from growing across runs: label values are bounded, but be tidy. */
  if ((calls & 1023u) == 0) ps_metrics_reset();
  return 0;
}
