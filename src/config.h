/* Server options (flags and environment) and trigger metadata -> a validated target config. */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "duration.h" /* every duration here is in ps_duration_parse syntax */
#include "forecast/models.h"
#include "kv_list.h"
#include "log.h"

/* ---- server options ---------------------------------------------------------------------------- */

#define PS_DEFAULT_GRPC_LISTEN    "0.0.0.0:6000"
#define PS_DEFAULT_HTTP_LISTEN    "0.0.0.0:8080"
#define PS_DEFAULT_PROMETHEUS_URL "http://127.0.0.1:9090"
/* The other defaults are the flag table's (config.c), which both --help and ps_server_config_defaults
 * read. */
#define PS_MAX_SHUTDOWN_GRACE_MS  (10 * 60 * 1000) /* beyond this it is a typo, not a drain */

/* PS_VERSION (a string) is defined in one place only: meson.build's project(version:), which meson passes
 * to every C file as -DPS_VERSION. */

#define PS_MIN_GRPC_MAX_MSG 1024u /* --grpc-max-msg bounds */
#define PS_MAX_GRPC_MAX_MSG (1024u << 20)
#define PS_MAX_MAX_TARGETS  1000000 /* --max-targets upper bound */
#define PS_MAX_MAX_CONNS    1000000 /* --max-conns upper bound (the descriptor limit lowers it further) */
#define PS_MIN_GRPC_IDLE_MS 1000    /* --grpc-idle-timeout bounds */
#define PS_MAX_GRPC_IDLE_MS (24LL * 3600 * 1000)

/* --max-connection-age and --max-connection-age-grace upper bounds (0 is accepted by both). */
#define PS_MAX_CONN_AGE_MS       (24LL * 3600 * 1000)
#define PS_MAX_CONN_AGE_GRACE_MS (3600 * 1000)

/* Request memory (docs/reliability.md): --grpc-max-buffered and --grpc-request-timeout bounds. */
#define PS_MIN_GRPC_MAX_BUFFERED       (64u << 10)
#define PS_MAX_GRPC_MAX_BUFFERED       ((size_t)64 << 30)
#define PS_MAX_GRPC_REQUEST_TIMEOUT_MS (10 * 60 * 1000)
/* --grpc-max-streams upper bound: each open stream holds a call (~1.5 KiB) and nghttp2's stream. */
#define PS_MAX_GRPC_MAX_STREAMS        65536

struct ps_prom_config;

struct ps_server_config {
  const char *grpc_listen; /* host:port, [v6]:port; not owned (argv/env/literal) */
  const char *http_listen;
  const char *prometheus_url; /* default serverAddress */
  /* --prometheus-config: the file's path (NULL: none), and what main.c loaded from it before the loop
   * runs (prom_config.h; owned by main.c, NULL without a file): TLS, credentials and headers per server. */
  const char *prometheus_config;
  const struct ps_prom_config *prom_config;
  const char *tls_cert; /* --tls-cert, --tls-key: both or neither; NULL: the gRPC port is h2c */
  const char *tls_key;
  const char *tls_client_ca; /* --tls-client-ca: NULL, or client certificates are required (mTLS) */
  uint64_t first_load_timeout_ms;
  uint64_t stale_after_ms; /* 0: 3 x the target's step */
  uint64_t target_idle_ms;
  size_t grpc_max_msg;
  size_t max_targets;             /* beyond it new targets get RESOURCE_EXHAUSTED */
  uint64_t shutdown_grace_ms;     /* drain deadline after SIGTERM; 0 = end every call at once */
  size_t prometheus_max_inflight; /* requests in flight per Prometheus server; the rest queue */
  size_t max_conns;               /* per listener (PS_NET_MAX_CONNS), lowered to fit RLIMIT_NOFILE */
  uint64_t grpc_idle_ms;          /* PS_H2_IDLE_TIMEOUT_MS: a gRPC connection without a call is closed */
  uint64_t max_conn_age_ms;       /* PS_H2_MAX_AGE_MS: a gRPC connection this old gets GOAWAY; 0 = never */
  uint64_t max_conn_age_grace_ms; /* PS_H2_MAX_AGE_GRACE_MS: then what it still has open is cut off */
  enum ps_log_level log_level;
  enum ps_log_format log_format;

  /* request memory (h2_conn.h: PS_H2_MAX_BUFFERED_DEFAULT, PS_H2_REQUEST_TIMEOUT_MS) */
  size_t grpc_max_buffered;         /* request bytes buffered on all connections */
  uint64_t grpc_request_timeout_ms; /* a request must arrive whole this soon after its headers */
  size_t grpc_max_streams;          /* PS_H2_MAX_CONCURRENT_STREAMS: streams open per connection */
};

/* Every field to its flag's default, as --help shows it. */
void ps_server_config_defaults(struct ps_server_config *c);
/* Reads PRESCALE_* environment variables (PRESCALE_GRPC_LISTEN, ...), then flags, which win.
 * Flags: --grpc-listen, --http-listen, --prometheus-url, --prometheus-config, --first-load-timeout,
 * --stale-after, --target-idle, --tls-cert, --tls-key, --tls-client-ca, --grpc-max-msg, --grpc-max-buffered,
 * --grpc-request-timeout, --grpc-max-streams, --max-targets, --prometheus-max-inflight, --shutdown-grace,
 * --max-conns, --grpc-idle-timeout, --max-connection-age, --max-connection-age-grace, --log-level,
 * --log-format (each `--flag V` or `--flag=V`).
 * Returns 0; 1 when --help was given (usage already printed to `out`); 2 for --version (printed);
 * UV_EINVAL with a one-line message in err naming the flag and the value (--tls-cert without --tls-key, or
 * the other way round, too; the files are read later, by tls_files.c). */
int ps_server_config_parse(struct ps_server_config *c, int argc, char **argv, FILE *out, char *err,
                           size_t errlen);

/* ---- trigger metadata --------------------------------------------------------------------------- */

#define PS_MIN_STEP_MS             1000
#define PS_MAX_STEP_MS             (24LL * 3600 * 1000)
/* Defaults are written as a user would write them: the trigger key table (config_trigger.c) reads them
 * with the key's own rule, and `prescale backtest` shows and reads the same text for its flags. */
#define PS_DEFAULT_STEP            "15s"
#define PS_DEFAULT_LOOKAHEAD       "30s"
#define PS_DEFAULT_TIMEOUT         "3s"
#define PS_DEFAULT_MODEL           "auto"
#define PS_DEFAULT_PERIOD          "auto"
#define PS_DEFAULT_HEADROOM        "0"
#define PS_DEFAULT_METRIC_NAME     "prescale"
#define PS_MAX_METRIC_NAME         200 /* bytes of metricName */
#define PS_MAX_LOOKAHEAD_MS        (24LL * 3600 * 1000)
#define PS_MAX_HISTORY_POINTS      100000 /* per target: 8 bytes each, so at most 800 KB of history */
#define PS_MIN_HISTORY_MS          (3600 * 1000)
#define PS_MIN_TIMEOUT_MS          100
#define PS_MAX_TIMEOUT_MS          60000
#define PS_MAX_METADATA_VALUE      8192 /* bytes; longer values are rejected */
/* KEDA's prometheus scaler keys (config_prom.c). customHeaders' lines together are at most this many
 * bytes, half of what the HTTP client takes (PS_HTTP_MAX_EXTRA_HEADERS), so that the credentials and
 * headers of --prometheus-config always fit beside them; entries and their sizes are bounded by
 * kv_list.h (PS_KV_LIST_MAX_*). */
#define PS_MAX_CUSTOM_HEADERS      8192 /* bytes of customHeaders as header lines */
#define PS_MAX_NAMESPACE           253  /* bytes of `namespace` (a DNS subdomain's length) */
/* History loaded by default when the period is detected ("period: auto"): a daily season needs two
 * whole days to be told apart from noise, and a week plus a day holds every weekday once with one day
 * to compare it with, so weekend days do not pass for a broken season. Capped at PS_MAX_HISTORY_POINTS
 * steps (8d needs a step of at least 7s); never less than PS_MIN_HISTORY_MS. */
#define PS_AUTO_PERIOD_HISTORY_MS  (8LL * 24 * 3600 * 1000)
#define PS_MIN_QUANTILE            0.5 /* quantile: 0 (none) or in [PS_MIN_QUANTILE, 1) */
/* The default margin of the server and the backtest is a target coverage (targetCoverage): a forecast
 * right on average is below the window's actual peak about half the time, and under-provisioning is what a
 * proactive scaler is for. 0.82 is read off the cost curves of the shared traces (docs/forecasting.md,
 * "Choosing the default"): at or below the seed's pod-seconds with at most half its under-provisioning on
 * nasa and worldcup98 (no setting gets there on twitter and azure). `quantile`, when set, replaces it. */
#define PS_DEFAULT_TARGET_COVERAGE 0.82
/* targetCoverage: in (0, 1), exclusive (forecast/coverage.h); PS_DEFAULT_TARGET_COVERAGE unless `quantile`
 * is set. Both set, the trigger is refused in these words (`quantile: "0.9" <words>`; the backtest's flags
 * alike). */
#define PS_COVERAGE_BOTH_WORDS                                                                               \
  "cannot be set with targetCoverage, which tunes the same margin itself (set one of them)"
#define PS_STR_(x) #x
#define PS_STR(x)  PS_STR_(x) /* PS_STR(PS_DEFAULT_TARGET_COVERAGE): "0.82", for a flag table */

struct ps_kv {
  const char *key;
  const char *value;
};

struct ps_target_config {
  char *server_address; /* owned; base URL without a trailing '/', path prefix allowed */
  char *query;          /* owned */
  char *metric_name;    /* owned */
  double threshold;     /* > 0 */
  double activation_threshold;
  double headroom; /* >= 0 */
  int64_t lookahead_ms;
  int64_t step_ms;
  int64_t period_ms;  /* a multiple of step (>= 2 steps); 0 = detect it ("auto"), or no season (model
                       * last and linear ignore the period) */
  int64_t history_ms; /* a multiple of step */
  int64_t timeout_ms;
  enum ps_model model;    /* default PS_MODEL_AUTO */
  double quantile;        /* 0 = none (the default); else in [0.5, 1): add that quantile of the model's own
                           * errors; target_coverage is then 0 */
  double target_coverage; /* 0 = none (quantile given); else in (0, 1): the margin is tuned online so that
                           * this fraction of the lookahead windows is covered (forecast/coverage.h);
                           * default PS_DEFAULT_TARGET_COVERAGE */
  bool shadow;            /* mode: shadow: answer the current value, export the forecast in /metrics only */
  bool ignore_null_values;
  /* KEDA's prometheus scaler keys (config_prom.c); all of them are part of what is asked of Prometheus,
   * so of a fetch's identity (target_fetch.c). */
  char *prom_namespace; /* namespace: the `namespace` query parameter (Thanos tenancy); NULL: none */
  struct ps_kv_list query_params; /* queryParameters: extra query parameters, sorted by key */
  char *custom_headers; /* customHeaders as "Name: value\r\n" lines (ps_http_opts.headers); NULL: none */
  bool unsafe_ssl;      /* unsafeSsl: do not verify an https Prometheus's certificate */
};

/* Validates the metadata into `out` (zeroed first). Keys are KEDA's trigger metadata keys (README).
 * On error returns UV_EINVAL (or UV_ENOMEM) and writes one line to err naming the key and the value,
 * e.g. `threshold: "abc" is not a number > 0` (customHeaders and queryParameters name the entry and its
 * key, never a value: a header may carry a token); `out` is then left freed. Unknown keys are errors,
 * except the keys of KEDA's own `external` trigger (scalerAddress, tlsCertFile, caCert, tlsClientCert,
 * tlsClientKey, enableTLS), which KEDA passes along in scalerMetadata and which are ignored; unsafeSsl,
 * which the external trigger shares with the prometheus scaler, is read as the prometheus scaler's.
 * default_server (normally --prometheus-url) is used when serverAddress is absent; NULL means
 * PS_DEFAULT_PROMETHEUS_URL. history_ms defaults to max(3 x period, 1h) for a given period, 1h for models
 * last and linear (no season), and max(1h, min(PS_AUTO_PERIOD_HISTORY_MS, PS_MAX_HISTORY_POINTS steps))
 * when the period is detected; capped at PS_MAX_HISTORY_POINTS steps; both given and default values are
 * rounded up to a multiple of step. */
int ps_target_config_parse(struct ps_target_config *out, const struct ps_kv *md, size_t n,
                           const char *default_server, char *err, size_t errlen);
void ps_target_config_free(struct ps_target_config *c);

/* config_prom.c: namespace, queryParameters and customHeaders (each NULL when absent) into c's fields,
 * with KEDA's syntax (kv_list.h); 0, or UV_EINVAL / UV_ENOMEM with one line in err naming the key. */
int ps_trigger_prom_keys_parse(struct ps_target_config *c, const char *ns, const char *query_params,
                               const char *custom_headers, char *err, size_t errlen);
void ps_trigger_prom_keys_free(struct ps_target_config *c);

/* One value of a trigger key that takes a number, a duration, a period, a boolean, a model or a mode
 * (not serverAddress, query or metricName), checked by that key's row of the key table and stored
 * into `field`, which has the type of the key's ps_target_config member (double; int64_t ms, the period
 * "auto" as 0; bool; enum ps_model). Returns NULL, or what is wrong worded to follow the quoted value
 * (`"x" is not a number > 0`), exactly as ps_target_config_parse words it; nothing is stored then.
 * `prescale backtest` reads its trigger-like flags with it (a ps_flag_check_cb), so that bounds, defaults
 * and words cannot drift apart. The checks against the step are ps_trigger_*_problem. */
const char *ps_trigger_value_check(const char *key, const char *value, void *field);
/* What is wrong with a period (> 0) at step_ms, written into buf and returned: not at least 2 steps, or not
 * a multiple of the step; NULL when it is fine. Worded to follow the quoted period. */
const char *ps_trigger_period_problem(int64_t period_ms, int64_t step_ms, char *buf, size_t len);
/* Rounds history_ms (> 0) up to a multiple of step_ms into *rounded, and says (into buf, returned) what is
 * wrong with it: more than PS_MAX_HISTORY_POINTS steps, or shorter than period_ms (0: none); NULL when it
 * is fine. Worded to follow the quoted history. */
const char *ps_trigger_history_problem(int64_t history_ms, int64_t step_ms, int64_t period_ms,
                                       int64_t *rounded, char *buf, size_t len);
/* The default history at step_ms (> 0), as ps_target_config_parse sets it and `prescale backtest` sizes
 * its engines: detect (period auto, with a seasonal model) -> max(1h, min(PS_AUTO_PERIOD_HISTORY_MS,
 * PS_MAX_HISTORY_POINTS steps)); else max(3 x period_ms, 1h) (period_ms 0: no season, 1h); rounded up to
 * a multiple of the step, at most PS_MAX_HISTORY_POINTS steps. */
int64_t ps_default_history_ms(int64_t step_ms, int64_t period_ms, bool detect);

#endif
