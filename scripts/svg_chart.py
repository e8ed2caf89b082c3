"""A small line chart as plain SVG 1.1 text, for `make demo` (no external libraries).

    svg = svg_chart.render(title="...", series=[Series("observed", "observed load", points, ...), ...],
                           left_label="req/s", right_label="replicas", right_unit=25.0)

Two y axes share one grid: a value r on the right axis is drawn at height r * right_unit of the left
axis (for the demo: replicas * threshold = the capacity those replicas serve), so a replica line that
sits above the load line means enough replicas. Each series is one <path> whose id is the series id and
whose class is "series"; gaps (None values) break the path. Optional: vertical markers, shaded bands,
and spans (a labelled double arrow between two times, e.g. how far one line leads another).
"""

import math
from xml.sax.saxutils import escape, quoteattr

# ---- layout (pixels) -----------------------------------------------------------------------------------

WIDTH = 1000
HEIGHT = 540
MARGIN_L = 70
MARGIN_R = 70
LINE_H = 17
MARGIN_B = 58
MAX_POINTS = 100_000  # per series: the demo has a few hundred
FONT = "font-family='DejaVu Sans, Verdana, sans-serif'"


class Series:
    """points: list of (x, y) with y None for a gap. axis: 'left' or 'right'. step: draw as a staircase
    (the value holds until the next point), as replica counts do."""

    def __init__(self, sid, label, points, color, axis="left", step=False, dash=None, width=2.0, opacity=1.0):
        if len(points) > MAX_POINTS:
            raise ValueError(f"series {sid!r}: {len(points)} points, more than {MAX_POINTS}")
        if axis not in ("left", "right"):
            raise ValueError(f"series {sid!r}: axis {axis!r} is not 'left' or 'right'")
        self.sid, self.label, self.points, self.color = sid, label, points, color
        self.axis, self.step, self.dash, self.width, self.opacity = axis, step, dash, width, opacity


def nice_step(span, target_ticks=6):
    """A 1, 2 or 5 times a power of ten step giving about target_ticks ticks over span."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target_ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def fmt(v):
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"


def render(title, series, *, subtitle="", x_label="seconds", left_label="", right_label="", right_unit=1.0,
           markers=(), bands=(), spans=(), x_min=None, x_max=None, width=WIDTH, height=HEIGHT):
    """Returns the SVG document as a str. markers: (x, label, color); bands: (x0, x1, label, color);
    spans: (x0, x1, y_left, label, color), a horizontal double arrow at height y_left with its label."""
    if right_unit <= 0:
        raise ValueError(f"right_unit {right_unit!r} is not > 0")
    xs = [x for s in series for x, _ in s.points]
    if x_min is None:
        x_min = min(xs) if xs else 0.0
    if x_max is None:
        x_max = max(xs) if xs else 1.0
    if x_max <= x_min:
        x_max = x_min + 1.0
    ys = [y if s.axis == "left" else y * right_unit for s in series for _, y in s.points
          if y is not None and math.isfinite(y)]
    y_top = max(ys) if ys else 1.0
    y_step = nice_step(y_top * 1.08)
    y_max = max(y_step, math.ceil(y_top * 1.08 / y_step) * y_step)

    # Header: title, subtitle lines, then the legend rows; the plot starts below them.
    sub_lines = [ln for ln in subtitle.split("\n") if ln] if subtitle else []
    legend, lx, row = [], MARGIN_L, 0
    for s in series:
        text = s.label + (" (right axis)" if s.axis == "right" else "")
        item_w = 40 + 7 * len(text)
        if lx + item_w > width - MARGIN_R and lx > MARGIN_L:
            lx, row = MARGIN_L, row + 1
        legend.append((s, text, lx, row))
        lx += item_w
    legend_y0 = 46 + LINE_H * len(sub_lines)
    margin_t = legend_y0 + LINE_H * (row + 1) + 6
    pw, ph = width - MARGIN_L - MARGIN_R, height - margin_t - MARGIN_B

    def px(x):
        return MARGIN_L + (x - x_min) / (x_max - x_min) * pw

    def py(y_left):
        return margin_t + ph - max(0.0, min(y_left, y_max)) / y_max * ph

    out = ["<?xml version='1.0' encoding='UTF-8'?>",
           f"<svg xmlns='http://www.w3.org/2000/svg' version='1.1' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' {FONT} font-size='12'>",
           f"<title>{escape(title)}</title>",
           f"<rect x='0' y='0' width='{width}' height='{height}' fill='white'/>",
           f"<text x='{MARGIN_L}' y='24' font-size='16' font-weight='bold'>{escape(title)}</text>"]
    for i, ln in enumerate(sub_lines):
        out.append(f"<text x='{MARGIN_L}' y='{44 + LINE_H * i}' fill='#444'>{escape(ln)}</text>")

    # Bands behind everything.
    for x0, x1, label, color in bands:
        a, b = px(max(x0, x_min)), px(min(x1, x_max))
        if b > a:
            out.append(f"<rect class='band' x='{a:.1f}' y='{margin_t}' width='{b - a:.1f}' height='{ph}' "
                       f"fill={quoteattr(color)} fill-opacity='0.5'/>")
            out.append(f"<text x='{(a + b) / 2:.1f}' y='{margin_t + 14}' text-anchor='middle' fill='#777' "
                       f"font-size='11'>{escape(label)}</text>")

    # Grid and axes.
    out.append("<g class='grid' stroke='#e3e3e3' stroke-width='1'>")
    y_ticks = []
    y = 0.0
    while y <= y_max + 1e-9:
        y_ticks.append(y)
        out.append(f"<line x1='{MARGIN_L}' y1='{py(y):.1f}' x2='{MARGIN_L + pw}' y2='{py(y):.1f}'/>")
        y += y_step
    x_step = nice_step(x_max - x_min, 10)
    x = math.ceil(x_min / x_step) * x_step
    x_ticks = []
    while x <= x_max + 1e-9:
        x_ticks.append(x)
        out.append(f"<line x1='{px(x):.1f}' y1='{margin_t}' x2='{px(x):.1f}' y2='{margin_t + ph}'/>")
        x += x_step
    out.append("</g>")
    out.append(f"<rect x='{MARGIN_L}' y='{margin_t}' width='{pw}' height='{ph}' fill='none' stroke='#888'/>")
    out.append("<g class='axis-left' text-anchor='end'>")
    for y in y_ticks:
        out.append(f"<text x='{MARGIN_L - 6}' y='{py(y) + 4:.1f}'>{fmt(y)}</text>")
    out.append("</g>")
    # Right axis: integer ticks of right_unit (replicas), thinned to at most ~12 labels.
    r_max = y_max / right_unit
    r_step = max(1.0, nice_step(r_max, 10))
    out.append("<g class='axis-right' text-anchor='start'>")
    r = 0.0
    while r <= r_max + 1e-9:
        out.append(f"<text x='{MARGIN_L + pw + 6}' y='{py(r * right_unit) + 4:.1f}'>{fmt(r)}</text>")
        r += r_step
    out.append("</g>")
    out.append("<g class='axis-x' text-anchor='middle'>")
    for x in x_ticks:
        out.append(f"<text x='{px(x):.1f}' y='{margin_t + ph + 16}'>{fmt(x)}</text>")
    out.append("</g>")
    out.append(f"<text x='{MARGIN_L + pw / 2:.1f}' y='{height - 14}' text-anchor='middle'>{escape(x_label)}</text>")
    if left_label:
        out.append(f"<text transform='translate(18 {margin_t + ph / 2:.1f}) rotate(-90)' text-anchor='middle'>"
                   f"{escape(left_label)}</text>")
    if right_label:
        out.append(f"<text transform='translate({width - 16} {margin_t + ph / 2:.1f}) rotate(90)' "
                   f"text-anchor='middle'>{escape(right_label)}</text>")

    # Markers; a label close to the previous one goes one line higher so that they do not overlap.
    level, prev_px = 0, None
    for x, label, color in sorted(markers, key=lambda m: m[0]):
        if not x_min <= x <= x_max:
            continue
        X = px(x)
        level = (level + 1) % 4 if prev_px is not None and X - prev_px < 8 * len(label) else 0
        prev_px = X
        out.append(f"<line class='marker' x1='{X:.1f}' y1='{margin_t}' x2='{X:.1f}' "
                   f"y2='{margin_t + ph}' stroke={quoteattr(color)} stroke-dasharray='2 3'/>")
        out.append(f"<text x='{X + 3:.1f}' y='{margin_t + ph - 6 - 14 * level}' fill={quoteattr(color)} "
                   f"font-size='11'>{escape(label)}</text>")

    # Spans: |<-- label -->| between two times.
    for x0, x1, y, label, color in spans:
        if x_min <= x0 < x1 <= x_max:
            a, b, Y = px(x0), px(x1), py(y)
            out.append(f"<g class='span' stroke={quoteattr(color)} stroke-width='1.5' fill='none'>"
                       f"<path d='M{a:.1f},{Y - 5:.1f}V{Y + 5:.1f}M{b:.1f},{Y - 5:.1f}V{Y + 5:.1f}"
                       f"M{a:.1f},{Y:.1f}H{b:.1f}M{a + 6:.1f},{Y - 4:.1f}L{a:.1f},{Y:.1f}L{a + 6:.1f},{Y + 4:.1f}"
                       f"M{b - 6:.1f},{Y - 4:.1f}L{b:.1f},{Y:.1f}L{b - 6:.1f},{Y + 4:.1f}'/></g>")
            out.append(f"<text x='{(a + b) / 2:.1f}' y='{Y - 7:.1f}' text-anchor='middle' fill={quoteattr(color)} "
                       f"font-weight='bold'>{escape(label)}</text>")

    # Series.
    for s in series:
        scale = 1.0 if s.axis == "left" else right_unit
        d, pen_down, n = [], False, 0
        for x, y in s.points:
            if y is None or not math.isfinite(y):
                pen_down = False
                continue
            n += 1
            X, Y = px(x), py(y * scale)
            if not pen_down:
                d.append(f"M{X:.1f},{Y:.1f}")
                pen_down = True
            elif s.step:
                d.append(f"H{X:.1f}V{Y:.1f}")
            else:
                d.append(f"L{X:.1f},{Y:.1f}")
        dash = f" stroke-dasharray={quoteattr(s.dash)}" if s.dash else ""
        out.append(f"<path id={quoteattr(s.sid)} class='series' data-axis='{s.axis}' "
                   f"data-points='{n}' d={quoteattr(' '.join(d))} "
                   f"fill='none' stroke={quoteattr(s.color)} stroke-width='{s.width:g}' stroke-opacity='{s.opacity:g}'"
                   f" stroke-linejoin='round'{dash}><title>{escape(s.label)}</title></path>")

    # Legend, between the subtitle and the plot.
    for s, text, lx, row in legend:
        ly = legend_y0 + LINE_H * row
        dash = f" stroke-dasharray={quoteattr(s.dash)}" if s.dash else ""
        out.append(f"<line x1='{lx}' y1='{ly - 4}' x2='{lx + 24}' y2='{ly - 4}' stroke={quoteattr(s.color)} "
                   f"stroke-width='{s.width:g}' stroke-opacity='{s.opacity:g}'{dash}/>")
        out.append(f"<text x='{lx + 30}' y='{ly}'>{escape(text)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
