/* The forecasting engine of one target: a float ring of samples, four models learned one step at a time,
 * their h-step errors, the choice among them and the error quantile (engine.h).
 *
 * Time is counted in steps (t_ms / step). The newest PS_ENGINE_REVISABLE + 1 steps are provisional: a
 * put may still overwrite them, so models learn a step only once it is older (the "learned" step L).
 * Every learned step, each model forecasts step L + h and the forecast waits in a small ring until that
 * step is learned in turn: the difference is the model's h-step error. A forecast for the caller starts
 * from the newest step instead: the models apply the provisional steps to a copy of their state. */
#include "engine.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "coverage.h"
#include "holtwinters.h"
#include "peak.h"
#include "period.h"
#include "phase_margin.h"

/* ---- constants ----------------------------------------------------------------------------------- */

/* Error rings: the four models' raw forecasts, and auto's answers (index PS_MODEL_AUTO). */
#define N_RINGS      PS_MODEL_COUNT
/* Auto's candidates: the four models, each corrected by its own median error, and their blend. */
#define C_BLEND      PS_MODEL_AUTO
#define N_CANDS      (PS_MODEL_AUTO + 1)
/* A pending row: raw window forecasts of the models, auto's forecast, the candidates' forecasts, and the
 * base of the answer (the margin's series). */
#define P_AUTO       PS_MODEL_AUTO
#define P_CAND       (PS_MODEL_AUTO + 1)
#define P_BASE       (P_CAND + N_CANDS)
#define P_WIDTH      (P_BASE + 1)
/* The errors scored are of the window's maximum, max(y[L+1..L+h]) - forecast, which is what prescale
 * answers; a model of the level underestimates that maximum in noise, so each candidate learns its median
 * error and adds it: a step of BIAS_RATE times its MAE towards the sign of each error (a stochastic
 * median, Robbins & Monro 1951). */
#define BIAS_RATE    0.05
#define BIAS_CAP     2.0
/* The quantile margin is taken from errors in units of their own recent size: each error of the answering
 * series is divided by that series' exponentially weighted MAE over about the last 1/VOL_DECAY errors
 * (as it stood before that error), and the margin is the q quantile of those ratios times the same MAE
 * now. A ring of raw errors spans PS_ENGINE_ERRORS steps (4 h at 1 min) and lags the daily swing of
 * their size: too small a margin on the morning ramp, too large in the evening. Measured on the public
 * traces (docs/forecasting.md), this cuts under-provisioning by a quarter on worldcup98 for the same pods.
 * VOL_FLOOR keeps a constant series (MAE 0) from dividing by zero. The scale is further multiplied by
 * the factor of the forecast's phase in the season and the hour (phase_margin.h): the recent size learns
 * a daily ramp only once it is under way, the phase's factor from the ramps of the days before. */
#define VOL_DECAY    (1.0 / 32)
#define VOL_FLOOR    1e-9
/* At a long horizon, consecutive h-step errors share all but one step of their windows: a ring of
 * PS_ENGINE_ERRORS of them spans PS_ENGINE_ERRORS / h windows (2 at h = 120, 2 minutes at 1 s), and its
 * quantile swings with the last window or two. The ring then keeps one error in h x RING_WINDOWS /
 * PS_ENGINE_ERRORS (every 15th at h = 120), so that it spans about RING_WINDOWS windows; below h = 16
 * it keeps every error, as before. The scale (VOL_DECAY) and the phase factors still learn every error. */
#define RING_WINDOWS 32
/* Samples beyond this magnitude are saturated: the ring stores float, and no load is that large. */
#define MAX_VALUE    1e30
/* Auto's score of a series is its exponentially weighted MAE over about the last 1/SCORE_DECAY errors:
 * short enough to notice a level shift within a few steps, long enough not to chase noise. */
#define SCORE_DECAY  (1.0 / 64)
/* Hysteresis: auto switches only to a series whose score is below this fraction of the current one's. */
#define SWITCH_RATIO 0.85
/* The answer's base (auto with a target coverage, below PS_PEAK_MIN_H): prescale answers a
 * quantile of the window's peak (forecast + margin), and the candidate whose point forecast has the least
 * MAE need not be the one whose quantile is the tightest (twitter: Holt-Winters' season carries
 * yesterday's spikes, which costs MAE and covers the spikes that recur). Each candidate keeps an online
 * quantile of its own errors at the answer's level, in units of its own recent error size times the
 * phase factor (as the margin is, VOL_DECAY and phase_margin.h): an offset stepped by the target coverage's
 * rate x (miss - (1 - level)) after each outcome (quantile tracking, coverage.h); and its score, the
 * exponentially weighted pinball loss at that level of forecast + offset against the window's peak
 * (the plain mean over its first 1 / QSCORE_DECAY errors). The answer is built on the candidate with the
 * least such score, switching only below Q_SWITCH of the current one's. The margin then applies on
 * top of it as before; the forecast reported (ps_engine_result.predicted, which MASE measures) stays
 * the MAE choice. Chosen on the first halves of nasa, worldcup98 and twitter among memories of 64 to 4,096
 * errors and ratios 0.85 and 0.95 (docs/forecasting.md, "Moving the curve"). */
#define QSCORE_DECAY (1.0 / 128)
#define Q_SWITCH     0.95
/* The answer follows the MAE choice until the candidates saw about Q_MISSES of the misses the level
 * allows (Q_MISSES / (1 - level) errors: 89 at 0.82, 1,600 at 0.99): an offset starts at 0 and climbs by
 * rate x level on a miss, falls by rate x (1 - level) on a cover, so at a high level it reaches its
 * quantile only after many misses, and before that the scores rank how far each offset still is from it.
 * Without the wait, twitter at 0.99 fell 1.01 points short on its first day (97.99 %; before: 98.12 %). */
#define Q_MISSES     16.0
/* The blend weighs each model by 1 / score^2 (inverse mean squared error in spirit), leaving out the
 * ones scoring worse than BLEND_CUTOFF times the best. */
#define BLEND_CUTOFF 2.0
/* The linear model's window: LINEAR_SPAN times the horizon, within [LINEAR_MIN, LINEAR_MAX] steps. */
#define LINEAR_SPAN  6
#define LINEAR_MIN   12
#define LINEAR_MAX   64
#define PROVISIONAL  (PS_ENGINE_REVISABLE + 1)
#define TIME_LIMIT   ((int64_t)1 << 62)
#define HOUR_MS      3600000 /* the phase margin's second cycle, when whole in steps */

/* ---- state --------------------------------------------------------------------------------------- */

struct series {
  float *err; /* signed h-step errors, a ring of PS_ENGINE_ERRORS in ps_engine.rings */
  uint32_t pos, count;
  uint64_t total; /* errors ever pushed: the quantile cache's stamp */
  double abs_sum; /* sum of |err| over the ring */
};

struct cand {
  double bias;  /* median error, added to the forecast */
  double score; /* exponentially weighted MAE of the corrected forecast */
  uint32_t n;   /* errors seen (saturating) */
  /* the answer's base (QSCORE_DECAY): the offset to the level's quantile of the corrected forecast's errors
   * in units of qvol (their exponentially weighted MAE, VOL_DECAY) times the phase factor, and the pinball
   * loss of forecast + offset */
  double qoff, qvol, qscore;
};

struct ps_engine {
  struct ps_engine_config cfg;
  size_t h; /* error horizon in steps, >= 1 */
  int64_t step;

  /* history: v[head] is step `newest`, v[head - k] step newest - k, for k < len */
  float *v;
  size_t cap, len, head;
  int64_t newest;
  /* The newest finite value put, exactly: the history rounds to float (7 digits), but the current value
   * and the last-value model answer with what the caller observed. */
  double exact;
  int64_t exact_at; /* its step; INT64_MIN when none */

  /* learning */
  int64_t learned;    /* newest learned step (the first put's step - 1 before any) */
  uint64_t n_learned; /* steps learned since the last reset */
  double last_valid;  /* newest non-missing learned value */
  int64_t last_valid_at;
  int has_last_valid;

  /* season and refits */
  size_t period;       /* steps; 0 = none */
  int searched;        /* period detection ran at least once (period auto) */
  uint64_t next_refit; /* n_learned at which the next refit runs */
  uint32_t refits, hash;
  uint64_t refits_total, learns_total; /* ps_engine_counts */
  int bulk;                            /* between ps_engine_bulk_begin and _end: puts only store */
  struct ps_hw hw;
  double *damp; /* damp[k] = ps_hw_damp_sum(k) for k <= h: the window forecasts' trend weights */

  /* h-step errors */
  float *pend;      /* (h + 1) x P_WIDTH window forecasts waiting for their window's end */
  int64_t *pend_at; /* the step that ends each row's window */
  struct series s[N_RINGS];
  struct cand c[N_CANDS];
  int sel;      /* the candidate auto forecasts with (ps_engine_result.predicted) */
  int base;     /* the candidate auto's answer is built on (QSCORE_DECAY; sel when not by level) */
  double level; /* the answer's level: the target coverage (0: none, auto answers with sel) */
  double w[PS_MODEL_COUNT]; /* blend weights */
  /* the quantile margin's scale by the phase of a forecast's origin, and its factor at the last forecast */
  struct ps_phase_margin pm;
  double pm_now;

  /* the quantile margin: standardized errors of the answering series (one in z_stride of them, counted by
   * z_skip: RING_WINDOWS), their scale, a cached quantile */
  struct series z;
  uint32_t z_stride, z_skip;
  double vol;
  uint32_t vol_n;
  uint64_t q_total;
  double q_val;

  /* target coverage: the margin's tuner and the answers waiting for their window's peak (coverage.h) */
  struct ps_coverage cov;
  /* the cold start's basis: the learned values' count, mean and sum of squared deviations (Welford) since
   * the last restart, the z of the configured target, the last forecast's predicted */
  double cold_n, cold_mean, cold_m2, cold_z, pred_now, base_now;
  /* The rings of s[] and z, apart from their counts and sums: a learned step writes one entry of each ring
   * but reads every count and sum, and each forecast every series' MAE, so those share two cache lines
   * instead of taking one each 1 KB apart (10,000 targets refreshed in one loop turn wait on memory). */
  float rings[N_RINGS + 1][PS_ENGINE_ERRORS];
  /* the peak model (peak.h): its learned state, and as of the newest step at the last forecast */
  struct ps_peak peak, peak_now;
};

/* A forecast origin: the models' state as of step idx. */
struct origin {
  int64_t idx;
  double last; /* NaN when nothing observed */
  int64_t last_at;
  struct ps_hw_core hw;
  int n_over; /* provisional season entries */
  int64_t over_at[PROVISIONAL];
  float over[PROVISIONAL];
  int lin_ok;
  double lin_a, lin_b; /* linear: value at idx + k is lin_a + lin_b * k */
  struct ps_peak pk;   /* the peak model's state as of idx */
};

/* ---- small helpers ------------------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && (a < 0) != (b < 0)) q--;
  return q;
}

static size_t pmod(int64_t t, size_t p) {
  int64_t r = t % (int64_t)p;
  return (size_t)(r < 0 ? r + (int64_t)p : r);
}

static uint32_t mix(uint32_t h, uint32_t x) { /* FNV-1a over 4 bytes */
  for (int i = 0; i < 4; i++) h = (h ^ ((x >> (8 * i)) & 0xff)) * 16777619u;
  return h;
}

/* The stored value of step t, NaN when missing or outside the ring. */
static double at(const struct ps_engine *e, int64_t t) {
  if (e->len == 0 || t > e->newest) return NAN;
  uint64_t k = (uint64_t)e->newest - (uint64_t)t;
  if (k >= e->len) return NAN;
  return e->v[(e->head + e->cap - (size_t)k) % e->cap];
}

/* ---- errors -------------------------------------------------------------------------------------- */

static void push_error(struct series *s, double err) {
  float f = (float)err;
  if (s->count == PS_ENGINE_ERRORS)
    s->abs_sum -= fabsf(s->err[s->pos]);
  else
    s->count++;
  s->err[s->pos] = f;
  s->abs_sum += fabsf(f);
  s->pos = (s->pos + 1) % PS_ENGINE_ERRORS;
  if (s->pos == 0) { /* once per lap, resum to drop the rounding that adding and removing accumulates */
    s->abs_sum = 0;
    for (uint32_t i = 0; i < s->count; i++) s->abs_sum += fabsf(s->err[i]);
  }
  s->total++;
}

/* The bias is a feedback loop with a delay: a change shows in the errors only h steps later. Stepping
 * by BIAS_RATE x score every step would move it h times that before any effect is seen, overshoot, and
 * oscillate with a growing amplitude (seen on a 1 s trace at h = 120). So the step is divided by h, and
 * the bias is bounded by `cap`: BIAS_CAP times the uncorrected model's own MAE, which does not depend on
 * the bias. */
static void cand_error(struct cand *c, double err, size_t h, double cap) {
  c->score = c->n == 0 ? fabs(err) : c->score + SCORE_DECAY * (fabs(err) - c->score);
  if (c->n < UINT32_MAX) c->n++;
  double stepb = BIAS_RATE * c->score / (double)h;
  c->bias += err > 0 ? stepb : err < 0 ? -stepb : 0;
  if (isfinite(cap)) c->bias = fmax(-cap, fmin(cap, c->bias));
}

/* The answer's base's score (QSCORE_DECAY): err is of the candidate's corrected forecast, scale its error
 * size times the phase factor at the forecast's origin, rate the step per outcome. After cand_error. */
static void cand_quantile(struct cand *c, double err, double level, double rate, double pf) {
  double u = err - c->qoff * (c->qvol > VOL_FLOOR ? c->qvol : VOL_FLOOR) * pf;
  double loss = u >= 0 ? level * u : (level - 1) * u;
  double w = 1.0 / (double)c->n;
  if (w < QSCORE_DECAY) w = QSCORE_DECAY;
  c->qscore = c->n <= 1 ? loss : c->qscore + w * (loss - c->qscore);
  c->qoff += rate * ((u > 0) - (1 - level));
  c->qvol = c->n <= 1 ? fabs(err) : c->qvol + VOL_DECAY * (fabs(err) - c->qvol);
}

/* err is of the forecast made at step `origin`: it is standardized by the scale then times the factor of
 * that origin's phase (phase_margin.h), which learns from it in turn. */
static void margin_error(struct ps_engine *e, double err, int64_t origin) {
  /* Not an error that is not 0 against a scale of 0: after exact forecasts (an integer load, a short
   * window), it would stand in the ring as 1e9 error sizes (over VOL_FLOOR), and the quantile's margin
   * with it; it sets the scale instead, as the first error does. Exact errors still go in as 0: a
   * constant series then has its ring, and answers with no margin. */
  if (e->vol_n > 0 && (e->vol > 0 || err == 0)) {
    double s = fmax(e->vol, VOL_FLOOR) * ps_pm_factor(&e->pm, origin);
    if (e->z_skip++ % e->z_stride == 0) push_error(&e->z, err / s);
    ps_pm_learn(&e->pm, origin, fabs(err) / s);
  }
  e->vol = e->vol_n == 0 || e->vol == 0 ? fabs(err) : e->vol + VOL_DECAY * (fabs(err) - e->vol);
  if (e->vol_n < UINT32_MAX) e->vol_n++;
}

static double mae(const struct series *s) { return s->count > 0 ? s->abs_sum / s->count : NAN; }

/* The element of rank k of a[lo..hi] (ranks count from a[0]; a[..lo) is below and a(hi..] above it),
 * by selection (Lomuto partitions) in place: O(hi - lo) on average. Leaves a(k..hi] >= a[k]. */
static double select_rank(float *a, size_t lo, size_t hi, size_t k) {
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    float pv = a[mid];
    a[mid] = a[hi];
    a[hi] = pv;
    size_t st = lo;
    for (size_t i = lo; i < hi; i++)
      if (a[i] < pv) {
        float t = a[i];
        a[i] = a[st];
        a[st++] = t;
      }
    a[hi] = a[st];
    a[st] = pv;
    if (k == st) break;
    if (k < st)
      hi = st - 1;
    else
      lo = st + 1;
  }
  return a[k];
}

/* The q-quantile of the ring (nearest rank), by selection on a copy: O(n) on average, run once per new
 * error at most (the caller caches it). */
static double quantile(const struct series *s, double q) {
  float a[PS_ENGINE_ERRORS];
  size_t n = s->count;
  memcpy(a, s->err, n * sizeof *a);
  size_t k = (size_t)ceil(q * (double)n);
  k = k == 0 ? 0 : k - 1;
  if (k >= n) k = n - 1;
  return select_rank(a, 0, n - 1, k);
}

/* ---- origins and model forecasts ----------------------------------------------------------------- */

/* The least-squares line through the stored values of steps o->idx - k, k < w (missing ones left out).
 * Those are the ring's entries from o->idx's backwards, so the loop walks the ring instead of locating
 * each step (at()'s bounds and modulo): the same values summed in the same order. */
static void fit_linear(const struct ps_engine *e, struct origin *o) {
  size_t w = LINEAR_SPAN * e->h;
  if (w < LINEAR_MIN) w = LINEAR_MIN;
  if (w > LINEAR_MAX) w = LINEAR_MAX;
  /* o->idx <= e->newest: the steps held are those less than e->len behind the newest. */
  uint64_t d = e->len > 0 ? (uint64_t)e->newest - (uint64_t)o->idx : 0;
  size_t held = d < e->len ? (size_t)(e->len - d) : 0,
         i = held > 0 ? (e->head + e->cap - (size_t)d) % e->cap : 0;
  if (w > held) w = held;
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t k = 0; k < w; k++) {
    double y = e->v[i];
    i = i == 0 ? e->cap - 1 : i - 1;
    if (!(y == y)) continue;
    double x = -(double)k;
    n++;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  o->lin_ok = 0;
  double den = n * sxx - sx * sx;
  if (n < 3 || !(den > 0)) return;
  o->lin_b = (n * sxy - sx * sy) / den;
  o->lin_a = (sy - o->lin_b * sx) / n;
  o->lin_ok = isfinite(o->lin_a) && isfinite(o->lin_b);
}

/* The models' learned state, without the linear fit (which depends on where the origin ends up). */
static void origin_state(const struct ps_engine *e, struct origin *o) {
  o->idx = e->learned;
  o->last = e->has_last_valid ? e->last_valid : NAN;
  o->last_at = e->last_valid_at;
  o->hw = e->hw.c;
  o->n_over = 0;
  o->pk = e->peak;
}

/* The origin at the newest learned step. */
static void origin_learned(const struct ps_engine *e, struct origin *o) {
  origin_state(e, o);
  fit_linear(e, o);
}

/* The origin at the newest step: the provisional steps applied to copies, the line fitted once there.
 * Only what answering model a reads (every model for auto): a fixed model's forecast reads neither
 * Holt-Winters' state nor the line of another (o->hw is then left at the learned step, lin_ok 0). */
static void origin_newest(const struct ps_engine *e, struct origin *o, int a) {
  int hw = a == PS_MODEL_AUTO || a == PS_MODEL_HOLTWINTERS, lin = a == PS_MODEL_AUTO || a == PS_MODEL_LINEAR;
  origin_state(e, o);
  for (int64_t t = e->learned + 1; t <= e->newest; t++) {
    double y = at(e, t);
    if (hw) {
      float *slot = NULL;
      if (e->hw.period > 0 && o->n_over < PROVISIONAL) {
        o->over_at[o->n_over] = t;
        o->over[o->n_over] = ps_hw_season(&e->hw, t);
        slot = &o->over[o->n_over++];
      }
      ps_hw_step(&e->hw.p, &o->hw, slot, t, y);
    }
    if (y == y) {
      o->last = y;
      o->last_at = t;
    }
  }
  if (o->last_at == e->exact_at && isfinite(e->exact)) o->last = e->exact;
  for (int64_t t = e->learned + 1; t <= e->newest; t++) ps_peak_add(&o->pk, at(e, t));
  o->idx = e->newest;
  if (lin)
    fit_linear(e, o);
  else
    o->lin_ok = 0;
}

static double fallback(const struct origin *o) { return o->last == o->last ? o->last : 0; }

/* Model m's forecast of step t > o->idx (never NaN: a model without what it needs says the last value). */
static double model_at(const struct ps_engine *e, const struct origin *o, int m, int64_t t) {
  double f = NAN;
  switch (m) {
  case PS_MODEL_LAST: f = o->last; break;
  case PS_MODEL_SEASONAL:
    if (e->period > 0) {
      int64_t p = (int64_t)e->period, k = t - o->idx;
      f = at(e, t - p * ((k + p - 1) / p));
    }
    break;
  case PS_MODEL_HOLTWINTERS: {
    float s = ps_hw_season(&e->hw, t);
    for (int i = 0; i < o->n_over; i++)
      if (e->hw.period > 0 && pmod(o->over_at[i], e->hw.period) == pmod(t, e->hw.period)) s = o->over[i];
    int64_t k = t - o->hw.at;
    f = k >= 0 && (uint64_t)k <= e->h ? ps_hw_forecast_damped(&o->hw, s, e->damp[k])
                                      : ps_hw_forecast(&o->hw, s, t);
    break;
  }
  case PS_MODEL_LINEAR:
    if (o->lin_ok) f = o->lin_a + o->lin_b * (double)(t - o->idx);
    break;
  default: break;
  }
  return isfinite(f) ? f : fallback(o);
}

/* The maximum of model m's forecasts of steps lo..hi (lo <= hi), bit for bit what the loop over model_at
 * finds (its first maximal value), with the cases whose answer is known beforehand taken short (every
 * learned step scores each model over a window of h steps): a model without what it needs answers the
 * fallback at every step; a line is monotone in the step (rounding is monotone), so its maximum is at an
 * end when both ends are finite (then so is every step between); Holt-Winters without a season adds a
 * season of 0 at every step (ps_hw_season), the overrides of provisional entries need a season. */
static double model_max(const struct ps_engine *e, const struct origin *o, int m, int64_t lo, int64_t hi) {
  double best = -INFINITY;
  switch (m) {
  case PS_MODEL_SEASONAL:
    if (e->period == 0) return fallback(o);
    break;
  case PS_MODEL_LINEAR: {
    if (!o->lin_ok) return fallback(o);
    double flo = o->lin_a + o->lin_b * (double)(lo - o->idx),
           fhi = o->lin_a + o->lin_b * (double)(hi - o->idx);
    if (isfinite(flo) && isfinite(fhi)) return o->lin_b > 0 ? fhi : flo;
    break;
  }
  case PS_MODEL_HOLTWINTERS:
    if (!o->hw.ready) return fallback(o);
    if (e->hw.period > 0) break; /* a season, or provisional entries that may override it */
    for (int64_t t = lo; t <= hi; t++) {
      int64_t k = t - o->hw.at;
      double f = k >= 0 && (uint64_t)k <= e->h ? ps_hw_forecast_damped(&o->hw, 0, e->damp[k])
                                               : ps_hw_forecast(&o->hw, 0, t);
      if (!isfinite(f)) f = fallback(o);
      if (f > best) best = f;
    }
    return best;
  default: break;
  }
  for (int64_t t = lo; t <= hi; t++) {
    double f = model_at(e, o, m, t);
    if (f > best) best = f;
  }
  return best;
}

/* The maxima of each model's forecast over steps lo..hi (lo > o->idx): raw[m] for m < PS_MODEL_AUTO. */
static void window_max(const struct ps_engine *e, const struct origin *o, int64_t lo, int64_t hi,
                       double raw[PS_MODEL_AUTO], int only) {
  for (int m = 0; m < PS_MODEL_AUTO; m++) {
    raw[m] = fallback(o);
    if (only >= 0 && m != only) continue;
    if (m == PS_MODEL_PEAK) { /* the window's peak directly, whatever its length */
      double pk = ps_peak_forecast(&o->pk);
      if (pk == pk) raw[m] = pk;
      continue;
    }
    if (m == PS_MODEL_LAST || hi < lo) continue;
    raw[m] = model_max(e, o, m, lo, hi);
  }
}

/* Candidate c's median correction: the peak model learns its own (its k, peak.h), so none is added. */
static double cand_bias(const struct ps_engine *e, int c) { return c == PS_MODEL_PEAK ? 0 : e->c[c].bias; }

/* Candidate c's forecast of the window maximum, given the models' raw maxima. */
static double cand_value(const struct ps_engine *e, int c, const double raw[PS_MODEL_AUTO]) {
  double f = 0;
  if (c == C_BLEND) {
    for (int m = 0; m < PS_MODEL_AUTO; m++)
      if (e->w[m] > 0) f += e->w[m] * (raw[m] + cand_bias(e, m));
  } else {
    f = raw[c] + cand_bias(e, c);
  }
  return isfinite(f) ? f : raw[PS_MODEL_LAST];
}

/* ---- auto's choice ------------------------------------------------------------------------------- */

static int usable(const struct ps_engine *e, int c) {
  if (c == PS_MODEL_SEASONAL && e->period == 0) return 0;
  if (c == PS_MODEL_PEAK && e->h < PS_PEAK_MIN_H) return 0;
  return e->c[c].n >= PS_ENGINE_MIN_ERRORS;
}

/* Whether auto builds its answer on the candidate of the least pinball loss (QSCORE_DECAY): with a target,
 * below the horizon where the peak model competes. There consecutive windows share all but a few steps,
 * a score over 1 / QSCORE_DECAY errors spans few windows (azure, 1 s at h = 120: the choice left the
 * peak model, whose margin is of its own form, for Holt-Winters, 1.89x -> 2.08-2.56x the seed's pods). */
static int by_level(const struct ps_engine *e) {
  return e->cfg.model == PS_MODEL_AUTO && e->level > 0 && e->h < PS_PEAK_MIN_H;
}

/* The candidate of the least pinball loss, switching only once it beats the current one clearly; the MAE
 * choice until the candidates saw Q_MISSES / (1 - level) errors (Q_MISSES). */
static void choose_base(struct ps_engine *e) {
  int best = -1;
  for (int c = 0; c < N_CANDS; c++)
    if (usable(e, c) && (best < 0 || e->c[c].qscore < e->c[best].qscore)) best = c;
  if (best < 0 || (double)e->c[best].n < Q_MISSES / (1 - e->level)) {
    e->base = e->sel;
    return;
  }
  if (!usable(e, e->base) || e->c[best].qscore < Q_SWITCH * e->c[e->base].qscore) e->base = best;
}

/* Blend weights, then the candidate auto answers with: the best scoring one, but only once it beats the
 * current one clearly (SWITCH_RATIO), so noise does not flip the answer from step to step. */
static void choose(struct ps_engine *e) {
  double best = INFINITY;
  for (int m = 0; m < PS_MODEL_AUTO; m++)
    if (usable(e, m) && e->c[m].score < best) best = e->c[m].score;
  double sum = 0;
  for (int m = 0; m < PS_MODEL_AUTO; m++) {
    e->w[m] = 0;
    if (!usable(e, m) || e->c[m].score > BLEND_CUTOFF * best) continue;
    double sc = e->c[m].score + 1e-9 * (best + 1);
    e->w[m] = 1 / (sc * sc);
    sum += e->w[m];
  }
  if (!(sum > 0) || !isfinite(sum)) {
    for (int m = 0; m < PS_MODEL_AUTO; m++) e->w[m] = m == PS_MODEL_LAST;
  } else {
    for (int m = 0; m < PS_MODEL_AUTO; m++) e->w[m] /= sum;
  }

  int cand = -1;
  for (int c = 0; c < N_CANDS; c++) {
    if (!usable(e, c)) continue;
    if (cand < 0 || e->c[c].score < e->c[cand].score) cand = c;
  }
  if (cand < 0) {
    e->sel = e->base = PS_MODEL_LAST;
    return;
  }
  if (!usable(e, e->sel) || e->c[cand].score < SWITCH_RATIO * e->c[e->sel].score) e->sel = cand;
  if (by_level(e))
    choose_base(e);
  else
    e->base = e->sel;
}

/* ---- refits -------------------------------------------------------------------------------------- */

/* Period detection (period auto) and the Holt-Winters parameter search over the learned history. The
 * only allocations after ps_engine_new happen here; on failure the models keep their state. */
static void refit(struct ps_engine *e, int bulk) {
  int64_t first = e->newest - (int64_t)e->len + 1;
  int64_t from = e->learned - (int64_t)(e->n_learned < e->cap ? e->n_learned : e->cap) + 1;
  if (from < first) from = first;
  /* A ring shorter than the provisional steps holds no learned step at all. */
  size_t n = from <= e->learned ? (size_t)(e->learned - from + 1) : 0;
  float *x = n > 0 ? malloc(n * sizeof *x) : NULL;
  if (x != NULL) {
    for (size_t i = 0; i < n; i++) x[i] = (float)at(e, from + (int64_t)i);
    if (e->cfg.period_ms > 0) {
      e->period = (size_t)(e->cfg.period_ms / e->step);
    } else {
      /* The calendar periods that are whole numbers of steps: an hour, a day, a week. */
      static const int64_t calendar_ms[] = {3600000, 86400000, 604800000};
      size_t prefer[3], np = 0;
      for (size_t i = 0; i < 3; i++)
        if (calendar_ms[i] % e->step == 0) prefer[np++] = (size_t)(calendar_ms[i] / e->step);
      e->period = ps_period_detect(x, n, e->cap / 3, prefer, np, NULL);
      e->searched = 1;
    }
    /* A bulk load's fit scores the parameters on the newest periods only, at least
     * PS_ENGINE_BULK_FIT_FLAT steps (engine.h). */
    size_t search = !bulk ? n : e->period > 0 ? PS_ENGINE_BULK_FIT_PERIODS * e->period : 0;
    if (bulk && search < PS_ENGINE_BULK_FIT_FLAT) search = PS_ENGINE_BULK_FIT_FLAT;
    ps_hw_fit_tail(&e->hw, x, n, from, e->period, e->h, search);
    ps_pm_set(&e->pm, e->period, HOUR_MS % e->step == 0 ? (size_t)(HOUR_MS / e->step) : 0);
    free(x);
  }
  e->refits++;
  e->refits_total++;
  size_t hist = e->n_learned < e->cap ? (size_t)e->n_learned : e->cap;
  uint64_t base = e->period > 0 ? e->period : PS_ENGINE_REFIT_MIN_STEPS;
  if (base < hist / 2) base = hist / 2;
  uint32_t j = mix(e->hash, e->refits);
  e->next_refit = e->n_learned + base + (uint64_t)((double)base * 0.5 * (double)(j >> 8) / 16777216.0);
}

/* ---- learning ------------------------------------------------------------------------------------ */

/* What learning step t keeps of its value y besides the models: the newest valid value, and the data's
 * part of the refit jitter (from the first 16 steps). */
static void note_value(struct ps_engine *e, int64_t t, double y) {
  if (!(y == y)) return;
  if (e->n_learned < 16) {
    float f = (float)y;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    e->hash = mix(e->hash, bits ^ (uint32_t)t);
  }
  e->last_valid = y;
  e->last_valid_at = t;
  e->has_last_valid = 1;
}

/* Adds y to a count, mean and sum of squared deviations (Welford's running variance). */
static void moments_add(double *n, double *mean, double *m2, double y) {
  *n += 1;
  double d = y - *mean;
  *mean += d / *n;
  *m2 += d * (y - *mean);
}

/* The actual peak of steps lo..t; -INFINITY when all are missing. */
static double window_peak(const struct ps_engine *e, int64_t lo, int64_t t) {
  double act = -INFINITY;
  for (int64_t k = lo; k <= t; k++) {
    double x = at(e, k);
    if (x > act) act = x;
  }
  return act;
}

/* The answer given for the window that ends at t, if any, against the window's actual peak. */
static void learn_coverage(struct ps_engine *e, int64_t t) {
  int64_t lo;
  if (!ps_cov_due(&e->cov, t, &lo)) return;
  double act = window_peak(e, lo, t);
  ps_cov_observe(&e->cov, t, act > -INFINITY ? act : NAN);
}

static void learn(struct ps_engine *e, int64_t t) {
  double y = at(e, t);
  e->learns_total++;
  size_t row = pmod(t, e->h + 1);
  learn_coverage(e, t);
  if (e->pend_at[row] == t) {
    /* The window (t - h, t] is complete: score every forecast made for it h steps ago. */
    double act = window_peak(e, t - (int64_t)e->h + 1, t);
    const float *p = &e->pend[row * P_WIDTH];
    if (act > -INFINITY) {
      for (int m = 0; m <= P_AUTO; m++)
        if (p[m] == p[m]) push_error(&e->s[m], act - p[m]);
      int a = e->cfg.model == PS_MODEL_AUTO ? P_BASE : (int)e->cfg.model;
      if (p[a] == p[a]) margin_error(e, act - p[a], t - (int64_t)e->h);
      ps_peak_learn(&e->peak, act, p[PS_MODEL_PEAK]);
      /* Auto's candidates (their biases, scores and choice): a fixed model never reads them. */
      int lv = by_level(e);
      double pf = lv ? ps_pm_factor(&e->pm, t - (int64_t)e->h) : 1;
      for (int c = 0; c < N_CANDS && e->cfg.model == PS_MODEL_AUTO; c++) {
        double cap = c < PS_MODEL_AUTO && e->s[c].count > 0 ? BIAS_CAP * mae(&e->s[c]) : INFINITY;
        if (!(p[P_CAND + c] == p[P_CAND + c])) continue;
        cand_error(&e->c[c], act - p[P_CAND + c], e->h, cap);
        if (lv) cand_quantile(&e->c[c], act - p[P_CAND + c], e->level, e->cov.rate, pf);
      }
    }
  }
  float *slot = e->hw.period > 0 ? &e->hw.season[pmod(t, e->hw.period)] : NULL;
  ps_hw_step(&e->hw.p, &e->hw.c, slot, t, y);
  note_value(e, t, y);
  if (y == y) moments_add(&e->cold_n, &e->cold_mean, &e->cold_m2, y);
  ps_peak_add(&e->peak, y);
  e->learned = t;
  e->n_learned++;
  if (e->n_learned >= e->next_refit) refit(e, 0);
  if (e->cfg.model == PS_MODEL_AUTO) choose(e);

  int64_t target = t + (int64_t)e->h;
  row = pmod(target, e->h + 1);
  e->pend_at[row] = target;
  float *p = &e->pend[row * P_WIDTH];
  if (!e->has_last_valid) {
    for (int i = 0; i < P_WIDTH; i++) p[i] = NAN;
    return;
  }
  struct origin o;
  origin_learned(e, &o);
  double raw[PS_MODEL_AUTO];
  window_max(e, &o, t + 1, target, raw, -1);
  for (int m = 0; m < PS_MODEL_AUTO; m++) p[m] = (float)raw[m];
  for (int c = 0; c < N_CANDS; c++)
    p[P_CAND + c] = e->cfg.model == PS_MODEL_AUTO ? (float)cand_value(e, c, raw) : NAN;
  p[P_AUTO] = e->cfg.model == PS_MODEL_AUTO ? p[P_CAND + e->sel] : p[e->cfg.model];
  p[P_BASE] = e->cfg.model == PS_MODEL_AUTO ? p[P_CAND + e->base] : p[e->cfg.model];
}

/* Forgets the samples and the models' level (a gap longer than the history, or the first put); keeps
 * the season, the fitted parameters and the error records, which describe the workload, not the data. */
static void restart(struct ps_engine *e, int64_t t) {
  for (size_t i = 0; i < e->cap; i++) e->v[i] = NAN;
  e->len = 0;
  e->head = 0;
  e->newest = t;
  e->learned = t - 1;
  e->n_learned = 0;
  e->has_last_valid = 0;
  e->hw.c.ready = 0;
  e->hw.c.at = t - 1;
  e->next_refit = PS_ENGINE_FIRST_REFIT;
  for (size_t i = 0; i <= e->h; i++) e->pend_at[i] = INT64_MIN;
  ps_cov_forget(&e->cov);
  e->cold_n = e->cold_mean = e->cold_m2 = 0;
  ps_peak_reset(&e->peak);
}

/* ---- API ----------------------------------------------------------------------------------------- */

int ps_engine_new(const struct ps_engine_config *c, struct ps_engine **out) {
  *out = NULL;
  if (c->step_ms <= 0 || c->lookahead_ms < 0 || c->period_ms < 0 || c->capacity == 0 ||
      c->capacity > SIZE_MAX / 8 || (c->period_ms > 0 && c->period_ms % c->step_ms != 0) ||
      (unsigned)c->model >= PS_MODEL_COUNT ||
      !(c->quantile == 0 || (c->quantile >= 0.5 && c->quantile < 1)) ||
      !(c->target_coverage == 0 || (c->target_coverage > 0 && c->target_coverage < 1)))
    return UV_EINVAL;
  struct ps_engine *e = calloc(1, sizeof *e);
  if (e == NULL) return UV_ENOMEM;
  e->cfg = *c;
  for (int m = 0; m < N_RINGS; m++) e->s[m].err = e->rings[m];
  e->z.err = e->rings[N_RINGS];
  e->step = c->step_ms;
  int64_t h = c->lookahead_ms / c->step_ms;
  e->h = h < 1 ? 1 : h > PS_ENGINE_MAX_HORIZON ? PS_ENGINE_MAX_HORIZON : (size_t)h;
  e->cap = c->capacity;
  e->v = malloc(e->cap * sizeof *e->v);
  e->pend = malloc((e->h + 1) * P_WIDTH * sizeof *e->pend);
  e->pend_at = malloc((e->h + 1) * sizeof *e->pend_at);
  e->damp = malloc((e->h + 1) * sizeof *e->damp);
  int cov_rc = ps_cov_init(&e->cov, c->target_coverage, e->h, c->step_ms);
  if (e->v == NULL || e->pend == NULL || e->pend_at == NULL || e->damp == NULL || cov_rc != 0) {
    ps_engine_free(e);
    return UV_ENOMEM;
  }
  for (size_t k = 0; k <= e->h; k++) e->damp[k] = ps_hw_damp_sum((int64_t)k);
  ps_hw_init(&e->hw);
  e->hash = mix(2166136261u, c->seed);
  e->sel = e->base = PS_MODEL_LAST;
  /* Not the fixed quantile: `prescale backtest --sweep` replays one engine for every quantile
   * (ps_engine_margins), and an engine configured with one answers as before. */
  e->level = c->target_coverage;
  ps_pm_init(&e->pm);
  e->pm_now = 1;
  e->cold_z = c->target_coverage > 0 ? ps_cov_peak_z(c->target_coverage, e->h) : 0;
  ps_peak_init(&e->peak, e->h);
  e->z_stride = (uint32_t)(e->h * RING_WINDOWS / PS_ENGINE_ERRORS);
  if (e->z_stride < 1) e->z_stride = 1;
  restart(e, 0);
  e->exact_at = INT64_MIN;
  *out = e;
  return 0;
}

void ps_engine_free(struct ps_engine *e) {
  if (e == NULL) return;
  ps_cov_free(&e->cov);
  ps_hw_free(&e->hw);
  free(e->v);
  free(e->pend);
  free(e->pend_at);
  free(e->damp);
  free(e);
}

int ps_engine_put(struct ps_engine *e, int64_t t_ms, double v) {
  int64_t t = floor_div(t_ms, e->step);
  /* Step arithmetic (t - 1, t + h, newest - learned) stays far from overflow within this range, which
   * covers every clock (2^62 ms is 146 million years). */
  if (t < -TIME_LIMIT || t > TIME_LIMIT) return UV_ERANGE;
  if (!isfinite(v))
    v = NAN;
  else if (v > MAX_VALUE)
    v = MAX_VALUE;
  else if (v < -MAX_VALUE)
    v = -MAX_VALUE;
  if (v == v && (e->len == 0 || t >= e->newest || t == e->exact_at)) {
    e->exact = v;
    e->exact_at = t;
  } else if (t == e->exact_at) {
    e->exact_at = INT64_MIN; /* the newest finite value was revised to missing */
  }

  if (e->len == 0) {
    restart(e, t);
    e->v[0] = (float)v;
    e->len = 1;
    return 0;
  }
  if (t <= e->newest) {
    /* A revision of one of the provisional steps (engine.h), or too old. */
    uint64_t k = (uint64_t)e->newest - (uint64_t)t;
    if (k > PS_ENGINE_REVISABLE || k >= e->len) return UV_ERANGE;
    e->v[(e->head + e->cap - (size_t)k) % e->cap] = (float)v;
    return 0;
  }
  uint64_t gap = (uint64_t)t - (uint64_t)e->newest;
  if (gap >= e->cap) {
    /* Longer than the history: nothing held is still relevant to the step that follows. */
    restart(e, t);
    e->v[0] = (float)v;
    e->len = 1;
    return 0;
  }
  for (uint64_t i = 0; i < gap; i++) {
    e->head = (e->head + 1) % e->cap;
    e->v[e->head] = NAN;
    if (e->len < e->cap) e->len++;
  }
  e->v[e->head] = (float)v;
  e->newest = t;
  /* Learn every step that is now older than the provisional ones (a gap learns its missing steps);
   * a bulk load leaves them to ps_engine_bulk_end. */
  if (!e->bulk)
    while (e->newest - e->learned > PROVISIONAL) learn(e, e->learned + 1);
  return 0;
}

void ps_engine_bulk_begin(struct ps_engine *e) { e->bulk = 1; }

/* The steps a bulk load learns one by one at its end: enough for every error ring to fill
 * (PS_ENGINE_ERRORS), for auto's scores to forget their start (1/SCORE_DECAY = 64 errors, 16 times over)
 * and for the biases to walk to their medians (BIAS_RATE x score / h a step: 32 h steps move one by
 * 1.6 scores, near BIAS_CAP). */
static uint64_t bulk_replay(const struct ps_engine *e) {
  uint64_t r = PS_ENGINE_BULK_REPLAY, hr = 32 * (uint64_t)e->h;
  return hr > r ? hr : r;
}

void ps_engine_bulk_end(struct ps_engine *e) {
  if (!e->bulk) return;
  e->bulk = 0;
  if (e->len == 0) return;
  int64_t upto = e->newest - PROVISIONAL; /* the step the puts would have learned up to */
  uint64_t m = upto > e->learned ? (uint64_t)(upto - e->learned) : 0, replay = bulk_replay(e);
  uint64_t stepwise = replay + PS_ENGINE_FIRST_REFIT;
  if (stepwise < PS_ENGINE_BULK_STEPWISE) stepwise = PS_ENGINE_BULK_STEPWISE;
  if (m > stepwise) {
    /* The older steps: what learn keeps of them besides the models' state (the refit below rebuilds
     * that from the whole history: its last run ends at the newest step it saw). Their errors would be
     * forgotten by the end of the replay, so none is computed. */
    int64_t skip_to = upto - (int64_t)replay;
    for (int64_t t = e->learned + 1; t <= skip_to; t++) {
      note_value(e, t, at(e, t));
      e->n_learned++;
    }
    e->learned = skip_to;
    refit(e, 1);
  }
  while (e->newest - e->learned > PROVISIONAL) learn(e, e->learned + 1);
}

void ps_engine_counts(const struct ps_engine *e, struct ps_engine_counts *out) {
  out->refits = e->refits_total;
  out->learns = e->learns_total;
}

static const char *note_for(const struct ps_engine *e, int answering) {
  if (e->cfg.period_ms > 0) {
    if (e->hw.period == 0 && (answering == PS_MODEL_HOLTWINTERS || answering == PS_MODEL_AUTO))
      return "history shorter than two periods: holtwinters runs without its season";
    if (e->n_learned < e->period && answering == PS_MODEL_SEASONAL)
      return "history shorter than one period: seasonal answers with the last value";
  } else if (!ps_model_seasonless((enum ps_model)answering) && e->period == 0) {
    if (!e->searched) return "history too short to detect a season yet: non-seasonal models answer";
    if (answering == PS_MODEL_SEASONAL) return "no season detected: seasonal answers with the last value";
    return "no season detected: non-seasonal models answer";
  }
  if (answering == PS_MODEL_AUTO && !usable(e, e->sel))
    return "too few forecast errors yet to choose a model: last answers";
  return NULL;
}

/* The margin of a quantile qv of the standardized errors: in units of their scale now (VOL_DECAY). */
static double scaled_margin(const struct ps_engine *e, double qv) {
  double m = qv * fmax(e->vol, VOL_FLOOR) * e->pm_now;
  return m > 0 && m <= MAX_VALUE ? m : 0;
}

/* max(current, predicted + margin), finite and >= 0 whatever the inputs (engine.h). */
static double answer(double pred, double margin, double last) {
  double v = pred + margin;
  if (!(v >= last)) v = last;
  return v > 0 && isfinite(v) ? v : (isfinite(v) ? 0 : (last > 0 ? last : 0));
}

double ps_engine_answer(double predicted, double margin, double current) {
  return answer(predicted, margin, current);
}

/* The basis of the target coverage's margin at `level` (coverage.h): the quantile of the standardized
 * errors (cached in q_val for the configured target) and their size now, scaled by the phase factor as the
 * quantile's margin is (the error ring is standardised by the same product, phase_margin.h). Before
 * PS_ENGINE_MIN_ERRORS errors are known (the first lookahead + PS_ENGINE_MIN_ERRORS + 3 steps of a
 * target), the cold start's: the load taken as noise around its mean so far, whose window peak is at
 * most mean + z x sd with probability level (z: ps_cov_peak_z; cold_z when already known, else NaN).
 * While the peak model answers alone, the same form at any time, with its level and spread (peak.h): the
 * answer is level + (z + theta) x spread, which moves as little from step to step as they do, where the
 * quantile of its errors (a ring of a few windows at a long horizon) and their size move with the last
 * windows; and theta stays in the units it had in the cold start, which ends into it without a jump. */
static void cov_basis(const struct ps_engine *e, double level, double cold_z, double *qz, double *vol) {
  int a = e->cfg.model == PS_MODEL_AUTO ? e->base : (int)e->cfg.model;
  double spread = ps_peak_sd(&e->peak_now);
  if (a == PS_MODEL_PEAK && spread > 0) {
    if (!(cold_z == cold_z)) cold_z = ps_cov_peak_z(level, e->h);
    *vol = spread;
    *qz = cold_z + (e->peak_now.level - e->base_now) / spread;
    return;
  }
  if (e->z.count >= PS_ENGINE_MIN_ERRORS) {
    *vol = e->vol * e->pm_now;
    *qz = level == e->cfg.target_coverage && e->q_total == e->z.total ? e->q_val : quantile(&e->z, level);
    return;
  }
  /* The learned values' moments, with the newest steps not learned yet (at most PROVISIONAL) added. */
  double n = e->cold_n, mean = e->cold_mean, m2 = e->cold_m2;
  for (int64_t k = e->learned + 1; k <= e->newest && k - e->learned <= PROVISIONAL; k++) {
    double y = at(e, k);
    if (y == y) moments_add(&n, &mean, &m2, y);
  }
  double sd = n >= 2 ? sqrt(m2 / (n - 1)) : 0;
  if (!(sd > 0)) {
    *qz = NAN;
    *vol = e->vol * e->pm_now;
    return;
  }
  if (!(cold_z == cold_z)) cold_z = ps_cov_peak_z(level, e->h);
  *vol = sd;
  *qz = cold_z + (mean - e->base_now) / sd;
}

int ps_engine_forecast(struct ps_engine *e, int64_t now_ms, struct ps_engine_result *out) {
  memset(out, 0, sizeof *out);
  out->coverage = NAN;
  for (int i = 0; i < PS_MODEL_COUNT; i++) {
    out->mae[i] = NAN;
    out->weight[i] = 0;
  }
  if (e->len == 0) return UV_ENOENT;
  int a = (int)e->cfg.model; /* the answering series */
  struct origin o;
  origin_newest(e, &o, a);
  if (!(o.last == o.last)) return UV_ENOENT;
  e->peak_now = o.pk;

  out->current = o.last;
  out->current_ms = o.last_at * e->step;
  out->period_ms = (int64_t)e->period * e->step;
  e->pm_now = ps_pm_factor(&e->pm, e->newest);

  /* The window (now, now + lookahead] in steps (engine.h); steps not after the
   * newest are observed, so the current value stands for them. */
  int64_t lo = floor_div(now_ms, e->step) + 1;
  int64_t end = now_ms > INT64_MAX - e->cfg.lookahead_ms ? INT64_MAX : now_ms + e->cfg.lookahead_ms;
  int64_t hi = floor_div(end, e->step);
  if (lo > hi) lo = hi;
  if (lo <= e->newest) lo = e->newest + 1;
  if (hi < lo) hi = lo - 1;
  if (hi - lo >= PS_ENGINE_MAX_WINDOW) hi = lo + PS_ENGINE_MAX_WINDOW - 1;
  double raw[PS_MODEL_AUTO];
  window_max(e, &o, lo, hi, raw, a == PS_MODEL_AUTO ? -1 : a);
  double pred = a == PS_MODEL_AUTO ? cand_value(e, e->sel, raw) : raw[a];
  if (!isfinite(pred)) pred = o.last;
  out->predicted = pred;
  /* The answer's base (QSCORE_DECAY); the margin reported is the answer's distance from pred. */
  double base = a == PS_MODEL_AUTO && e->base != e->sel ? cand_value(e, e->base, raw) : pred;
  if (!isfinite(base)) base = pred;

  double level = e->cfg.target_coverage > 0 ? e->cfg.target_coverage : e->cfg.quantile;
  if (level > 0 && e->z.count >= PS_ENGINE_MIN_ERRORS && e->q_total != e->z.total) {
    e->q_total = e->z.total;
    e->q_val = quantile(&e->z, level);
  }
  e->pred_now = pred;
  e->base_now = base;
  if (e->cfg.target_coverage > 0) {
    double qz, vol;
    cov_basis(e, e->cfg.target_coverage, e->cold_z, &qz, &vol);
    out->margin = ps_cov_margin(&e->cov, qz, vol);
  } else if (e->cfg.quantile > 0 && e->z.count >= PS_ENGINE_MIN_ERRORS)
    out->margin = scaled_margin(e, e->q_val);
  out->margin += base - pred;
  out->value = answer(pred, out->margin, o.last);
  /* The window's outcome is known once its last step is learned (coverage.h). */
  if (lo <= hi) ps_cov_answer(&e->cov, lo, hi, out->value);
  out->coverage = e->cov.realised;

  int chosen = a == PS_MODEL_AUTO ? e->base : a;
  if (chosen == C_BLEND) {
    int best = PS_MODEL_LAST;
    for (int m = 0; m < PS_MODEL_AUTO; m++) {
      out->weight[m] = e->w[m];
      if (e->w[m] > e->w[best]) best = m;
    }
    chosen = best;
  } else {
    out->weight[chosen] = 1;
  }
  out->chosen = (enum ps_model)chosen;
  for (int m = 0; m < PS_MODEL_COUNT; m++) out->mae[m] = mae(&e->s[m]);
  out->note = note_for(e, a);
  return 0;
}

size_t ps_engine_memory(const struct ps_engine *e) {
  return sizeof *e + e->cap * sizeof *e->v + e->hw.period * sizeof *e->hw.season +
         (e->h + 1) * (P_WIDTH * sizeof *e->pend + sizeof *e->pend_at + sizeof *e->damp) +
         e->cov.n * sizeof *e->cov.ring;
}

void ps_engine_coverage_basis(const struct ps_engine *e, double level, double *qz, double *vol) {
  cov_basis(e, level, NAN, qz, vol);
  if (*vol > 0 && *qz == *qz) *qz += (e->base_now - e->pred_now) / *vol; /* relative to predicted */
}

/* The quantiles by successive selections on one copy of the ring: each selection leaves the elements
 * above rank k to its right, so the next (higher) quantile is selected among those only. */
int ps_engine_margins(const struct ps_engine *e, const struct ps_engine_result *r, const double *q, size_t nq,
                      double *margin, double *value) {
  float a[PS_ENGINE_ERRORS];
  size_t n = e->z.count, lo = 0;
  for (size_t j = 0; j < nq; j++)
    if (!(q[j] == 0 || (q[j] >= 0.5 && q[j] < 1)) || (j > 0 && !(q[j] >= q[j - 1]))) return UV_EINVAL;
  memcpy(a, e->z.err, n * sizeof *a);
  for (size_t j = 0; j < nq; j++) {
    margin[j] = 0;
    if (q[j] > 0 && n >= PS_ENGINE_MIN_ERRORS) {
      size_t k = (size_t)ceil(q[j] * (double)n);
      k = k == 0 ? 0 : k - 1;
      if (k >= n) k = n - 1;
      if (k < lo) k = lo; /* equal quantiles */
      margin[j] = scaled_margin(e, select_rank(a, lo, n - 1, k));
      lo = k;
    }
    margin[j] += e->base_now - e->pred_now;
    value[j] = answer(r->predicted, margin[j], r->current);
  }
  return 0;
}
