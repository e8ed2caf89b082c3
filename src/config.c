/* Server options (flags and PRESCALE_* environment variables) and trigger metadata -> validated config.
 * Every error is one line naming the flag or key and the offending value, with what would be accepted:
 * it reaches an operator's terminal or, through grpc-message, a ScaledObject's status. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "duration.h"
#include "flags.h"

/* ---- helpers ------------------------------------------------------------------------------------- */

/* strtod over the whole string, finite only ("nan", "inf", "", " 1", "1x" are not numbers). */
static bool parse_number(const char *s, double *out) {
  if (s == NULL || *s == '\0' || isspace((unsigned char)*s)) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end != '\0' || errno == ERANGE || !isfinite(v)) return false;
  *out = v;
  return true;
}

/* ---- server options ------------------------------------------------------------------------------ */

/* The table behind the flags, the PRESCALE_* variables and --help (README, "Flags"). */
static const struct ps_flag server_flags[] = {
    {.name = "grpc-listen",
     .env = "PRESCALE_GRPC_LISTEN",
     .kind = PS_FLAG_LISTEN,
     .offset = offsetof(struct ps_server_config, grpc_listen),
     .arg = "ADDR",
     .help = "gRPC (KEDA external scaler) listen address, host:port or [v6]:port",
     .def = PS_DEFAULT_GRPC_LISTEN},
    {.name = "http-listen",
     .env = "PRESCALE_HTTP_LISTEN",
     .kind = PS_FLAG_LISTEN,
     .offset = offsetof(struct ps_server_config, http_listen),
     .arg = "ADDR",
     .help = "HTTP listen address for /healthz, /readyz and /metrics",
     .def = PS_DEFAULT_HTTP_LISTEN},
    {.name = "prometheus-url",
     .env = "PRESCALE_PROMETHEUS_URL",
     .kind = PS_FLAG_URL,
     .offset = offsetof(struct ps_server_config, prometheus_url),
     .arg = "URL",
     .help = "Prometheus base URL for triggers without serverAddress",
     .def = PS_DEFAULT_PROMETHEUS_URL},
    {.name = "first-load-timeout",
     .env = "PRESCALE_FIRST_LOAD_TIMEOUT",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, first_load_timeout_ms),
     .arg = "DUR",
     .help = "how long the first RPC for a new target waits for its history",
     .def = "5s",
     .min = 1},
    {.name = "stale-after",
     .env = "PRESCALE_STALE_AFTER",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, stale_after_ms),
     .arg = "DUR",
     .help = "how long the last prediction is served once refreshes from Prometheus fail; 0 = 3 x the step",
     .def = "0"},
    {.name = "target-idle",
     .env = "PRESCALE_TARGET_IDLE",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, target_idle_ms),
     .arg = "DUR",
     .help = "forget a target KEDA has not asked about for this long",
     .def = "10m",
     .min = 1},
    {.name = "grpc-max-msg",
     .env = "PRESCALE_GRPC_MAX_MSG",
     .kind = PS_FLAG_SIZE,
     .offset = offsetof(struct ps_server_config, grpc_max_msg),
     .arg = "BYTES",
     .help = "largest gRPC request accepted, in bytes, KiB or MiB",
     .def = "4MiB", /* PS_GRPC_MAX_MSG: grpc's own default receive limit */
     .min = PS_MIN_GRPC_MAX_MSG,
     .max = PS_MAX_GRPC_MAX_MSG},
    {.name = "max-targets",
     .env = "PRESCALE_MAX_TARGETS",
     .kind = PS_FLAG_COUNT,
     .offset = offsetof(struct ps_server_config, max_targets),
     .arg = "N",
     .help = "most targets tracked at once; beyond it new ones get RESOURCE_EXHAUSTED",
     .def = "10000",
     .min = 1,
     .max = PS_MAX_MAX_TARGETS},
    {.name = "shutdown-grace",
     .env = "PRESCALE_SHUTDOWN_GRACE",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, shutdown_grace_ms),
     .arg = "DUR",
     .help = "after SIGTERM, how long calls in flight may take to finish; 0 = end them at once",
     /* README, Shutdown. Well below Kubernetes' default terminationGracePeriodSeconds (30 s), which also
      * has to cover the close of the connections and the exit before the kubelet's SIGKILL. */
     .def = "5s",
     .max = PS_MAX_SHUTDOWN_GRACE_MS,
     .example = "e.g. 5s; 0 = no drain"},
    {.name = "log-level",
     .env = "PRESCALE_LOG_LEVEL",
     .kind = PS_FLAG_LOG_LEVEL,
     .offset = offsetof(struct ps_server_config, log_level),
     .arg = "LEVEL",
     .help = "debug, info, warn or error",
     .def = "info"},
    {.name = "log-format",
     .env = "PRESCALE_LOG_FORMAT",
     .kind = PS_FLAG_LOG_FORMAT,
     .offset = offsetof(struct ps_server_config, log_format),
     .arg = "FMT",
     .help = "text (logfmt) or json",
     .def = "text"},
};

static const struct ps_flags_spec server_spec = {
    .program = "prescale",
    .version = PS_VERSION,
    .about = "prescale is a KEDA external scaler that answers with the load it predicts `lookahead` ahead,\n"
             "learned from each workload's history in Prometheus.\n",
    .footer =
        "\n"
        "Subcommands (each has its own --help):\n"
        "  prescale backtest TRACE.csv [flags]   replay a trace through the forecasts and an HPA model\n"
        "  prescale probe --addr HOST:PORT ...   ask a running scaler what KEDA asks it\n",
    /* main.c runs the subcommands before the server's flags are parsed, so a word here is a typo. */
    .positional_note = "prescale has no subcommands yet",
    .flags = server_flags,
    .nflags = sizeof server_flags / sizeof server_flags[0],
};

void ps_server_config_defaults(struct ps_server_config *c) {
  memset(c, 0, sizeof *c);
  ps_flags_defaults(&server_spec, c);
}

int ps_server_config_parse(struct ps_server_config *c, int argc, char **argv, FILE *out, char *err,
                           size_t errlen) {
  return ps_flags_parse(&server_spec, c, argc, argv, out, err, errlen);
}

/* ---- trigger metadata ---------------------------------------------------------------------------- */

enum key_id {
  K_SERVER,
  K_QUERY,
  K_THRESHOLD,
  K_ACTIVATION,
  K_LOOKAHEAD,
  K_STEP,
  K_MODEL,
  K_PERIOD,
  K_HISTORY,
  K_HEADROOM,
  K_IGNORE_NULL,
  K_METRIC_NAME,
  K_TIMEOUT,
  K_QUANTILE,
  K_MODE,
  NKEYS
};

static const char *const key_names[NKEYS] = {
    "serverAddress", "query",   "threshold", "activationThreshold", "lookahead",  "step",    "model",
    "period",        "history", "headroom",  "ignoreNullValues",    "metricName", "timeout", "quantile",
    "mode"};

/* Keys of KEDA's own `external` trigger: KEDA passes the whole metadata map, its own keys included, in
 * ScaledObjectRef.scalerMetadata (keda-docs, scalers/external.md), so they are not ours to reject. */
static const char *const keda_keys[] = {"scalerAddress", "tlsCertFile", "caCert",   "tlsClientCert",
                                        "tlsClientKey",  "unsafeSsl",   "enableTLS"};

static bool parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};
  for (size_t i = 0; i < 3; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = true;
      return true;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = false;
      return true;
    }
  }
  return false;
}

static bool valid_metric_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PS_MAX_METRIC_NAME) return false;
  for (; *s; s++) {
    char c = *s;
    if (!isalnum((unsigned char)c) && c != '_' && c != '.' && c != ':' && c != '-') return false;
  }
  return true;
}

static bool is_blank(const char *s) {
  for (; *s; s++)
    if (!isspace((unsigned char)*s)) return false;
  return true;
}

/* Rounds ms up to a multiple of step; false on overflow. */
static bool round_up(int64_t ms, int64_t step, int64_t *out) {
  int64_t r = ms % step;
  if (r == 0) {
    *out = ms;
    return true;
  }
  return !__builtin_add_overflow(ms, step - r, out);
}

int64_t ps_default_history_ms(int64_t step_ms, int64_t period_ms, bool detect) {
  const int64_t max_history = (int64_t)PS_MAX_HISTORY_POINTS * step_ms;
  int64_t hist = PS_MIN_HISTORY_MS;
  if (detect) {
    /* Detection: as much as PS_AUTO_PERIOD_HISTORY_MS when the step allows it, at least 1h. */
    int64_t auto_hist = PS_AUTO_PERIOD_HISTORY_MS < max_history ? PS_AUTO_PERIOD_HISTORY_MS : max_history;
    if (auto_hist > hist) hist = auto_hist;
  } else if (period_ms > INT64_MAX / 3) {
    hist = max_history;
  } else if (3 * period_ms > hist) {
    hist = 3 * period_ms;
  }
  if (!round_up(hist, step_ms, &hist) || hist > max_history) hist = max_history;
  return hist;
}

/* Parses the key's duration, which must lie in [min, max]; on error writes
 * `key: "v" is not a duration <what>`. */
static int get_duration(int k, const char *v, const char *what, int64_t min, int64_t max, int64_t *out,
                        char *err, size_t errlen) {
  if (ps_duration_parse(v, out) != 0 || *out < min || *out > max) {
    char q[PS_FLAGS_QUOTED_MAX];
    ps_flags_quote(q, sizeof q, v);
    return ps_flags_fail(err, errlen, "%s: %s is not a duration %s", key_names[k], q, what);
  }
  return 0;
}

static int parse_target(struct ps_target_config *c, const char *const val[NKEYS], const char *default_server,
                        char *err, size_t errlen) {
  char q[PS_FLAGS_QUOTED_MAX], d1[32], d2[32];
  int r;

  /* serverAddress, from the trigger or the server's --prometheus-url. */
  const char *server = val[K_SERVER] != NULL ? val[K_SERVER] : default_server;
  if (server == NULL) server = PS_DEFAULT_PROMETHEUS_URL;
  const char *why = ps_flags_url_problem(server);
  if (why != NULL) {
    ps_flags_quote(q, sizeof q, server);
    return ps_flags_fail(err, errlen, "%s: %s %s",
                         val[K_SERVER] != NULL ? "serverAddress" : "--prometheus-url", q, why);
  }
  size_t slen = strlen(server);
  while (slen > 7 && server[slen - 1] == '/') slen--; /* "http://h/" and "http://h" are one server */
  if ((c->server_address = strndup(server, slen)) == NULL) return UV_ENOMEM;

  if (val[K_QUERY] == NULL) return ps_flags_fail(err, errlen, "query: is required (a PromQL expression)");
  if (is_blank(val[K_QUERY])) return ps_flags_fail(err, errlen, "query: must not be empty");
  if ((c->query = strdup(val[K_QUERY])) == NULL) return UV_ENOMEM;

  if (val[K_THRESHOLD] == NULL) return ps_flags_fail(err, errlen, "threshold: is required (a number > 0)");
  if (!parse_number(val[K_THRESHOLD], &c->threshold) || !(c->threshold > 0)) {
    ps_flags_quote(q, sizeof q, val[K_THRESHOLD]);
    return ps_flags_fail(err, errlen, "threshold: %s is not a number > 0", q);
  }

  c->activation_threshold = 0;
  if (val[K_ACTIVATION] != NULL &&
      (!parse_number(val[K_ACTIVATION], &c->activation_threshold) || !(c->activation_threshold >= 0))) {
    ps_flags_quote(q, sizeof q, val[K_ACTIVATION]);
    return ps_flags_fail(err, errlen, "activationThreshold: %s is not a number >= 0", q);
  }

  c->step_ms = PS_DEFAULT_STEP_MS;
  if (val[K_STEP] != NULL && (r = get_duration(K_STEP, val[K_STEP], "from 1s to 1d (e.g. 15s, 1m)",
                                               PS_MIN_STEP_MS, PS_MAX_STEP_MS, &c->step_ms, err, errlen)))
    return r;
  const int64_t step = c->step_ms;
  ps_duration_format(step, d1, sizeof d1);

  c->lookahead_ms = PS_DEFAULT_LOOKAHEAD_MS;
  if (val[K_LOOKAHEAD] != NULL &&
      (r = get_duration(K_LOOKAHEAD, val[K_LOOKAHEAD], "from 0s to 1d (e.g. 30s, 5m)", 0, PS_MAX_LOOKAHEAD_MS,
                        &c->lookahead_ms, err, errlen)))
    return r;

  c->model = PS_MODEL_AUTO;
  if (val[K_MODEL] != NULL && ps_model_parse(val[K_MODEL], &c->model) != 0) {
    ps_flags_quote(q, sizeof q, val[K_MODEL]);
    return ps_flags_fail(err, errlen,
                         "model: %s is not a model (auto, holtwinters, seasonal, linear or last)", q);
  }
  /* last and linear forecast without a season: a period given anyway is checked, then unused. */
  const bool seasonless = c->model == PS_MODEL_LAST || c->model == PS_MODEL_LINEAR;

  c->period_ms = 0; /* "auto": the engine detects it from the history */
  bool period_auto = true;
  if (val[K_PERIOD] != NULL && strcmp(val[K_PERIOD], "auto") != 0) {
    int64_t period;
    if ((r = get_duration(K_PERIOD, val[K_PERIOD], "or auto (e.g. 1d, 1h, 7d)", 0, INT64_MAX, &period, err,
                          errlen)))
      return r;
    ps_flags_quote(q, sizeof q, val[K_PERIOD]);
    if (!seasonless) {
      if (period / 2 < step)
        return ps_flags_fail(err, errlen, "period: %s must be at least 2 steps (step is %s)", q, d1);
      if (period % step != 0)
        return ps_flags_fail(err, errlen, "period: %s is not a multiple of step (%s)", q, d1);
      c->period_ms = period;
      period_auto = false;
    }
  }

  /* history: enough points to look one period back (or to detect one), capped so one target costs at
   * most PS_MAX_HISTORY_POINTS steps. */
  const int64_t max_history = (int64_t)PS_MAX_HISTORY_POINTS * step;
  if (val[K_HISTORY] != NULL) {
    int64_t hist;
    if ((r = get_duration(K_HISTORY, val[K_HISTORY], "(e.g. 3d, 12h)", 0, INT64_MAX, &hist, err, errlen)))
      return r;
    ps_flags_quote(q, sizeof q, val[K_HISTORY]);
    if (hist <= 0) return ps_flags_fail(err, errlen, "history: %s must be more than 0", q);
    if (!round_up(hist, step, &c->history_ms) || c->history_ms > max_history) {
      ps_duration_format(max_history, d2, sizeof d2);
      return ps_flags_fail(
          err, errlen,
          "history: %s is more than %d points at step %s; the maximum is %s (raise step or shorten "
          "history)",
          q, PS_MAX_HISTORY_POINTS, d1, d2);
    }
    if (c->history_ms < c->period_ms) {
      ps_duration_format(c->period_ms, d2, sizeof d2);
      return ps_flags_fail(err, errlen, "history: %s is shorter than period (%s)", q, d2);
    }
  } else {
    int64_t hist = ps_default_history_ms(step, c->period_ms, period_auto && !seasonless);
    if (hist < c->period_ms) {
      ps_flags_quote(q, sizeof q, val[K_PERIOD]);
      ps_duration_format(max_history, d2, sizeof d2);
      return ps_flags_fail(
          err, errlen, "period: %s needs more than %d points of history at step %s (at most %s); raise step",
          q, PS_MAX_HISTORY_POINTS, d1, d2);
    }
    c->history_ms = hist;
  }

  c->quantile = PS_DEFAULT_QUANTILE;
  if (val[K_QUANTILE] != NULL &&
      (!parse_number(val[K_QUANTILE], &c->quantile) ||
       !(c->quantile == 0 || (c->quantile >= PS_MIN_QUANTILE && c->quantile < 1)))) {
    ps_flags_quote(q, sizeof q, val[K_QUANTILE]);
    return ps_flags_fail(err, errlen,
                         "quantile: %s is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)", q);
  }
  if (c->quantile == 0) c->quantile = 0; /* -0 reads as none too */

  c->shadow = false;
  if (val[K_MODE] != NULL) {
    if (strcmp(val[K_MODE], "shadow") == 0) {
      c->shadow = true;
    } else if (strcmp(val[K_MODE], "normal") != 0) {
      ps_flags_quote(q, sizeof q, val[K_MODE]);
      return ps_flags_fail(err, errlen, "mode: %s is not a mode (normal or shadow)", q);
    }
  }

  c->headroom = 0;
  if (val[K_HEADROOM] != NULL && (!parse_number(val[K_HEADROOM], &c->headroom) || !(c->headroom >= 0))) {
    ps_flags_quote(q, sizeof q, val[K_HEADROOM]);
    return ps_flags_fail(err, errlen, "headroom: %s is not a number >= 0 (e.g. 0.2 for +20%%)", q);
  }

  c->ignore_null_values = true;
  if (val[K_IGNORE_NULL] != NULL && !parse_bool(val[K_IGNORE_NULL], &c->ignore_null_values)) {
    ps_flags_quote(q, sizeof q, val[K_IGNORE_NULL]);
    return ps_flags_fail(err, errlen, "ignoreNullValues: %s is not a boolean (true or false)", q);
  }

  const char *mname = val[K_METRIC_NAME] != NULL ? val[K_METRIC_NAME] : PS_DEFAULT_METRIC_NAME;
  if (!valid_metric_name(mname)) {
    ps_flags_quote(q, sizeof q, mname);
    return ps_flags_fail(err, errlen, "metricName: %s must be 1 to %d letters, digits, '_', '.', ':' or '-'",
                         q, PS_MAX_METRIC_NAME);
  }
  if ((c->metric_name = strdup(mname)) == NULL) return UV_ENOMEM;

  c->timeout_ms = PS_DEFAULT_TIMEOUT_MS;
  if (val[K_TIMEOUT] != NULL &&
      (r = get_duration(K_TIMEOUT, val[K_TIMEOUT], "from 100ms to 1m (e.g. 3s)", PS_MIN_TIMEOUT_MS,
                        PS_MAX_TIMEOUT_MS, &c->timeout_ms, err, errlen)))
    return r;
  return 0;
}

int ps_target_config_parse(struct ps_target_config *out, const struct ps_kv *md, size_t n,
                           const char *default_server, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err != NULL && errlen > 0) err[0] = '\0';
  const char *val[NKEYS] = {0};
  char q[PS_FLAGS_QUOTED_MAX];

  /* KEDA sends a map, so a key appears once; should a caller repeat one, the last wins. */
  for (size_t i = 0; i < n; i++) {
    const char *k = md[i].key, *v = md[i].value != NULL ? md[i].value : "";
    if (k == NULL) return ps_flags_fail(err, errlen, "metadata: a key is missing");
    int id = -1;
    for (int j = 0; j < NKEYS; j++)
      if (strcmp(k, key_names[j]) == 0) id = j;
    size_t vlen = strlen(v);
    if (id >= 0 && vlen > PS_MAX_METADATA_VALUE)
      return ps_flags_fail(err, errlen, "%s: the value is %zu bytes; the maximum is %d", key_names[id], vlen,
                           PS_MAX_METADATA_VALUE);
    if (id >= 0) {
      val[id] = v;
      continue;
    }
    bool keda = false;
    for (size_t j = 0; j < sizeof keda_keys / sizeof keda_keys[0]; j++)
      if (strcmp(k, keda_keys[j]) == 0) keda = true;
    if (keda) continue;
    ps_flags_quote(q, sizeof q, k);
    return ps_flags_fail(
        err, errlen,
        "unknown metadata key %s (known: serverAddress, query, threshold, activationThreshold, "
        "lookahead, step, model, period, history, headroom, quantile, mode, ignoreNullValues, "
        "metricName, timeout)",
        q);
  }

  int r = parse_target(out, val, default_server, err, errlen);
  if (r != 0) ps_target_config_free(out);
  return r;
}

void ps_target_config_free(struct ps_target_config *c) {
  free(c->server_address);
  free(c->query);
  free(c->metric_name);
  c->server_address = c->query = c->metric_name = NULL;
}
