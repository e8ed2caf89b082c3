/* Forecast error measures (src/backtest/score.c) on arrays whose answers are worked out by hand. */
#include <criterion/criterion.h>
#include <math.h>

#include "backtest/score.h"

Test(score, window_max) {
  double x[] = {1, 5, 2, 4, 3}, t[5];
  size_t s[5];
  cr_assert_eq(ps_score_window_max(x, 5, 2, t, s), 3);
  cr_assert_eq(t[0], 5); /* max(x1, x2) */
  cr_assert_eq(t[1], 4); /* max(x2, x3) */
  cr_assert_eq(t[2], 4); /* max(x3, x4) */
  cr_assert_eq(ps_score_window_max(x, 5, 1, t, s), 4);
  cr_assert_eq(t[0], 5);
  cr_assert_eq(t[1], 2);
  cr_assert_eq(t[2], 4);
  cr_assert_eq(t[3], 3);
  cr_assert_eq(ps_score_window_max(x, 5, 0, t, s), 5);
  cr_assert_eq(t[3], 4);
  cr_assert_eq(ps_score_window_max(x, 5, 5, t, s), 0);
  cr_assert_eq(ps_score_window_max(x, 5, 4, t, s), 1);
  cr_assert_eq(t[0], 5);
}

/* A longer series against a naive O(n h) reference. */
Test(score, window_max_matches_naive) {
  enum { N = 500 };
  double x[N], t[N];
  size_t s[N];
  unsigned seed = 7;
  for (int i = 0; i < N; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (double)(seed >> 16 & 63);
  }
  for (size_t h = 0; h < 40; h++) {
    size_t k = ps_score_window_max(x, N, h, t, s);
    cr_assert_eq(k, N - h);
    for (size_t i = 0; i < k; i++) {
      double m = h == 0 ? x[i] : -1;
      for (size_t j = i + 1; j <= i + h; j++) m = x[j] > m ? x[j] : m;
      cr_assert_eq(t[i], m, "h=%zu i=%zu", h, i);
    }
  }
}

Test(score, mae_rmse_mase) {
  double f[] = {2, 2, 2}, naive[] = {1, 1, 1}, y[] = {3, 1, 2};
  struct ps_score s;
  ps_score_compute(f, naive, y, 3, &s);
  /* errors -1, 1, 0; naive errors 2, 0, 1 */
  cr_assert_eq(s.n, 3);
  cr_assert_float_eq(s.mae, 2.0 / 3, 1e-12);
  cr_assert_float_eq(s.rmse, sqrt(2.0 / 3), 1e-12);
  cr_assert_float_eq(s.mase, (2.0 / 3) / 1.0, 1e-12);
}

Test(score, nan_points_are_skipped_for_both) {
  double f[] = {2, NAN, 2, 5}, naive[] = {1, 1, 1, 5}, y[] = {3, 100, 1, NAN};
  struct ps_score s;
  ps_score_compute(f, naive, y, 4, &s);
  cr_assert_eq(s.n, 2);
  cr_assert_float_eq(s.mae, 1, 1e-12);
  cr_assert_float_eq(s.rmse, 1, 1e-12);
  cr_assert_float_eq(s.mase, 2.0 / 2.0, 1e-12); /* naive errors 2 and 0 */
}

Test(score, empty_and_perfect_naive_give_nan) {
  double f[] = {1, 2}, y[] = {1, 1};
  struct ps_score s;
  ps_score_compute(f, f, y, 0, &s);
  cr_assert_eq(s.n, 0);
  cr_assert(isnan(s.mae) && isnan(s.rmse) && isnan(s.mase));
  ps_score_compute(f, y, y, 2, &s);
  cr_assert_float_eq(s.mae, 0.5, 1e-12);
  cr_assert(isnan(s.mase), "a naive forecast without error leaves MASE undefined");
}
