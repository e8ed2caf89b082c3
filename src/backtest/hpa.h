/* A model of the Kubernetes HorizontalPodAutoscaler driven by one metric, for `prescale backtest`.
 *
 * What it models (docs/forecasting.md, "HPA replay"), following the HPA algorithm
 * (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details) for an
 * external metric with an AverageValue target, which is how KEDA exposes a scaler's metric:
 *   - every PS_HPA_SYNC_MS the controller reads `metric` (a rate) and proposes
 *     desired = ceil(metric / threshold), or keeps the current replicas when
 *     |metric / (replicas * threshold) - 1| <= PS_HPA_TOLERANCE;
 *   - the proposal is stabilized for scale-down: the replicas set are the maximum of the proposals of the
 *     last PS_HPA_STABILIZATION_MS (this one included); scale-up is immediate (the default behavior's
 *     window 0); the default scale-up rate policy (x2 or +4 pods per 15 s) is not modeled;
 *   - at least PS_HPA_MIN_REPLICAS, at most PS_HPA_MAX_REPLICAS;
 *   - a new pod is ready startup_ms after the decision that created it; a scale-down removes pods at
 *     once, those still starting first (newest first), as the ReplicaSet controller deletes unready pods
 *     first.
 * Accounting, integrated exactly over time between events: under-provisioned pod-seconds =
 * integral of max(0, demand / threshold - ready) dt; time demand exceeded ready capacity (demand >
 * ready * threshold); pod-seconds = integral of replicas dt (starting pods are paid for too); scaling
 * events = decisions that changed replicas. */
#ifndef PS_HPA_H
#define PS_HPA_H

#include <stddef.h>
#include <stdint.h>

#define PS_HPA_SYNC_MS          15000  /* --horizontal-pod-autoscaler-sync-period */
#define PS_HPA_TOLERANCE        0.1    /* --horizontal-pod-autoscaler-tolerance */
#define PS_HPA_STABILIZATION_MS 300000 /* behavior.scaleDown.stabilizationWindowSeconds default */
#define PS_HPA_MIN_REPLICAS     1
#define PS_HPA_MAX_REPLICAS     1000000 /* a bound so that absurd forecasts cannot overflow the counts */
#define PS_HPA_MAX_STARTUP_MS   (24LL * 3600 * 1000)
/* Proposals kept for the stabilization window: one per sync. */
#define PS_HPA_WINDOW           (PS_HPA_STABILIZATION_MS / PS_HPA_SYNC_MS + 1)

struct ps_hpa_pending {
  int64_t ready_ms;
  int64_t pods;
};

struct ps_hpa {
  double threshold;   /* rate one pod serves, > 0 */
  int64_t startup_ms; /* >= 0 */
  int64_t now_ms;     /* accounted up to here */
  int64_t replicas;   /* set by the controller (ready + starting) */
  int64_t ready;

  /* Starting pods, FIFO by ready time (decisions come in time order and startup is constant). */
  struct ps_hpa_pending *pending; /* owned ring of pending_cap */
  size_t pending_cap, pending_head, pending_len;

  /* Proposals of the last syncs, for scale-down stabilization. */
  int64_t rec_ms[PS_HPA_WINDOW];
  int64_t rec[PS_HPA_WINDOW];
  size_t rec_head, rec_len;

  /* Results. */
  double under_pod_ms; /* pod-milliseconds of demand beyond ready capacity */
  int64_t under_ms;    /* time with demand > ready capacity */
  double pod_ms;       /* pod-milliseconds of replicas */
  int64_t elapsed_ms;
  int64_t events;    /* decisions that changed replicas */
  int64_t min_ready; /* lowest ready count since ps_hpa_mark_min (for charts) */
};

/* Starts at t0_ms with the replicas `metric` asks for, all ready (a warm start: the replay compares
 * decisions, not a cold start). threshold > 0 and finite, 0 <= startup_ms <= PS_HPA_MAX_STARTUP_MS, or
 * UV_EINVAL. UV_ENOMEM. */
int ps_hpa_init(struct ps_hpa *h, double threshold, int64_t startup_ms, int64_t t0_ms, double metric);
void ps_hpa_free(struct ps_hpa *h);

/* Accounts [now, t_ms) with a constant demand rate (pods becoming ready on the way). t_ms >= now. */
void ps_hpa_advance(struct ps_hpa *h, int64_t t_ms, double demand);

/* One controller sync at the current time (after ps_hpa_advance to it) reading `metric` (a rate; NaN or
 * negative reads as 0). Returns the replicas now set. */
int64_t ps_hpa_sync(struct ps_hpa *h, double metric);

/* Resets min_ready to the current ready count. */
void ps_hpa_mark_min(struct ps_hpa *h);

#endif
