/* Leveled, structured logs. Each event is formatted into one buffer and written with a single fwrite
 * and fflush, so lines from one process never interleave and a crash loses at most the line being built.
 *
 * text: logfmt (https://brandur.org/logfmt): key=value pairs, values quoted when they hold a space,
 *       '=', '"' or a control byte; inside quotes \" \\ \n \r \t and \u00XX escapes.
 * json: one object per line (RFC 8259); strings escaped per section 7, invalid UTF-8 replaced by U+FFFD
 *       so every line is valid JSON whatever bytes a peer sent us. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "buf.h"
#include "http_token.h"
#include "metrics.h"

static struct {
  enum ps_log_level level;
  enum ps_log_format format;
  FILE *out; /* NULL: stderr (resolved at write time, so tests may swap stderr) */
} g_log = {PS_LOG_INFO, PS_LOG_TEXT, NULL};

/* One (level, msg) pair under the rate limit: the window it is in, the lines written in it, and those
 * suppressed since the last suppression line. */
struct rate_slot {
  bool used;
  enum ps_log_level level;
  uint64_t hash; /* of msg */
  uint64_t start_ms;
  unsigned lines;
  uint64_t suppressed;
  char msg[PS_LOG_RATE_MSG_MAX];
};

static uint64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct {
  unsigned burst; /* 0: no limit */
  uint64_t window_ms;
  uint64_t (*now_ms)(void);
  uint64_t total;
  struct rate_slot slots[PS_LOG_RATE_KEYS];
} g_rate = {PS_LOG_RATE_BURST, PS_LOG_RATE_WINDOW_MS, monotonic_ms, 0, {{0}}};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* ---- options ------------------------------------------------------------------------------------- */

int ps_log_level_parse(const char *s, enum ps_log_level *out) {
  if (s == NULL) return UV_EINVAL;
  for (int i = PS_LOG_DEBUG; i <= PS_LOG_ERROR; i++) {
    if (strcasecmp(s, level_names[i]) == 0) {
      *out = (enum ps_log_level)i;
      return 0;
    }
  }
  if (strcasecmp(s, "warning") == 0) {
    *out = PS_LOG_WARN;
    return 0;
  }
  return UV_EINVAL;
}

int ps_log_format_parse(const char *s, enum ps_log_format *out) {
  if (s == NULL) return UV_EINVAL;
  if (strcasecmp(s, "text") == 0 || strcasecmp(s, "logfmt") == 0) {
    *out = PS_LOG_TEXT;
    return 0;
  }
  if (strcasecmp(s, "json") == 0) {
    *out = PS_LOG_JSON;
    return 0;
  }
  return UV_EINVAL;
}

void ps_log_setup(enum ps_log_level level, enum ps_log_format format, FILE *out) {
  g_log.level = level;
  g_log.format = format;
  g_log.out = out;
  ps_log_set_rate(PS_LOG_RATE_BURST, PS_LOG_RATE_WINDOW_MS, NULL);
  g_rate.total = 0;
  if (ps_metrics_declare(
          PS_LOG_SUPPRESSED_METRIC, PS_METRIC_COUNTER,
          "Log lines suppressed by the rate limit of repeated lines (README, Signals and logs).") == 0)
    ps_metrics_add(PS_LOG_SUPPRESSED_METRIC, "", 0);
}

void ps_log_set_rate(unsigned burst, uint64_t window_ms, uint64_t (*now_ms)(void)) {
  g_rate.burst = burst;
  g_rate.window_ms = window_ms;
  g_rate.now_ms = now_ms != NULL ? now_ms : monotonic_ms;
  memset(g_rate.slots, 0, sizeof g_rate.slots);
}

uint64_t ps_log_suppressed_total(void) { return g_rate.total; }

bool ps_log_enabled(enum ps_log_level level) { return level >= g_log.level; }

/* ---- line buffer --------------------------------------------------------------------------------- */

/* One event being formatted. `failed` remembers an allocation failure anywhere in the line, so a
 * line with a hole in it is dropped rather than written. */
struct line {
  struct ps_buf buf;
  bool failed;
};

static void l_append(struct line *l, const void *p, size_t n) {
  if (ps_buf_append(&l->buf, p, n) != 0) l->failed = true;
}

static void l_puts(struct line *l, const char *s) { l_append(l, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void l_printf(struct line *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (ps_buf_vprintf(&l->buf, fmt, ap) != 0) l->failed = true;
  va_end(ap);
}

/* ---- escaping ------------------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 section 4: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  size_t n;
  unsigned lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if ((size_t)(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return n;
}

/* Appends s escaped for inside double quotes. JSON and logfmt share the escapes; they differ only in
 * what to do with bytes that are not UTF-8: JSON must stay valid (U+FFFD), logfmt keeps the byte
 * visible as \xNN. */
static void put_escaped(struct line *b, const char *s, bool json) {
  const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
  while (p < end) {
    const unsigned char *run = p;
    while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') p++;
    l_append(b, run, (size_t)(p - run));
    if (p == end) break;
    unsigned c = *p;
    switch (c) {
    case '"':
      l_puts(b, "\\\"");
      p++;
      continue;
    case '\\':
      l_puts(b, "\\\\");
      p++;
      continue;
    case '\n':
      l_puts(b, "\\n");
      p++;
      continue;
    case '\r':
      l_puts(b, "\\r");
      p++;
      continue;
    case '\t':
      l_puts(b, "\\t");
      p++;
      continue;
    default: break;
    }
    if (ps_ctl(c)) {
      l_printf(b, "\\u%04x", c);
      p++;
      continue;
    }
    size_t n = utf8_len(p, end);
    if (n > 0) {
      l_append(b, p, n);
      p += n;
    } else {
      if (json)
        l_puts(b, "\\ufffd");
      else
        l_printf(b, "\\x%02x", c);
      p++;
    }
  }
}

static bool logfmt_needs_quotes(const char *s) {
  if (*s == '\0') return false; /* key= is logfmt's empty value */
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p >= 0x7f) return true;
  }
  return false;
}

static void put_key(struct line *b, const char *k, bool json) {
  if (json) {
    l_puts(b, ",\"");
    put_escaped(b, k, true);
    l_puts(b, "\":");
    return;
  }
  /* logfmt keys cannot be quoted: anything that would end the key becomes '_'. Keys are literals in
   * our own code, so this only guards against a mistake. */
  l_puts(b, " ");
  for (const unsigned char *p = (const unsigned char *)k; *p; p++) {
    char c = (*p <= ' ' || *p == '=' || *p == '"' || *p >= 0x7f) ? '_' : (char)*p;
    l_append(b, &c, 1);
  }
  l_puts(b, "=");
}

static void put_value(struct line *b, const char *v, bool json) {
  if (v == NULL) v = "";
  if (json || logfmt_needs_quotes(v)) {
    l_puts(b, "\"");
    put_escaped(b, v, json);
    l_puts(b, "\"");
  } else {
    l_puts(b, v);
  }
}

/* ---- events -------------------------------------------------------------------------------------- */

/* RFC 3339 in UTC with milliseconds: 2026-11-28T21:00:00.123Z. */
static void format_ts(char *dst, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(dst, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void vlog(enum ps_log_level level, const char *msg, va_list ap);

static void emit(enum ps_log_level level, const char *msg, ...) {
  va_list ap;
  va_start(ap, msg);
  vlog(level, msg, ap);
  va_end(ap);
}

/* ---- rate limit ---------------------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Writes the slot's suppression line, if it has one, and starts its count again. */
static void report(struct rate_slot *r, uint64_t now) {
  if (r->suppressed == 0) return;
  char text[PS_LOG_RATE_MSG_MAX + 96], n[24];
  uint64_t secs = (now - r->start_ms + 999) / 1000;
  snprintf(n, sizeof n, "%llu", (unsigned long long)r->suppressed);
  snprintf(text, sizeof text, "%s (suppressed %llu similar lines in the last %llus)", r->msg,
           (unsigned long long)r->suppressed, (unsigned long long)(secs > 0 ? secs : 1));
  r->suppressed = 0;
  emit(r->level, text, "suppressed", n, NULL);
}

void ps_log_flush_suppressed(bool all) {
  if (g_rate.burst == 0) return;
  uint64_t now = g_rate.now_ms();
  for (size_t i = 0; i < PS_LOG_RATE_KEYS; i++) {
    struct rate_slot *r = &g_rate.slots[i];
    if (r->used && r->suppressed > 0 && (all || now - r->start_ms >= g_rate.window_ms)) report(r, now);
  }
}

/* The slot of (level, msg): its own, else a free one, else the one whose window began first (whose count
 * is reported before it is taken). */
static struct rate_slot *slot_of(enum ps_log_level level, const char *msg, uint64_t h, uint64_t now) {
  struct rate_slot *oldest = NULL;
  for (size_t i = 0; i < PS_LOG_RATE_KEYS; i++) {
    struct rate_slot *r = &g_rate.slots[i];
    if (r->used && r->hash == h && r->level == level && strncmp(r->msg, msg, sizeof r->msg - 1) == 0)
      return r;
    if (!r->used) {
      if (oldest == NULL || oldest->used) oldest = r;
    } else if (oldest == NULL || (oldest->used && r->start_ms < oldest->start_ms)) {
      oldest = r;
    }
  }
  if (oldest->used) report(oldest, now);
  *oldest = (struct rate_slot){.used = true, .level = level, .hash = h, .start_ms = now};
  snprintf(oldest->msg, sizeof oldest->msg, "%s", msg);
  return oldest;
}

/* True when this line is one too many for its (level, msg) in the current window: it is counted instead. */
static bool rate_limited(enum ps_log_level level, const char *msg) {
  if (g_rate.burst == 0 || level == PS_LOG_DEBUG) return false;
  uint64_t now = g_rate.now_ms();
  ps_log_flush_suppressed(false); /* windows that ended, whatever their key */
  struct rate_slot *r = slot_of(level, msg, fnv1a(msg), now);
  if (now - r->start_ms >= g_rate.window_ms) {
    r->start_ms = now;
    r->lines = 0;
  }
  if (r->lines < g_rate.burst) {
    r->lines++;
    return false;
  }
  r->suppressed++;
  g_rate.total++;
  ps_metrics_add(PS_LOG_SUPPRESSED_METRIC, "", 1);
  return true;
}

/* ---- lines --------------------------------------------------------------------------------------- */

void ps_log(enum ps_log_level level, const char *msg, ...) {
  if (!ps_log_enabled(level)) return;
  if ((unsigned)level > PS_LOG_ERROR) level = PS_LOG_ERROR;
  if (msg == NULL) msg = "";
  if (rate_limited(level, msg)) return;
  va_list ap;
  va_start(ap, msg);
  vlog(level, msg, ap);
  va_end(ap);
}

static void vlog(enum ps_log_level level, const char *msg, va_list ap) {
  bool json = g_log.format == PS_LOG_JSON;
  char ts[64];
  format_ts(ts, sizeof ts);

  struct line b = {.failed = false};
  ps_buf_init(&b.buf);
  if (json)
    l_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
  else
    l_printf(&b, "ts=%s level=%s msg=", ts, level_names[level]);
  put_value(&b, msg, json);

  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (k == NULL) break;
    const char *v = va_arg(ap, const char *);
    put_key(&b, k, json);
    put_value(&b, v, json);
  }
  l_puts(&b, json ? "}\n" : "\n");

  /* Out of memory somewhere in the line: drop it rather than write it with a hole, which a log shipper
   * would misparse. */
  if (!b.failed) {
    FILE *out = g_log.out != NULL ? g_log.out : stderr;
    fwrite(b.buf.data, 1, b.buf.len, out);
    fflush(out);
  }
  ps_buf_free(&b.buf);
}
