/* `make bench`: closing many targets at once, as prescale's shutdown does (ps_targets_close) and as an idle
 * sweep that finds them all idle does (ps_targets_sweep), each in one loop callback: the CPU time of that
 * one call is the loop's stall. Each target looks for the targets that share its labels (a metadata edit
 * of one trigger) to keep their series; before the label index (targets_int.h, by_labels) it looked among
 * all targets, O(n^2).
 *
 *   close_bench [ROUNDS [N...]]   (default 5 rounds of 1000 2000 5000 10000 targets)
 *
 * Targets: distinct names (so distinct labels), one query (so one shared fetch, to a loopback port that
 * nothing listens on: the loop does not run before the close, no fetch ends). Figures: the median over the
 * rounds of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: a shared machine taking the core away does not
 * count) of the one call, in all and per target; logs are off (an idle sweep logs a line per target).
 * Instructions: run one round under callgrind, collecting only inside the calls:
 *   valgrind --tool=callgrind --toggle-collect=ps_targets_close --toggle-collect=ps_targets_sweep \
 *     build/close_bench 1 10000
 * Never pass/fail on speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "targets.h"

#define MAX_ROUNDS 101

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One registry of n targets, closed by `sweep` (all idle) or by the registry's close; the CPU seconds of
 * that one call, or -1. */
static double one_round(int n, bool sweep) {
  uv_loop_t loop;
  struct ps_server_config cfg;
  struct ps_http_client *http;
  struct ps_targets *ts;
  if (uv_loop_init(&loop) != 0) return -1;
  ps_server_config_defaults(&cfg);
  cfg.prometheus_url = "http://127.0.0.1:9";
  cfg.max_targets = (size_t)n;
  if (ps_http_client_new(&loop, &http) != 0 || ps_targets_new(&loop, &cfg, http, &ts) != 0) return -1;
  struct ps_kv md[] = {
      {"query", "vector(1)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1m"}, {"history", "1h"}};
  for (int i = 0; i < n; i++) {
    char name[32], err[512];
    struct ps_target *t;
    snprintf(name, sizeof name, "app%d", i);
    if (ps_targets_get_or_create(ts, "bench", name, md, 5, &t, err, sizeof err) != 0) {
      fprintf(stderr, "target %d: %s\n", i, err);
      return -1;
    }
  }
  double t0 = thread_cpu_s();
  if (sweep) {
    cfg.target_idle_ms = 0;
    ps_targets_sweep(ts);
  } else {
    ps_targets_close(ts);
  }
  double t1 = thread_cpu_s();
  if (sweep && ps_targets_count(ts) != 0) return -1;
  if (sweep) ps_targets_close(ts);
  ps_http_client_close(http);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  ps_metrics_reset();
  return t1 - t0;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 5;
  static const int def[] = {1000, 2000, 5000, 10000};
  int nn = argc > 2 ? argc - 2 : (int)(sizeof def / sizeof def[0]);
  ps_log_setup(PS_LOG_ERROR, PS_LOG_TEXT, NULL);
  printf("close_bench: %d rounds, the median of the one call's CPU time (thread)\n", rounds);
  printf("  %8s  %14s  %12s  %14s  %12s\n", "targets", "close (shutdown)", "per target", "idle sweep",
         "per target");
  for (int k = 0; k < nn; k++) {
    int n = argc > 2 ? atoi(argv[2 + k]) : def[k];
    if (n < 1 || n > PS_MAX_MAX_TARGETS) continue;
    double c[MAX_ROUNDS], s[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
      c[r] = one_round(n, false);
      s[r] = one_round(n, true);
      if (c[r] < 0 || s[r] < 0) {
        fprintf(stderr, "close_bench: a round of %d targets failed\n", n);
        return 1;
      }
    }
    qsort(c, (size_t)rounds, sizeof c[0], cmp_double);
    qsort(s, (size_t)rounds, sizeof s[0], cmp_double);
    double cm = c[rounds / 2], sm = s[rounds / 2];
    printf("  %8d  %13.1f ms  %9.2f us  %11.1f ms  %9.2f us\n", n, cm * 1e3, cm * 1e6 / n, sm * 1e3,
           sm * 1e6 / n);
  }
  return 0;
}
