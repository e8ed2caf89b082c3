/* The engine's h-step errors (engine_int.h, engine.c): the rings of signed errors (their MAE: mae,
 * engine_int.h), each candidate's quantile offset (its median correction and score: ps_eng_cand_error,
 * inline in engine_int.h), the quantile margin's standardized errors and their scale, and the quantiles
 * taken of a ring by selection. Apart from engine.c because they are arithmetic on one error at a time:
 * they read no history and no model. */
#include <math.h>
#include <string.h>

#include "engine_int.h"
#include "phase_margin.h"

/* ---- errors -------------------------------------------------------------------------------------- */

void ps_eng_push_error(struct series *s, double err) {
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

/* The answer's base's score (QSCORE_DECAY): err is of the candidate's corrected forecast, scale its error
 * size times the phase factor at the forecast's origin, rate the step per outcome. After ps_eng_cand_error.
 */
void ps_eng_cand_quantile(struct cand *c, double err, double level, double rate, double pf) {
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
void ps_eng_margin_error(struct ps_engine *e, double err, int64_t origin) {
  /* Not an error that is not 0 against a scale of 0: after exact forecasts (an integer load, a short
   * window), it would stand in the ring as 1e9 error sizes (over VOL_FLOOR), and the quantile's margin
   * with it; it sets the scale instead, as the first error does. Exact errors still go in as 0: a
   * constant series then has its ring, and answers with no margin. */
  if (e->vol_n > 0 && (e->vol > 0 || err == 0)) {
    double s = fmax(e->vol, VOL_FLOOR) * ps_pm_factor(&e->pm, origin);
    if (e->z_skip++ % e->z_stride == 0) ps_eng_push_error(&e->z, err / s);
    ps_pm_learn(&e->pm, origin, fabs(err) / s);
  }
  e->vol = e->vol_n == 0 || e->vol == 0 ? fabs(err) : e->vol + VOL_DECAY * (fabs(err) - e->vol);
  if (e->vol_n < UINT32_MAX) e->vol_n++;
}

/* The element of rank k of a[lo..hi] (ranks count from a[0]; a[..lo) is below and a(hi..] above it),
 * by selection (Lomuto partitions) in place: O(hi - lo) on average. Leaves a(k..hi] >= a[k]. */
double ps_eng_select_rank(float *a, size_t lo, size_t hi, size_t k) {
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
double ps_eng_quantile(const struct series *s, double q) {
  float a[PS_ENGINE_ERRORS];
  size_t n = s->count;
  memcpy(a, s->err, n * sizeof *a);
  size_t k = (size_t)ceil(q * (double)n);
  k = k == 0 ? 0 : k - 1;
  if (k >= n) k = n - 1;
  return ps_eng_select_rank(a, 0, n - 1, k);
}
