/* A real Prometheus for C tests: started on a free loopback port with an empty TSDB in a temporary
 * folder, awaited by polling /-/ready, stopped and removed afterwards. Queries such as
 * `vector(time() % 180)` give exact, known series without any scraping. */
#ifndef PS_PROM_FIXTURE_H
#define PS_PROM_FIXTURE_H

#include <sys/types.h>

#define PS_TEST_PROMETHEUS_BIN "/usr/bin/prometheus"
#define PS_TEST_PROM_READY_MS  30000 /* bound on waiting for /-/ready */

struct ps_test_prom {
  pid_t pid;
  int port;
  char dir[256];
  char url[64]; /* http://127.0.0.1:PORT (https:// with a web_config) */
  /* Optional, set before ps_test_prom_start: a --web.config.file (TLS, basic auth; the url is then
   * https://) and the readiness check to poll instead of a plain GET /-/ready: the HTTP status it got, or
   * -1 (see prom_tls_fixture.h). */
  const char *web_config;
  int (*ready_status)(const struct ps_test_prom *p);
  void *ready_arg;
};

/* A port that was free a moment ago on 127.0.0.1 (bind to 0, read it, close). */
int ps_test_free_port(void);
/* Starts Prometheus (port 0: pick a free one; else reuse that port and p->dir, e.g. for a restart).
 * 0, or -1 with a reason in why (binary missing, not ready in time). */
int ps_test_prom_start(struct ps_test_prom *p, int port, char *why, size_t whylen);
/* SIGTERM and wait; keep_dir leaves the data folder for a restart. */
void ps_test_prom_stop(struct ps_test_prom *p, int keep_dir);
/* Blocking GET of path on 127.0.0.1:port for tests; returns the HTTP status or -1. */
int ps_test_http_status(int port, const char *path);

#endif
