/* The registry's fixture shared by test_targets.c and test_targets_close.c: a loop, a real Prometheus on
 * loopback (prom_fixture.h), an HTTP client and a registry over it, and a waiter for a target's first
 * load; test_service.c adds its service over them. Included by one test file each (its statics are that
 * file's). */
#ifndef PS_TEST_TARGETS_FIXTURE_H
#define PS_TEST_TARGETS_FIXTURE_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "prom_fixture.h"
#include "targets.h"

static uv_loop_t loop;
static struct ps_server_config cfg;
static struct ps_http_client *http;
static struct ps_targets *targets;
static struct ps_test_prom prom;
static char why[512];

static inline void targets_fixture_setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  ps_server_config_defaults(&cfg);
  ps_log_setup(PS_LOG_ERROR, PS_LOG_TEXT, NULL);
  if (ps_test_prom_start(&prom, 0, why, sizeof why) != 0) cr_skip_test("%s", why);
  cfg.prometheus_url = prom.url;
  cr_assert_eq(ps_http_client_new(&loop, &http), 0);
  cr_assert_eq(ps_targets_new(&loop, &cfg, http, &targets), 0);
}

/* Closes the registry (unless the test did) and the client; their memory goes in close callbacks. Every
 * test ends with this, then PS_LOOP_END, which runs those callbacks and fails the test on anything left
 * open. */
static inline void stop_targets(void) {
  if (targets != NULL) ps_targets_close(targets);
  ps_http_client_close(http);
  targets = NULL;
  http = NULL;
}

/* Prometheus and the metrics, even after a failed test. */
static inline void targets_fixture_teardown(void) {
  ps_test_prom_stop(&prom, 0);
  ps_metrics_reset();
}

struct waited {
  struct ps_target_waiter w;
  bool done;
  int err;
};
static inline void waited_cb(struct ps_target_waiter *w, int err) {
  struct waited *x = (struct waited *)w;
  x->done = true;
  x->err = err;
}
static inline bool waited_done(void *arg) { return ((struct waited *)arg)->done; }

#endif
