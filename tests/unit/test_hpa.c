/* The HPA replay model (src/backtest/hpa.c) on tiny cases computed by hand. Times in ms; threshold 10
 * requests/s per pod unless said otherwise. */
#include <criterion/criterion.h>
#include <math.h>
#include <uv.h>

#include "backtest/hpa.h"

static struct ps_hpa h;

static void teardown(void) { ps_hpa_free(&h); }

TestSuite(hpa, .fini = teardown);

/* Advances to t with demand d, then syncs reading metric m. */
static int64_t sync_at(int64_t t, double d, double m) {
  ps_hpa_advance(&h, t, d);
  return ps_hpa_sync(&h, m);
}

Test(hpa, bad_config) {
  cr_assert_eq(ps_hpa_init(&h, 0, 0, 0, 1), UV_EINVAL);
  cr_assert_eq(ps_hpa_init(&h, NAN, 0, 0, 1), UV_EINVAL);
  cr_assert_eq(ps_hpa_init(&h, 1, -1, 0, 1), UV_EINVAL);
  cr_assert_eq(ps_hpa_init(&h, 1, PS_HPA_MAX_STARTUP_MS + 1, 0, 1), UV_EINVAL);
}

Test(hpa, warm_start_and_min_one) {
  cr_assert_eq(ps_hpa_init(&h, 10, 60000, 0, 95), 0);
  cr_assert_eq(h.replicas, 10); /* ceil(95 / 10) */
  cr_assert_eq(h.ready, 10);
  ps_hpa_free(&h);
  cr_assert_eq(ps_hpa_init(&h, 10, 60000, 0, 0), 0);
  cr_assert_eq(h.replicas, 1);
  cr_assert_eq(sync_at(0, 0, 0), 1);
  cr_assert_eq(sync_at(15000, 0, NAN), 1, "NaN reads as 0");
  cr_assert_eq(sync_at(30000, 0, -5), 1);
  cr_assert_eq(h.events, 0);
}

Test(hpa, tolerance) {
  cr_assert_eq(ps_hpa_init(&h, 10, 0, 0, 100), 0);
  cr_assert_eq(sync_at(0, 100, 109), 10, "ratio 1.09 is within 10%%");
  cr_assert_eq(sync_at(15000, 100, 110), 10, "ratio 1.10 is within 10%% (<=)");
  cr_assert_eq(h.events, 0);
  cr_assert_eq(sync_at(30000, 100, 111), 12, "ratio 1.11: ceil(11.1)");
  cr_assert_eq(h.events, 1);
  /* Now 12 replicas: 110 is ratio 0.917, within tolerance. */
  cr_assert_eq(sync_at(45000, 100, 110), 12);
  cr_assert_eq(h.events, 1);
}

Test(hpa, startup_delay_and_accounting) {
  cr_assert_eq(ps_hpa_init(&h, 10, 60000, 0, 20), 0);
  cr_assert_eq(sync_at(0, 40, 40), 4);
  cr_assert_eq(h.ready, 2, "the two new pods are starting");
  ps_hpa_advance(&h, 59999, 40);
  cr_assert_eq(h.ready, 2);
  ps_hpa_advance(&h, 120000, 40);
  cr_assert_eq(h.ready, 4);
  /* 2 pods short for 60 s; 4 pods paid for 120 s. */
  cr_assert_float_eq(h.under_pod_ms, 2.0 * 60000, 1e-6);
  cr_assert_eq(h.under_ms, 60000);
  cr_assert_float_eq(h.pod_ms, 4.0 * 120000, 1e-6);
  cr_assert_eq(h.elapsed_ms, 120000);
  cr_assert_eq(h.events, 1);
  cr_assert_eq(h.min_ready, 2);
}

Test(hpa, partial_shortfall_is_fractional) {
  /* demand 35/s needs 3.5 pods; 3 ready: 0.5 pod short for 10 s. */
  cr_assert_eq(ps_hpa_init(&h, 10, 0, 0, 30), 0);
  ps_hpa_advance(&h, 10000, 35);
  cr_assert_float_eq(h.under_pod_ms, 0.5 * 10000, 1e-6);
  cr_assert_eq(h.under_ms, 10000);
  /* exactly at capacity is not under-provisioned */
  ps_hpa_advance(&h, 20000, 30);
  cr_assert_eq(h.under_ms, 10000);
}

Test(hpa, scale_down_stabilization) {
  cr_assert_eq(ps_hpa_init(&h, 10, 0, 0, 100), 0);
  cr_assert_eq(sync_at(0, 100, 100), 10);
  /* The proposal of 10 at t=0 holds the replicas until it leaves the window (now - 300 s, now]. */
  for (int64_t t = 15000; t < 300000; t += 15000)
    cr_assert_eq(sync_at(t, 50, 50), 10, "t=%lld", (long long)t);
  cr_assert_eq(h.events, 0);
  cr_assert_eq(sync_at(300000, 50, 50), 5);
  cr_assert_eq(h.ready, 5, "scale-down is immediate");
  cr_assert_eq(h.events, 1);
  /* A rise is applied at once, and the next fall waits for it to age out. */
  cr_assert_eq(sync_at(315000, 80, 80), 8);
  cr_assert_eq(sync_at(330000, 30, 30), 8);
  cr_assert_eq(sync_at(600000, 30, 30), 8);
  cr_assert_eq(sync_at(615000, 30, 30), 3);
  cr_assert_eq(h.events, 3);
}

Test(hpa, stabilization_uses_the_highest_recent_proposal) {
  cr_assert_eq(ps_hpa_init(&h, 10, 0, 0, 100), 0);
  cr_assert_eq(sync_at(0, 100, 100), 10);
  cr_assert_eq(sync_at(15000, 100, 70), 10); /* proposal 7 */
  cr_assert_eq(sync_at(30000, 100, 40), 10); /* proposal 4 */
  cr_assert_eq(sync_at(300000, 100, 40), 7); /* 10 aged out; 7 (t=15 s) is the highest left */
  cr_assert_eq(sync_at(315000, 100, 40), 4);
}

Test(hpa, scale_down_removes_starting_pods_first) {
  cr_assert_eq(ps_hpa_init(&h, 10, 600000, 0, 20), 0);
  cr_assert_eq(sync_at(0, 80, 80), 8); /* 6 starting, ready at 600 s */
  for (int64_t t = 15000; t < 300000; t += 15000) cr_assert_eq(sync_at(t, 30, 30), 8);
  cr_assert_eq(sync_at(300000, 30, 30), 3);
  cr_assert_eq(h.ready, 2, "the 5 pods removed were starting ones");
  ps_hpa_advance(&h, 600000, 30);
  cr_assert_eq(h.ready, 3, "the one starting pod left became ready");
  cr_assert_eq(h.replicas, 3);
}

Test(hpa, scale_down_past_starting_pods_removes_ready_ones) {
  cr_assert_eq(ps_hpa_init(&h, 10, 600000, 0, 50), 0);
  cr_assert_eq(sync_at(0, 70, 70), 7); /* 5 ready + 2 starting */
  for (int64_t t = 15000; t < 300000; t += 15000) sync_at(t, 20, 20);
  cr_assert_eq(sync_at(300000, 20, 20), 2);
  cr_assert_eq(h.ready, 2);
  cr_assert_eq(h.min_ready, 2);
  ps_hpa_advance(&h, 900000, 20);
  cr_assert_eq(h.ready, 2, "no starting pod is left to become ready");
}

Test(hpa, decisions_in_successive_syncs_become_ready_in_order) {
  cr_assert_eq(ps_hpa_init(&h, 10, 20000, 0, 10), 0);
  cr_assert_eq(sync_at(0, 30, 30), 3);     /* +2 ready at 20 s */
  cr_assert_eq(sync_at(15000, 60, 60), 6); /* +3 ready at 35 s */
  ps_hpa_advance(&h, 20000, 60);
  cr_assert_eq(h.ready, 3);
  ps_hpa_advance(&h, 35000, 60);
  cr_assert_eq(h.ready, 6);
  /* demand 60 throughout (each advance takes the demand of the interval it ends): shortfall [0,15) need 6
   * have 1: 5 x 15; [15,20) need 6 have 1: 5 x 5; [20,35) need 6 have 3: 3 x 15 */
  cr_assert_float_eq(h.under_pod_ms, 5.0 * 15000 + 5.0 * 5000 + 3.0 * 15000, 1e-6);
}

Test(hpa, huge_metric_is_capped) {
  cr_assert_eq(ps_hpa_init(&h, 1e-3, 0, 0, 1), 0);
  cr_assert_eq(sync_at(0, 0, 1e300), PS_HPA_MAX_REPLICAS);
  cr_assert_eq(sync_at(15000, 0, INFINITY), PS_HPA_MAX_REPLICAS);
}
