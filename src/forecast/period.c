/* Season detection by autocorrelation (Box & Jenkins; Hyndman & Athanasopoulos, "Forecasting:
 * Principles and Practice", 2.8). The series is detrended by least squares, the sample ACF is taken
 * on a downsampled copy when the history is long, and a peak counts as a season only when it is high,
 * significant against white noise and prominent against the decay of persistence (see period.h). */
#include "period.h"

#include <math.h>
#include <stdlib.h>

/* ---- preparation --------------------------------------------------------------------------------- */

/* Fills NaN holes of y[0..m) with the previous value (the first valid one at the start); false when
 * fewer than half the points are valid: too little to call anything periodic. */
static int impute(double *y, size_t m) {
  size_t valid = 0, first = m;
  for (size_t i = 0; i < m; i++)
    if (!isnan(y[i])) {
      valid++;
      if (first == m) first = i;
    }
  if (valid * 2 < m || first == m) return 0;
  for (size_t i = 0; i < first; i++) y[i] = y[first];
  for (size_t i = first + 1; i < m; i++)
    if (isnan(y[i])) y[i] = y[i - 1];
  return 1;
}

/* Removes the least-squares line; returns the residual sum of squares. */
static double detrend(double *y, size_t m) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < m; i++) {
    double x = (double)i;
    sx += x;
    sy += y[i];
    sxx += x * x;
    sxy += x * y[i];
  }
  double dm = (double)m, den = dm * sxx - sx * sx;
  double b = den != 0 ? (dm * sxy - sx * sy) / den : 0;
  double a = (sy - b * sx) / dm;
  double ss = 0;
  for (size_t i = 0; i < m; i++) {
    y[i] -= a + b * (double)i;
    ss += y[i] * y[i];
  }
  return ss;
}

/* The autocorrelation at lag k, with the unbiased (1/(m-k)) covariance so that long lags are not
 * penalised by the shorter overlap (a period of a third of the history has two thirds of it). */
static double acf(const double *y, size_t m, size_t k, double var) {
  double s = 0;
  for (size_t i = 0; i + k < m; i++) s += y[i] * y[i + k];
  return s / (double)(m - k) / var;
}

/* The refinement's score of lag k: the mean autocorrelation at its multiples (period.h). */
static double multi_acf(const double *z, size_t n, size_t k, double var) {
  double s = 0;
  int c = 0;
  for (size_t j = 1; j <= PS_PERIOD_MULTIPLES && (c == 0 || j * k * 3 <= n * 2); j++, c++)
    s += acf(z, n, j * k, var);
  return s / c;
}

/* ---- detection ----------------------------------------------------------------------------------- */

size_t ps_period_detect(const float *x, size_t n, size_t max_period, const size_t *prefer, size_t n_prefer,
                        double *strength) {
  if (strength != NULL) *strength = 0;
  if (n < PS_PERIOD_MIN_HISTORY) return 0;
  if (max_period > n / 3) max_period = n / 3;
  if (max_period < 2) return 0;

  /* Block means over d steps, aligned on the newest end (the oldest remainder is dropped). */
  size_t d = (n + PS_PERIOD_ACF_POINTS - 1) / PS_PERIOD_ACF_POINTS;
  size_t m = n / d, off = n - m * d;
  double *y = malloc(m * sizeof *y);
  double *r = malloc((m / 3 + 2) * sizeof *r);
  size_t found = 0;
  if (y == NULL || r == NULL) goto out;
  for (size_t j = 0; j < m; j++) {
    double s = 0;
    size_t c = 0;
    for (size_t i = 0; i < d; i++) {
      float v = x[off + j * d + i];
      if (!isnan(v)) {
        s += v;
        c++;
      }
    }
    y[j] = c > 0 ? s / (double)c : NAN;
  }
  if (!impute(y, m)) goto out;
  double ss = detrend(y, m);
  double var = ss / (double)m;
  /* A constant (or exactly linear) series has no season; the relative floor keeps rounding noise of a
   * large constant from looking like a signal. */
  double scale = 0;
  for (size_t j = 0; j < m; j++) scale += fabs(y[j]);
  if (!(var > 0) || !(ss > 1e-18 * (scale * scale + 1e-300))) goto out;

  size_t hi = max_period / d; /* longest lag searched at the downsampled resolution */
  if (hi > m / 3) hi = m / 3;
  size_t lo = 2; /* r[k-1] and r[k+1] are needed around each candidate */
  if (hi < lo) goto out;
  for (size_t k = 1; k <= hi + 1 && k < m; k++) r[k] = acf(y, m, k, var);
  if (hi + 1 >= m) r[hi + 1] = -1;

  double thr = PS_PERIOD_Z / sqrt((double)m);
  if (thr < PS_PERIOD_MIN_ACF) thr = PS_PERIOD_MIN_ACF;
  /* The shortest qualifying peak within the harmonic ratio of the highest. */
  double best = -1, low = r[1];
  for (size_t k = lo; k <= hi; k++) {
    if (r[k - 1] < low) low = r[k - 1];
    int peak = r[k] > r[k - 1] && r[k] >= r[k + 1];
    if (peak && r[k] >= thr && r[k] - low >= PS_PERIOD_MIN_PROMINENCE && r[k] > best) best = r[k];
  }
  if (best < 0) goto out;
  size_t pk = 0;
  low = r[1];
  for (size_t k = lo; k <= hi && pk == 0; k++) {
    if (r[k - 1] < low) low = r[k - 1];
    int peak = r[k] > r[k - 1] && r[k] >= r[k + 1];
    if (peak && r[k] >= thr && r[k] - low >= PS_PERIOD_MIN_PROMINENCE &&
        r[k] >= PS_PERIOD_HARMONIC_RATIO * best)
      pk = k;
  }
  found = pk * d;
  double str = r[pk];

  /* Refine at full resolution within one block either side of the coarse peak (the whole peak when
   * there are no blocks), scoring each lag with its multiples, then prefer a calendar period. */
  double *z = malloc(n * sizeof *z);
  if (z == NULL) {
    found = 0;
    goto out;
  }
  for (size_t i = 0; i < n; i++) z[i] = x[i];
  double zv = impute(z, n) ? detrend(z, n) / (double)n : 0;
  if (zv > 0) {
    size_t a = (pk - 1) * d, b = (pk + 1) * d;
    if (a < 2) a = 2;
    if (b > max_period) b = max_period;
    double zb = -2;
    for (size_t k = a; k <= b; k++) {
      double c = multi_acf(z, n, k, zv);
      if (c > zb) {
        zb = c;
        found = k;
      }
    }
    for (size_t i = 0; i < n_prefer; i++) {
      size_t p = prefer[i];
      if (p < 2 || p > max_period || p == found ||
          fabs((double)p - (double)found) > PS_PERIOD_SNAP_TOL * found)
        continue;
      if (multi_acf(z, n, p, zv) >= PS_PERIOD_SNAP_RATIO * zb) {
        found = p;
        break;
      }
    }
    str = acf(z, n, found, zv);
  }
  free(z);
  if (strength != NULL) *strength = str;

out:
  free(y);
  free(r);
  return found;
}
