/* prescale: a predictive KEDA external scaler. Wiring, signals and exit codes.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or --help/--version; 1 when the server cannot
 * start (e.g. a port in use) or could not shut down cleanly; 2 for a bad flag or environment value. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backtest.h"
#include "config.h"
#include "grpc.h"
#include "h2_conn.h"
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "probe.h"
#include "service.h"
#include "targets.h"

struct app {
  uv_loop_t loop;
  struct ps_server_config cfg;
  struct ps_http_client *http;
  struct ps_targets *targets;
  struct ps_service *service;
  struct ps_h2_server h2;
  struct ps_http_server health;
  struct ps_net_listener *grpc_listener;
  struct ps_net_listener *http_listener;
  uv_signal_t sigterm, sigint;
  bool grpc_ready;
  bool stopping;
};

static bool is_ready(void *arg) {
  struct app *a = arg;
  return a->grpc_ready && !a->stopping;
}

static void shutdown_app(struct app *a, const char *why) {
  if (a->stopping) return;
  a->stopping = true;
  ps_log(PS_LOG_INFO, "shutting down", "reason", why, NULL);
  /* Open streams get a final UNAVAILABLE first, so KEDA reconnects to another replica at once; then the
   * listeners close their connections after the queued bytes are flushed. */
  if (a->service != NULL) ps_service_close(a->service);
  if (a->grpc_listener != NULL) ps_net_listener_close(a->grpc_listener, NULL, NULL);
  if (a->http_listener != NULL) ps_net_listener_close(a->http_listener, NULL, NULL);
  a->grpc_listener = a->http_listener = NULL;
  if (a->targets != NULL) ps_targets_close(a->targets);
  if (a->http != NULL) ps_http_client_close(a->http);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void signal_cb(uv_signal_t *h, int signum) {
  shutdown_app(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int start(struct app *a) {
  int r = ps_http_client_new(&a->loop, &a->http);
  if (r == 0) r = ps_targets_new(&a->loop, &a->cfg, a->http, &a->targets);
  if (r == 0) r = ps_service_new(&a->loop, a->targets, &a->cfg, &a->service);
  if (r != 0) {
    ps_log(PS_LOG_ERROR, "cannot start", "error", uv_strerror(r), NULL);
    return r;
  }
  a->h2.loop = &a->loop;
  a->h2.dispatch = ps_service_dispatch;
  a->h2.dispatch_arg = a->service;
  a->h2.max_msg = a->cfg.grpc_max_msg;
  a->health.loop = &a->loop;
  a->health.ready = is_ready;
  a->health.ready_arg = a;
  /* Health first: a liveness probe may come before the gRPC port is bound, and /readyz then says 503. */
  r = ps_net_listen(&a->loop, a->cfg.http_listen, &ps_http_server_net_proto, &a->health, &a->http_listener);
  if (r != 0) {
    ps_log(PS_LOG_ERROR, "cannot listen for HTTP", "address", a->cfg.http_listen, "error", uv_strerror(r),
           NULL);
    return r;
  }
  r = ps_net_listen(&a->loop, a->cfg.grpc_listen, &ps_h2_net_proto, &a->h2, &a->grpc_listener);
  if (r != 0) {
    ps_log(PS_LOG_ERROR, "cannot listen for gRPC", "address", a->cfg.grpc_listen, "error", uv_strerror(r),
           NULL);
    return r;
  }
  a->grpc_ready = true;
  char gport[16], hport[16];
  snprintf(gport, sizeof gport, "%d", ps_net_listener_port(a->grpc_listener));
  snprintf(hport, sizeof hport, "%d", ps_net_listener_port(a->http_listener));
  ps_log(PS_LOG_INFO, "prescale started", "version", PS_VERSION, "grpc", a->cfg.grpc_listen, "grpc_port",
         gport, "http", a->cfg.http_listen, "http_port", hport, "prometheus", a->cfg.prometheus_url, NULL);
  return 0;
}

int main(int argc, char **argv) {
  /* Subcommands share the binary (and so the code paths) of the server. */
  if (argc > 1 && strcmp(argv[1], "backtest") == 0) return ps_backtest_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "probe") == 0) return ps_probe_main(argc - 1, argv + 1);
  static struct app a; /* zeroed; large (the registry of every component) */
  char err[512];
  ps_server_config_defaults(&a.cfg);
  int r = ps_server_config_parse(&a.cfg, argc, argv, stdout, err, sizeof err);
  if (r == 1 || r == 2) return 0; /* --help or --version, already printed */
  if (r != 0) {
    fprintf(stderr, "prescale: %s\n", err);
    fprintf(stderr, "Run 'prescale --help' for the flags.\n");
    return 2;
  }
  ps_log_setup(a.cfg.log_level, a.cfg.log_format, NULL);
  signal(SIGPIPE, SIG_IGN); /* a peer that vanished is an EPIPE from write, not a death */

  if (uv_loop_init(&a.loop) != 0) return 1;
  uv_signal_init(&a.loop, &a.sigterm);
  uv_signal_init(&a.loop, &a.sigint);
  a.sigterm.data = a.sigint.data = &a;
  uv_signal_start(&a.sigterm, signal_cb, SIGTERM);
  uv_signal_start(&a.sigint, signal_cb, SIGINT);

  int status = 0;
  if (start(&a) != 0) {
    status = 1;
    shutdown_app(&a, "start failed");
  }
  uv_run(&a.loop, UV_RUN_DEFAULT);
  if (a.service != NULL) ps_service_free(a.service);
  if (uv_loop_close(&a.loop) != 0) {
    ps_log(PS_LOG_ERROR, "handles left open at exit", NULL);
    status = 1;
  }
  ps_metrics_reset();
  if (status == 0) ps_log(PS_LOG_INFO, "stopped", NULL);
  return status;
}
