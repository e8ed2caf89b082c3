/* Target lifecycle: registry, first load, refresh timers, staleness, idle eviction, waiters, watchers.
 *
 * Every target owns one uv_timer_t (its refresh timer) and is freed only in that timer's close callback,
 * so a target that is evicted while a callback is still on the stack stays valid until the loop turns.
 *
 * A large fetch (a first load: up to PS_MAX_HISTORY_POINTS samples, tens of milliseconds of puts and
 * refits) is not fed to the engine inside the fetch callback: the samples are copied and the target joins
 * the registry's loading queue, which one uv_idle_t shared by all targets serves in order, one slice of
 * PS_TARGET_LOAD_SLICE samples per loop turn (see "sliced loads" below). In order, not round-robin: first
 * loads are all about the same size (the history window), so serving them one after the other finishes
 * each as early as possible, and those asked first beat their first-load timeout, where round-robin would
 * finish all of them near the end of the queue (10,000 targets after a restart: minutes). */
#include "targets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forecast/engine.h"
#include "log.h"
#include "metrics.h"
#include "prom.h"

struct ps_target {
  struct ps_targets *owner;
  struct ps_target *hnext; /* hash chain */
  struct ps_list node;     /* in owner->all, for sweeps and shutdown */
  uint64_t hash;
  char *key; /* canonical (namespace, name, sorted metadata) */
  char *ns, *name;
  char *labels;  /* metric labels, escaped */
  char *mlabels; /* scratch: labels + `,model="..."` (mlabels_cap bytes) */
  size_t mlabels_cap;
  struct ps_target_config cfg;
  struct ps_engine *engine;             /* history and models; owned */
  uv_timer_t timer;                     /* refresh; the target is freed in its close callback */
  struct fetch *fetch;                  /* the (shared) fetch in flight, or NULL */
  struct ps_list fetch_node;            /* in fetch->sharers while fetch != NULL */
  int64_t refresh_offset_ms;            /* jitter: into each step, after the settle time */
  int64_t refresh_at_ms;                /* wall time the refresh timer was last armed for */
  int64_t fetch_start_ms, fetch_end_ms; /* the range of the fetch in flight */
  int64_t fetched_end_ms;               /* end of the last range fetched successfully */
  uint64_t fetch_began;                 /* uv_now when the fetch in flight began */
  uint64_t last_ok;                     /* uv_now of the last successful fetch */
  uint64_t last_used;                   /* uv_now of the last read */
  bool loaded;                          /* at least one fetch succeeded */
  bool have_activity;                   /* `active` below was computed at least once */
  bool closing;
  int err; /* the last fetch's error, 0 when it succeeded */
  char errmsg[PS_TARGET_MAX_ERROR];
  struct ps_target_reading reading;
  /* The newest observation exactly as Prometheus returned it: the engine keeps its history in float, and
   * the observation is what shadow mode answers and what a reactive scaler would see, to the bit. */
  double obs;
  int64_t obs_ms;
  bool have_obs;
  /* What the engine reported last, so the log and /metrics hear of changes only. */
  bool have_result;
  enum ps_model chosen;
  int64_t period_ms;
  const char *note;        /* static text from the engine, or NULL */
  uint8_t mae_shown;       /* bit m: prescale_target_model_error{model=m} exists */
  struct ps_list waiters;  /* of struct ps_target_waiter, by link.node */
  struct ps_list watchers; /* of struct ps_target_watcher, by link.node */
  /* A sliced load in progress (load != NULL): the fetched samples, copied out of the Prometheus callback
   * (16 bytes a sample, at most 1.6 MB) and owned by the target until the last slice is in or the target
   * closes (load_end frees them); load_done of load_n are in the engine. No fetch runs meanwhile. */
  struct ps_sample *load;
  size_t load_n, load_done;
  struct ps_list load_node; /* in owner->load_queue while load != NULL */
};

/* A query_range in flight (or queued in the HTTP client) for every target that asked exactly the same
 * (server, query, step, start, end): one request, its samples delivered to each sharer in turn. Targets
 * with the same Prometheus inputs and different thresholds, models or names fetch once. It goes when it
 * delivers, or when its last sharer leaves (evicted, closed): then the request is cancelled. */
struct fetch {
  struct ps_targets *owner;
  struct fetch *hnext; /* chain in owner->fetches */
  uint64_t hash;
  char *key;               /* server \x1f query \x1f step \x1f start \x1f end */
  struct ps_prom_req *req; /* NULL once delivering */
  struct ps_list sharers;  /* of ps_target.fetch_node */
  bool delivering;         /* in fetch_done_cb: sharers leaving must not free it */
};

struct ps_targets {
  uv_loop_t *loop;
  struct fetch *fetches[PS_TARGETS_FETCH_BUCKETS];
  size_t nfetches;
  const struct ps_server_config *cfg;
  struct ps_http_client *http;
  struct ps_target *buckets[PS_TARGETS_BUCKETS];
  struct ps_list all; /* of ps_target.node, newest first */
  size_t count;
  uv_timer_t sweep;
  /* Feeds the loading queue (the head until it is done, then the next) one slice per loop turn; active
   * only while the queue is not empty. An idle handle rather than a 0 ms timer: it also keeps the loop
   * polling for I/O without blocking between slices. */
  uv_idle_t loader;
  struct ps_list load_queue; /* of ps_target.load_node, first come first fed */
  size_t loading;            /* targets in the loading queue */
  size_t open_handles;       /* sweep, loader and the targets still closing; freed when it reaches 0 */
  bool closing;
};

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void declare_metrics(void) {
  ps_metrics_declare("prescale_targets", PS_METRIC_GAUGE, "Targets (ScaledObject triggers) being tracked.");
  ps_metrics_declare("prescale_targets_loading", PS_METRIC_GAUGE,
                     "Targets whose fetched history is being fed to the forecasting engine, a slice per loop "
                     "turn.");
  ps_metrics_declare("prescale_target_observed", PS_METRIC_GAUGE,
                     "Latest value of the target's query seen in Prometheus.");
  ps_metrics_declare(
      "prescale_target_predicted", PS_METRIC_GAUGE,
      "Forecast maximum over (now, now + lookahead], before the quantile margin and headroom.");
  ps_metrics_declare(
      "prescale_target_value", PS_METRIC_GAUGE,
      "Value returned to KEDA: max(observed, predicted + margin) x (1 + headroom); the observed "
      "value in shadow mode.");
  ps_metrics_declare("prescale_target_active", PS_METRIC_GAUGE,
                     "1 when the value is above activationThreshold.");
  ps_metrics_declare("prescale_target_model_info", PS_METRIC_GAUGE,
                     "1 for the model that answers the target (model auto chooses by recent errors).");
  ps_metrics_declare("prescale_target_period_seconds", PS_METRIC_GAUGE,
                     "Season in use, given or detected; 0 when none.");
  ps_metrics_declare("prescale_target_model_error", PS_METRIC_GAUGE,
                     "Rolling mean absolute error of each model at the lookahead, in the query's unit.");
  ps_metrics_declare("prescale_target_quantile_margin", PS_METRIC_GAUGE,
                     "Margin added to the forecast: the `quantile` of the model's own errors (0 without).");
  ps_metrics_declare(
      "prescale_target_fallback", PS_METRIC_GAUGE,
      "1 while the forecast falls back (e.g. history shorter than two periods: seasonal models "
      "wait); the log line `forecast fallback` says why.");
  ps_metrics_declare("prescale_target_shadow", PS_METRIC_GAUGE,
                     "1 in shadow mode: KEDA gets the observed value, the forecast is only exported.");
  ps_metrics_declare("prescale_target_last_success_timestamp_seconds", PS_METRIC_GAUGE,
                     "Unix time of the last successful refresh from Prometheus.");
  ps_metrics_declare("prescale_refreshes_total", PS_METRIC_COUNTER,
                     "Refreshes of target history from Prometheus.");
  ps_metrics_declare("prescale_refresh_errors_total", PS_METRIC_COUNTER,
                     "Refreshes of target history that failed.");
  ps_metrics_declare("prescale_refresh_duration_seconds", PS_METRIC_HISTOGRAM,
                     "Time taken by one refresh (one or more query_range requests).");
  ps_metrics_declare("prescale_refreshes_superseded_total", PS_METRIC_COUNTER,
                     "Refreshes dropped after waiting a whole step for a Prometheus request slot.");
  ps_metrics_declare(
      "prescale_refreshes_shared_total", PS_METRIC_COUNTER,
      "Refreshes that joined another target's identical request instead of sending their own.");
}

/* ---- keys ---------------------------------------------------------------------------------------- */

static int kv_cmp(const void *a, const void *b) {
  const struct ps_kv *x = a, *y = b;
  return strcmp(x->key, y->key);
}

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* The metadata map arrives in any order (protobuf maps are unordered), so the key sorts it. Fields are
 * separated by bytes that cannot appear in Kubernetes names and are unlikely in metadata; a collision
 * only makes two ScaledObjects share one target with identical settings, never a wrong answer, because
 * the whole key is compared, not only its hash. */
static int make_key(struct ps_buf *out, const char *ns, const char *name, const struct ps_kv *md, size_t n) {
  struct ps_kv *sorted = NULL;
  if (n > 0) {
    sorted = malloc(n * sizeof *sorted);
    if (sorted == NULL) return UV_ENOMEM;
    memcpy(sorted, md, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, kv_cmp);
  }
  int r = ps_buf_printf(out, "%s\x1f%s", ns, name);
  for (size_t i = 0; r == 0 && i < n; i++)
    r = ps_buf_printf(out, "\x1f%s\x1e%s", sorted[i].key, sorted[i].value);
  free(sorted);
  return r;
}

static char *make_labels(const char *ns, const char *name, const char *metric) {
  size_t need = ps_metrics_escape_label(NULL, 0, ns) + ps_metrics_escape_label(NULL, 0, name) +
                ps_metrics_escape_label(NULL, 0, metric) + 40;
  char *s = malloc(need);
  if (s == NULL) return NULL;
  int off = snprintf(s, need, "namespace=\"");
  off += (int)ps_metrics_escape_label(s + off, need - (size_t)off, ns);
  off += snprintf(s + off, need - (size_t)off, "\",name=\"");
  off += (int)ps_metrics_escape_label(s + off, need - (size_t)off, name);
  off += snprintf(s + off, need - (size_t)off, "\",metric=\"");
  off += (int)ps_metrics_escape_label(s + off, need - (size_t)off, metric);
  snprintf(s + off, need - (size_t)off, "\"");
  return s;
}

/* ---- lifecycle ----------------------------------------------------------------------------------- */

static void sweep_cb(uv_timer_t *timer);
static void refresh_cb(uv_timer_t *timer);
static void load_cb(uv_idle_t *idle);
static void load_end(struct ps_target *t);
static void start_fetch(struct ps_target *t);
static void fetch_leave(struct ps_target *t);
static int64_t refresh_offset(const struct ps_target_config *c);

/* A refresh re-reads the newest points; the engine must accept them as revisions. */
_Static_assert(PS_REFRESH_OVERLAP_STEPS <= PS_ENGINE_REVISABLE,
               "the refresh overlap exceeds what the engine revises");
/* A batch put at once must not cost more than a slice. */
_Static_assert(PS_TARGET_LOAD_DIRECT_MAX <= PS_TARGET_LOAD_SLICE, "a direct batch exceeds a slice");

static void registry_maybe_free(struct ps_targets *ts) {
  if (ts->closing && ts->open_handles == 0) free(ts);
}

int ps_targets_new(uv_loop_t *loop, const struct ps_server_config *cfg, struct ps_http_client *http,
                   struct ps_targets **out) {
  struct ps_targets *ts = calloc(1, sizeof *ts);
  if (ts == NULL) return UV_ENOMEM;
  ts->loop = loop;
  ts->cfg = cfg;
  ts->http = http;
  declare_metrics();
  ps_metrics_set("prescale_targets", "", 0);
  ps_metrics_set("prescale_targets_loading", "", 0);
  /* Neither init can fail on Unix (they only fill the struct), so no handle is left to close on error. */
  int r = uv_timer_init(loop, &ts->sweep);
  if (r == 0) r = uv_idle_init(loop, &ts->loader);
  if (r != 0) {
    free(ts);
    return r;
  }
  ts->sweep.data = ts;
  ts->loader.data = ts;
  ts->open_handles = 2;
  uint64_t every = cfg->target_idle_ms / 2;
  if (every > PS_TARGETS_SWEEP_MAX_MS) every = PS_TARGETS_SWEEP_MAX_MS;
  if (every < 1000) every = 1000;
  uv_timer_start(&ts->sweep, sweep_cb, every, every);
  uv_unref((uv_handle_t *)&ts->sweep); /* the sweep alone must not keep the loop alive */
  *out = ts;
  return 0;
}

size_t ps_targets_count(const struct ps_targets *ts) { return ts->count; }

size_t ps_targets_fetches(const struct ps_targets *ts) { return ts->nfetches; }

const struct ps_target_config *ps_target_config(const struct ps_target *t) { return &t->cfg; }

/* Frees what a target owns and the target; its timer is closed or was never initialised. */
static void target_free(struct ps_target *t) {
  ps_engine_free(t->engine);
  ps_target_config_free(&t->cfg);
  free(t->key);
  free(t->ns);
  free(t->name);
  free(t->labels);
  free(t->mlabels);
  free(t);
}

static void target_free_cb(uv_handle_t *h) {
  struct ps_target *t = h->data;
  struct ps_targets *ts = t->owner;
  target_free(t);
  ts->open_handles--;
  registry_maybe_free(ts);
}

static void link_add(struct ps_list *head, struct ps_target_link *l, struct ps_target *t) {
  l->target = t;
  ps_list_insert_head(head, &l->node);
}

static void link_remove(struct ps_target_link *l) {
  ps_list_remove(&l->node);
  l->target = NULL;
}

static void notify_waiters(struct ps_target *t, int err) {
  /* Unlink each waiter before its callback: the callback may free it or read the target again. */
  for (struct ps_list *n; (n = ps_list_first(&t->waiters)) != NULL;) {
    struct ps_target_waiter *w = ps_list_entry(n, struct ps_target_waiter, link.node);
    link_remove(&w->link);
    w->cb(w, err);
  }
}

static const char *const target_series[] = {
    "prescale_target_observed",
    "prescale_target_predicted",
    "prescale_target_value",
    "prescale_target_active",
    "prescale_target_last_success_timestamp_seconds",
    "prescale_refreshes_total",
    "prescale_refresh_errors_total",
    "prescale_target_period_seconds",
    "prescale_target_quantile_margin",
    "prescale_target_shadow",
    "prescale_target_fallback",
};

/* The target's labels plus model="<m>", in the target's scratch buffer (valid until the next call). */
static const char *model_labels(struct ps_target *t, enum ps_model m) {
  snprintf(t->mlabels, t->mlabels_cap, "%s,model=\"%s\"", t->labels, ps_model_name(m));
  return t->mlabels;
}

/* Removes the series labelled by model (the chosen one's info, each model's error) that `keep`, a live
 * target with the same labels, does not set itself (keep may be NULL). */
static void remove_model_series(struct ps_target *t, const struct ps_target *keep) {
  bool keep_info = keep != NULL && keep->have_result && keep->chosen == t->chosen;
  if (t->have_result && !keep_info)
    ps_metrics_remove("prescale_target_model_info", model_labels(t, t->chosen));
  unsigned drop = t->mae_shown & ~(keep != NULL ? keep->mae_shown : 0u);
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    if (drop & (1u << m)) ps_metrics_remove("prescale_target_model_error", model_labels(t, m));
  t->mae_shown = 0;
}

/* Unlinks the target and closes its timer; memory goes in target_free_cb. */
static void target_close(struct ps_target *t, int waiter_err) {
  struct ps_targets *ts = t->owner;
  if (t->closing) return;
  t->closing = true;
  fetch_leave(t);
  load_end(t);
  notify_waiters(t, waiter_err);
  for (struct ps_list *n; (n = ps_list_first(&t->watchers)) != NULL;)
    link_remove(ps_list_entry(n, struct ps_target_link, node));
  struct ps_target **pp = &ts->buckets[t->hash % PS_TARGETS_BUCKETS];
  while (*pp != t) pp = &(*pp)->hnext;
  *pp = t->hnext;
  ps_list_remove(&t->node);
  ts->count--;
  ps_metrics_set("prescale_targets", "", (double)ts->count);
  /* Another target may carry the same labels (the same trigger after a metadata edit): keep its series. */
  const struct ps_target *shared = NULL;
  ps_list_foreach(n, &ts->all) {
    const struct ps_target *o = ps_list_entry(n, struct ps_target, node);
    if (!strcmp(o->labels, t->labels)) {
      shared = o;
      break;
    }
  }
  if (shared == NULL)
    for (size_t i = 0; i < sizeof target_series / sizeof target_series[0]; i++)
      ps_metrics_remove(target_series[i], t->labels);
  remove_model_series(t, shared);
  uv_close((uv_handle_t *)&t->timer, target_free_cb);
}

/* The close callback of the registry's own handles (sweep, loader). */
static void registry_handle_closed_cb(uv_handle_t *h) {
  struct ps_targets *ts = h->data;
  ts->open_handles--;
  registry_maybe_free(ts);
}

void ps_targets_close(struct ps_targets *ts) {
  if (ts->closing) return;
  ts->closing = true;
  /* target_close empties the loading queue too */
  for (struct ps_list *n; (n = ps_list_first(&ts->all)) != NULL;)
    target_close(ps_list_entry(n, struct ps_target, node), UV_ECANCELED);
  uv_close((uv_handle_t *)&ts->sweep, registry_handle_closed_cb);
  uv_close((uv_handle_t *)&ts->loader, registry_handle_closed_cb);
}

static void sweep_cb(uv_timer_t *timer) { ps_targets_sweep(timer->data); }

void ps_targets_sweep(struct ps_targets *ts) {
  uint64_t now = uv_now(ts->loop);
  ps_list_foreach_safe(n, next, &ts->all) {
    struct ps_target *t = ps_list_entry(n, struct ps_target, node);
    if (ps_list_empty(&t->waiters) && ps_list_empty(&t->watchers) &&
        now - t->last_used >= ts->cfg->target_idle_ms) {
      ps_log(PS_LOG_INFO, "target idle, dropped", "namespace", t->ns, "name", t->name, NULL);
      target_close(t, UV_ECANCELED);
    }
  }
}

static int target_create(struct ps_targets *ts, const char *ns, const char *name, const struct ps_kv *md,
                         size_t n, struct ps_buf *key, uint64_t h, struct ps_target **out, char *err,
                         size_t errlen);

int ps_targets_get_or_create(struct ps_targets *ts, const char *ns, const char *name, const struct ps_kv *md,
                             size_t n, struct ps_target **out, char *err, size_t errlen) {
  struct ps_buf key;
  ps_buf_init(&key);
  int r = make_key(&key, ns, name, md, n);
  if (r != 0) goto done;
  uint64_t h = fnv1a(key.data, key.len);
  for (struct ps_target *t = ts->buckets[h % PS_TARGETS_BUCKETS]; t != NULL; t = t->hnext) {
    if (t->hash == h && strcmp(t->key, key.data) == 0) {
      *out = t;
      goto done;
    }
  }
  if (ts->count >= ts->cfg->max_targets) {
    snprintf(err, errlen, "prescale tracks %zu targets already (--max-targets)", ts->count);
    r = PS_TARGETS_ERR_FULL;
    goto done;
  }
  r = target_create(ts, ns, name, md, n, &key, h, out, err, errlen);
done:
  ps_buf_free(&key);
  return r;
}

/* Creates the target of key (hash h): validates the metadata, builds its engine and timer, links it into
 * the registry, logs it and starts the first load of its history. Steals key's data on success. */
static int target_create(struct ps_targets *ts, const char *ns, const char *name, const struct ps_kv *md,
                         size_t n, struct ps_buf *key, uint64_t h, struct ps_target **out, char *err,
                         size_t errlen) {
  struct ps_target *t = calloc(1, sizeof *t);
  if (t == NULL) return UV_ENOMEM;
  int r = ps_target_config_parse(&t->cfg, md, n, ts->cfg->prometheus_url, err, errlen);
  if (r != 0) {
    free(t);
    return r;
  }
  t->owner = ts;
  t->hash = h;
  t->key = ps_buf_steal(key, NULL);
  t->ns = strdup(ns);
  t->name = strdup(name);
  t->labels = make_labels(ns, name, t->cfg.metric_name);
  t->mlabels_cap = t->labels != NULL ? strlen(t->labels) + PS_TARGET_MODEL_LABEL_MAX : 0;
  t->mlabels = t->labels != NULL ? malloc(t->mlabels_cap) : NULL;
  struct ps_engine_config ec = {
      .model = t->cfg.model,
      .step_ms = t->cfg.step_ms,
      .period_ms = t->cfg.period_ms,
      .lookahead_ms = t->cfg.lookahead_ms,
      .capacity = (size_t)(t->cfg.history_ms / t->cfg.step_ms) + 1,
      .quantile = t->cfg.quantile,
      .seed = (uint32_t)(h ^ (h >> 32)), /* targets created together refit at different steps */
  };
  r = t->ns && t->name && t->labels && t->mlabels ? ps_engine_new(&ec, &t->engine) : UV_ENOMEM;
  if (r == 0) r = uv_timer_init(ts->loop, &t->timer);
  if (r != 0) {
    if (r == UV_EINVAL) snprintf(err, errlen, "the forecasting engine rejected this trigger's settings");
    target_free(t);
    return r;
  }
  t->timer.data = t;
  t->refresh_offset_ms = refresh_offset(&t->cfg);
  ps_list_init(&t->fetch_node);
  ts->open_handles++;
  t->last_used = uv_now(ts->loop);
  t->hnext = ts->buckets[h % PS_TARGETS_BUCKETS];
  ts->buckets[h % PS_TARGETS_BUCKETS] = t;
  ps_list_insert_head(&ts->all, &t->node);
  ts->count++;
  ps_metrics_set("prescale_targets", "", (double)ts->count);
  /* Counters start at 0 so that rate() and alerts see the series before the first error. */
  ps_metrics_add("prescale_refreshes_total", t->labels, 0);
  ps_metrics_add("prescale_refresh_errors_total", t->labels, 0);
  ps_metrics_set("prescale_target_shadow", t->labels, t->cfg.shadow ? 1 : 0);
  char dur[32], per[32];
  ps_duration_format(t->cfg.history_ms, dur, sizeof dur);
  bool seasonless = t->cfg.model == PS_MODEL_LAST || t->cfg.model == PS_MODEL_LINEAR;
  if (t->cfg.period_ms > 0)
    ps_duration_format(t->cfg.period_ms, per, sizeof per);
  else
    snprintf(per, sizeof per, "%s", seasonless ? "none" : "auto");
  ps_log(PS_LOG_INFO, "new target, loading history", "namespace", ns, "name", name, "query", t->cfg.query,
         "model", ps_model_name(t->cfg.model), "period", per, "history", dur, "mode",
         t->cfg.shadow ? "shadow" : "normal", "server", t->cfg.server_address, NULL);
  start_fetch(t);
  *out = t;
  return 0;
}

/* ---- refresh ------------------------------------------------------------------------------------- */

/* Refreshes run after each step boundary plus a settle time for the scrape to land (so the newest point
 * of every fetch is as fresh as Prometheus can make it), plus the target's offset. */
static int64_t refresh_settle_ms(int64_t step) {
  return PS_REFRESH_SETTLE_MS < step / 2 ? PS_REFRESH_SETTLE_MS : step / 2;
}

/* Each target refreshes at its own offset into the step (plus the settle time), so that 10,000 targets
 * do not all ask at the boundary. The offset comes from a hash of what it asks Prometheus, not a random
 * draw: stable across refreshes and restarts, and equal for targets that can share one request. */
static int64_t refresh_offset(const struct ps_target_config *c) {
  struct ps_buf k;
  ps_buf_init(&k);
  uint64_t h = 0;
  if (ps_buf_printf(&k, "%s\x1f%s\x1f%lld", c->server_address, c->query, (long long)c->step_ms) == 0)
    h = fnv1a(k.data, k.len);
  ps_buf_free(&k);
  int64_t span = (c->step_ms - refresh_settle_ms(c->step_ms)) * PS_REFRESH_JITTER_PCT / 100;
  return span > 0 ? (int64_t)((h >> 16) % (uint64_t)span) : 0;
}

static void schedule_refresh(struct ps_target *t) {
  if (t->closing) return;
  int64_t step = t->cfg.step_ms;
  int64_t now = wall_ms();
  /* The next instant at the target's offset into a step. */
  int64_t lead = refresh_settle_ms(step) + t->refresh_offset_ms;
  int64_t next = now / step * step + lead;
  /* Later than now, and later than the instant the timer last fired for: it runs on the loop's cached
   * clock, so it may fire a little before its wall-clock instant, and "the next instant at the offset"
   * would then be that same instant again (two refreshes in one step). */
  int64_t floor_ms = now > t->refresh_at_ms ? now : t->refresh_at_ms;
  if (next <= floor_ms) next += ((floor_ms - next) / step + 1) * step; /* no loop over a clock jump */
  if (next - now > step + lead) next = now + step; /* clock jumps: never wait much more than one step */
  t->refresh_at_ms = next;
  uv_timer_start(&t->timer, refresh_cb, (uint64_t)(next - now), 0);
}

int64_t ps_target_refresh_offset_ms(const struct ps_target *t) { return t->refresh_offset_ms; }

int64_t ps_target_refresh_due_ms(const struct ps_target *t) {
  return uv_is_active((const uv_handle_t *)&t->timer) ? (int64_t)uv_timer_get_due_in(&t->timer) : -1;
}

static void refresh_cb(uv_timer_t *timer) {
  struct ps_target *t = timer->data;
  /* Not while a sliced load is in: newer samples put first would make the engine refuse the older ones
   * (UV_ERANGE). The timer is not armed then anyway; load_cb schedules the next refresh. */
  if (t->fetch == NULL && t->load == NULL) start_fetch(t);
}

/* Logs (once each) a change of the chosen model, of the period in use and of the engine's fallback note,
 * and keeps the model-labelled series in step with the result. */
static void report_engine(struct ps_target *t, const struct ps_engine_result *res) {
  bool first = !t->have_result;
  if (first) {
    ps_log(PS_LOG_INFO, "model chosen", "namespace", t->ns, "name", t->name, "model",
           ps_model_name(res->chosen), NULL);
  } else if (res->chosen != t->chosen) {
    ps_metrics_remove("prescale_target_model_info", model_labels(t, t->chosen));
    ps_log(PS_LOG_INFO, "model changed", "namespace", t->ns, "name", t->name, "model",
           ps_model_name(res->chosen), "was", ps_model_name(t->chosen), NULL);
  }
  /* A given period in use is no news; a detected, changed or lost one is. */
  int64_t before = first ? t->cfg.period_ms : t->period_ms;
  if (res->period_ms != before) {
    char now[32], was[32];
    ps_duration_format(res->period_ms, now, sizeof now);
    ps_duration_format(before, was, sizeof was);
    ps_log(PS_LOG_INFO, res->period_ms > 0 ? "period in use" : "no period in use", "namespace", t->ns, "name",
           t->name, "period", res->period_ms > 0 ? now : "none", "was", before > 0 ? was : "none", NULL);
  }
  /* Logged when it appears or changes, not at every refresh while it holds. */
  if (res->note != NULL && (t->note == NULL || strcmp(res->note, t->note) != 0))
    ps_log(PS_LOG_INFO, "forecast fallback", "namespace", t->ns, "name", t->name, "note", res->note, NULL);
  t->have_result = true;
  t->chosen = res->chosen;
  t->period_ms = res->period_ms;
  t->note = res->note;
  ps_metrics_set("prescale_target_fallback", t->labels, res->note != NULL ? 1 : 0);
  ps_metrics_set("prescale_target_model_info", model_labels(t, res->chosen), 1);
  ps_metrics_set("prescale_target_period_seconds", t->labels, (double)res->period_ms / 1000.0);
  ps_metrics_set("prescale_target_quantile_margin", t->labels, res->margin);
  /* mae[PS_MODEL_AUTO] is the error of the answers auto gave (its choices or blends). */
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    if (isfinite(res->mae[m])) {
      ps_metrics_set("prescale_target_model_error", model_labels(t, m), res->mae[m]);
      t->mae_shown |= (uint8_t)(1u << m);
    } else if (t->mae_shown & (1u << m)) {
      ps_metrics_remove("prescale_target_model_error", model_labels(t, m));
      t->mae_shown &= (uint8_t) ~(1u << m);
    }
  }
}

/* The answer at the extremes. A load too large for a double (+Inf from Prometheus, or an overflow of
 * value x (1 + headroom)) saturates at PS_TARGET_VALUE_MAX, so that the HPA goes to its maximum: mapping it
 * to 0 would scale the workload to its minimum at its highest load. NaN (not reached: the caller falls back
 * to the observation first) and a negative load answer 0. */
double ps_target_saturate(double v) {
  if (isnan(v) || v < 0) return 0;
  return v > PS_TARGET_VALUE_MAX ? PS_TARGET_VALUE_MAX : v;
}

static void recompute(struct ps_target *t, int64_t now_ms) {
  struct ps_engine_result res;
  struct ps_target_reading *rd = &t->reading;
  /* The engine keeps an infinite sample as a missing one (it must not poison the models), so an infinite
   * newest observation is taken from here: +Inf saturates the answer below. */
  bool newest_inf = t->have_obs && isinf(t->obs);
  if (ps_engine_forecast(t->engine, now_ms, &res) == 0) {
    bool exact = t->have_obs && t->obs_ms == res.current_ms;
    newest_inf = newest_inf && t->obs_ms >= res.current_ms;
    rd->observed = exact || newest_inf ? t->obs : res.current;
    rd->observed_ms = newest_inf ? t->obs_ms : res.current_ms;
    rd->predicted = res.predicted;
    /* The engine's value is max(current, predicted + margin) over its float copy of current. fmax skips
     * a NaN, so a garbage forecast never takes the value below the observation. */
    double value = fmax(rd->observed, res.predicted + res.margin);
    if (isnan(value)) value = res.value;
    /* Shadow mode answers exactly what a reactive scaler would (the observation, without headroom), so
     * that switching it on changes nothing for the workload while /metrics shows the forecast. */
    rd->value = t->cfg.shadow ? rd->observed : value * (1.0 + t->cfg.headroom);
    report_engine(t, &res);
  } else {
    /* No finite value held: only an infinite observation (all +Inf so far) has anything to say. */
    rd->observed = newest_inf ? t->obs : 0;
    rd->predicted = 0;
    rd->value = newest_inf ? t->obs : 0;
    rd->observed_ms = newest_inf ? t->obs_ms : now_ms;
  }
  rd->value = ps_target_saturate(rd->value); /* never NaN, negative or infinite */
  bool active = rd->value > t->cfg.activation_threshold;
  bool changed = !t->have_activity || active != rd->active;
  rd->active = active;
  t->have_activity = true;
  ps_metrics_set("prescale_target_observed", t->labels, rd->observed);
  ps_metrics_set("prescale_target_predicted", t->labels, rd->predicted);
  ps_metrics_set("prescale_target_value", t->labels, rd->value);
  ps_metrics_set("prescale_target_active", t->labels, active ? 1 : 0);
  if (changed) {
    /* A watcher's callback may unwatch itself (its stream failed): step with a saved next pointer. */
    ps_list_foreach_safe(n, next, &t->watchers) {
      struct ps_target_watcher *w = ps_list_entry(n, struct ps_target_watcher, link.node);
      w->cb(w, active);
    }
  }
}

/* Keeps the newest sample put that holds a value (a re-read of the newest step replaces it): finite, or
 * infinite (+Inf saturates the answer). NaN is a missing sample. */
static void note_observation(struct ps_target *t, int64_t t_ms, double v) {
  t_ms = t_ms / t->cfg.step_ms * t->cfg.step_ms; /* the engine's slot time (times here are > 0) */
  if (isnan(v) || (t->have_obs && t_ms < t->obs_ms)) return;
  t->obs = v;
  t->obs_ms = t_ms;
  t->have_obs = true;
}

/* The time of the newest sample that holds a value, INT64_MIN when none does. Prometheus answers NaN for
 * an undefined result (0/0); such a sample is a missing one, under the ignoreNullValues rules. */
static int64_t newest_present(const struct ps_sample *s, size_t n) {
  for (size_t i = n; i-- > 0;)
    if (!isnan(s[i].v)) return s[i].t_ms;
  return INT64_MIN;
}

/* Samples come oldest first; one older than the engine can revise is ignored (UV_ERANGE). */
static void put_samples(struct ps_target *t, const struct ps_sample *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ps_engine_put(t->engine, s[i].t_ms, s[i].v) == 0) note_observation(t, s[i].t_ms, s[i].v);
  }
}

/* What a successful fetch does once its samples are in the engine (in target_fetched, or after the last
 * slice in load_cb). newest_ms is the time of the newest sample fetched that holds a value (not NaN),
 * INT64_MIN when there was none.
 * The caller then notifies the waiters and schedules the next refresh. */
static void fetch_succeeded(struct ps_target *t, int64_t newest_ms) {
  struct ps_targets *ts = t->owner;
  /* An absent series at the newest step counts as 0 when ignoreNullValues is set (KEDA's prometheus
   * scaler does the same for an empty result). */
  if (t->cfg.ignore_null_values && newest_ms < t->fetch_end_ms)
    if (ps_engine_put(t->engine, t->fetch_end_ms, 0) == 0) note_observation(t, t->fetch_end_ms, 0);
  if (t->err != 0 && t->loaded)
    ps_log(PS_LOG_INFO, "refresh recovered", "namespace", t->ns, "name", t->name, NULL);
  t->err = 0;
  t->errmsg[0] = '\0';
  t->loaded = true;
  t->fetched_end_ms = t->fetch_end_ms;
  t->last_ok = uv_now(ts->loop);
  int64_t now_ms = wall_ms();
  ps_metrics_set("prescale_target_last_success_timestamp_seconds", t->labels, (double)now_ms / 1000.0);
  recompute(t, now_ms);
}

/* ---- sliced loads -------------------------------------------------------------------------------- */

/* Starts feeding s[0..n) to the engine a slice per loop turn: copies them (prom.c owns s only during its
 * callback) and queues the target at the back. 0, or UV_ENOMEM (nothing queued). */
static int load_begin(struct ps_target *t, const struct ps_sample *s, size_t n) {
  struct ps_targets *ts = t->owner;
  struct ps_sample *copy = malloc(n * sizeof *copy);
  if (copy == NULL) return UV_ENOMEM;
  memcpy(copy, s, n * sizeof *copy);
  t->load = copy; /* owned by the target from here on; freed in load_end */
  t->load_n = n;
  t->load_done = 0;
  ps_list_insert_tail(&ts->load_queue, &t->load_node);
  if (ts->loading++ == 0) uv_idle_start(&ts->loader, load_cb);
  ps_metrics_set("prescale_targets_loading", "", (double)ts->loading);
  return 0;
}

/* Leaves the loading queue and frees the copy; a no-op when the target is not loading. Called when the
 * last slice is in, and by target_close (eviction, shutdown) mid-load. */
static void load_end(struct ps_target *t) {
  struct ps_targets *ts = t->owner;
  if (t->load == NULL) return;
  ps_list_remove(&t->load_node);
  free(t->load);
  t->load = NULL;
  t->load_n = t->load_done = 0;
  if (--ts->loading == 0) uv_idle_stop(&ts->loader);
  ps_metrics_set("prescale_targets_loading", "", (double)ts->loading);
}

/* One slice of the target at the head of the queue. A slice is a contiguous run of the samples in their
 * order, so the engine sees exactly the puts target_fetched would have made at once: the same state. */
static void load_cb(uv_idle_t *idle) {
  struct ps_targets *ts = idle->data;
  struct ps_list *first = ps_list_first(&ts->load_queue);
  if (first == NULL) { /* not reached: load_end stops the handle with the last target */
    uv_idle_stop(idle);
    return;
  }
  struct ps_target *t = ps_list_entry(first, struct ps_target, load_node);
  size_t left = t->load_n - t->load_done;
  size_t k = left < PS_TARGET_LOAD_SLICE ? left : PS_TARGET_LOAD_SLICE;
  put_samples(t, t->load + t->load_done, k);
  t->load_done += k;
  if (t->load_done < t->load_n) return;
  int64_t newest_ms = newest_present(t->load, t->load_n);
  /* Out of the queue before any callback runs: a waiter or watcher may close targets or the registry. The
   * target's memory stays valid until its timer's close callback, whatever they do. */
  load_end(t);
  fetch_succeeded(t, newest_ms);
  notify_waiters(t, 0);
  schedule_refresh(t);
}

/* ---- fetches ------------------------------------------------------------------------------------- */

/* What a fetch's result does to one of its sharers. */
static void target_fetched(struct ps_target *t, int err, const char *errmsg, const struct ps_sample *s,
                           size_t n) {
  struct ps_targets *ts = t->owner;
  if (err == PS_HTTP_ERR_QUEUE_TIMEOUT && t->loaded) {
    /* Waited a whole step for a slot and nothing was sent: not Prometheus' fault, and the next refresh
     * reads from the same point, so it supersedes this one. Staleness still bounds how long the cached
     * prediction is served. */
    ps_metrics_add("prescale_refreshes_superseded_total", "", 1);
    snprintf(t->errmsg, sizeof t->errmsg, "%s", errmsg ? errmsg : "refresh superseded");
    ps_log(PS_LOG_DEBUG, "refresh superseded", "namespace", t->ns, "name", t->name, "error", t->errmsg, NULL);
    schedule_refresh(t);
    return;
  }
  double secs = (double)(uv_now(ts->loop) - t->fetch_began) / 1000.0;
  ps_metrics_observe("prescale_refresh_duration_seconds", "", secs);
  ps_metrics_add("prescale_refreshes_total", t->labels, 1);
  int64_t newest_ms = err == 0 ? newest_present(s, n) : INT64_MIN;
  if (err == 0 && newest_ms == INT64_MIN && !t->cfg.ignore_null_values) {
    err = PS_TARGET_ERR_EMPTY_RESULT;
    errmsg = n == 0 ? "the query returned no data and ignoreNullValues is false"
                    : "the query returned only NaN (no value) and ignoreNullValues is false";
  }
  if (err != 0) {
    /* What a client can act on: a bad query (INVALID_ARGUMENT), no data (FAILED_PRECONDITION); anything
     * else means Prometheus is unreachable or failing (UNAVAILABLE, so KEDA's fallback can act). */
    if (err != UV_EINVAL && err != PS_TARGET_ERR_EMPTY_RESULT) err = UV_EAGAIN;
    bool first = t->err == 0;
    t->err = err;
    snprintf(t->errmsg, sizeof t->errmsg, "%s", errmsg ? errmsg : "refresh failed");
    ps_metrics_add("prescale_refresh_errors_total", t->labels, 1);
    ps_log(first ? PS_LOG_WARN : PS_LOG_DEBUG, "refresh failed", "namespace", t->ns, "name", t->name, "error",
           t->errmsg, NULL);
  } else {
    /* A whole history goes in slices (load_cb finishes the fetch: waiters keep waiting, and no refresh is
     * scheduled until it is in). Should the copy fail, the batch goes in at once, as it did before. */
    if (n > PS_TARGET_LOAD_DIRECT_MAX && load_begin(t, s, n) == 0) return;
    put_samples(t, s, n);
    fetch_succeeded(t, newest_ms);
  }
  notify_waiters(t, t->loaded ? 0 : t->err);
  schedule_refresh(t);
}

/* ---- shared fetches ------------------------------------------------------------------------------ */

static void fetch_unlink(struct fetch *f) {
  struct ps_targets *ts = f->owner;
  struct fetch **pp = &ts->fetches[f->hash % PS_TARGETS_FETCH_BUCKETS];
  while (*pp != NULL && *pp != f) pp = &(*pp)->hnext;
  if (*pp == f) {
    *pp = f->hnext;
    ts->nfetches--;
  }
  f->hnext = NULL;
}

static void fetch_free(struct fetch *f) {
  free(f->key);
  free(f);
}

/* t stops sharing its fetch (evicted or closing mid-flight); the last sharer to leave cancels it. */
static void fetch_leave(struct ps_target *t) {
  struct fetch *f = t->fetch;
  if (f == NULL) return;
  ps_list_remove(&t->fetch_node);
  t->fetch = NULL;
  if (!ps_list_empty(&f->sharers) || f->delivering) return;
  fetch_unlink(f);
  ps_prom_cancel(f->req);
  fetch_free(f);
}

/* Hands the result to each sharer in the order they joined. It leaves the table first, so that a
 * callback starting a new fetch never joins this one; each sharer is unlinked before its turn, and one
 * closed by an earlier sharer's callback (a waiter that closes targets) has left the list already. */
static void fetch_done_cb(void *arg, int err, const char *errmsg, const struct ps_sample *s, size_t n) {
  struct fetch *f = arg;
  f->req = NULL;
  f->delivering = true;
  fetch_unlink(f);
  for (struct ps_list *node; (node = ps_list_first(&f->sharers)) != NULL;) {
    struct ps_target *t = ps_list_entry(node, struct ps_target, fetch_node);
    ps_list_remove(&t->fetch_node);
    t->fetch = NULL;
    target_fetched(t, err, errmsg, s, n);
  }
  fetch_free(f);
}

static void start_fetch(struct ps_target *t) {
  struct ps_targets *ts = t->owner;
  int64_t step = t->cfg.step_ms;
  int64_t end = wall_ms() / step * step;
  int64_t oldest = end - t->cfg.history_ms + step;
  /* Incremental: only the points since the last fetch, plus a small overlap because the newest points
   * of a range may still change (a scrape lands after its evaluation time). After a long outage the
   * whole history window is read again. */
  int64_t start = t->loaded ? t->fetched_end_ms - PS_REFRESH_OVERLAP_STEPS * step : oldest;
  if (start < oldest) start = oldest;
  if (start > end) start = end;
  t->fetch_start_ms = start;
  t->fetch_end_ms = end;
  t->fetch_began = uv_now(ts->loop);
  struct ps_buf key;
  ps_buf_init(&key);
  int r = ps_buf_printf(&key, "%s\x1f%s\x1f%lld\x1f%lld\x1f%lld", t->cfg.server_address, t->cfg.query,
                        (long long)step, (long long)start, (long long)end);
  uint64_t h = r == 0 ? fnv1a(key.data, key.len) : 0;
  for (struct fetch *f = r == 0 ? ts->fetches[h % PS_TARGETS_FETCH_BUCKETS] : NULL; f != NULL; f = f->hnext) {
    if (f->hash == h && strcmp(f->key, key.data) == 0) {
      t->fetch = f;
      ps_list_insert_tail(&f->sharers, &t->fetch_node);
      ps_metrics_add("prescale_refreshes_shared_total", "", 1);
      ps_buf_free(&key);
      return;
    }
  }
  struct fetch *f = r == 0 ? calloc(1, sizeof *f) : NULL;
  if (f == NULL) {
    ps_buf_free(&key);
    target_fetched(t, UV_ENOMEM, "out of memory starting a Prometheus request", NULL, 0);
    return;
  }
  f->owner = ts;
  f->hash = h;
  f->key = ps_buf_steal(&key, NULL);
  ps_list_init(&f->sharers);
  /* A first load (or a reload) has KEDA waiting, or soon asking: it goes before background refreshes.
   * The request's own timeout starts when it is sent; the wait for a slot has its own bound. */
  struct ps_http_opts o = {
      .timeout_ms = (uint64_t)t->cfg.timeout_ms,
      .queue_timeout_ms = t->loaded ? (uint64_t)step : PS_TARGET_LOAD_QUEUE_MAX_MS,
      .cls = t->loaded ? PS_HTTP_BACKGROUND : PS_HTTP_URGENT,
  };
  r = ps_prom_query_range_opts(ts->http, t->cfg.server_address, t->cfg.query, start, end, step, &o,
                               fetch_done_cb, f, &f->req);
  if (r != 0) {
    fetch_free(f);
    char why[PS_TARGET_MAX_ERROR];
    if (r != UV_EINVAL ||
        ps_prom_url_problem(why, sizeof why, t->cfg.server_address, t->cfg.query, start, end, step) == 0)
      snprintf(why, sizeof why, "cannot build the Prometheus request (bad serverAddress or query?)");
    target_fetched(t, r, why, NULL, 0);
    return;
  }
  f->hnext = ts->fetches[h % PS_TARGETS_FETCH_BUCKETS];
  ts->fetches[h % PS_TARGETS_FETCH_BUCKETS] = f;
  ts->nfetches++;
  t->fetch = f;
  ps_list_insert_tail(&f->sharers, &t->fetch_node);
}

/* ---- reads, waiters, watchers -------------------------------------------------------------------- */

int ps_target_read(struct ps_target *t, struct ps_target_reading *r, char *err, size_t errlen) {
  struct ps_targets *ts = t->owner;
  uint64_t now = uv_now(ts->loop);
  t->last_used = now;
  if (!t->loaded) {
    /* A load being fed in slices answers in a few loop turns, whatever an earlier fetch failed with. */
    if (t->err == 0 || t->load != NULL) return 1;
    snprintf(err, errlen, "no data from Prometheus yet: %s", t->errmsg);
    return t->err;
  }
  if (t->err == PS_TARGET_ERR_EMPTY_RESULT) {
    snprintf(err, errlen, "%s", t->errmsg);
    return t->err;
  }
  uint64_t stale = ts->cfg->stale_after_ms ? ts->cfg->stale_after_ms : 3 * (uint64_t)t->cfg.step_ms;
  if (now - t->last_ok > stale) {
    char age[32];
    ps_duration_format((int64_t)(now - t->last_ok), age, sizeof age);
    snprintf(err, errlen, "no fresh data from Prometheus for %s (--stale-after): %s", age,
             t->errmsg[0] ? t->errmsg : "refresh pending");
    return UV_EAGAIN;
  }
  *r = t->reading;
  return 0;
}

void ps_target_wait(struct ps_target *t, struct ps_target_waiter *w) { link_add(&t->waiters, &w->link, t); }

void ps_target_watch(struct ps_target *t, struct ps_target_watcher *w) {
  link_add(&t->watchers, &w->link, t);
}

void ps_target_unwait(struct ps_target_waiter *w) {
  struct ps_target *t = w->link.target;
  if (t == NULL) return;
  link_remove(&w->link);
  t->last_used = uv_now(t->owner->loop);
}

void ps_target_unwatch(struct ps_target_watcher *w) {
  struct ps_target *t = w->link.target;
  if (t == NULL) return;
  link_remove(&w->link);
  t->last_used = uv_now(t->owner->loop);
}
