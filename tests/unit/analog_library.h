/* The analog model's library as analog.h describes it, written out independently of analog.c for the
 * tests that check what the codes hold (test_analog.c, test_engine_fixed.c). */
#ifndef PS_TEST_ANALOG_LIBRARY_H
#define PS_TEST_ANALOG_LIBRARY_H

#include <stdint.h>

#include "forecast/analog.h"

/* Whether the library of some origin in lo .. hi (h steps of lookahead, a period of p long enough) reads
 * step t: the query's inputs, and every row's inputs and window, the last PS_ANALOG_RECENT rows whose
 * window ended by the origin and those within PS_ANALOG_WIDTH steps of its phase in the last
 * PS_ANALOG_PERIODS periods. */
static inline int ps_test_library_reads(int64_t lo, int64_t hi, int64_t h, int64_t p, int64_t t) {
  if (t >= lo - h - PS_ANALOG_RECENT + 1 - PS_ANALOG_LAGS && t <= hi) return 1;
  for (int64_t d = 1; d <= PS_ANALOG_PERIODS; d++)
    if (t >= lo - d * p - PS_ANALOG_WIDTH - PS_ANALOG_LAGS && t <= hi - d * p + PS_ANALOG_WIDTH + h) return 1;
  return 0;
}

#endif
