/* The analog model: the window's peak from the most similar past rows of a bounded library (analog.h). */
#include "analog.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "ring_slot.h"

static size_t umin(size_t a, size_t b) { return a < b ? a : b; }

/* Steps s .. of a ring of m codes that holds step t at ring[t mod m], up to step hi >= s: the first's
 * address, and in *run how many follow it contiguously (1 .. n). */
static const int16_t *slice(const int16_t *ring, size_t m, int64_t s, int64_t hi, size_t n, size_t *run) {
  size_t j = ps_ring_slot(s, m);
  *run = umin(umin(n, (size_t)(hi - s) + 1), m - j);
  return ring + j;
}

/* The codes of steps s .. s + n - 1 (n > 0) that one contiguous run of the view holds: the first's address
 * and the run's length in *run (1 .. n); or NULL and the length of the run of steps it does not hold. */
static const int16_t *run_at(const struct ps_analog_ring *r, int64_t s, size_t n, size_t *run) {
  if (s > r->newest) {
    *run = n;
    return NULL;
  }
  if (s < r->first) {
    *run = umin(n, (size_t)(r->first - s));
    return NULL;
  }
  int64_t oldest = r->newest - (int64_t)r->cap + 1; /* the newest steps' ring */
  if (s >= oldest) return slice(r->code, r->cap, s, r->newest, n, run);
  size_t until = (size_t)(oldest - s);
  if (r->windows > 0) {
    /* The nearest window whose newest step hi is s or later: hi = top - d x period. */
    int64_t top = r->newest + (int64_t)r->after, p = (int64_t)r->period;
    int64_t d = (top - s) / p, w = d < (int64_t)r->windows ? d : (int64_t)r->windows;
    if (w >= 1) {
      int64_t hi = top - w * p, lo = hi - (int64_t)r->wcap + 1;
      if (s >= lo) /* (then d == w: a window is no longer than a period) */
        return slice(r->win + (size_t)(w - 1) * r->wcap, r->wcap, s, hi, n, run);
      until = umin(until, (size_t)(lo - s)); /* held again from window w's oldest */
    }
  }
  *run = umin(n, until);
  return NULL;
}

int16_t ps_analog_code_at(const struct ps_analog_ring *r, int64_t t) {
  size_t run;
  const int16_t *c = run_at(r, t, 1, &run);
  return c != NULL ? *c : PS_ANALOG_MISSING;
}

/* Steps lo .. lo + n - 1 as floats, a missing one as NaN (which then poisons every sum it enters): the
 * view's contiguous runs, each converted without a division per step. */
static void load(const struct ps_analog_ring *r, int64_t lo, size_t n, float *x) {
  for (size_t i = 0; i < n;) {
    size_t run;
    const int16_t *c = run_at(r, lo + (int64_t)i, n - i, &run);
    float *y = x + i;
    if (c == NULL)
      for (size_t m = 0; m < run; m++) y[m] = NAN;
    else /* a plain loop the compiler vectorizes */
      for (size_t m = 0; m < run; m++) y[m] = c[m] == PS_ANALOG_MISSING ? NAN : (float)c[m];
    i += run;
  }
}

/* Row s's inputs from p = the codes of steps s - PS_ANALOG_LAGS .. s (p[PS_ANALOG_LAGS] is step s): the
 * lags relative to now, now relative to the mean of the last 5, that mean. Finite unless one is missing. */
static void inputs(const float *p, float *in) {
  const float *s = p + PS_ANALOG_LAGS;
  float c = s[0], m5 = (s[0] + s[-1] + s[-2] + s[-3] + s[-4]) * 0.2f;
  for (int j = 1; j <= PS_ANALOG_LAGS; j++) in[j - 1] = s[-j] - c;
  in[PS_ANALOG_LAGS] = c - m5;
  in[PS_ANALOG_LAGS + 1] = m5;
}

void ps_analog_init(struct ps_analog *a) { memset(a, 0, sizeof *a); }

int16_t ps_analog_encode(struct ps_analog *a, double v) {
  if (!(v == v)) return PS_ANALOG_MISSING;
  double y = v > 0 ? v : 0;
  if (!a->has_ref) { /* the first load above 0 sets the scale: a code depends on the data only */
    if (!(y > 0)) return PS_ANALOG_MISSING;
    a->scale = y;
    a->ref = (double)logf((float)(y + PS_ANALOG_EPS * a->scale));
    a->has_ref = 1;
  }
  /* logf: a code is 1/1024 of an e-fold, and float's log is within 1e-5 of it up to MAX_VALUE, at half
   * the cost of a double's (a put of a first load's week pays it 10,080 times) */
  double c = ((double)logf((float)(y + PS_ANALOG_EPS * a->scale)) - a->ref) * PS_ANALOG_UNIT;
  if (!(c > -INT16_MAX)) return -INT16_MAX;
  if (c > INT16_MAX) return INT16_MAX;
  return (int16_t)lrint(c);
}

void ps_analog_learn(struct ps_analog *a, const struct ps_analog_ring *r, int64_t t, uint32_t rows) {
  float p[PS_ANALOG_LAGS + 1], in[PS_ANALOG_INPUTS];
  load(r, t - PS_ANALOG_LAGS, PS_ANALOG_LAGS + 1, p);
  inputs(p, in);
  for (int j = 0; j < PS_ANALOG_INPUTS; j++)
    if (!(in[j] == in[j])) return;
  a->n += rows;
  double alpha = a->n < PS_ANALOG_MEMORY ? rows / a->n : (double)rows / PS_ANALOG_MEMORY;
  for (int j = 0; j < PS_ANALOG_INPUTS; j++) { /* exponentially weighted mean and variance (West 1979) */
    double d = in[j] - a->mean[j];
    a->mean[j] += alpha * d;
    a->var[j] = (1 - alpha) * (a->var[j] + alpha * d * d);
  }
  if (a->n < PS_ANALOG_MIN_ROWS || (a->epoch > 0 && (a->since += rows) < PS_ANALOG_REWEIGH)) return;
  a->since = 0;
  for (int j = 0; j < PS_ANALOG_INPUTS; j++) /* at least one code unit: 0.1 % of the load */
    a->w[j] = (float)(1 / (a->var[j] > 1 ? a->var[j] : 1));
  a->epoch++;
}

/* The PS_ANALOG_K nearest rows so far: a max-heap on the distance (the farthest of them at the top), which
 * a row must beat to enter. */
struct nearest {
  float d[PS_ANALOG_K];
  int32_t target[PS_ANALOG_K];
  size_t n;
};

static void nearest_add(struct nearest *h, float d, int32_t target) {
  size_t i;
  if (h->n < PS_ANALOG_K) { /* sift up */
    for (i = h->n++; i > 0 && h->d[(i - 1) / 2] < d; i = (i - 1) / 2) {
      h->d[i] = h->d[(i - 1) / 2];
      h->target[i] = h->target[(i - 1) / 2];
    }
  } else { /* replace the top, sift down */
    for (i = 0;;) {
      size_t c = 2 * i + 1;
      if (c >= PS_ANALOG_K) break;
      if (c + 1 < PS_ANALOG_K && h->d[c + 1] > h->d[c]) c++;
      if (!(h->d[c] > d)) break;
      h->d[i] = h->d[c];
      h->target[i] = h->target[c];
      i = c;
    }
  }
  h->d[i] = d;
  h->target[i] = target;
}

/* The median of the K nearest's targets, each weighing 1 / (its distance + PS_ANALOG_NEAR x the K-th's):
 * the nearest count most, and no single one (a distance of 0: the same moment seen again) counts alone. */
static double weighted_median(const struct nearest *h) {
  int32_t t[PS_ANALOG_K];
  double w[PS_ANALOG_K], total = 0, floor = PS_ANALOG_NEAR * h->d[0];
  for (size_t i = 0; i < PS_ANALOG_K; i++) { /* sorted by target */
    int32_t v = h->target[i];
    double wv = 1 / (h->d[i] + floor + FLT_MIN);
    size_t j = i;
    for (; j > 0 && t[j - 1] > v; j--) {
      t[j] = t[j - 1];
      w[j] = w[j - 1];
    }
    t[j] = v;
    w[j] = wv;
    total += wv;
  }
  double acc = 0;
  for (size_t i = 0; i < PS_ANALOG_K; i++) {
    acc += w[i];
    if (acc >= total / 2) return t[i];
  }
  return t[PS_ANALOG_K - 1];
}

/* The library's rows of one forecast: their distances to now (NaN: a row with a missing input or target)
 * and their targets, in codes. */
struct rows {
  float d[PS_ANALOG_ROWS];
  int32_t t[PS_ANALOG_ROWS];
  size_t n;
};

/* Rows lo .. lo + n - 1 (n <= PS_ANALOG_BLOCK) against the query q with weights w, appended to out. The
 * distance loop runs over a whole block (rows past n read NaN and are not appended). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void
scan(const struct ps_analog_ring *r, int64_t lo, size_t n, size_t h, const float *q, const float *w,
     struct rows *out) {
  float x[PS_ANALOG_LAGS + PS_ANALOG_BLOCK + PS_ANALOG_MAX_H], dist[PS_ANALOG_BLOCK];
  size_t span = PS_ANALOG_LAGS + n + h;
  load(r, lo - PS_ANALOG_LAGS, span, x);
  for (size_t i = span; i < sizeof x / sizeof *x; i++) x[i] = NAN;
  for (size_t i = 0; i < PS_ANALOG_BLOCK; i++) {
    const float *s = x + PS_ANALOG_LAGS + i;
    float c = s[0], m5 = (s[0] + s[-1] + s[-2] + s[-3] + s[-4]) * 0.2f, d = 0;
#pragma GCC unroll 11
    for (int j = 1; j <= PS_ANALOG_LAGS; j++) {
      float u = s[-j] - c - q[j - 1];
      d += w[j - 1] * u * u;
    }
    float u = c - m5 - q[PS_ANALOG_LAGS], g = m5 - q[PS_ANALOG_LAGS + 1];
    dist[i] = d + w[PS_ANALOG_LAGS] * u * u + w[PS_ANALOG_LAGS + 1] * g * g;
  }
  float *d = out->d + out->n;
  int32_t *t = out->t + out->n;
  for (size_t i = 0; i < n; i++) { /* the target: the window's peak over now, missing steps left out */
    const float *s = x + PS_ANALOG_LAGS + i;
    float peak = -INFINITY;
    for (size_t k = 1; k <= h; k++) peak = s[k] > peak ? s[k] : peak;
    float up = peak - s[0]; /* NaN when now is missing (then so is the distance) */
    int ok = peak > -INFINITY && up == up;
    d[i] = ok ? dist[i] : NAN;
    t[i] = ok ? (int32_t)up : 0;
  }
  out->n += n;
}

/* The K nearest of the rows. A heap over every row would take most rows in (the library's rows come in
 * runs of consecutive steps, each nearer than the last), so a threshold is drawn first: the
 * PS_ANALOG_SAMPLE_RANK-th smallest distance among one row in PS_ANALOG_SAMPLE, below which about twice K
 * rows lie (Floyd & Rivest 1975); only those enter the heap. When fewer than K do, every row does. */
#define PS_ANALOG_SAMPLE      8
#define PS_ANALOG_SAMPLE_RANK (2 * PS_ANALOG_K / PS_ANALOG_SAMPLE + 1)
static void nearest_of(const struct rows *rw, struct nearest *best) {
  float low[PS_ANALOG_SAMPLE_RANK] = {0}; /* the smallest sampled distances, ascending */
  size_t nl = 0;
  for (size_t i = 0; i < rw->n; i += PS_ANALOG_SAMPLE) {
    float d = rw->d[i];
    if (!(d == d) || (nl == PS_ANALOG_SAMPLE_RANK && !(d < low[nl - 1]))) continue;
    size_t j = nl < PS_ANALOG_SAMPLE_RANK ? nl++ : nl - 1;
    for (; j > 0 && low[j - 1] > d; j--) low[j] = low[j - 1];
    low[j] = d;
  }
  float cut = nl == PS_ANALOG_SAMPLE_RANK ? low[nl - 1] : INFINITY;
  uint16_t in[PS_ANALOG_ROWS];
  size_t m = 0;
  for (size_t i = 0; i < rw->n; i++) { /* without a branch: most rows are out */
    in[m] = (uint16_t)i;
    m += rw->d[i] <= cut;
  }
  if (m < PS_ANALOG_K) { /* too few below the cut: every complete row */
    m = 0;
    for (size_t i = 0; i < rw->n; i++) {
      in[m] = (uint16_t)i;
      m += rw->d[i] == rw->d[i];
    }
  }
  best->n = 0;
  for (size_t k = 0; k < m; k++) {
    float d = rw->d[in[k]];
    if (best->n < PS_ANALOG_K || d < best->d[0]) nearest_add(best, d, rw->t[in[k]]);
  }
}

/* Whether the library takes the same phase of past periods: a period long enough for its blocks not to
 * overlap each other or the last rows. */
static int phased(size_t period, size_t h) {
  return period >= 2 * PS_ANALOG_WIDTH + 1 && period > PS_ANALOG_WIDTH + PS_ANALOG_RECENT + h;
}

void ps_analog_layout(size_t period, size_t h, struct ps_analog_layout *l) {
  *l = (struct ps_analog_layout){.recent = PS_ANALOG_LAGS + 1}; /* no forecast: ps_analog_learn's row only */
  if (h > PS_ANALOG_MAX_H) return;
  if (!phased(period, h)) {
    l->recent = PS_ANALOG_ROWS + h + PS_ANALOG_LAGS; /* the flat library, as ps_analog_ratio's blocks */
    return;
  }
  l->recent = PS_ANALOG_RECENT + h + PS_ANALOG_LAGS;
  l->windows = PS_ANALOG_PERIODS;
  l->before = PS_ANALOG_WIDTH + PS_ANALOG_LAGS;
  l->after = PS_ANALOG_WIDTH + h;
}

double ps_analog_ratio(const struct ps_analog *a, const struct ps_analog_ring *r, int64_t o, size_t h,
                       size_t period) {
  if (h < 1 || h > PS_ANALOG_MAX_H || !a->has_ref || a->epoch == 0) return NAN;
  float p[PS_ANALOG_LAGS + 1], q[PS_ANALOG_INPUTS];
  const float *w = a->w;
  load(r, o - PS_ANALOG_LAGS, PS_ANALOG_LAGS + 1, p);
  inputs(p, q);
  for (int j = 0; j < PS_ANALOG_INPUTS; j++)
    if (!(q[j] == q[j])) return NAN;
  /* The library's blocks: the rows whose window has ended by o (s + h <= o). */
  int64_t lo[1 + PS_ANALOG_PERIODS + PS_ANALOG_ROWS / PS_ANALOG_BLOCK + 1];
  size_t len[sizeof lo / sizeof *lo], nb = 0;
  int64_t last = o - (int64_t)h;
  if (phased(period, h)) {
    lo[nb] = last - PS_ANALOG_RECENT + 1;
    len[nb++] = PS_ANALOG_RECENT;
    for (int d = 1; d <= PS_ANALOG_PERIODS; d++) {
      lo[nb] = o - (int64_t)period * d - PS_ANALOG_WIDTH;
      len[nb++] = 2 * PS_ANALOG_WIDTH + 1;
    }
  } else {
    for (size_t done = 0; done < PS_ANALOG_ROWS;) {
      size_t n = PS_ANALOG_ROWS - done < PS_ANALOG_BLOCK ? PS_ANALOG_ROWS - done : PS_ANALOG_BLOCK;
      lo[nb] = last - (int64_t)(done + n) + 1;
      len[nb++] = n;
      done += n;
    }
  }
  struct rows rw;
  rw.n = 0;
  for (size_t b = 0; b < nb; b++)
    for (size_t done = 0; done < len[b];) {
      size_t m = len[b] - done < PS_ANALOG_BLOCK ? len[b] - done : PS_ANALOG_BLOCK;
      scan(r, lo[b] + (int64_t)done, m, h, q, w, &rw);
      done += m;
    }
  struct nearest best;
  nearest_of(&rw, &best);
  return best.n < PS_ANALOG_K ? NAN : weighted_median(&best);
}

double ps_analog_value(const struct ps_analog *a, double ratio, double now) {
  double eps = PS_ANALOG_EPS * a->scale, y = now > 0 ? now : 0;
  double f = (y + eps) * exp(ratio / PS_ANALOG_UNIT) - eps;
  return isfinite(f) ? f : NAN;
}

double ps_analog_forecast(const struct ps_analog *a, const struct ps_analog_ring *r, int64_t o, size_t h,
                          size_t period, double now) {
  if (!(now == now)) return NAN;
  double ratio = ps_analog_ratio(a, r, o, h, period);
  return ratio == ratio ? ps_analog_value(a, ratio, now) : NAN;
}
