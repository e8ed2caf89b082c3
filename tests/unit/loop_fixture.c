#include "loop_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static void expired_cb(uv_timer_t *t) { *(bool *)t->data = true; }

/* PS_TEST_TIMEOUT_SCALE (a whole number, default 1) multiplies every bound of ps_test_run_until: the
 * valgrind test setup sets it, since memcheck runs code 20-50 times slower and a bound that is generous on a
 * busy machine is not under it. Bounds only end a wait that failed; they never make a test pass. */
uint64_t ps_test_timeout_scale(void) {
  const char *s = getenv("PS_TEST_TIMEOUT_SCALE");
  long v = s != NULL ? strtol(s, NULL, 10) : 1;
  return v >= 1 && v <= 100 ? (uint64_t)v : 1;
}

bool ps_test_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t timeout_ms) {
  timeout_ms *= ps_test_timeout_scale();
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

/* ---- ending a test's loop ------------------------------------------------------------------------- */

/* Runs the loop until nothing keeps it alive or timeout_ms passes. The bounding timer is unref'd, so it
 * neither keeps the loop alive nor counts in uv_loop_alive: only a handle or request of the test does,
 * and a leaked repeating timer stops the drain at the bound instead of hanging it. */
static void drain(uv_loop_t *loop, uint64_t timeout_ms) {
  uv_timer_t timer;
  bool expired = false;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, expired_cb, timeout_ms, 0);
  uv_unref((uv_handle_t *)&timer);
  while (uv_loop_alive(loop) && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* completes the close: `timer` lives on this stack */
}

struct leaks {
  int n;
  char *what;
  size_t len, used;
};

/* Appends to the description, which stays NUL-terminated and is cut (not overrun) when full. */
static void say(struct leaks *l, const char *s) {
  if (l->used + 1 >= l->len) return;
  int w = snprintf(l->what + l->used, l->len - l->used, "%s", s);
  if (w > 0) l->used += (size_t)w < l->len - l->used ? (size_t)w : l->len - l->used - 1;
}

/* Names each handle left open and closes it. The handle's memory belongs to whoever leaked it, so the
 * close has no callback: nothing is freed here, the handle only leaves the loop. */
static void leak_cb(uv_handle_t *h, void *arg) {
  struct leaks *l = arg;
  if (uv_is_closing(h)) return; /* its close is under way: not a leak */
  say(l, l->n++ == 0 ? "" : ", ");
  say(l, uv_handle_type_name(uv_handle_get_type(h)));
  if (uv_is_active(h)) say(l, " (active)");
  uv_close(h, NULL);
}

int ps_test_loop_end(uv_loop_t *loop, char *what, size_t len) {
  char found[PS_TEST_LOOP_WHAT_MAX] = "";
  struct leaks l = {.what = found, .len = sizeof found};
  drain(loop, PS_TEST_LOOP_DRAIN_MS);
  uv_walk(loop, leak_cb, &l);
  if (l.n > 0) drain(loop, PS_TEST_LOOP_DRAIN_MS); /* the closes above, and requests they cancel */
  int rc = uv_loop_close(loop);
  if (l.n > 0)
    snprintf(what, len, "%d handle%s left open: %s%s%s", l.n, l.n == 1 ? "" : "s", found,
             rc != 0 ? "; uv_loop_close: " : "", rc != 0 ? uv_strerror(rc) : "");
  else if (rc != 0)
    snprintf(what, len, "uv_loop_close: %s (a request is still pending)", uv_strerror(rc));
  else
    snprintf(what, len, "nothing left open");
  return l.n > 0 ? UV_EBUSY : rc;
}

/* ---- probe programs -------------------------------------------------------------------------------- */

int ps_test_run_probe(const char *program, const char *test, char *out, size_t len) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "env -u BXFI_MAP '%s' --filter='probe/%s' -j1 2>&1", program, test);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p, "popen %s", cmd);
  size_t n = fread(out, 1, len - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  cr_assert(WIFEXITED(st), "%s: status %d\n%s", test, st, out);
  return WEXITSTATUS(st);
}
