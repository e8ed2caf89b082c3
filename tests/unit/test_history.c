#include <criterion/criterion.h>
#include <math.h>
#include <uv.h>

#include "forecast/history.h"

#define STEP 15000

static struct ps_history h;

static void setup(void) { cr_assert_eq(ps_history_init(&h, 8, STEP), 0); }
static void teardown(void) { ps_history_free(&h); }

TestSuite(history, .init = setup, .fini = teardown);

Test(history, init_rejects_bad_arguments) {
  struct ps_history x;
  cr_assert_eq(ps_history_init(&x, 0, STEP), UV_EINVAL);
  cr_assert_eq(ps_history_init(&x, 4, 0), UV_EINVAL);
  cr_assert_eq(ps_history_init(&x, 4, -5), UV_EINVAL);
  ps_history_free(&x); /* safe after a failed init */
}

Test(history, empty) {
  cr_assert_eq(h.len, 0);
  cr_assert(isnan(ps_history_at(&h, 0)));
  double v;
  int64_t t;
  cr_assert_eq(ps_history_latest(&h, &v, &t), UV_ENOENT);
}

Test(history, put_and_at_round_down_to_step) {
  cr_assert_eq(ps_history_put(&h, 10 * STEP + 7, 1.5), 0);
  cr_assert_eq(h.last_ms, 10 * STEP);
  cr_assert_eq(ps_history_at(&h, 10 * STEP), 1.5);
  cr_assert_eq(ps_history_at(&h, 10 * STEP + STEP - 1), 1.5);
  cr_assert(isnan(ps_history_at(&h, 11 * STEP)));
  cr_assert(isnan(ps_history_at(&h, 9 * STEP)));
  cr_assert_eq(ps_history_first_ms(&h), 10 * STEP);
}

Test(history, sequential_and_wrap_around) {
  for (int i = 0; i < 20; i++) cr_assert_eq(ps_history_put(&h, (int64_t)i * STEP, i), 0);
  cr_assert_eq(h.len, 8);
  cr_assert_eq(ps_history_first_ms(&h), 12 * STEP);
  for (int i = 0; i < 12; i++) cr_assert(isnan(ps_history_at(&h, (int64_t)i * STEP)), "i=%d", i);
  for (int i = 12; i < 20; i++) cr_assert_eq(ps_history_at(&h, (int64_t)i * STEP), i);
  double v;
  int64_t t;
  cr_assert_eq(ps_history_latest(&h, &v, &t), 0);
  cr_assert_eq(v, 19);
  cr_assert_eq(t, 19 * STEP);
}

Test(history, gap_is_filled_with_nan) {
  ps_history_put(&h, 0, 1);
  ps_history_put(&h, 4 * STEP, 5);
  cr_assert_eq(h.len, 5);
  cr_assert_eq(ps_history_at(&h, 0), 1);
  for (int i = 1; i < 4; i++) cr_assert(isnan(ps_history_at(&h, (int64_t)i * STEP)));
  cr_assert_eq(ps_history_at(&h, 4 * STEP), 5);
}

Test(history, gap_longer_than_ring_clears_it) {
  for (int i = 0; i < 8; i++) ps_history_put(&h, (int64_t)i * STEP, 7);
  cr_assert_eq(ps_history_put(&h, 100 * STEP, 3), 0);
  cr_assert_eq(h.len, 8);
  for (int i = 93; i < 100; i++) cr_assert(isnan(ps_history_at(&h, (int64_t)i * STEP)));
  cr_assert_eq(ps_history_at(&h, 100 * STEP), 3);
  cr_assert(isnan(ps_history_at(&h, 7 * STEP)));
}

Test(history, overwrite_existing_slot) {
  for (int i = 0; i < 5; i++) ps_history_put(&h, (int64_t)i * STEP, i);
  cr_assert_eq(ps_history_put(&h, 4 * STEP + 100, 40), 0); /* Prometheus revises the newest point */
  cr_assert_eq(ps_history_put(&h, 2 * STEP, 20), 0);
  cr_assert_eq(ps_history_at(&h, 4 * STEP), 40);
  cr_assert_eq(ps_history_at(&h, 2 * STEP), 20);
  cr_assert_eq(h.last_ms, 4 * STEP);
  cr_assert_eq(h.len, 5);
}

Test(history, too_old_is_erange) {
  for (int i = 0; i < 10; i++) ps_history_put(&h, (int64_t)i * STEP, i);
  cr_assert_eq(ps_history_first_ms(&h), 2 * STEP);
  cr_assert_eq(ps_history_put(&h, 1 * STEP + 5, 99), UV_ERANGE);
  cr_assert_eq(ps_history_put(&h, -100 * STEP, 99), UV_ERANGE);
  cr_assert(isnan(ps_history_at(&h, 1 * STEP)));
  cr_assert_eq(ps_history_put(&h, 2 * STEP, 22), 0); /* the oldest slot held is still writable */
  cr_assert_eq(ps_history_at(&h, 2 * STEP), 22);
}

Test(history, grows_backward_while_not_full) {
  ps_history_put(&h, 10 * STEP, 10);
  cr_assert_eq(ps_history_put(&h, 7 * STEP, 7), 0);
  cr_assert_eq(h.len, 4);
  cr_assert_eq(ps_history_first_ms(&h), 7 * STEP);
  cr_assert(isnan(ps_history_at(&h, 8 * STEP)));
  cr_assert_eq(ps_history_at(&h, 7 * STEP), 7);
  cr_assert_eq(ps_history_put(&h, 2 * STEP, 2), UV_ERANGE); /* 8 steps back: beyond cap */
  cr_assert_eq(ps_history_put(&h, 3 * STEP, 3), 0);
  cr_assert_eq(h.len, 8);
}

Test(history, nan_and_inf_stored_as_nan) {
  ps_history_put(&h, 0, 1);
  ps_history_put(&h, STEP, INFINITY);
  ps_history_put(&h, 2 * STEP, -INFINITY);
  ps_history_put(&h, 3 * STEP, NAN);
  for (int i = 1; i < 4; i++) cr_assert(isnan(ps_history_at(&h, (int64_t)i * STEP)));
  double v;
  int64_t t;
  cr_assert_eq(ps_history_latest(&h, &v, &t), 0);
  cr_assert_eq(v, 1);
  cr_assert_eq(t, 0);
}

Test(history, negative_times_round_down) {
  cr_assert_eq(ps_history_put(&h, -1, 4), 0);
  cr_assert_eq(h.last_ms, -STEP);
  cr_assert_eq(ps_history_at(&h, -STEP), 4);
  cr_assert_eq(ps_history_at(&h, -1), 4);
  cr_assert(isnan(ps_history_at(&h, 0)));
}

Test(history, extreme_times_do_not_overflow) {
  /* INT64_MIN rounded down to a step is not representable */
  cr_assert_eq(ps_history_put(&h, INT64_MIN, 1), UV_ERANGE);
  cr_assert_eq(ps_history_put(&h, INT64_MIN / 2, 1), 0);
  cr_assert_eq(ps_history_put(&h, INT64_MAX, 2), 0); /* a jump of more than INT64_MAX ms */
  cr_assert_eq(ps_history_at(&h, INT64_MAX), 2);
  cr_assert(isnan(ps_history_at(&h, INT64_MIN / 2)));
  cr_assert_eq(ps_history_put(&h, INT64_MIN / 2, 1), UV_ERANGE);
  cr_assert_eq(h.len, 8);
  cr_assert(ps_history_first_ms(&h) < INT64_MAX);
}

Test(history, all_nan_latest_is_enoent) {
  ps_history_put(&h, 0, NAN);
  ps_history_put(&h, STEP, NAN);
  cr_assert_eq(ps_history_latest(&h, NULL, NULL), UV_ENOENT);
}
