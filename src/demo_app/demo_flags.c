/* prescale-demo-app's flags, read by prescale's own flag parser (flags.c), so they take the same syntax
 * and give the same errors as prescale's. Durations use prescale's syntax (ps_duration_parse), so a
 * service time reads like every other duration of the project: "20ms", "0.5s", "1s". */
#include "demo_flags.h"

#include <string.h>
#include <uv.h>

#include "config.h"
#include "flags.h"
#include "net.h"

/* --listen: what ps_net_listen will accept, checked now so that a typo is a flag error (exit 2), not a
 * failure to start (exit 1). Stricter than prescale's listen addresses (a numeric host only), looser
 * in one way (":port" for every address). */
static const char *check_listen(const char *v, void *field) {
  struct sockaddr_storage ss;
  if (ps_net_parse_addr(v, &ss) != 0) return "is not host:port, [v6]:port or :port with a numeric host";
  *(const char **)field = v;
  return NULL;
}

static const struct ps_flag demo_flag_table[] = {
    {.name = "listen",
     .kind = PS_FLAG_CUSTOM,
     .offset = offsetof(struct ps_demo_flags, listen),
     .arg = "HOST:PORT",
     .help = "listen address, host:port or [v6]:port",
     .def = PS_DEMO_DEFAULT_LISTEN,
     .check = check_listen},
    {.name = "service-time",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct ps_demo_flags, service_ms),
     .arg = "DUR",
     .help = "time each request takes, e.g. 20ms, 0.5s; at most 1m",
     .def = "20ms",
     .max = PS_DEMO_MAX_SERVICE_MS,
     .example = "e.g. 20ms, 0.5s"},
    {.name = "log-level",
     .kind = PS_FLAG_LOG_LEVEL,
     .offset = offsetof(struct ps_demo_flags, log_level),
     .arg = "LEVEL",
     .help = "debug, info, warn or error",
     .def = "info"},
    {.name = "log-format",
     .kind = PS_FLAG_LOG_FORMAT,
     .offset = offsetof(struct ps_demo_flags, log_format),
     .arg = "FMT",
     .help = "text (logfmt) or json",
     .def = "text"},
};

static const struct ps_flags_spec demo_spec = {
    .program = "prescale-demo-app",
    .version = PS_VERSION,
    .about =
        "A workload for prescale's demo: an HTTP/1.1 server that answers every GET with 200 after a fixed\n"
        "service time (without blocking: one timer per request), and exports its request counter for\n"
        "Prometheus. /metrics and /healthz are answered at once and not counted.\n",
    .footer = "\nMetrics: http_requests_total{code} (counter), http_requests_in_flight (gauge).\n",
    .flags = demo_flag_table,
    .nflags = sizeof demo_flag_table / sizeof demo_flag_table[0],
};

void ps_demo_flags_defaults(struct ps_demo_flags *f) {
  memset(f, 0, sizeof *f);
  ps_flags_defaults(&demo_spec, f);
}

void ps_demo_flags_usage(FILE *out) { ps_flags_usage(&demo_spec, out); }

int ps_demo_flags_parse(struct ps_demo_flags *f, int argc, char **argv, FILE *out, char *err, size_t errlen) {
  return ps_flags_parse(&demo_spec, f, argc, argv, out, err, errlen);
}
