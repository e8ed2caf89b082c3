/* The forecasting models prescale knows, by name. */
#ifndef PS_MODELS_H
#define PS_MODELS_H

#include <stdbool.h>

enum ps_model {
  PS_MODEL_SEASONAL,    /* seasonal naive: the value one period before the predicted time */
  PS_MODEL_LAST,        /* reactive: the latest observation */
  PS_MODEL_HOLTWINTERS, /* additive level + trend + season, O(1) per sample */
  PS_MODEL_LINEAR,      /* trend over a recent window */
  PS_MODEL_PEAK,        /* the window's peak directly: level + k x the noise's spread (peak.h) */
  PS_MODEL_ANALOG,      /* the window's peak from the most similar past moments (analog.h) */
  PS_MODEL_AUTO,        /* the engine picks (or blends) by each model's recent h-step errors */
};
#define PS_MODEL_COUNT 7

/* "seasonal" | "last" | "holtwinters" | "linear" | "peak" | "analog" | "auto"; 0 or UV_EINVAL. */
int ps_model_parse(const char *s, enum ps_model *out);
const char *ps_model_name(enum ps_model m);
/* The models that forecast without a season (last, linear, peak): a period given with them is checked,
 * then unused. */
bool ps_model_seasonless(enum ps_model m);

#endif
