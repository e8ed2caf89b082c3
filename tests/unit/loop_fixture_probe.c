/* Criterion tests that test_loop_fixture.c runs one at a time as a separate program, checking each verdict:
 * a test that leaks a handle must FAIL through PS_LOOP_END itself, with a message naming the handle, since
 * that failure cannot be observed from inside the test that fails. Built by meson, never registered as a
 * test itself. */
#include <criterion/criterion.h>
#include <uv.h>

#include "loop_fixture.h"

static void tick_cb(uv_timer_t *t) { (void)t; }

/* Forgets a repeating timer: the drain must stop at its bound and the failure must name the timer. */
Test(probe, leaks_a_repeating_timer) {
  uv_loop_t loop;
  uv_timer_t timer;
  cr_assert_eq(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, tick_cb, 10, 10);
  PS_LOOP_END(&loop);
}

/* Forgets a TCP handle it never used. */
Test(probe, leaks_an_idle_tcp_handle) {
  uv_loop_t loop;
  uv_tcp_t tcp;
  cr_assert_eq(uv_loop_init(&loop), 0);
  cr_assert_eq(uv_tcp_init(&loop, &tcp), 0);
  PS_LOOP_END(&loop);
}

/* Closes what it opened: passes. */
Test(probe, leaks_nothing) {
  uv_loop_t loop;
  uv_timer_t timer;
  cr_assert_eq(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, tick_cb, 10, 10);
  uv_close((uv_handle_t *)&timer, NULL);
  PS_LOOP_END(&loop);
}

/* Why the check is in the test body: criterion 2.4 reports this test as passing although its .fini
 * asserts something false. */
static void failing_fini(void) { cr_assert_eq(1, 0, "an assertion in .fini"); }

Test(probe, asserts_in_fini_only, .fini = failing_fini) {}
