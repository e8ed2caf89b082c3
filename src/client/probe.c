/* `prescale probe`: asks a running scaler what KEDA asks (pkg/scalers/external_scaler.go): GetMetricSpec,
 * GetMetrics for the spec's metric, IsActive; with --watch, then holds StreamIsActive open as KEDA's
 * external-push trigger does. Over prescale's own gRPC client, on one libuv loop.
 *
 * Exit status: 0 ok (and after Ctrl-C while watching), 1 a connection or RPC failure (or the stream
 * ended), 2 bad usage. Errors are one line on stderr: "prescale probe: GetMetricSpec: INVALID_ARGUMENT:
 * threshold: "abc" is not a number > 0". */
#include "probe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "externalscaler.pb-c.h"
#include "flags.h"
#include "fmt.h"
#include "grpc.h"
#include "grpc_client.h"
#include "service.h" /* the service's path prefix and its metadata limit: more entries are refused there */

#define PROBE_DEFAULT_TIMEOUT   "10s"
#define PROBE_DEFAULT_NAMESPACE "default"
#define PROBE_ERR_MAX           512 /* bytes of one flag error */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct opts {
  const char *addr, *name, *ns, *metric;
  struct ps_kv md[PS_SERVICE_MAX_METADATA];
  size_t nmd;
  int64_t timeout_ms;
  bool watch, json;
};

enum step { S_SPEC, S_METRICS, S_ACTIVE, S_WATCH, S_DONE };

struct probe {
  uv_loop_t loop;
  uv_signal_t sigint;
  bool sigint_open;
  struct opts o;
  struct ps_grpc_client *client;
  struct ps_grpc_call *stream;
  enum step step;
  int exit_code;
  cJSON *out; /* the JSON answer being built (--json) */
  char metric[PS_MAX_METRIC_NAME + 1];
  double target; /* the spec's target per replica, for the replica estimate */
};

/* ==== flags ======================================================================================== */

/* -m KEY=VALUE, once per entry: appended to the metadata of `field`'s struct opts. argv strings are the
 * program's to modify (C11 5.1.2.2.1), and -m has no environment variable, so the '=' becomes the key's
 * end in place. */
static const char *check_metadata(const char *value, void *field) {
  struct opts *o = (struct opts *)(void *)((char *)field - offsetof(struct opts, md));
  char *kv = (char *)value, *eq = strchr(kv, '=');
  if (eq == NULL || eq == kv) return "is not KEY=VALUE";
  if (o->nmd >= PS_SERVICE_MAX_METADATA)
    return "is one entry more than the scaler takes (" PS_STR(PS_SERVICE_MAX_METADATA) ")";
  size_t klen = (size_t)(eq - kv);
  for (size_t i = 0; i < o->nmd; i++)
    if (strlen(o->md[i].key) == klen && strncmp(o->md[i].key, kv, klen) == 0)
      return "repeats a key given before";
  *eq = '\0';
  o->md[o->nmd].key = kv;
  o->md[o->nmd].value = eq + 1;
  o->nmd++;
  return NULL;
}

#define OPT(f) offsetof(struct opts, f)

/* One row per flag, its identity first and its help under it, so that the table reads as one. */
/* clang-format off */
static const struct ps_flag probe_flags[] = {
    {.name = "addr", .kind = PS_FLAG_STRING, .offset = OPT(addr), .arg = "HOST:PORT",
     .help = "the scaler's gRPC address (h2c), e.g. 127.0.0.1:6000 or [::1]:6000"},
    {.name = "name", .kind = PS_FLAG_STRING, .offset = OPT(name), .arg = "NAME",
     .help = "the ScaledObject's name"},
    {.name = "namespace", .kind = PS_FLAG_STRING, .offset = OPT(ns), .arg = "NS",
     .def = PROBE_DEFAULT_NAMESPACE, .help = "its namespace"},
    {.name = "metadata", .short_name = 'm', .kind = PS_FLAG_CUSTOM, .check = check_metadata,
     .offset = OPT(md), .arg = "K=V",
     .help = "one entry of the trigger's metadata; repeat for each. The scaler keys" PS_FLAGS_MORE
             "its targets by the whole map: to see the very target a ScaledObject" PS_FLAGS_MORE
             "uses, pass its metadata exactly, scalerAddress included (KEDA sends it)"},
    {.name = "metric", .kind = PS_FLAG_STRING, .offset = OPT(metric), .arg = "NAME",
     .help = "the metric asked for in GetMetrics (default: the spec's first one)"},
    {.name = "timeout", .kind = PS_FLAG_DURATION, .min = 1, .max = PS_GRPC_CLIENT_MAX_TIMEOUT_MS,
     .example = "e.g. 500ms, 10s", .def = PROBE_DEFAULT_TIMEOUT, .offset = OPT(timeout_ms), .arg = "DUR",
     .help = "deadline of connecting and of each call"},
    {.name = "watch", .kind = PS_FLAG_SWITCH, .offset = OPT(watch),
     .help = "then hold StreamIsActive open and print each update with a timestamp," PS_FLAGS_MORE
             "until Ctrl-C or until the scaler ends the stream"},
    {.name = "json", .kind = PS_FLAG_SWITCH, .offset = OPT(json), .help = "print JSON: one object; with"
     " --watch, then one object per update, each" PS_FLAGS_MORE "on its own line"},
};
/* clang-format on */

static const struct ps_flags_spec probe_spec = {
    .program = "prescale probe",
    .version = PS_VERSION,
    .about =
        "Asks a running scaler what KEDA asks it, over the same gRPC calls: GetMetricSpec, then GetMetrics\n"
        "for the spec's metric, then IsActive, and prints the answers. For example:\n"
        "  prescale probe --addr 127.0.0.1:6000 --name web -m query='sum(rate(x[1m]))' -m threshold=10\n",
    .footer =
        "\n"
        "Exit status: 0 ok (also after Ctrl-C while watching); 1 the connection or a call failed, or the\n"
        "scaler ended the watched stream; 2 bad usage.\n",
    .flags = probe_flags,
    .nflags = sizeof probe_flags / sizeof probe_flags[0],
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("prescale probe: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\nRun 'prescale probe --help' for the flags.\n", stderr);
  va_end(ap);
  return EXIT_USAGE;
}

/* 0, 1 after --help or --version, or EXIT_USAGE (already reported). */
static int parse_flags(struct opts *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  ps_flags_defaults(&probe_spec, o);
  char err[PROBE_ERR_MAX];
  int r = ps_flags_parse(&probe_spec, o, argc, argv, stdout, err, sizeof err);
  if (r == 1 || r == 2) return 1;
  if (r != 0) return usage_error("%s", err);
  if (o->addr == NULL || o->addr[0] == '\0')
    return usage_error("--addr: is required (HOST:PORT of the scaler)");
  if (o->name == NULL || o->name[0] == '\0')
    return usage_error("--name: is required (the ScaledObject's name)");
  if (o->ns[0] == '\0') return usage_error("--namespace: must not be empty");
  if (o->metric != NULL && strlen(o->metric) > PS_MAX_METRIC_NAME)
    return usage_error("--metric: is longer than %d bytes", PS_MAX_METRIC_NAME);
  return 0;
}

/* ==== output ======================================================================================= */

static void now_rfc3339(char *buf, size_t len) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
    ts.tv_sec = time(NULL);
    ts.tv_nsec = 0;
  }
  time_t secs = ts.tv_sec;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, len, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000));
}

static void print_json(cJSON *j) {
  char *s = cJSON_PrintUnformatted(j);
  if (s != NULL) {
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
  }
  fflush(stdout);
}

/* ==== the calls ==================================================================================== */

static void finish(struct probe *p, int code) {
  if (p->step == S_DONE) return;
  p->step = S_DONE;
  p->exit_code = code;
  if (p->stream != NULL) ps_grpc_client_cancel(p->stream);
  p->stream = NULL;
  ps_grpc_client_close(p->client);
  if (p->sigint_open) uv_close((uv_handle_t *)&p->sigint, NULL);
  p->sigint_open = false;
}

static void fail(struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct probe *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("prescale probe: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  finish(p, EXIT_FAIL);
}

/* Packs the ScaledObjectRef of the flags (or a GetMetricsRequest around it) into a malloc'd buffer. */
static uint8_t *pack_request(const struct probe *p, bool get_metrics, size_t *len) {
  Externalscaler__ScaledObjectRef__ScalerMetadataEntry entries[PS_SERVICE_MAX_METADATA];
  Externalscaler__ScaledObjectRef__ScalerMetadataEntry *ptrs[PS_SERVICE_MAX_METADATA];
  for (size_t i = 0; i < p->o.nmd; i++) {
    Externalscaler__ScaledObjectRef__ScalerMetadataEntry e =
        EXTERNALSCALER__SCALED_OBJECT_REF__SCALER_METADATA_ENTRY__INIT;
    e.key = (char *)p->o.md[i].key;
    e.value = (char *)p->o.md[i].value;
    entries[i] = e;
    ptrs[i] = &entries[i];
  }
  Externalscaler__ScaledObjectRef ref = EXTERNALSCALER__SCALED_OBJECT_REF__INIT;
  ref.name = (char *)p->o.name;
  ref.namespace_ = (char *)p->o.ns;
  ref.n_scalermetadata = p->o.nmd;
  ref.scalermetadata = ptrs;
  Externalscaler__GetMetricsRequest gm = EXTERNALSCALER__GET_METRICS_REQUEST__INIT;
  gm.scaledobjectref = &ref;
  gm.metricname = (char *)p->metric;
  const ProtobufCMessage *m = get_metrics ? &gm.base : &ref.base;
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf != NULL) protobuf_c_message_pack(m, buf);
  return buf;
}

static void on_done(void *arg, int status, const char *message, const uint8_t *msg, size_t len);
static void on_stream_msg(void *arg, const uint8_t *msg, size_t len);

static const char *step_method(enum step s) {
  switch (s) {
  case S_SPEC: return "GetMetricSpec";
  case S_METRICS: return "GetMetrics";
  case S_ACTIVE: return "IsActive";
  default: return "StreamIsActive";
  }
}

static void start_step(struct probe *p, enum step s) {
  p->step = s;
  size_t len;
  uint8_t *req = pack_request(p, s == S_METRICS, &len);
  if (req == NULL) {
    fail(p, "%s: out of memory", step_method(s));
    return;
  }
  char path[128];
  snprintf(path, sizeof path, PS_SERVICE_PREFIX "%s", step_method(s));
  /* KEDA sets no deadline on the stream: it is meant to stay open. */
  uint64_t timeout = s == S_WATCH ? 0 : (uint64_t)p->o.timeout_ms;
  struct ps_grpc_call *call = NULL;
  int err = ps_grpc_client_call(p->client, path, req, len, timeout, s == S_WATCH ? on_stream_msg : NULL,
                                on_done, p, &call);
  free(req);
  if (err != 0) {
    fail(p, "%s: cannot start the call: %s", step_method(s), uv_strerror(err));
    return;
  }
  if (s == S_WATCH) p->stream = call;
}

/* cJSON prints a number with 15 digits and keeps them when they read back within an epsilon, so a value
 * like 91.19999694824219 (a float widened) came out as 91.1999969482422: another double than the one
 * received. The shortest round-trip form (fmt.c) is exact; a non-finite value stays cJSON's null. */
static void add_exact_number(cJSON *o, const char *key, double v) {
  char f[PS_FMT_DOUBLE_MAX];
  if (isfinite(v) && ps_fmt_double(f, sizeof f, v) > 0)
    cJSON_AddRawToObject(o, key, f);
  else
    cJSON_AddNumberToObject(o, key, v);
}

static void got_spec(struct probe *p, const uint8_t *msg, size_t len) {
  Externalscaler__GetMetricSpecResponse *r = externalscaler__get_metric_spec_response__unpack(NULL, len, msg);
  if (r == NULL) {
    fail(p, "GetMetricSpec: cannot decode the response (%zu bytes)", len);
    return;
  }
  if (p->o.metric == NULL && r->n_metricspecs == 0) {
    externalscaler__get_metric_spec_response__free_unpacked(r, NULL);
    fail(p, "GetMetricSpec: the scaler returned no metric spec (give --metric to ask for one anyway)");
    return;
  }
  snprintf(p->metric, sizeof p->metric, "%s", p->o.metric ? p->o.metric : r->metricspecs[0]->metricname);
  p->target = 0;
  cJSON *arr = p->out ? cJSON_AddArrayToObject(p->out, "metricSpecs") : NULL;
  for (size_t i = 0; i < r->n_metricspecs; i++) {
    const Externalscaler__MetricSpec *s = r->metricspecs[i];
    /* KEDA uses the float when it is > 0, else the integer (external_scaler.go). */
    double target = s->targetsizefloat > 0 ? s->targetsizefloat : (double)s->targetsize;
    if (strcmp(s->metricname, p->metric) == 0 && p->target == 0) p->target = target;
    if (arr != NULL) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "metricName", s->metricname);
      cJSON_AddNumberToObject(o, "targetSize", (double)s->targetsize);
      add_exact_number(o, "targetSizeFloat", s->targetsizefloat);
      cJSON_AddItemToArray(arr, o);
    } else {
      char f[PS_FMT_DOUBLE_MAX];
      ps_fmt_double(f, sizeof f, s->targetsizefloat);
      printf("spec      metric \"%s\", target %s per replica (targetSize %" PRId64 ", targetSizeFloat %s)\n",
             s->metricname, f, s->targetsize, f);
    }
  }
  externalscaler__get_metric_spec_response__free_unpacked(r, NULL);
  start_step(p, S_METRICS);
}

static void got_metrics(struct probe *p, const uint8_t *msg, size_t len) {
  Externalscaler__GetMetricsResponse *r = externalscaler__get_metrics_response__unpack(NULL, len, msg);
  if (r == NULL) {
    fail(p, "GetMetrics: cannot decode the response (%zu bytes)", len);
    return;
  }
  if (r->n_metricvalues == 0) {
    externalscaler__get_metrics_response__free_unpacked(r, NULL);
    fail(p, "GetMetrics: the scaler returned no metric value for \"%s\"", p->metric);
    return;
  }
  cJSON *arr = p->out ? cJSON_AddArrayToObject(p->out, "metricValues") : NULL;
  for (size_t i = 0; i < r->n_metricvalues; i++) {
    const Externalscaler__MetricValue *v = r->metricvalues[i];
    double value = v->metricvaluefloat > 0 ? v->metricvaluefloat : (double)v->metricvalue;
    if (arr != NULL) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "metricName", v->metricname);
      cJSON_AddNumberToObject(o, "metricValue", (double)v->metricvalue);
      add_exact_number(o, "metricValueFloat", v->metricvaluefloat);
      cJSON_AddItemToArray(arr, o);
      continue;
    }
    char f[PS_FMT_DOUBLE_MAX];
    ps_fmt_double(f, sizeof f, v->metricvaluefloat);
    printf("value     %s = %s (metricValue %" PRId64 ", metricValueFloat %s)\n", v->metricname, f,
           v->metricvalue, f);
    if (i == 0 && p->target > 0) {
      /* What the HPA asks for with KEDA's default AverageValue target: ceil(value / target). */
      double want = ceil(value / p->target);
      printf("replicas  %.0f (ceil(value / target), as the HPA computes for an AverageValue target)\n", want);
    }
  }
  externalscaler__get_metrics_response__free_unpacked(r, NULL);
  start_step(p, S_ACTIVE);
}

static void got_active(struct probe *p, const uint8_t *msg, size_t len) {
  Externalscaler__IsActiveResponse *r = externalscaler__is_active_response__unpack(NULL, len, msg);
  if (r == NULL) {
    fail(p, "IsActive: cannot decode the response (%zu bytes)", len);
    return;
  }
  bool active = r->result;
  externalscaler__is_active_response__free_unpacked(r, NULL);
  if (p->out != NULL) {
    cJSON_AddBoolToObject(p->out, "active", active);
    print_json(p->out);
  } else {
    printf("active    %s\n", active ? "true" : "false");
    fflush(stdout);
  }
  if (p->o.watch)
    start_step(p, S_WATCH);
  else
    finish(p, EXIT_OK);
}

static void on_stream_msg(void *arg, const uint8_t *msg, size_t len) {
  struct probe *p = arg;
  Externalscaler__IsActiveResponse *r = externalscaler__is_active_response__unpack(NULL, len, msg);
  if (r == NULL) {
    fail(p, "StreamIsActive: cannot decode an update (%zu bytes)", len);
    return;
  }
  char ts[48];
  now_rfc3339(ts, sizeof ts);
  if (p->o.json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "time", ts);
    cJSON_AddBoolToObject(o, "active", r->result);
    print_json(o);
    cJSON_Delete(o);
  } else {
    printf("%s  active %s\n", ts, r->result ? "true" : "false");
    fflush(stdout);
  }
  externalscaler__is_active_response__free_unpacked(r, NULL);
}

static void on_done(void *arg, int status, const char *message, const uint8_t *msg, size_t len) {
  struct probe *p = arg;
  if (p->step == S_DONE) return; /* cancelled by finish() */
  const char *method = step_method(p->step);
  if (p->step == S_WATCH) {
    p->stream = NULL;
    fail(p, "StreamIsActive: %s%s%s",
         status == PS_GRPC_OK ? "the scaler ended the stream (OK)" : ps_grpc_status_name(status),
         status != PS_GRPC_OK && message[0] ? ": " : "", status != PS_GRPC_OK ? message : "");
    return;
  }
  if (status != PS_GRPC_OK) {
    fail(p, "%s: %s%s%s", method, ps_grpc_status_name(status), message[0] ? ": " : "", message);
    return;
  }
  switch (p->step) {
  case S_SPEC: got_spec(p, msg, len); break;
  case S_METRICS: got_metrics(p, msg, len); break;
  case S_ACTIVE: got_active(p, msg, len); break;
  default: break;
  }
}

static void on_connect(void *arg, int err, const char *errmsg) {
  struct probe *p = arg;
  if (err != 0) {
    if (p->step != S_DONE) fail(p, "%s", errmsg);
    return;
  }
  start_step(p, S_SPEC);
}

static void on_sigint(uv_signal_t *h, int signum) {
  struct probe *p = h->data;
  finish(p, EXIT_OK); /* Ctrl-C is how a watch is meant to end */
}

/* ==== entry point ================================================================================== */

int ps_probe_main(int argc, char **argv) {
  static struct probe p; /* zeroed */
  memset(&p, 0, sizeof p);
  int r = parse_flags(&p.o, argc, argv);
  if (r == 1) return EXIT_OK;
  if (r != 0) return EXIT_USAGE;
  signal(SIGPIPE, SIG_IGN); /* a closed stdout or a vanished peer is an error code, not a death */
  if (uv_loop_init(&p.loop) != 0) {
    fputs("prescale probe: cannot create the event loop\n", stderr);
    return EXIT_FAIL;
  }
  if (p.o.json) p.out = cJSON_CreateObject();
  if (p.out != NULL) {
    cJSON_AddStringToObject(p.out, "addr", p.o.addr);
    cJSON_AddStringToObject(p.out, "namespace", p.o.ns);
    cJSON_AddStringToObject(p.out, "name", p.o.name);
  }
  struct ps_grpc_client_opts co = {.target = p.o.addr, .connect_timeout_ms = (uint64_t)p.o.timeout_ms};
  r = ps_grpc_client_new(&p.loop, &co, on_connect, &p, &p.client);
  if (r == UV_EINVAL) {
    cJSON_Delete(p.out);
    uv_loop_close(&p.loop);
    return usage_error("--addr \"%s\": expected HOST:PORT or [IPv6]:PORT", p.o.addr);
  }
  if (r != 0) {
    fprintf(stderr, "prescale probe: cannot connect to %s: %s\n", p.o.addr, uv_strerror(r));
    cJSON_Delete(p.out);
    uv_loop_close(&p.loop);
    return EXIT_FAIL;
  }
  if (p.o.watch) {
    uv_signal_init(&p.loop, &p.sigint);
    p.sigint.data = &p;
    uv_signal_start(&p.sigint, on_sigint, SIGINT);
    p.sigint_open = true;
  }
  uv_run(&p.loop, UV_RUN_DEFAULT);
  cJSON_Delete(p.out);
  if (uv_loop_close(&p.loop) != 0) {
    fputs("prescale probe: internal error: handles left open at exit\n", stderr);
    return EXIT_FAIL;
  }
  return p.exit_code;
}
