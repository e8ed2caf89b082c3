/* Leveled, structured logs: one line per event, as logfmt text or JSON, to stderr by default. */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum ps_log_level { PS_LOG_DEBUG, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR };
enum ps_log_format { PS_LOG_TEXT, PS_LOG_JSON };

/* "debug" | "info" | "warn" | "error"; 0 or UV_EINVAL. */
int ps_log_level_parse(const char *s, enum ps_log_level *out);
/* "text" | "json"; 0 or UV_EINVAL. */
int ps_log_format_parse(const char *s, enum ps_log_format *out);
/* out NULL means stderr. Not owned. */
void ps_log_setup(enum ps_log_level level, enum ps_log_format format, FILE *out);
bool ps_log_enabled(enum ps_log_level level);

/* Logs msg with key/value string pairs, NULL-terminated:
 *   ps_log(PS_LOG_WARN, "refresh failed", "target", id, "error", text, NULL);
 * text:  ts=2026-11-28T21:00:00.123Z level=warn msg="refresh failed" target=ns/app error="..."
 * json:  {"ts":"...","level":"warn","msg":"refresh failed","target":"ns/app","error":"..."}
 * Values are quoted/escaped as each format needs; a NULL value prints as empty. */
void ps_log(enum ps_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
