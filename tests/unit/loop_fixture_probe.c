/* Criterion tests that test_loop_fixture.c runs as a separate program and expects to FAIL: a test that
 * leaks a handle must fail through PS_LOOP_END itself, with its own assertion and message. Not a suite of
 * its own (meson builds it but does not register it as a test). */
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
