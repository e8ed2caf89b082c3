/* Private to src/targets.c, src/target_fetch.c and src/target_reading.c: the registry and its targets,
 * shared by the lifecycle part (targets.c: keys, the labels index, creation, eviction, close), the fetch
 * part (target_fetch.c: refresh timers with jitter, fetches shared by identical requests, their results,
 * and first loads fed in slices) and the reading part (target_reading.c: the engine's readings, reads,
 * waiters and watchers). Not a contract for other modules: targets.h is. */
#ifndef PS_TARGETS_INT_H
#define PS_TARGETS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "forecast/engine.h"
#include "list.h"
#include "prom.h"
#include "targets.h"

struct fetch; /* target_fetch.c */
struct due;   /* target_fetch.c */

struct ps_target {
  struct ps_targets *owner;
  struct ps_target *hnext; /* hash chain */
  struct ps_target *lnext; /* chain of owner->by_labels, by labels_hash */
  struct ps_list node;     /* in owner->all, for sweeps and shutdown */
  uint64_t hash;
  uint64_t labels_hash;
  char *key; /* canonical (namespace, name, sorted metadata) */
  char *ns, *name;
  char *labels;  /* metric labels, escaped */
  char *mlabels; /* scratch: labels + `,model="..."` (mlabels_cap bytes) */
  size_t mlabels_cap;
  struct ps_target_config cfg;
  struct ps_engine *engine;             /* history and models; owned */
  uv_timer_t timer;                     /* t is freed in its close callback; no group: refreshes */
  struct due *due;                      /* the group (one timer) it waits in to refresh, or NULL */
  struct ps_list due_node;              /* in due->targets while due != NULL */
  struct fetch *fetch;                  /* the (shared) fetch in flight, or NULL */
  struct ps_list fetch_node;            /* in fetch->sharers while fetch != NULL */
  int64_t refresh_offset_ms;            /* jitter: into each step, after the settle time */
  char *ask;                            /* server \x1f query \x1f step [extras]: what it asks Prometheus */
  size_t ask_len;                       /* (the identity of its fetches with their range, and its offset) */
  uint64_t ask_hash;                    /* FNV-1a of ask */
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
  uint64_t generation; /* ps_target_generation: bumped where the reading's value or activity changes */
  /* The newest observation exactly as Prometheus returned it: the engine keeps its history in float, and
   * the observation is what shadow mode answers and what a reactive scaler would see, to the bit. */
  double obs;
  int64_t obs_ms;
  bool have_obs;
  /* What the engine reported last, so the log and /metrics hear of changes only. */
  bool have_result;
  enum ps_model chosen;
  int64_t period_ms;
  const char *note;  /* static text from the engine, or NULL */
  uint8_t mae_shown; /* bit m: prescale_target_model_error{model=m} exists */
  /* Its series updated at every refresh, resolved once (metrics.h, struct ps_metric_ref): 10,000 targets
   * refreshed by one shared answer cost no label formatting or registry look-up each. model_info follows
   * the chosen model (zeroed when it changes); mae[m] is model m's prescale_target_model_error. */
  struct {
    struct ps_metric_ref observed, predicted, value, active, last_success, refreshes, fallback, model_info,
        period, margin, coverage, mae[PS_MODEL_COUNT];
  } ref;
  struct ps_list waiters;  /* of struct ps_target_waiter, by link.node */
  struct ps_list watchers; /* of struct ps_target_watcher, by link.node */
  /* A sliced load in progress (load != NULL): the fetched samples, copied out of the Prometheus callback
   * (16 bytes a sample, at most 1.6 MB) and owned by the target until the last slice is in or the target
   * closes (load_end frees them); load_done of load_n are in the engine. No fetch runs meanwhile. */
  struct ps_sample *load;
  size_t load_n, load_done;
  struct ps_list load_node; /* in owner->load_queue while load != NULL */
};

struct ps_targets {
  uv_loop_t *loop;
  struct fetch *fetches[PS_TARGETS_FETCH_BUCKETS];
  size_t nfetches;
  struct due *dues[PS_TARGETS_DUE_BUCKETS]; /* the groups with targets, by the instant they are due */
  struct due *due_free;                     /* emptied groups kept, their timers open (hnext chain) */
  size_t ndue_free, ndues;                  /* kept; in dues */
  const struct ps_server_config *cfg;
  struct ps_http_client *http;
  struct ps_prom_servers *servers; /* --prometheus-config (not owned); NULL: none */
  struct ps_target *buckets[PS_TARGETS_BUCKETS];
  /* The same targets by their labels (namespace, name, metric): the targets that share a target's series
   * (the same trigger after a metadata edit is another key, the same labels), found in a chain as short as
   * the key's when a target closes, not among all targets (closing 10,000 was O(n^2): a second of CPU). */
  struct ps_target *by_labels[PS_TARGETS_BUCKETS];
  struct ps_list all; /* of ps_target.node, newest first */
  size_t count;
  uv_timer_t sweep;
  /* Feeds the loading queue (the head until it is done, then the next) one slice per loop turn; active
   * only while the queue is not empty. An idle handle rather than a 0 ms timer: it also keeps the loop
   * polling for I/O without blocking between slices. */
  uv_idle_t loader;
  struct ps_list load_queue; /* of ps_target.load_node, first come first fed */
  size_t loading;            /* targets in the loading queue */
  bool loads_held;           /* ps_targets_hold_loads: the loader stays stopped */
  size_t open_handles;       /* sweep, loader and the targets still closing; freed when it reaches 0 */
  bool closing;
  struct ps_buf key_scratch; /* the key of the target being looked up (make_key); memory kept */
  unsigned long long epoch;  /* bumped when a target leaves (ps_targets_epoch) */
};

static inline int64_t ps_tg_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a of s[0..n): the buckets of targets and of fetches, and the refresh offset. */
static inline uint64_t ps_tg_fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* target_reading.c */
/* Unlinks a waiter's or watcher's link from its target's list; its target becomes NULL. */
void ps_tg_link_remove(struct ps_target_link *l);
/* Unlinks each waiter of t and calls it back with err (0: the target has an answer). */
void ps_tg_notify_waiters(struct ps_target *t, int err);
/* The target's labels plus model="<m>", in the target's scratch buffer (valid until the next call). */
const char *ps_tg_model_labels(struct ps_target *t, enum ps_model m);
/* Puts s[0..n) (oldest first) into the engine, keeping the newest observation. */
void ps_tg_put_samples(struct ps_target *t, const struct ps_sample *s, size_t n);
/* The time of the newest sample that holds a value (not NaN), INT64_MIN when none does. */
int64_t ps_tg_newest_present(const struct ps_sample *s, size_t n);
/* A fetch's samples are all in the engine: the target is loaded, its reading recomputed. */
void ps_tg_fetch_succeeded(struct ps_target *t, int64_t newest_ms);

/* target_fetch.c */
/* Builds t->ask and its hash from t->cfg: 0 or UV_ENOMEM. */
int ps_tg_ask_init(struct ps_target *t);
/* The target's offset into each step (jitter), stable for what it asks Prometheus (t->ask). */
int64_t ps_tg_refresh_offset(const struct ps_target *t);
/* Starts (or joins) the fetch of the range due; its result comes back through the target's waiters. */
void ps_tg_start_fetch(struct ps_target *t);
/* t stops sharing its fetch (evicted or closing); the last sharer to leave cancels the request. */
void ps_tg_fetch_leave(struct ps_target *t);
/* Leaves the loading queue and frees the copied samples; a no-op when t is not loading. */
void ps_tg_load_end(struct ps_target *t);
/* t leaves its due group (closing); a group left empty stops its timer. */
void ps_tg_due_leave(struct ps_target *t);
/* Closes the groups' timers (the registry closes; its targets have left them). */
void ps_tg_dues_close(struct ps_targets *ts);

#endif
