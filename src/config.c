/* Server options: the flags table behind the flags, the PRESCALE_* environment variables and --help,
 * and the checks across flags. Trigger metadata is read in config_trigger.c (same module, config.h).
 * Every error is one line naming the flag and the offending value, with what would be accepted: it
 * reaches an operator's terminal. */
#include "config.h"

#include <string.h>
#include <uv.h>

#include "flags.h"
#include "http_client.h"

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
    {.name = "tls-cert",
     .env = "PRESCALE_TLS_CERT",
     .kind = PS_FLAG_STRING,
     .offset = offsetof(struct ps_server_config, tls_cert),
     .arg = "FILE",
     .help = "PEM certificate (chain) for TLS on the gRPC port, with --tls-key; reloaded when it "
             "changes" PS_FLAGS_MORE "(unset: h2c, no TLS)"},
    {.name = "tls-key",
     .env = "PRESCALE_TLS_KEY",
     .kind = PS_FLAG_STRING,
     .offset = offsetof(struct ps_server_config, tls_key),
     .arg = "FILE",
     .help = "PEM private key of --tls-cert (not encrypted)"},
    {.name = "tls-client-ca",
     .env = "PRESCALE_TLS_CLIENT_CA",
     .kind = PS_FLAG_STRING,
     .offset = offsetof(struct ps_server_config, tls_client_ca),
     .arg = "FILE",
     .help =
         "PEM CA certificate(s): require a client certificate signed by one (mTLS; KEDA's tlsClientCert)"},
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
    {.name = "prometheus-config",
     .env = "PRESCALE_PROMETHEUS_CONFIG",
     .kind = PS_FLAG_STRING, /* read and checked at startup by main.c (ps_prom_config_load) */
     .offset = offsetof(struct ps_server_config, prometheus_config),
     .arg = "FILE",
     .help = "YAML: TLS, credentials and headers per Prometheus server, by url prefix" PS_FLAGS_MORE
             "(docs/prometheus-config.md)"},
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
     .def = "4MiB", /* PS_GRPC_MAX_MSG_DEFAULT: grpc's own default receive limit */
     .min = PS_MIN_GRPC_MAX_MSG,
     .max = PS_MAX_GRPC_MAX_MSG},
    {.name = "grpc-max-buffered",
     .env = "PRESCALE_GRPC_MAX_BUFFERED",
     .kind = PS_FLAG_SIZE,
     .offset = offsetof(struct ps_server_config, grpc_max_buffered),
     .arg = "BYTES",
     .help = "request bytes buffered on all gRPC connections; beyond it RESOURCE_EXHAUSTED",
     .def = "64MiB", /* PS_H2_MAX_BUFFERED_DEFAULT (h2_conn.h) */
     .min = PS_MIN_GRPC_MAX_BUFFERED,
     .max = PS_MAX_GRPC_MAX_BUFFERED},
    {.name = "grpc-request-timeout",
     .env = "PRESCALE_GRPC_REQUEST_TIMEOUT",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, grpc_request_timeout_ms),
     .arg = "DUR",
     .help = "a gRPC request must arrive whole this soon after its headers; else DEADLINE_EXCEEDED",
     .def = "10s", /* PS_H2_REQUEST_TIMEOUT_MS (h2_conn.h) */
     .min = 1,
     .max = PS_MAX_GRPC_REQUEST_TIMEOUT_MS},
    {.name = "grpc-max-streams",
     .env = "PRESCALE_GRPC_MAX_STREAMS",
     .kind = PS_FLAG_COUNT,
     .offset = offsetof(struct ps_server_config, grpc_max_streams),
     .arg = "N",
     .help =
         "streams open at once per gRPC connection (SETTINGS_MAX_CONCURRENT_STREAMS); each StreamIsActive "
         "watch holds one",
     .def = "256", /* PS_H2_MAX_CONCURRENT_STREAMS (h2_conn.h) */
     .min = 1,
     .max = PS_MAX_GRPC_MAX_STREAMS},
    {.name = "max-targets",
     .env = "PRESCALE_MAX_TARGETS",
     .kind = PS_FLAG_COUNT,
     .offset = offsetof(struct ps_server_config, max_targets),
     .arg = "N",
     .help = "most targets tracked at once; beyond it new ones get RESOURCE_EXHAUSTED",
     .def = "10000",
     .min = 1,
     .max = PS_MAX_MAX_TARGETS},
    {.name = "prometheus-max-inflight",
     .env = "PRESCALE_PROMETHEUS_MAX_INFLIGHT",
     .kind = PS_FLAG_COUNT,
     .offset = offsetof(struct ps_server_config, prometheus_max_inflight),
     .arg = "N",
     .help = "most requests in flight to one Prometheus server (connections to it); the rest queue, first "
             "loads first",
     .def = "16", /* PS_HTTP_DEFAULT_MAX_INFLIGHT */
     .min = 1,
     .max = PS_HTTP_MAX_MAX_INFLIGHT},
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
    {.name = "max-conns",
     .env = "PRESCALE_MAX_CONNS",
     .kind = PS_FLAG_COUNT,
     .offset = offsetof(struct ps_server_config, max_conns),
     .arg = "N",
     .help = "connections per listener; at it a new one evicts the longest-idle one" PS_FLAGS_MORE
             "(lowered to fit the descriptor limit, ulimit -n)",
     .def = "1024", /* PS_NET_MAX_CONNS */
     .min = 1,
     .max = PS_MAX_MAX_CONNS},
    {.name = "grpc-idle-timeout",
     .env = "PRESCALE_GRPC_IDLE_TIMEOUT",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, grpc_idle_ms),
     .arg = "DUR",
     .help = "close a gRPC connection (GOAWAY) that has had no call in progress for this long",
     .def = "5m", /* PS_H2_IDLE_TIMEOUT_MS */
     .min = PS_MIN_GRPC_IDLE_MS,
     .max = PS_MAX_GRPC_IDLE_MS},
    {.name = "max-connection-age",
     .env = "PRESCALE_MAX_CONNECTION_AGE",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, max_conn_age_ms),
     .arg = "DUR",
     .help = "a gRPC connection this old (+-10 % jitter) gets GOAWAY and its client reconnects; 0 = never",
     .def = "30m", /* PS_H2_MAX_AGE_MS */
     .max = PS_MAX_CONN_AGE_MS,
     .example = "e.g. 30m; 0 = never"},
    {.name = "max-connection-age-grace",
     .env = "PRESCALE_MAX_CONNECTION_AGE_GRACE",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_server_config, max_conn_age_grace_ms),
     .arg = "DUR",
     .help = "after --max-connection-age, how long calls may take to finish; then the rest is cut off",
     .def = "30s", /* PS_H2_MAX_AGE_GRACE_MS */
     .max = PS_MAX_CONN_AGE_GRACE_MS,
     .example = "e.g. 30s; 0 = cut off at once"},
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
    .subcommands = "backtest, probe",
    .flags = server_flags,
    .nflags = sizeof server_flags / sizeof server_flags[0],
};

void ps_server_config_defaults(struct ps_server_config *c) {
  memset(c, 0, sizeof *c);
  ps_flags_defaults(&server_spec, c);
}

int ps_server_config_parse(struct ps_server_config *c, int argc, char **argv, FILE *out, char *err,
                           size_t errlen) {
  int r = ps_flags_parse(&server_spec, c, argc, argv, out, err, errlen);
  if (r != 0) return r;
  /* A certificate is useless without its key and the other way round; TLS half set up is a mistake to
   * report, not to start as h2c. */
  if ((c->tls_cert != NULL) != (c->tls_key != NULL)) {
    snprintf(err, errlen, "%s is set without %s: give both (TLS on the gRPC port) or neither (h2c)",
             c->tls_cert != NULL ? "--tls-cert" : "--tls-key",
             c->tls_cert != NULL ? "--tls-key" : "--tls-cert");
    return UV_EINVAL;
  }
  if (c->tls_client_ca != NULL && c->tls_cert == NULL) {
    snprintf(err, errlen,
             "--tls-client-ca needs --tls-cert and --tls-key (client certificates are a TLS feature)");
    return UV_EINVAL;
  }
  return 0;
}
