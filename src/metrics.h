/* prescale's own metrics: a process-wide registry (one loop, one thread) rendered in the Prometheus text
 * exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/). */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum ps_metric_type { PS_METRIC_COUNTER, PS_METRIC_GAUGE, PS_METRIC_HISTOGRAM };

/* The Content-Type of ps_metrics_render's output
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#basic-info). */
#define PS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Histogram buckets, in seconds, for every histogram (durations of refreshes and RPCs). */
#define PS_METRICS_BUCKETS 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10

/* Limits that bound the registry whatever callers do; a series beyond them is not created. Series not
 * created for want of room are counted in PS_METRICS_DROPPED, rendered once there is one, so that a
 * --max-targets raised past what the registry holds (about 11,000 targets) shows on /metrics. */
#define PS_METRICS_MAX_SERIES     200000 /* max_targets (10000) x a handful of per-target series, with room */
#define PS_METRICS_DROPPED        "prescale_metrics_series_dropped_total"
#define PS_METRICS_MAX_LABELS_LEN 4096 /* bytes of one series' label string */

/* Declares a family once (name, type, HELP). Declaring it again with the same type is a no-op.
 * 0, UV_EINVAL (bad name or type clash) or UV_ENOMEM. */
int ps_metrics_declare(const char *name, enum ps_metric_type type, const char *help);

/* `labels` is the inside of the braces, already escaped: `method="IsActive",code="OK"`, or "" for none.
 * A series is created on first use; a family must be declared first (else the call is ignored). */
void ps_metrics_add(const char *name, const char *labels,
                    double delta); /* counters (delta >= 0) and gauges */
void ps_metrics_set(const char *name, const char *labels, double value);     /* gauges only */
void ps_metrics_observe(const char *name, const char *labels, double value); /* histograms */
/* Removes one series (e.g. the gauges of an evicted target). */
void ps_metrics_remove(const char *name, const char *labels);
/* A series resolved once and kept by a caller on a hot path (one per RPC): updating it through the ref
 * costs no label formatting, hashing or lookup. name and labels must be the same at every call with the
 * same ref; they are read only when the ref is (re)resolved: at first use, and after any series was
 * removed or the registry reset (a generation count says so), so a ref never points at freed memory. A
 * series that cannot be created is not cached, so every use is tried (and counted as dropped) as with
 * ps_metrics_add. Zero-initialise a ref. */
struct ps_metric_ref {
  void *series; /* metrics.c's struct series */
  unsigned long long gen;
};
void ps_metrics_ref_add(struct ps_metric_ref *ref, const char *name, const char *labels, double delta);
void ps_metrics_ref_set(struct ps_metric_ref *ref, const char *name, const char *labels, double value);
void ps_metrics_ref_observe(struct ps_metric_ref *ref, const char *name, const char *labels, double value);
/* Whether a use of ref would not read its name and labels (a caller that formats labels can skip it). */
bool ps_metrics_ref_resolved(const struct ps_metric_ref *ref);
/* Value of a counter/gauge series as a scrape would show it (the collect hooks run first), or NaN if absent
 * (tests and the readiness logic read it). */
double ps_metrics_get(const char *name, const char *labels);

/* A collect hook sets series from its owner's own counts when they are read (ps_metrics_render,
 * ps_metrics_get), so that a gauge of something that changes at every request (the gRPC server's open
 * streams) is not set at every change. At most PS_METRICS_MAX_COLLECTORS at once; the same (fn, arg) is
 * added once. The hooks outlive ps_metrics_reset (their owner removes them); with two owners setting the
 * same series, the one added last shows. 0 or UV_ENOSPC. */
#define PS_METRICS_MAX_COLLECTORS 8
typedef void (*ps_metrics_collect_fn)(void *arg);
int ps_metrics_collector_add(ps_metrics_collect_fn fn, void *arg);
void ps_metrics_collector_remove(ps_metrics_collect_fn fn, void *arg);

/* Appends the whole exposition (families in declaration order), the collect hooks run first. 0 or
 * UV_ENOMEM. */
int ps_metrics_render(struct ps_buf *out);
/* Drops every family and series (tests; shutdown frees memory). */
void ps_metrics_reset(void);

/* Escapes a label value per the exposition format (\\, \", \n) into dst (always NUL-terminated).
 * Returns the length it needed (like snprintf). */
size_t ps_metrics_escape_label(char *dst, size_t cap, const char *value);

#endif
