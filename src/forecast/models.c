/* The models' names, as trigger metadata and /metrics spell them. The models themselves live in the
 * engine (engine.c, holtwinters.c). */
#include "models.h"

#include <string.h>
#include <uv.h>

/* ---- models -------------------------------------------------------------------------------------- */

int ps_model_parse(const char *s, enum ps_model *out) {
  if (s == NULL) return UV_EINVAL;
  if (strcmp(s, "seasonal") == 0) {
    *out = PS_MODEL_SEASONAL;
    return 0;
  }
  if (strcmp(s, "last") == 0) {
    *out = PS_MODEL_LAST;
    return 0;
  }
  if (strcmp(s, "holtwinters") == 0) {
    *out = PS_MODEL_HOLTWINTERS;
    return 0;
  }
  if (strcmp(s, "linear") == 0) {
    *out = PS_MODEL_LINEAR;
    return 0;
  }
  if (strcmp(s, "peak") == 0) {
    *out = PS_MODEL_PEAK;
    return 0;
  }
  if (strcmp(s, "auto") == 0) {
    *out = PS_MODEL_AUTO;
    return 0;
  }
  return UV_EINVAL;
}

const char *ps_model_name(enum ps_model m) {
  switch (m) {
  case PS_MODEL_SEASONAL: return "seasonal";
  case PS_MODEL_LAST: return "last";
  case PS_MODEL_HOLTWINTERS: return "holtwinters";
  case PS_MODEL_LINEAR: return "linear";
  case PS_MODEL_PEAK: return "peak";
  case PS_MODEL_AUTO: return "auto";
  }
  return "unknown";
}

bool ps_model_seasonless(enum ps_model m) {
  return m == PS_MODEL_LAST || m == PS_MODEL_LINEAR || m == PS_MODEL_PEAK;
}
