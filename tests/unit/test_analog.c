/* The analog model (src/forecast/analog.h): its codes, what it reads, and what it answers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "analog_library.h"
#include "forecast/analog.h"

#define MAX_STEPS 30000

static int16_t codes[MAX_STEPS];

static uint64_t rng = 1;
static double unif(void) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* x[0 .. n-1] as the engine would hold them (step k at code[k]), learned step by step. */
static struct ps_analog_ring fill(struct ps_analog *a, const double *x, size_t n) {
  cr_assert_leq(n, MAX_STEPS);
  ps_analog_init(a);
  struct ps_analog_ring r = {.code = codes, .cap = n, .newest = -1, .first = 0};
  for (size_t k = 0; k < n; k++) {
    codes[k] = ps_analog_encode(a, x[k]);
    r.newest = (int64_t)k;
    ps_analog_learn(a, &r, (int64_t)k, 1);
  }
  return r;
}

Test(analog, codes_are_logs_relative_to_the_first_load_above_zero) {
  struct ps_analog a;
  ps_analog_init(&a);
  cr_assert_eq(ps_analog_encode(&a, NAN), PS_ANALOG_MISSING);
  cr_assert_eq(ps_analog_encode(&a, 0), PS_ANALOG_MISSING, "no scale yet: a 0 has no log");
  cr_assert_eq(ps_analog_encode(&a, -5), PS_ANALOG_MISSING);
  cr_assert_eq(ps_analog_encode(&a, 100), 0);
  /* one e-fold of (load + eps) is PS_ANALOG_UNIT codes */
  double eps = PS_ANALOG_EPS * 100;
  cr_assert_eq(ps_analog_encode(&a, (100 + eps) * exp(1) - eps), (int16_t)PS_ANALOG_UNIT);
  cr_assert_eq(ps_analog_encode(&a, 100), 0, "the scale stays what the first load set");
  int16_t zero = ps_analog_encode(&a, 0);
  cr_assert_eq(zero, (int16_t)lrint(log(eps / (100 + eps)) * PS_ANALOG_UNIT));
  cr_assert_eq(ps_analog_encode(&a, -3), zero, "a negative load codes as 0");
  cr_assert_eq(ps_analog_encode(&a, 1e300), INT16_MAX, "clamped");
  cr_assert_neq(ps_analog_encode(&a, 1e-300), PS_ANALOG_MISSING, "clamped above the missing code");
}

/* A sawtooth of 10 steps: from the same point of a tooth, the peak of the next 2 steps is always the same
 * multiple of now; the model finds it among the rows before (no period given: the last rows). */
Test(analog, answers_what_followed_the_same_shape) {
  static double x[3000];
  for (size_t k = 0; k < 3000; k++) x[k] = 100 + 10 * (double)(k % 10);
  struct ps_analog a;
  for (size_t o = 2990; o < 3000; o++) {
    struct ps_analog_ring r = fill(&a, x, o + 1);
    double f = ps_analog_forecast(&a, &r, (int64_t)o, 2, 0, x[o]);
    double want = fmax(100 + 10 * (double)((o + 1) % 10), 100 + 10 * (double)((o + 2) % 10));
    cr_assert(fabs(f - want) <= 0.002 * want, "at %zu: %g, the next peak %g", o, f, want);
  }
}

/* The forecast made at step o reads nothing after o: values added after it change nothing, and a row
 * whose window had not ended by o (s + h > o) is not in the library. */
Test(analog, reads_nothing_after_its_origin) {
  static double x[4000], y[4000];
  rng = 3;
  for (size_t k = 0; k < 4000; k++) x[k] = y[k] = 50 + 40 * unif();
  size_t o = 3000;
  for (size_t k = o + 1; k < 4000; k++) y[k] = 1000 * unif();
  struct ps_analog a, b;
  struct ps_analog_ring rx = fill(&a, x, o + 1);
  double fx = ps_analog_forecast(&a, &rx, (int64_t)o, 3, 0, x[o]);
  static int16_t keep[4000];
  for (size_t k = 0; k <= o; k++) keep[k] = codes[k];
  struct ps_analog_ring ry = fill(&b, y, 4000);
  for (size_t k = 0; k <= o; k++) cr_assert_eq(codes[k], keep[k]);
  /* b learned the spreads of rows after o too: give it a's to compare the reading alone */
  b = a;
  cr_assert(isfinite(fx));
  cr_assert_eq(ps_analog_forecast(&b, &ry, (int64_t)o, 3, 0, x[o]), fx);
}

Test(analog, cannot_answer_without_what_it_needs) {
  static double x[3000];
  rng = 7;
  for (size_t k = 0; k < 3000; k++) x[k] = 50 + 40 * unif();
  struct ps_analog a;
  struct ps_analog_ring r = fill(&a, x, 3000);
  cr_assert(isfinite(ps_analog_forecast(&a, &r, 2999, 2, 0, x[2999])));
  cr_assert(isnan(ps_analog_forecast(&a, &r, 2999, 0, 0, x[2999])), "no window");
  cr_assert(isnan(ps_analog_forecast(&a, &r, 2999, PS_ANALOG_MAX_H + 1, 0, x[2999])), "beyond its horizon");
  cr_assert(isnan(ps_analog_forecast(&a, &r, 2999, 2, 0, NAN)));
  /* fewer than K complete rows: the first K + lags + h steps hold too few */
  struct ps_analog_ring s = fill(&a, x, PS_ANALOG_K + PS_ANALOG_LAGS + 1);
  cr_assert(isnan(ps_analog_forecast(&a, &s, s.newest, 2, 0, x[s.newest])));
  /* a missing input at the origin */
  x[2995] = NAN;
  r = fill(&a, x, 3000);
  cr_assert(isnan(ps_analog_forecast(&a, &r, 2999, 2, 0, x[2999])));
  cr_assert(isfinite(ps_analog_forecast(&a, &r, 2990, 2, 0, x[2990])), "rows with a gap are left out");
}

/* With a period, the library holds the same hours of the last periods: a surge that follows a ramp only
 * at one phase of the period, 3,000 steps apart (farther back than the last PS_ANALOG_ROWS rows), is
 * forecast from the periods before; without the period it is not. */
Test(analog, the_library_holds_the_same_phase_of_past_periods) {
  enum { P = 3000, PH = 1500, N = 7 * P + PH + 1 };
  static double x[N];
  rng = 11;
  for (size_t k = 0; k < N; k++) {
    size_t ph = k % P;
    x[k] = 100 + 5 * unif();
    if (ph >= PH - 11 && ph <= PH) x[k] = 100 + 10 * (double)(ph - (PH - 11)); /* a ramp to 210 */
    if (ph == PH + 1 || ph == PH + 2) x[k] = 400;                              /* then a surge */
  }
  cr_assert_lt((size_t)PS_ANALOG_ROWS + PS_ANALOG_LAGS, (size_t)P);
  struct ps_analog a;
  struct ps_analog_ring r = fill(&a, x, N);
  int64_t o = N - 1; /* the end of the ramp, in the 8th period */
  double with = ps_analog_forecast(&a, &r, o, 2, P, x[o]);
  double without = ps_analog_forecast(&a, &r, o, 2, 0, x[o]);
  cr_assert(fabs(with - 400) < 4, "with the period: %g", with);
  cr_assert_lt(without, 300, "without it: %g", without);
}

/* The engine keeps only the codes its library reads (ps_analog_layout): a ring of the newest steps and a
 * window around the same phase of each past period. A view of those alone holds every code that the
 * library of an origin up to BACK steps behind the newest (the engine's learned step) reads, as analog.h
 * describes it, and answers what a ring of every step answers, to the bit, for every h the model
 * forecasts; a view whose history starts at `first` reads the steps before it as missing (its windows may
 * still hold them). */
static int16_t recent[MAX_STEPS], win[MAX_STEPS], cut[MAX_STEPS];

static struct ps_analog_ring windowed(const struct ps_analog_layout *l, size_t period, int64_t newest,
                                      size_t back, const int16_t *all) {
  size_t rcap = l->recent + back, wcap = l->before + back + l->after + 1;
  for (int64_t t = newest - (int64_t)rcap + 1; t <= newest; t++) recent[t % (int64_t)rcap] = all[t];
  for (size_t d = 1; d <= l->windows; d++) {
    int64_t hi = newest + (int64_t)l->after - (int64_t)(d * period);
    for (int64_t t = hi - (int64_t)wcap + 1; t <= hi; t++)
      win[(d - 1) * wcap + (size_t)(t % (int64_t)wcap)] = all[t];
  }
  return (struct ps_analog_ring){.code = recent,
                                 .cap = rcap,
                                 .newest = newest,
                                 .first = 0,
                                 .win = win,
                                 .windows = l->windows,
                                 .wcap = wcap,
                                 .after = l->after,
                                 .period = period};
}

Test(analog, a_view_of_the_layout_answers_as_a_ring_of_every_step) {
  enum { P = 400, N = 7 * P + 300, BACK = 3 };
  static double x[N];
  rng = 5;
  for (size_t k = 0; k < N; k++) {
    x[k] = 200 + 80 * sin(2 * M_PI * (double)k / P) + 30 * unif() + (k % P == 123 ? 150 : 0);
    if (k % 997 == 0) x[k] = NAN;
  }
  struct ps_analog a;
  struct ps_analog_ring full = fill(&a, x, N);
  const size_t hs[] = {1, 4, PS_ANALOG_MAX_H};
  for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
    int64_t h = (int64_t)hs[i];
    struct ps_analog_layout l;
    ps_analog_layout(P, hs[i], &l);
    cr_assert_eq(l.windows, PS_ANALOG_PERIODS);
    struct ps_analog_ring v = windowed(&l, P, N - 1, BACK, codes);
    size_t read = 0;
    for (int64_t t = 0; t < N; t++) {
      if (!ps_test_library_reads(N - 1 - BACK, N - 1, h, P, t)) continue;
      cr_assert_eq(ps_analog_code_at(&v, t), codes[t], "h %lld: step %lld", (long long)h, (long long)t);
      cr_assert_eq(ps_analog_code_at(&full, t), codes[t]);
      read++;
    }
    cr_assert_eq(read, (size_t)(PS_ANALOG_RECENT + h + PS_ANALOG_LAGS + BACK +
                                PS_ANALOG_PERIODS * (2 * PS_ANALOG_WIDTH + PS_ANALOG_LAGS + h + 1 + BACK)));
    for (int64_t o = N - 1 - BACK; o < N; o++) {
      double want = ps_analog_ratio(&a, &full, o, hs[i], P), got = ps_analog_ratio(&a, &v, o, hs[i], P);
      cr_assert(isfinite(want), "h %lld origin %lld", (long long)h, (long long)o);
      cr_assert_eq(got, want, "h %lld origin %lld: %g, every step %g", (long long)h, (long long)o, got, want);
    }
    /* the history from 5 periods back: the 6th period's rows are gone, though the 6th window holds them */
    int64_t first = N - 1 - 5 * P;
    for (int64_t t = 0; t < N; t++) cut[t] = t < first ? PS_ANALOG_MISSING : codes[t];
    struct ps_analog_ring fc = full;
    fc.code = cut;
    v.first = first;
    for (int64_t t = 0; t < first; t++) cr_assert_eq(ps_analog_code_at(&v, t), PS_ANALOG_MISSING);
    cr_assert_eq(ps_analog_code_at(&v, first), codes[first]);
    double want = ps_analog_ratio(&a, &fc, N - 1, hs[i], P), got = ps_analog_ratio(&a, &v, N - 1, hs[i], P);
    cr_assert_eq(got, want, "h %lld, from step %lld: %g, every step %g", (long long)h, (long long)first, got,
                 want);
  }
  /* without a period, or beyond the model's horizon: the newest steps only */
  struct ps_analog_layout l;
  ps_analog_layout(0, 2, &l);
  cr_assert_eq(l.windows, 0);
  cr_assert_eq(l.recent, PS_ANALOG_ROWS + 2 + PS_ANALOG_LAGS);
  ps_analog_layout(P, PS_ANALOG_MAX_H + 1, &l);
  cr_assert_eq(l.windows, 0);
  cr_assert_eq(l.recent, PS_ANALOG_LAGS + 1);
}
