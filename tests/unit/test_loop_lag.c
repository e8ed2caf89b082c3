/* loop_lag.c: the busy time of a loop turn is measured, waiting for events is not, and the handle never
 * keeps the loop alive. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "loop_fixture.h"
#include "loop_lag.h"
#include "metrics.h"

/* The busy turn made on purpose, and the idle wait. */
#define SPIN_MS 30
#define WAIT_MS 1000

static uv_loop_t loop;
static struct ps_loop_lag lag;

static void setup(void) { cr_assert_eq(uv_loop_init(&loop), 0); }
static void teardown(void) { ps_metrics_reset(); }

TestSuite(loop_lag, .init = setup, .fini = teardown);

struct timed {
  uv_timer_t timer;
  int fired;
  int spin;
};

/* Busy, not asleep: holds the loop for SPIN_MS as a long piece of work would. Bounded by the clock. */
static void timer_cb(uv_timer_t *t) {
  struct timed *x = t->data;
  if (x->spin) {
    uint64_t end = uv_hrtime() + (uint64_t)SPIN_MS * 1000000;
    volatile uint64_t n = 0;
    while (uv_hrtime() < end) n++;
  }
  x->fired = 1;
}

static bool fired(void *arg) { return ((struct timed *)arg)->fired; }

/* The value of one line of the exposition ("name{labels} value"), or NaN. */
static double rendered(const char *text, const char *series) {
  const char *p = strstr(text, series);
  if (p == NULL) return NAN;
  double v = NAN;
  sscanf(p + strlen(series), " %lf", &v);
  return v;
}

Test(loop_lag, a_busy_turn_is_measured) {
  cr_assert_eq(ps_loop_lag_start(&loop, &lag), 0);
  struct timed x = {.spin = 0};
  uv_timer_init(&loop, &x.timer);
  x.timer.data = &x;
  /* Turns without blocking (the timer is due at once): the first only sets the origin, the second spins.
   * Timers run before the prepare handles in a turn, so the turn that ran the spin is measured by the time
   * the loop returns from it. */
  uv_timer_start(&x.timer, timer_cb, 0, 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert(x.fired);
  cr_assert_eq(lag.turns, 0);
  x.fired = 0;
  x.spin = 1;
  uv_timer_start(&x.timer, timer_cb, 0, 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert(x.fired);
  cr_assert_eq(lag.turns, 1);
  cr_assert_geq(lag.max_s, SPIN_MS / 1000.0, "longest turn %g s, a turn spun %d ms", lag.max_s, SPIN_MS);
  cr_assert_eq(ps_metrics_get(PS_LOOP_TURN_MAX_METRIC, ""), lag.max_s);

  struct ps_buf out;
  ps_buf_init(&out);
  cr_assert_eq(ps_metrics_render(&out), 0);
  const char *text = out.data;
  cr_assert_not_null(strstr(text, "# TYPE " PS_LOOP_TURN_METRIC " histogram"));
  double count = rendered(text, PS_LOOP_TURN_METRIC "_count"),
         le25 = rendered(text, PS_LOOP_TURN_METRIC "_bucket{le=\"0.025\"}");
  cr_assert_eq(count, 1, "%s", text);
  cr_assert_lt(le25, count, "the spun turn is not above 25 ms in the histogram:\n%s", text);
  ps_buf_free(&out);

  uv_close((uv_handle_t *)&x.timer, NULL);
  ps_loop_lag_close(&lag, NULL);
  PS_LOOP_END(&loop);
}

/* A second of waiting for a timer is not a second of work: the idle time in the poll is taken out. */
Test(loop_lag, waiting_is_not_busy) {
  cr_assert_eq(ps_loop_lag_start(&loop, &lag), 0);
  struct timed x = {.spin = 0};
  uv_timer_init(&loop, &x.timer);
  x.timer.data = &x;
  /* The first turn sets the origin and waits in the poll; the next runs the timer and measures. A timer is
   * due from the loop's cached clock, last read at uv_loop_init: on a busy machine that can be milliseconds
   * before t0, and the timer would then fire before WAIT_MS have passed since t0. */
  uv_update_time(&loop);
  uint64_t t0 = uv_hrtime();
  uv_timer_start(&x.timer, timer_cb, WAIT_MS, 0);
  cr_assert(ps_test_run_until(&loop, fired, &x, 10 * WAIT_MS));
  cr_assert_geq(lag.turns, 1);
  /* libuv times timers in whole milliseconds of its cached clock: within one of the wait asked. */
  cr_assert_geq((double)(uv_hrtime() - t0) / 1e9, (WAIT_MS - 2) / 1000.0);
  cr_assert_lt(lag.max_s, WAIT_MS / 1000.0, "a wait of %d ms counted as %g s of work", WAIT_MS, lag.max_s);
  uv_close((uv_handle_t *)&x.timer, NULL);
  ps_loop_lag_close(&lag, NULL);
  PS_LOOP_END(&loop);
}

/* Unreferenced: a server whose last handle closes still ends its loop. Closing twice, or a zeroed one that
 * never started, is a no-op. */
Test(loop_lag, never_keeps_the_loop_alive) {
  struct ps_loop_lag idle;
  memset(&idle, 0, sizeof idle);
  ps_loop_lag_close(&idle, NULL);
  cr_assert_eq(ps_loop_lag_start(&loop, &lag), 0);
  cr_assert_eq(uv_loop_alive(&loop), 0);
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ps_loop_lag_close(&lag, NULL);
  ps_loop_lag_close(&lag, NULL);
  PS_LOOP_END(&loop);
}
