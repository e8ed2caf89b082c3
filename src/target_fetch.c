/* Fetching a target's history: refresh timers at a per-target offset into each step (jitter), shared
 * fetches (one query_range for every target asking the same server, query, step and range), what a
 * fetch's result does to each sharer, and first loads fed to the engine a slice per loop turn (see
 * targets.c for why in order). The registry and the targets' lifecycle are in targets.c, what the engine
 * answers and who reads it in target_reading.c. */
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forecast/engine.h"
#include "log.h"
#include "metrics.h"
#include "prom.h"
#include "prom_servers.h"
#include "targets_int.h"

static void refresh_cb(uv_timer_t *timer);
static void due_cb(uv_timer_t *timer);
static void load_cb(uv_idle_t *idle);

/* A query_range in flight (or queued in the HTTP client) for every target that asked exactly the same
 * (server, query, step, start, end, and what KEDA's prometheus keys add: namespace, queryParameters,
 * customHeaders, unsafeSsl): one request, its samples delivered to each sharer in turn. Targets with the
 * same Prometheus inputs and different thresholds, models or names fetch once; a different tenant
 * (namespace, X-Scope-OrgID) or certificate check is a different request, which must not be shared. It goes
 * when it delivers, or when its last sharer leaves (evicted, closed): then the request is cancelled. */
struct fetch {
  struct ps_targets *owner;
  struct fetch *hnext; /* chain in owner->fetches */
  uint64_t hash;
  char *ask; /* what its sharers ask (ps_target.ask, copied: the first sharer may leave first) */
  size_t ask_len;
  int64_t start, end;
  struct ps_prom_req *req; /* NULL once delivering */
  struct ps_list sharers;  /* of ps_target.fetch_node */
  bool delivering;         /* in fetch_done_cb: sharers leaving must not free it */
};

/* Targets due to refresh at the same wall-clock instant wait on one timer: the sharers of one answer get
 * the same offset and are rescheduled in the turn that delivered it, so 10,000 of them are one group. With
 * a timer each, re-arming them cost a fifth of the CPU of that turn (perf, tests/bench/stream_bench.py:
 * uv_timer_start and uv_timer_stop, a heap insertion and removal each, through targets spread in memory).
 * A group fires its targets in the order they joined, as their own timers started in that order did. It
 * leaves the table when it fires, and goes when its last target leaves: kept for a later instant (up to
 * PS_TARGETS_DUE_KEEP of them), or closed. */
struct due {
  struct ps_targets *owner;
  struct due *hnext; /* chain in owner->dues, or in owner->due_free */
  int64_t at_ms;     /* the wall-clock instant its targets are due */
  uv_timer_t timer;
  struct ps_list targets; /* of ps_target.due_node, in the order they joined */
  bool firing;            /* in due_cb: targets leaving must not release it */
};

/* A refresh re-reads the newest points; the engine must accept them as revisions. */
_Static_assert(PS_REFRESH_OVERLAP_STEPS <= PS_ENGINE_REVISABLE,
               "the refresh overlap exceeds what the engine revises");
/* A batch put at once must not cost more than a slice. */
_Static_assert(PS_TARGET_LOAD_DIRECT_MAX <= PS_TARGET_LOAD_SLICE, "a direct batch exceeds a slice");

/* ---- refresh ------------------------------------------------------------------------------------- */

/* Appends what KEDA's prometheus keys add to a request, for the keys of fetches and offsets: nothing
 * when none is set (so keys without them are as they always were). Their values hold no control byte
 * (config_prom.c), so the \x1e/\x1d separators cannot be forged by a value. */
static int append_extras(struct ps_buf *k, const struct ps_target_config *c) {
  const struct ps_kv_list *qp = &c->query_params;
  if (c->prom_namespace == NULL && qp->n == 0 && c->custom_headers == NULL && !c->unsafe_ssl) return 0;
  int r = ps_buf_printf(k, "\x1f%s\x1e%s\x1e%d\x1e", c->prom_namespace ? c->prom_namespace : "",
                        c->custom_headers ? c->custom_headers : "", c->unsafe_ssl);
  for (size_t i = 0; r == 0 && i < qp->n; i++)
    r = ps_buf_printf(k, "%s\x1d%s\x1d", qp->items[i].key, qp->items[i].value);
  return r;
}

/* Refreshes run after each step boundary plus a settle time for the scrape to land (so the newest point
 * of every fetch is as fresh as Prometheus can make it), plus the target's offset. */
static int64_t refresh_settle_ms(int64_t step) {
  return PS_REFRESH_SETTLE_MS < step / 2 ? PS_REFRESH_SETTLE_MS : step / 2;
}

/* Each target refreshes at its own offset into the step (plus the settle time), so that 10,000 targets
 * do not all ask at the boundary. The offset comes from a hash of what it asks Prometheus, not a random
 * draw: stable across refreshes and restarts, and equal for targets that can share one request. */
int ps_tg_ask_init(struct ps_target *t) {
  const struct ps_target_config *c = &t->cfg;
  struct ps_buf k;
  ps_buf_init(&k);
  int r = ps_buf_printf(&k, "%s\x1f%s\x1f%lld", c->server_address, c->query, (long long)c->step_ms);
  if (r == 0) r = append_extras(&k, c);
  if (r != 0) {
    ps_buf_free(&k);
    return r;
  }
  t->ask_hash = ps_tg_fnv1a(k.data, k.len);
  t->ask = ps_buf_steal(&k, &t->ask_len);
  return t->ask != NULL ? 0 : UV_ENOMEM;
}

int64_t ps_tg_refresh_offset(const struct ps_target *t) {
  const struct ps_target_config *c = &t->cfg;
  uint64_t h = t->ask_hash;
  int64_t span = (c->step_ms - refresh_settle_ms(c->step_ms)) * PS_REFRESH_JITTER_PCT / 100;
  return span > 0 ? (int64_t)((h >> 16) % (uint64_t)span) : 0;
}

/* How long this loop turn has run: a timer's due time counts from the loop's time, cached when the turn
 * began (uv_timer_start), while `now` above is read at each call. Without it, the targets that share one
 * answer, scheduled one after the other in the same turn (10,000 of them: tens of ms), would get due
 * times spread by that work, fire in different turns and no longer share one request. Both clocks are
 * CLOCK_MONOTONIC (libuv's uv_now reads its coarse variant, a tick behind at most). */
static uint64_t turn_elapsed_ms(uv_loop_t *loop) {
  uint64_t hr = uv_hrtime() / 1000000, cached = uv_now(loop);
  return hr > cached ? hr - cached : 0;
}

static struct due **due_slot(struct ps_targets *ts, int64_t at_ms) {
  return &ts->dues[(uint64_t)at_ms % PS_TARGETS_DUE_BUCKETS];
}

static void due_unlink(struct due *g) {
  struct due **pp = due_slot(g->owner, g->at_ms);
  while (*pp != NULL && *pp != g) pp = &(*pp)->hnext;
  if (*pp == g) {
    *pp = g->hnext;
    g->owner->ndues--;
  }
  g->hnext = NULL;
}

static void due_closed_cb(uv_handle_t *h) { free(h->data); }

/* An empty group that fired or lost its last target leaves the table (a fired one has already): kept for
 * a later instant, or closed. */
static void due_release(struct due *g) {
  struct ps_targets *ts = g->owner;
  due_unlink(g);
  uv_timer_stop(&g->timer);
  if (!ts->closing && ts->ndue_free < PS_TARGETS_DUE_KEEP) {
    g->hnext = ts->due_free;
    ts->due_free = g;
    ts->ndue_free++;
  } else {
    uv_close((uv_handle_t *)&g->timer, due_closed_cb);
  }
}

void ps_tg_due_leave(struct ps_target *t) {
  struct due *g = t->due;
  if (g == NULL) return;
  ps_list_remove(&t->due_node);
  t->due = NULL;
  if (ps_list_empty(&g->targets) && !g->firing) due_release(g);
}

void ps_tg_dues_close(struct ps_targets *ts) {
  for (size_t i = 0; i < PS_TARGETS_DUE_BUCKETS; i++) {
    for (struct due *g; (g = ts->dues[i]) != NULL;) { /* not reached: each target left its group */
      ts->dues[i] = g->hnext;
      ts->ndues--;
      uv_close((uv_handle_t *)&g->timer, due_closed_cb);
    }
  }
  for (struct due *g; (g = ts->due_free) != NULL;) {
    ts->due_free = g->hnext;
    uv_close((uv_handle_t *)&g->timer, due_closed_cb);
  }
  ts->ndue_free = 0;
}

/* The group of the instant at_ms, which the caller arms when it is new; NULL when none can be allocated. */
static struct due *due_get(struct ps_targets *ts, int64_t at_ms, bool *fresh) {
  for (struct due *g = *due_slot(ts, at_ms); g != NULL; g = g->hnext) {
    if (g->at_ms == at_ms) {
      *fresh = false;
      return g;
    }
  }
  struct due *g = ts->due_free;
  if (g != NULL) {
    ts->due_free = g->hnext;
    ts->ndue_free--;
  } else {
    if ((g = malloc(sizeof *g)) == NULL) return NULL;
    if (uv_timer_init(ts->loop, &g->timer) != 0) { /* not reached on Unix: it only fills the struct */
      free(g);
      return NULL;
    }
    g->timer.data = g;
    g->owner = ts;
    g->firing = false;
  }
  g->at_ms = at_ms;
  ps_list_init(&g->targets);
  g->hnext = *due_slot(ts, at_ms);
  *due_slot(ts, at_ms) = g;
  ts->ndues++;
  *fresh = true;
  return g;
}

/* Refreshes each target of the group in the order they joined. It leaves the table first, so that a target
 * rescheduled meanwhile joins another group; each target is unlinked before its turn, and one closed by an
 * earlier target's callback (a waiter that closes targets) has left the list already. */
static void due_cb(uv_timer_t *timer) {
  struct due *g = timer->data;
  due_unlink(g);
  g->firing = true;
  for (struct ps_list *node; (node = ps_list_first(&g->targets)) != NULL;) {
    struct ps_target *t = ps_list_entry(node, struct ps_target, due_node);
    ps_list_remove(&t->due_node);
    t->due = NULL;
    refresh_cb(&t->timer);
  }
  g->firing = false;
  due_release(g);
}

static void schedule_refresh(struct ps_target *t) {
  if (t->closing) return;
  int64_t step = t->cfg.step_ms;
  int64_t now = ps_tg_wall_ms();
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
  uint64_t timeout = (uint64_t)(next - now) + turn_elapsed_ms(t->owner->loop);
  ps_tg_due_leave(t);
  uv_timer_stop(&t->timer);
  bool fresh;
  struct due *g = due_get(t->owner, next, &fresh);
  if (g == NULL) { /* out of memory: the target's own timer */
    uv_timer_start(&t->timer, refresh_cb, timeout, 0);
    return;
  }
  if (fresh) uv_timer_start(&g->timer, due_cb, timeout, 0);
  t->due = g;
  ps_list_insert_tail(&g->targets, &t->due_node);
}

int64_t ps_target_refresh_offset_ms(const struct ps_target *t) { return t->refresh_offset_ms; }

size_t ps_targets_due_groups(const struct ps_targets *ts) { return ts->ndues; }

int64_t ps_target_refresh_due_ms(const struct ps_target *t) {
  const uv_timer_t *timer = t->due != NULL ? &t->due->timer : &t->timer;
  return uv_is_active((const uv_handle_t *)timer) ? (int64_t)uv_timer_get_due_in(timer) : -1;
}

void ps_target_fetch_range(const struct ps_target *t, int64_t *start_ms, int64_t *end_ms) {
  *start_ms = t->fetch_start_ms;
  *end_ms = t->fetch_end_ms;
}

static void refresh_cb(uv_timer_t *timer) {
  struct ps_target *t = timer->data;
  /* Not while a sliced load is in: newer samples put first would make the engine refuse the older ones
   * (UV_ERANGE). The timer is not armed then anyway; load_cb schedules the next refresh. */
  if (t->fetch == NULL && t->load == NULL) ps_tg_start_fetch(t);
}

/* ---- sliced loads -------------------------------------------------------------------------------- */

/* Starts feeding s[0..n) to the engine a slice per loop turn: copies them (prom.c owns s only during its
 * callback) and queues the target at the back. The engine takes them as a bulk load (engine.h): the
 * slices only store, and the last one learns them all with one refit (a week at 1 minute: about 2.5 ms
 * instead of 10-25 ms of puts and refits, tests/bench/engine_bench.c). 0, or UV_ENOMEM (nothing
 * queued). */
static int load_begin(struct ps_target *t, const struct ps_sample *s, size_t n) {
  struct ps_targets *ts = t->owner;
  struct ps_sample *copy = malloc(n * sizeof *copy);
  if (copy == NULL) return UV_ENOMEM;
  memcpy(copy, s, n * sizeof *copy);
  t->load = copy; /* owned by the target from here on; freed in load_end */
  t->load_n = n;
  t->load_done = 0;
  ps_engine_bulk_begin(t->engine);
  ps_list_insert_tail(&ts->load_queue, &t->load_node);
  if (ts->loading++ == 0 && !ts->loads_held) uv_idle_start(&ts->loader, load_cb);
  ps_metrics_set("prescale_targets_loading", "", (double)ts->loading);
  return 0;
}

void ps_targets_hold_loads(struct ps_targets *ts, bool hold) {
  ts->loads_held = hold;
  if (hold)
    uv_idle_stop(&ts->loader);
  else if (ts->loading > 0)
    uv_idle_start(&ts->loader, load_cb);
}

/* Leaves the loading queue and frees the copy; a no-op when the target is not loading. Called when the
 * last slice is in, and by target_close (eviction, shutdown) mid-load. */
void ps_tg_load_end(struct ps_target *t) {
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
 * order, put as target_fetched would have put them at once; the last slice ends the bulk load. */
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
  ps_tg_put_samples(t, t->load + t->load_done, k);
  t->load_done += k;
  if (t->load_done < t->load_n) return;
  ps_engine_bulk_end(t->engine);
  int64_t newest_ms = ps_tg_newest_present(t->load, t->load_n);
  /* Out of the queue before any callback runs: a waiter or watcher may close targets or the registry. The
   * target's memory stays valid until its timer's close callback, whatever they do. */
  ps_tg_load_end(t);
  ps_tg_fetch_succeeded(t, newest_ms);
  ps_tg_notify_waiters(t, 0);
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
  static struct ps_metric_ref duration; /* one series, kept across refreshes (metrics.h) */
  ps_metrics_ref_observe(&duration, "prescale_refresh_duration_seconds", "", secs);
  ps_metrics_ref_add(&t->ref.refreshes, "prescale_refreshes_total", t->labels, 1);
  int64_t newest_ms = err == 0 ? ps_tg_newest_present(s, n) : INT64_MIN;
  if (err == 0 && newest_ms == INT64_MIN && !t->cfg.ignore_null_values) {
    err = PS_TARGET_ERR_EMPTY_RESULT;
    errmsg = n == 0 ? "the query returned no data and ignoreNullValues is false"
                    : "the query returned only NaN (no value) and ignoreNullValues is false";
  }
  if (err != 0) {
    /* What a client can act on: a bad query (INVALID_ARGUMENT), no data (FAILED_PRECONDITION); anything
     * else means Prometheus is unreachable or failing (UNAVAILABLE, so KEDA's fallback can act).
     * A 401/403 (UV_EACCES) is UNAVAILABLE too, with prom.c's message naming the status and the server:
     * gRPC's UNAUTHENTICATED and PERMISSION_DENIED speak of the caller's own credentials
     * (grpc/doc/statuscodes.md), which would send the operator to KEDA's TLS settings, while the refusal
     * is of prescale's credentials for a dependency; it can heal without the caller doing anything (a
     * rotated token is re-read), which is what UNAVAILABLE says; and KEDA treats every status alike
     * (external_scaler.go returns the error; the ScaledObject's fallback counts it). */
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
    ps_tg_put_samples(t, s, n);
    ps_tg_fetch_succeeded(t, newest_ms);
  }
  ps_tg_notify_waiters(t, t->loaded ? 0 : t->err);
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
  free(f->ask);
  free(f);
}

/* t stops sharing its fetch (evicted or closing mid-flight); the last sharer to leave cancels it. */
void ps_tg_fetch_leave(struct ps_target *t) {
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

void ps_tg_start_fetch(struct ps_target *t) {
  struct ps_targets *ts = t->owner;
  int64_t step = t->cfg.step_ms;
  int64_t end = ps_tg_wall_ms() / step * step;
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
  /* The fetch's identity is what the target asks (built once, with its hash, when the target was created)
   * and the range: no formatting or hashing of the query per sharer (10,000 of them for one answer). */
  uint64_t h = (t->ask_hash ^ (uint64_t)start) * 1099511628211ULL;
  h = (h ^ (uint64_t)end) * 1099511628211ULL;
  for (struct fetch *f = ts->fetches[h % PS_TARGETS_FETCH_BUCKETS]; f != NULL; f = f->hnext) {
    if (f->hash == h && f->start == start && f->end == end && f->ask_len == t->ask_len &&
        memcmp(f->ask, t->ask, t->ask_len) == 0) {
      t->fetch = f;
      ps_list_insert_tail(&f->sharers, &t->fetch_node);
      static struct ps_metric_ref shared; /* one series, kept across refreshes (metrics.h) */
      ps_metrics_ref_add(&shared, "prescale_refreshes_shared_total", "", 1);
      return;
    }
  }
  struct fetch *f = calloc(1, sizeof *f);
  if (f != NULL && (f->ask = malloc(t->ask_len + 1)) == NULL) {
    free(f);
    f = NULL;
  }
  if (f == NULL) {
    target_fetched(t, UV_ENOMEM, "out of memory starting a Prometheus request", NULL, 0);
    return;
  }
  memcpy(f->ask, t->ask, t->ask_len + 1);
  f->ask_len = t->ask_len;
  f->start = start;
  f->end = end;
  f->owner = ts;
  f->hash = h;
  ps_list_init(&f->sharers);
  /* A first load (or a reload) has KEDA waiting, or soon asking: it goes before background refreshes.
   * The request's own timeout starts when it is sent; the wait for a slot has its own bound. */
  struct ps_http_opts o = {
      .timeout_ms = (uint64_t)t->cfg.timeout_ms,
      .queue_timeout_ms = t->loaded ? (uint64_t)step : PS_TARGET_LOAD_QUEUE_MAX_MS,
      .cls = t->loaded ? PS_HTTP_BACKGROUND : PS_HTTP_URGENT,
  };
  /* The server's TLS context (unsafe_ssl, part of the fetch's key: none verified, for servers not listed) and
   * headers: customHeaders, then its --prometheus-config credentials and headers (prom_servers.c). */
  struct ps_buf hdr;
  ps_buf_init(&hdr);
  int r = ps_prom_servers_apply(ts->servers, t->cfg.server_address, t->cfg.unsafe_ssl, t->cfg.custom_headers,
                                &o, &hdr);
  const struct ps_prom_params pp = {.ns = t->cfg.prom_namespace, .query_params = &t->cfg.query_params};
  if (r == 0)
    r = ps_prom_query_range_opts(ts->http, t->cfg.server_address, t->cfg.query, start, end, step, &o, &pp,
                                 fetch_done_cb, f, &f->req);
  ps_prom_servers_wipe(&hdr); /* copied by the request */
  if (r != 0) {
    fetch_free(f);
    char why[PS_TARGET_MAX_ERROR];
    if (r == UV_E2BIG)
      snprintf(why, sizeof why,
               "the request's extra headers (customHeaders, and the --prometheus-config server's credentials "
               "and headers) exceed %u bytes (PS_HTTP_MAX_EXTRA_HEADERS)",
               (unsigned)PS_HTTP_MAX_EXTRA_HEADERS);
    else if (r != UV_EINVAL || ps_prom_url_problem(why, sizeof why, t->cfg.server_address, t->cfg.query,
                                                   start, end, step, &pp) == 0)
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
