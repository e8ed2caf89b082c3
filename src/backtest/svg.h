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

/* An XY chart of a cost curve: pod-seconds across, under-provisioning up. Bounded: at most
 * PS_SVG_XY_MAX_POINTS points on the curve and PS_SVG_XY_MAX_MARKS marks. */
#define PS_SVG_XY_MAX_POINTS 64
#define PS_SVG_XY_MAX_MARKS  5  /* the legend holds the curve and 5 marks */
#define PS_SVG_XY_MAX_LABEL  64 /* bytes of a point's label (longer ones are cut) */

enum ps_svg_shape { PS_SVG_DOT, PS_SVG_SQUARE, PS_SVG_DIAMOND, PS_SVG_RING };

struct ps_svg_point {
  double x, y;                     /* finite; a point that is not is left out */
  char label[PS_SVG_XY_MAX_LABEL]; /* drawn beside the point (escaped); "" for none */
  int emphasis; /* a curve point drawn larger and always labelled (others' labels give way when crowded) */
};

struct ps_svg_mark {
  struct ps_svg_point p;
  const char *name;  /* legend text (escaped) */
  const char *color; /* trusted SVG color literal */
  enum ps_svg_shape shape;
  int guide; /* a dashed line from the x axis up to the mark */
};

struct ps_svg_xy {
  const char *title, *subtitle, *x_label, *y_label; /* escaped on output */
  const char *curve_name, *curve_color;             /* legend text (escaped); trusted color */
  const struct ps_svg_point *curve;                 /* joined in the order given */
  size_t ncurve;
  const struct ps_svg_mark *marks;
  size_t nmarks;
};

/* Writes the chart. 0, UV_EIO when the stream failed, UV_EINVAL past the bounds or with nothing finite
 * to draw. */
int ps_svg_xy_write(FILE *f, const struct ps_svg_xy *c);

#endif
