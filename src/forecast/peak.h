/* The peak model (model: peak): a forecast of the lookahead window's peak made directly, for loads that are
 * noise around a slowly moving level (requests counted per second: issue 13, section 3).
 *
 * The other models forecast each step of the window and answer the largest; on a series whose steps are
 * mostly noise, that forecast is as noisy as the steps it extrapolates (a line through 64 one-second
 * counts, 120 steps ahead), the margin added to it must cover that noise too, and the HPA, which keeps the
 * highest proposal of the last 5 minutes, pays for the highest of those noisy answers. This model answers
 *
 *     level + k x spread
 *
 * where level and spread are the exponentially weighted mean and standard deviation of the values over
 * about PS_PEAK_SPAN windows, and k, the peak's excess over the level in units of the spread, is learned
 * as the median of what the windows showed (a stochastic median, Robbins & Monro 1951, one step of
 * PS_PEAK_RATE per window: the outcome of a window is known a window later, so a larger step per value
 * would overshoot). k starts at the median peak of h independent normal values (ps_cov_peak_z(0.5, h)).
 * Both moving parts are averages over many values: the answer moves little from one step to the next.
 *
 * Pure C, no allocation, no I/O: 5 doubles and a count inside the engine, O(1) per value and per forecast
 * (engine_models.c applies the newest, provisional values to a copy). */
#ifndef PS_PEAK_H
#define PS_PEAK_H

#include <stddef.h>
#include <stdint.h>

/* The level's and the spread's memory: PS_PEAK_SPAN windows of the lookahead, at least PS_PEAK_SPAN_MIN
 * steps. Chosen with PS_PEAK_RATE among 1, 2, 4 windows and 0.1, 0.25, 0.5 (docs/forecasting.md, "Moving
 * the curve": the pods and the coverage of synthetic series and of late starts of the azure trace do not
 * tell them apart; this one keeps the whole azure trace's coverage within 1 point at 0.8 to 0.95). */
#define PS_PEAK_SPAN     1
#define PS_PEAK_SPAN_MIN 16
/* k's step per window, in units of the spread (PS_PEAK_RATE / h per learned value). */
#define PS_PEAK_RATE     0.25
/* k stays within +-PS_PEAK_K_MAX spreads: a run of windows of a changing level does not push it away. */
#define PS_PEAK_K_MAX    16.0
/* auto weighs the peak model from this horizon (lookahead / step) on: with a window of a few steps, the
 * peak is hardly more than the next value, which the other models forecast (on the 60 s public traces at
 * h = 2 it was chosen at the wrong moments: MASE 0.896 -> 0.907 on worldcup98). A trigger with
 * `model: peak` uses it at any horizon. */
#define PS_PEAK_MIN_H    8

struct ps_peak {
  double level, var; /* exponentially weighted mean and variance of the values */
  double n;          /* values added since the last reset (the weights' start: a plain mean until 1/decay) */
  double decay;      /* 1 / (PS_PEAK_SPAN x h), at most 1 / PS_PEAK_SPAN_MIN */
  double k;          /* the peak's median excess over the level, in spreads */
  double step;       /* k's step per outcome: PS_PEAK_RATE / h */
};

/* h: the window's steps (>= 1). */
void ps_peak_init(struct ps_peak *p, size_t h);
/* Forgets the level and the spread (the engine's restart: a gap longer than the history); keeps k, which
 * describes the workload. */
void ps_peak_reset(struct ps_peak *p);
/* A value of the series (the caller leaves out missing ones). */
void ps_peak_add(struct ps_peak *p, double y);
/* The spread (standard deviation around the level); 0 before two values. */
double ps_peak_sd(const struct ps_peak *p);
/* level + k x spread; NaN before any value. */
double ps_peak_forecast(const struct ps_peak *p);
/* The outcome of a window whose forecast was `forecast` (as ps_peak_forecast gave it then): its actual
 * peak. k moves one step towards the median excess (up when the peak was above the forecast). */
void ps_peak_learn(struct ps_peak *p, double actual, double forecast);

#endif
