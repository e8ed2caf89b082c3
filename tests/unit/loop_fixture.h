/* Running a test's loop until something happens: no sleeps, a timer bounds the wait. */
#ifndef PS_LOOP_FIXTURE_H
#define PS_LOOP_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Runs `loop` one turn at a time until cond(arg) holds or timeout_ms passes; returns cond(arg). The
 * bounding timer is closed before returning, so it never shows up in uv_loop_close. */
bool ps_test_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t timeout_ms);

#endif
