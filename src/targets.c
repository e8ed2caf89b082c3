/* Target lifecycle: registry, keys, the labels index, creation, idle eviction, close. How a target's history
 * is fetched (refresh timers, shared fetches, first loads in slices) is target_fetch.c; what the engine
 * answers, staleness, reads, waiters and watchers (the reading) are target_reading.c.
 *
 * Every target owns one uv_timer_t and is freed only in that timer's close callback, so a target that is
 * evicted while a callback is still on the stack stays valid until the loop turns. (Its refreshes are due
 * through a group of targets due at the same instant, with one timer: see "due groups" in
 * target_fetch.c.)
 *
 * A large fetch (a first load: up to PS_MAX_HISTORY_POINTS samples, tens of milliseconds of puts and
 * refits) is not fed to the engine inside the fetch callback: the samples are copied and the target joins
 * the registry's loading queue, which one uv_idle_t shared by all targets serves in order, one slice of
 * PS_TARGET_LOAD_SLICE samples per loop turn (see "sliced loads" in target_fetch.c). In order, not
 * round-robin: first loads are all about the same size (the history window), so serving them one after the
 * other finishes each as early as possible, and those asked first beat their first-load timeout, where
 * round-robin would finish all of them near the end of the queue (10,000 targets after a restart: minutes).
 */
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forecast/engine.h"
#include "log.h"
#include "metrics.h"
#include "prom.h"
#include "targets_int.h"

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
                     "Margin added to the forecast: the `quantile` of the model's own errors, or the margin "
                     "tuned for `targetCoverage` (0 without either).");
  ps_metrics_declare("prescale_target_coverage", PS_METRIC_GAUGE,
                     "Realised coverage: the share of lookahead windows whose actual peak the answer (before "
                     "headroom) covered, over about the last day of windows (exponentially weighted); absent "
                     "until a window has ended.");
  ps_metrics_declare("prescale_target_coverage_target", PS_METRIC_GAUGE,
                     "The trigger's targetCoverage, which the margin is tuned to meet; absent without it.");
  ps_metrics_declare(
      "prescale_target_fallback", PS_METRIC_GAUGE,
      "1 while the forecast falls back (e.g. history shorter than two periods: seasonal models "
      "wait); the log line `forecast fallback` says why.");
  ps_metrics_declare(
      "prescale_target_threshold", PS_METRIC_GAUGE,
      "The trigger's threshold: the load one replica takes, so that value / threshold, rounded "
      "up, is the replicas KEDA's HPA asks for.");
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

/* Metadata entries sorted on the stack when building a key; more take a heap array. */
#define KEY_SORT_STACK 32

static int kv_cmp(const void *a, const void *b) {
  const struct ps_kv *x = a, *y = b;
  return strcmp(x->key, y->key);
}

/* The metadata map arrives in any order (protobuf maps are unordered), so the key sorts it. Fields are
 * separated by bytes that cannot appear in Kubernetes names and are unlikely in metadata; a collision
 * only makes two ScaledObjects share one target with identical settings, never a wrong answer, because
 * the whole key is compared, not only its hash. */
static int make_key(struct ps_buf *out, const char *ns, const char *name, const struct ps_kv *md, size_t n) {
  /* Every RPC builds its target's key, so the common case allocates nothing: the sort works on the stack
   * and the key goes into the registry's scratch buffer, whose memory is kept from call to call. */
  struct ps_kv stack[KEY_SORT_STACK], *sorted = stack;
  if (n > KEY_SORT_STACK && (sorted = malloc(n * sizeof *sorted)) == NULL) return UV_ENOMEM;
  if (n > 0) {
    memcpy(sorted, md, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, kv_cmp);
  }
  int r = ps_buf_puts(out, ns);
  if (r == 0) r = ps_buf_append(out, "\x1f", 1);
  if (r == 0) r = ps_buf_puts(out, name);
  for (size_t i = 0; r == 0 && i < n; i++) {
    r = ps_buf_append(out, "\x1f", 1);
    if (r == 0) r = ps_buf_puts(out, sorted[i].key);
    if (r == 0) r = ps_buf_append(out, "\x1e", 1);
    if (r == 0) r = ps_buf_puts(out, sorted[i].value);
  }
  if (sorted != stack) free(sorted);
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

static void registry_maybe_free(struct ps_targets *ts) {
  if (!ts->closing || ts->open_handles != 0) return;
  ps_buf_free(&ts->key_scratch);
  free(ts);
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
  free(t->ask);
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
    "prescale_target_coverage",
    "prescale_target_coverage_target",
    "prescale_target_shadow",
    "prescale_target_threshold",
    "prescale_target_fallback",
};

/* Removes the series labelled by model (the chosen one's info, each model's error) that no live target with
 * the same labels sets itself: keep_info, one of them shows t's chosen model; keep_mae, a bit per model
 * whose error one of them shows. */
static void remove_model_series(struct ps_target *t, bool keep_info, unsigned keep_mae) {
  if (t->have_result && !keep_info)
    ps_metrics_remove("prescale_target_model_info", ps_tg_model_labels(t, t->chosen));
  unsigned drop = t->mae_shown & ~keep_mae;
  for (int m = 0; m < PS_MODEL_COUNT; m++)
    if (drop & (1u << m)) ps_metrics_remove("prescale_target_model_error", ps_tg_model_labels(t, m));
  t->mae_shown = 0;
}

/* Unlinks the target and closes its timer; memory goes in target_free_cb. */
static void target_close(struct ps_target *t, int waiter_err) {
  struct ps_targets *ts = t->owner;
  if (t->closing) return;
  t->closing = true;
  ps_tg_fetch_leave(t);
  ps_tg_due_leave(t);
  ps_tg_load_end(t);
  ps_tg_notify_waiters(t, waiter_err);
  for (struct ps_list *n; (n = ps_list_first(&t->watchers)) != NULL;)
    ps_tg_link_remove(ps_list_entry(n, struct ps_target_link, node));
  struct ps_target **pp = &ts->buckets[t->hash % PS_TARGETS_BUCKETS];
  while (*pp != t) pp = &(*pp)->hnext;
  *pp = t->hnext;
  ps_list_remove(&t->node);
  ts->count--;
  ts->epoch++;
  ps_metrics_set("prescale_targets", "", (double)ts->count);
  /* Other targets may carry the same labels (the same trigger after a metadata edit): keep the series they
   * carry. They are in t's chain of by_labels, which t leaves here; only that chain is looked through. */
  bool shared = false, keep_info = false;
  unsigned keep_mae = 0;
  for (struct ps_target **lp = &ts->by_labels[t->labels_hash % PS_TARGETS_BUCKETS]; *lp != NULL;) {
    struct ps_target *o = *lp;
    if (o == t) {
      *lp = o->lnext;
      continue;
    }
    if (o->labels_hash == t->labels_hash && !strcmp(o->labels, t->labels)) {
      shared = true;
      keep_info = keep_info || (o->have_result && o->chosen == t->chosen);
      keep_mae |= o->mae_shown;
    }
    lp = &o->lnext;
  }
  if (!shared)
    for (size_t i = 0; i < sizeof target_series / sizeof target_series[0]; i++)
      ps_metrics_remove(target_series[i], t->labels);
  remove_model_series(t, keep_info, keep_mae);
  uv_close((uv_handle_t *)&t->timer, target_free_cb);
}

/* The close callback of the registry's own handles (sweep, loader). */
static void registry_handle_closed_cb(uv_handle_t *h) {
  struct ps_targets *ts = h->data;
  ts->open_handles--;
  registry_maybe_free(ts);
}

void ps_targets_set_prom_servers(struct ps_targets *ts, struct ps_prom_servers *servers) {
  ts->servers = servers;
}

void ps_targets_close(struct ps_targets *ts) {
  if (ts->closing) return;
  ts->closing = true;
  /* target_close empties the loading queue too */
  for (struct ps_list *n; (n = ps_list_first(&ts->all)) != NULL;)
    target_close(ps_list_entry(n, struct ps_target, node), UV_ECANCELED);
  ps_tg_dues_close(ts);
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

unsigned long long ps_targets_epoch(const struct ps_targets *ts) { return ts->epoch; }

int ps_targets_get_or_create(struct ps_targets *ts, const char *ns, const char *name, const struct ps_kv *md,
                             size_t n, struct ps_target **out, char *err, size_t errlen) {
  struct ps_buf *key = &ts->key_scratch;
  ps_buf_reset(key);
  int r = make_key(key, ns, name, md, n);
  if (r != 0) return r;
  uint64_t h = ps_tg_fnv1a(key->data, key->len);
  for (struct ps_target *t = ts->buckets[h % PS_TARGETS_BUCKETS]; t != NULL; t = t->hnext) {
    if (t->hash == h && strcmp(t->key, key->data) == 0) {
      *out = t;
      return 0;
    }
  }
  if (ts->count >= ts->cfg->max_targets) {
    snprintf(err, errlen, "prescale tracks %zu targets already (--max-targets)", ts->count);
    return PS_TARGETS_ERR_FULL;
  }
  /* On success the target steals the buffer's memory (the next key allocates afresh). */
  return target_create(ts, ns, name, md, n, key, h, out, err, errlen);
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
      .target_coverage = t->cfg.target_coverage,
      .seed = (uint32_t)(h ^ (h >> 32)), /* targets created together refit at different steps */
  };
  r = t->ns && t->name && t->labels && t->mlabels ? ps_tg_ask_init(t) : UV_ENOMEM;
  if (r == 0) r = ps_engine_new(&ec, &t->engine);
  if (r == 0) r = uv_timer_init(ts->loop, &t->timer);
  if (r != 0) {
    if (r == UV_EINVAL) snprintf(err, errlen, "the forecasting engine rejected this trigger's settings");
    target_free(t);
    return r;
  }
  t->timer.data = t;
  t->refresh_offset_ms = ps_tg_refresh_offset(t);
  ps_list_init(&t->fetch_node);
  ts->open_handles++;
  t->last_used = uv_now(ts->loop);
  t->hnext = ts->buckets[h % PS_TARGETS_BUCKETS];
  ts->buckets[h % PS_TARGETS_BUCKETS] = t;
  t->labels_hash = ps_tg_fnv1a(t->labels, strlen(t->labels));
  t->lnext = ts->by_labels[t->labels_hash % PS_TARGETS_BUCKETS];
  ts->by_labels[t->labels_hash % PS_TARGETS_BUCKETS] = t;
  ps_list_insert_head(&ts->all, &t->node);
  ts->count++;
  ps_metrics_set("prescale_targets", "", (double)ts->count);
  /* Counters start at 0 so that rate() and alerts see the series before the first error. */
  ps_metrics_add("prescale_refreshes_total", t->labels, 0);
  ps_metrics_add("prescale_refresh_errors_total", t->labels, 0);
  ps_metrics_set("prescale_target_shadow", t->labels, t->cfg.shadow ? 1 : 0);
  ps_metrics_set("prescale_target_threshold", t->labels, t->cfg.threshold);
  if (t->cfg.target_coverage > 0)
    ps_metrics_set("prescale_target_coverage_target", t->labels, t->cfg.target_coverage);
  else /* a trigger edited to drop targetCoverage: the same labels, no target any more */
    ps_metrics_remove("prescale_target_coverage_target", t->labels);
  char dur[32], per[32];
  ps_duration_format(t->cfg.history_ms, dur, sizeof dur);
  bool seasonless = ps_model_seasonless(t->cfg.model);
  if (t->cfg.period_ms > 0)
    ps_duration_format(t->cfg.period_ms, per, sizeof per);
  else
    snprintf(per, sizeof per, "%s", seasonless ? "none" : "auto");
  ps_log(PS_LOG_INFO, "new target, loading history", "namespace", ns, "name", name, "query", t->cfg.query,
         "model", ps_model_name(t->cfg.model), "period", per, "history", dur, "mode",
         t->cfg.shadow ? "shadow" : "normal", "server", t->cfg.server_address, NULL);
  ps_tg_start_fetch(t);
  *out = t;
  return 0;
}
