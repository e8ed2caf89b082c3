#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "h2_conn.h"
#include "http_client.h"

static const char *const env_names[] = {
    "PRESCALE_GRPC_LISTEN",        "PRESCALE_HTTP_LISTEN", "PRESCALE_PROMETHEUS_URL",
    "PRESCALE_FIRST_LOAD_TIMEOUT", "PRESCALE_STALE_AFTER", "PRESCALE_TARGET_IDLE",
    "PRESCALE_GRPC_MAX_MSG",       "PRESCALE_MAX_TARGETS", "PRESCALE_SHUTDOWN_GRACE",
    "PRESCALE_LOG_LEVEL",          "PRESCALE_LOG_FORMAT",  "PRESCALE_PROMETHEUS_MAX_INFLIGHT"};
static const char *const request_memory_env_names[] = {"PRESCALE_GRPC_MAX_BUFFERED",
                                                       "PRESCALE_GRPC_REQUEST_TIMEOUT"};

static void clear_env(void) {
  for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++) unsetenv(env_names[i]);
  for (size_t i = 0; i < 2; i++) unsetenv(request_memory_env_names[i]);
}

TestSuite(config, .init = clear_env);

/* ---- server options ------------------------------------------------------------------------------ */

struct run {
  int rc;
  char err[512];
  char *out;
  size_t outlen;
  struct ps_server_config c;
};

static void run_args(struct run *r, char **argv) {
  int argc = 0;
  while (argv[argc] != NULL) argc++;
  ps_server_config_defaults(&r->c);
  FILE *f = open_memstream(&r->out, &r->outlen);
  r->err[0] = 'X';
  r->err[1] = '\0';
  r->rc = ps_server_config_parse(&r->c, argc, argv, f, r->err, sizeof r->err);
  fclose(f);
}

#define RUN(r, ...)                                                                                          \
  do {                                                                                                       \
    char *argv_[] = {"prescale", __VA_ARGS__, NULL};                                                         \
    run_args(&(r), argv_);                                                                                   \
  } while (0)

Test(config, server_defaults) {
  struct run r;
  char *argv[] = {"prescale", NULL};
  run_args(&r, argv);
  cr_assert_eq(r.rc, 0);
  cr_assert_str_eq(r.err, "");
  cr_assert_str_eq(r.c.grpc_listen, "0.0.0.0:6000");
  cr_assert_str_eq(r.c.http_listen, "0.0.0.0:8080");
  cr_assert_str_eq(r.c.prometheus_url, "http://127.0.0.1:9090");
  cr_assert_eq(r.c.first_load_timeout_ms, 5000);
  cr_assert_eq(r.c.stale_after_ms, 0);
  cr_assert_eq(r.c.target_idle_ms, 600000);
  cr_assert_eq(r.c.grpc_max_msg, 4u << 20);
  cr_assert_eq(r.c.max_targets, 10000);
  cr_assert_eq(r.c.prometheus_max_inflight, PS_HTTP_DEFAULT_MAX_INFLIGHT);
  cr_assert_eq(r.c.shutdown_grace_ms, 5000);
  cr_assert_eq(r.c.log_level, PS_LOG_INFO);
  cr_assert_eq(r.c.log_format, PS_LOG_TEXT);
  cr_assert_eq(r.outlen, 0);
  free(r.out);
}

static void check_all_set(const struct ps_server_config *c) {
  cr_assert_str_eq(c->grpc_listen, "127.0.0.1:0");
  cr_assert_str_eq(c->http_listen, "[::1]:9999");
  cr_assert_str_eq(c->prometheus_url, "http://prom:9090/sub/");
  cr_assert_eq(c->first_load_timeout_ms, 1500);
  cr_assert_eq(c->stale_after_ms, 120000);
  cr_assert_eq(c->target_idle_ms, 3600000);
  cr_assert_eq(c->grpc_max_msg, 65536);
  cr_assert_eq(c->max_targets, 7);
  cr_assert_eq(c->shutdown_grace_ms, 12500);
  cr_assert_eq(c->log_level, PS_LOG_DEBUG);
  cr_assert_eq(c->log_format, PS_LOG_JSON);
}

Test(config, every_flag_separate_value) {
  struct run r;
  RUN(r, "--grpc-listen", "127.0.0.1:0", "--http-listen", "[::1]:9999", "--prometheus-url",
      "http://prom:9090/sub/", "--first-load-timeout", "1.5s", "--stale-after", "2m", "--target-idle", "1h",
      "--grpc-max-msg", "64KiB", "--max-targets", "7", "--shutdown-grace", "12.5s", "--log-level", "debug",
      "--log-format", "json");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  check_all_set(&r.c);
  free(r.out);
}

Test(config, every_flag_equals_form) {
  struct run r;
  RUN(r, "--grpc-listen=127.0.0.1:0", "--http-listen=[::1]:9999", "--prometheus-url=http://prom:9090/sub/",
      "--first-load-timeout=1500ms", "--stale-after=120", "--target-idle=60m", "--grpc-max-msg=65536",
      "--max-targets=7", "--shutdown-grace=12500ms", "--log-level=debug", "--log-format=json");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  check_all_set(&r.c);
  free(r.out);
}

Test(config, every_env_var) {
  setenv("PRESCALE_GRPC_LISTEN", "127.0.0.1:0", 1);
  setenv("PRESCALE_HTTP_LISTEN", "[::1]:9999", 1);
  setenv("PRESCALE_PROMETHEUS_URL", "http://prom:9090/sub/", 1);
  setenv("PRESCALE_FIRST_LOAD_TIMEOUT", "1.5s", 1);
  setenv("PRESCALE_STALE_AFTER", "2m", 1);
  setenv("PRESCALE_TARGET_IDLE", "1h", 1);
  setenv("PRESCALE_GRPC_MAX_MSG", "64KiB", 1);
  setenv("PRESCALE_MAX_TARGETS", "7", 1);
  setenv("PRESCALE_SHUTDOWN_GRACE", "12.5", 1);
  setenv("PRESCALE_LOG_LEVEL", "debug", 1);
  setenv("PRESCALE_LOG_FORMAT", "json", 1);
  struct run r;
  char *argv[] = {"prescale", NULL};
  run_args(&r, argv);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  check_all_set(&r.c);
  free(r.out);
}

Test(config, flags_win_over_env) {
  setenv("PRESCALE_GRPC_LISTEN", "1.2.3.4:1", 1);
  setenv("PRESCALE_MAX_TARGETS", "5", 1);
  setenv("PRESCALE_LOG_LEVEL", "error", 1);
  struct run r;
  RUN(r, "--grpc-listen", "127.0.0.1:7", "--log-level=warn");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.c.grpc_listen, "127.0.0.1:7");
  cr_assert_eq(r.c.log_level, PS_LOG_WARN);
  cr_assert_eq(r.c.max_targets, 5); /* env applies where no flag was given */
  free(r.out);
}

Test(config, empty_env_is_unset) {
  setenv("PRESCALE_LOG_LEVEL", "", 1);
  struct run r;
  char *argv[] = {"prescale", NULL};
  run_args(&r, argv);
  cr_assert_eq(r.rc, 0);
  cr_assert_eq(r.c.log_level, PS_LOG_INFO);
  free(r.out);
}

/* TLS on the gRPC port: the paths are stored (tls_files.c reads them); half a pair is an error. */
Test(config, tls_flags_come_in_pairs) {
  struct run r;
  RUN(r, "--tls-cert", "/c.pem", "--tls-key=/k.pem", "--tls-client-ca", "/ca.pem");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.c.tls_cert, "/c.pem");
  cr_assert_str_eq(r.c.tls_key, "/k.pem");
  cr_assert_str_eq(r.c.tls_client_ca, "/ca.pem");
  free(r.out);
  RUN(r, "--grpc-listen", "127.0.0.1:0");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_null(r.c.tls_cert, "no TLS by default: the port stays h2c");
  cr_assert_null(r.c.tls_key);
  cr_assert_null(r.c.tls_client_ca);
  free(r.out);
  RUN(r, "--tls-cert", "/c.pem");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err,
                   "--tls-cert is set without --tls-key: give both (TLS on the gRPC port) or neither (h2c)");
  free(r.out);
  setenv("PRESCALE_TLS_KEY", "/k.pem", 1);
  RUN(r, "--grpc-listen", "127.0.0.1:0");
  unsetenv("PRESCALE_TLS_KEY");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err,
                   "--tls-key is set without --tls-cert: give both (TLS on the gRPC port) or neither (h2c)");
  free(r.out);
  setenv("PRESCALE_TLS_CLIENT_CA", "/ca.pem", 1);
  RUN(r, "--grpc-listen", "127.0.0.1:0");
  unsetenv("PRESCALE_TLS_CLIENT_CA");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err,
                   "--tls-client-ca needs --tls-cert and --tls-key (client certificates are a TLS feature)");
  free(r.out);
}

Test(config, grpc_max_msg_sizes) {
  static const struct {
    const char *v;
    size_t want;
  } ok[] = {{"1024", 1024}, {"1KiB", 1024}, {"4MiB", 4u << 20}, {"1024MiB", 1u << 30}, {"65536", 65536}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    struct run r;
    RUN(r, "--grpc-max-msg", (char *)ok[i].v);
    cr_assert_eq(r.rc, 0, "%s: %s", ok[i].v, r.err);
    cr_assert_eq(r.c.grpc_max_msg, ok[i].want, "%s", ok[i].v);
    free(r.out);
  }
  static const char *const bad[] = {
      "0", "1023", "4MB", "4 MiB", "MiB", "-1", "1025MiB", "4mib", "1.5MiB", "99999999999999999999999", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct run r;
    RUN(r, "--grpc-max-msg", (char *)bad[i]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", bad[i]);
    char want[200];
    snprintf(want, sizeof want,
             "--grpc-max-msg: \"%s\" is not a size from 1KiB to 1024MiB (e.g. 4MiB, 65536)", bad[i]);
    cr_assert_str_eq(r.err, want);
    free(r.out);
  }
}

/* The request-memory flags (docs/reliability.md, "Request memory"): defaults, flag, variable, bounds. */
Test(config, grpc_request_memory_flags) {
  struct run r;
  RUN(r, "--log-level=info");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.grpc_max_buffered, 64u << 20);
  cr_assert_eq(r.c.grpc_request_timeout_ms, 10000);
  free(r.out);
  RUN(r, "--grpc-max-buffered", "8MiB", "--grpc-request-timeout=1.5s");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.grpc_max_buffered, 8u << 20);
  cr_assert_eq(r.c.grpc_request_timeout_ms, 1500);
  free(r.out);
  setenv("PRESCALE_GRPC_MAX_BUFFERED", "128KiB", 1);
  setenv("PRESCALE_GRPC_REQUEST_TIMEOUT", "250ms", 1);
  RUN(r, "--log-level=info");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.grpc_max_buffered, 128u << 10);
  cr_assert_eq(r.c.grpc_request_timeout_ms, 250);
  free(r.out);
  clear_env();
  RUN(r, "--grpc-max-buffered", "1KiB");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert(strstr(r.err, "--grpc-max-buffered: \"1KiB\" is not a size from 64KiB") != NULL, "%s", r.err);
  free(r.out);
  RUN(r, "--grpc-request-timeout", "0");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert(strstr(r.err, "--grpc-request-timeout: \"0\"") != NULL, "%s", r.err);
  free(r.out);
  RUN(r, "--grpc-request-timeout", "11m");
  cr_assert_eq(r.rc, UV_EINVAL);
  free(r.out);
  RUN(r, "--help");
  cr_assert_eq(r.rc, 1);
  cr_assert(strstr(r.out, "--grpc-max-buffered BYTES") != NULL);
  cr_assert(strstr(r.out, "(default 64MiB; $PRESCALE_GRPC_MAX_BUFFERED)") != NULL);
  cr_assert(strstr(r.out, "--grpc-request-timeout DUR") != NULL);
  cr_assert(strstr(r.out, "(default 10s; $PRESCALE_GRPC_REQUEST_TIMEOUT)") != NULL);
  free(r.out);
}

/* --grpc-max-streams: 10,000 StreamIsActive watches over 10 connections need 1,000 streams a connection. */
Test(config, grpc_max_streams_flag) {
  struct run r;
  RUN(r, "--log-level=info");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.grpc_max_streams, 256);
  free(r.out);
  RUN(r, "--grpc-max-streams", "1000");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.grpc_max_streams, 1000);
  free(r.out);
  setenv("PRESCALE_GRPC_MAX_STREAMS", "4096", 1);
  RUN(r, "--log-level=info");
  unsetenv("PRESCALE_GRPC_MAX_STREAMS");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.grpc_max_streams, 4096);
  free(r.out);
  RUN(r, "--grpc-max-streams", "0");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert(strstr(r.err, "--grpc-max-streams") != NULL, "%s", r.err);
  free(r.out);
  RUN(r, "--grpc-max-streams", "65537");
  cr_assert_eq(r.rc, UV_EINVAL);
  free(r.out);
  RUN(r, "--help");
  cr_assert_eq(r.rc, 1);
  cr_assert(strstr(r.out, "--grpc-max-streams N") != NULL);
  cr_assert(strstr(r.out, "(default 256; $PRESCALE_GRPC_MAX_STREAMS)") != NULL);
  free(r.out);
}

Test(config, shutdown_grace_values) {
  static const struct {
    const char *v;
    uint64_t want;
  } ok[] = {{"0", 0},      {"0s", 0},        {"250ms", 250}, {"5s", 5000},
            {"25", 25000}, {"1m30s", 90000}, {"10m", 600000}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    struct run r;
    RUN(r, "--shutdown-grace", (char *)ok[i].v);
    cr_assert_eq(r.rc, 0, "%s: %s", ok[i].v, r.err);
    cr_assert_eq(r.c.shutdown_grace_ms, ok[i].want, "%s", ok[i].v);
    free(r.out);
  }
  static const char *const bad[] = {"-1s", "5 s", "soon", "", "10m1ms", "1h", "99999999999999999999d", "5x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct run r;
    RUN(r, "--shutdown-grace", (char *)bad[i]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", bad[i]);
    char want[200];
    snprintf(want, sizeof want,
             "--shutdown-grace: \"%s\" is not a duration from 0 to 10m (e.g. 5s; 0 = no drain)", bad[i]);
    cr_assert_str_eq(r.err, want);
    free(r.out);
  }
  setenv("PRESCALE_SHUTDOWN_GRACE", "2h", 1);
  struct run r;
  char *argv[] = {"prescale", NULL};
  run_args(&r, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err,
                   "PRESCALE_SHUTDOWN_GRACE: \"2h\" is not a duration from 0 to 10m (e.g. 5s; 0 = no drain)");
  free(r.out);
  clear_env();
  setenv("PRESCALE_SHUTDOWN_GRACE", "1s", 1);
  RUN(r, "--shutdown-grace=0"); /* the flag wins, and 0 is a value, not "unset" */
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.shutdown_grace_ms, 0);
  free(r.out);
}

Test(config, flag_errors) {
  static const struct {
    const char *flag, *value, *err;
  } cases[] = {
      {"--stale-after", "x", "--stale-after: \"x\" is not a duration (e.g. 30s, 5m, 1h30m)"},
      {"--first-load-timeout", "-1s",
       "--first-load-timeout: \"-1s\" is not a duration (e.g. 30s, 5m, 1h30m)"},
      {"--first-load-timeout", "0", "--first-load-timeout: \"0\" must be more than 0"},
      {"--target-idle", "10 m", "--target-idle: \"10 m\" is not a duration (e.g. 30s, 5m, 1h30m)"},
      {"--target-idle", "0s", "--target-idle: \"0s\" must be more than 0"},
      {"--grpc-listen", "6000", "--grpc-listen: \"6000\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--grpc-listen", ":6000",
       "--grpc-listen: \":6000\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--grpc-listen", "h:70000",
       "--grpc-listen: \"h:70000\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--grpc-listen", "h:", "--grpc-listen: \"h:\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--http-listen", "::1:80",
       "--http-listen: \"::1:80\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--http-listen", "[::1]80",
       "--http-listen: \"[::1]80\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--http-listen", "[]:80",
       "--http-listen: \"[]:80\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)"},
      {"--prometheus-url", "ftp://p:9090",
       "--prometheus-url: \"ftp://p:9090\" is not an http:// or https:// URL"},
      {"--prometheus-url", "prom:9090", "--prometheus-url: \"prom:9090\" is not an http:// or https:// URL"},
      {"--prometheus-url", "http://", "--prometheus-url: \"http://\" has no host"},
      {"--prometheus-url", "http://p/?x=1",
       "--prometheus-url: \"http://p/?x=1\" must not have a query or fragment"},
      {"--prometheus-url", "http://p/#f",
       "--prometheus-url: \"http://p/#f\" must not have a query or fragment"},
      {"--prometheus-url", "http://p q",
       "--prometheus-url: \"http://p q\" must not contain spaces or control characters"},
      {"--max-targets", "0", "--max-targets: \"0\" is not a whole number from 1 to 1000000"},
      {"--max-targets", "1000001", "--max-targets: \"1000001\" is not a whole number from 1 to 1000000"},
      {"--max-targets", "12a", "--max-targets: \"12a\" is not a whole number from 1 to 1000000"},
      {"--max-targets", "-3", "--max-targets: \"-3\" is not a whole number from 1 to 1000000"},
      {"--log-level", "trace", "--log-level: \"trace\" is not a log level (debug, info, warn or error)"},
      {"--log-format", "xml", "--log-format: \"xml\" is not a log format (text or json)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    RUN(r, (char *)cases[i].flag, (char *)cases[i].value);
    cr_assert_eq(r.rc, UV_EINVAL, "%s %s", cases[i].flag, cases[i].value);
    cr_assert_str_eq(r.err, cases[i].err);
    free(r.out);
  }
}

Test(config, env_errors_name_the_variable) {
  setenv("PRESCALE_STALE_AFTER", "x", 1);
  struct run r;
  char *argv[] = {"prescale", NULL};
  run_args(&r, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "PRESCALE_STALE_AFTER: \"x\" is not a duration (e.g. 30s, 5m, 1h30m)");
  free(r.out);
  clear_env();
  setenv("PRESCALE_LOG_FORMAT", "yaml", 1);
  run_args(&r, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "PRESCALE_LOG_FORMAT: \"yaml\" is not a log format (text or json)");
  free(r.out);
}

Test(config, unknown_missing_and_positional) {
  struct run r;
  RUN(r, "--nope", "1");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unknown flag \"--nope\" (see --help)");
  free(r.out);
  RUN(r, "--grpc-listen-x=1");
  cr_assert_str_eq(r.err, "unknown flag \"--grpc-listen-x\" (see --help)");
  free(r.out);
  RUN(r, "-v");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unknown flag \"-v\" (see --help)");
  free(r.out);
  RUN(r, "--log-level");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--log-level: missing value (e.g. --log-level info)");
  free(r.out);
  /* main.c runs the subcommands before these flags: a word in their place is a mistyped one. */
  RUN(r, "bakctest");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unknown subcommand \"bakctest\" (known: backtest, probe; see --help)");
  free(r.out);
  RUN(r, "--log-level", "debug", "stray");
  cr_assert_str_eq(r.err, "unexpected argument \"stray\" (see --help)");
  free(r.out);
  RUN(r, "--log-level", "debug", "--bad\x01");
  cr_assert_str_eq(r.err, "unknown flag \"--bad\\x01\" (see --help)");
  free(r.out);
}

Test(config, help_and_version) {
  struct run r;
  RUN(r, "--help");
  cr_assert_eq(r.rc, 1);
  for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
    cr_assert_not_null(strstr(r.out, env_names[i]), "%s", env_names[i]);
  static const char *const lines[] = {"--grpc-listen ADDR",
                                      "(default 0.0.0.0:6000; $PRESCALE_GRPC_LISTEN)",
                                      "--http-listen ADDR",
                                      "(default 0.0.0.0:8080;",
                                      "(default http://127.0.0.1:9090;",
                                      "--first-load-timeout DUR",
                                      "(default 5s;",
                                      "--stale-after DUR",
                                      "--target-idle DUR",
                                      "(default 10m;",
                                      "--grpc-max-msg BYTES",
                                      "(default 4MiB;",
                                      "--max-targets N",
                                      "(default 10000;",
                                      "--shutdown-grace DUR",
                                      "(default 5s; $PRESCALE_SHUTDOWN_GRACE)",
                                      "--log-level LEVEL",
                                      "(default info;",
                                      "--log-format FMT",
                                      "(default text;",
                                      "-h, --help",
                                      "--version",
                                      "Subcommands",
                                      "prescale backtest TRACE.csv",
                                      "prescale probe --addr"};
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
    cr_assert_not_null(strstr(r.out, lines[i]), "missing %s in:\n%s", lines[i], r.out);
  /* the help is the same whether asked with --help or -h */
  char *first = r.out;
  RUN(r, "-h");
  cr_assert_eq(r.rc, 1);
  cr_assert_str_eq(r.out, first);
  free(first);
  free(r.out);
  RUN(r, "--version");
  cr_assert_eq(r.rc, 2);
  cr_assert_str_eq(r.out, "prescale " PS_VERSION "\n"); /* meson.build's project version */
  free(r.out);
  RUN(r, "--version", "--bogus"); /* --version acts as soon as it is seen */
  cr_assert_eq(r.rc, 2);
  free(r.out);
}

/* ---- trigger metadata ---------------------------------------------------------------------------- */

struct tc {
  int rc;
  char err[512];
  struct ps_target_config c;
};

/* kv: key, value, key, value, ..., NULL */
static void parse_md(struct tc *t, const char *const *kv) {
  struct ps_kv md[64];
  size_t n = 0;
  for (; kv[2 * n] != NULL; n++) md[n] = (struct ps_kv){kv[2 * n], kv[2 * n + 1]};
  strcpy(t->err, "X");
  t->rc = ps_target_config_parse(&t->c, md, n, "http://default:9090", t->err, sizeof t->err);
}

#define MD(t, ...)                                                                                           \
  do {                                                                                                       \
    const char *const kv_[] = {__VA_ARGS__, NULL};                                                           \
    parse_md(&(t), kv_);                                                                                     \
  } while (0)

#define BASE "query", "sum(rate(x[1m]))", "threshold", "10", "period", "1d"

Test(config, target_defaults) {
  struct tc t;
  MD(t, BASE);
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_str_eq(t.err, "");
  cr_assert_str_eq(t.c.server_address, "http://default:9090");
  cr_assert_str_eq(t.c.query, "sum(rate(x[1m]))");
  cr_assert_str_eq(t.c.metric_name, "prescale");
  cr_assert_eq(t.c.threshold, 10);
  cr_assert_eq(t.c.activation_threshold, 0);
  cr_assert_eq(t.c.headroom, 0);
  cr_assert_eq(t.c.lookahead_ms, 30000);
  cr_assert_eq(t.c.step_ms, 15000);
  cr_assert_eq(t.c.model, PS_MODEL_AUTO);
  cr_assert_eq(t.c.period_ms, 86400000);
  cr_assert_eq(t.c.history_ms, 3 * 86400000);
  cr_assert_eq(t.c.timeout_ms, 3000);
  cr_assert_eq(t.c.quantile, 0, "the default margin is a target coverage");
  cr_assert_eq(t.c.target_coverage, PS_DEFAULT_TARGET_COVERAGE);
  cr_assert_eq(t.c.shadow, false);
  cr_assert_eq(t.c.ignore_null_values, true);
  ps_target_config_free(&t.c);
  ps_target_config_free(&t.c); /* idempotent */
}

Test(config, target_every_key) {
  struct tc t;
  MD(t, "serverAddress", "http://prom.monitoring:9090/prefix//", "query", "up", "threshold", "2.5",
     "activationThreshold", "0.5", "lookahead", "2m", "step", "30s", "model", "seasonal", "period", "1h",
     "history", "5h", "headroom", "0.2", "ignoreNullValues", "FALSE", "metricName", "my-app.rps:v1_x",
     "timeout", "500ms", "quantile", "0.9", "mode", "shadow");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_str_eq(t.c.server_address, "http://prom.monitoring:9090/prefix");
  cr_assert_str_eq(t.c.query, "up");
  cr_assert_eq(t.c.threshold, 2.5);
  cr_assert_eq(t.c.activation_threshold, 0.5);
  cr_assert_eq(t.c.lookahead_ms, 120000);
  cr_assert_eq(t.c.step_ms, 30000);
  cr_assert_eq(t.c.period_ms, 3600000);
  cr_assert_eq(t.c.history_ms, 5 * 3600000);
  cr_assert_eq(t.c.headroom, 0.2);
  cr_assert_eq(t.c.ignore_null_values, false);
  cr_assert_str_eq(t.c.metric_name, "my-app.rps:v1_x");
  cr_assert_eq(t.c.timeout_ms, 500);
  cr_assert_eq(t.c.model, PS_MODEL_SEASONAL);
  cr_assert_eq(t.c.quantile, 0.9);
  cr_assert_eq(t.c.shadow, true);
  ps_target_config_free(&t.c);
}

Test(config, target_default_server_variants) {
  struct ps_kv md[] = {{"query", "up"}, {"threshold", "1"}, {"model", "last"}};
  struct ps_target_config c;
  char err[256];
  cr_assert_eq(ps_target_config_parse(&c, md, 3, NULL, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.server_address, "http://127.0.0.1:9090");
  ps_target_config_free(&c);
  cr_assert_eq(ps_target_config_parse(&c, md, 3, "http://p:1/", err, sizeof err), 0);
  cr_assert_str_eq(c.server_address, "http://p:1");
  ps_target_config_free(&c);
  cr_assert_eq(ps_target_config_parse(&c, md, 3, "https://p:1/", err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.server_address, "https://p:1");
  ps_target_config_free(&c);
  cr_assert_eq(ps_target_config_parse(&c, md, 3, "ftp://p:1", err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "--prometheus-url: \"ftp://p:1\" is not an http:// or https:// URL");
  cr_assert_null(c.server_address);
}

Test(config, target_model_last) {
  struct tc t;
  MD(t, "query", "up", "threshold", "1", "model", "last");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.model, PS_MODEL_LAST);
  cr_assert_eq(t.c.period_ms, 0);
  cr_assert_eq(t.c.history_ms, 3600000);
  ps_target_config_free(&t.c);
  MD(t, "query", "up", "threshold", "1", "model", "last", "period", "7s"); /* period unused, no 2-step rule */
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.period_ms, 0);
  ps_target_config_free(&t.c);
  MD(t, "query", "up", "threshold", "1", "model", "last", "period", "x"); /* but still a duration */
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert_str_eq(t.err, "period: \"x\" is not a duration or auto (e.g. 1d, 1h, 7d)");
}

/* linear fits a trend, without a season: like last, a period is unused and history is 1h. */
Test(config, target_model_linear) {
  struct tc t;
  MD(t, "query", "up", "threshold", "1", "model", "linear", "period", "1d");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.model, PS_MODEL_LINEAR);
  cr_assert_eq(t.c.period_ms, 0);
  cr_assert_eq(t.c.history_ms, 3600000);
  ps_target_config_free(&t.c);
}

Test(config, target_every_model) {
  static const struct {
    const char *name;
    enum ps_model model;
  } cases[] = {{"auto", PS_MODEL_AUTO},         {"holtwinters", PS_MODEL_HOLTWINTERS},
               {"seasonal", PS_MODEL_SEASONAL}, {"linear", PS_MODEL_LINEAR},
               {"peak", PS_MODEL_PEAK},         {"analog", PS_MODEL_ANALOG},
               {"last", PS_MODEL_LAST}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    MD(t, "query", "q", "threshold", "1", "model", cases[i].name);
    cr_assert_eq(t.rc, 0, "%s: %s", cases[i].name, t.err);
    cr_assert_eq(t.c.model, cases[i].model, "%s", cases[i].name);
    ps_target_config_free(&t.c);
  }
}

/* period auto (the default): 0 for the engine to detect, and history long enough to detect a daily
 * season: 8d when the step allows it (PS_MAX_HISTORY_POINTS steps), never less than 1h. */
Test(config, target_period_auto_history) {
  static const struct {
    const char *model, *step, *period;
    int64_t want;
  } cases[] = {
      {NULL, "15s", NULL, 8LL * 86400000}, /* 46080 points */
      {"auto", "1m", "auto", 8LL * 86400000},
      {"holtwinters", "15s", "auto", 8LL * 86400000},
      {"seasonal", "7s", NULL, 8LL * 86400000 + 1000}, /* rounded up to a multiple of 7s: 98743 points */
      {NULL, "5s", NULL, 100000LL * 5000},             /* 8d is 138240 points: capped at the maximum */
      {NULL, "1s", NULL, 100000LL * 1000},
      {NULL, "1d", NULL, 8LL * 86400000}, /* 8 points */
      {"last", "15s", "auto", 3600000},   /* no season: 1h */
      {"linear", "15s", NULL, 3600000},
      {"peak", "1s", "1d", 3600000}, /* no season either: the period is unused */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *kv[16] = {"query", "q", "threshold", "1", "step", cases[i].step};
    size_t n = 6;
    if (cases[i].model != NULL) {
      kv[n++] = "model";
      kv[n++] = cases[i].model;
    }
    if (cases[i].period != NULL) {
      kv[n++] = "period";
      kv[n++] = cases[i].period;
    }
    kv[n] = NULL;
    struct tc t;
    parse_md(&t, kv);
    cr_assert_eq(t.rc, 0, "case %zu: %s", i, t.err);
    cr_assert_eq(t.c.period_ms, 0, "case %zu", i);
    cr_assert_eq(t.c.history_ms, cases[i].want, "case %zu: %lld", i, (long long)t.c.history_ms);
    cr_assert_leq(t.c.history_ms / t.c.step_ms, PS_MAX_HISTORY_POINTS);
    ps_target_config_free(&t.c);
  }
  /* A history given with period auto is taken as it is (the engine notes when it is too short). */
  struct tc t;
  MD(t, "query", "q", "threshold", "1", "history", "2h");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.history_ms, 7200000);
  ps_target_config_free(&t.c);
}

Test(config, target_quantile_and_mode) {
  static const struct {
    const char *key, *value;
    double quantile;
    bool shadow;
  } cases[] = {
      {"quantile", "0", 0, false},         {"quantile", "0.5", 0.5, false}, {"quantile", "0.9", 0.9, false},
      {"quantile", "0.999", 0.999, false}, {"quantile", "-0", 0, false},    {"mode", "normal", 0, false},
      {"mode", "shadow", 0, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    MD(t, "query", "q", "threshold", "1", cases[i].key, cases[i].value);
    cr_assert_eq(t.rc, 0, "%s=%s: %s", cases[i].key, cases[i].value, t.err);
    cr_assert_eq(t.c.quantile, cases[i].quantile, "%s=%s", cases[i].key, cases[i].value);
    cr_assert_not(signbit(t.c.quantile));
    cr_assert_eq(t.c.shadow, cases[i].shadow, "%s=%s", cases[i].key, cases[i].value);
    ps_target_config_free(&t.c);
  }
}

Test(config, target_history_defaults_and_rounding) {
  static const struct {
    const char *step, *period, *history;
    int64_t want;
  } cases[] = {
      {"15s", "10m", NULL, 3600000},         /* max(3 x 10m, 1h) = 1h */
      {"15s", "1h", NULL, 3 * 3600000},      /* 3 x period */
      {"7s", "14s", NULL, 3605000},          /* 1h rounded up to a multiple of 7s */
      {"1m", "7d", NULL, 21LL * 86400000},   /* 30240 points: fine */
      {"15s", "7d", NULL, 100000LL * 15000}, /* 3 x 7d is 120960 points: capped at the maximum */
      {"15s", "1h", "90m", 5400000},
      {"7s", "14s", "100s", 105000}, /* rounded up to a multiple of step */
      {"15s", "1h", "1h", 3600000},  /* history == period is enough */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    if (cases[i].history != NULL)
      MD(t, "query", "q", "threshold", "1", "step", cases[i].step, "period", cases[i].period, "history",
         cases[i].history);
    else
      MD(t, "query", "q", "threshold", "1", "step", cases[i].step, "period", cases[i].period);
    cr_assert_eq(t.rc, 0, "case %zu: %s", i, t.err);
    cr_assert_eq(t.c.history_ms, cases[i].want, "case %zu: %lld", i, (long long)t.c.history_ms);
    cr_assert_eq(t.c.history_ms % t.c.step_ms, 0);
    ps_target_config_free(&t.c);
  }
}

Test(config, target_valid_values) {
  static const struct {
    const char *key, *value;
  } cases[] = {
      {"threshold", "1e3"},
      {"threshold", "0.0001"},
      {"activationThreshold", "0"},
      {"activationThreshold", "5"},
      {"lookahead", "0"},
      {"lookahead", "1d"},
      {"lookahead", "90"},
      {"step", "1s"},
      {"step", "1500ms"},
      {"step", "1m"},
      {"headroom", "0"},
      {"headroom", "1.5"},
      {"ignoreNullValues", "true"},
      {"ignoreNullValues", "Yes"},
      {"ignoreNullValues", "0"},
      {"ignoreNullValues", "no"},
      {"ignoreNullValues", "1"},
      {"metricName", "a"},
      {"timeout", "100ms"},
      {"timeout", "1m"},
      {"serverAddress", "http://[::1]:9090"},
      {"serverAddress", "http://p"},
      {"model", "seasonal"},
      {"scalerAddress", "prescale.keda:6000"},
      {"model", "auto"},
      {"period", "auto"},
      {"model", "holtwinters"},
      {"unsafeSsl", "false"},
      {"tlsCertFile", "/x"},
      {"caCert", "c"},
      {"tlsClientCert", "c"},
      {"tlsClientKey", "k"},
      {"enableTLS", "false"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    MD(t, "query", "q", "threshold", "1", "period", "1h", cases[i].key, cases[i].value);
    cr_assert_eq(t.rc, 0, "%s=%s: %s", cases[i].key, cases[i].value, t.err);
    ps_target_config_free(&t.c);
  }
}

Test(config, target_errors) {
  static char long_value[PS_MAX_METADATA_VALUE + 2];
  memset(long_value, 'a', PS_MAX_METADATA_VALUE + 1);
  static char long_name[PS_MAX_METRIC_NAME + 2];
  memset(long_name, 'n', PS_MAX_METRIC_NAME + 1);
  static const struct {
    const char *key, *value, *err;
  } cases[] = {
      {"threshold", "abc", "threshold: \"abc\" is not a number > 0"},
      {"threshold", "0", "threshold: \"0\" is not a number > 0"},
      {"threshold", "-1", "threshold: \"-1\" is not a number > 0"},
      {"threshold", "nan",
       "threshold: \"nan\" is not a decimal number (hexadecimal, inf and nan are refused)"},
      {"threshold", "inf",
       "threshold: \"inf\" is not a decimal number (hexadecimal, inf and nan are refused)"},
      {"threshold", "1e999", "threshold: \"1e999\" is not a number > 0"},
      {"threshold", "", "threshold: \"\" is not a number > 0"},
      {"threshold", " 5", "threshold: \" 5\" is not a number > 0"},
      {"threshold", "5 ", "threshold: \"5 \" is not a number > 0"},
      {"threshold", "5x", "threshold: \"5x\" is not a number > 0"},
      {"activationThreshold", "-0.1", "activationThreshold: \"-0.1\" is not a number >= 0"},
      {"activationThreshold", "x", "activationThreshold: \"x\" is not a number >= 0"},
      {"activationThreshold", "infinity",
       "activationThreshold: \"infinity\" is not a decimal number (hexadecimal, inf and nan are refused)"},
      {"headroom", "-0.2", "headroom: \"-0.2\" is not a number >= 0 (e.g. 0.2 for +20%)"},
      {"headroom", "20%", "headroom: \"20%\" is not a number >= 0 (e.g. 0.2 for +20%)"},
      {"lookahead", "x", "lookahead: \"x\" is not a duration from 0s to 1d (e.g. 30s, 5m)"},
      {"lookahead", "25h", "lookahead: \"25h\" is not a duration from 0s to 1d (e.g. 30s, 5m)"},
      {"lookahead", "-1s", "lookahead: \"-1s\" is not a duration from 0s to 1d (e.g. 30s, 5m)"},
      {"step", "500ms", "step: \"500ms\" is not a duration from 1s to 1d (e.g. 15s, 1m)"},
      {"step", "0", "step: \"0\" is not a duration from 1s to 1d (e.g. 15s, 1m)"},
      {"step", "2d", "step: \"2d\" is not a duration from 1s to 1d (e.g. 15s, 1m)"},
      {"step", "fast", "step: \"fast\" is not a duration from 1s to 1d (e.g. 15s, 1m)"},
      {"model", "arima",
       "model: \"arima\" is not a model (auto, holtwinters, seasonal, linear, peak, analog or last)"},
      {"model", "Last",
       "model: \"Last\" is not a model (auto, holtwinters, seasonal, linear, peak, analog or last)"},
      {"model", "", "model: \"\" is not a model (auto, holtwinters, seasonal, linear, peak, analog or last)"},
      {"period", "daily", "period: \"daily\" is not a duration or auto (e.g. 1d, 1h, 7d)"},
      {"period", "Auto", "period: \"Auto\" is not a duration or auto (e.g. 1d, 1h, 7d)"},
      {"period", "", "period: \"\" is not a duration or auto (e.g. 1d, 1h, 7d)"},
      {"quantile", "0.4", "quantile: \"0.4\" is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)"},
      {"quantile", "1", "quantile: \"1\" is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)"},
      {"quantile", "90%", "quantile: \"90%\" is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)"},
      {"quantile", "nan", "quantile: \"nan\" is not a decimal number (hexadecimal, inf and nan are refused)"},
      {"quantile", "-0.9", "quantile: \"-0.9\" is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)"},
      {"mode", "Shadow", "mode: \"Shadow\" is not a mode (normal or shadow)"},
      {"mode", "", "mode: \"\" is not a mode (normal or shadow)"},
      {"period", "29s", "period: \"29s\" must be at least 2 steps (step is 15s)"},
      {"period", "0", "period: \"0\" must be at least 2 steps (step is 15s)"},
      {"period", "100s", "period: \"100s\" is not a multiple of step (15s)"},
      {"period", "1000d",
       "period: \"1000d\" needs more than 100000 points of history at step 15s (at most 17d8h40m); raise "
       "step"},
      {"history", "30m", "history: \"30m\" is shorter than period (1d)"},
      {"history", "0", "history: \"0\" must be more than 0"},
      {"history", "long", "history: \"long\" is not a duration (e.g. 3d, 12h)"},
      {"history", "30d",
       "history: \"30d\" is more than 100000 points at step 15s; the maximum is 17d8h40m (raise step or "
       "shorten history)"},
      {"ignoreNullValues", "maybe", "ignoreNullValues: \"maybe\" is not a boolean (true or false)"},
      {"ignoreNullValues", "", "ignoreNullValues: \"\" is not a boolean (true or false)"},
      {"metricName", "a b", "metricName: \"a b\" must be 1 to 200 letters, digits, '_', '.', ':' or '-'"},
      {"metricName", "", "metricName: \"\" must be 1 to 200 letters, digits, '_', '.', ':' or '-'"},
      {"metricName", "a/b", "metricName: \"a/b\" must be 1 to 200 letters, digits, '_', '.', ':' or '-'"},
      {"metricName", long_name,
       "metricName: \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\" must be 1 to 200 "
       "letters, digits, '_', '.', ':' or '-'"},
      {"timeout", "50ms", "timeout: \"50ms\" is not a duration from 100ms to 1m (e.g. 3s)"},
      {"timeout", "61s", "timeout: \"61s\" is not a duration from 100ms to 1m (e.g. 3s)"},
      {"timeout", "soon", "timeout: \"soon\" is not a duration from 100ms to 1m (e.g. 3s)"},
      {"serverAddress", "ftp://prom:9090",
       "serverAddress: \"ftp://prom:9090\" is not an http:// or https:// URL"},
      {"serverAddress", "prom:9090", "serverAddress: \"prom:9090\" is not an http:// or https:// URL"},
      {"serverAddress", "https://", "serverAddress: \"https://\" has no host"},
      {"serverAddress", "http://", "serverAddress: \"http://\" has no host"},
      {"serverAddress", "http:///x", "serverAddress: \"http:///x\" has no host"},
      {"serverAddress", "http://p?x=1", "serverAddress: \"http://p?x=1\" must not have a query or fragment"},
      {"serverAddress", "http://p/#x", "serverAddress: \"http://p/#x\" must not have a query or fragment"},
      {"serverAddress", "http://p\n",
       "serverAddress: \"http://p\\x0a\" must not contain spaces or control characters"},
      {"serverAddress", "", "serverAddress: \"\" is not an http:// or https:// URL"},
      {"query", "", "query: must not be empty"},
      {"query", " \t", "query: must not be empty"},
      {"query", long_value, "query: the value is 8193 bytes; the maximum is 8192"},
      {"Query", "x",
       "unknown metadata key \"Query\" (known: serverAddress, query, threshold, activationThreshold, "
       "lookahead, step, model, period, history, headroom, quantile, targetCoverage, mode, ignoreNullValues, "
       "metricName, "
       "timeout, namespace, queryParameters, customHeaders, unsafeSsl)"},
      {"bogus\"key", "x",
       "unknown metadata key \"bogus\\\"key\" (known: serverAddress, query, threshold, activationThreshold, "
       "lookahead, step, model, period, history, headroom, quantile, targetCoverage, mode, ignoreNullValues, "
       "metricName, "
       "timeout, namespace, queryParameters, customHeaders, unsafeSsl)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    MD(t, BASE, cases[i].key, cases[i].value);
    cr_assert_eq(t.rc, UV_EINVAL, "case %zu %s", i, cases[i].key);
    cr_assert_str_eq(t.err, cases[i].err, "case %zu: %s", i, t.err);
    cr_assert_null(t.c.server_address);
    cr_assert_null(t.c.query);
    cr_assert_null(t.c.metric_name);
  }
}

Test(config, target_required_keys) {
  struct tc t;
  MD(t, "threshold", "1", "period", "1h");
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert_str_eq(t.err, "query: is required (a PromQL expression)");
  MD(t, "query", "q", "period", "1h");
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert_str_eq(t.err, "threshold: is required (a number > 0)");
  MD(t, "query", "q", "threshold", "1"); /* everything else has a default, the period too (auto) */
  cr_assert_eq(t.rc, 0, "%s", t.err);
  ps_target_config_free(&t.c);
  struct ps_target_config c;
  char err[128];
  cr_assert_eq(ps_target_config_parse(&c, NULL, 0, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "query: is required (a PromQL expression)");
}

Test(config, target_duplicate_last_wins) {
  struct tc t;
  MD(t, BASE, "threshold", "abc", "threshold", "7");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.threshold, 7);
  ps_target_config_free(&t.c);
}

Test(config, target_null_value_and_key) {
  struct ps_kv md[] = {{"query", "q"}, {"threshold", "1"}, {"period", "1h"}, {"metricName", NULL}};
  struct ps_target_config c;
  char err[256];
  cr_assert_eq(ps_target_config_parse(&c, md, 4, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "metricName: \"\" must be 1 to 200 letters, digits, '_', '.', ':' or '-'");
  struct ps_kv md2[] = {{NULL, "q"}};
  cr_assert_eq(ps_target_config_parse(&c, md2, 1, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "metadata: a key is missing");
}

Test(config, target_error_truncates_and_escapes_long_values) {
  static char v[PS_MAX_METADATA_VALUE];
  memset(v, 'z', sizeof v - 1);
  v[0] = '"';
  struct tc t;
  MD(t, BASE, "threshold", v);
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert(strlen(t.err) < 150, "%s", t.err);
  cr_assert_eq(strncmp(t.err, "threshold: \"\\\"zzz", 17), 0, "%s", t.err);
  cr_assert_not_null(strstr(t.err, "...\" is not a number > 0"));
  /* a small err buffer is still NUL-terminated */
  struct ps_kv md[] = {{"query", "q"}, {"threshold", "x"}, {"period", "1h"}};
  char small[8];
  struct ps_target_config c;
  cr_assert_eq(ps_target_config_parse(&c, md, 3, NULL, small, sizeof small), UV_EINVAL);
  cr_assert_str_eq(small, "thresho");
  cr_assert_eq(ps_target_config_parse(&c, md, 3, NULL, NULL, 0), UV_EINVAL);
}

/* ---- one trigger value, for the backtest's flags ------------------------------------------------- */

Test(config, trigger_value_check_reads_and_words_like_the_metadata) {
  int64_t ms = -1;
  cr_assert_null(ps_trigger_value_check("lookahead", "2m", &ms));
  cr_assert_eq(ms, 120000);
  cr_assert_str_eq(ps_trigger_value_check("lookahead", "25h", &ms),
                   "is not a duration from 0s to 1d (e.g. 30s, 5m)");
  cr_assert_eq(ms, 120000, "a refused value stores nothing");
  cr_assert_null(ps_trigger_value_check("period", "auto", &ms));
  cr_assert_eq(ms, 0);
  cr_assert_str_eq(ps_trigger_value_check("history", "0", &ms), "must be more than 0");
  double d = -1;
  cr_assert_null(ps_trigger_value_check("quantile", "-0", &d));
  cr_assert(d == 0 && !signbit(d), "-0 reads as none");
  cr_assert_str_eq(ps_trigger_value_check("quantile", "1", &d),
                   "is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)");
  cr_assert_null(ps_trigger_value_check("headroom", "250", &d), "headroom has no upper bound");
  cr_assert_float_eq(d, 250, 0);
  cr_assert_str_eq(ps_trigger_value_check("threshold", " 5", &d), "is not a number > 0");
  enum ps_model m = PS_MODEL_AUTO;
  cr_assert_null(ps_trigger_value_check("model", "last", &m));
  cr_assert_eq(m, PS_MODEL_LAST);
  cr_assert_not_null(ps_trigger_value_check("query", "up", NULL), "text keys are not read here");
  cr_assert_not_null(ps_trigger_value_check("nope", "1", &d));
}

Test(config, trigger_period_and_history_problems) {
  char buf[160];
  int64_t h;
  cr_assert_str_eq(ps_trigger_period_problem(29000, 15000, buf, sizeof buf),
                   "must be at least 2 steps (step is 15s)");
  cr_assert_str_eq(ps_trigger_period_problem(100000, 15000, buf, sizeof buf),
                   "is not a multiple of step (15s)");
  cr_assert_null(ps_trigger_period_problem(3600000, 15000, buf, sizeof buf));
  cr_assert_null(ps_trigger_history_problem(1000, 15000, 0, &h, buf, sizeof buf));
  cr_assert_eq(h, 15000);
  cr_assert_str_eq(ps_trigger_history_problem(3600000, 15000, 7200000, &h, buf, sizeof buf),
                   "is shorter than period (2h)");
  cr_assert_str_eq(ps_trigger_history_problem(100001000, 1000, 0, &h, buf, sizeof buf),
                   "is more than 100000 points at step 1s; the maximum is 1d3h46m40s (raise step or shorten "
                   "history)");
}

/* Numbers are decimal only: strtod would read 0x10 as 16 and take inf and nan. */
Test(config, trigger_numbers_are_decimal_only) {
  const char *bad[] = {"0x10",   "0X10",  "0x1p4", "inf", "-inf", "Infinity", "nan", "NAN",
                       "nan(1)", "1e999", "1e",    ".",   "+",    "1.2.3",    "1_0", "١"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct ps_target_config c;
    char err[256];
    struct ps_kv md[] = {{"query", "up"}, {"threshold", bad[i]}};
    cr_assert_eq(ps_target_config_parse(&c, md, 2, NULL, err, sizeof err), UV_EINVAL, "%s", bad[i]);
    cr_assert(strncmp(err, "threshold: ", 11) == 0, "%s: %s", bad[i], err);
  }
  struct ps_target_config c;
  char err[256];
  struct ps_kv hex[] = {{"query", "up"}, {"threshold", "0x10"}};
  cr_assert_eq(ps_target_config_parse(&c, hex, 2, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "threshold: \"0x10\" is not a decimal number (hexadecimal, inf and nan are refused)");
  struct ps_kv inf[] = {{"query", "up"}, {"headroom", "inf"}, {"threshold", "1"}};
  cr_assert_eq(ps_target_config_parse(&c, inf, 3, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "headroom: \"inf\" is not a decimal number (hexadecimal, inf and nan are refused)");
  struct ps_kv word[] = {{"query", "up"}, {"threshold", "ten"}};
  cr_assert_eq(ps_target_config_parse(&c, word, 2, NULL, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "threshold: \"ten\" is not a number > 0");
  const char *good[] = {"10", "+10", "10.", ".5", "1e3", "1E+3", "2.5e-1", "0010"};
  const double want[] = {10, 10, 10, 0.5, 1000, 1000, 0.25, 10};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    struct ps_kv md[] = {{"query", "up"}, {"threshold", good[i]}};
    cr_assert_eq(ps_target_config_parse(&c, md, 2, NULL, err, sizeof err), 0, "%s: %s", good[i], err);
    cr_assert_float_eq(c.threshold, want[i], 1e-12, "%s", good[i]);
    ps_target_config_free(&c);
  }
}

/* --max-conns and --grpc-idle-timeout (docs/reliability.md, Connection slots). */
Test(config, connection_slot_flags) {
  unsetenv("PRESCALE_MAX_CONNS");
  unsetenv("PRESCALE_GRPC_IDLE_TIMEOUT");
  struct run r;
  char *none[] = {"prescale", NULL};
  run_args(&r, none);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conns, 1024);
  cr_assert_eq(r.c.grpc_idle_ms, 5 * 60 * 1000);
  free(r.out);
  RUN(r, "--max-conns", "16", "--grpc-idle-timeout=2s");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conns, 16);
  cr_assert_eq(r.c.grpc_idle_ms, 2000);
  free(r.out);
  setenv("PRESCALE_MAX_CONNS", "3", 1);
  setenv("PRESCALE_GRPC_IDLE_TIMEOUT", "1h", 1);
  run_args(&r, none);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conns, 3);
  cr_assert_eq(r.c.grpc_idle_ms, 3600 * 1000);
  free(r.out);
  unsetenv("PRESCALE_MAX_CONNS");
  unsetenv("PRESCALE_GRPC_IDLE_TIMEOUT");
  static const char *const bad[][2] = {{"--max-conns", "0"},
                                       {"--max-conns", "many"},
                                       {"--grpc-idle-timeout", "0"},
                                       {"--grpc-idle-timeout", "2d"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    RUN(r, (char *)bad[i][0], (char *)bad[i][1]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s %s", bad[i][0], bad[i][1]);
    cr_assert(strstr(r.err, bad[i][0]) != NULL, "%s", r.err);
    free(r.out);
  }
  RUN(r, "--help");
  cr_assert_eq(r.rc, 1);
  cr_assert(strstr(r.out, "--max-conns N") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "--grpc-idle-timeout DUR") != NULL, "%s", r.out);
  free(r.out);
}

/* --max-connection-age and --max-connection-age-grace (docs/reliability.md, "Connection ageing"): the
 * defaults are h2_conn.h's, 0 is accepted by both (never; cut off at once), and the environment works. */
Test(config, connection_age_flags) {
  unsetenv("PRESCALE_MAX_CONNECTION_AGE");
  unsetenv("PRESCALE_MAX_CONNECTION_AGE_GRACE");
  struct run r;
  char *none[] = {"prescale", NULL};
  run_args(&r, none);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conn_age_ms, PS_H2_MAX_AGE_MS);
  cr_assert_eq(r.c.max_conn_age_ms, 30 * 60 * 1000);
  cr_assert_eq(r.c.max_conn_age_grace_ms, PS_H2_MAX_AGE_GRACE_MS);
  cr_assert_eq(r.c.max_conn_age_grace_ms, 30 * 1000);
  free(r.out);
  RUN(r, "--max-connection-age", "0", "--max-connection-age-grace=0");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conn_age_ms, 0);
  cr_assert_eq(r.c.max_conn_age_grace_ms, 0);
  free(r.out);
  setenv("PRESCALE_MAX_CONNECTION_AGE", "2h", 1);
  setenv("PRESCALE_MAX_CONNECTION_AGE_GRACE", "1m", 1);
  run_args(&r, none);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conn_age_ms, 2 * 3600 * 1000);
  cr_assert_eq(r.c.max_conn_age_grace_ms, 60 * 1000);
  free(r.out);
  RUN(r, "--max-connection-age", "90s");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.max_conn_age_ms, 90 * 1000, "the flag wins over the environment");
  free(r.out);
  unsetenv("PRESCALE_MAX_CONNECTION_AGE");
  unsetenv("PRESCALE_MAX_CONNECTION_AGE_GRACE");
  static const char *const bad[][2] = {{"--max-connection-age", "2d"},
                                       {"--max-connection-age", "-1s"},
                                       {"--max-connection-age", "soon"},
                                       {"--max-connection-age-grace", "2h"},
                                       {"--max-connection-age-grace", "x"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    RUN(r, (char *)bad[i][0], (char *)bad[i][1]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s %s", bad[i][0], bad[i][1]);
    cr_assert(strstr(r.err, bad[i][0]) != NULL, "%s", r.err);
    free(r.out);
  }
  RUN(r, "--max-connection-age", "2d");
  cr_assert_str_eq(r.err,
                   "--max-connection-age: \"2d\" is not a duration from 0 to 1d (e.g. 30m; 0 = never)");
  free(r.out);
  RUN(r, "--help");
  cr_assert_eq(r.rc, 1);
  cr_assert(strstr(r.out, "--max-connection-age DUR") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "--max-connection-age-grace DUR") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "PRESCALE_MAX_CONNECTION_AGE_GRACE") != NULL, "%s", r.out);
  free(r.out);
}

/* --prometheus-max-inflight: flag, environment, bounds (docs/reliability.md, "Prometheus fan-out"). */
Test(config, prometheus_max_inflight) {
  struct run r;
  RUN(r, "--prometheus-max-inflight", "4");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.prometheus_max_inflight, 4);
  free(r.out);
  setenv("PRESCALE_PROMETHEUS_MAX_INFLIGHT", "9", 1);
  RUN(r, "--max-targets", "3");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.c.prometheus_max_inflight, 9);
  free(r.out);
  unsetenv("PRESCALE_PROMETHEUS_MAX_INFLIGHT");
  RUN(r, "--prometheus-max-inflight", "0");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert(strstr(r.err, "--prometheus-max-inflight") != NULL, "%s", r.err);
  free(r.out);
  RUN(r, "--prometheus-max-inflight", "1025");
  cr_assert_eq(r.rc, UV_EINVAL);
  free(r.out);
}

/* --prometheus-config: a path, from the flag or the environment, read by main.c at startup (its parsing is
 * test_prom_config.c's; its start-up errors test_prom_config.py's). */
Test(config, prometheus_config_flag) {
  struct run r;
  RUN(r, "--max-targets", "3");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_null(r.c.prometheus_config, "no file by default");
  cr_assert_null(r.c.prom_config);
  free(r.out);
  RUN(r, "--prometheus-config", "/etc/prescale/prometheus.yaml");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.c.prometheus_config, "/etc/prescale/prometheus.yaml");
  free(r.out);
  setenv("PRESCALE_PROMETHEUS_CONFIG", "/env.yaml", 1);
  RUN(r, "--max-targets", "3");
  cr_assert_str_eq(r.c.prometheus_config, "/env.yaml");
  free(r.out);
  RUN(r, "--prometheus-config=/flag.yaml");
  cr_assert_str_eq(r.c.prometheus_config, "/flag.yaml", "the flag wins over its variable");
  free(r.out);
  unsetenv("PRESCALE_PROMETHEUS_CONFIG");
  RUN(r, "--help");
  cr_assert_eq(r.rc, 1);
  cr_assert_not_null(strstr(r.out, "--prometheus-config FILE"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "($PRESCALE_PROMETHEUS_CONFIG)"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "(docs/prometheus-config.md)"), "%s", r.out);
  free(r.out);
}

/* targetCoverage: a fraction strictly between 0 and 1, PS_DEFAULT_TARGET_COVERAGE by default; it sets the
 * margin, so quantile is then 0; a quantile given replaces the default; both given, the trigger is refused
 * (one margin, two knobs). */
Test(config, target_coverage) {
  struct tc t;
  MD(t, "query", "q", "threshold", "1", "targetCoverage", "0.99");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.target_coverage, 0.99);
  cr_assert_eq(t.c.quantile, 0, "the quantile's default is not used");
  ps_target_config_free(&t.c);
  MD(t, "query", "q", "threshold", "1");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.target_coverage, PS_DEFAULT_TARGET_COVERAGE, "the default margin");
  cr_assert_eq(t.c.quantile, 0);
  ps_target_config_free(&t.c);
  MD(t, "query", "q", "threshold", "1", "quantile", "0.9");
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(t.c.target_coverage, 0, "a quantile given replaces the default target coverage");
  cr_assert_eq(t.c.quantile, 0.9);
  ps_target_config_free(&t.c);
  MD(t, "query", "q", "threshold", "1", "targetCoverage", "0.9", "quantile", "0.8");
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert_str_eq(t.err, "quantile: \"0.8\" " PS_COVERAGE_BOTH_WORDS);
  MD(t, "query", "q", "threshold", "1", "quantile", "0", "targetCoverage", "0.9");
  cr_assert_eq(t.rc, UV_EINVAL, "quantile 0 is a setting too");
  static const char *const bad[] = {"0", "1", "1.5", "-0.1", "99%", "0x1p-1", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    MD(t, "query", "q", "threshold", "1", "targetCoverage", bad[i]);
    cr_assert_eq(t.rc, UV_EINVAL, "%s", bad[i]);
    char want[256];
    snprintf(want, sizeof want, "targetCoverage: \"%s\" %s", bad[i],
             strcmp(bad[i], "0x1p-1") == 0
                 ? "is not a decimal number (hexadecimal, inf and nan are refused)"
                 : "is not a number between 0 and 1, both excluded (e.g. 0.99: the answer covers 99% of the "
                   "lookahead windows' peaks)");
    cr_assert_str_eq(t.err, want);
  }
  double d = 0;
  cr_assert_null(ps_trigger_value_check("targetCoverage", "0.95", &d));
  cr_assert_eq(d, 0.95);
}
