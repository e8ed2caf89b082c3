/* service.c through its seam: the call API (h2_conn.h) is implemented here by a recorder, so every RPC's
 * messages and final status are checked exactly, with real targets and a real Prometheus behind them.
 * (h2_conn.o is not linked into this binary: these definitions take its place.) */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "externalscaler.pb-c.h"
#include "grpc.h"
#include "http_client.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "prom_fixture.h"
#include "service.h"
#include "targets.h"
#include "targets_fixture.h"

/* ---- the recording call ----------------------------------------------------------------------- */

#define MAX_MSGS 8
struct ps_call {
  char path[128];
  int status; /* -1 while open */
  char message[512];
  uint8_t msgs[MAX_MSGS][256];
  size_t lens[MAX_MSGS];
  int n_msgs;
  ps_call_cancel_cb cancel;
  void *cancel_arg;
};

int ps_call_send(struct ps_call *c, const uint8_t *msg, size_t len) {
  cr_assert_eq(c->status, -1, "send after finish");
  cr_assert_lt(c->n_msgs, MAX_MSGS);
  cr_assert_leq(len, sizeof c->msgs[0]);
  memcpy(c->msgs[c->n_msgs], msg, len);
  c->lens[c->n_msgs++] = len;
  return 0;
}

void ps_call_finish(struct ps_call *c, int status, const char *message) {
  cr_assert_eq(c->status, -1, "finished twice");
  c->status = status;
  snprintf(c->message, sizeof c->message, "%s", message ? message : "");
}

void ps_call_on_cancel(struct ps_call *c, ps_call_cancel_cb cb, void *arg) {
  c->cancel = cb;
  c->cancel_arg = arg;
}

uint64_t ps_call_deadline(const struct ps_call *c) { return 0; }

const char *ps_call_method(const struct ps_call *c) {
  const char *s = strrchr(c->path, '/');
  return s ? s + 1 : c->path;
}

/* ---- fixture ---------------------------------------------------------------------------------- */

static struct ps_service *svc;

static void setup(void) {
  targets_fixture_setup();
  cr_assert_eq(ps_service_new(&loop, targets, &cfg, &svc), 0);
}

/* Closes the service, the registry and the client; their memory goes in close callbacks. Every test ends
 * with this, then PS_LOOP_END, which runs those callbacks and fails the test on anything left open. */
static void stop_service(void) {
  ps_service_close(svc);
  stop_targets();
}

/* The service's own memory (no handle of its own), Prometheus and the metrics, even after a failed test. */
static void teardown(void) {
  if (svc != NULL) ps_service_free(svc);
  svc = NULL;
  targets_fixture_teardown();
}

TestSuite(service, .init = setup, .fini = teardown, .timeout = 60);

static bool run_until(bool (*cond)(void *), struct ps_call *c, uint64_t ms) {
  return ps_test_run_until(&loop, cond, c, ms);
}
static bool finished(void *c) { return ((struct ps_call *)c)->status != -1; }
static bool three_msgs(void *c) { return ((struct ps_call *)c)->n_msgs >= 3; }

/* ---- requests --------------------------------------------------------------------------------- */

struct md {
  const char *k, *v;
};

static size_t pack_ref(uint8_t *out, size_t cap, const struct md *md, size_t n, const char *metric_name) {
  Externalscaler__ScaledObjectRef ref = EXTERNALSCALER__SCALED_OBJECT_REF__INIT;
  Externalscaler__ScaledObjectRef__ScalerMetadataEntry e[PS_SERVICE_MAX_METADATA + 1],
      *ep[PS_SERVICE_MAX_METADATA + 1];
  cr_assert_leq(n, PS_SERVICE_MAX_METADATA + 1);
  for (size_t i = 0; i < n; i++) {
    externalscaler__scaled_object_ref__scaler_metadata_entry__init(&e[i]);
    e[i].key = (char *)md[i].k;
    e[i].value = (char *)md[i].v;
    ep[i] = &e[i];
  }
  ref.name = "web";
  ref.namespace_ = "shop";
  ref.n_scalermetadata = n;
  ref.scalermetadata = ep;
  if (metric_name == NULL) {
    cr_assert_leq(externalscaler__scaled_object_ref__get_packed_size(&ref), cap);
    return externalscaler__scaled_object_ref__pack(&ref, out);
  }
  Externalscaler__GetMetricsRequest gm = EXTERNALSCALER__GET_METRICS_REQUEST__INIT;
  gm.scaledobjectref = &ref;
  gm.metricname = (char *)metric_name;
  cr_assert_leq(externalscaler__get_metrics_request__get_packed_size(&gm), cap);
  return externalscaler__get_metrics_request__pack(&gm, out);
}

/* Starts an RPC on `path` with `len` bytes as its request message. */
static void dispatch(struct ps_call *c, const char *path, const uint8_t *msg, size_t len) {
  memset(c, 0, sizeof *c);
  c->status = -1;
  snprintf(c->path, sizeof c->path, "%s", path);
  ps_service_dispatch(c, c->path, msg, len, svc);
}

/* Starts an RPC of the ExternalScaler service; metric_name non-NULL makes it a GetMetricsRequest. */
static void call(struct ps_call *c, const char *method, const struct md *md, size_t n,
                 const char *metric_name) {
  char path[128];
  snprintf(path, sizeof path, "/externalscaler.ExternalScaler/%s", method);
  uint8_t buf[4096];
  size_t len = pack_ref(buf, sizeof buf, md, n, metric_name);
  dispatch(c, path, buf, len);
}

static const struct md seven[] = {
    {"query", "vector(7.5)"}, {"threshold", "2.5"}, {"model", "last"}, {"activationThreshold", "7"}};

Test(service, get_metric_spec_answers_at_once_with_both_fields) {
  struct ps_call c;
  call(&c, "GetMetricSpec", seven, 4, NULL);
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  cr_assert_eq(c.n_msgs, 1);
  Externalscaler__GetMetricSpecResponse *r =
      externalscaler__get_metric_spec_response__unpack(NULL, c.lens[0], c.msgs[0]);
  cr_assert_not_null(r);
  cr_assert_eq(r->n_metricspecs, 1);
  cr_assert_str_eq(r->metricspecs[0]->metricname, "prescale");
  cr_assert_eq(r->metricspecs[0]->targetsize, 3, "the integer is the ceiling of the float");
  cr_assert_float_eq(r->metricspecs[0]->targetsizefloat, 2.5, 1e-12);
  externalscaler__get_metric_spec_response__free_unpacked(r, NULL);
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, get_metrics_waits_for_first_load_then_answers) {
  struct ps_call c;
  call(&c, "GetMetrics", seven, 4, "prescale");
  cr_assert_eq(c.status, -1, "the first call waits for the history");
  cr_assert(run_until(finished, &c, 15000));
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  Externalscaler__GetMetricsResponse *r =
      externalscaler__get_metrics_response__unpack(NULL, c.lens[0], c.msgs[0]);
  cr_assert_not_null(r);
  cr_assert_eq(r->n_metricvalues, 1);
  cr_assert_str_eq(r->metricvalues[0]->metricname, "prescale");
  cr_assert_float_eq(r->metricvalues[0]->metricvaluefloat, 7.5, 1e-12);
  cr_assert_eq(r->metricvalues[0]->metricvalue, 8);
  externalscaler__get_metrics_response__free_unpacked(r, NULL);
  /* The second call is answered from the cache, within the dispatch. */
  call(&c, "GetMetrics", seven, 4, "s0-prescale");
  cr_assert_eq(c.status, PS_GRPC_OK, "KEDA's index prefix is accepted: %s", c.message);
  call(&c, "IsActive", seven, 4, NULL);
  cr_assert_eq(c.status, PS_GRPC_OK);
  Externalscaler__IsActiveResponse *a =
      externalscaler__is_active_response__unpack(NULL, c.lens[0], c.msgs[0]);
  cr_assert(a->result, "7.5 > activationThreshold 7");
  externalscaler__is_active_response__free_unpacked(a, NULL);
  stop_service();
  PS_LOOP_END(&loop);
}

static const char *answered_name(const struct ps_call *c) {
  static char name[64];
  Externalscaler__GetMetricsResponse *r =
      externalscaler__get_metrics_response__unpack(NULL, c->lens[0], c->msgs[0]);
  cr_assert_not_null(r);
  snprintf(name, sizeof name, "%s", r->metricvalues[0]->metricname);
  externalscaler__get_metrics_response__free_unpacked(r, NULL);
  return name;
}

/* A request repeated byte for byte is answered from the request cache: the same answer, the name asked
 * for; a request that differs takes the full path (NOT_FOUND for another metric); and once the target was
 * dropped, the same bytes find a new target (it waits for its own first load) rather than the old one. */
Test(service, a_repeated_request_answers_as_the_first_and_follows_a_dropped_target) {
  struct ps_call c;
  call(&c, "GetMetrics", seven, 4, "s0-prescale");
  cr_assert(run_until(finished, &c, 15000));
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  for (int i = 0; i < 3; i++) {
    call(&c, "GetMetrics", seven, 4, "s0-prescale");
    cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
    cr_assert_str_eq(answered_name(&c), "s0-prescale");
  }
  call(&c, "GetMetrics", seven, 4, "");
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  cr_assert_str_eq(answered_name(&c), "prescale");
  call(&c, "GetMetrics", seven, 4, "other");
  cr_assert_eq(c.status, PS_GRPC_NOT_FOUND);
  cfg.target_idle_ms = 0; /* every target is idle now */
  ps_targets_sweep(targets);
  call(&c, "GetMetrics", seven, 4, "s0-prescale");
  cr_assert_eq(c.status, -1, "a new target: it waits for its first load");
  cr_assert(run_until(finished, &c, 15000));
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  cr_assert_str_eq(answered_name(&c), "s0-prescale");
  stop_service();
  PS_LOOP_END(&loop);
}

static double answered_value(const struct ps_call *c) {
  Externalscaler__GetMetricsResponse *r =
      externalscaler__get_metrics_response__unpack(NULL, c->lens[0], c->msgs[0]);
  cr_assert_not_null(r);
  double v = r->metricvalues[0]->metricvaluefloat;
  cr_assert_eq(r->metricvalues[0]->metricvalue, ps_service_ceil_i64(v));
  externalscaler__get_metrics_response__free_unpacked(r, NULL);
  return v;
}

static bool answered_active(const struct ps_call *c) {
  Externalscaler__IsActiveResponse *a =
      externalscaler__is_active_response__unpack(NULL, c->lens[0], c->msgs[0]);
  cr_assert_not_null(a);
  bool active = a->result;
  externalscaler__is_active_response__free_unpacked(a, NULL);
  return active;
}

/* Repeated requests are answered with the bytes kept for them (request cache), never stale: at every loop
 * turn, while the target's reading changes under them, GetMetrics and IsActive answer the reading the
 * target holds at that moment, and an answer is packed again exactly when the target's generation moved
 * since that request's last answer; GetMetricSpec, whose answer does not depend on the reading, too. */
Test(service, kept_answers_follow_every_change_of_the_reading) {
  const struct md md[] = {
      {"query", "vector(time() % 4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"},
      {"activationThreshold", "1.5"},  {"quantile", "0"}};
  const struct ps_kv kv[] = {
      {"query", "vector(time() % 4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"},
      {"activationThreshold", "1.5"},  {"quantile", "0"}};
  cfg.stale_after_ms = 60000; /* a refresh late on a busy machine must not make the reading stale */
  struct ps_call c;
  call(&c, "GetMetrics", md, 6, "prescale");
  cr_assert(run_until(finished, &c, 15000));
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  struct ps_target *t;
  char text[512];
  cr_assert_eq(ps_targets_get_or_create(targets, "shop", "web", kv, 6, &t, text, sizeof text), 0);
  static const char *const methods[] = {"GetMetrics", "IsActive", "GetMetricSpec"};
  for (int m = 1; m < 3; m++) { /* first seen: the full path, which remembers the request */
    call(&c, methods[m], md, 6, NULL);
    cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  }
  uint64_t last_gen[3] = {0, 0, 0}; /* the generation at each method's last kept answer; 0: none yet */
  double values[8];
  int nvalues = 0, reused = 0;
  uint64_t deadline = uv_now(&loop) + 20000;
  while (nvalues < 3 && uv_now(&loop) < deadline) {
    for (int m = 0; m < 3; m++) {
      struct ps_target_reading rd;
      cr_assert_eq(ps_target_read(t, &rd, text, sizeof text), 0, "%s", text);
      uint64_t gen = ps_target_generation(t);
      size_t packed = ps_service_answers_packed(svc);
      call(&c, methods[m], md, 6, m == 0 ? "prescale" : NULL);
      cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
      cr_assert_eq(c.n_msgs, 1);
      size_t more = ps_service_answers_packed(svc) - packed;
      cr_assert_eq(more, gen != last_gen[m] ? 1 : 0, "%s at generation %llu (last %llu): packed %zu",
                   methods[m], (unsigned long long)gen, (unsigned long long)last_gen[m], more);
      if (more == 0) reused++;
      last_gen[m] = gen;
      if (m == 0) {
        double v = answered_value(&c);
        cr_assert_eq(memcmp(&v, &rd.value, sizeof v), 0, "answered %g, the reading is %g", v, rd.value);
        if (nvalues == 0 || v != values[nvalues - 1]) values[nvalues++] = v;
      } else if (m == 1) {
        cr_assert_eq(answered_active(&c), rd.active, "IsActive is the reading's");
      }
    }
    uv_run(&loop, UV_RUN_ONCE);
  }
  cr_assert_geq(nvalues, 3, "the reading changed %d times", nvalues - 1);
  cr_assert_gt(reused, 0, "some calls were answered with the kept bytes");
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, get_metrics_for_another_metric_is_not_found) {
  struct ps_call c;
  call(&c, "GetMetrics", seven, 4, "other");
  cr_assert_eq(c.status, PS_GRPC_NOT_FOUND);
  cr_assert(strstr(c.message, "other") && strstr(c.message, "prescale"), "%s", c.message);
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, unknown_methods_and_services_are_unimplemented) {
  struct ps_call c;
  call(&c, "Nope", seven, 4, NULL);
  cr_assert_eq(c.status, PS_GRPC_UNIMPLEMENTED);
  cr_assert(strstr(c.message, "Nope"), "%s", c.message);
  dispatch(&c, "/other.Service/IsActive", (const uint8_t *)"", 0);
  cr_assert_eq(c.status, PS_GRPC_UNIMPLEMENTED);
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, undecodable_and_invalid_requests_are_invalid_argument) {
  struct ps_call c;
  const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0x0f}; /* a length that runs past the end */
  dispatch(&c, "/externalscaler.ExternalScaler/IsActive", junk, sizeof junk);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT);
  const struct md bad[] = {{"query", "vector(1)"}, {"threshold", "-3"}};
  call(&c, "GetMetrics", bad, 2, "prescale");
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert(strstr(c.message, "threshold") && strstr(c.message, "-3"), "%s", c.message);
  const struct md nothing[] = {{"threshold", "3"}};
  call(&c, "IsActive", nothing, 1, NULL);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert(strstr(c.message, "query"), "%s", c.message);
  /* One entry more than PS_SERVICE_MAX_METADATA. */
  struct md many[PS_SERVICE_MAX_METADATA + 1];
  for (int i = 0; i <= PS_SERVICE_MAX_METADATA; i++) many[i] = (struct md){"k", "v"};
  call(&c, "IsActive", many, PS_SERVICE_MAX_METADATA + 1, NULL);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert(strstr(c.message, "at most"), "%s", c.message);
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, bad_promql_reaches_the_client_with_prometheus_text) {
  const struct md md[] = {{"query", "rate(x[5m]"}, {"threshold", "1"}, {"model", "last"}};
  struct ps_call c;
  call(&c, "GetMetrics", md, 3, "prescale");
  cr_assert(run_until(finished, &c, 15000));
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT);
  cr_assert(strstr(c.message, "parse error"), "%s", c.message);
  stop_service();
  PS_LOOP_END(&loop);
}

/* A Prometheus that accepts and never answers: the first RPC gives up after --first-load-timeout. Its
 * handles are static because they must outlive their close, which completes in PS_LOOP_END's loop run. */
static uv_tcp_t silent, silent_conns[4];
static int n_silent_conns;
static void silent_conn_cb(uv_stream_t *server, int status) {
  cr_assert_lt(n_silent_conns, 4);
  uv_tcp_t *c = &silent_conns[n_silent_conns++];
  uv_tcp_init(server->loop, c);
  cr_assert_eq(uv_accept(server, (uv_stream_t *)c), 0); /* kept open, never read */
}

Test(service, first_load_timeout_is_unavailable) {
  cfg.first_load_timeout_ms = 300;
  uv_tcp_init(&loop, &silent);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  cr_assert_eq(uv_tcp_bind(&silent, (struct sockaddr *)&a, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&silent, 8, silent_conn_cb), 0);
  int len = sizeof a;
  uv_tcp_getsockname(&silent, (struct sockaddr *)&a, &len);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
  /* The Prometheus timeout is far from the first-load timeout, so that a busy machine cannot blur them. */
  const struct md md[] = {{"query", "vector(1)"},
                          {"threshold", "1"},
                          {"model", "last"},
                          {"serverAddress", url},
                          {"timeout", "60s"}};
  struct ps_call c;
  call(&c, "IsActive", md, 5, NULL);
  uint64_t t0 = uv_now(&loop);
  cr_assert(run_until(finished, &c, 30000));
  cr_assert_eq(c.status, PS_GRPC_UNAVAILABLE);
  cr_assert(strstr(c.message, "first-load-timeout"), "%s", c.message);
  cr_assert_lt(uv_now(&loop) - t0, 30000, "the 60 s Prometheus timeout must not be what ended it");
  for (int i = 0; i < n_silent_conns; i++) uv_close((uv_handle_t *)&silent_conns[i], NULL);
  uv_close((uv_handle_t *)&silent, NULL);
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, stream_is_active_sends_at_once_then_each_change) {
  /* quantile 0: without a margin the value follows the sawtooth across 1.5 */
  const struct md md[] = {
      {"query", "vector(time() % 4)"}, {"threshold", "1"}, {"model", "last"}, {"step", "1s"},
      {"activationThreshold", "1.5"},  {"quantile", "0"}};
  struct ps_call c;
  call(&c, "StreamIsActive", md, 6, NULL);
  cr_assert(run_until(three_msgs, &c, 15000), "got %d messages", c.n_msgs);
  cr_assert_eq(c.status, -1, "the stream stays open");
  Externalscaler__IsActiveResponse *a =
      externalscaler__is_active_response__unpack(NULL, c.lens[0], c.msgs[0]);
  Externalscaler__IsActiveResponse *b =
      externalscaler__is_active_response__unpack(NULL, c.lens[1], c.msgs[1]);
  cr_assert_neq(a->result, b->result, "the second message is a change");
  /* The changes (true and false) go out as bytes packed once (service.c): protobuf-c's, byte for byte. */
  for (int i = 1; i < 3; i++) {
    Externalscaler__IsActiveResponse m = EXTERNALSCALER__IS_ACTIVE_RESPONSE__INIT;
    m.result = i == 1 ? b->result : a->result;
    uint8_t want[8];
    size_t n = externalscaler__is_active_response__pack(&m, want);
    cr_assert(c.lens[i] == n && memcmp(c.msgs[i], want, n) == 0, "change %d: %zu bytes, want %zu", i,
              c.lens[i], n);
  }
  externalscaler__is_active_response__free_unpacked(a, NULL);
  externalscaler__is_active_response__free_unpacked(b, NULL);
  /* The client goes away: the cancel callback drops the watcher; no further send reaches the call. */
  cr_assert_not_null(c.cancel);
  c.cancel(&c, c.cancel_arg);
  c.status = PS_GRPC_CANCELLED;
  uv_run(&loop, UV_RUN_NOWAIT);
  stop_service();
  PS_LOOP_END(&loop);
}

Test(service, stream_metric_spec_stays_open_until_shutdown) {
  struct ps_call c;
  call(&c, "StreamMetricSpec", seven, 4, NULL);
  cr_assert_eq(c.n_msgs, 1);
  cr_assert_eq(c.status, -1);
  ps_service_close(svc);
  cr_assert_eq(c.status, PS_GRPC_UNAVAILABLE);
  cr_assert(strstr(c.message, "shutting down"), "%s", c.message);
  struct ps_call d;
  call(&d, "GetMetricSpec", seven, 4, NULL);
  cr_assert_eq(d.status, PS_GRPC_UNAVAILABLE, "new calls after close are refused");
  stop_service();
  PS_LOOP_END(&loop);
}

/* ---- the answer at the extremes --------------------------------------------------------------- */

Test(service, the_integer_field_saturates_without_undefined_behaviour) {
  cr_assert_eq(ps_service_ceil_i64(NAN), 0);
  cr_assert_eq(ps_service_ceil_i64(-1), 0);
  cr_assert_eq(ps_service_ceil_i64(-INFINITY), 0);
  cr_assert_eq(ps_service_ceil_i64(0), 0);
  cr_assert_eq(ps_service_ceil_i64(0.5), 1);
  cr_assert_eq(ps_service_ceil_i64(9.2e18), INT64_C(9200000000000000000));
  cr_assert_eq(ps_service_ceil_i64(nextafter(0x1p63, 0)), INT64_C(9223372036854774784));
  cr_assert_eq(ps_service_ceil_i64(0x1p63), INT64_MAX);
  cr_assert_eq(ps_service_ceil_i64(1.797e308), INT64_MAX);
  cr_assert_eq(ps_service_ceil_i64(PS_TARGET_VALUE_MAX), INT64_MAX);
  cr_assert_eq(ps_service_ceil_i64(INFINITY), INT64_MAX);
  stop_service();
  PS_LOOP_END(&loop);
}

/* +Inf from Prometheus (1/0) is the highest load there is: both fields saturate and the target is
 * active, so that the HPA goes to its maximum (it answered 0 and inactive: scale to the minimum). */
Test(service, an_infinite_load_saturates_both_fields_and_is_active) {
  const struct md inf[] = {{"query", "vector(1) / 0"}, {"threshold", "2"}, {"model", "last"}};
  struct ps_call c;
  call(&c, "GetMetrics", inf, 3, "prescale");
  cr_assert(run_until(finished, &c, 15000));
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  Externalscaler__GetMetricsResponse *r =
      externalscaler__get_metrics_response__unpack(NULL, c.lens[0], c.msgs[0]);
  cr_assert_not_null(r);
  cr_assert_eq(r->metricvalues[0]->metricvalue, INT64_MAX);
  cr_assert_eq(r->metricvalues[0]->metricvaluefloat, DBL_MAX);
  externalscaler__get_metrics_response__free_unpacked(r, NULL);
  call(&c, "IsActive", inf, 3, NULL);
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  Externalscaler__IsActiveResponse *a =
      externalscaler__is_active_response__unpack(NULL, c.lens[0], c.msgs[0]);
  cr_assert_not_null(a);
  cr_assert(a->result);
  externalscaler__is_active_response__free_unpacked(a, NULL);
  stop_service();
  PS_LOOP_END(&loop);
}

/* Raw protobuf, since protobuf-c packs C strings and so cannot put a NUL inside one. */
static size_t put_len(uint8_t *out, unsigned field, const void *data, size_t len) {
  size_t n = 0;
  out[n++] = (uint8_t)(field << 3 | 2);
  for (size_t v = len;; v >>= 7) {
    out[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80) break;
  }
  memcpy(out + n, data, len);
  return n + len;
}

struct raw_kv {
  const char *k;
  size_t klen;
  const char *v;
  size_t vlen;
};

static size_t raw_ref(uint8_t *out, const char *name, size_t name_len, const struct raw_kv *md, size_t n) {
  size_t len = put_len(out, 1, name, name_len);
  len += put_len(out + len, 2, "shop", 4);
  for (size_t i = 0; i < n; i++) {
    uint8_t e[512];
    size_t elen = put_len(e, 1, md[i].k, md[i].klen);
    elen += put_len(e + elen, 2, md[i].v, md[i].vlen);
    len += put_len(out + len, 3, e, elen);
  }
  return len;
}

#define S(lit) lit, sizeof(lit) - 1

Test(service, a_nul_byte_in_any_string_is_invalid_argument_naming_the_key) {
  struct ps_call c;
  uint8_t msg[2048], gm[2048];
  size_t len;
  const struct raw_kv value_nul[] = {{S("query"), S("vector(1)")}, {S("threshold"), S("10\0junk")}};
  len = raw_ref(msg, S("web"), value_nul, 2);
  dispatch(&c, "/externalscaler.ExternalScaler/IsActive", msg, len);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT, "%s", c.message);
  cr_assert_str_eq(c.message,
                   "metadata \"threshold\": the value holds a NUL byte at offset 2; keys and values "
                   "are text without NUL");
  const struct raw_kv query_nul[] = {{S("query"), S("bars_load\0x")}, {S("threshold"), S("10")}};
  len = raw_ref(msg, S("web"), query_nul, 2);
  size_t glen = put_len(gm, 1, msg, len);
  glen += put_len(gm + glen, 2, S("prescale"));
  dispatch(&c, "/externalscaler.ExternalScaler/GetMetrics", gm, glen);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT, "%s", c.message);
  cr_assert(strstr(c.message, "metadata \"query\": the value holds a NUL byte at offset 9"), "%s", c.message);
  const struct raw_kv key_nul[] = {{S("query"), S("vector(1)")}, {S("thres\0hold"), S("10")}};
  len = raw_ref(msg, S("web"), key_nul, 2);
  dispatch(&c, "/externalscaler.ExternalScaler/GetMetricSpec", msg, len);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT, "%s", c.message);
  cr_assert(strstr(c.message, "metadata key \"thres\" holds a NUL byte at offset 5"), "%s", c.message);
  const struct raw_kv fine[] = {{S("query"), S("vector(1)")}, {S("threshold"), S("10")}};
  len = raw_ref(msg, S("w\0eb"), fine, 2);
  dispatch(&c, "/externalscaler.ExternalScaler/GetMetricSpec", msg, len);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT, "%s", c.message);
  cr_assert(strstr(c.message, "scaledObjectRef.name \"w\" holds a NUL byte at offset 1"), "%s", c.message);
  len = raw_ref(msg, S("web"), fine, 2);
  glen = put_len(gm, 1, msg, len);
  glen += put_len(gm + glen, 2, S("pre\0scale"));
  dispatch(&c, "/externalscaler.ExternalScaler/GetMetrics", gm, glen);
  cr_assert_eq(c.status, PS_GRPC_INVALID_ARGUMENT, "%s", c.message);
  cr_assert(strstr(c.message, "metricName \"pre\" holds a NUL byte at offset 3"), "%s", c.message);
  cr_assert_eq(ps_targets_count(targets), 0, "no target was made of a cut value");
  /* The same bytes without the NUL are served. */
  dispatch(&c, "/externalscaler.ExternalScaler/GetMetricSpec", msg, len);
  cr_assert_eq(c.status, PS_GRPC_OK, "%s", c.message);
  stop_service();
  PS_LOOP_END(&loop);
}
