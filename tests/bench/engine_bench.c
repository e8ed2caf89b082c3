/* `make bench`: the forecasting engine's cost per target, as the server pays it.
 *
 * 10,000 targets (--targets N), each holding one week of 1-minute history (10,080 samples) of a synthetic
 * load: a daily cycle whose shape differs by target, weekends at 60-75 % of weekdays, a slow drift,
 * Gaussian noise, and one sample in 1,000 missing. Model auto, period auto, lookahead 5 minutes: the
 * most expensive configuration (every model scored, the period detected).
 *
 * Figures (medians over several runs; the machine is shared and noisy, so the median is quoted and the
 * spread printed beside it; clock_gettime(CLOCK_MONOTONIC)):
 *  - first load: one engine fed its whole week, sample by sample (includes the refits that run on the
 *    way), per target;
 *  - refresh: what targets.c does every step for each target: put the newest PS_ENGINE_REVISABLE steps
 *    again (revisions), put the new sample, forecast; timed over all targets, divided by their number;
 *  - refit: a put that runs period detection and the parameter search, timed one put at a time on a
 *    subset of targets carried through a whole refit interval (each target's slowest put);
 *  - percent of one core to keep 10,000 targets refreshed at a 15 s step: (refresh + refit / its
 *    interval in steps) x 10,000 / 15 s. The costs measured at 1-minute steps stand in for 15 s ones:
 *    a refresh is O(1) in the history; a week at 15 s holds 4 x the samples, so a refit costs at most
 *    4 x as much (period detection averages long histories down first) but comes every history / 2
 *    steps, 4 x as many: its share per refresh stays the same or falls;
 *  - bytes per stored sample: ps_engine_memory over the samples held;
 *  - bulk first load (what targets.c does now): the week's samples decoded first, then timed from
 *    ps_engine_bulk_begin through the 10,080 puts to ps_engine_bulk_end, beside the same targets loaded
 *    put by put, interleaved target by target; with the refits and learned steps each ran
 *    (ps_engine_counts) and how far the two forecasts are apart;
 *  - first load in slices (targets.c feeds a long history PS_TARGET_LOAD_SLICE samples per loop turn): the
 *    longest slice of each target's week, the same without the refits that land in it (a refit runs
 *    inside one put and cannot be split), and the longest single put; for the slice in use and for a
 *    quarter and four times as many, to show what the size trades.
 *
 * Never pass/fail on speed: the targets are printed beside the figures. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "targets.h" /* PS_TARGET_LOAD_SLICE */

#define STEP_MS           60000LL
#define WEEK_STEPS        10080 /* one week at 1 minute */
#define LOOKAHEAD_MS      (5 * 60000LL)
#define DEFAULT_TARGETS   10000
#define DEFAULT_ROUNDS    15   /* refresh rounds over all targets */
#define DEFAULT_RUNS      5    /* repetitions of the first-load measurement (subset) */
#define REFIT_SUBSET      40   /* targets carried through a refit interval */
#define SERVER_STEP_S     15.0 /* the figure's refresh interval */
#define TARGET_PERCENT    2.0
#define TARGET_BYTES      8.5
#define MISSING_PER_MILLE 1
#define TARGET_BULK_MS    3.0 /* issue 11: a week at 1 minute, decoded samples to a forecast */
#define REFIT_PUT_NS      1e6 /* a put this slow ran a refit (a plain put takes a few microseconds) */

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
  if (n == 0) return NAN;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the synthetic load ------------------------------------------------------------------------- */

/* splitmix64: a deterministic stream per target, so every run sees the same data. */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(mix(s) >> 11) / 9007199254740992.0; }
static double gauss(uint64_t *s) {
  double u = uniform(s), v = uniform(s);
  if (u < 1e-300) u = 1e-300;
  return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

struct load {
  uint64_t rng;
  double base, amp, phase, sharp, weekend, drift, noise;
};

static void load_init(struct load *l, uint64_t id) {
  l->rng = id * 0x2545F4914F6CDD1DULL + 1;
  l->base = 20 + 200 * uniform(&l->rng);
  l->amp = 0.3 + 0.5 * uniform(&l->rng);
  l->phase = 2 * M_PI * uniform(&l->rng);
  l->sharp = 1 + 3 * uniform(&l->rng); /* peakier days for some targets */
  l->weekend = 0.6 + 0.15 * uniform(&l->rng);
  l->drift = (uniform(&l->rng) - 0.5) * 0.2; /* +-10 % per week */
  l->noise = 0.02 + 0.06 * uniform(&l->rng);
}

/* The load at step k (minutes since a Monday 00:00). */
static double load_at(struct load *l, int64_t k) {
  if ((int64_t)(mix(&l->rng) % 1000) < MISSING_PER_MILLE) return NAN;
  double day = (double)(k % 1440) / 1440.0;
  int weekday = (int)(k / 1440 % 7);
  double d = 0.5 + 0.5 * sin(2 * M_PI * day + l->phase);
  double shape = pow(d, l->sharp);
  double week = weekday >= 5 ? l->weekend : 1.0;
  double trend = 1 + l->drift * (double)k / WEEK_STEPS;
  double v = l->base * trend * week * (1 - l->amp + 2 * l->amp * shape);
  v *= 1 + l->noise * gauss(&l->rng);
  return v < 0 ? 0 : v;
}

/* ---- one target --------------------------------------------------------------------------------- */

struct target {
  struct ps_engine *e;
  struct load l;
  int64_t next;                         /* step index of the next new sample */
  double last[PS_ENGINE_REVISABLE + 1]; /* the newest values, for the revisions a refresh re-puts */
};

static double target_coverage; /* --target-coverage: 0 = the quantile (0) answers, as before */

static int target_new(struct target *t, uint64_t id) {
  struct ps_engine_config c = {
      .model = PS_MODEL_AUTO,
      .step_ms = STEP_MS,
      .period_ms = 0,
      .lookahead_ms = LOOKAHEAD_MS,
      .capacity = WEEK_STEPS + 1,
      .quantile = 0,
      .target_coverage = target_coverage,
      .seed = (uint32_t)(id * 2654435761u),
  };
  load_init(&t->l, id);
  t->next = 0;
  return ps_engine_new(&c, &t->e);
}

/* One new sample, as the server learns it. */
static void put_next(struct target *t) {
  double v = load_at(&t->l, t->next);
  memmove(t->last, t->last + 1, sizeof t->last - sizeof t->last[0]);
  t->last[PS_ENGINE_REVISABLE] = v;
  ps_engine_put(t->e, t->next * STEP_MS, v);
  t->next++;
}

static void fill_week(struct target *t) {
  while (t->next < WEEK_STEPS) put_next(t);
}

/* targets.c's refresh: the newest PS_ENGINE_REVISABLE steps again, the new one, then the forecast. */
static void refresh(struct target *t, struct ps_engine_result *r) {
  for (int k = PS_ENGINE_REVISABLE; k >= 1; k--)
    if (t->next - k >= 0) ps_engine_put(t->e, (t->next - k) * STEP_MS, t->last[PS_ENGINE_REVISABLE + 1 - k]);
  put_next(t);
  ps_engine_forecast(t->e, (t->next - 1) * STEP_MS + 1000, r);
}

/* One target's week fed as targets.c feeds a first load, `slice` puts at a time: its longest slice, that
 * slice time without the refits in it, and its longest put. */
static void fill_sliced(struct target *t, size_t slice, double *longest, double *no_refit, double *put_max) {
  *longest = *no_refit = *put_max = 0;
  while (t->next < WEEK_STEPS) {
    double a = now_ns(), refits = 0;
    for (size_t k = 0; k < slice && t->next < WEEK_STEPS; k++) {
      double b = now_ns();
      put_next(t);
      double d = now_ns() - b;
      if (d > *put_max) *put_max = d;
      if (d > REFIT_PUT_NS) refits += d;
    }
    double d = now_ns() - a;
    if (d > *longest) *longest = d;
    if (d - refits > *no_refit) *no_refit = d - refits;
  }
}

/* The bulk first load against the put-by-put one on `sub` targets, interleaved (bulk, then puts, target
 * by target) so that the noise of the shared machine falls on both alike. */
static int bench_bulk(size_t first_id, size_t sub) {
  double *bulk_ns = malloc(sub * sizeof *bulk_ns), *put_ns = malloc(sub * sizeof *put_ns);
  double *rel = malloc(sub * sizeof *rel);
  int64_t *tm = malloc(WEEK_STEPS * sizeof *tm);
  double *vs = malloc(WEEK_STEPS * sizeof *vs);
  if (bulk_ns == NULL || put_ns == NULL || rel == NULL || tm == NULL || vs == NULL) return 1;
  struct ps_engine_counts cb = {0}, cp = {0};
  size_t same_model = 0, same_period = 0;
  for (size_t i = 0; i < sub; i++) {
    struct target tb, tp;
    if (target_new(&tb, first_id + i) != 0 || target_new(&tp, first_id + i) != 0) return 1;
    for (int64_t k = 0; k < WEEK_STEPS; k++) { /* the decoded samples, as prom.c hands them over */
      tm[k] = k * STEP_MS;
      vs[k] = load_at(&tb.l, k);
    }
    double a = now_ns();
    ps_engine_bulk_begin(tb.e);
    for (size_t k = 0; k < WEEK_STEPS; k++) ps_engine_put(tb.e, tm[k], vs[k]);
    ps_engine_bulk_end(tb.e);
    struct ps_engine_result rb, rp;
    ps_engine_forecast(tb.e, (WEEK_STEPS - 1) * STEP_MS + 1000, &rb);
    bulk_ns[i] = now_ns() - a;
    a = now_ns();
    for (size_t k = 0; k < WEEK_STEPS; k++) ps_engine_put(tp.e, tm[k], vs[k]);
    ps_engine_forecast(tp.e, (WEEK_STEPS - 1) * STEP_MS + 1000, &rp);
    put_ns[i] = now_ns() - a;
    struct ps_engine_counts c;
    ps_engine_counts(tb.e, &c);
    cb.refits += c.refits;
    cb.learns += c.learns;
    ps_engine_counts(tp.e, &c);
    cp.refits += c.refits;
    cp.learns += c.learns;
    rel[i] = fabs(rb.value - rp.value) / fmax(fabs(rp.value), 1e-9);
    same_model += rb.chosen == rp.chosen;
    same_period += rb.period_ms == rp.period_ms;
    ps_engine_free(tb.e);
    ps_engine_free(tp.e);
  }
  double mb = median(bulk_ns, sub), mp = median(put_ns, sub), mr = median(rel, sub);
  printf("  bulk first load (decoded samples to a forecast): median %.2f ms per target (10,000 in %.1f s), "
         "put by put %.2f ms in the same run: ratio %.3f   target <= %.1f ms\n",
         mb / 1e6, mb * 1e4 / 1e9, mp / 1e6, mb / mp, TARGET_BULK_MS);
  printf(
      "    per target: %.2f refits and %.0f steps learned one by one (put by put: %.2f and %.0f); over %zu "
      "targets the answers differ by %.2f %% (median), the same model %zu, the same period %zu\n",
      (double)cb.refits / (double)sub, (double)cb.learns / (double)sub, (double)cp.refits / (double)sub,
      (double)cp.learns / (double)sub, sub, mr * 100, same_model, same_period);
  free(bulk_ns);
  free(put_ns);
  free(rel);
  free(tm);
  free(vs);
  return 0;
}

/* ---- main --------------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr, "usage: engine_bench [--targets N] [--rounds N] [--runs N] [--target-coverage C]\n");
  exit(2);
}

int main(int argc, char **argv) {
  size_t n = DEFAULT_TARGETS, rounds = DEFAULT_ROUNDS, runs = DEFAULT_RUNS;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--target-coverage")) {
      target_coverage = strtod(argv[++i], NULL);
      if (!(target_coverage > 0 && target_coverage < 1)) usage();
      continue;
    }
    long v = strtol(argv[i + 1], NULL, 10);
    if (v <= 0) usage();
    if (!strcmp(argv[i], "--targets"))
      n = (size_t)v;
    else if (!strcmp(argv[i], "--rounds"))
      rounds = (size_t)v;
    else if (!strcmp(argv[i], "--runs"))
      runs = (size_t)v;
    else
      usage();
    i++;
  }
  struct target *ts = calloc(n, sizeof *ts);
  double *per_target = malloc(n * sizeof *per_target);
  double *round_ns = malloc(rounds * sizeof *round_ns);
  if (ts == NULL || per_target == NULL || round_ns == NULL) return 1;
  printf("engine bench: %zu targets, one week of 1-minute history (%d samples each), model auto, period "
         "auto, lookahead 5m, target coverage %g\n",
         n, WEEK_STEPS, target_coverage);

  /* First load of every target (each timed on its own). */
  double t0 = now_ns();
  for (size_t i = 0; i < n; i++) {
    if (target_new(&ts[i], i) != 0) {
      fprintf(stderr, "engine_bench: ps_engine_new failed for target %zu\n", i);
      return 1;
    }
    double a = now_ns();
    fill_week(&ts[i]);
    per_target[i] = now_ns() - a;
  }
  double fill_total = now_ns() - t0;
  double fill_med = median(per_target, n);
  printf("  first load (10,080 puts, refits included): median %.2f ms per target, all %zu in %.1f s\n",
         fill_med / 1e6, n, fill_total / 1e9);

  /* Memory per stored sample. */
  size_t mem = 0;
  for (size_t i = 0; i < n; i++) mem += ps_engine_memory(ts[i].e);
  double bytes_per_sample = (double)mem / ((double)n * WEEK_STEPS);

  /* What the engines concluded, for the record. */
  struct ps_engine_result r;
  size_t chosen[PS_MODEL_COUNT] = {0}, daily = 0, weekly = 0, none = 0;
  char other[120] = ""; /* a few of the other periods found, in minutes */
  for (size_t i = 0; i < n; i++) {
    if (ps_engine_forecast(ts[i].e, (ts[i].next - 1) * STEP_MS + 1000, &r) != 0) continue;
    if ((int)r.chosen >= 0 && (int)r.chosen < PS_MODEL_COUNT) chosen[r.chosen]++;
    if (r.period_ms == 0)
      none++;
    else if (llabs(r.period_ms - 86400000LL) <= 86400000LL / 100)
      daily++; /* within 1 % */
    else if (llabs(r.period_ms - 7 * 86400000LL) <= 7 * 86400000LL / 100)
      weekly++;
    else if (strlen(other) < sizeof other - 24)
      snprintf(other + strlen(other), sizeof other - strlen(other), "%s%" PRId64 "m", other[0] ? " " : "",
               r.period_ms / 60000);
  }
  printf("  after the week: period 1d (+-1 %%) on %zu, 7d on %zu, none on %zu, other on %zu", daily, weekly,
         none, n - daily - weekly - none);
  if (n - daily - weekly - none > 0) printf(" (e.g. %s)", other);
  printf("; answering:");
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    if (chosen[m]) printf(" %s %zu", ps_model_name((enum ps_model)m), chosen[m]);
  printf("\n");

  /* Refresh rounds over every target. */
  for (size_t k = 0; k < rounds; k++) {
    double a = now_ns();
    for (size_t i = 0; i < n; i++) refresh(&ts[i], &r);
    round_ns[k] = now_ns() - a;
  }
  double rmin = round_ns[0], rmax = round_ns[0];
  for (size_t k = 0; k < rounds; k++) {
    if (round_ns[k] < rmin) rmin = round_ns[k];
    if (round_ns[k] > rmax) rmax = round_ns[k];
  }
  double refresh_ns = median(round_ns, rounds) / (double)n;
  printf("  refresh (%d revisions + 1 new put + forecast): median %.2f us per target over %zu rounds "
         "(rounds %.1f..%.1f ms for all)\n",
         PS_ENGINE_REVISABLE, refresh_ns / 1e3, rounds, rmin / 1e6, rmax / 1e6);

  /* Refits: a subset carried, one put at a time, through a whole refit interval (at most history / 2 x
   * 1.5 steps, engine.h), so each target refits at least once in it. A target's slowest put is its refit
   * (a refit reads the whole history: milliseconds, against a scheduler hiccup's tens of microseconds);
   * puts within a third of it count as refits too, for the interval. */
  size_t sub = n < REFIT_SUBSET ? n : REFIT_SUBSET;
  size_t span = WEEK_STEPS / 2 * 3 / 2 + 1;
  double *put_ns = malloc(span * sizeof *put_ns);
  double *slowest = malloc(sub * sizeof *slowest);
  double *plain = malloc(sub * sizeof *plain);
  if (put_ns == NULL || slowest == NULL || plain == NULL) return 1;
  size_t nref = 0;
  for (size_t i = 0; i < sub; i++) {
    for (size_t k = 0; k < span; k++) {
      double a = now_ns();
      put_next(&ts[i]);
      put_ns[k] = now_ns() - a;
    }
    double mx = 0;
    for (size_t k = 0; k < span; k++) mx = put_ns[k] > mx ? put_ns[k] : mx;
    for (size_t k = 0; k < span; k++) nref += put_ns[k] > mx / 3;
    slowest[i] = mx;
    plain[i] = median(put_ns, span);
  }
  double refit_ns = median(slowest, sub), put_med = median(plain, sub);
  double refit_every = (double)(sub * span) / (double)nref;
  printf("  refit (period detection + parameter search over the week): median %.2f ms; %zu seen in %zu "
         "targets x %zu steps (one per %.0f steps); a plain put %.2f us\n",
         refit_ns / 1e6, nref, sub, span, refit_every, put_med / 1e3);

  /* First load again, several runs on a subset, for a median over runs. */
  double *run_med = malloc(runs * sizeof *run_med);
  double *sub_fill = malloc(sub * sizeof *sub_fill);
  if (run_med == NULL || sub_fill == NULL) return 1;
  for (size_t k = 0; k < runs; k++) {
    for (size_t i = 0; i < sub; i++) {
      struct target t;
      if (target_new(&t, n + k * sub + i) != 0) return 1;
      double a = now_ns();
      fill_week(&t);
      sub_fill[i] = now_ns() - a;
      ps_engine_free(t.e);
    }
    run_med[k] = median(sub_fill, sub);
  }
  printf("  first load again: median of %zu runs of %zu targets: %.2f ms per target\n", runs, sub,
         median(run_med, runs) / 1e6);

  if (bench_bulk(n + (runs + 1) * sub, sub) != 0) return 1;

  /* First load in slices: medians over a subset of targets. */
  double *sl_long = malloc(sub * sizeof *sl_long), *sl_plain = malloc(sub * sizeof *sl_plain);
  double *sl_put = malloc(sub * sizeof *sl_put);
  if (sl_long == NULL || sl_plain == NULL || sl_put == NULL) return 1;
  const size_t slices[] = {PS_TARGET_LOAD_SLICE / 4, PS_TARGET_LOAD_SLICE, PS_TARGET_LOAD_SLICE * 4};
  for (size_t k = 0; k < sizeof slices / sizeof slices[0]; k++) {
    for (size_t i = 0; i < sub; i++) {
      struct target t;
      if (target_new(&t, n + runs * sub + i) != 0) return 1;
      fill_sliced(&t, slices[k], &sl_long[i], &sl_plain[i], &sl_put[i]);
      ps_engine_free(t.e);
    }
    printf("  first load in slices of %zu%s: longest slice median %.2f ms, %.2f ms without its refits; "
           "longest put (a refit) %.2f ms\n",
           slices[k], slices[k] == PS_TARGET_LOAD_SLICE ? " (PS_TARGET_LOAD_SLICE)" : "",
           median(sl_long, sub) / 1e6, median(sl_plain, sub) / 1e6, median(sl_put, sub) / 1e6);
  }

  /* The derived figures. */
  double amortized_ns = refresh_ns + refit_ns / refit_every;
  double pct = amortized_ns * (double)DEFAULT_TARGETS / (SERVER_STEP_S * 1e9) * 100;
  double pct_refresh = refresh_ns * (double)DEFAULT_TARGETS / (SERVER_STEP_S * 1e9) * 100;
  printf("  => percent of one core to refresh 10,000 targets every 15 s: %.2f %% (refresh %.2f %% + refits "
         "%.2f %%)   target <= %.1f %%\n",
         pct, pct_refresh, pct - pct_refresh, TARGET_PERCENT);
  printf(
      "  => memory: %.2f bytes per stored sample (%.1f KiB per target, %.0f MiB for %zu)   target <= %.1f\n",
      bytes_per_sample, (double)mem / (double)n / 1024, (double)mem / 1048576.0, n, TARGET_BYTES);

  for (size_t i = 0; i < n; i++) ps_engine_free(ts[i].e);
  free(ts);
  free(per_target);
  free(round_ns);
  free(put_ns);
  free(slowest);
  free(plain);
  free(run_med);
  free(sub_fill);
  free(sl_long);
  free(sl_plain);
  free(sl_put);
  return 0;
}
