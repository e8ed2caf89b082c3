/* The models' names, as trigger metadata and /metrics spell them. The models themselves live in the
 * engine (engine.c, holtwinters.c). */
#include "models.h"

#include <string.h>
#include <uv.h>

/* ---- models -------------------------------------------------------------------------------------- */

/* Indexed by enum ps_model: one table for parsing and naming. */
static const char *const model_names[PS_MODEL_COUNT] = {
    [PS_MODEL_SEASONAL] = "seasonal", [PS_MODEL_LAST] = "last", [PS_MODEL_HOLTWINTERS] = "holtwinters",
    [PS_MODEL_LINEAR] = "linear",     [PS_MODEL_PEAK] = "peak", [PS_MODEL_ANALOG] = "analog",
    [PS_MODEL_AUTO] = "auto",
};

int ps_model_parse(const char *s, enum ps_model *out) {
  if (s == NULL) return UV_EINVAL;
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    if (strcmp(s, model_names[m]) == 0) {
      *out = (enum ps_model)m;
      return 0;
    }
  return UV_EINVAL;
}

const char *ps_model_name(enum ps_model m) {
  return (unsigned)m < PS_MODEL_COUNT ? model_names[m] : "unknown";
}

bool ps_model_seasonless(enum ps_model m) {
  return m == PS_MODEL_LAST || m == PS_MODEL_LINEAR || m == PS_MODEL_PEAK;
}
