/* Fuzzes the gRPC message reader (src/grpc.c): arbitrary bytes fed in arbitrary chunk sizes.
 * Input: byte 0 picks max_msg, then repeatedly one byte of chunk length (1-64) and that many bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"

struct check {
  size_t max_msg;
  size_t total;
  struct ps_grpc_reader *r;
  struct ps_grpc_budget *budget;
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
  if (len % 3 == 0) {
    /* Keep some messages as a caller would: the buffer and its charge go with it. */
    size_t charged;
    uint8_t *kept = ps_grpc_reader_take(c->r, &charged);
    if (kept == NULL && charged != 0) abort();
    free(kept);
    ps_grpc_budget_release(c->budget, charged);
  }
  return len == 13 ? -1 : 0; /* also exercise a callback that stops the reader */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  /* The budget is about as large as one message: refusals over it are reached too. */
  struct ps_grpc_budget budget = {.limit = (size_t)data[0] * 4 + 1};
  struct check c = {.max_msg = (size_t)data[0] * 4, .budget = &budget};
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, c.max_msg);
  r.budget = &budget;
  c.r = &r;
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
    if (budget.used > budget.limit || budget.used != r.cap) abort(); /* every reserved byte, counted */
    if (err != 0) break;
    data += n;
    size -= n;
  }
  (void)ps_grpc_reader_partial(&r);
  ps_grpc_reader_free(&r);
  if (budget.used != 0) abort();
  return 0;
}
