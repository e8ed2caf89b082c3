/* Target lifecycle: each (namespace, name, metadata) KEDA asks about becomes a target with its own
 * history, refresh timer and cached prediction. RPCs read the cache; only the first RPC for a target waits,
 * for the first load of its history. */
#ifndef PS_TARGETS_H
#define PS_TARGETS_H

#include <float.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "forecast/models.h"
#include "http_client.h"
#include "list.h"

#define PS_TARGETS_BUCKETS   4096 /* hash buckets; chains stay short up to --max-targets 10000 */
#define PS_TARGET_MAX_ERROR  512  /* bytes of an error text kept per target */
#define PS_REFRESH_SETTLE_MS 1000 /* refresh this long after a step boundary, once the scrape landed */
#define PS_REFRESH_OVERLAP_STEPS                                                                             \
  2                                     /* re-read the newest points: Prometheus may revise them; the        \
                                         * engine accepts revisions of PS_ENGINE_REVISABLE steps */
#define PS_TARGET_MODEL_LABEL_MAX 40    /* bytes of `,model="<name>"` appended to a target's labels */
#define PS_TARGETS_SWEEP_MAX_MS   60000 /* idle targets are looked for at least this often */
/* A fetch of more samples than PS_TARGET_LOAD_DIRECT_MAX (a first load, or a reload after an outage
 * longer than the history: up to PS_MAX_HISTORY_POINTS) is fed to the engine at most PS_TARGET_LOAD_SLICE
 * samples per loop turn, so that other RPCs are served between slices, as one bulk load
 * (ps_engine_bulk_begin/end): the slices only store, and the last one learns the batch with one refit.
 * Measured by tests/bench/engine_bench.c (a week of 1-minute history, 2-core machine): a bulk load of the
 * week costs about 2.5 ms in all, most of it in the last slice; put by put, 2048 puts took about 3 ms
 * besides the one refit a slice could hold (5-10 ms). */
#define PS_TARGET_LOAD_SLICE      2048
/* Batches up to this size (a refresh: PS_REFRESH_OVERLAP_STEPS + 1 points, a few more after missed
 * refreshes) are put at once in the fetch callback, under 0.1 ms of puts. */
#define PS_TARGET_LOAD_DIRECT_MAX 64

/* The largest value answered: a load beyond it (+Inf from Prometheus, an overflow of headroom) saturates
 * here, and the integer field of GetMetrics at INT64_MAX, so that the HPA scales to its maximum. */
#define PS_TARGET_VALUE_MAX         DBL_MAX
/* Refreshes are spread over the step (docs/reliability.md, "Prometheus fan-out"): each target refreshes
 * at a fixed offset into (settle, step] after each step boundary, a fraction of the step drawn from a hash
 * of (server, query, step), so that a target keeps its offset and targets with the same Prometheus inputs
 * refresh together and share one request. */
#define PS_REFRESH_JITTER_PCT       100 /* of (step - settle) */
/* A refresh that waited a whole step for one of the server's --prometheus-max-inflight slots is dropped
 * as superseded: the next step's refresh reads from the same point. First loads (and reloads) wait up to
 * PS_TARGET_LOAD_QUEUE_MAX_MS, then fail like an unreachable Prometheus (UNAVAILABLE). */
#define PS_TARGET_LOAD_QUEUE_MAX_MS 60000
#define PS_TARGETS_FETCH_BUCKETS    4096 /* hash buckets of the fetches in flight, shared by targets */
/* Targets due to refresh at the same instant (the sharers of one answer) wait on one timer
 * (target_fetch.c, "due groups"): hash buckets of the groups, and how many emptied groups are kept for the
 * next instant instead of being closed (at most one group per target exists besides these). */
#define PS_TARGETS_DUE_BUCKETS      4096
#define PS_TARGETS_DUE_KEEP         64

struct ps_targets;
struct ps_target;

/* Private: the intrusive list node of waiters and watchers. */
struct ps_target_link {
  struct ps_list node;      /* in the target's waiters or watchers */
  struct ps_target *target; /* set while linked */
};

/* A first-load waiter (an RPC that arrived while the target's history was loading). Embedded in the
 * waiter's own struct; cb runs once with 0 (a reading is available) or a negative error, after which the
 * waiter is unlinked. */
struct ps_target_waiter {
  struct ps_target_link link;
  void (*cb)(struct ps_target_waiter *w, int err);
};

/* An activity watcher (StreamIsActive). cb runs each time the target's activity changes. */
struct ps_target_watcher {
  struct ps_target_link link;
  void (*cb)(struct ps_target_watcher *w, bool active);
};

struct ps_target_reading {
  double value;        /* what GetMetrics answers: max(current, predicted + margin) x (1 + headroom); in
                        * shadow mode the observation itself (what a reactive scaler would answer);
                        * always in [0, PS_TARGET_VALUE_MAX] (ps_target_saturate) */
  double observed;     /* the latest observation */
  double predicted;    /* the forecast's max over (now, now + lookahead], before margin and headroom */
  bool active;         /* value > activationThreshold */
  int64_t observed_ms; /* wall time of the observation */
};

/* The registry borrows cfg and http; both must outlive it. */
int ps_targets_new(uv_loop_t *loop, const struct ps_server_config *cfg, struct ps_http_client *http,
                   struct ps_targets **out);
/* Cancels loads, fails waiters with UV_ECANCELED, drops watchers (without callbacks), stops timers; the
 * memory is freed in close callbacks, so run the loop afterwards. */
void ps_targets_close(struct ps_targets *ts);
/* The --prometheus-config servers (TLS contexts, credentials, headers) every fetch goes through; NULL:
 * none (the default). Not owned; it must outlive ts. Call before the first target. */
struct ps_prom_servers;
void ps_targets_set_prom_servers(struct ps_targets *ts, struct ps_prom_servers *servers);
size_t ps_targets_count(const struct ps_targets *ts);
/* Drops every target no RPC has asked about for --target-idle (and none waits on or watches). The
 * registry's sweep timer calls it; exposed so that tests can evict at a chosen moment. */
void ps_targets_sweep(struct ps_targets *ts);
/* For tests: while held, no slice of any load is fed (the queue keeps its targets, in order, and the loop
 * turns as usual); released, the loads go on. A bulk load's slices are so cheap that a test could not
 * otherwise catch two loads in the queue at once. */
void ps_targets_hold_loads(struct ps_targets *ts, bool hold);
/* Fetches in flight or queued (each shared by every target that asked the same range); for tests. */
size_t ps_targets_fetches(const struct ps_targets *ts);
/* Groups of targets waiting to refresh, one per instant some target is due at (one timer each). */
size_t ps_targets_due_groups(const struct ps_targets *ts);

/* Errors whose libuv code was chosen for the gRPC status it maps to (ps_grpc_status_from_error), not for
 * its errno meaning. */
#define PS_TARGETS_ERR_FULL        UV_ENOBUFS /* --max-targets targets exist already: RESOURCE_EXHAUSTED */
#define PS_TARGET_ERR_EMPTY_RESULT UV_EPERM   /* no data and ignoreNullValues false: FAILED_PRECONDITION */

/* A count that changes whenever a target leaves the registry: a caller that keeps a target pointer across
 * loop turns (the service's request cache) keeps it only while the count is the one it saw. */
unsigned long long ps_targets_epoch(const struct ps_targets *ts);

/* Finds the target for (ns, name, metadata) or creates it and starts loading its history.
 * 0 with *out set; UV_EINVAL (bad metadata: err says which key and value); PS_TARGETS_ERR_FULL (more
 * than --max-targets). The target stays owned by the registry; it lives at least until the loop runs
 * again. */
int ps_targets_get_or_create(struct ps_targets *ts, const char *ns, const char *name, const struct ps_kv *md,
                             size_t n, struct ps_target **out, char *err, size_t errlen);

const struct ps_target_config *ps_target_config(const struct ps_target *t);
/* The target's refresh offset into each step (after the settle time), in [0, step); for tests. */
int64_t ps_target_refresh_offset_ms(const struct ps_target *t);
/* Milliseconds until the target's refresh timer fires, or -1 when it is not armed; for tests. */
int64_t ps_target_refresh_due_ms(const struct ps_target *t);
/* The range (ms) of the target's last query_range started; for tests. */
void ps_target_fetch_range(const struct ps_target *t, int64_t *start_ms, int64_t *end_ms);

/* Reads the cached answer and marks the target used. Returns:
 *  0  - *r filled;
 *  1  - the first load has not finished (its fetch is in flight, or its samples are being fed to the
 *       engine a slice per loop turn): wait with ps_target_wait;
 *  <0 - the error to answer (err says why): UV_EINVAL (Prometheus rejected the query or it returns
 *       several series), PS_TARGET_ERR_EMPTY_RESULT (empty result while ignoreNullValues is false),
 *       UV_EAGAIN (Prometheus unreachable or failing and no fresh data: nothing loaded yet, or older than
 *       --stale-after). */
int ps_target_read(struct ps_target *t, struct ps_target_reading *r, char *err, size_t errlen);

/* A count that moves whenever what an RPC answers about t may have changed: the reading's value or its
 * activity (the target's config, hence its GetMetricSpec, never changes). The service keeps a target's
 * encoded answers while it stays the one they were built at (req_cache.h). At least 1 once a reading is
 * available (ps_target_read returned 0). */
uint64_t ps_target_generation(const struct ps_target *t);

/* The value a reading answers for a computed v: v clamped to [0, PS_TARGET_VALUE_MAX], NaN as 0. */
double ps_target_saturate(double v);

void ps_target_wait(struct ps_target *t, struct ps_target_waiter *w);
void ps_target_unwait(struct ps_target_waiter *w); /* no-op when not linked */
void ps_target_watch(struct ps_target *t, struct ps_target_watcher *w);
void ps_target_unwatch(struct ps_target_watcher *w); /* no-op when not linked */

#endif
