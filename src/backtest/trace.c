/* CSV trace reader: a byte parser over an untrusted buffer (fuzzed by tests/fuzz/fuzz_trace.c).
 *
 * Numbers are checked against a strict grammar before strtod sees a NUL-terminated copy, so that what
 * strtod alone would accept ("inf", "0x1p3", "nan(...)", leading blanks) is an error with the line. */
#include "trace.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define QUOTE_MAX 60 /* bytes of a bad line quoted in an error */

/* ---- errors -------------------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Writes s[0..n) as a printable, quoted, bounded string: the user sees what the line held even when it
 * is binary garbage. */
static void quote(const char *s, size_t n, char *out, size_t outlen) {
  size_t o = 0;
  bool cut = n > QUOTE_MAX;
  if (cut) n = QUOTE_MAX;
  if (outlen < 8) {
    if (outlen > 0) out[0] = '\0';
    return;
  }
  out[o++] = '"';
  for (size_t i = 0; i < n && o + 6 < outlen; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c >= 0x20 && c < 0x7f) {
      out[o++] = (char)c;
    } else {
      o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
  }
  out[o++] = '"';
  if (cut && o + 4 < outlen) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

/* ---- numbers ------------------------------------------------------------------------------------- */

/* [+-]? digits [. digits*]? ([eE] [+-]? digits)?  or  [+-]? . digits (exponent)? : a plain decimal. */
static bool is_decimal(const char *s, size_t n) {
  size_t i = 0, digits = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) i++;
  while (i < n && s[i] >= '0' && s[i] <= '9') i++, digits++;
  if (i < n && s[i] == '.') {
    i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, digits++;
  }
  if (digits == 0) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    size_t ed = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, ed++;
    if (ed == 0) return false;
  }
  return i == n;
}

/* A finite number from s[0..n), or false. */
static bool read_number(const char *s, size_t n, double *out) {
  char tmp[PS_TRACE_MAX_FIELD + 1];
  if (n == 0 || n > PS_TRACE_MAX_FIELD || !is_decimal(s, n)) return false;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  errno = 0;
  char *end;
  double d = strtod(tmp, &end);
  if (end != tmp + n || !isfinite(d)) return false;
  *out = d;
  return true;
}

static void trim(const char **s, size_t *n) {
  while (*n > 0 && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* ---- rows ---------------------------------------------------------------------------------------- */

struct parser {
  struct ps_trace *t;
  size_t cap;
  int64_t prev_ms;
  size_t prev_line;
  char *err;
  size_t errlen;
};

static int push(struct parser *p, double v) {
  struct ps_trace *t = p->t;
  if (t->n == p->cap) {
    if (p->cap >= PS_TRACE_MAX_ROWS)
      return fail(p->err, p->errlen, UV_E2BIG, "more than %u rows (the limit of a backtest)",
                  PS_TRACE_MAX_ROWS);
    size_t ncap = p->cap == 0 ? 1024 : p->cap * 2;
    if (ncap > PS_TRACE_MAX_ROWS) ncap = PS_TRACE_MAX_ROWS;
    double *nv = realloc(t->v, ncap * sizeof *nv);
    if (nv == NULL) return fail(p->err, p->errlen, UV_ENOMEM, "out of memory at %zu rows", t->n);
    t->v = nv;
    p->cap = ncap;
  }
  t->v[t->n++] = v;
  return 0;
}

static int row(struct parser *p, size_t lineno, const char *line, size_t len) {
  char q[QUOTE_MAX * 4 + 16], fq[QUOTE_MAX * 4 + 16];
  const char *comma = memchr(line, ',', len);
  if (comma == NULL) {
    quote(line, len, q, sizeof q);
    return fail(p->err, p->errlen, UV_EINVAL, "line %zu: %s is not `timestamp_seconds,value`", lineno, q);
  }
  const char *ts = line, *vs = comma + 1;
  size_t tn = (size_t)(comma - line), vn = len - tn - 1;
  trim(&ts, &tn);
  trim(&vs, &vn);
  double tsec, v;
  quote(line, len, q, sizeof q);
  if (memchr(vs, ',', vn) != NULL)
    return fail(p->err, p->errlen, UV_EINVAL,
                "line %zu: %s has more than two columns (want timestamp_seconds,value)", lineno, q);
  if (!read_number(ts, tn, &tsec) || fabs(tsec) > PS_TRACE_MAX_ABS_SECONDS) {
    quote(ts, tn, fq, sizeof fq);
    return fail(p->err, p->errlen, UV_EINVAL, "line %zu: %s: timestamp %s is not a number of seconds", lineno,
                q, fq);
  }
  if (!read_number(vs, vn, &v) || v < 0) {
    quote(vs, vn, fq, sizeof fq);
    return fail(p->err, p->errlen, UV_EINVAL, "line %zu: %s: value %s is not a number >= 0", lineno, q, fq);
  }
  int64_t t_ms = (int64_t)llround(tsec * 1000.0);
  struct ps_trace *t = p->t;
  if (t->n == 0) {
    t->t0_ms = t_ms;
  } else if (t->n == 1) {
    if (t_ms <= p->prev_ms)
      return fail(
          p->err, p->errlen, UV_EINVAL,
          "line %zu: %s: timestamp is not after the previous row's (line %zu); rows must be in time order",
          lineno, q, p->prev_line);
    t->step_ms = t_ms - p->prev_ms;
  } else if (t_ms - p->prev_ms != t->step_ms) {
    return fail(
        p->err, p->errlen, UV_EINVAL,
        "line %zu: %s: timestamp is %.3f s after the previous row's, but the trace's interval is %.3f s "
        "(rows must be evenly spaced, without gaps)",
        lineno, q, (double)(t_ms - p->prev_ms) / 1000.0, (double)t->step_ms / 1000.0);
  }
  p->prev_ms = t_ms;
  p->prev_line = lineno;
  return push(p, v);
}

/* ---- public -------------------------------------------------------------------------------------- */

int ps_trace_parse(const char *buf, size_t len, struct ps_trace *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  struct parser p = {.t = out, .err = err, .errlen = errlen};
  bool first = true;
  size_t lineno = 0, pos = 0;
  int r = 0;
  while (pos < len && r == 0) {
    const char *line = buf + pos;
    const char *nl = memchr(line, '\n', len - pos);
    size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
    pos += n + (nl != NULL);
    lineno++;
    if (n > 0 && line[n - 1] == '\r') n--;
    const char *s = line;
    size_t sn = n;
    trim(&s, &sn);
    if (sn == 0) continue;
    /* The header: the first non-blank line when it cannot be the start of a number. */
    if (first) {
      first = false;
      char c = s[0];
      if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')) continue;
    }
    r = row(&p, lineno, line, n);
  }
  if (r == 0 && out->n < 2)
    r = fail(err, errlen, UV_EINVAL,
             "%zu data rows: a trace needs at least 2 (`timestamp_seconds,value` per line)", out->n);
  if (r != 0) ps_trace_free(out);
  return r;
}

int ps_trace_load(const char *path, struct ps_trace *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    int e = -errno;
    return fail(err, errlen, e, "%s: cannot open: %s", path, strerror(-e));
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int r = 0;
  for (;;) {
    if (len == cap) {
      if (cap >= PS_TRACE_MAX_BYTES) {
        r = fail(err, errlen, UV_EFBIG, "%s: larger than %u MiB, the limit of a backtest", path,
                 PS_TRACE_MAX_BYTES >> 20);
        break;
      }
      size_t ncap = cap == 0 ? (1u << 20) : cap * 2;
      if (ncap > PS_TRACE_MAX_BYTES) ncap = PS_TRACE_MAX_BYTES;
      char *nb = realloc(buf, ncap);
      if (nb == NULL) {
        r = fail(err, errlen, UV_ENOMEM, "%s: out of memory", path);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f)) r = fail(err, errlen, UV_EIO, "%s: read error", path);
      break;
    }
  }
  fclose(f);
  if (r == 0) {
    char inner[512];
    r = ps_trace_parse(buf, len, out, inner, sizeof inner);
    if (r != 0) fail(err, errlen, r, "%s: %s", path, inner);
  }
  free(buf);
  return r;
}

void ps_trace_free(struct ps_trace *t) {
  free(t->v);
  memset(t, 0, sizeof *t);
}
