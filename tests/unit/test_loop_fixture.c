/* The loop fixture (tests/unit/loop_fixture.c): ps_test_run_until, and the end-of-test check
 * PS_LOOP_END. The check must be able to fail, so these tests leak on purpose: directly against
 * ps_test_loop_end, and through the macro in a separate criterion program (loop_fixture_probe.c) whose
 * leaking tests must fail with a message naming what leaked. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "loop_fixture.h"

static uv_loop_t loop;
static char what[PS_TEST_LOOP_WHAT_MAX];

static void setup(void) { cr_assert_eq(uv_loop_init(&loop), 0); }

TestSuite(loop_fixture, .init = setup, .timeout = 60);

static void tick_cb(uv_timer_t *t) { (*(int *)t->data)++; }
static void close_cb(uv_timer_t *t) { uv_close((uv_handle_t *)t, NULL); }
static bool never(void *arg) { return false; }
static bool is_positive(void *arg) { return *(int *)arg > 0; }

/* ---- ps_test_run_until ------------------------------------------------------------------------------ */

Test(loop_fixture, run_until_stops_on_the_condition_or_the_bound) {
  uv_timer_t t;
  int ticks = 0;
  uv_timer_init(&loop, &t);
  t.data = &ticks;
  uv_timer_start(&t, tick_cb, 10, 10);
  cr_assert(ps_test_run_until(&loop, is_positive, &ticks, 5000));
  uint64_t start = uv_now(&loop);
  cr_assert_not(ps_test_run_until(&loop, never, NULL, 50));
  cr_assert_geq(uv_now(&loop) - start, 50);
  uv_close((uv_handle_t *)&t, NULL);
  PS_LOOP_END(&loop);
}

/* ---- ps_test_loop_end: the happy paths --------------------------------------------------------------- */

Test(loop_fixture, an_empty_loop_ends_clean) {
  cr_assert_eq(ps_test_loop_end(&loop, what, sizeof what), 0, "%s", what);
  cr_assert_str_eq(what, "nothing left open");
}

/* A close still under way and a one-shot timer that closes itself are work the loop finishes when it runs
 * dry: neither is a leak. */
Test(loop_fixture, pending_closes_and_timers_are_run_dry) {
  uv_timer_t closing, oneshot;
  uv_timer_init(&loop, &closing);
  uv_close((uv_handle_t *)&closing, NULL);
  uv_timer_init(&loop, &oneshot);
  uv_timer_start(&oneshot, close_cb, 50, 0);
  cr_assert_eq(ps_test_loop_end(&loop, what, sizeof what), 0, "%s", what);
  cr_assert(uv_is_closing((uv_handle_t *)&oneshot));
}

Test(loop_fixture, the_macro_passes_a_clean_test) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, close_cb, 1, 0);
  PS_LOOP_END(&loop);
}

/* ---- ps_test_loop_end: leaks --------------------------------------------------------------------------- */

/* A leaked repeating timer keeps the loop alive forever: the drain stops at its bound, the timer is named
 * and closed, and the loop is closed all the same. */
Test(loop_fixture, a_leaked_repeating_timer_is_named_and_closed) {
  uv_timer_t t;
  int ticks = 0;
  uv_timer_init(&loop, &t);
  t.data = &ticks;
  uv_timer_start(&t, tick_cb, 10, 10);
  uint64_t start = uv_hrtime();
  cr_assert_eq(ps_test_loop_end(&loop, what, sizeof what), UV_EBUSY);
  uint64_t took_ms = (uv_hrtime() - start) / 1000000;
  cr_assert_str_eq(what, "1 handle left open: timer (active)");
  cr_assert_gt(ticks, 0, "the loop was run");
  cr_assert_lt(took_ms, 2 * PS_TEST_LOOP_DRAIN_MS, "the drain is bounded (%llu ms)",
               (unsigned long long)took_ms);
  cr_assert(uv_is_closing((uv_handle_t *)&t), "the leaked timer was closed");
}

/* Every handle is named, active or not. */
Test(loop_fixture, every_leaked_handle_is_named) {
  uv_tcp_t tcp;
  uv_timer_t idle;
  cr_assert_eq(uv_tcp_init(&loop, &tcp), 0);
  uv_timer_init(&loop, &idle);
  cr_assert_eq(ps_test_loop_end(&loop, what, sizeof what), UV_EBUSY);
  cr_assert_not_null(strstr(what, "2 handles left open: "), "%s", what);
  cr_assert_not_null(strstr(what, "tcp"), "%s", what);
  cr_assert_not_null(strstr(what, "timer"), "%s", what);
  cr_assert_null(strstr(what, "active"), "%s", what);
}

/* A description longer than the caller's buffer is cut, never overrun. */
Test(loop_fixture, a_long_description_is_cut) {
  uv_timer_t timers[64];
  char small[32];
  memset(small, 'x', sizeof small);
  for (int i = 0; i < 64; i++) uv_timer_init(&loop, &timers[i]);
  cr_assert_eq(ps_test_loop_end(&loop, small, sizeof small), UV_EBUSY);
  static const char head[] = "64 handles left open: timer, ";
  cr_assert_eq(strlen(small), sizeof small - 1);
  cr_assert_eq(strncmp(small, head, sizeof head - 1), 0, "%s", small);
}

/* ---- PS_LOOP_END fails the test itself ---------------------------------------------------------------- */

static int run_probe(const char *test, char *out, size_t len) {
  return ps_test_run_probe(PS_TEST_LOOP_PROBE, test, out, len);
}

Test(loop_fixture, the_macro_fails_a_test_that_leaks_a_timer) {
  char out[8192];
  cr_assert_neq(run_probe("leaks_a_repeating_timer", out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "the test did not leave its loop clean: 1 handle left open: timer (active)"),
                     "%s", out);
  cr_assert_not_null(strstr(out, "Failing: 1"), "%s", out);
  PS_LOOP_END(&loop);
}

Test(loop_fixture, the_macro_fails_a_test_that_leaks_a_tcp_handle) {
  char out[8192];
  cr_assert_neq(run_probe("leaks_an_idle_tcp_handle", out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "1 handle left open: tcp"), "%s", out);
  PS_LOOP_END(&loop);
}

Test(loop_fixture, the_macro_passes_a_test_that_closes_what_it_opened) {
  char out[8192];
  cr_assert_eq(run_probe("leaks_nothing", out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "Passing: 1"), "%s", out);
  PS_LOOP_END(&loop);
}

/* The premise of PS_LOOP_END: an assertion that fails in a .fini does not fail the test. Should a newer
 * criterion fail it, this test says so (a .fini check would then work too). */
Test(loop_fixture, criterion_ignores_assertions_in_fini) {
  char out[8192];
  cr_assert_eq(run_probe("asserts_in_fini_only", out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "Passing: 1"), "%s", out);
  PS_LOOP_END(&loop);
}
