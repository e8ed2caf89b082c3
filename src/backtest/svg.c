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

  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
          "font-family=\"sans-serif\" font-size=\"12\">\n",
          W, H, W, H);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\">", ML);
  put_escaped(f, title);
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
