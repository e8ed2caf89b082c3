/* A plain SVG line chart (no dependencies) for `prescale backtest --svg`. */
#ifndef PS_SVG_H
#define PS_SVG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PS_SVG_MAX_POINTS 2000 /* long series are bucketed down to this many points per line */
#define PS_SVG_MAX_SERIES 8

enum ps_svg_agg {
  PS_SVG_MAX, /* a bucket shows its highest value (demand, forecasts: peaks must stay visible) */
  PS_SVG_MIN, /* its lowest (capacity: dips must stay visible) */
};

struct ps_svg_series {
  const char *name;  /* legend text (escaped on output) */
  const char *color; /* an SVG color literal, e.g. "#1f77b4" (trusted: not escaped) */
  const double *y;   /* n values; NaN = no point */
  enum ps_svg_agg agg;
  int dashed;
};

/* Writes the chart of series over rows i = 0..n-1 at times t0_ms + i * step_ms. 0, or UV_EIO when the
 * stream failed, UV_EINVAL for n == 0 or too many series. */
int ps_svg_write(FILE *f, const char *title, const char *y_label, int64_t t0_ms, int64_t step_ms, size_t n,
                 const struct ps_svg_series *s, size_t ns);

#endif
