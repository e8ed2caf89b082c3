#include "loop_fixture.h"

static void expired_cb(uv_timer_t *t) { *(bool *)t->data = true; }

bool ps_test_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t timeout_ms) {
  uv_timer_t timer;
  bool expired = false;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, expired_cb, timeout_ms, 0);
  while (!cond(arg) && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* completes the close: `timer` lives on this stack */
  return cond(arg);
}
