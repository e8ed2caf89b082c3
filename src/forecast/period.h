/* Season detection by autocorrelation: pure, no I/O, no globals. Internal to src/forecast. */
#ifndef PS_PERIOD_H
#define PS_PERIOD_H

#include <stddef.h>

/* The autocorrelation is computed on at most this many points: a longer history is averaged into
 * blocks first (one week at 1-minute steps becomes 1008 points of 10 minutes), then the peak found is
 * refined at full resolution. Bounds the cost at O(points^2 / 3 + n * block). */
#define PS_PERIOD_ACF_POINTS     1024
/* Shortest history searched: a period must repeat three times (2 <= period <= n / 3). */
#define PS_PERIOD_MIN_HISTORY    12
/* A season is called only when its autocorrelation peak is at least this high ... */
#define PS_PERIOD_MIN_ACF        0.2
/* ... exceeds PS_PERIOD_Z standard errors of a white-noise autocorrelation (1/sqrt(points)): the
 * largest of ~points/3 lags of white noise stays below ~3.5/sqrt(points) (Bartlett's bound) ... */
#define PS_PERIOD_Z              4.5
/* ... and rises this much above the lowest autocorrelation at a shorter lag, so that the slow decay of
 * a trend or of persistent noise is not taken for a season. */
#define PS_PERIOD_MIN_PROMINENCE 0.2
/* Among the peaks that pass, the shortest one within this fraction of the highest is the season (its
 * multiples correlate as well). */
#define PS_PERIOD_HARMONIC_RATIO 0.85

/* The full-resolution refinement scores a lag k by the mean autocorrelation at k, 2k and 3k (those within
 * two thirds of the history): a daily shape is broad, so the autocorrelation at k alone peaks anywhere
 * within half an hour of a day in noise (23.6 h was seen on a month of web traffic), while its multiples
 * drift 2 and 3 times as far from the true period. */
#define PS_PERIOD_MULTIPLES  3
/* A preferred period (the caller's calendar periods: an hour, a day, a week) replaces the one found when
 * it lies within PS_PERIOD_SNAP_TOL of it and scores at least PS_PERIOD_SNAP_RATIO of its score: real
 * loads follow the clock, and a day of 1,416 minutes would slide the season 24 minutes a day. A sine of
 * 1,400 minutes (3% off) scores 0.93 of itself at 1,440 and is left alone. */
#define PS_PERIOD_SNAP_TOL   0.05
#define PS_PERIOD_SNAP_RATIO 0.95

/* Finds the season of x[0..n) (oldest first, NaN = missing) in steps: 0 when there is none, else
 * 2 <= period <= min(n / 3, max_period). prefer[0..n_prefer) (may be NULL) are the preferred periods in
 * steps. *strength (may be NULL) gets the autocorrelation at that lag. Allocates scratch (freed before
 * return); 0 also when that fails. */
size_t ps_period_detect(const float *x, size_t n, size_t max_period, const size_t *prefer, size_t n_prefer,
                        double *strength);

#endif
