/* Fuzzes trigger metadata validation and duration parsing: they read whatever KEDA forwards from a
 * user's ScaledObject. Input: lines "key=value" ('\n'-separated; a line without '=' is a key with an
 * empty value). Every value is also fed to ps_duration_parse, and the lines, as "--key=value" and as
 * "--key" "value", to the server's flag parser (flags.c). Besides not crashing, checks the invariants
 * the rest of prescale relies on, and that durations format and parse back unchanged. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"

#define MAX_PAIRS 32

static void check_duration(const char *s) {
  int64_t ms;
  if (ps_duration_parse(s, &ms) != 0) return;
  if (ms < 0) abort();
  char buf[64], again[64];
  int n = ps_duration_format(ms, buf, sizeof buf);
  if (n <= 0 || (size_t)n >= sizeof buf) abort();
  int64_t back;
  if (ps_duration_parse(buf, &back) != 0 || back != ms) abort();
  ps_duration_format(back, again, sizeof again);
  if (strcmp(buf, again) != 0) abort();
}

static void check_config(const struct ps_target_config *c) {
  if (c->server_address == NULL || strncmp(c->server_address, "http://", 7) != 0) abort();
  if (c->query == NULL || c->metric_name == NULL) abort();
  if (!(c->threshold > 0) || !isfinite(c->threshold)) abort();
  if (!(c->activation_threshold >= 0) || !isfinite(c->activation_threshold)) abort();
  if (!(c->headroom >= 0) || !isfinite(c->headroom)) abort();
  if (c->step_ms < PS_MIN_STEP_MS) abort();
  if (c->lookahead_ms < 0 || c->lookahead_ms > PS_MAX_LOOKAHEAD_MS) abort();
  if (c->timeout_ms < PS_MIN_TIMEOUT_MS || c->timeout_ms > PS_MAX_TIMEOUT_MS) abort();
  if (c->history_ms <= 0 || c->history_ms % c->step_ms != 0) abort();
  if (c->history_ms / c->step_ms > PS_MAX_HISTORY_POINTS) abort();
  /* period 0 is "auto" (detected); a given period is a multiple of step, at least 2 steps, within the
   * history; models without a season keep none. */
  if (c->period_ms != 0) {
    if (c->model == PS_MODEL_LAST || c->model == PS_MODEL_LINEAR) abort();
    if (c->period_ms < 2 * c->step_ms || c->period_ms % c->step_ms != 0) abort();
    if (c->history_ms < c->period_ms) abort();
  }
  if (!(c->quantile == 0 || (c->quantile >= 0.5 && c->quantile < 1)) || signbit(c->quantile)) abort();
}

/* The server's flags: whatever is accepted is within the bounds the server relies on, and whatever is
 * not says why. argv holds the lines as flags; --help and --version print to /dev/null. */
static void check_flags(char **argv, int argc) {
  static FILE *devnull;
  if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL) abort();
  struct ps_server_config c;
  char err[512];
  ps_server_config_defaults(&c);
  int r = ps_server_config_parse(&c, argc, argv, devnull, err, sizeof err);
  if (r == UV_EINVAL) {
    if (err[0] == '\0') abort();
    return;
  }
  if (r != 0 && r != 1 && r != 2) abort();
  if (c.grpc_listen == NULL || c.http_listen == NULL || c.prometheus_url == NULL) abort();
  if (c.first_load_timeout_ms == 0 || c.target_idle_ms == 0) abort();
  if (c.shutdown_grace_ms > PS_MAX_SHUTDOWN_GRACE_MS) abort();
  if (c.grpc_max_msg < PS_MIN_GRPC_MAX_MSG || c.grpc_max_msg > PS_MAX_GRPC_MAX_MSG) abort();
  if (c.max_targets == 0 || c.max_targets > PS_MAX_MAX_TARGETS) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL) return 0;
  memcpy(text, data, size);
  text[size] = '\0'; /* an embedded NUL just ends the input early, as it would in a C string */

  struct ps_kv md[MAX_PAIRS];
  size_t n = 0;
  /* argv as the server would get it: "--key=value" per line (joined), or "--key" "value" (split). */
  char *joined[MAX_PAIRS + 1], *split[2 * MAX_PAIRS + 1], *names[MAX_PAIRS];
  joined[0] = split[0] = "prescale";
  int nsplit = 1;
  for (char *line = text; line != NULL && n < MAX_PAIRS;) {
    char *nl = strchr(line, '\n');
    if (nl != NULL) *nl = '\0';
    char *eq = strchr(line, '=');
    if (eq != NULL) *eq = '\0';
    const char *value = eq != NULL ? eq + 1 : "";
    size_t klen = strlen(line), vlen = strlen(value);
    joined[n + 1] = malloc(klen + vlen + 4);
    names[n] = malloc(klen + 3);
    if (joined[n + 1] == NULL || names[n] == NULL) abort();
    snprintf(joined[n + 1], klen + vlen + 4, "--%s%s%s", line, eq != NULL ? "=" : "", value);
    snprintf(names[n], klen + 3, "--%s", line);
    split[nsplit++] = names[n];
    if (eq != NULL) split[nsplit++] = eq + 1;
    md[n].key = line;
    md[n].value = eq != NULL ? eq + 1 : "";
    check_duration(md[n].value);
    check_duration(md[n].key);
    n++;
    line = nl != NULL ? nl + 1 : NULL;
  }

  check_flags(joined, (int)n + 1);
  check_flags(split, nsplit);
  for (size_t i = 0; i < n; i++) {
    free(joined[i + 1]);
    free(names[i]);
  }

  struct ps_target_config c;
  char err[256];
  int r = ps_target_config_parse(&c, md, n, "http://127.0.0.1:9090", err, sizeof err);
  if (r == 0) {
    check_config(&c);
    ps_target_config_free(&c);
  } else if (r != UV_EINVAL && r != UV_ENOMEM) {
    abort();
  } else if (err[0] == '\0' && r == UV_EINVAL) {
    abort(); /* every rejection says why */
  }
  free(text);
  return 0;
}
