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

static struct {
  enum ps_log_level level;
  enum ps_log_format format;
  FILE *out; /* NULL: stderr (resolved at write time, so tests may swap stderr) */
} g_log = {PS_LOG_INFO, PS_LOG_TEXT, NULL};

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
}

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
    if (c < 0x20 || c == 0x7f) {
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

void ps_log(enum ps_log_level level, const char *msg, ...) {
  if (!ps_log_enabled(level)) return;
  if ((unsigned)level > PS_LOG_ERROR) level = PS_LOG_ERROR;
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

  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (k == NULL) break;
    const char *v = va_arg(ap, const char *);
    put_key(&b, k, json);
    put_value(&b, v, json);
  }
  va_end(ap);
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
