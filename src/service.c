/* KEDA's externalscaler.ExternalScaler on top of the call API (h2_conn.h) and the targets registry.
 *
 * What KEDA does, which this fits (pkg/scalers/external_scaler.go): one long-lived connection carries every
 * ScaledObject; each poll and each HPA check calls GetMetricSpec, GetMetrics and IsActive with no
 * deadline; GetMetrics names the metric without KEDA's "sN-" prefix; KEDA reads the float fields only when
 * they are > 0, so both are always filled (the integer is the ceiling of the float); on external-push it
 * holds StreamIsActive open and reconnects with backoff when it ends. */
#include "service.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "externalscaler.pb-c.h"
#include "flags.h"
#include "grpc.h"
#include "list.h"
#include "log.h"
#include "pb_arena.h"
#include "req_cache.h"

enum method { M_IS_ACTIVE, M_STREAM_IS_ACTIVE, M_GET_METRIC_SPEC, M_GET_METRICS, M_STREAM_METRIC_SPEC };

static const struct {
  const char *name;
  enum method m;
} methods[] = {
    {"IsActive", M_IS_ACTIVE},
    {"StreamIsActive", M_STREAM_IS_ACTIVE},
    {"GetMetricSpec", M_GET_METRIC_SPEC},
    {"GetMetrics", M_GET_METRICS},
    {"StreamMetricSpec", M_STREAM_METRIC_SPEC},
};

/* An RPC that outlives its dispatch: one waiting for a target's first load, or a stream. It owns a
 * timer (the first-load timeout) and is freed only in that timer's close callback. */
struct op {
  struct ps_service *svc;
  struct ps_list node;  /* in svc->ops until released */
  struct ps_call *call; /* NULL once finished or cancelled */
  struct ps_target *target;
  enum method method;
  char *metric_name; /* GetMetrics: the name asked for; owned */
  struct ps_target_waiter waiter;
  struct ps_target_watcher watcher;
  uv_timer_t timer;
  bool released;
};

struct ps_service {
  uv_loop_t *loop;
  struct ps_targets *targets;
  const struct ps_server_config *cfg;
  /* every op not yet released (op.node), newest first */
  struct ps_list ops;
  struct ps_req_cache *cache; /* requests answered before (NULL: out of memory, none) */
  size_t packed;              /* answers packed (ps_service_answers_packed) */
  bool draining;              /* ps_service_drain ran: streams are refused, unary calls still served */
  bool closing;
};

int ps_service_new(uv_loop_t *loop, struct ps_targets *targets, const struct ps_server_config *cfg,
                   struct ps_service **out) {
  struct ps_service *s = calloc(1, sizeof *s);
  if (s == NULL) return UV_ENOMEM;
  s->loop = loop;
  s->targets = targets;
  s->cfg = cfg;
  s->cache = ps_req_cache_new();
  *out = s;
  return 0;
}

/* ---- answers ------------------------------------------------------------------------------------- */

/* Errors are logged here, once, with what the client is told. UNAVAILABLE is expected while Prometheus
 * is away (the refresh already logged why), so it is logged at info. */
static void fail(struct ps_call *call, int status, const char *text) {
  ps_log(status == PS_GRPC_UNAVAILABLE ? PS_LOG_INFO : PS_LOG_WARN, "rpc failed", "method",
         ps_call_method(call), "status", ps_grpc_status_name(status), "error", text, NULL);
  ps_call_finish(call, status, text);
}

/* Where an answer packed for a request found in the request cache is kept, so that the next hit sends it
 * as it is while the target's generation stays `gen`. */
struct keep {
  struct ps_service *svc;
  const struct ps_req_hit *hit;
  uint64_t gen;
};

/* The answer kept for the request, when it was built at the target's present generation: sent as it is,
 * *r set, true. */
static bool send_kept(struct ps_call *call, const struct keep *keep, int *r) {
  if (keep == NULL || !keep->hit->has_answer || keep->hit->answer_gen != keep->gen) return false;
  *r = ps_call_send(call, keep->hit->answer, keep->hit->answer_len);
  return true;
}

static int send_message(struct ps_call *call, const ProtobufCMessage *m, const struct keep *keep) {
  uint8_t small[256];
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = n <= sizeof small ? small : malloc(n);
  if (p == NULL) return UV_ENOMEM;
  protobuf_c_message_pack(m, p);
  if (keep != NULL) {
    keep->svc->packed++;
    ps_req_cache_keep(keep->svc->cache, keep->hit, keep->gen, p, n);
  }
  int r = ps_call_send(call, p, n);
  if (p != small) free(p);
  return r;
}

/* 2^63, exactly a double: every double below it converts to int64_t; from it on, (int64_t)v is undefined
 * behaviour (C11 6.3.1.4), so the integer saturates instead. */
#define I64_LIMIT 9223372036854775808.0

/* The integer field is the ceiling of the float, saturated at INT64_MAX (an answer of PS_TARGET_VALUE_MAX
 * gives INT64_MAX, so the HPA scales to its maximum whichever field KEDA reads); NaN and <= 0 give 0. KEDA
 * falls back to the integer when the float is 0. */
int64_t ps_service_ceil_i64(double v) {
  if (!(v > 0)) return 0;
  if (v >= I64_LIMIT) return INT64_MAX;
  return (int64_t)ceil(v); /* v < 2^63 and a double that large is an integer: ceil(v) <= 2^63 - 1024 */
}

static int send_spec(struct ps_call *call, const struct ps_target_config *c, const struct keep *keep) {
  Externalscaler__MetricSpec spec = EXTERNALSCALER__METRIC_SPEC__INIT;
  spec.metricname = c->metric_name;
  spec.targetsize = ps_service_ceil_i64(c->threshold);
  spec.targetsizefloat = c->threshold;
  Externalscaler__MetricSpec *specs[1] = {&spec};
  Externalscaler__GetMetricSpecResponse resp = EXTERNALSCALER__GET_METRIC_SPEC_RESPONSE__INIT;
  resp.n_metricspecs = 1;
  resp.metricspecs = specs;
  return send_message(call, &resp.base, keep);
}

static int send_active(struct ps_call *call, bool active, const struct keep *keep) {
  Externalscaler__IsActiveResponse resp = EXTERNALSCALER__IS_ACTIVE_RESPONSE__INIT;
  resp.result = active;
  return send_message(call, &resp.base, keep);
}

static int send_value(struct ps_call *call, const char *name, double value, const struct keep *keep) {
  Externalscaler__MetricValue mv = EXTERNALSCALER__METRIC_VALUE__INIT;
  mv.metricname = (char *)name;
  mv.metricvalue = ps_service_ceil_i64(value);
  mv.metricvaluefloat = value;
  Externalscaler__MetricValue *mvs[1] = {&mv};
  Externalscaler__GetMetricsResponse resp = EXTERNALSCALER__GET_METRICS_RESPONSE__INIT;
  resp.n_metricvalues = 1;
  resp.metricvalues = mvs;
  return send_message(call, &resp.base, keep);
}

/* Sends the answer of a unary method and finishes the call, or, for StreamIsActive, sends the first
 * state: the one kept for the request when still current, else packed (and kept, with keep). Returns true
 * when the call is still open afterwards (a stream). */
static bool answer(struct ps_call *call, enum method m, const char *metric_name,
                   const struct ps_target_reading *rd, const struct keep *keep) {
  int r;
  if (send_kept(call, keep, &r)) {
    /* r set */
  } else if (m == M_GET_METRICS) {
    r = send_value(call, metric_name, rd->value, keep);
  } else if (m == M_IS_ACTIVE || m == M_STREAM_IS_ACTIVE) {
    r = send_active(call, rd->active, keep);
  } else {
    r = UV_EINVAL;
  }
  if (r != 0) {
    ps_call_finish(call, ps_grpc_status_from_error(r), "cannot send the response");
    return false;
  }
  if (m == M_STREAM_IS_ACTIVE) return true;
  ps_call_finish(call, PS_GRPC_OK, NULL);
  return false;
}

/* ---- operations that outlive a dispatch ---------------------------------------------------------- */

static bool is_stream(enum method m) { return m == M_STREAM_IS_ACTIVE || m == M_STREAM_METRIC_SPEC; }

static void op_free_cb(uv_handle_t *h) {
  struct op *op = h->data;
  free(op->metric_name);
  free(op);
}

/* Drops every link the op holds (waiter, watcher, list) and closes its timer. Idempotent. */
static void op_release(struct op *op) {
  if (op->released) return;
  op->released = true;
  ps_target_unwait(&op->waiter);
  ps_target_unwatch(&op->watcher);
  ps_list_remove(&op->node);
  uv_close((uv_handle_t *)&op->timer, op_free_cb);
}

static void op_end(struct op *op, int status, const char *text) {
  if (op->call != NULL) {
    struct ps_call *call = op->call;
    op->call = NULL;
    if (status == PS_GRPC_OK)
      ps_call_finish(call, status, NULL);
    else
      fail(call, status, text);
  }
  op_release(op);
}

static void op_cancel_cb(struct ps_call *call, void *arg) {
  struct op *op = arg;
  op->call = NULL;
  op_release(op);
}

/* IsActiveResponse{result: true} encoded once: field 1, varint 1 (08 01); false, proto3's default, is the
 * empty message. A change goes to every watcher of a target (10,000 streams in one loop turn) as these
 * bytes, packed by no one (test_service: the bytes protobuf-c packs). */
static const uint8_t is_active_true[] = {0x08, 0x01};

static void watcher_cb(struct ps_target_watcher *w, bool active) {
  struct op *op = (struct op *)((char *)w - offsetof(struct op, watcher));
  if (op->call == NULL) return;
  int r = ps_call_send(op->call, is_active_true, active ? sizeof is_active_true : 0);
  /* UV_ENOBUFS: the client stopped reading its stream; end it rather than buffer without bound. */
  if (r != 0) op_end(op, ps_grpc_status_from_error(r), "the stream's client is not reading its updates");
}

/* A stream has sent its first state: from now on every change of the target's activity is sent. */
static void op_watch(struct op *op) {
  op->watcher.cb = watcher_cb;
  ps_target_watch(op->target, &op->watcher);
}

static void waiter_cb(struct ps_target_waiter *w, int err) {
  struct op *op = (struct op *)((char *)w - offsetof(struct op, waiter));
  uv_timer_stop(&op->timer);
  if (op->call == NULL) return;
  if (err == UV_ECANCELED) { /* the target is closing: do not read it */
    op_end(op, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
    return;
  }
  /* Read again rather than trust err: it yields the answer, or the error with the target's own text. */
  char text[PS_TARGET_MAX_ERROR + 64];
  struct ps_target_reading rd;
  int r = ps_target_read(op->target, &rd, text, sizeof text);
  if (r == 1) {
    r = UV_EAGAIN;
    snprintf(text, sizeof text, "the first load of history ended without data");
  }
  if (r != 0) {
    op_end(op, ps_grpc_status_from_error(r), text);
    return;
  }
  if (answer(op->call, op->method, op->metric_name, &rd, NULL)) {
    op_watch(op);
  } else {
    op->call = NULL; /* answer() finished it */
    op_release(op);
  }
}

static void first_load_timeout_cb(uv_timer_t *timer) {
  struct op *op = timer->data;
  char text[256];
  char dur[32];
  ps_duration_format((int64_t)op->svc->cfg->first_load_timeout_ms, dur, sizeof dur);
  const struct ps_target_config *c = ps_target_config(op->target);
  snprintf(text, sizeof text, "history not loaded from %s within %s (--first-load-timeout); retrying",
           c->server_address, dur);
  op_end(op, PS_GRPC_UNAVAILABLE, text);
}

/* The op of a call that stays open; NULL when out of memory, the call then finished with
 * RESOURCE_EXHAUSTED. */
static struct op *op_new(struct ps_service *s, struct ps_call *call, struct ps_target *t, enum method m,
                         const char *metric_name) {
  struct op *op = calloc(1, sizeof *op);
  if (op == NULL || (metric_name != NULL && (op->metric_name = strdup(metric_name)) == NULL) ||
      uv_timer_init(s->loop, &op->timer) != 0) {
    if (op != NULL) free(op->metric_name);
    free(op);
    ps_call_finish(call, PS_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return NULL;
  }
  op->timer.data = op;
  op->svc = s;
  op->call = call;
  op->target = t;
  op->method = m;
  ps_list_insert_head(&s->ops, &op->node);
  ps_call_on_cancel(call, op_cancel_cb, op);
  return op;
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

/* GetMetrics names the metric without KEDA's "sN-" prefix; older KEDA releases sent it with the prefix,
 * so both are accepted. An empty name means the trigger's own. */
static bool metric_name_matches(const char *asked, const char *ours) {
  if (asked[0] == '\0' || strcmp(asked, ours) == 0) return true;
  if (asked[0] != 's') return false;
  const char *p = asked + 1;
  while (*p >= '0' && *p <= '9') p++;
  return p > asked + 1 && *p == '-' && strcmp(p + 1, ours) == 0;
}

/* What the client is told: a target's error (PS_TARGET_MAX_ERROR) plus the service's own words. */
#define TEXT_MAX (PS_TARGET_MAX_ERROR + 128)

/* Decodes the method from the call's path; false when the call was answered (UNIMPLEMENTED). */
static bool decode_method(struct ps_call *call, const char *path, enum method *m) {
  char text[TEXT_MAX];
  size_t plen = strlen(PS_SERVICE_PREFIX);
  if (strncmp(path, PS_SERVICE_PREFIX, plen) != 0) {
    snprintf(
        text, sizeof text,
        "unknown service in %.200s (prescale serves externalscaler.ExternalScaler and grpc.health.v1.Health)",
        path);
    ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, text);
    return false;
  }
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    if (strcmp(path + plen, methods[i].name) == 0) {
      *m = methods[i].m;
      return true;
    }
  }
  snprintf(text, sizeof text, "unknown method %.200s", path + plen);
  ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, text);
  return false;
}

/* ---- requests ------------------------------------------------------------------------------------ */

/* A decoded request message. Every method's carries a ScaledObjectRef: GetMetrics' inside its
 * GetMetricsRequest (which then owns it), the others' as the whole message. */
struct request {
  enum method method;
  struct ps_pb_arena *arena;                /* where protobuf-c puts the message's pieces */
  Externalscaler__GetMetricsRequest *gm;    /* GetMetrics only; owned */
  Externalscaler__ScaledObjectRef *ref;     /* owned unless gm is set */
  struct ps_kv md[PS_SERVICE_MAX_METADATA]; /* borrows ref's strings */
};

static void request_free(struct request *req) {
  if (req->gm != NULL)
    externalscaler__get_metrics_request__free_unpacked(req->gm, &req->arena->alloc);
  else if (req->ref != NULL)
    externalscaler__scaled_object_ref__free_unpacked(req->ref, &req->arena->alloc);
}

/* Unpacks the message of method m into req; false when the call was answered (INVALID_ARGUMENT). Free
 * req with request_free either way. */
static bool decode_request(struct ps_call *call, enum method m, const uint8_t *msg, size_t len,
                           struct ps_pb_arena *arena, struct request *req) {
  char text[TEXT_MAX];
  *req = (struct request){.method = m, .arena = arena};
  if (m == M_GET_METRICS) {
    req->gm = externalscaler__get_metrics_request__unpack(&req->arena->alloc, len, msg);
    req->ref = req->gm != NULL ? req->gm->scaledobjectref : NULL;
  } else {
    req->ref = externalscaler__scaled_object_ref__unpack(&req->arena->alloc, len, msg);
  }
  const Externalscaler__ScaledObjectRef *ref = req->ref;
  if (ref == NULL) {
    fail(call, PS_GRPC_INVALID_ARGUMENT,
         req->gm != NULL ? "GetMetricsRequest has no scaledObjectRef" : "cannot decode the request message");
    return false;
  }
  if (ps_service_nul_check(m == M_GET_METRICS, msg, len, text, sizeof text) != 0) {
    fail(call, PS_GRPC_INVALID_ARGUMENT, text);
    return false;
  }
  if (ref->n_scalermetadata > PS_SERVICE_MAX_METADATA) {
    snprintf(text, sizeof text, "scalerMetadata has %zu entries; at most %d are accepted",
             ref->n_scalermetadata, PS_SERVICE_MAX_METADATA);
    fail(call, PS_GRPC_INVALID_ARGUMENT, text);
    return false;
  }
  for (size_t i = 0; i < ref->n_scalermetadata; i++) {
    req->md[i].key = ref->scalermetadata[i]->key;
    req->md[i].value = ref->scalermetadata[i]->value;
  }
  return true;
}

/* Finds (or creates) the request's target and the metric name to answer with; NULL when the call was
 * answered (bad metadata, too many targets, a GetMetrics for another metric). */
static struct ps_target *look_up(struct ps_service *s, struct ps_call *call, const struct request *req,
                                 const char **metric_name) {
  char text[TEXT_MAX];
  const Externalscaler__ScaledObjectRef *ref = req->ref;
  struct ps_target *t = NULL;
  int r = ps_targets_get_or_create(s->targets, ref->namespace_, ref->name, req->md, ref->n_scalermetadata, &t,
                                   text, sizeof text);
  if (r != 0) {
    fail(call, ps_grpc_status_from_error(r), text);
    return NULL;
  }
  const struct ps_target_config *c = ps_target_config(t);
  *metric_name = c->metric_name;
  if (req->method == M_GET_METRICS) {
    const char *asked = req->gm->metricname;
    if (!metric_name_matches(asked, c->metric_name)) {
      snprintf(text, sizeof text,
               "metric \"%.200s\" is not served by this trigger (its metricName is \"%s\")", asked,
               c->metric_name);
      fail(call, PS_GRPC_NOT_FOUND, text);
      return NULL;
    }
    if (asked[0] != '\0') *metric_name = asked;
  }
  return t;
}

/* Answers method m about target t: at once when the answer is known, else once the first load ends; a
 * stream stays open afterwards. metric_name is copied when the answer has to wait. hit: the request was
 * found in the request cache (NULL: it was not), where its answer is kept. */
static void respond(struct ps_service *s, struct ps_call *call, struct ps_target *t, enum method m,
                    const char *metric_name, const struct ps_req_hit *hit) {
  char text[TEXT_MAX];
  int r;
  struct keep keep = {s, hit, ps_target_generation(t)};
  const struct keep *kp = hit != NULL ? &keep : NULL;
  if (m == M_GET_METRIC_SPEC || m == M_STREAM_METRIC_SPEC) {
    /* The spec comes from the metadata alone, so it never waits for Prometheus. */
    if (!send_kept(call, kp, &r)) r = send_spec(call, ps_target_config(t), kp);
    if (r != 0)
      ps_call_finish(call, ps_grpc_status_from_error(r), "cannot send the response");
    else if (m == M_GET_METRIC_SPEC)
      ps_call_finish(call, PS_GRPC_OK, NULL);
    else
      op_new(s, call, t, m, NULL); /* the spec of a target never changes: just stay open */
    return;
  }
  struct ps_target_reading rd;
  r = ps_target_read(t, &rd, text, sizeof text);
  if (r < 0) {
    fail(call, ps_grpc_status_from_error(r), text);
    return;
  }
  if (r == 0) {
    if (answer(call, m, metric_name, &rd, kp)) { /* a stream: it stays open and follows the target */
      struct op *op = op_new(s, call, t, m, NULL);
      if (op != NULL) op_watch(op);
    }
    return;
  }
  /* The first load is under way: wait for it without blocking the loop, up to --first-load-timeout
   * (an earlier grpc-timeout is enforced by the h2 layer, which then cancels this op). */
  struct op *op = op_new(s, call, t, m, metric_name);
  if (op == NULL) return;
  op->waiter.cb = waiter_cb;
  ps_target_wait(t, &op->waiter);
  uv_timer_start(&op->timer, first_load_timeout_cb, s->cfg->first_load_timeout_ms, 0);
}

/* Every RPC enters here: decode the path and the message, look up the target, respond. */
void ps_service_dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len, void *arg) {
  struct ps_service *s = arg;
  if (s->closing) {
    ps_call_finish(call, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
    return;
  }
  enum method m;
  if (!decode_method(call, path, &m)) return;
  if (s->draining && is_stream(m)) {
    /* A stream never ends by itself, so one opened now would only be cut at the drain deadline; the
     * client had better reconnect to another replica at once. */
    fail(call, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
    return;
  }
  /* A request seen before, byte for byte, with no target gone since: it passed every check then and
   * would find the same target now, so only the answer is left to give. */
  struct ps_req_hit hit;
  if (ps_req_cache_get(s->cache, m, msg, len, ps_targets_epoch(s->targets), &hit)) {
    respond(s, call, hit.target, m,
            hit.metric_name != NULL ? hit.metric_name : ps_target_config(hit.target)->metric_name, &hit);
    return;
  }
  /* The request lives only for this dispatch (whatever outlives it is copied), so its decoded pieces
   * live on this stack frame. */
  struct ps_pb_arena arena;
  ps_pb_arena_init(&arena);
  struct request req;
  if (decode_request(call, m, msg, len, &arena, &req)) {
    const char *metric_name = NULL;
    struct ps_target *t = look_up(s, call, &req, &metric_name);
    if (t != NULL) {
      const char *own = ps_target_config(t)->metric_name;
      ps_req_cache_put(s->cache, m, msg, len, ps_targets_epoch(s->targets), t,
                       metric_name != own ? metric_name : NULL);
      respond(s, call, t, m, metric_name, NULL);
    }
  }
  request_free(&req);
}

size_t ps_service_answers_packed(const struct ps_service *s) { return s->packed; }

size_t ps_service_drain(struct ps_service *s) {
  s->draining = true;
  size_t ended = 0;
  /* op_end unlinks the op it ends, and ending a call makes h2_conn send and close that stream only, so
   * the saved next is still in the list; an op's memory lasts until its timer's close callback anyway. */
  ps_list_foreach_safe(n, next, &s->ops) {
    struct op *op = ps_list_entry(n, struct op, node);
    if (!is_stream(op->method) || op->call == NULL) continue;
    op_end(op, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
    ended++;
  }
  return ended;
}

size_t ps_service_close(struct ps_service *s) {
  s->draining = s->closing = true;
  size_t ended = 0;
  for (struct ps_list *n; (n = ps_list_first(&s->ops)) != NULL;) {
    struct op *op = ps_list_entry(n, struct op, node);
    if (op->call != NULL) ended++;
    op_end(op, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
  }
  return ended;
}

void ps_service_free(struct ps_service *s) {
  if (s == NULL) return;
  ps_req_cache_free(s->cache);
  free(s);
}
