/* One engine per target loaded with a week at 1 minute, put by put (mode 0) or in bulk (mode 1), then one
 * forecast: a fixed amount of work to count instructions on (docs/performance.md, "Restarts and first
 * loads"; perf counters are not available on every machine, callgrind is, and it is repeatable):
 *   cc -O2 -g -Isrc/forecast tests/bench/first_load_driver.c build/src/libprescale.a -lm -o fl
 *   valgrind --tool=callgrind ./fl 5 1      # targets, mode
 * Model auto, period auto, lookahead 5 minutes, quantile 0.9, an 8-day history as the server keeps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

#define WEEK 10080

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: first_load_driver TARGETS 0|1\n");
    return 2;
  }
  int n = atoi(argv[1]), bulk = atoi(argv[2]);
  static int64_t ts[WEEK];
  static double vs[WEEK];
  double sum = 0;
  for (int k = 0; k < n; k++) {
    struct ps_engine_config c = {.model = PS_MODEL_AUTO,
                                 .step_ms = 60000,
                                 .lookahead_ms = 300000,
                                 .capacity = 8 * 1440 + 1,
                                 .quantile = 0.9,
                                 .seed = (uint32_t)k};
    struct ps_engine *e;
    if (ps_engine_new(&c, &e) != 0) return 1;
    srand((unsigned)k);
    for (int i = 0; i < WEEK; i++) {
      ts[i] = (int64_t)(1700000000000LL / 60000 + i) * 60000;
      double d = fmod(i, 1440.0) / 1440.0;
      vs[i] = 100 + 50 * sin(2 * M_PI * d + k) + 20 * sin(4 * M_PI * d) + 10.0 * rand() / RAND_MAX;
    }
    if (bulk) ps_engine_bulk_begin(e);
    for (int i = 0; i < WEEK; i++) ps_engine_put(e, ts[i], vs[i]);
    if (bulk) ps_engine_bulk_end(e);
    struct ps_engine_result r;
    if (ps_engine_forecast(e, ts[WEEK - 1], &r) == 0) sum += r.value;
    struct ps_engine_counts cn;
    ps_engine_counts(e, &cn);
    if (k == 0)
      fprintf(stderr, "refits %llu, steps learned %llu\n", (unsigned long long)cn.refits,
              (unsigned long long)cn.learns);
    ps_engine_free(e);
  }
  printf("%.6f\n", sum); /* so that nothing is optimised away */
  return 0;
}
