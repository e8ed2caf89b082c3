/* libFuzzer target for the Prometheus answer decoder (src/prom_decode.c): any bytes a Prometheus, a proxy or
 * an attacker on the path may send as a query response. Checks the decoder's promises, not only that it does
 * not crash: ps_prom_decode's (sorted samples, one-line errors, the documented codes), and that the
 * streaming decoder fed the same bytes in pieces cut at pseudo-random places (derived from the input, so a
 * crash replays) gives exactly the one-piece result, appending after what its array held. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prom_decode.h"

#define PRE 2 /* samples already in the array the streaming decoder appends to */

static bool same_sample(const struct ps_sample *a, const struct ps_sample *b) {
  return a->t_ms == b->t_ms && (a->v == b->v || (isnan(a->v) && isnan(b->v)));
}

/* FNV-1a of the input seeds the cuts. */
static uint64_t seed_of(const uint8_t *data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

static void streamed(const uint8_t *data, size_t size, int rc, const char *err, const struct ps_sample *s,
                     size_t n) {
  struct ps_sample *arr = malloc(PRE * sizeof *arr);
  if (arr == NULL) return;
  size_t an = PRE, cap = PRE;
  for (size_t i = 0; i < PRE; i++) arr[i] = (struct ps_sample){.t_ms = -(int64_t)i, .v = 1};
  struct ps_prom_dec *d;
  if (ps_prom_dec_new(&arr, &an, &cap, &d) != 0) abort();
  uint64_t x = seed_of(data, size) | 1;
  size_t off = 0;
  while (off < size) {
    x ^= x << 13; /* xorshift64 */
    x ^= x >> 7;
    x ^= x << 17;
    /* Mostly short pieces (every state split), now and then a long one. */
    size_t piece = (x & 7) == 0 ? (size_t)(x >> 8) % 4096 : (size_t)(x >> 8) % 8;
    if (piece > size - off) piece = size - off;
    if (ps_prom_dec_feed(d, (const char *)data + off, piece) != 0) abort();
    off += piece;
  }
  if (ps_prom_dec_bytes(d) != size) abort();
  char serr[PS_PROM_MAX_ERROR_TEXT];
  serr[0] = '\0';
  int src = ps_prom_dec_finish(d, serr, sizeof serr, NULL);
  ps_prom_dec_free(d);
  if (src != rc || strcmp(serr, err) != 0) abort();
  if (an != PRE + (rc == 0 ? n : 0)) abort();
  for (size_t i = 0; i < PRE; i++)
    if (arr[i].t_ms != -(int64_t)i) abort(); /* what the array held stays */
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (!same_sample(&arr[PRE + i], &s[i])) abort();
  free(arr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ps_sample *s = NULL;
  size_t n = 0;
  char err[PS_PROM_MAX_ERROR_TEXT];
  err[0] = '\0';
  int rc = ps_prom_decode((const char *)data, size, &s, &n, err, sizeof err);
  if (rc == 0) {
    for (size_t i = 1; i < n; i++)
      if (s[i].t_ms < s[i - 1].t_ms) abort(); /* promised sorted by time */
  } else {
    if (s != NULL || n != 0) abort();
    if (err[0] == '\0' || strchr(err, '\n') != NULL) abort(); /* one line, always */
    if (rc != UV_EINVAL && rc != UV_EAGAIN && rc != UV_EPROTO && rc != UV_ENOMEM) abort();
  }
  streamed(data, size, rc, err, s, n);
  free(s);
  return 0;
}
