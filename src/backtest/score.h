/* Forecast error measures for `prescale backtest`: MAE, RMSE and MASE over the same points.
 *
 * MASE here is the ratio of the model's MAE to the MAE of the naive "last value" forecast at the same
 * horizon over the same points (Hyndman & Koehler 2006, scaled by the out-of-sample naive error rather
 * than the in-sample one): below 1 the model beats "it stays as it is now". */
#ifndef PS_SCORE_H
#define PS_SCORE_H

#include <stddef.h>

struct ps_score {
  size_t n;   /* points scored */
  double mae; /* NaN when n == 0 */
  double rmse;
  double mase; /* NaN when n == 0 or the naive forecast made no error */
};

/* target[i] = max(x[i+1 .. i+h]) for i + h < n (h == 0: x[i]); returns the number of targets, n - h
 * (0 when n <= h). O(n) whatever h (a monotonic deque in `scratch`, n indices). */
size_t ps_score_window_max(const double *x, size_t n, size_t h, double *target, size_t *scratch);

/* Scores forecast[i] and naive[i] against actual[i] for i < n; points where forecast, naive or actual
 * is NaN are skipped for both. */
void ps_score_compute(const double *forecast, const double *naive, const double *actual, size_t n,
                      struct ps_score *out);

#endif
