/* prescale-demo-app's flags: pure parsing, no I/O beyond printing --help/--version to `out`. */
#ifndef PS_DEMO_FLAGS_H
#define PS_DEMO_FLAGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define PS_DEMO_DEFAULT_LISTEN "0.0.0.0:8080"
/* A request waits at most this long: beyond it a load test measures the timeout of its client, not us. */
#define PS_DEMO_MAX_SERVICE_MS (60 * 1000)

struct ps_demo_flags {
  const char *listen; /* host:port; not owned (argv or a literal) */
  int64_t service_ms; /* time each workload request takes, 0..PS_DEMO_MAX_SERVICE_MS */
  enum ps_log_level log_level;
  enum ps_log_format log_format;
};

/* Every field to its flag's default, as --help shows it. */
void ps_demo_flags_defaults(struct ps_demo_flags *f);
/* Flags: --listen, --service-time, --log-level, --log-format (`--flag V` or `--flag=V`), -h/--help,
 * --version. Returns 0; 1 after printing the usage to `out` (--help); 2 after printing the version;
 * UV_EINVAL with one line in err naming the flag and the offending value. */
int ps_demo_flags_parse(struct ps_demo_flags *f, int argc, char **argv, FILE *out, char *err, size_t errlen);
void ps_demo_flags_usage(FILE *out);

#endif
