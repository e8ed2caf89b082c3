/* The HPA replay model: see hpa.h for what is modeled and why. */
#include "hpa.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- lifecycle ----------------------------------------------------------------------------------- */

static int64_t want(double metric, double threshold) {
  if (!(metric > 0)) return PS_HPA_MIN_REPLICAS;
  double d = ceil(metric / threshold);
  if (!(d < (double)PS_HPA_MAX_REPLICAS)) return PS_HPA_MAX_REPLICAS;
  return d < PS_HPA_MIN_REPLICAS ? PS_HPA_MIN_REPLICAS : (int64_t)d;
}

int ps_hpa_init(struct ps_hpa *h, double threshold, int64_t startup_ms, int64_t t0_ms, double metric) {
  memset(h, 0, sizeof *h);
  if (!(threshold > 0) || !isfinite(threshold) || startup_ms < 0 || startup_ms > PS_HPA_MAX_STARTUP_MS)
    return UV_EINVAL;
  /* At most one decision per sync is still starting: pods of a decision are ready startup_ms later. */
  h->pending_cap = (size_t)(startup_ms / PS_HPA_SYNC_MS) + 2;
  h->pending = calloc(h->pending_cap, sizeof *h->pending);
  if (h->pending == NULL) return UV_ENOMEM;
  h->threshold = threshold;
  h->startup_ms = startup_ms;
  h->now_ms = t0_ms;
  h->replicas = h->ready = h->min_ready = want(metric, threshold);
  return 0;
}

void ps_hpa_free(struct ps_hpa *h) {
  free(h->pending);
  h->pending = NULL;
}

void ps_hpa_mark_min(struct ps_hpa *h) { h->min_ready = h->ready; }

/* ---- time ---------------------------------------------------------------------------------------- */

static void make_ready(struct ps_hpa *h) {
  while (h->pending_len > 0 && h->pending[h->pending_head].ready_ms <= h->now_ms) {
    h->ready += h->pending[h->pending_head].pods;
    h->pending_head = (h->pending_head + 1) % h->pending_cap;
    h->pending_len--;
  }
}

static void account(struct ps_hpa *h, int64_t dt, double demand) {
  double need = demand / h->threshold;
  if (need > (double)h->ready) {
    h->under_pod_ms += (need - (double)h->ready) * (double)dt;
    h->under_ms += dt;
  }
  h->pod_ms += (double)h->replicas * (double)dt;
  h->elapsed_ms += dt;
}

void ps_hpa_advance(struct ps_hpa *h, int64_t t_ms, double demand) {
  if (!(demand > 0)) demand = 0;
  make_ready(h);
  while (h->now_ms < t_ms) {
    int64_t next = t_ms;
    if (h->pending_len > 0 && h->pending[h->pending_head].ready_ms < next)
      next = h->pending[h->pending_head].ready_ms;
    account(h, next - h->now_ms, demand);
    h->now_ms = next;
    make_ready(h);
    if (h->ready < h->min_ready) h->min_ready = h->ready;
  }
}

/* ---- the controller ------------------------------------------------------------------------------ */

/* The HPA algorithm: ratio = metric / (replicas * threshold); within tolerance nothing changes, otherwise
 * desired = ceil(metric / threshold) (for an AverageValue target the ratio times replicas). The slack
 * makes a ratio of exactly 1.1 count as within tolerance, as documented, although 110/100 - 1 rounds to
 * 0.10000000000000009 in binary (the HPA's own float64 arithmetic would scale there). */
#define TOLERANCE_SLACK 1e-12
static int64_t propose(const struct ps_hpa *h, double metric) {
  double ratio = metric / ((double)h->replicas * h->threshold);
  if (fabs(ratio - 1.0) <= PS_HPA_TOLERANCE + TOLERANCE_SLACK) return h->replicas;
  return want(metric, h->threshold);
}

/* Scale-down stabilization: the replicas set are the highest proposal of the window (now - W, now]; as
 * scale-up has no window, a rising proposal wins at once. */
static int64_t stabilize(struct ps_hpa *h, int64_t proposal) {
  int64_t cutoff = h->now_ms - PS_HPA_STABILIZATION_MS;
  while (h->rec_len > 0 && h->rec_ms[h->rec_head] <= cutoff) {
    h->rec_head = (h->rec_head + 1) % PS_HPA_WINDOW;
    h->rec_len--;
  }
  if (h->rec_len == PS_HPA_WINDOW) { /* syncs closer than PS_HPA_SYNC_MS: keep the newest */
    h->rec_head = (h->rec_head + 1) % PS_HPA_WINDOW;
    h->rec_len--;
  }
  size_t tail = (h->rec_head + h->rec_len) % PS_HPA_WINDOW;
  h->rec_ms[tail] = h->now_ms;
  h->rec[tail] = proposal;
  h->rec_len++;
  int64_t best = proposal;
  for (size_t i = 0; i < h->rec_len; i++) {
    int64_t r = h->rec[(h->rec_head + i) % PS_HPA_WINDOW];
    if (r > best) best = r;
  }
  return best;
}

static void scale_up(struct ps_hpa *h, int64_t n) {
  if (h->startup_ms == 0) {
    h->ready += n;
    return;
  }
  size_t tail = (h->pending_head + h->pending_len + h->pending_cap - 1) % h->pending_cap;
  int64_t at = h->now_ms + h->startup_ms;
  /* Same ready time as the newest decision, or no room left (only with syncs closer than PS_HPA_SYNC_MS):
   * merge into the newest. */
  if (h->pending_len > 0 && (h->pending[tail].ready_ms == at || h->pending_len == h->pending_cap)) {
    h->pending[tail].pods += n;
    return;
  }
  tail = (h->pending_head + h->pending_len) % h->pending_cap;
  h->pending[tail] = (struct ps_hpa_pending){at, n};
  h->pending_len++;
}

/* Removes n pods: starting ones first, newest first, then ready ones. */
static void scale_down(struct ps_hpa *h, int64_t n) {
  while (n > 0 && h->pending_len > 0) {
    size_t tail = (h->pending_head + h->pending_len - 1) % h->pending_cap;
    int64_t k = h->pending[tail].pods < n ? h->pending[tail].pods : n;
    h->pending[tail].pods -= k;
    n -= k;
    if (h->pending[tail].pods == 0) h->pending_len--;
  }
  h->ready -= n;
  if (h->ready < h->min_ready) h->min_ready = h->ready;
}

int64_t ps_hpa_sync(struct ps_hpa *h, double metric) {
  if (!(metric > 0)) metric = 0;
  make_ready(h);
  int64_t target = stabilize(h, propose(h, metric));
  if (target > h->replicas) {
    scale_up(h, target - h->replicas);
  } else if (target < h->replicas) {
    scale_down(h, h->replicas - target);
  }
  if (target != h->replicas) h->events++;
  h->replicas = target;
  return target;
}
