/* The history of one target: a ring of values at a fixed step. Pure data structure, no I/O.
 * Slot times are multiples of step (Prometheus query_range evaluates at start + k*step and prescale
 * aligns start to a multiple of step), so a time maps to exactly one slot. Missing steps hold NaN. */
#ifndef PS_HISTORY_H
#define PS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

struct ps_history {
  double *v;       /* cap slots, owned */
  size_t cap;      /* how many steps are kept */
  size_t len;      /* slots in use, <= cap */
  size_t head;     /* index of the newest slot when len > 0 */
  int64_t step_ms; /* > 0 */
  int64_t last_ms; /* time of the newest slot; valid when len > 0 */
};

/* 0, UV_EINVAL (cap == 0 or step_ms <= 0) or UV_ENOMEM. */
int ps_history_init(struct ps_history *h, size_t cap, int64_t step_ms);
void ps_history_free(struct ps_history *h);

/* Stores v at t_ms (rounded down to a multiple of step).
 * - t after the newest: the steps between are filled with NaN (a gap), older slots fall off the ring;
 * - t within the ring: the slot is overwritten (Prometheus may revise the newest point);
 *   while the ring is not full, t up to cap-1 steps before the newest extends it backward (gap = NaN);
 * - t older than the ring can hold (cap or more steps before the newest, or not representable once
 *   rounded down): ignored, returns UV_ERANGE.
 * NaN and +-Inf values are stored as NaN (missing). Returns 0 or UV_ERANGE. */
int ps_history_put(struct ps_history *h, int64_t t_ms, double v);

/* The value at t_ms (rounded down to a multiple of step), NaN when missing or outside the ring. */
double ps_history_at(const struct ps_history *h, int64_t t_ms);
/* Time of the oldest slot held (valid when len > 0). */
int64_t ps_history_first_ms(const struct ps_history *h);
/* The newest non-NaN value and its time; UV_ENOENT when there is none. */
int ps_history_latest(const struct ps_history *h, double *v, int64_t *t_ms);

#endif
