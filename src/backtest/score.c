/* Forecast error measures: see score.h. */
#include "score.h"

#include <math.h>

size_t ps_score_window_max(const double *x, size_t n, size_t h, double *target, size_t *scratch) {
  if (n <= h) return 0;
  if (h == 0) {
    for (size_t i = 0; i < n; i++) target[i] = x[i];
    return n;
  }
  /* Sliding maximum of the window [i+1, i+h]: scratch[qh..qt) holds indices of decreasing values. */
  size_t qh = 0, qt = 0;
  for (size_t j = 1; j < n; j++) {
    while (qt > qh && !(x[scratch[qt - 1]] > x[j])) qt--;
    scratch[qt++] = j;
    if (j >= h) {
      size_t i = j - h; /* the window of i ends at j */
      while (scratch[qh] < i + 1) qh++;
      target[i] = x[scratch[qh]];
    }
  }
  return n - h;
}

void ps_score_compute(const double *forecast, const double *naive, const double *actual, size_t n,
                      struct ps_score *out) {
  double abs_sum = 0, sq_sum = 0, naive_sum = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(forecast[i]) || isnan(naive[i]) || isnan(actual[i])) continue;
    double e = forecast[i] - actual[i];
    abs_sum += fabs(e);
    sq_sum += e * e;
    naive_sum += fabs(naive[i] - actual[i]);
    k++;
  }
  out->n = k;
  out->mae = k > 0 ? abs_sum / (double)k : NAN;
  out->rmse = k > 0 ? sqrt(sq_sum / (double)k) : NAN;
  out->mase = k > 0 && naive_sum > 0 ? abs_sum / naive_sum : NAN;
}
