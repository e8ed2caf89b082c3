/* prescale's own metrics: one process-wide registry (one loop, one thread, so no locks), rendered in
 * the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format).
 *
 * Families are kept in declaration order; each family keeps its series in creation order (a doubly
 * linked list, so removal is O(1)), and every series is also in one hash table keyed by (name, labels),
 * so updating one of thousands of per-target series costs one hash and one short chain walk. */
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fmt.h"
#include "list.h"

static const double bucket_bounds[] = {PS_METRICS_BUCKETS};
#define NBUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])

struct family;

struct series {
  struct series *hnext; /* hash chain */
  struct ps_list node;  /* in fam->series */
  struct family *fam;
  uint64_t hash;
  double value; /* counter, gauge */
  double sum;   /* histogram */
  uint64_t count;
  uint64_t buckets[NBUCKETS]; /* per bucket, not cumulative; rendering accumulates */
  size_t labels_len;
  bool referenced; /* a struct ps_metric_ref was resolved to it: freeing it must invalidate the refs */
  char labels[];
};

struct family {
  char *name;
  char *help;
  enum ps_metric_type type;
  struct ps_list series; /* of series.node, in creation order (the exposition's order) */
};

static struct {
  struct family **fams; /* declaration order */
  size_t nfam, capfam;
  struct series **tab; /* tab_cap is a power of two */
  size_t tab_cap, nseries;
  uint64_t dropped; /* series not created at PS_METRICS_MAX_SERIES */
} g;

/* Bumped whenever a series is freed, so that a struct ps_metric_ref resolved before re-resolves. Outside
 * g: ps_metrics_reset clears g, and a generation must never come back to a value a ref holds. */
static unsigned long long generation = 1;

/* ---- helpers ------------------------------------------------------------------------------------- */

static bool valid_name(const char *s) {
  if (s == NULL || *s == '\0') return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(p != s && c >= '0' && c <= '9')) return false;
  }
  return true;
}

/* FNV-1a over name, a separator no name contains, then labels. */
static uint64_t key_hash(const char *name, const char *labels, size_t labels_len) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  h = (h ^ 0xffu) * 1099511628211ull;
  for (size_t i = 0; i < labels_len; i++) h = (h ^ (unsigned char)labels[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static struct family *find_family(const char *name) {
  for (size_t i = 0; i < g.nfam; i++)
    if (strcmp(g.fams[i]->name, name) == 0) return g.fams[i];
  return NULL;
}

static struct series **find_slot(const char *name, const char *labels, size_t labels_len, uint64_t h) {
  if (g.tab_cap == 0) return NULL;
  struct series **pp = &g.tab[h & (g.tab_cap - 1)];
  for (; *pp != NULL; pp = &(*pp)->hnext) {
    struct series *s = *pp;
    if (s->hash == h && s->labels_len == labels_len && memcmp(s->labels, labels, labels_len) == 0 &&
        strcmp(s->fam->name, name) == 0)
      return pp;
  }
  return pp;
}

static struct series *find_series(const char *name, const char *labels) {
  if (name == NULL) return NULL;
  if (labels == NULL) labels = "";
  size_t n = strlen(labels);
  struct series **pp = find_slot(name, labels, n, key_hash(name, labels, n));
  return pp != NULL ? *pp : NULL;
}

static int grow_table(void) {
  size_t cap = g.tab_cap ? g.tab_cap * 2 : 64;
  struct series **tab = calloc(cap, sizeof *tab);
  if (tab == NULL) return UV_ENOMEM;
  for (size_t i = 0; i < g.tab_cap; i++) {
    struct series *s = g.tab[i];
    while (s != NULL) {
      struct series *next = s->hnext;
      s->hnext = tab[s->hash & (cap - 1)];
      tab[s->hash & (cap - 1)] = s;
      s = next;
    }
  }
  free(g.tab);
  g.tab = tab;
  g.tab_cap = cap;
  return 0;
}

/* The series for (name, labels), created on first use; NULL when the family is undeclared, the labels
 * cannot be rendered safely, a limit is reached or memory is short. Metrics never fail their caller. */
static struct series *get_series(const char *name, const char *labels) {
  if (name == NULL) return NULL;
  if (labels == NULL) labels = "";
  size_t n = strlen(labels);
  uint64_t h = key_hash(name, labels, n);
  struct series **pp = find_slot(name, labels, n, h);
  if (pp != NULL && *pp != NULL) return *pp;

  struct family *f = find_family(name);
  if (f == NULL) return NULL;
  /* A raw newline would end the sample line early and break every scrape after it. */
  if (n > PS_METRICS_MAX_LABELS_LEN || memchr(labels, '\n', n) != NULL) return NULL;
  if (g.nseries >= PS_METRICS_MAX_SERIES) {
    g.dropped++;
    return NULL;
  }
  if (g.nseries + 1 > g.tab_cap / 4 * 3) {
    if (grow_table() != 0) return NULL;
    pp = find_slot(name, labels, n, h);
  }
  struct series *s = calloc(1, sizeof *s + n + 1);
  if (s == NULL) return NULL;
  s->fam = f;
  s->hash = h;
  s->labels_len = n;
  memcpy(s->labels, labels, n + 1);
  s->hnext = *pp;
  *pp = s;
  ps_list_insert_tail(&f->series, &s->node);
  g.nseries++;
  return s;
}

/* ---- API ----------------------------------------------------------------------------------------- */

int ps_metrics_declare(const char *name, enum ps_metric_type type, const char *help) {
  if (!valid_name(name)) return UV_EINVAL;
  if (type != PS_METRIC_COUNTER && type != PS_METRIC_GAUGE && type != PS_METRIC_HISTOGRAM) return UV_EINVAL;
  struct family *f = find_family(name);
  if (f != NULL) return f->type == type ? 0 : UV_EINVAL;

  if (g.nfam == g.capfam) {
    size_t cap = g.capfam ? g.capfam * 2 : 16;
    struct family **fams = realloc(g.fams, cap * sizeof *fams);
    if (fams == NULL) return UV_ENOMEM;
    g.fams = fams;
    g.capfam = cap;
  }
  f = calloc(1, sizeof *f);
  if (f == NULL) return UV_ENOMEM;
  f->name = strdup(name);
  f->help = strdup(help != NULL ? help : "");
  if (f->name == NULL || f->help == NULL) {
    free(f->name);
    free(f->help);
    free(f);
    return UV_ENOMEM;
  }
  f->type = type;
  g.fams[g.nfam++] = f;
  return 0;
}

bool ps_metrics_ref_resolved(const struct ps_metric_ref *ref) {
  return ref->series != NULL && ref->gen == generation;
}

static struct series *ref_series(struct ps_metric_ref *ref, const char *name, const char *labels) {
  if (ps_metrics_ref_resolved(ref)) return ref->series;
  ref->series = get_series(name, labels);
  ref->gen = generation;
  if (ref->series != NULL) ((struct series *)ref->series)->referenced = true;
  return ref->series;
}

static void series_add(struct series *s, double delta) {
  if (s == NULL || s->fam->type == PS_METRIC_HISTOGRAM) return;
  /* A counter only goes up (a decrease reads as a process restart to rate()). */
  if (s->fam->type == PS_METRIC_COUNTER && !(delta >= 0)) return;
  s->value += delta;
}

static void series_set(struct series *s, double value) {
  if (s == NULL || s->fam->type != PS_METRIC_GAUGE) return;
  s->value = value;
}

static void series_observe(struct series *s, double value) {
  if (s == NULL || s->fam->type != PS_METRIC_HISTOGRAM) return;
  /* NaN falls in no finite bucket: it shows in +Inf (count) and in the sum, as client_golang does. */
  for (size_t i = 0; i < NBUCKETS; i++) {
    if (value <= bucket_bounds[i]) {
      s->buckets[i]++;
      break;
    }
  }
  s->count++;
  s->sum += value;
}

void ps_metrics_add(const char *name, const char *labels, double delta) {
  series_add(get_series(name, labels), delta);
}

void ps_metrics_set(const char *name, const char *labels, double value) {
  series_set(get_series(name, labels), value);
}

void ps_metrics_observe(const char *name, const char *labels, double value) {
  series_observe(get_series(name, labels), value);
}

void ps_metrics_ref_add(struct ps_metric_ref *ref, const char *name, const char *labels, double delta) {
  series_add(ref_series(ref, name, labels), delta);
}

void ps_metrics_ref_set(struct ps_metric_ref *ref, const char *name, const char *labels, double value) {
  series_set(ref_series(ref, name, labels), value);
}

void ps_metrics_ref_observe(struct ps_metric_ref *ref, const char *name, const char *labels, double value) {
  series_observe(ref_series(ref, name, labels), value);
}

/* Unlinks s from its hash chain and its family, and frees it. */
static void free_series(struct series *s) {
  struct series **pp = &g.tab[s->hash & (g.tab_cap - 1)];
  while (*pp != s) pp = &(*pp)->hnext;
  *pp = s->hnext;
  ps_list_remove(&s->node);
  g.nseries--;
  /* Only a series some ref points at invalidates the refs: a server's inflight gauge, removed after each
   * Prometheus request, must not make 10,000 targets look up every series again at their next refresh. */
  if (s->referenced) generation++;
  free(s);
}

void ps_metrics_remove(const char *name, const char *labels) {
  struct series *s = find_series(name, labels);
  if (s != NULL) free_series(s);
}

/* ---- collect hooks ------------------------------------------------------------------------------- */

/* Outside g, like generation: ps_metrics_reset drops the series, not who feeds them. */
static struct {
  ps_metrics_collect_fn fn;
  void *arg;
} collectors[PS_METRICS_MAX_COLLECTORS];
static size_t ncollectors;

int ps_metrics_collector_add(ps_metrics_collect_fn fn, void *arg) {
  for (size_t i = 0; i < ncollectors; i++)
    if (collectors[i].fn == fn && collectors[i].arg == arg) return 0;
  if (ncollectors == PS_METRICS_MAX_COLLECTORS) return UV_ENOSPC;
  collectors[ncollectors].fn = fn;
  collectors[ncollectors++].arg = arg;
  return 0;
}

void ps_metrics_collector_remove(ps_metrics_collect_fn fn, void *arg) {
  for (size_t i = 0; i < ncollectors; i++) {
    if (collectors[i].fn != fn || collectors[i].arg != arg) continue;
    memmove(&collectors[i], &collectors[i + 1], (ncollectors - i - 1) * sizeof collectors[0]);
    ncollectors--;
    return;
  }
}

static void collect(void) {
  for (size_t i = 0; i < ncollectors; i++) collectors[i].fn(collectors[i].arg);
}

double ps_metrics_get(const char *name, const char *labels) {
  collect();
  struct series *s = find_series(name, labels);
  if (s == NULL || s->fam->type == PS_METRIC_HISTOGRAM) return NAN;
  return s->value;
}

void ps_metrics_reset(void) {
  for (size_t i = 0; i < g.nfam; i++) {
    struct family *f = g.fams[i];
    ps_list_foreach_safe(n, next, &f->series) free(ps_list_entry(n, struct series, node));
    free(f->name);
    free(f->help);
    free(f);
  }
  free(g.fams);
  free(g.tab);
  memset(&g, 0, sizeof g);
  generation++;
}

/* ---- exposition ---------------------------------------------------------------------------------- */

size_t ps_metrics_escape_label(char *dst, size_t cap, const char *value) {
  size_t n = 0;
  for (const char *p = value != NULL ? value : ""; *p; p++) {
    const char *rep = NULL;
    char one[2] = {*p, '\0'};
    if (*p == '\\')
      rep = "\\\\";
    else if (*p == '"')
      rep = "\\\"";
    else if (*p == '\n')
      rep = "\\n";
    else
      rep = one;
    for (const char *r = rep; *r; r++, n++)
      if (n + 1 < cap) dst[n] = *r;
  }
  if (cap > 0) dst[n < cap ? n : cap - 1] = '\0';
  return n;
}

/* HELP text escapes only backslash and newline (the format's rule for docstrings). */
static int put_help(struct ps_buf *out, const struct family *f) {
  static const char *const types[] = {"counter", "gauge", "histogram"};
  int r = ps_buf_printf(out, "# HELP %s ", f->name);
  for (const char *p = f->help; r == 0 && *p; p++) {
    if (*p == '\\')
      r = ps_buf_puts(out, "\\\\");
    else if (*p == '\n')
      r = ps_buf_puts(out, "\\n");
    else
      r = ps_buf_append(out, p, 1);
  }
  if (r == 0) r = ps_buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
  return r;
}

static int put_sample(struct ps_buf *out, const char *name, const char *suffix, const char *labels,
                      const char *le, double v) {
  char num[48];
  ps_fmt_double(num, sizeof num, v);
  int r = ps_buf_printf(out, "%s%s", name, suffix);
  if (r == 0 && (*labels || le != NULL)) {
    r = ps_buf_printf(out, "{%s%s", labels, le != NULL && *labels ? "," : "");
    if (r == 0 && le != NULL) r = ps_buf_printf(out, "le=\"%s\"", le);
    if (r == 0) r = ps_buf_puts(out, "}");
  }
  if (r == 0) r = ps_buf_printf(out, " %s\n", num);
  return r;
}

static int put_histogram(struct ps_buf *out, const struct family *f, const struct series *s) {
  uint64_t cum = 0;
  int r = 0;
  for (size_t i = 0; r == 0 && i < NBUCKETS; i++) {
    char le[48];
    ps_fmt_double(le, sizeof le, bucket_bounds[i]);
    cum += s->buckets[i];
    r = put_sample(out, f->name, "_bucket", s->labels, le, (double)cum);
  }
  if (r == 0) r = put_sample(out, f->name, "_bucket", s->labels, "+Inf", (double)s->count);
  if (r == 0) r = put_sample(out, f->name, "_sum", s->labels, NULL, s->sum);
  if (r == 0) r = put_sample(out, f->name, "_count", s->labels, NULL, (double)s->count);
  return r;
}

int ps_metrics_render(struct ps_buf *out) {
  collect();
  for (size_t i = 0; i < g.nfam; i++) {
    const struct family *f = g.fams[i];
    int r = put_help(out, f);
    ps_list_foreach(n, &f->series) {
      if (r != 0) break;
      const struct series *s = ps_list_entry(n, const struct series, node);
      if (f->type == PS_METRIC_HISTOGRAM)
        r = put_histogram(out, f, s);
      else
        r = put_sample(out, f->name, "", s->labels, NULL, s->value);
    }
    if (r != 0) return r;
  }
  /* Not a family of the registry (it must exist when the registry is full), and written only once a series
   * was dropped, so that a registry that never filled renders exactly what was declared. */
  if (g.dropped == 0) return 0;
  int r =
      ps_buf_printf(out,
                    "# HELP %s Series not created: the registry held %d already (PS_METRICS_MAX_SERIES).\n"
                    "# TYPE %s counter\n",
                    PS_METRICS_DROPPED, PS_METRICS_MAX_SERIES, PS_METRICS_DROPPED);
  return r != 0 ? r : put_sample(out, PS_METRICS_DROPPED, "", "", NULL, (double)g.dropped);
}
