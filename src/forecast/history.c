/* The history of one target: a fixed ring of doubles (8 bytes per step), indexed by time.
 * Slot i of the ring holds the step `last_ms - k * step_ms` where k = (head - i) mod cap. */
#include "history.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <uv.h>

/* ---- helpers ------------------------------------------------------------------------------------- */

/* Rounds t down to a multiple of step, also for negative t (C division truncates toward zero).
 * Returns false when the result would not fit in an int64_t. */
static bool floor_step(int64_t t, int64_t step, int64_t *out) {
  int64_t q = t / step;
  if (t % step != 0 && t < 0) q--;
  int64_t r;
  if (__builtin_mul_overflow(q, step, &r)) return false;
  *out = r;
  return true;
}

/* Steps between two aligned times a >= b, or false when the distance overflows. */
static bool steps_between(int64_t a, int64_t b, int64_t step, uint64_t *out) {
  int64_t d;
  if (__builtin_sub_overflow(a, b, &d)) {
    /* a and b have opposite signs and the distance exceeds INT64_MAX: far beyond any ring. */
    *out = UINT64_MAX;
    return true;
  }
  *out = (uint64_t)d / (uint64_t)step;
  return true;
}

/* last - k * step, saturated: times near the int64 limits only come from fuzzers, never from clocks. */
static int64_t back_time(const struct ps_history *h, size_t k) {
  int64_t d, r;
  if (__builtin_mul_overflow((int64_t)k, h->step_ms, &d) || __builtin_sub_overflow(h->last_ms, d, &r))
    return INT64_MIN;
  return r;
}

static size_t slot_back(const struct ps_history *h, size_t k) { return (h->head + h->cap - k) % h->cap; }

/* ---- lifecycle ----------------------------------------------------------------------------------- */

int ps_history_init(struct ps_history *h, size_t cap, int64_t step_ms) {
  h->v = NULL;
  h->cap = h->len = h->head = 0;
  h->step_ms = step_ms;
  h->last_ms = 0;
  if (cap == 0 || step_ms <= 0 || cap > SIZE_MAX / sizeof(double)) return UV_EINVAL;
  h->v = malloc(cap * sizeof(double));
  if (h->v == NULL) return UV_ENOMEM;
  h->cap = cap;
  for (size_t i = 0; i < cap; i++) h->v[i] = NAN;
  return 0;
}

void ps_history_free(struct ps_history *h) {
  free(h->v);
  h->v = NULL;
  h->cap = h->len = h->head = 0;
}

/* ---- writes -------------------------------------------------------------------------------------- */

int ps_history_put(struct ps_history *h, int64_t t_ms, double v) {
  if (h->cap == 0) return UV_ERANGE;
  int64_t t;
  if (!floor_step(t_ms, h->step_ms, &t)) return UV_ERANGE;
  if (!isfinite(v)) v = NAN; /* +-Inf is no load figure anyone can scale on: store it as missing */

  if (h->len == 0) {
    h->head = 0;
    h->v[0] = v;
    h->len = 1;
    h->last_ms = t;
    return 0;
  }

  if (t > h->last_ms) {
    /* Advance the head k steps; the steps skipped over are a gap (NaN), and what falls off the ring
     * is the oldest data. A gap longer than the ring just clears it. */
    uint64_t k;
    steps_between(t, h->last_ms, h->step_ms, &k);
    if (k >= h->cap) {
      for (size_t i = 0; i < h->cap; i++) h->v[i] = NAN;
      h->head = 0;
      h->len = h->cap;
    } else {
      for (uint64_t i = 0; i < k; i++) {
        h->head = (h->head + 1) % h->cap;
        h->v[h->head] = NAN;
      }
      h->len = h->len + k > h->cap ? h->cap : h->len + (size_t)k;
    }
    h->v[h->head] = v;
    h->last_ms = t;
    return 0;
  }

  /* At or before the newest step: overwrite a slot (Prometheus may revise recent points), or grow the
   * ring backward while it is not full yet (the slots in between become gaps). */
  uint64_t k;
  steps_between(h->last_ms, t, h->step_ms, &k);
  if (k >= h->cap) return UV_ERANGE;
  if (k >= h->len) {
    for (size_t i = h->len; i < k; i++) h->v[slot_back(h, i)] = NAN;
    h->len = (size_t)k + 1;
  }
  h->v[slot_back(h, (size_t)k)] = v;
  return 0;
}

/* ---- reads --------------------------------------------------------------------------------------- */

double ps_history_at(const struct ps_history *h, int64_t t_ms) {
  if (h->len == 0) return NAN;
  int64_t t;
  if (!floor_step(t_ms, h->step_ms, &t) || t > h->last_ms) return NAN;
  uint64_t k;
  steps_between(h->last_ms, t, h->step_ms, &k);
  if (k >= h->len) return NAN;
  return h->v[slot_back(h, (size_t)k)];
}

int64_t ps_history_first_ms(const struct ps_history *h) {
  if (h->len == 0) return 0;
  return back_time(h, h->len - 1);
}

int ps_history_latest(const struct ps_history *h, double *v, int64_t *t_ms) {
  for (size_t k = 0; k < h->len; k++) {
    double x = h->v[slot_back(h, k)];
    if (!isnan(x)) {
      if (v != NULL) *v = x;
      if (t_ms != NULL) *t_ms = back_time(h, k);
      return 0;
    }
  }
  return UV_ENOENT;
}
