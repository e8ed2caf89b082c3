/* How long the loop is busy per turn: the time between two turns that it spent running callbacks (I/O,
 * timers, idle handles, closes) rather than waiting in the kernel for events. A turn that long is a wait
 * that long for every other connection (a /healthz probe, an RPC, a Prometheus answer), so it is the
 * measure of what a piece of work costs the others on one thread.
 *
 * Measured by a uv_prepare_t (it runs once per turn, just before the loop polls for I/O): the wall time
 * since the previous turn's prepare, minus the time the loop spent blocked in the poll meanwhile
 * (uv_metrics_idle_time, libuv >= 1.39, with UV_METRICS_IDLE_TIME configured by ps_loop_lag_start). */
#ifndef PS_LOOP_LAG_H
#define PS_LOOP_LAG_H

#include <stdint.h>
#include <uv.h>

#include "metrics.h"

/* A histogram of the busy time of each loop turn, and the longest one since start. */
#define PS_LOOP_TURN_METRIC     "prescale_loop_turn_seconds"
#define PS_LOOP_TURN_MAX_METRIC "prescale_loop_turn_max_seconds"

struct ps_loop_lag {
  uv_prepare_t prepare; /* unreferenced: never keeps the loop alive; closed by ps_loop_lag_close */
  uint64_t last_ns;     /* uv_hrtime() at the previous turn's prepare; 0 before the first */
  uint64_t last_idle_ns;
  double max_s; /* the longest turn so far */
  uint64_t turns;
  struct ps_metric_ref hist, max;
};

/* Starts measuring the turns of loop into l (caller-owned, zeroed or not, valid until the close callback).
 * Declares the metrics. 0 or a libuv error (nothing started). */
int ps_loop_lag_start(uv_loop_t *loop, struct ps_loop_lag *l);
/* Stops and closes the handle; cb (may be NULL) runs when it is closed and l may be freed. A no-op when l
 * was zeroed and never started, or is closing already. */
void ps_loop_lag_close(struct ps_loop_lag *l, uv_close_cb cb);

#endif
