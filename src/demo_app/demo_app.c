/* prescale-demo-app: the workload prescale's demo and Kubernetes walkthrough scale. Wiring, signals and
 * exit codes; the HTTP side is demo_http.c, the flags demo_flags.c.
 *
 * Exit codes: 0 after SIGTERM/SIGINT (or --help/--version), 1 when it cannot start (e.g. the port is in
 * use), 2 for a bad flag.
 *
 * Shutdown: on the first SIGTERM/SIGINT the server drains. Kubernetes removes a terminating pod from its
 * Service's endpoints asynchronously, so requests may still arrive for a moment; they are served, with
 * "Connection: close". The listener closes as soon as no request is in service, or after
 * DRAIN_TIMEOUT_MS at the latest (well inside the default 30 s terminationGracePeriodSeconds). A second
 * signal closes at once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "demo_flags.h"
#include "demo_http.h"
#include "log.h"
#include "metrics.h"
#include "net.h"

#define DRAIN_TIMEOUT_MS 5000

struct app {
  uv_loop_t loop;
  struct ps_demo_flags flags;
  struct ps_demo_server srv;
  struct ps_net_listener *listener;
  uv_signal_t sigterm, sigint;
  uv_timer_t drain;
  bool drain_started;
  bool closed;
};

/* Closes everything the loop still holds; uv_run then returns. Idempotent. */
static void close_all(struct app *a) {
  if (a->closed) return;
  a->closed = true;
  if (a->listener != NULL) ps_net_listener_close(a->listener, NULL, NULL);
  a->listener = NULL;
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->drain, NULL);
}

static void on_idle(void *arg) { close_all(arg); }

static void drain_timeout_cb(uv_timer_t *t) {
  struct app *a = t->data;
  char n[24];
  snprintf(n, sizeof n, "%llu", (unsigned long long)a->srv.in_flight);
  ps_log(PS_LOG_WARN, "drain timed out; closing with requests in service", "in_flight", n, NULL);
  close_all(a);
}

static void signal_cb(uv_signal_t *h, int signum) {
  struct app *a = h->data;
  const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
  if (a->drain_started) {
    ps_log(PS_LOG_INFO, "second signal; closing now", "signal", name, NULL);
    close_all(a);
    return;
  }
  a->drain_started = true;
  ps_log(PS_LOG_INFO, "shutting down", "signal", name, NULL);
  a->srv.draining = true;
  if (a->srv.in_flight == 0) {
    close_all(a);
    return;
  }
  uv_timer_start(&a->drain, drain_timeout_cb, DRAIN_TIMEOUT_MS, 0);
}

int main(int argc, char **argv) {
  static struct app a; /* zeroed */
  char err[256];
  ps_demo_flags_defaults(&a.flags);
  int r = ps_demo_flags_parse(&a.flags, argc, argv, stdout, err, sizeof err);
  if (r == 1 || r == 2) return 0;
  if (r != 0) {
    fprintf(stderr, "prescale-demo-app: %s\n", err);
    return 2;
  }
  ps_log_setup(a.flags.log_level, a.flags.log_format, NULL);
  signal(SIGPIPE, SIG_IGN); /* a client that vanished is an EPIPE from write, not a death */

  if (uv_loop_init(&a.loop) != 0) return 1;
  if (ps_demo_metrics_declare() != 0) return 1;
  uv_signal_init(&a.loop, &a.sigterm);
  uv_signal_init(&a.loop, &a.sigint);
  uv_timer_init(&a.loop, &a.drain);
  a.sigterm.data = a.sigint.data = a.drain.data = &a;
  uv_signal_start(&a.sigterm, signal_cb, SIGTERM);
  uv_signal_start(&a.sigint, signal_cb, SIGINT);

  a.srv.loop = &a.loop;
  a.srv.service_ms = (uint64_t)a.flags.service_ms;
  a.srv.on_idle = on_idle;
  a.srv.on_idle_arg = &a;

  int status = 0;
  r = ps_net_listen(&a.loop, a.flags.listen, &ps_demo_net_proto, &a.srv, &a.listener);
  if (r != 0) {
    ps_log(PS_LOG_ERROR, "cannot listen", "address", a.flags.listen, "error", uv_strerror(r), NULL);
    a.listener = NULL;
    status = 1;
    close_all(&a);
  } else {
    char port[16], svc[24];
    snprintf(port, sizeof port, "%d", ps_net_listener_port(a.listener));
    snprintf(svc, sizeof svc, "%lldms", (long long)a.flags.service_ms);
    ps_log(PS_LOG_INFO, "prescale-demo-app started", "version", PS_VERSION, "listen", a.flags.listen, "port",
           port, "service_time", svc, NULL);
  }
  uv_run(&a.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&a.loop) != 0) {
    ps_log(PS_LOG_ERROR, "handles left open at exit", NULL);
    status = 1;
  }
  ps_metrics_reset();
  if (status == 0) ps_log(PS_LOG_INFO, "stopped", NULL);
  return status;
}
