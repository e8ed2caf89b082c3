/* The busy time of each loop turn (loop_lag.h).
 *
 * libuv runs, per turn (docs/src/design.rst, "The I/O loop"): due timers, pending callbacks, idle
 * handles, prepare handles, the poll for I/O (which runs the I/O callbacks), check handles, close
 * callbacks. From one prepare to the next is therefore exactly one whole turn, and the only part of it
 * not spent in prescale's callbacks (or libuv's bookkeeping for them) is the wait inside the poll, which
 * uv_metrics_idle_time accumulates. */
#include "loop_lag.h"

#include <string.h>

static void prepare_cb(uv_prepare_t *h) {
  struct ps_loop_lag *l = h->data;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
  if (l->last_ns != 0) {
    uint64_t wall = now - l->last_ns, waited = idle - l->last_idle_ns;
    /* Both clocks are monotonic, but idle time is stamped at slightly different points than ours. */
    double busy = wall > waited ? (double)(wall - waited) / 1e9 : 0;
    ps_metrics_ref_observe(&l->hist, PS_LOOP_TURN_METRIC, "", busy);
    if (busy > l->max_s) {
      l->max_s = busy;
      ps_metrics_ref_set(&l->max, PS_LOOP_TURN_MAX_METRIC, "", busy);
    }
    l->turns++;
  }
  l->last_ns = now;
  l->last_idle_ns = idle;
}

int ps_loop_lag_start(uv_loop_t *loop, struct ps_loop_lag *l) {
  memset(l, 0, sizeof *l);
  /* Idle-time accounting is off unless asked for; it may be turned on at any time (uv_loop_configure). */
  int r = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  if (r == 0) r = uv_prepare_init(loop, &l->prepare);
  if (r != 0) {
    l->prepare.loop = NULL;
    return r;
  }
  ps_metrics_declare(PS_LOOP_TURN_METRIC, PS_METRIC_HISTOGRAM,
                     "Time the event loop spent running callbacks per turn (not waiting for events): a turn "
                     "this long delays every other connection by as much.");
  ps_metrics_declare(PS_LOOP_TURN_MAX_METRIC, PS_METRIC_GAUGE, "The longest event loop turn since start.");
  ps_metrics_ref_set(&l->max, PS_LOOP_TURN_MAX_METRIC, "", 0);
  l->prepare.data = l;
  uv_prepare_start(&l->prepare, prepare_cb);
  uv_unref((uv_handle_t *)&l->prepare);
  return 0;
}

void ps_loop_lag_close(struct ps_loop_lag *l, uv_close_cb cb) {
  /* Never started (zeroed by the caller, or start failed), or closed already. */
  if (l->prepare.loop == NULL || uv_is_closing((uv_handle_t *)&l->prepare)) return;
  uv_prepare_stop(&l->prepare);
  uv_close((uv_handle_t *)&l->prepare, cb);
}
