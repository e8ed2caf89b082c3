/* The SVG chart: fixed layout, one polyline per series, time axis in hours or days from the start. */
#include "svg.h"

#include <math.h>
#include <stdbool.h>
#include <uv.h>

#define W       1200
#define H       500
#define ML      70 /* margins: left (y labels), right, top (title), bottom (x labels + legend) */
#define MR      20
#define MT      40
#define MB      80
#define Y_TICKS 5
#define X_TICKS 8

static void put_escaped(FILE *f, const char *s) {
  for (; s != NULL && *s != '\0'; s++) {
    switch (*s) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default:
      /* Control bytes are not allowed in XML 1.0 text. */
      if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
    }
  }
}

/* The XML declaration, the <svg> element of a w x h picture on white, and the title's text element. */
static void put_head(FILE *f, int w, int h, int title_x, int title_y, const char *title) {
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
          "font-family=\"sans-serif\" font-size=\"12\">\n",
          w, h, w, h);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h);
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"15\">", title_x, title_y);
  put_escaped(f, title);
}

/* A round step for about `ticks` ticks over [0, span]. */
static double nice_step(double span, int ticks) {
  double raw = span / ticks, mag = pow(10, floor(log10(raw))), r = raw / mag;
  return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
}

/* The bucket value of series s over rows [a, b). */
static double bucket(const struct ps_svg_series *s, size_t a, size_t b) {
  double v = NAN;
  for (size_t i = a; i < b; i++) {
    double y = s->y[i];
    if (isnan(y)) continue;
    if (isnan(v) || (s->agg == PS_SVG_MAX ? y > v : y < v)) v = y;
  }
  return v;
}

int ps_svg_write(FILE *f, const char *title, const char *y_label, int64_t t0_ms, int64_t step_ms, size_t n,
                 const struct ps_svg_series *s, size_t ns) {
  (void)t0_ms;
  if (n == 0 || ns == 0 || ns > PS_SVG_MAX_SERIES || step_ms <= 0) return UV_EINVAL;
  size_t buckets = n < PS_SVG_MAX_POINTS ? n : PS_SVG_MAX_POINTS;

  double ymax = 0;
  for (size_t k = 0; k < ns; k++)
    for (size_t i = 0; i < n; i++)
      if (isfinite(s[k].y[i]) && s[k].y[i] > ymax) ymax = s[k].y[i];
  if (ymax <= 0) ymax = 1;
  double ystep = nice_step(ymax, Y_TICKS);
  ymax = ceil(ymax / ystep) * ystep;

  double span_s = (double)n * (double)step_ms / 1000.0;
  double unit = span_s >= 3 * 86400.0 ? 86400.0 : span_s >= 3 * 3600.0 ? 3600.0 : 60.0;
  const char *uname = unit == 86400.0 ? "days" : unit == 3600.0 ? "hours" : "minutes";
  double xspan = span_s / unit, xstep = nice_step(xspan, X_TICKS);
  const double pw = W - ML - MR, ph = H - MT - MB;

  put_head(f, W, H, ML, 24, title);
  fprintf(f, "</text>\n<g stroke=\"#ddd\" stroke-width=\"1\">\n");
  for (double y = 0; y <= ymax * (1 + 1e-9); y += ystep) {
    double py = MT + ph - y / ymax * ph;
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", ML, py, W - MR, py);
  }
  for (double x = 0; x <= xspan * (1 + 1e-9); x += xstep) {
    double px = ML + x / xspan * pw;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", px, MT, px, H - MB);
  }
  fprintf(f, "</g>\n<g fill=\"#333\">\n");
  for (double y = 0; y <= ymax * (1 + 1e-9); y += ystep)
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ML - 6,
            MT + ph - y / ymax * ph + 4, y);
  for (double x = 0; x <= xspan * (1 + 1e-9); x += xstep)
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", ML + x / xspan * pw,
            H - MB + 16, x);
  fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s from the start of the trace</text>\n",
          ML + pw / 2, H - MB + 34, uname);
  fprintf(f, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">", MT + ph / 2);
  put_escaped(f, y_label);
  fprintf(f, "</text>\n</g>\n");

  /* Drawn last to first, so that the first series (demand) is on top; the legend keeps the given order. */
  for (size_t k = ns; k-- > 0;) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\"%s points=\"", s[k].color,
            s[k].dashed ? " stroke-dasharray=\"4 3\"" : "");
    bool any = false;
    for (size_t b = 0; b < buckets; b++) {
      size_t a = b * n / buckets, e = (b + 1) * n / buckets;
      double v = bucket(&s[k], a, e);
      if (isnan(v)) continue;
      if (v > ymax) v = ymax;
      double px = ML + ((double)a + (double)(e - a) / 2) / (double)n * pw, py = MT + ph - v / ymax * ph;
      fprintf(f, "%s%.1f,%.1f", any ? " " : "", px, py);
      any = true;
    }
    fprintf(f, "\"/>\n");
  }
  for (size_t k = 0; k < ns; k++) {
    /* Legend entries in a row under the axis label. */
    double lx = ML + (double)k * (pw / (double)ns);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"%s/>\n", lx,
            H - 18, lx + 24, H - 18, s[k].color, s[k].dashed ? " stroke-dasharray=\"4 3\"" : "");
    fprintf(f, "<text x=\"%.1f\" y=\"%d\">", lx + 30, H - 14);
    put_escaped(f, s[k].name);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "</svg>\n");
  return ferror(f) ? UV_EIO : 0;
}

/* ---- XY chart (the cost curve) ------------------------------------------------------------------ */

#define XY_W    900
#define XY_H    600
#define XY_ML   90 /* room for the y tick labels and the axis label */
#define XY_MR   30
#define XY_MT   70  /* title and subtitle */
#define XY_MB   130 /* x tick labels, axis label and the legend */
#define LABEL_W 40  /* px: labels of points closer than this across and LABEL_H up would overlap */
#define LABEL_H 13

/* A tick label: 2.5M, 150k, 12. */
static void put_tick(FILE *f, double v) {
  double a = fabs(v);
  if (a >= 1e9) {
    fprintf(f, "%gG", v / 1e9);
  } else if (a >= 1e6) {
    fprintf(f, "%gM", v / 1e6);
  } else if (a >= 1e3) {
    fprintf(f, "%gk", v / 1e3);
  } else {
    fprintf(f, "%g", fabs(v) < 1e-12 ? 0 : v);
  }
}

static void put_shape(FILE *f, enum ps_svg_shape s, double x, double y, const char *color) {
  switch (s) {
  case PS_SVG_SQUARE:
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>\n", x - 5, y - 5, color);
    break;
  case PS_SVG_DIAMOND:
    fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"/>\n", x, y - 7, x + 7,
            y, x, y + 7, x - 7, y, color);
    break;
  case PS_SVG_RING:
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"white\" stroke=\"%s\" stroke-width=\"2\"/>\n",
            x, y, color);
    break;
  default: fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", x, y, color);
  }
}

static bool finite_point(const struct ps_svg_point *p) { return isfinite(p->x) && isfinite(p->y); }

int ps_svg_xy_write(FILE *f, const struct ps_svg_xy *c) {
  if (c->ncurve > PS_SVG_XY_MAX_POINTS || c->nmarks > PS_SVG_XY_MAX_MARKS) return UV_EINVAL;
  double xmin = INFINITY, xmax = -INFINITY, ymax = 0;
  for (size_t k = 0; k < c->ncurve + c->nmarks; k++) {
    const struct ps_svg_point *p = k < c->ncurve ? &c->curve[k] : &c->marks[k - c->ncurve].p;
    if (!finite_point(p)) continue;
    xmin = fmin(xmin, p->x);
    xmax = fmax(xmax, p->x);
    ymax = fmax(ymax, p->y);
  }
  if (!(xmin <= xmax)) return UV_EINVAL;
  /* x: the span of the points with a little room (pod-seconds differ by tens of percent, not from 0);
   * y: from 0, under-provisioning's floor. */
  double pad = xmax > xmin ? (xmax - xmin) * 0.05 : fmax(fabs(xmax) * 0.05, 1);
  double xstep = nice_step(xmax - xmin + 2 * pad, 6);
  double x0 = floor((xmin - pad) / xstep) * xstep, x1 = ceil((xmax + pad) / xstep) * xstep;
  if (ymax <= 0) ymax = 1;
  double ystep = nice_step(ymax * 1.05, 5), y1 = ceil(ymax * 1.05 / ystep) * ystep;
  const double pw = XY_W - XY_ML - XY_MR, ph = XY_H - XY_MT - XY_MB;
#define PX(v) (XY_ML + ((v)-x0) / (x1 - x0) * pw)
#define PY(v) (XY_MT + ph - (v) / y1 * ph)

  put_head(f, XY_W, XY_H, XY_ML, 26, c->title);
  fprintf(f, "</text>\n<text x=\"%d\" y=\"46\" fill=\"#555\">", XY_ML);
  put_escaped(f, c->subtitle);
  fprintf(f, "</text>\n<g stroke=\"#ddd\" stroke-width=\"1\">\n");
  for (double y = 0; y <= y1 * (1 + 1e-9); y += ystep)
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", XY_ML, PY(y), XY_W - XY_MR, PY(y));
  for (double x = x0; x <= x1 + xstep * 1e-9; x += xstep)
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", PX(x), XY_MT, PX(x), XY_H - XY_MB);
  fprintf(f, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n",
          XY_ML, XY_MT, pw, ph);
  fprintf(f, "<g fill=\"#333\">\n");
  for (double y = 0; y <= y1 * (1 + 1e-9); y += ystep) {
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", XY_ML - 6, PY(y) + 4);
    put_tick(f, y);
    fprintf(f, "</text>\n");
  }
  for (double x = x0; x <= x1 + xstep * 1e-9; x += xstep) {
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", PX(x), XY_H - XY_MB + 16);
    put_tick(f, x);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", XY_ML + pw / 2, XY_H - XY_MB + 36);
  put_escaped(f, c->x_label);
  fprintf(f, "</text>\n<text transform=\"translate(20 %.1f) rotate(-90)\" text-anchor=\"middle\">",
          XY_MT + ph / 2);
  put_escaped(f, c->y_label);
  fprintf(f, "</text>\n</g>\n");

  /* Guides first, so that the curve and the marks are drawn over them. */
  for (size_t k = 0; k < c->nmarks; k++) {
    const struct ps_svg_mark *m = &c->marks[k];
    if (!m->guide || !finite_point(&m->p)) continue;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"5 4\"/>\n",
            PX(m->p.x), XY_H - XY_MB, PX(m->p.x), PY(m->p.y), m->color);
  }
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c->curve_color);
  bool any = false;
  for (size_t k = 0; k < c->ncurve; k++) {
    if (!finite_point(&c->curve[k])) continue;
    fprintf(f, "%s%.1f,%.1f", any ? " " : "", PX(c->curve[k].x), PY(c->curve[k].y));
    any = true;
  }
  fprintf(f, "\"/>\n");
  /* A point's label is left out when it would overwrite the last one drawn (points bunched together). */
  double last_x = -INFINITY, last_y = -INFINITY;
  for (size_t k = 0; k < c->ncurve; k++) {
    const struct ps_svg_point *p = &c->curve[k];
    if (!finite_point(p)) continue;
    double px = PX(p->x), py = PY(p->y);
    if (p->emphasis)
      fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"%s\"/>\n", px, py, c->curve_color);
    put_shape(f, PS_SVG_DOT, px, py, c->curve_color);
    if (!p->emphasis && fabs(px - last_x) < LABEL_W && fabs(py - last_y) < LABEL_H) continue;
    last_x = px;
    last_y = py;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">", px + 6, py - 6, c->curve_color);
    put_escaped(f, p->label);
    fprintf(f, "</text>\n");
  }
  /* A mark's label moves down a line while it would overwrite another mark's (marks at the same place). */
  double lab_y[PS_SVG_XY_MAX_MARKS], lab_x[PS_SVG_XY_MAX_MARKS];
  size_t nlab = 0;
  for (size_t k = 0; k < c->nmarks; k++) {
    const struct ps_svg_mark *m = &c->marks[k];
    if (!finite_point(&m->p)) continue;
    put_shape(f, m->shape, PX(m->p.x), PY(m->p.y), m->color);
    /* A mark with a guide sits on the curve, which falls to the right: its label goes below left. */
    double lx = PX(m->p.x) + (m->guide ? -9 : 9), ly = PY(m->p.y) + 16;
    for (size_t j = 0; j < nlab; j++)
      if (fabs(lab_x[j] - lx) < 2 * LABEL_W && fabs(lab_y[j] - ly) < LABEL_H) {
        ly += LABEL_H;
        j = (size_t)-1; /* and check them all again: at most nmarks moves */
      }
    lab_x[nlab] = lx;
    lab_y[nlab++] = ly;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\"%s>", lx, ly, m->color,
            m->guide ? " text-anchor=\"end\"" : "");
    put_escaped(f, m->p.label);
    fprintf(f, "</text>\n");
  }
  /* The legend: the curve, then each mark, two to a row under the axis label. */
  for (size_t k = 0; k <= c->nmarks; k++) {
    double lx = XY_ML + (double)(k % 2) * (pw / 2), ly = XY_H - XY_MB + 62 + (double)(k / 2) * 20;
    if (k == 0) {
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
              lx - 4, ly - 4, lx + 14, ly - 4, c->curve_color);
      put_shape(f, PS_SVG_DOT, lx + 5, ly - 4, c->curve_color);
    } else {
      put_shape(f, c->marks[k - 1].shape, lx + 5, ly - 4, c->marks[k - 1].color);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", lx + 22, ly);
    put_escaped(f, k == 0 ? c->curve_name : c->marks[k - 1].name);
    fprintf(f, "</text>\n");
  }
#undef PX
#undef PY
  fprintf(f, "</svg>\n");
  return ferror(f) ? UV_EIO : 0;
}
