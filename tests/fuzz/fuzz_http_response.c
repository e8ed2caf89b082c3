/* libFuzzer target for the HTTP/1.1 response path of src/http_client_parse.c, through
 * ps_http_parse_response: the first byte picks how the bytes are split across reads (as TCP may split
 * them), the rest is what the server sent before closing. */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t piece = data[0]; /* 0: all at once */
  struct ps_buf body;
  ps_buf_init(&body);
  int status = 0;
  int rc = ps_http_parse_response((const char *)data + 1, size - 1, piece, &status, &body);
  if (rc == 0) {
    if (status < 100 || status > 999) abort();
    if (body.len > PS_HTTP_MAX_RESPONSE) abort();
  } else if (rc != UV_EPROTO && rc != UV_E2BIG && rc != UV_ECONNRESET && rc != UV_ENOMEM) {
    abort();
  }
  ps_buf_free(&body);
  return 0;
}
