/* prescale-demo-app's flags. Durations use prescale's own syntax (ps_duration_parse), so a service time
 * reads like every other duration of the project: "20ms", "0.5s", "1s". */
#include "demo_flags.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "net.h"

void ps_demo_flags_defaults(struct ps_demo_flags *f) {
  f->listen = PS_DEMO_DEFAULT_LISTEN;
  f->service_ms = PS_DEMO_DEFAULT_SERVICE_MS;
  f->log_level = PS_LOG_INFO;
  f->log_format = PS_LOG_TEXT;
}

void ps_demo_flags_usage(FILE *out) {
  fprintf(out,
          "Usage: prescale-demo-app [flags]\n"
          "\n"
          "A workload for prescale's demo: an HTTP/1.1 server that answers every GET with 200 after a fixed\n"
          "service time (without blocking: one timer per request), and exports its request counter for\n"
          "Prometheus. /metrics and /healthz are answered at once and not counted.\n"
          "\n"
          "Flags:\n"
          "  %-28s %s\n  %-28s %s\n  %-28s %s\n  %-28s %s\n  %-28s %s\n  %-28s %s\n"
          "\n"
          "Metrics: http_requests_total{code} (counter), http_requests_in_flight (gauge).\n",
          "--listen HOST:PORT", "listen address, host:port or [v6]:port (default " PS_DEMO_DEFAULT_LISTEN ")",
          "--service-time DUR", "time each request takes, e.g. 20ms, 0.5s; at most 1m (default 20ms)",
          "--log-level LEVEL", "debug, info, warn or error (default info)", "--log-format FMT",
          "text (logfmt) or json (default text)", "-h, --help", "print this help and exit", "--version",
          "print the version and exit");
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return UV_EINVAL;
}

/* Values are echoed back in errors: bounded, so a pasted megabyte does not become the error line. */
#define ECHO_MAX 64

static int apply(struct ps_demo_flags *f, const char *flag, const char *v, char *err, size_t errlen) {
  if (strcmp(flag, "--listen") == 0) {
    struct sockaddr_storage ss;
    if (ps_net_parse_addr(v, &ss) != 0)
      return fail(err, errlen, "--listen: \"%.*s\" is not host:port, [v6]:port or :port with a numeric host",
                  ECHO_MAX, v);
    f->listen = v;
  } else if (strcmp(flag, "--service-time") == 0) {
    int64_t ms;
    if (ps_duration_parse(v, &ms) != 0 || ms < 0 || ms > PS_DEMO_MAX_SERVICE_MS)
      return fail(err, errlen, "--service-time: \"%.*s\" is not a duration from 0 to 1m (e.g. 20ms, 0.5s)",
                  ECHO_MAX, v);
    f->service_ms = ms;
  } else if (strcmp(flag, "--log-level") == 0) {
    if (ps_log_level_parse(v, &f->log_level) != 0)
      return fail(err, errlen, "--log-level: \"%.*s\" is not debug, info, warn or error", ECHO_MAX, v);
  } else if (strcmp(flag, "--log-format") == 0) {
    if (ps_log_format_parse(v, &f->log_format) != 0)
      return fail(err, errlen, "--log-format: \"%.*s\" is not text or json", ECHO_MAX, v);
  } else {
    return fail(err, errlen, "unknown flag %.*s (see --help)", ECHO_MAX, flag);
  }
  return 0;
}

static bool known(const char *flag) {
  static const char *const flags[] = {"--listen", "--service-time", "--log-level", "--log-format"};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (strcmp(flag, flags[i]) == 0) return true;
  return false;
}

int ps_demo_flags_parse(struct ps_demo_flags *f, int argc, char **argv, FILE *out, char *err, size_t errlen) {
  char name[32];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      ps_demo_flags_usage(out);
      return 1;
    }
    if (strcmp(a, "--version") == 0) {
      fprintf(out, "prescale-demo-app %s\n", PS_VERSION);
      return 2;
    }
    if (strncmp(a, "--", 2) != 0)
      return fail(err, errlen, "unexpected argument \"%.*s\" (see --help)", ECHO_MAX, a);
    const char *eq = strchr(a, '=');
    const char *v;
    if (eq != NULL) {
      size_t n = (size_t)(eq - a);
      if (n >= sizeof name) return fail(err, errlen, "unknown flag %.*s (see --help)", ECHO_MAX, a);
      memcpy(name, a, n);
      name[n] = '\0';
      v = eq + 1;
    } else {
      if (strlen(a) >= sizeof name) return fail(err, errlen, "unknown flag %.*s (see --help)", ECHO_MAX, a);
      strcpy(name, a);
      if (i + 1 >= argc) {
        /* Every known flag takes a value; an unknown one is reported as unknown, not as missing one. */
        if (!known(name)) return fail(err, errlen, "unknown flag %.*s (see --help)", ECHO_MAX, name);
        return fail(err, errlen, "%s needs a value (see --help)", name);
      }
      v = argv[++i];
    }
    int r = apply(f, name, v, err, errlen);
    if (r != 0) return r;
  }
  return 0;
}
