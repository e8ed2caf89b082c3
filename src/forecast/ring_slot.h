/* The slot of step t, of either sign, in a ring of m slots that keeps step t at t mod m (C's % keeps the
 * sign of t): the engine's rings, Holt-Winters' season, the coverage tuner's pending answers and the
 * analog model's codes all index steps so. */
#ifndef PS_RING_SLOT_H
#define PS_RING_SLOT_H

#include <stddef.h>
#include <stdint.h>

static inline size_t ps_ring_slot(int64_t t, size_t m) {
  int64_t r = t % (int64_t)m;
  return (size_t)(r < 0 ? r + (int64_t)m : r);
}

#endif
