/* Running a test's loop until something happens: no sleeps, a timer bounds the wait. And ending a test's
 * loop the way libuv's own tests do: every test that uses a loop ends with PS_LOOP_END(&loop), which fails
 * the test when a handle was left open. */
#ifndef PS_LOOP_FIXTURE_H
#define PS_LOOP_FIXTURE_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Bound on running the loop dry at the end of a test. Closes and EOFs finish in a few turns; only a leak
 * (a repeating timer, a connection still reading) keeps the loop alive this long. */
#define PS_TEST_LOOP_DRAIN_MS 5000
/* Room for the description of what a test left on its loop. */
#define PS_TEST_LOOP_WHAT_MAX 512

/* Runs `loop` one turn at a time until cond(arg) holds or timeout_ms passes; returns cond(arg). The
 * bounding timer is closed before returning, so it never shows up in uv_loop_close. */
/* PS_TEST_TIMEOUT_SCALE (default 1; 10 under the valgrind setup): what ps_test_run_until multiplies its
 * bounds by, for a test whose own short timers must also stretch under memcheck. */
uint64_t ps_test_timeout_scale(void);
bool ps_test_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t timeout_ms);

/* Ends a test's loop: runs it dry (at most PS_TEST_LOOP_DRAIN_MS), names in `what` every handle still
 * open ("2 handles left open: timer (active), tcp"), closes them so the process still ends cleanly, and
 * closes the loop. Returns 0 when nothing was left open and uv_loop_close succeeded; otherwise UV_EBUSY
 * (handles were left open) or uv_loop_close's error, with `what` saying why. The loop is closed on return
 * unless uv_loop_close failed (a request still pending). */
int ps_test_loop_end(uv_loop_t *loop, char *what, size_t len);

/* The last statement of every test that uses a loop. It is an assertion in the test body, not in a
 * criterion .fini: criterion 2.4 ignores assertions that fail in .fini. */
#define PS_LOOP_END(loop)                                                                                    \
  do {                                                                                                       \
    char ps_loop_what_[PS_TEST_LOOP_WHAT_MAX];                                                               \
    int ps_loop_rc_ = ps_test_loop_end((loop), ps_loop_what_, sizeof ps_loop_what_);                         \
    cr_assert_eq(ps_loop_rc_, 0, "the test did not leave its loop clean: %s", ps_loop_what_);                \
  } while (0)

/* Runs one test ("probe/<test>") of a criterion program that fails on purpose (loop_fixture_probe.c,
 * leak_check_probe.c) and returns its exit status, its output (criterion's report) in out. BXFI_MAP is how
 * criterion tells the worker process it runs a test in that it is a worker: the probe must not inherit it,
 * or it takes itself for one of our workers and aborts. */
int ps_test_run_probe(const char *program, const char *test, char *out, size_t len);

#endif
