/* The analog model (model: analog): a forecast of the lookahead window's peak from the past moments that
 * looked most like now (a nearest-neighbour, or analog, forecaster: Lorenz 1969; Farmer & Sidorowich 1987).
 *
 * A moment (a row) is described by 13 inputs, all differences or means of log loads: the last 11 steps
 * relative to the current one, the current one relative to the mean of the last 5 logs, and that mean.
 * What followed a row is r = log(peak of the next h steps) - log(now). The forecast takes the
 * PS_ANALOG_K rows of a bounded library nearest to now (each input in units of its own spread) and answers
 *
 *     now x exp(median of their r, each weighted by the inverse of its distance)
 *
 * The library: the last PS_ANALOG_RECENT rows whose window has ended, and the rows within
 * +-PS_ANALOG_WIDTH steps of the same phase in each of the last PS_ANALOG_PERIODS periods (when the engine
 * knows a period long enough for those not to overlap; otherwise the last PS_ANALOG_ROWS rows). On the
 * public traces the same phase over a week beats more recent rows (docs/forecasting.md, "How far the
 * window's peak can be forecast (bounds)": scripts/peak_knn_bounded.py chose these settings offline).
 *
 * Storage: 16-bit log codes of the steps the library reads, beside the engine's float ring (the rows'
 * inputs are recomputed from them at each forecast, 2 bytes a step where storing them would cost 14 or
 * more): a ring of the newest steps, and with a period a window around the same phase in each past period
 * that slides with it (ps_analog_layout): 3.6 KB at 1 minute, where a code for every step back to the 6th
 * day was 17.5 KB.
 * Cost: O(PS_ANALOG_ROWS x PS_ANALOG_INPUTS) per forecast, a constant (about 25,000 flops, in blocks of
 * PS_ANALOG_BLOCK rows that the compiler vectorizes), and the selection of K among the rows. The target of
 * a row is the maximum of h codes, so the model runs only up to PS_ANALOG_MAX_H steps of lookahead.
 *
 * Pure C, no allocation, no I/O: the engine owns the code ring and passes a view of it. */
#ifndef PS_ANALOG_H
#define PS_ANALOG_H

#include <stddef.h>
#include <stdint.h>

#define PS_ANALOG_LAGS     11
#define PS_ANALOG_INPUTS   (PS_ANALOG_LAGS + 2)
/* The library (scripts/peak_knn_bounded.py: "phase: last 240 + 7 days x +-120, no seasonal, logs only"),
 * with 6 periods instead of 7: the codes the engine keeps reach that far back, and 7 took the process over
 * issue 11's 8.5 bytes per stored sample (docs/forecasting.md, "The analog model": MASE 0.848 against
 * 0.847 on worldcup98). */
#define PS_ANALOG_RECENT   240
#define PS_ANALOG_PERIODS  6
#define PS_ANALOG_WIDTH    120
#define PS_ANALOG_ROWS     (PS_ANALOG_RECENT + PS_ANALOG_PERIODS * (2 * PS_ANALOG_WIDTH + 1))
/* Rows per distance block: a whole number of vectors, so that the loop over a block needs no epilogue. */
#define PS_ANALOG_BLOCK    256
/* Neighbours: 25 was better on twitter, 100 on worldcup98 (scripts/peak_knn_bounded.py). Each weighs
 * 1 / (its distance + PS_ANALOG_NEAR x the K-th's): chosen on the first halves of the periodic traces among
 * the plain median, a trimmed mean and the floors 0.02, 0.1, 0.5 (docs/forecasting.md, "The analog
 * model"); it mattered most on twitter (0.92 -> 0.87 alone), where the nearest rows of a spike's course
 * tell most. */
#define PS_ANALOG_K        50
#define PS_ANALOG_NEAR     0.02
/* The longest lookahead (in steps) the model forecasts: a row's target is the maximum of h codes. Beyond
 * it the model answers the last value, and auto does not weigh it. */
#define PS_ANALOG_MAX_H    7
/* Codes: PS_ANALOG_UNIT per e-fold of (load + eps), relative to the first value's; +-32 e-folds (a factor
 * of 7e13) around it, clamped beyond. 1/1024 of an e-fold is 0.1 % of the load. */
#define PS_ANALOG_UNIT     1024.0
#define PS_ANALOG_MISSING  INT16_MIN
/* The log's offset (a load of 0 has a log): this fraction of the first load above 0. Fixed once set, so that
 * a code depends on the data only (a bulk load stores codes before it learns: test_engine_bulk.c). */
#define PS_ANALOG_EPS      1e-3
/* The inputs' weights (1 / their spreads' squares) are taken from the spreads every PS_ANALOG_REWEIGH rows
 * learned, not at every row: a forecast then depends on the codes and on the weights' epoch only, and the
 * engine can reuse one made PROVISIONAL steps earlier for the same origin (engine_int.h, AN_CACHE). */
#define PS_ANALOG_REWEIGH  64
/* The model answers once it learned as many rows as its library holds (1.2 days at 1 minute): with fewer,
 * its neighbours are the few rows there are (twitter's first day at targetCoverage 0.99 fell to 97.8 %
 * covered where it answered from its 50th row). */
#define PS_ANALOG_MIN_ROWS PS_ANALOG_ROWS
/* The memory of the inputs' spreads, in learned steps. The spreads describe
 * the workload, not the hour: a memory of a day made worldcup98 0.855 alone, a plain mean of all its rows
 * 0.847 (the offline script scaled by the spreads of the whole first half). */
#define PS_ANALOG_MEMORY   65536

struct ps_analog {
  double ref;   /* log(scale + eps): code 0 */
  double scale; /* the first load above 0: eps = PS_ANALOG_EPS x scale */
  int has_ref;
  double n; /* rows learned (the weights' start: a plain mean until PS_ANALOG_MEMORY) */
  double mean[PS_ANALOG_INPUTS], var[PS_ANALOG_INPUTS];
  float w[PS_ANALOG_INPUTS]; /* the distance's weights (PS_ANALOG_REWEIGH) */
  uint64_t epoch;            /* times they were set: 0 before PS_ANALOG_MIN_ROWS rows */
  uint32_t since;            /* rows learned since */
};

/* A view of the engine's codes. The ring of the newest cap steps holds step t at code[t mod cap]. With
 * windows > 0, window d = 1 .. windows holds the steps t with hi - wcap < t <= hi, hi = newest + after -
 * d x period, step t at win[(d - 1) x wcap + t mod wcap] (wcap <= period: the windows do not overlap). A
 * step neither holds, after the newest or before `first` (the history's oldest), reads as missing. */
struct ps_analog_ring {
  const int16_t *code;
  size_t cap;
  int64_t newest, first;
  const int16_t *win;
  size_t windows, wcap, after, period;
};

/* The steps the library reads around an origin o, and ps_analog_learn at o: the recent steps o - recent + 1
 * .. o, and, in each of the last `windows` periods d (0 without a period long enough, the flat library),
 * the steps o - d x period - before .. o - d x period + after. */
struct ps_analog_layout {
  size_t recent, windows, before, after;
};

void ps_analog_init(struct ps_analog *a);
/* The code of load v: PS_ANALOG_MISSING for NaN, and before the first load above 0 (which sets the scale). */
int16_t ps_analog_encode(struct ps_analog *a, double v);
/* Learns step t (a final value of the ring): the spreads of row t's inputs, as `rows` rows (a bulk load
 * learns one row in a few, each for those it stands for). */
void ps_analog_learn(struct ps_analog *a, const struct ps_analog_ring *r, int64_t t, uint32_t rows);
/* The forecast of the peak of steps o + 1 .. o + h made at step o, whose load is `now` (the exact value the
 * code of step o rounds); period in steps, 0 when none. NaN when the model cannot answer: h beyond
 * PS_ANALOG_MAX_H, a missing input at o, or fewer than PS_ANALOG_K complete rows. It is
 * ps_analog_value(ps_analog_ratio(...), now): the ratio, in codes, is the costly part, and reads the codes
 * only, so that the engine may keep it for the step's learning (engine_int.h, AN_CACHE). */
/* The code the view holds for step t: PS_ANALOG_MISSING when missing or not held. */
int16_t ps_analog_code_at(const struct ps_analog_ring *r, int64_t t);
double ps_analog_ratio(const struct ps_analog *a, const struct ps_analog_ring *r, int64_t o, size_t h,
                       size_t period);
double ps_analog_value(const struct ps_analog *a, double ratio, double now);
/* The codes a forecast with period and h, and ps_analog_learn, read around their origin (struct
 * ps_analog_layout); the caller's view need hold no others. */
void ps_analog_layout(size_t period, size_t h, struct ps_analog_layout *l);
double ps_analog_forecast(const struct ps_analog *a, const struct ps_analog_ring *r, int64_t o, size_t h,
                          size_t period, double now);

#endif
