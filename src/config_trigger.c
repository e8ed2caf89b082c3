/* Trigger metadata -> a validated struct ps_target_config: the table of keys (type, field, default,
 * bounds), the checks across keys (season against step, history against the points budget) and the
 * helpers the backtest shares (ps_trigger_value_check and friends). Apart from config.c, which holds the
 * server's flags table, because the two share no code: flags are read by flags.c, trigger values here.
 * Still one module with config.c (declared in config.h, tested in tests/unit/test_config.c).
 * Every error is one line naming the key and the offending value, with what would be accepted: it reaches,
 * through grpc-message, a ScaledObject's status. */
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

/* Decimal syntax only: [+-] digits [. digits] [e [+-] digits], with at least one digit before the
 * exponent. strtod alone would also read hexadecimal ("0x10" as 16, "0x1p4"), "inf", "infinity" and
 * "nan", none of which a trigger value means. */
static bool is_decimal(const char *s) {
  size_t digits = 0;
  if (*s == '+' || *s == '-') s++;
  for (; isdigit((unsigned char)*s); s++) digits++;
  if (*s == '.')
    for (s++; isdigit((unsigned char)*s); s++) digits++;
  if (digits == 0) return false;
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '+' || *s == '-') s++;
    if (!isdigit((unsigned char)*s)) return false;
    while (isdigit((unsigned char)*s)) s++;
  }
  return *s == '\0';
}

/* What strtod reads but a trigger number is not: hexadecimal, inf, nan. */
#define NOT_DECIMAL_WORDS "is not a decimal number (hexadecimal, inf and nan are refused)"

/* strtod over the whole string, decimal and finite only ("0x10", "nan", "inf", "", " 1", "1x", "1e999"
 * are not numbers). */
static bool parse_number(const char *s, double *out) {
  if (s == NULL || !is_decimal(s)) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end != '\0' || errno == ERANGE || !isfinite(v)) return false;
  *out = v;
  return true;
}

/* ---- trigger metadata: the keys ------------------------------------------------------------------ */

/* How a key's value is read, and the type of the ps_target_config field it is stored in. */
enum key_type {
  KT_TEXT,     /* char *, owned: checked by parse_text (serverAddress, query) or by the row's text_ok */
  KT_NUMBER,   /* double: a finite decimal number (parse_number) in the row's range */
  KT_DURATION, /* int64_t ms: ps_duration_parse, in [min_ms, max_ms] */
  KT_PERIOD,   /* int64_t ms: "auto" (stored as 0) or a duration in [min_ms, max_ms] */
  KT_BOOL,     /* bool: true/false, 1/0, yes/no, in any case */
  KT_MODEL,    /* enum ps_model: ps_model_parse */
  KT_MODE,     /* bool (shadow): "normal" or "shadow" */
};

/* KT_NUMBER ranges: which ends are open, and whether 0 stands apart from the range. */
#define NUM_MIN_OPEN 1u /* > min rather than >= min */
#define NUM_MAX_OPEN 2u /* < max rather than <= max */
#define NUM_ZERO_OK  4u /* 0 is accepted too (quantile: 0 = none) */

/* One row per trigger key: its type, where it goes, its default and its bounds, so that the server, the
 * backtest (ps_trigger_value_check) and README's table cannot tell different stories. */
struct key_rule {
  const char *name;
  enum key_type type;
  size_t offset;          /* of the field in struct ps_target_config */
  const char *def;        /* read as if given when the key is absent; NULL: required, computed or none */
  const char *required;   /* when absent, `key: is required (<this>)`; NULL: optional */
  double min, max;        /* KT_NUMBER */
  unsigned num;           /* KT_NUMBER: NUM_* */
  int64_t min_ms, max_ms; /* KT_DURATION, KT_PERIOD */
  const char *words;      /* a refused value: `key: "v" <words>` */
  const char *words_low;  /* KT_DURATION: a duration below min_ms, when that reads better */
  bool keda_ms;           /* KT_DURATION: digits alone are milliseconds and 0 is the default, as KEDA's
                           * typed config reads a time.Duration (scalersconfig/typed_config.go) */
  bool (*text_ok)(const char *); /* KT_TEXT with a plain check (metricName) */
};

#define FIELD(f) offsetof(struct ps_target_config, f)

static bool valid_metric_name(const char *s);

/* Rows in the order they are checked: the first wrong key is the one reported. */
enum key_id {
  K_SERVER,
  K_QUERY,
  K_THRESHOLD,
  K_ACTIVATION,
  K_STEP,
  K_LOOKAHEAD,
  K_MODEL,
  K_PERIOD,
  K_HISTORY,
  K_QUANTILE,
  K_COVERAGE,
  K_MODE,
  K_HEADROOM,
  K_IGNORE_NULL,
  K_METRIC_NAME,
  K_TIMEOUT,
  K_NAMESPACE,
  K_QUERY_PARAMS,
  K_CUSTOM_HEADERS,
  K_UNSAFE_SSL,
  NKEYS
};

/* One row per key: name, type and field, then the default, the bounds and the words for a refused value. */
/* clang-format off */
static const struct key_rule keys[NKEYS] = {
    /* serverAddress defaults to the server's --prometheus-url, known only at parse time. */
    [K_SERVER] = {.name = "serverAddress", .type = KT_TEXT, .offset = FIELD(server_address)},
    [K_QUERY] = {.name = "query", .type = KT_TEXT, .offset = FIELD(query), .required = "a PromQL expression"},
    [K_THRESHOLD] = {.name = "threshold", .type = KT_NUMBER, .offset = FIELD(threshold),
                     .required = "a number > 0", .min = 0, .max = INFINITY, .num = NUM_MIN_OPEN,
                     .words = "is not a number > 0"},
    [K_ACTIVATION] = {.name = "activationThreshold", .type = KT_NUMBER, .offset = FIELD(activation_threshold),
                      .def = "0", .min = 0, .max = INFINITY, .words = "is not a number >= 0"},
    [K_STEP] = {.name = "step", .type = KT_DURATION, .offset = FIELD(step_ms),
                .def = PS_DEFAULT_STEP, .min_ms = PS_MIN_STEP_MS, .max_ms = PS_MAX_STEP_MS,
                .words = "is not a duration from 1s to 1d (e.g. 15s, 1m)"},
    [K_LOOKAHEAD] = {.name = "lookahead", .type = KT_DURATION, .offset = FIELD(lookahead_ms),
                     .def = PS_DEFAULT_LOOKAHEAD, .min_ms = 0, .max_ms = PS_MAX_LOOKAHEAD_MS,
                     .words = "is not a duration from 0s to 1d (e.g. 30s, 5m)"},
    [K_MODEL] = {.name = "model", .type = KT_MODEL, .offset = FIELD(model), .def = PS_DEFAULT_MODEL,
                 .words = "is not a model (auto, holtwinters, seasonal, linear, peak, analog or last)"},
    /* 0 is a duration here; check_season refuses it against the step, in words that say why. */
    [K_PERIOD] = {.name = "period", .type = KT_PERIOD, .offset = FIELD(period_ms), .def = PS_DEFAULT_PERIOD,
                  .min_ms = 0, .max_ms = INT64_MAX, .words = "is not a duration or auto (e.g. 1d, 1h, 7d)"},
    /* Default: ps_default_history_ms, from the step and the period. */
    [K_HISTORY] = {.name = "history", .type = KT_DURATION, .offset = FIELD(history_ms),
                   .min_ms = 1, .max_ms = INT64_MAX, .words = "is not a duration (e.g. 3d, 12h)",
                   .words_low = "must be more than 0"},
    [K_QUANTILE] = {.name = "quantile", .type = KT_NUMBER, .offset = FIELD(quantile),
                    .min = PS_MIN_QUANTILE, .max = 1,
                    .num = NUM_MAX_OPEN | NUM_ZERO_OK,
                    .words = "is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)"},
    /* The default margin, unless quantile is set (check_margin). */
    [K_COVERAGE] = {.name = "targetCoverage", .type = KT_NUMBER, .offset = FIELD(target_coverage),
                    .def = PS_STR(PS_DEFAULT_TARGET_COVERAGE), .min = 0, .max = 1, .num = NUM_MIN_OPEN | NUM_MAX_OPEN,
                    .words = "is not a number between 0 and 1, both excluded (e.g. 0.99: the answer covers "
                             "99% of the lookahead windows' peaks)"},
    [K_MODE] = {.name = "mode", .type = KT_MODE, .offset = FIELD(shadow), .def = "normal",
                .words = "is not a mode (normal or shadow)"},
    [K_HEADROOM] = {.name = "headroom", .type = KT_NUMBER, .offset = FIELD(headroom),
                    .def = PS_DEFAULT_HEADROOM, .min = 0, .max = INFINITY,
                    .words = "is not a number >= 0 (e.g. 0.2 for +20%)"},
    [K_IGNORE_NULL] = {.name = "ignoreNullValues", .type = KT_BOOL, .offset = FIELD(ignore_null_values),
                       .def = "true", .words = "is not a boolean (true or false)"},
    [K_METRIC_NAME] = {.name = "metricName", .type = KT_TEXT, .offset = FIELD(metric_name),
                       .def = PS_DEFAULT_METRIC_NAME, .text_ok = valid_metric_name,
                       .words = "must be 1 to " PS_STR(PS_MAX_METRIC_NAME)
                                " letters, digits, '_', '.', ':' or '-'"},
    [K_TIMEOUT] = {.name = "timeout", .type = KT_DURATION, .offset = FIELD(timeout_ms),
                   .def = PS_DEFAULT_TIMEOUT, .min_ms = PS_MIN_TIMEOUT_MS, .max_ms = PS_MAX_TIMEOUT_MS,
                   .keda_ms = true, .words = "is not a duration from 100ms to 1m (e.g. 3s)"},
    /* KEDA's prometheus scaler keys, read by ps_trigger_prom_keys_parse (config_prom.c). */
    [K_NAMESPACE] = {.name = "namespace", .type = KT_TEXT, .offset = FIELD(prom_namespace)},
    [K_QUERY_PARAMS] = {.name = "queryParameters", .type = KT_TEXT, .offset = FIELD(query_params)},
    [K_CUSTOM_HEADERS] = {.name = "customHeaders", .type = KT_TEXT, .offset = FIELD(custom_headers)},
    [K_UNSAFE_SSL] = {.name = "unsafeSsl", .type = KT_BOOL, .offset = FIELD(unsafe_ssl), .def = "false",
                      .words = "is not a boolean (true or false)"},
};
/* clang-format on */

/* Keys of KEDA's own `external` trigger: KEDA passes the whole metadata map, its own keys included, in
 * ScaledObjectRef.scalerMetadata (keda-docs, scalers/external.md), so they are not ours to reject.
 * unsafeSsl is one of them too, but it is also the prometheus scaler's key, read above: a trigger moved
 * from `prometheus` keeps its meaning (do not verify Prometheus's certificate). */
static const char *const keda_keys[] = {"scalerAddress", "tlsCertFile",  "caCert",
                                        "tlsClientCert", "tlsClientKey", "enableTLS"};

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

/* KEDA reads a time.Duration as Go's time.ParseDuration, or else as whole milliseconds, and a timeout of
 * 0 as "the default" (prometheus_scaler.go): digits alone are milliseconds here, 0 the default def.
 * False when v is not all digits (then it is read as a duration). */
static bool keda_millis(const char *v, const char *def, int64_t *ms) {
  size_t n = strspn(v, "0123456789");
  if (n == 0 || v[n] != '\0') return false;
  if (n > 15) { /* past any bound, and far from int64_t overflow */
    *ms = INT64_MAX;
    return true;
  }
  *ms = strtoll(v, NULL, 10);
  if (*ms == 0 && def != NULL && ps_duration_parse(def, ms) != 0) *ms = INT64_MAX;
  return true;
}

static bool in_range(const struct key_rule *k, double v) {
  if ((k->num & NUM_ZERO_OK) && v == 0) return true;
  bool above = (k->num & NUM_MIN_OPEN) ? v > k->min : v >= k->min;
  bool below = (k->num & NUM_MAX_OPEN) ? v < k->max : v <= k->max;
  return above && below;
}

/* Reads v by the row's type into `field`; NULL, or the row's words (nothing stored). */
static const char *check_value(const struct key_rule *k, const char *v, void *field) {
  double d;
  int64_t ms;
  bool b;
  switch (k->type) {
  case KT_NUMBER:
    if (!parse_number(v, &d)) {
      /* A value strtod would take (0x10, inf, nan) gets words that say why it is refused. */
      char *end;
      double x = strtod(v, &end);
      (void)x;
      return *v != '\0' && !isspace((unsigned char)*v) && *end == '\0' && !is_decimal(v) ? NOT_DECIMAL_WORDS
                                                                                         : k->words;
    }
    if (!in_range(k, d)) return k->words;
    *(double *)field = d == 0 ? 0 : d; /* -0 reads as 0 (quantile: none) */
    return NULL;
  case KT_PERIOD:
    if (strcmp(v, "auto") == 0) {
      *(int64_t *)field = 0;
      return NULL;
    }
    __attribute__((fallthrough)); /* any other period is a duration */
  case KT_DURATION:
    if (k->keda_ms && keda_millis(v, k->def, &ms)) {
      if (ms > k->max_ms) return k->words;
    } else if (ps_duration_parse(v, &ms) != 0 || ms > k->max_ms) {
      return k->words;
    }
    if (ms < k->min_ms) return k->words_low != NULL ? k->words_low : k->words;
    *(int64_t *)field = ms;
    return NULL;
  case KT_BOOL:
    if (!parse_bool(v, &b)) return k->words;
    *(bool *)field = b;
    return NULL;
  case KT_MODEL: return ps_model_parse(v, (enum ps_model *)field) == 0 ? NULL : k->words;
  case KT_MODE:
    if (strcmp(v, "shadow") != 0 && strcmp(v, "normal") != 0) return k->words;
    *(bool *)field = strcmp(v, "shadow") == 0;
    return NULL;
  case KT_TEXT: return k->text_ok != NULL && !k->text_ok(v) ? k->words : NULL;
  }
  return k->words;
}

const char *ps_trigger_value_check(const char *key, const char *value, void *field) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].name, key) == 0 && keys[i].type != KT_TEXT) return check_value(&keys[i], value, field);
  return "is not the value of a trigger key this parser knows"; /* a caller's mistake, caught by its tests */
}

static int key_fail(int id, const char *v, const char *words, char *err, size_t errlen) {
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, v);
  return ps_flags_fail(err, errlen, "%s: %s %s", keys[id].name, q, words);
}

/* ---- trigger metadata: checks across keys ------------------------------------------------------- */

const char *ps_trigger_period_problem(int64_t period_ms, int64_t step_ms, char *buf, size_t len) {
  char d[32];
  ps_duration_format(step_ms, d, sizeof d);
  if (period_ms / 2 < step_ms)
    snprintf(buf, len, "must be at least 2 steps (step is %s)", d);
  else if (period_ms % step_ms != 0)
    snprintf(buf, len, "is not a multiple of step (%s)", d);
  else
    return NULL;
  return buf;
}

const char *ps_trigger_history_problem(int64_t history_ms, int64_t step_ms, int64_t period_ms,
                                       int64_t *rounded, char *buf, size_t len) {
  const int64_t max_history = (int64_t)PS_MAX_HISTORY_POINTS * step_ms;
  char d1[32], d2[32];
  if (!round_up(history_ms, step_ms, rounded) || *rounded > max_history) {
    ps_duration_format(step_ms, d1, sizeof d1);
    ps_duration_format(max_history, d2, sizeof d2);
    snprintf(buf, len, "is more than %d points at step %s; the maximum is %s (raise step or shorten history)",
             PS_MAX_HISTORY_POINTS, d1, d2);
    return buf;
  }
  if (*rounded < period_ms) {
    ps_duration_format(period_ms, d2, sizeof d2);
    snprintf(buf, len, "is shorter than period (%s)", d2);
    return buf;
  }
  return NULL;
}

/* serverAddress (from the trigger or the server's --prometheus-url) and query: each its own words. */
static int parse_text(struct ps_target_config *c, const char *const val[NKEYS], const char *default_server,
                      char *err, size_t errlen) {
  const char *server = val[K_SERVER] != NULL ? val[K_SERVER] : default_server;
  if (server == NULL) server = PS_DEFAULT_PROMETHEUS_URL;
  const char *why = ps_flags_url_problem(server);
  if (why != NULL) {
    char q[PS_FLAGS_QUOTED_MAX];
    ps_flags_quote(q, sizeof q, server);
    return ps_flags_fail(err, errlen, "%s: %s %s",
                         val[K_SERVER] != NULL ? "serverAddress" : "--prometheus-url", q, why);
  }
  size_t slen = ps_flags_url_len(server); /* "http://h/" and "http://h" are one server */
  if ((c->server_address = strndup(server, slen)) == NULL) return UV_ENOMEM;

  if (val[K_QUERY] != NULL && is_blank(val[K_QUERY]))
    return ps_flags_fail(err, errlen, "query: must not be empty");
  if (val[K_QUERY] != NULL && (c->query = strdup(val[K_QUERY])) == NULL) return UV_ENOMEM;
  return 0;
}

/* Every other key by its row, in table order: its value or its default. */
static int parse_values(struct ps_target_config *c, const char *const val[NKEYS], char *err, size_t errlen) {
  for (int id = 0; id < NKEYS; id++) {
    const struct key_rule *k = &keys[id];
    const char *v = val[id] != NULL ? val[id] : k->def;
    if (val[id] == NULL && k->required != NULL)
      return ps_flags_fail(err, errlen, "%s: is required (%s)", k->name, k->required);
    if (v == NULL || id == K_SERVER || id == K_QUERY || id == K_NAMESPACE || id == K_QUERY_PARAMS ||
        id == K_CUSTOM_HEADERS)
      continue;
    void *field = (char *)c + k->offset;
    const char *why = check_value(k, v, field);
    if (why != NULL) return key_fail(id, v, why, err, errlen);
    if (k->type == KT_TEXT && (*(char **)field = strdup(v)) == NULL) return UV_ENOMEM;
  }
  return 0;
}

/* period and history against the step: a period is a whole number of steps (at least 2) and fits the
 * history; history is a whole number of steps, capped so one target costs at most PS_MAX_HISTORY_POINTS
 * steps. last, linear and peak forecast without a season: a period given anyway is checked, then unused. */
static int check_season(struct ps_target_config *c, const char *const val[NKEYS], char *err, size_t errlen) {
  const int64_t step = c->step_ms;
  const bool seasonless = ps_model_seasonless(c->model);
  const bool period_auto = val[K_PERIOD] == NULL || strcmp(val[K_PERIOD], "auto") == 0;
  char words[160], d1[32], d2[32];
  const char *why;
  if (seasonless) c->period_ms = 0;
  if (!seasonless && !period_auto &&
      (why = ps_trigger_period_problem(c->period_ms, step, words, sizeof words)))
    return key_fail(K_PERIOD, val[K_PERIOD], why, err, errlen);

  if (val[K_HISTORY] != NULL) {
    if ((why = ps_trigger_history_problem(c->history_ms, step, c->period_ms, &c->history_ms, words,
                                          sizeof words)))
      return key_fail(K_HISTORY, val[K_HISTORY], why, err, errlen);
    return 0;
  }
  c->history_ms = ps_default_history_ms(step, c->period_ms, period_auto && !seasonless);
  if (c->history_ms < c->period_ms) {
    ps_duration_format(step, d1, sizeof d1);
    ps_duration_format((int64_t)PS_MAX_HISTORY_POINTS * step, d2, sizeof d2);
    snprintf(words, sizeof words, "needs more than %d points of history at step %s (at most %s); raise step",
             PS_MAX_HISTORY_POINTS, d1, d2);
    return key_fail(K_PERIOD, val[K_PERIOD], words, err, errlen);
  }
  return 0;
}

/* targetCoverage tunes the margin that quantile sets: one of them, not both (README, docs/forecasting.md).
 * The default is a target coverage; a quantile given replaces it. */
static int check_margin(struct ps_target_config *c, const char *const val[NKEYS], char *err, size_t errlen) {
  if (val[K_QUANTILE] == NULL) return 0;
  if (val[K_COVERAGE] != NULL)
    return key_fail(K_QUANTILE, val[K_QUANTILE], PS_COVERAGE_BOTH_WORDS, err, errlen);
  c->target_coverage = 0;
  return 0;
}

static int parse_target(struct ps_target_config *c, const char *const val[NKEYS], const char *default_server,
                        char *err, size_t errlen) {
  int r = parse_text(c, val, default_server, err, errlen);
  if (r == 0)
    r = ps_trigger_prom_keys_parse(c, val[K_NAMESPACE], val[K_QUERY_PARAMS], val[K_CUSTOM_HEADERS], err,
                                   errlen);
  if (r == 0) r = parse_values(c, val, err, errlen);
  if (r == 0) r = check_margin(c, val, err, errlen);
  if (r == 0) r = check_season(c, val, err, errlen);
  return r;
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
      if (strcmp(k, keys[j].name) == 0) id = j;
    size_t vlen = strlen(v);
    if (id >= 0 && vlen > PS_MAX_METADATA_VALUE)
      return ps_flags_fail(err, errlen, "%s: the value is %zu bytes; the maximum is %d", keys[id].name, vlen,
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
        "lookahead, step, model, period, history, headroom, quantile, targetCoverage, mode, "
        "ignoreNullValues, "
        "metricName, timeout, namespace, queryParameters, customHeaders, unsafeSsl)",
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
  ps_trigger_prom_keys_free(c);
}
