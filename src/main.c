/* prescale: a predictive KEDA external scaler. Wiring, signals, the graceful shutdown and exit codes.
 *
 * Shutdown: the first SIGTERM/SIGINT starts a drain (README, "Shutdown"): the gRPC listener stops, streams
 * end with UNAVAILABLE, every HTTP/2 connection gets GOAWAY (h2_conn), and unary calls in flight may
 * finish until --shutdown-grace; then, or as soon as no gRPC connection is left, or on a second signal,
 * finish_shutdown ends the rest and closes every handle, and uv_run returns once they are closed.
 *
 * Other signals (README, "Signals"): SIGHUP asks for a reload (reload(), logged); SIGUSR1 logs a
 * one-line state summary; SIGUSR2 and SIGALRM are ignored, and so is SIGPIPE (a write to a vanished peer
 * is an EPIPE error, not a death). Their default action would end the process with no log line and no
 * drain.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or --help/--version; 1 when the server cannot
 * start (e.g. a port in use) or could not shut down cleanly; 2 for a bad flag or environment value, or a
 * --prometheus-config file that does not load, or a file named by --tls-cert, --tls-key or --tls-client-ca
 * that does not load. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backtest.h"
#include "config.h"
#include "filewatch.h"
#include "grpc.h"
#include "h2_conn.h"
#include "health_grpc.h"
#include "health_http.h"
#include "http_client.h"
#include "log.h"
#include "loop_lag.h"
#include "metrics.h"
#include "net.h"
#include "probe.h"
#include "prom_config.h"
#include "prom_servers.h"
#include "service.h"
#include "targets.h"
#include "tls_files.h"

struct app {
  uv_loop_t loop;
  struct ps_server_config cfg;
  /* --prometheus-config, loaded before the loop runs; cfg.prom_config points here when there is one. */
  struct ps_prom_config prom_config;
  /* Its servers' TLS contexts, credentials and headers (built before the loop runs, watched from start). */
  struct ps_prom_servers *prom_servers;
  struct ps_http_client *http;
  struct ps_targets *targets;
  struct ps_service *service;
  struct ps_health_grpc *health_grpc; /* grpc.health.v1.Health, in front of service on the gRPC port */
  /* The one watcher of the files reloaded while running (TLS, Prometheus credentials): each adds its group
   * at start; SIGHUP reads them all at once. Closed in finish_shutdown. */
  struct ps_filewatch *watch;
  struct ps_h2_server h2;
  struct ps_health_http health;
  struct ps_net_listener *grpc_listener;
  struct ps_net_listener *http_listener;
  struct ps_tls_files *tls; /* --tls-cert: the gRPC port's TLS, loaded before the loop runs; NULL: h2c */
  uv_signal_t sigterm, sigint, sighup, sigusr1;
  /* Writes the count of log lines suppressed by the rate limit (log.h) when no line of their kind
   * follows; unreferenced, so it never keeps the loop alive. Closed in finish_shutdown. */
  uv_timer_t log_timer;
  /* Bounds the drain to cfg.shutdown_grace_ms, or (restarted at 0) ends it early once every gRPC
   * connection is gone. Initialised with the signals, closed in finish_shutdown (never freed: it is part
   * of the static app). */
  uv_timer_t drain_timer;
  /* The busy time of each loop turn, for /metrics (loop_lag.h). Closed in finish_shutdown. */
  struct ps_loop_lag lag;
  bool grpc_ready;
  bool stopping; /* the first signal came: /readyz says 503, the drain runs */
  bool draining; /* listeners stopped, GOAWAYs sent, the drain timer running */
  bool finished; /* finish_shutdown ran: everything is closing and the loop ends when it has */
  size_t streams_ended;
  uint64_t drain_start_ms;
};

static bool is_ready(void *arg) {
  struct app *a = arg;
  return a->grpc_ready && !a->stopping;
}

/* The end of a shutdown, with or without a drain: what is still open ends with UNAVAILABLE, every gRPC
 * connection gets its final GOAWAY and closes once its queued bytes are written, and the loop empties
 * (the process exits) when every handle has closed. */
static void finish_shutdown(struct app *a, const char *why) {
  if (a->finished) return;
  a->finished = true;
  size_t cut = 0;
  if (a->service != NULL) cut += ps_service_close(a->service);
  if (a->health_grpc != NULL) cut += ps_health_grpc_close(a->health_grpc);
  cut += ps_h2_server_terminate(&a->h2); /* calls the service did not hold, e.g. still uploading */
  if (a->grpc_listener != NULL) ps_net_listener_close(a->grpc_listener, NULL, NULL);
  if (a->http_listener != NULL) ps_net_listener_close(a->http_listener, NULL, NULL);
  a->grpc_listener = a->http_listener = NULL;
  if (a->targets != NULL) ps_targets_close(a->targets);
  if (a->http != NULL) ps_http_client_close(a->http);
  ps_filewatch_close(a->watch);
  a->watch = NULL;
  ps_loop_lag_close(&a->lag, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sighup, NULL);
  uv_close((uv_handle_t *)&a->sigusr1, NULL);
  uv_close((uv_handle_t *)&a->drain_timer, NULL);
  uv_close((uv_handle_t *)&a->log_timer, NULL);
  ps_log_flush_suppressed(true);
  if (a->stopping) {
    char ms[24], ncut[24], nstreams[24];
    snprintf(ms, sizeof ms, "%" PRIu64, a->draining ? uv_now(&a->loop) - a->drain_start_ms : 0);
    snprintf(ncut, sizeof ncut, "%zu", cut);
    snprintf(nstreams, sizeof nstreams, "%zu", a->streams_ended);
    ps_log(cut > 0 ? PS_LOG_WARN : PS_LOG_INFO, "drained", "reason", why, "duration_ms", ms, "calls_cut",
           ncut, "streams_ended", nstreams, NULL);
  }
}

static void drain_timer_cb(uv_timer_t *t) {
  struct app *a = t->data;
  finish_shutdown(a, a->h2.open_conns == 0 ? "every call done" : "shutdown grace expired");
}

/* h2_conn's on_idle: the last gRPC connection closed during the drain. Runs from that connection's close
 * path, so it only reschedules the timer; finish_shutdown runs on the next loop turn. */
static void h2_idle_cb(void *arg) {
  struct app *a = arg;
  if (a->draining && !a->finished) uv_timer_start(&a->drain_timer, drain_timer_cb, 0, 0);
}

/* The first SIGTERM/SIGINT. Kubernetes sends SIGTERM and, at about the same time, removes the pod from
 * the Service's endpoints; KEDA (grpc-go) learns that this replica is going from the GOAWAY and opens
 * its next RPCs on the other replica, while the calls it has here finish within the grace. */
static void begin_shutdown(struct app *a, const char *why) {
  a->stopping = true; /* /readyz answers 503 from now on */
  char grace[32];
  ps_duration_format((int64_t)a->cfg.shutdown_grace_ms, grace, sizeof grace);
  ps_log(PS_LOG_INFO, "shutting down", "reason", why, "grace", grace, NULL);
  if (a->cfg.shutdown_grace_ms == 0 || a->service == NULL || a->grpc_listener == NULL) {
    finish_shutdown(a, a->cfg.shutdown_grace_ms == 0 ? "no shutdown grace" : why);
    return;
  }
  a->draining = true;
  a->drain_start_ms = uv_now(&a->loop);
  ps_net_listener_stop(a->grpc_listener);
  /* The health port keeps answering until the end (/readyz 503, /healthz 200): a refused probe would read
   * as a dead process, and the kubelet could restart it mid-drain. */
  /* Streams never end by themselves: end them now, so that KEDA reopens them elsewhere at once. */
  a->streams_ended = ps_service_drain(a->service);
  /* Health watches get NOT_SERVING, then end the same way. */
  a->streams_ended += ps_health_grpc_drain(a->health_grpc);
  ps_h2_server_drain(&a->h2);
  uv_timer_start(&a->drain_timer, drain_timer_cb, a->h2.open_conns == 0 ? 0 : a->cfg.shutdown_grace_ms, 0);
}

static void signal_cb(uv_signal_t *h, int signum) {
  struct app *a = h->data;
  const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
  if (!a->stopping) {
    begin_shutdown(a, name);
    return;
  }
  /* A second signal during the drain: the operator (or a Ctrl-C twice) wants out now. */
  ps_log(PS_LOG_INFO, "second signal during the drain; stopping now", "signal", name, NULL);
  finish_shutdown(a, "second signal");
}

/* SIGHUP: re-read now every file the watcher has (they are also polled every PS_FILEWATCH_INTERVAL_MS);
 * each group whose content changed is reloaded by its owner, which keeps what it has when the new version
 * does not load. Flags and the environment are read once: a change of them needs a restart. */
static void reload(struct app *a) {
  ps_log(PS_LOG_INFO, "reload requested", "signal", "SIGHUP", "reloaded",
         "every watched file is read now; a changed one is reloaded", NULL);
  ps_filewatch_check_now(a->watch);
}

/* SIGUSR1: one line of state, to look at a running server without /metrics. */
static void log_state(struct app *a) {
  char targets[24], conns[24], suppressed[24];
  snprintf(targets, sizeof targets, "%zu", a->targets != NULL ? ps_targets_count(a->targets) : 0);
  snprintf(conns, sizeof conns, "%zu", (size_t)a->h2.open_conns);
  snprintf(suppressed, sizeof suppressed, "%" PRIu64, ps_log_suppressed_total());
  ps_log(PS_LOG_INFO, "state", "signal", "SIGUSR1", "targets", targets, "grpc_connections", conns, "ready",
         is_ready(a) ? "true" : "false", "draining", a->stopping ? "true" : "false", "log_suppressed",
         suppressed, NULL);
}

static void other_signal_cb(uv_signal_t *h, int signum) {
  struct app *a = h->data;
  if (signum == SIGHUP)
    reload(a);
  else
    log_state(a);
}

static void log_timer_cb(uv_timer_t *t) {
  (void)t;
  ps_log_flush_suppressed(false);
}

/* Binds one listener with its share of the descriptors (max_conns) and its name in the slot metrics, or
 * logs `what` and returns the error. */
static int listen_on(struct app *a, const char *addr, const struct ps_net_proto *proto, void *arg,
                     size_t max_conns, const char *name, const char *what, struct ps_net_listener **out) {
  int r = ps_net_listen(&a->loop, addr, proto, arg, out);
  if (r != 0) {
    ps_log(PS_LOG_ERROR, what, "address", addr, "error", uv_strerror(r), NULL);
    return r;
  }
  r = ps_net_listener_set_slots(*out, max_conns, name);
  if (r != 0) /* the listener works, with the default backlog */
    ps_log(PS_LOG_WARN, "listen backlog not raised to the connection slots", "address", addr, "error",
           uv_strerror(r), NULL);
  return 0;
}

/* The Prometheus side's TLS and credentials: the HTTP client's default context (the system CAs, read now
 * rather than on the loop at the first https:// request) and the --prometheus-config servers, whose files
 * are watched from now on. */
static int start_prometheus_tls(struct app *a) {
  char err[1024];
  if (ps_http_client_tls_init(a->http, err, sizeof err) != 0)
    ps_log(PS_LOG_WARN, "the system CAs did not load: https:// to a server without tls_config.ca_file fails",
           "error", err, NULL);
  ps_targets_set_prom_servers(a->targets, a->prom_servers);
  int r = ps_prom_servers_watch(a->prom_servers, a->watch, err, sizeof err);
  if (r != 0) ps_log(PS_LOG_ERROR, "cannot start", "error", err, NULL);
  return r;
}

static int start(struct app *a) {
  int r = ps_filewatch_new(&a->loop, PS_FILEWATCH_INTERVAL_MS, &a->watch);
  if (r == 0) r = ps_http_client_new(&a->loop, &a->http);
  if (r == 0) r = ps_targets_new(&a->loop, &a->cfg, a->http, &a->targets);
  if (r == 0) r = ps_service_new(&a->loop, a->targets, &a->cfg, &a->service);
  /* grpc.health.v1.Health answers what /readyz answers; every other call goes on to the ExternalScaler. */
  struct ps_health_grpc_config hcfg = {
      .ready = is_ready, .ready_arg = a, .next = ps_service_dispatch, .next_arg = a->service};
  if (r == 0) r = ps_health_grpc_new(&hcfg, &a->health_grpc);
  if (r != 0) {
    ps_log(PS_LOG_ERROR, "cannot start", "error", uv_strerror(r), NULL);
    return r;
  }
  r = start_prometheus_tls(a);
  if (r != 0) return r;
  a->h2.loop = &a->loop;
  a->h2.dispatch = ps_health_grpc_dispatch;
  a->h2.dispatch_arg = a->health_grpc;
  a->h2.max_msg = a->cfg.grpc_max_msg;
  a->h2.max_buffered = a->cfg.grpc_max_buffered;
  a->h2.request_timeout_ms = a->cfg.grpc_request_timeout_ms;
  a->h2.max_streams = a->cfg.grpc_max_streams;
  a->h2.on_idle = h2_idle_cb;
  a->h2.idle_arg = a;
  a->h2.idle_timeout_ms = a->cfg.grpc_idle_ms;
  a->h2.max_age_ms = a->cfg.max_conn_age_ms;
  a->h2.max_age_grace_ms = a->cfg.max_conn_age_grace_ms;
  /* Descriptors are shared out so that accept() never meets EMFILE: each listener holds at most
   * budget.listener_conns connections (evicting idle ones beyond), Prometheus connections at most
   * budget.outgoing_conns, and PS_NET_FD_RESERVE stays for the rest. */
  uint64_t nofile = ps_net_nofile();
  struct ps_net_fd_budget budget;
  ps_net_fd_budget(nofile, 2, a->cfg.max_conns, &budget);
  ps_http_client_set_limits(a->http, a->cfg.prometheus_max_inflight, budget.outgoing_conns);
  if (budget.outgoing_conns > PS_HTTP_MAX_CONNS) budget.outgoing_conns = PS_HTTP_MAX_CONNS; /* as applied */
  char nofile_s[24], conns_s[24], out_s[24];
  snprintf(nofile_s, sizeof nofile_s, "%" PRIu64, nofile);
  snprintf(conns_s, sizeof conns_s, "%zu", budget.listener_conns);
  snprintf(out_s, sizeof out_s, "%zu", budget.outgoing_conns);
  ps_log(budget.listener_conns < a->cfg.max_conns ? PS_LOG_WARN : PS_LOG_DEBUG,
         budget.listener_conns < a->cfg.max_conns
             ? "the descriptor limit lowers --max-conns; raise ulimit -n to allow more connections"
             : "descriptor budget",
         "nofile", nofile_s, "max_conns", conns_s, "outgoing_conns", out_s, NULL);
  a->health.loop = &a->loop;
  a->health.ready = is_ready;
  a->health.ready_arg = a;
  /* Health first: a liveness probe may come before the gRPC port is bound, and /readyz then says 503. */
  r = listen_on(a, a->cfg.http_listen, &ps_health_http_net_proto, &a->health, budget.listener_conns, "http",
                "cannot listen for HTTP", &a->http_listener);
  if (r != 0) return r;
  r = listen_on(a, a->cfg.grpc_listen, &ps_h2_net_proto, &a->h2, budget.listener_conns, "grpc",
                "cannot listen for gRPC", &a->grpc_listener);
  if (r != 0) return r;
  if (a->tls != NULL) {
    /* Only the gRPC port: the health port stays plain HTTP for the kubelet and for Prometheus. */
    ps_net_listener_set_tls(a->grpc_listener, ps_tls_files_ctx(a->tls), PS_TLS_HANDSHAKE_TIMEOUT_MS);
    r = ps_tls_files_watch(a->tls, a->watch, NULL);
    if (r != 0) {
      ps_log(PS_LOG_ERROR, "cannot watch the TLS files", "error", uv_strerror(r), NULL);
      return r;
    }
  }
  a->grpc_ready = true;
  ps_health_grpc_notify(a->health_grpc); /* readiness changed (no Watch can be open yet, but say so) */
  char gport[16], hport[16];
  snprintf(gport, sizeof gport, "%d", ps_net_listener_port(a->grpc_listener));
  snprintf(hport, sizeof hport, "%d", ps_net_listener_port(a->http_listener));
  ps_log(PS_LOG_INFO, "prescale started", "version", PS_VERSION, "grpc", a->cfg.grpc_listen, "grpc_port",
         gport, "grpc_tls",
         a->tls == NULL                 ? "off"
         : a->cfg.tls_client_ca != NULL ? "mtls"
                                        : "on",
         "http", a->cfg.http_listen, "http_port", hport, "prometheus", a->cfg.prometheus_url, NULL);
  return 0;
}

/* What --prometheus-config holds, without a secret: the file, how many servers, and each server that has
 * certificate verification off (its url never holds credentials: prom_config.c refuses user:password@). */
static void log_prom_config(const struct app *a) {
  if (a->cfg.prom_config == NULL) return;
  char n[24];
  snprintf(n, sizeof n, "%zu", a->prom_config.nservers);
  ps_log(PS_LOG_INFO, "prometheus config loaded", "file", a->cfg.prometheus_config, "servers", n, NULL);
  for (size_t i = 0; i < a->prom_config.nservers; i++)
    if (a->prom_config.servers[i].insecure_skip_verify)
      ps_log(PS_LOG_WARN, "TLS certificate verification is off (insecure_skip_verify)", "url",
             a->prom_config.servers[i].url, NULL);
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
  /* Read now, before the loop runs (blocking reads are fine here): a file that does not load stops the
   * start with the file, the line and the key, before anything listens. */
  if (a.cfg.prometheus_config != NULL) {
    if (ps_prom_config_load(a.cfg.prometheus_config, &a.prom_config, err, sizeof err) != 0) {
      fprintf(stderr, "prescale: %s\n", err);
      fprintf(stderr, "See docs/prometheus-config.md for the file's format.\n");
      return 2;
    }
    a.cfg.prom_config = &a.prom_config;
  }
  /* Its files (TLS, credentials) too: a bad PEM or an unreadable token stops the start, naming the key. */
  if (ps_prom_servers_new(a.cfg.prom_config, &a.prom_servers, err, sizeof err) != 0) {
    fprintf(stderr, "prescale: %s\n", err);
    return 2;
  }
  ps_log_setup(a.cfg.log_level, a.cfg.log_format, NULL);
  log_prom_config(&a);
  signal(SIGPIPE, SIG_IGN); /* a peer that vanished is an EPIPE from write, not a death */
  /* Their default action ends the process, without a log line or a drain; nothing here uses them. */
  signal(SIGUSR2, SIG_IGN);
  signal(SIGALRM, SIG_IGN);
  /* The files of the flags are read now, before the loop runs: one that is missing or does not load is a
   * startup error naming the flag and the file, like a bad flag. */
  if (a.cfg.tls_cert != NULL &&
      ps_tls_files_load(a.cfg.tls_cert, a.cfg.tls_key, a.cfg.tls_client_ca, &a.tls, err, sizeof err) != 0) {
    ps_log(PS_LOG_ERROR, "cannot load the TLS files", "error", err, NULL);
    return 2;
  }

  if (uv_loop_init(&a.loop) != 0) return 1;
  uv_signal_init(&a.loop, &a.sigterm);
  uv_signal_init(&a.loop, &a.sigint);
  uv_signal_init(&a.loop, &a.sighup);
  uv_signal_init(&a.loop, &a.sigusr1);
  uv_timer_init(&a.loop, &a.drain_timer);
  uv_timer_init(&a.loop, &a.log_timer);
  a.sigterm.data = a.sigint.data = a.sighup.data = a.sigusr1.data = a.drain_timer.data = &a;
  uv_signal_start(&a.sigterm, signal_cb, SIGTERM);
  uv_signal_start(&a.sigint, signal_cb, SIGINT);
  uv_signal_start(&a.sighup, other_signal_cb, SIGHUP);
  uv_signal_start(&a.sigusr1, other_signal_cb, SIGUSR1);
  uv_timer_start(&a.log_timer, log_timer_cb, PS_LOG_RATE_WINDOW_MS, PS_LOG_RATE_WINDOW_MS);
  uv_unref((uv_handle_t *)&a.log_timer);
  if (ps_loop_lag_start(&a.loop, &a.lag) != 0) ps_log(PS_LOG_WARN, "loop turns are not measured", NULL);

  int status = 0;
  if (start(&a) != 0) {
    status = 1;
    finish_shutdown(&a, "start failed");
  }
  uv_run(&a.loop, UV_RUN_DEFAULT);
  if (a.service != NULL) ps_service_free(a.service);
  if (a.health_grpc != NULL) ps_health_grpc_free(a.health_grpc);
  ps_tls_files_free(a.tls); /* the listener and every connection are closed: nothing refers to it */
  if (uv_loop_close(&a.loop) != 0) {
    ps_log(PS_LOG_ERROR, "handles left open at exit", NULL);
    status = 1;
  }
  ps_metrics_reset();
  ps_prom_servers_free(a.prom_servers); /* after the loop: the watcher and the connections are gone */
  ps_prom_config_free(&a.prom_config);
  if (status == 0) ps_log(PS_LOG_INFO, "stopped", NULL);
  return status;
}
