/* The gRPC server's metrics and the log line of each call, for h2_conn.c and h2_call.c: the series
 * updated on every call are resolved once and kept (metrics.h, struct ps_metric_ref), so that ending a
 * call formats, escapes and hashes no label. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "grpc.h"
#include "h2_conn.h"
#include "h2_conn_int.h"
#include "log.h"
#include "metrics.h"

/* ---- metrics and logs ----------------------------------------------------------------------- */

/* Defined below: the gauge series of the server, resolved once. */
static struct ps_metric_ref conns_ref, streams_ref, buffered_ref;

int ps_h2_metrics_declare(void) {
  /* Every accepted connection declares the families (they must exist after a registry reset): a gauge ref
   * still resolved means no reset since the last declaration, so the ten look-ups by name (~6,400
   * instructions per connection, callgrind at 1,000 x 4) are skipped. */
  if (ps_metrics_ref_resolved(&conns_ref)) return 0;
  int err = ps_metrics_declare("prescale_grpc_requests_total", PS_METRIC_COUNTER,
                               "gRPC calls ended, by method and status code.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_request_duration_seconds", PS_METRIC_HISTOGRAM,
                             "Time from request headers to the end of the call.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_connections", PS_METRIC_GAUGE, "Open gRPC connections.");
  if (err == 0) err = ps_metrics_declare("prescale_grpc_streams", PS_METRIC_GAUGE, "Open gRPC streams.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_buffered_bytes", PS_METRIC_GAUGE,
                             "Bytes of gRPC requests buffered until they are complete, on every connection.");
  if (err == 0)
    err = ps_metrics_declare("prescale_grpc_requests_refused_total", PS_METRIC_COUNTER,
                             "gRPC requests refused before dispatch: too_large (--grpc-max-msg), memory "
                             "(--grpc-max-buffered), request_timeout (--grpc-request-timeout).");
  /* Connection counters, from 0 so that rate() and the first event show. */
  static const struct {
    const char *name, *help;
  } counters[] = {
      {"prescale_grpc_connections_opened_total", "gRPC connections accepted."},
      {"prescale_grpc_connections_aged_total",
       "gRPC connections told to go away (GOAWAY) at --max-connection-age."},
      {"prescale_grpc_connections_age_cut_total",
       "Aged gRPC connections still open when --max-connection-age-grace ended, closed then."},
  };
  for (size_t i = 0; err == 0 && i < sizeof counters / sizeof counters[0]; i++) {
    err = ps_metrics_declare(counters[i].name, PS_METRIC_COUNTER, counters[i].help);
    if (err == 0) ps_metrics_add(counters[i].name, "", 0);
  }
  return err;
}

void ps_h2c_count_refused(const char *reason) {
  char labels[64];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  ps_metrics_add("prescale_grpc_requests_refused_total", labels, 1);
}

/* The gauges (conns_ref, streams_ref, buffered_ref above), resolved once (metrics.h: a ref re-resolves
 * after a reset). */
static void update_gauges(const struct ps_h2_server *srv) {
  ps_metrics_ref_set(&conns_ref, "prescale_grpc_connections", "", (double)srv->open_conns);
  ps_metrics_ref_set(&streams_ref, "prescale_grpc_streams", "", (double)srv->open_streams);
  ps_metrics_ref_set(&buffered_ref, "prescale_grpc_buffered_bytes", "", (double)srv->buffered.used);
}

static void collect_gauges(void *srv) { update_gauges(srv); }

/* Every stream's start and end changed a gauge, and setting all three then was ~340 instructions per call
 * (callgrind, docs/performance.md); a scrape every 15 s reads them instead. The hook is added with the
 * first connection and removed with the last, after the gauges were set one last time (0 connections, 0
 * streams), so it never outlives srv and an idle server's gauges stay true. */
void ps_h2c_gauges_hook(struct ps_h2_server *srv) {
  if (srv->gauges_collected) {
    if (srv->open_conns > 0) return;
    update_gauges(srv);
    ps_metrics_collector_remove(collect_gauges, srv);
    srv->gauges_collected = false;
    return;
  }
  if (srv->open_conns > 0 && ps_metrics_collector_add(collect_gauges, srv) == 0) {
    srv->gauges_collected = true;
    return;
  }
  update_gauges(srv); /* no hook: set now, as each change comes */
}

/* The (method, code) label pairs seen so far, each with its counter and histogram series, so that the
 * end of a call formats and escapes no label. The methods that reach a label are the dispatcher's
 * (a bounded set), yet the cache is bounded by itself: a pair that finds no room, or a method name
 * longer than the slot, takes the slow path (ps_metrics_add with formatted labels), counting the same. */
#define END_CACHE_SLOTS  32
#define END_CACHE_METHOD 32
static struct end_slot {
  char method[END_CACHE_METHOD]; /* "" for a free slot */
  int status;
  struct ps_metric_ref requests, duration;
} end_cache[END_CACHE_SLOTS];

static struct end_slot *end_slot(const char *method, int status) {
  size_t n = strlen(method);
  if (n == 0 || n >= END_CACHE_METHOD) return NULL;
  for (size_t i = 0; i < END_CACHE_SLOTS; i++) {
    struct end_slot *e = &end_cache[i];
    if (e->method[0] == '\0') {
      memcpy(e->method, method, n + 1);
      e->status = status;
      e->requests = e->duration = (struct ps_metric_ref){0};
      return e;
    }
    if (e->status == status && strcmp(e->method, method) == 0) return e;
  }
  return NULL;
}

/* Counts and logs the end of a call. The method label is the client's choice, so only a method the
 * dispatcher recognised (it answers UNIMPLEMENTED otherwise) becomes a label value. */
void ps_h2c_record_end(struct ps_call *call) {
  const char *code = ps_grpc_status_name(call->status);
  const char *method =
      call->dispatched && call->status != PS_GRPC_UNIMPLEMENTED && call->method ? call->method : "unknown";
  uint64_t ms = uv_now(call->conn->srv->loop) - call->start_ms;
  struct end_slot *e = end_slot(method, call->status);
  /* A ref of the slot resolves on its first use only: its labels are formatted then (or always, with no
   * slot), and never again for the pair. */
  bool fresh = e == NULL || !ps_metrics_ref_resolved(&e->requests) || !ps_metrics_ref_resolved(&e->duration);
  char esc[2 * PS_H2_MAX_PATH + 1];
  char labels[sizeof esc + 64], labels_m[sizeof esc + 64];
  if (fresh) {
    ps_metrics_escape_label(esc, sizeof esc, method);
    snprintf(labels, sizeof labels, "method=\"%s\",code=\"%s\"", esc, code);
    snprintf(labels_m, sizeof labels_m, "method=\"%s\"", esc);
  }
  if (e == NULL) {
    ps_metrics_add("prescale_grpc_requests_total", labels, 1);
    ps_metrics_observe("prescale_grpc_request_duration_seconds", labels_m, (double)ms / 1000.0);
  } else {
    ps_metrics_ref_add(&e->requests, "prescale_grpc_requests_total", labels, 1);
    ps_metrics_ref_observe(&e->duration, "prescale_grpc_request_duration_seconds", labels_m,
                           (double)ms / 1000.0);
  }
  if (ps_log_enabled(PS_LOG_DEBUG)) {
    char dur[32];
    snprintf(dur, sizeof dur, "%" PRIu64, ms);
    ps_log(PS_LOG_DEBUG, "grpc call", "method", call->path[0] ? call->path : "?", "code", code, "duration_ms",
           dur, "peer", ps_h2c_peer(call->conn), NULL);
  }
}
