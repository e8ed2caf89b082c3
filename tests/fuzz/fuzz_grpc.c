/* Fuzzes the gRPC message reader (src/grpc.c): arbitrary bytes fed in arbitrary chunk sizes.
 * Input: byte 0 picks max_msg, then repeatedly one byte of chunk length (1-64) and that many bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"

struct check {
  size_t max_msg;
  size_t total;
};

static int on_msg(void *arg, const uint8_t *msg, size_t len) {
  struct check *c = arg;
  if (len > c->max_msg) abort(); /* the reader promised to refuse these */
  if (len > 0 && msg == NULL) abort();
  /* Touch every byte so ASan sees a read beyond the message. */
  volatile uint8_t x = 0;
  for (size_t i = 0; i < len; i++) x ^= msg[i];
  (void)x;
  c->total += len;
  return len == 13 ? -1 : 0; /* also exercise a callback that stops the reader */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  struct check c = {.max_msg = (size_t)data[0] * 4};
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, c.max_msg);
  data++, size--;
  while (size > 0) {
    size_t n = (size_t)(data[0] % 64) + 1;
    data++, size--;
    if (n > size) n = size;
    /* A private copy, so that ASan catches the reader keeping a pointer into a chunk. */
    uint8_t *chunk = malloc(n ? n : 1);
    memcpy(chunk, data, n);
    int err = ps_grpc_reader_feed(&r, chunk, n, on_msg, &c);
    free(chunk);
    if (err != 0) break;
    data += n;
    size -= n;
  }
  (void)ps_grpc_reader_partial(&r);
  ps_grpc_reader_free(&r);
  return 0;
}
