/* The engine's forecasts (engine_int.h, engine.c): a forecast's origin (the models' state as of the newest
 * learned step, or of the newest step with the provisional ones applied to copies), each model's maximum
 * over a window, auto's candidates' values and its choice among them. Apart from engine.c because they only
 * read the state the learning step keeps: nothing here writes the history or the models, ps_eng_choose
 * excepted (auto's weights and selection). */
#include <math.h>

#include "engine_int.h"
#include "holtwinters.h"
#include "peak.h"

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
void ps_eng_origin_learned(const struct ps_engine *e, struct origin *o) {
  origin_state(e, o);
  fit_linear(e, o);
}

/* The origin at the newest step: the provisional steps applied to copies, the line fitted once there.
 * Only what answering model a reads (every model for auto): a fixed model's forecast reads neither
 * Holt-Winters' state nor the line of another (o->hw is then left at the learned step, lin_ok 0). */
void ps_eng_origin_newest(const struct ps_engine *e, struct origin *o, int a) {
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
      if (e->hw.period > 0 && ps_ring_slot(o->over_at[i], e->hw.period) == ps_ring_slot(t, e->hw.period))
        s = o->over[i];
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

void ps_eng_analog_forget(struct ps_engine *e) {
  for (int i = 0; i < AN_CACHE; i++) e->an_at[i] = INT64_MIN;
}

/* The analog model's window peak from origin o (AN_CACHE): NaN when it cannot answer, and on the learned
 * steps of a bulk load's replay but one in an_stride (AN_BULK_SCORED: then it is not scored). */
static double analog(struct ps_engine *e, const struct origin *o) {
  if (e->h > PS_ANALOG_MAX_H || (o->idx <= e->learned && ps_ring_slot(o->idx, e->an_stride) != 0)) return NAN;
  size_t slot = ps_ring_slot(o->idx, AN_CACHE);
  if (e->an_at[slot] != o->idx || e->an_epoch[slot] != e->an.epoch || e->an_period[slot] != e->period) {
    struct ps_analog_ring codes = ps_eng_codes(e);
    e->an_ratio[slot] = ps_analog_ratio(&e->an, &codes, o->idx, e->h, e->period);
    e->an_at[slot] = o->idx;
    e->an_epoch[slot] = e->an.epoch;
    e->an_period[slot] = e->period;
  }
  double r = e->an_ratio[slot];
  return r == r && o->last == o->last ? ps_analog_value(&e->an, r, o->last) : NAN;
}

/* The maxima of each model's forecast over steps lo..hi (lo > o->idx): raw[m] for m < PS_MODEL_AUTO; the
 * analog model's NaN when it has none (the others answer the last value then). */
void ps_eng_window_max(struct ps_engine *e, const struct origin *o, int64_t lo, int64_t hi,
                       double raw[PS_MODEL_AUTO], int only) {
  for (int m = 0; m < PS_MODEL_AUTO; m++) {
    raw[m] = fallback(o);
    if (only >= 0 && m != only) continue;
    if (m == PS_MODEL_PEAK) { /* the window's peak directly, whatever its length */
      double pk = ps_peak_forecast(&o->pk);
      if (pk == pk) raw[m] = pk;
      continue;
    }
    if (m == PS_MODEL_ANALOG) { /* the window's peak after o->idx, from the rows most like it */
      raw[m] = analog(e, o);
      continue;
    }
    if (m == PS_MODEL_LAST || hi < lo) continue;
    raw[m] = model_max(e, o, m, lo, hi);
  }
}

/* Candidate c's median correction: the peak model learns its own (its k, peak.h), so none is added. */
static double cand_bias(const struct ps_engine *e, int c) {
  return c == PS_MODEL_PEAK || c == PS_MODEL_ANALOG ? 0 : e->c[c].bias;
}

/* Candidate c's forecast of the window maximum, given the models' raw maxima; NaN for a model without one
 * (the analog model's: then its candidate is not scored, and an answer falls back on the last value). */
double ps_eng_cand_value(const struct ps_engine *e, int c, const double raw[PS_MODEL_AUTO]) {
  double f = 0;
  if (c == C_BLEND) { /* a model without a forecast (NaN: the analog model's) leaves the others' weights */
    double left = 0;
    for (int m = 0; m < PS_MODEL_AUTO; m++)
      if (e->w[m] > 0) {
        if (raw[m] == raw[m])
          f += e->w[m] * (raw[m] + cand_bias(e, m));
        else
          left += e->w[m];
      }
    if (left > 0) f = left < 1 ? f / (1 - left) : NAN;
  } else if (c >= 0 && c < PS_MODEL_AUTO) {
    if (!(raw[c] == raw[c])) return NAN;
    f = raw[c] + cand_bias(e, c);
  }
  return isfinite(f) ? f : raw[PS_MODEL_LAST];
}

/* ---- auto's choice ------------------------------------------------------------------------------- */

/* The end of a bulk load's replay that scored the analog model on one row in an_stride (AN_BULK_SCORED),
 * unusable meanwhile: its scores become those of the candidate auto forecasts with, times the ratio of
 * their absolute errors on the rows both were scored on (a paired estimate: the rows' own difficulty, a
 * burst's onset that every candidate missed, cancels); then auto chooses as after any step. */
void ps_eng_analog_calibrate(struct ps_engine *e) {
  int a = PS_MODEL_ANALOG, ref = e->sel;
  e->an_stride = 1; /* the analog model is usable again */
  if (ref != a && ps_eng_usable(e, a) && ps_eng_usable(e, ref) && e->an_paired[ref] > 0 &&
      e->an_paired[a] > 0) {
    e->c[a].score = e->c[ref].score * e->an_paired[a] / e->an_paired[ref];
    e->c[a].slow = e->c[ref].slow * e->an_paired[a] / e->an_paired[ref];
  }
  ps_eng_choose(e);
}

/* The candidate of the least pinball loss, switching only once it beats the current one clearly; the MAE
 * choice until the candidates saw Q_MISSES / (1 - level) errors (Q_MISSES). */
static void choose_base(struct ps_engine *e) {
  int best = -1;
  for (int c = 0; c < N_CANDS; c++)
    if (ps_eng_usable(e, c) && (best < 0 || e->c[c].qscore < e->c[best].qscore)) best = c;
  if (best < 0 || (double)e->c[best].n < Q_MISSES / (1 - e->cfg.target_coverage)) {
    e->base = e->sel;
    return;
  }
  if (!ps_eng_usable(e, e->base) || e->c[best].qscore < Q_SWITCH * e->c[e->base].qscore) e->base = best;
}

/* Blend weights, then the candidate auto answers with: the best scoring one, but only once it beats the
 * current one clearly (SWITCH_RATIO), so noise does not flip the answer from step to step. */
void ps_eng_choose(struct ps_engine *e) {
  double best = INFINITY;
  for (int m = 0; m < PS_MODEL_AUTO; m++)
    if (ps_eng_usable(e, m) && e->c[m].score < best) best = e->c[m].score;
  double sum = 0;
  for (int m = 0; m < PS_MODEL_AUTO; m++) {
    e->w[m] = 0;
    if (!ps_eng_usable(e, m) || e->c[m].score > BLEND_CUTOFF * best) continue;
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
    if (!ps_eng_usable(e, c)) continue;
    if (cand < 0 || ps_eng_sel_score(e, c) < ps_eng_sel_score(e, cand)) cand = c;
  }
  if (cand < 0) {
    e->sel = e->base = PS_MODEL_LAST;
    return;
  }
  if (!ps_eng_usable(e, e->sel) || ps_eng_sel_score(e, cand) < SWITCH_RATIO * ps_eng_sel_score(e, e->sel))
    e->sel = cand;
  if (ps_eng_by_level(e))
    choose_base(e);
  else
    e->base = e->sel;
}
