/* Fuzzes trigger metadata validation and duration parsing: they read whatever KEDA forwards from a
 * user's ScaledObject. Input: lines "key=value" ('\n'-separated; a line without '=' is a key with an
 * empty value). Every value is also fed to ps_duration_parse. Besides not crashing, checks the
 * invariants the rest of prescale relies on, and that durations format and parse back unchanged. */
#include <math.h>
#include <stdint.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL) return 0;
  memcpy(text, data, size);
  text[size] = '\0'; /* an embedded NUL just ends the input early, as it would in a C string */

  struct ps_kv md[MAX_PAIRS];
  size_t n = 0;
  for (char *line = text; line != NULL && n < MAX_PAIRS;) {
    char *nl = strchr(line, '\n');
    if (nl != NULL) *nl = '\0';
    char *eq = strchr(line, '=');
    if (eq != NULL) *eq = '\0';
    md[n].key = line;
    md[n].value = eq != NULL ? eq + 1 : "";
    check_duration(md[n].value);
    check_duration(md[n].key);
    n++;
    line = nl != NULL ? nl + 1 : NULL;
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
