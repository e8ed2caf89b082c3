/* Leveled, structured logs: one line per event, as logfmt text or JSON, to stderr by default. */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stdbool.h>
#include <stdio.h>

#include <stdint.h>

enum ps_log_level { PS_LOG_DEBUG, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR };

/* Rate limit of repeated lines: a client can make the server log a line per connection or per call
 * (rapid reset: 1,423 WARN lines in 20 s), enough to fill the log volume. So at most PS_LOG_RATE_BURST
 * lines of one (level, msg) are written per PS_LOG_RATE_WINDOW_MS; the rest are counted (the counter
 * prescale_log_suppressed_total, PS_LOG_SUPPRESSED_METRIC) and, once the window is over, one line of the
 * same level says `<msg> (suppressed K similar lines in the last Ts)` with suppressed=K. Debug lines are
 * not limited: they are asked for. PS_LOG_RATE_KEYS (level, msg) pairs are tracked at once; a new pair
 * beyond them takes the slot whose window began first (its count is reported first). */
#define PS_LOG_RATE_BURST        10
#define PS_LOG_RATE_WINDOW_MS    10000
#define PS_LOG_RATE_KEYS         64
#define PS_LOG_RATE_MSG_MAX      96 /* bytes of a msg kept for its suppression line */
#define PS_LOG_SUPPRESSED_METRIC "prescale_log_suppressed_total"
enum ps_log_format { PS_LOG_TEXT, PS_LOG_JSON };

/* "debug" | "info" | "warn" | "error"; 0 or UV_EINVAL. */
int ps_log_level_parse(const char *s, enum ps_log_level *out);
/* "text" | "json"; 0 or UV_EINVAL. */
int ps_log_format_parse(const char *s, enum ps_log_format *out);
/* out NULL means stderr. Not owned. Resets the rate limit to its defaults (no line suppressed so far) and
 * declares PS_LOG_SUPPRESSED_METRIC in the metrics registry. */
void ps_log_setup(enum ps_log_level level, enum ps_log_format format, FILE *out);
/* Tests: burst lines per window_ms (burst 0: no limit), and the clock in ms (NULL: CLOCK_MONOTONIC). */
void ps_log_set_rate(unsigned burst, uint64_t window_ms, uint64_t (*now_ms)(void));
/* Writes the suppression line of every (level, msg) whose window is over (all of them when `all`, e.g.
 * at exit), so that a count is not held back when no line of that kind follows. The server calls it every
 * PS_LOG_RATE_WINDOW_MS. */
void ps_log_flush_suppressed(bool all);
/* Lines suppressed since ps_log_setup. */
uint64_t ps_log_suppressed_total(void);
bool ps_log_enabled(enum ps_log_level level);

/* Logs msg with key/value string pairs, NULL-terminated:
 *   ps_log(PS_LOG_WARN, "refresh failed", "target", id, "error", text, NULL);
 * text:  ts=2026-11-28T21:00:00.123Z level=warn msg="refresh failed" target=ns/app error="..."
 * json:  {"ts":"...","level":"warn","msg":"refresh failed","target":"ns/app","error":"..."}
 * Values are quoted/escaped as each format needs; a NULL value prints as empty. */
void ps_log(enum ps_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
