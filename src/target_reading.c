/* A target's reading: what the engine answers after each successful fetch (recompute, with the model,
 * period and fallback changes it logs and the series that follow them), the fan-out to the target's
 * watchers when its activity changes, and the reads, waiters and watchers that consume the reading. Apart
 * from targets.c (the registry: keys, the labels index, creation, eviction, close) because it touches no
 * registry state: target_fetch.c hands it a fetch's samples, and the service reads and watches what it
 * computes. The state both halves share is in targets_int.h. */
#include "targets.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "forecast/engine.h"
#include "log.h"
#include "metrics.h"
#include "targets_int.h"

/* ---- waiters and watchers: the links --------------------------------------------------------------- */

static void link_add(struct ps_list *head, struct ps_target_link *l, struct ps_target *t) {
  l->target = t;
  ps_list_insert_head(head, &l->node);
}

void ps_tg_link_remove(struct ps_target_link *l) {
  ps_list_remove(&l->node);
  l->target = NULL;
}

void ps_tg_notify_waiters(struct ps_target *t, int err) {
  /* Unlink each waiter before its callback: the callback may free it or read the target again. */
  for (struct ps_list *n; (n = ps_list_first(&t->waiters)) != NULL;) {
    struct ps_target_waiter *w = ps_list_entry(n, struct ps_target_waiter, link.node);
    ps_tg_link_remove(&w->link);
    w->cb(w, err);
  }
}

/* ---- readings: what the engine answers ---------------------------------------------------------- */

/* The target's labels plus model="<m>", in the target's scratch buffer (valid until the next call). */
const char *ps_tg_model_labels(struct ps_target *t, enum ps_model m) {
  snprintf(t->mlabels, t->mlabels_cap, "%s,model=\"%s\"", t->labels, ps_model_name(m));
  return t->mlabels;
}

/* Logs (once each) a change of the chosen model, of the period in use and of the engine's fallback note,
 * and keeps the model-labelled series in step with the result. */
static void report_engine(struct ps_target *t, const struct ps_engine_result *res) {
  bool first = !t->have_result;
  if (first) {
    ps_log(PS_LOG_INFO, "model chosen", "namespace", t->ns, "name", t->name, "model",
           ps_model_name(res->chosen), NULL);
  } else if (res->chosen != t->chosen) {
    ps_metrics_remove("prescale_target_model_info", ps_tg_model_labels(t, t->chosen));
    t->ref.model_info = (struct ps_metric_ref){0}; /* the next set resolves the new model's series */
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
  ps_metrics_ref_set(&t->ref.fallback, "prescale_target_fallback", t->labels, res->note != NULL ? 1 : 0);
  /* The model labels are formatted only when a ref (re)resolves. */
  if (ps_metrics_ref_resolved(&t->ref.model_info))
    ps_metrics_ref_set(&t->ref.model_info, "prescale_target_model_info", NULL, 1);
  else
    ps_metrics_ref_set(&t->ref.model_info, "prescale_target_model_info", ps_tg_model_labels(t, res->chosen),
                       1);
  ps_metrics_ref_set(&t->ref.period, "prescale_target_period_seconds", t->labels,
                     (double)res->period_ms / 1000.0);
  ps_metrics_ref_set(&t->ref.margin, "prescale_target_quantile_margin", t->labels, res->margin);
  if (isfinite(res->coverage))
    ps_metrics_ref_set(&t->ref.coverage, "prescale_target_coverage", t->labels, res->coverage);
  /* mae[PS_MODEL_AUTO] is the error of the answers auto gave (its choices or blends). */
  for (int m = 0; m < PS_MODEL_COUNT; m++) {
    if (isfinite(res->mae[m])) {
      struct ps_metric_ref *r = &t->ref.mae[m];
      ps_metrics_ref_set(r, "prescale_target_model_error",
                         ps_metrics_ref_resolved(r) ? NULL : ps_tg_model_labels(t, m), res->mae[m]);
      t->mae_shown |= (uint8_t)(1u << m);
    } else if (t->mae_shown & (1u << m)) {
      ps_metrics_remove("prescale_target_model_error", ps_tg_model_labels(t, m));
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
  double was = rd->value;
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
  /* The one place where a reading changes: answers encoded before (the service's, for GetMetrics and
   * IsActive) are stale from here. Compared bit for bit: -0 and 0 encode differently. */
  if (changed || memcmp(&was, &rd->value, sizeof was) != 0) t->generation++;
  ps_metrics_ref_set(&t->ref.observed, "prescale_target_observed", t->labels, rd->observed);
  ps_metrics_ref_set(&t->ref.predicted, "prescale_target_predicted", t->labels, rd->predicted);
  ps_metrics_ref_set(&t->ref.value, "prescale_target_value", t->labels, rd->value);
  ps_metrics_ref_set(&t->ref.active, "prescale_target_active", t->labels, active ? 1 : 0);
  if (changed) {
    /* A watcher's callback may unwatch itself (its stream failed) or another watcher of t (a send can
     * serialize queued frames that close another stream, h2_send.c ps_h2c_flush_soon): the watchers wait
     * in a list of their own and go back one at a time, before their callback, so an unwatch takes a
     * watcher out of whichever list holds it and the walk never steps through a removed node. */
    struct ps_list todo;
    ps_list_init(&todo);
    for (struct ps_list *n; (n = ps_list_first(&t->watchers)) != NULL;) {
      ps_list_remove(n);
      ps_list_insert_tail(&todo, n);
    }
    for (struct ps_list *n; (n = ps_list_first(&todo)) != NULL;) {
      ps_list_remove(n);
      ps_list_insert_tail(&t->watchers, n);
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
int64_t ps_tg_newest_present(const struct ps_sample *s, size_t n) {
  for (size_t i = n; i-- > 0;)
    if (!isnan(s[i].v)) return s[i].t_ms;
  return INT64_MIN;
}

/* Samples come oldest first; one older than the engine can revise is ignored (UV_ERANGE). */
void ps_tg_put_samples(struct ps_target *t, const struct ps_sample *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ps_engine_put(t->engine, s[i].t_ms, s[i].v) == 0) note_observation(t, s[i].t_ms, s[i].v);
  }
}

/* What a successful fetch does once its samples are in the engine (in target_fetched, or after the last
 * slice in load_cb). newest_ms is the time of the newest sample fetched that holds a value (not NaN),
 * INT64_MIN when there was none.
 * The caller then notifies the waiters and schedules the next refresh. */
void ps_tg_fetch_succeeded(struct ps_target *t, int64_t newest_ms) {
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
  int64_t now_ms = ps_tg_wall_ms();
  ps_metrics_ref_set(&t->ref.last_success, "prescale_target_last_success_timestamp_seconds", t->labels,
                     (double)now_ms / 1000.0);
  recompute(t, now_ms);
}

/* ---- reads, waiters, watchers -------------------------------------------------------------------- */

uint64_t ps_target_generation(const struct ps_target *t) { return t->generation; }

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
  ps_tg_link_remove(&w->link);
  t->last_used = uv_now(t->owner->loop);
}

void ps_target_unwatch(struct ps_target_watcher *w) {
  struct ps_target *t = w->link.target;
  if (t == NULL) return;
  ps_tg_link_remove(&w->link);
  t->last_used = uv_now(t->owner->loop);
}
