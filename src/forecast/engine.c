/* The forecasting engine of one target: a float ring of samples, four models learned one step at a time,
 * their h-step errors, the choice among them and the error quantile (engine.h).
 *
 * Time is counted in steps (t_ms / step). The newest PS_ENGINE_REVISABLE + 1 steps are provisional: a
 * put may still overwrite them, so models learn a step only once it is older (the "learned" step L).
 * Every learned step, each model forecasts step L + h and the forecast waits in a small ring until that
 * step is learned in turn: the difference is the model's h-step error. A forecast for the caller starts
 * from the newest step instead: the models apply the provisional steps to a copy of their state.
 *
 * Here: the refits, the learning step and the API; the errors are in engine_errors.c, the origins, the
 * models' forecasts and auto's choice in engine_models.c, the state and constants in engine_int.h. */
#include "engine.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "analog.h"
#include "coverage.h"
#include "engine_int.h"
#include "holtwinters.h"
#include "peak.h"
#include "period.h"
#include "phase_margin.h"

/* ---- the analog model's codes -------------------------------------------------------------------- */

/* Where the analog model's codes are kept for period p (0: none): what its library and learning read
 * (ps_analog_layout) from every origin a forecast or a learned step takes, which is as old as the learned
 * step, PROVISIONAL steps behind the newest. With a period, a ring of the newest steps and a window around
 * the same phase in each past period that the float ring reaches, sliding with the newest step
 * (codes_advance): 3.6 KB at 1 minute, where a code for every step of the library's reach (6 days) was
 * 17.5 KB, 1.7 bytes per stored sample of a week, which took the process over issue 11's 8.5
 * (docs/performance.md, "RSS"). A bulk load's learning holds every step's code instead (codes_held). */
static struct codes_layout codes_layout(const struct ps_engine *e, size_t p) {
  struct codes_layout c = {.cap = e->cap};
  if (e->codes_held) return c;
  struct ps_analog_layout l;
  ps_analog_layout(p, e->h, &l);
  if (l.recent + PROVISIONAL < c.cap) c.cap = l.recent + PROVISIONAL;
  if (l.windows == 0) return c;
  c.win_cap = l.before + PROVISIONAL + l.after + 1;
  c.win_after = l.after;
  c.win_period = p;
  /* windows that hold a step of the float ring: d x p - after steps behind the newest is their newest */
  while (c.win_n < l.windows && (c.win_n + 1) * p - l.after < e->cap) c.win_n++;
  return c;
}

/* The library's windows never overlap (struct ps_analog_ring): a window is shorter than a period the
 * library takes the same phase of (analog.c, phased: period > PS_ANALOG_WIDTH + PS_ANALOG_RECENT + h). */
_Static_assert(PS_ANALOG_WIDTH + PS_ANALOG_LAGS + PROVISIONAL < PS_ANALOG_RECENT, "windows overlap");

static size_t codes_size(const struct codes_layout *c) { return c->cap + c->win_n * c->win_cap; }

/* The code of step t: encoded from the float ring (codes depend on the data only), missing when not held. */
static int16_t code_of(struct ps_engine *e, int64_t t) { return ps_analog_encode(&e->an, at(e, t)); }

/* Window d's step t, for d = 1 .. win_n. */
static int16_t *win_slot(struct ps_engine *e, size_t d, int64_t t) {
  return e->code + e->lay.cap + (d - 1) * e->lay.win_cap + ps_ring_slot(t, e->lay.win_cap);
}

/* The codes laid out as `want`: those the old ring of the newest steps holds copied (none when `all`: a
 * bulk load's puts left them, store), the others encoded from the float ring; kept as they were when the
 * allocation fails (the library then misses the steps beyond them). */
static void codes_build(struct ps_engine *e, const struct codes_layout *want, int all) {
  int16_t *c = malloc(codes_size(want) * sizeof *c);
  if (c == NULL) return;
  uint64_t held = all ? 0 : e->len < e->lay.cap ? e->len : e->lay.cap;
  /* the steps of each part: the newest ring's, then each window's (hi - win_cap, hi] */
  for (size_t d = 0; d <= want->win_n; d++) {
    size_t n = d == 0 ? want->cap : want->win_cap, base = d == 0 ? 0 : want->cap + (d - 1) * n;
    int64_t hi = e->newest + (d == 0 ? 0 : (int64_t)want->win_after - (int64_t)(d * want->win_period));
    for (int64_t t = hi - (int64_t)n + 1; t <= hi; t++)
      c[base + ps_ring_slot(t, n)] =
          (uint64_t)(e->newest - t) < held ? e->code[ps_ring_slot(t, e->lay.cap)] : code_of(e, t);
  }
  free(e->code);
  e->code = c;
  e->lay = *want;
  ps_eng_analog_forget(e);
}

/* The windows slid from newest step `from` to the newest: each takes the steps that enter it (O(win_n) a
 * step), whose slots are those of the steps that leave it. */
static void codes_advance(struct ps_engine *e, int64_t from) {
  if (e->lay.win_n == 0) return;
  int64_t lo = e->newest - (int64_t)e->lay.win_cap + 1;
  for (int64_t s = from + 1 > lo ? from + 1 : lo; s <= e->newest; s++)
    for (size_t d = 1; d <= e->lay.win_n; d++) {
      int64_t t = s + (int64_t)e->lay.win_after - (int64_t)(d * e->lay.win_period);
      *win_slot(e, d, t) = code_of(e, t);
    }
}

/* The codes laid out for the period the refit found (the steps a new layout adds are encoded again from
 * the float ring); not during a bulk load's learning, which holds every step's code (ps_engine_bulk_end). */
static void codes_fit(struct ps_engine *e) {
  struct codes_layout want = codes_layout(e, e->period);
  if (memcmp(&want, &e->lay, sizeof want) != 0) codes_build(e, &want, 0); /* size_t fields: no padding */
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
    codes_fit(e);
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
  size_t row = ps_ring_slot(t, e->h + 1);
  learn_coverage(e, t);
  if (e->pend_at[row] == t) {
    /* The window (t - h, t] is complete: score every forecast made for it h steps ago. */
    double act = window_peak(e, t - (int64_t)e->h + 1, t);
    const float *p = &e->pend[row * P_WIDTH];
    if (act > -INFINITY) {
      for (int m = 0; m <= P_AUTO; m++)
        if (p[m] == p[m]) ps_eng_push_error(&e->s[m], act - p[m]);
      int a = e->cfg.model == PS_MODEL_AUTO ? P_BASE : (int)e->cfg.model;
      if (p[a] == p[a]) ps_eng_margin_error(e, act - p[a], t - (int64_t)e->h);
      ps_peak_learn(&e->peak, act, p[PS_MODEL_PEAK]);
      /* Auto's candidates (their biases, scores and choice): a fixed model never reads them. */
      int lv = ps_eng_by_level(e);
      double pf = lv ? ps_pm_factor(&e->pm, t - (int64_t)e->h) : 1;
      int paired = e->an_stride > 1 && p[P_CAND + PS_MODEL_ANALOG] == p[P_CAND + PS_MODEL_ANALOG];
      for (int c = 0; c < N_CANDS && e->cfg.model == PS_MODEL_AUTO; c++) {
        double cap = c < PS_MODEL_AUTO && e->s[c].count > 0 ? BIAS_CAP * mae(&e->s[c]) : INFINITY;
        if (!(p[P_CAND + c] == p[P_CAND + c])) continue;
        if (paired) e->an_paired[c] += fabs(act - p[P_CAND + c]);
        ps_eng_cand_error(&e->c[c], act - p[P_CAND + c], e->h, cap, c == PS_MODEL_ANALOG);
        if (lv) ps_eng_cand_quantile(&e->c[c], act - p[P_CAND + c], e->cfg.target_coverage, e->cov.rate, pf);
      }
    }
  }
  float *slot = e->hw.period > 0 ? &e->hw.season[ps_ring_slot(t, e->hw.period)] : NULL;
  ps_hw_step(&e->hw.p, &e->hw.c, slot, t, y);
  note_value(e, t, y);
  if (y == y) moments_add(&e->cold_n, &e->cold_mean, &e->cold_m2, y);
  ps_peak_add(&e->peak, y);
  if (e->an_stride == 1 || ps_ring_slot(t, AN_BULK_SPREADS) == 0) { /* a bulk load's: AN_BULK_SPREADS */
    struct ps_analog_ring codes = ps_eng_codes(e);
    ps_analog_learn(&e->an, &codes, t, e->an_stride == 1 ? 1 : AN_BULK_SPREADS);
  }
  e->learned = t;
  e->n_learned++;
  if (e->n_learned >= e->next_refit) refit(e, 0);
  if (e->cfg.model == PS_MODEL_AUTO) ps_eng_choose(e);

  int64_t target = t + (int64_t)e->h;
  row = ps_ring_slot(target, e->h + 1);
  e->pend_at[row] = target;
  float *p = &e->pend[row * P_WIDTH];
  if (!e->has_last_valid) {
    for (int i = 0; i < P_WIDTH; i++) p[i] = NAN;
    return;
  }
  struct origin o;
  ps_eng_origin_learned(e, &o);
  double raw[PS_MODEL_AUTO];
  ps_eng_window_max(e, &o, t + 1, target, raw, -1);
  for (int m = 0; m < PS_MODEL_AUTO; m++) p[m] = (float)raw[m];
  for (int c = 0; c < N_CANDS; c++)
    p[P_CAND + c] = e->cfg.model == PS_MODEL_AUTO ? (float)ps_eng_cand_value(e, c, raw) : NAN;
  p[P_AUTO] = e->cfg.model == PS_MODEL_AUTO ? p[P_CAND + e->sel] : p[e->cfg.model];
  p[P_BASE] = e->cfg.model == PS_MODEL_AUTO ? p[P_CAND + e->base] : p[e->cfg.model];
}

/* Forgets the samples and the models' level (a gap longer than the history, or the first put); keeps
 * the season, the fitted parameters and the error records, which describe the workload, not the data. */
static void restart(struct ps_engine *e, int64_t t) {
  for (size_t i = 0; i < e->cap; i++) e->v[i] = NAN;
  for (size_t i = 0; i < codes_size(&e->lay); i++) e->code[i] = PS_ANALOG_MISSING;
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
  ps_eng_analog_forget(e);
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
  struct codes_layout cl = codes_layout(e, c->period_ms > 0 ? (size_t)(c->period_ms / c->step_ms) : 0);
  codes_build(e, &cl, 1); /* every code missing; e->code stays NULL when it cannot allocate */
  e->pend = malloc((e->h + 1) * P_WIDTH * sizeof *e->pend);
  e->pend_at = malloc((e->h + 1) * sizeof *e->pend_at);
  e->damp = malloc((e->h + 1) * sizeof *e->damp);
  int cov_rc = ps_cov_init(&e->cov, c->target_coverage, e->h, c->step_ms);
  if (e->v == NULL || e->code == NULL || e->pend == NULL || e->pend_at == NULL || e->damp == NULL ||
      cov_rc != 0) {
    ps_engine_free(e);
    return UV_ENOMEM;
  }
  for (size_t k = 0; k <= e->h; k++) e->damp[k] = ps_hw_damp_sum((int64_t)k);
  ps_hw_init(&e->hw);
  e->hash = mix(2166136261u, c->seed);
  e->sel = e->base = PS_MODEL_LAST;
  ps_pm_init(&e->pm);
  e->pm_now = 1;
  e->cold_z = c->target_coverage > 0 ? ps_cov_peak_z(c->target_coverage, e->h) : 0;
  ps_peak_init(&e->peak, e->h);
  ps_analog_init(&e->an);
  e->an_stride = 1;
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
  free(e->code);
  free(e->pend);
  free(e->pend_at);
  free(e->damp);
  free(e);
}

/* Ring entry i holds step t's v: the float the models read; and the code the analog model reads, at
 * t mod lay.cap (a bulk load's puts leave the codes to ps_engine_bulk_end, which encodes them at once; the
 * windows take a step much later, codes_advance). */
static void store(struct ps_engine *e, size_t i, int64_t t, double v) {
  e->v[i] = (float)v;
  if (!e->bulk) e->code[ps_ring_slot(t, e->lay.cap)] = ps_analog_encode(&e->an, (float)v); /* as code_of */
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
    store(e, 0, t, v);
    e->len = 1;
    return 0;
  }
  if (t <= e->newest) {
    /* A revision of one of the provisional steps (engine.h), or too old. */
    uint64_t k = (uint64_t)e->newest - (uint64_t)t;
    if (k > PS_ENGINE_REVISABLE || k >= e->len) return UV_ERANGE;
    size_t i = (e->head + e->cap - (size_t)k) % e->cap, ci = ps_ring_slot(t, e->lay.cap);
    int16_t was = e->code[ci];
    store(e, i, t, v);
    if (e->code[ci] != was) ps_eng_analog_forget(e); /* its kept ratios read the old code (AN_CACHE) */
    return 0;
  }
  uint64_t gap = (uint64_t)t - (uint64_t)e->newest;
  if (gap >= e->cap) {
    /* Longer than the history: nothing held is still relevant to the step that follows. */
    restart(e, t);
    store(e, 0, t, v);
    e->len = 1;
    return 0;
  }
  for (uint64_t i = 0; i < gap; i++) {
    e->head = (e->head + 1) % e->cap;
    store(e, e->head, e->newest + 1 + (int64_t)i, NAN);
    if (e->len < e->cap) e->len++;
  }
  store(e, e->head, t, v);
  int64_t from = e->newest;
  e->newest = t;
  if (!e->bulk) codes_advance(e, from); /* a bulk load's end lays the codes out afresh */
  /* Learn every step that is now older than the provisional ones (a gap learns its missing steps);
   * a bulk load leaves them to ps_engine_bulk_end. */
  if (!e->bulk)
    while (e->newest - e->learned > PROVISIONAL) learn(e, e->learned + 1);
  return 0;
}

void ps_engine_bulk_begin(struct ps_engine *e) { e->bulk = 1; }

/* The steps a bulk load learns one by one at its end: enough for every error ring to fill
 * (PS_ENGINE_ERRORS), for auto's scores to forget their start (1/SCORE_DECAY = 64 errors, 16 times over;
 * the choice's, 1/SEL_DECAY = 256, 8 times)
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
  /* Every held step's code, for the spreads and the replay to read however old (the puts left them,
   * store); laid out for the library once learned (codes_fit). The replay's forecasts read the library
   * of origins far behind the newest, as of the period the refit below finds. */
  e->codes_held = 1;
  struct codes_layout all = codes_layout(e, e->period);
  codes_build(e, &all, 1);
  int64_t upto = e->newest - PROVISIONAL; /* the step the puts would have learned up to */
  uint64_t m = upto > e->learned ? (uint64_t)(upto - e->learned) : 0, replay = bulk_replay(e);
  uint64_t stepwise = replay + PS_ENGINE_FIRST_REFIT;
  if (stepwise < PS_ENGINE_BULK_STEPWISE) stepwise = PS_ENGINE_BULK_STEPWISE;
  if (m > stepwise) {
    /* The older steps: what learn keeps of them besides the models' state (the refit below rebuilds
     * that from the whole history: its last run ends at the newest step it saw). Their errors would be
     * forgotten by the end of the replay, so none is computed. */
    int64_t skip_to = upto - (int64_t)replay;
    struct ps_analog_ring codes = ps_eng_codes(e);
    for (int64_t t = e->learned + 1; t <= skip_to; t++) {
      note_value(e, t, at(e, t));
      if (ps_ring_slot(t, AN_BULK_SPREADS) == 0) ps_analog_learn(&e->an, &codes, t, AN_BULK_SPREADS);
      e->n_learned++;
    }
    e->learned = skip_to;
    refit(e, 1);
  }
  uint64_t left = upto > e->learned ? (uint64_t)(upto - e->learned) : 0;
  e->an_stride = left > AN_BULK_SCORED ? left / AN_BULK_SCORED : 1;
  for (int c = 0; c < N_CANDS; c++) e->an_paired[c] = 0;
  while (e->newest - e->learned > PROVISIONAL) learn(e, e->learned + 1);
  if (e->an_stride > 1 && e->cfg.model == PS_MODEL_AUTO) ps_eng_analog_calibrate(e);
  e->an_stride = 1;
  e->codes_held = 0;
  codes_fit(e);
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
  if (answering == PS_MODEL_AUTO && !ps_eng_usable(e, e->sel))
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
    *qz = level == e->cfg.target_coverage && e->q_total == e->z.total ? e->q_val
                                                                      : ps_eng_quantile(&e->z, level);
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
  ps_eng_origin_newest(e, &o, a);
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
  ps_eng_window_max(e, &o, lo, hi, raw, a == PS_MODEL_AUTO ? -1 : a);
  double pred = a == PS_MODEL_AUTO ? ps_eng_cand_value(e, e->sel, raw) : raw[a];
  if (!isfinite(pred)) pred = o.last;
  out->predicted = pred;
  /* The answer's base (QSCORE_DECAY); the margin reported is the answer's distance from pred. */
  double base = a == PS_MODEL_AUTO && e->base != e->sel ? ps_eng_cand_value(e, e->base, raw) : pred;
  if (!isfinite(base)) base = pred;

  double level = e->cfg.target_coverage > 0 ? e->cfg.target_coverage : e->cfg.quantile;
  if (level > 0 && e->z.count >= PS_ENGINE_MIN_ERRORS && e->q_total != e->z.total) {
    e->q_total = e->z.total;
    e->q_val = ps_eng_quantile(&e->z, level);
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
  return sizeof *e + e->cap * sizeof *e->v + codes_size(&e->lay) * sizeof *e->code +
         e->hw.period * sizeof *e->hw.season +
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
      margin[j] = scaled_margin(e, ps_eng_select_rank(a, lo, n - 1, k));
      lo = k;
    }
    margin[j] += e->base_now - e->pred_now;
    value[j] = answer(r->predicted, margin[j], r->current);
  }
  return 0;
}
