/* Command-line flags from a table (flags.h). Every error is one line naming the flag or variable and
 * the offending value, with what would be accepted: it is all an operator sees when a pod does not
 * start, so it has to say what to fix. */
#include "flags.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "duration.h"
#include "hostport.h"
#include "http_token.h"
#include "log.h"

#define KIB           1024u
#define MIB           (1024u * 1024u)
#define SIZE_DIGITS   32  /* bytes of the number in a size; longer ones overflow anyway */
#define BOUND_MAX     32  /* bytes of a formatted range bound: "1024MiB", "10m", "1000000" */
#define USAGE_LHS_MAX 128 /* "--" + name + " " + arg */
#define WHO_MAX       (PS_FLAGS_MAX_NAME + 3) /* "--" + name + NUL */
/* An unknown flag's name is cut one byte past what is echoed, so that the echo still ends in "...". */
#define UNKNOWN_ECHO  (PS_FLAGS_QUOTE_MAX + 1)

/* ---- error helpers ------------------------------------------------------------------------------- */

void ps_flags_quote(char *dst, size_t cap, const char *s) {
  size_t n = 0;
#define PUT(c)                                                                                               \
  do {                                                                                                       \
    if (n + 1 < cap) dst[n++] = (c);                                                                         \
  } while (0)
  PUT('"');
  size_t i = 0;
  for (; s[i] != '\0' && i < PS_FLAGS_QUOTE_MAX; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      PUT('\\');
      PUT((char)c);
    } else if (ps_ctl(c)) {
      char hex[5];
      snprintf(hex, sizeof hex, "\\x%02x", c);
      for (int k = 0; k < 4; k++) PUT(hex[k]);
    } else {
      PUT((char)c);
    }
  }
  if (s[i] != '\0') {
    PUT('.');
    PUT('.');
    PUT('.');
  }
  PUT('"');
#undef PUT
  if (cap > 0) dst[n] = '\0';
}

int ps_flags_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return UV_EINVAL;
}

/* ---- value syntaxes ------------------------------------------------------------------------------ */

/* Decimal digits only (no sign, no space), at most max. */
static bool parse_uint(const char *s, uint64_t max, uint64_t *out) {
  if (*s < '0' || *s > '9') return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/* host:port or [v6]:port with a decimal port <= 65535 (0 asks for an ephemeral port, which tests use).
 * The host is not resolved here: a name that does not resolve is an error of the listen call. */
static bool valid_listen(const char *s) {
  char host[PS_HOSTPORT_HOST_MAX];
  int port;
  return ps_hostport_parse(s, strlen(s), PS_HOSTPORT_PORT_ZERO, host, sizeof host, &port) == 0;
}

const char *ps_flags_url_problem(const char *s) {
  size_t skip = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
  if (skip == 0) return "is not an http:// or https:// URL";
  const char *host = s + skip;
  if (*host == '\0' || *host == '/' || *host == '?' || *host == '#') return "has no host";
  for (const char *p = s; *p; p++) {
    if (*p == '?' || *p == '#') return "must not have a query or fragment";
    if ((unsigned char)*p <= ' ' || *p == 0x7f) return "must not contain spaces or control characters";
  }
  return NULL;
}

size_t ps_flags_url_len(const char *s) {
  size_t n = strlen(s);
  const char *sep = strstr(s, "://");
  size_t keep = sep != NULL ? (size_t)(sep - s) + 4 : 1;
  while (n > keep && s[n - 1] == '/') n--;
  return n;
}

/* Sizes: plain bytes, or a whole number of KiB or MiB (binary multiples, IEC 80000-13), at most max. */
static bool parse_size(const char *s, uint64_t max, uint64_t *out) {
  size_t n = strlen(s);
  uint64_t mult = 1;
  if (n > 3 && strcmp(s + n - 3, "KiB") == 0)
    mult = KIB;
  else if (n > 3 && strcmp(s + n - 3, "MiB") == 0)
    mult = MIB;
  char num[SIZE_DIGITS];
  size_t digits = mult == 1 ? n : n - 3;
  if (digits == 0 || digits >= sizeof num) return false;
  memcpy(num, s, digits);
  num[digits] = '\0';
  uint64_t v;
  if (!parse_uint(num, max / mult, &v)) return false;
  *out = v * mult;
  return true;
}

/* A range bound as a user would write it: "0", "10m"; "1KiB", "1024MiB", "65536"; "1000000". */
static void format_bound(enum ps_flag_kind kind, uint64_t v, char *buf, size_t len) {
  if (kind == PS_FLAG_DURATION && v != 0)
    ps_duration_format((int64_t)v, buf, len);
  else if (kind == PS_FLAG_SIZE && v != 0 && v % MIB == 0)
    snprintf(buf, len, "%" PRIu64 "MiB", v / MIB);
  else if (kind == PS_FLAG_SIZE && v != 0 && v % KIB == 0)
    snprintf(buf, len, "%" PRIu64 "KiB", v / KIB);
  else
    snprintf(buf, len, "%" PRIu64, v);
}

/* ---- applying one value -------------------------------------------------------------------------- */

static const char *kind_example(const struct ps_flag *f) {
  if (f->example != NULL) return f->example;
  switch (f->kind) {
  case PS_FLAG_LISTEN: return "e.g. 0.0.0.0:6000";
  case PS_FLAG_DURATION: return "e.g. 30s, 5m, 1h30m";
  case PS_FLAG_SIZE: return "e.g. 4MiB, 65536";
  default: return NULL;
  }
}

/* Durations, sizes and counts: `parsed` says the syntax was right and `v` is the value. With an upper
 * bound, every failure reads "is not a <noun> from <min> to <max>", which says at once what is
 * accepted; without one, a bad syntax and a value below the minimum are told apart. */
static int check_range(const struct ps_flag *f, const char *who, const char *q, const char *noun, bool parsed,
                       uint64_t v, char *err, size_t errlen) {
  const char *ex = kind_example(f), *open = ex != NULL ? " (" : "", *close = ex != NULL ? ")" : "";
  if (ex == NULL) ex = "";
  char lo[BOUND_MAX], hi[BOUND_MAX];
  format_bound(f->kind, f->min, lo, sizeof lo);
  format_bound(f->kind, f->max, hi, sizeof hi);
  if (f->max != 0) {
    if (!parsed || v < f->min || v > f->max)
      return ps_flags_fail(err, errlen, "%s: %s is not a %s from %s to %s%s%s%s", who, q, noun, lo, hi, open,
                           ex, close);
    return 0;
  }
  if (!parsed) return ps_flags_fail(err, errlen, "%s: %s is not a %s%s%s%s", who, q, noun, open, ex, close);
  if (v < f->min && f->min <= 1) return ps_flags_fail(err, errlen, "%s: %s must be more than 0", who, q);
  if (v < f->min) return ps_flags_fail(err, errlen, "%s: %s must be at least %s", who, q, lo);
  return 0;
}

/* Applies one value; `who` is "--flag" or the variable's name, as the user wrote it. */
static int apply(const struct ps_flag *f, void *dst, const char *who, const char *v, char *err,
                 size_t errlen) {
  void *field = (char *)dst + f->offset;
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, v);
  const char *why = NULL;
  int64_t ms = 0;
  uint64_t u = 0;
  bool ok;
  int r;
  switch (f->kind) {
  case PS_FLAG_STRING: *(const char **)field = v; return 0;
  case PS_FLAG_LISTEN:
    if (!valid_listen(v))
      return ps_flags_fail(err, errlen, "%s: %s is not host:port or [v6]:port (%s)", who, q, kind_example(f));
    *(const char **)field = v;
    return 0;
  case PS_FLAG_URL:
    if ((why = ps_flags_url_problem(v)) != NULL) return ps_flags_fail(err, errlen, "%s: %s %s", who, q, why);
    *(const char **)field = v;
    return 0;
  case PS_FLAG_DURATION:
    ok = ps_duration_parse(v, &ms) == 0;
    if ((r = check_range(f, who, q, "duration", ok, (uint64_t)ms, err, errlen)) != 0) return r;
    /* The field is uint64_t (or int64_t, which may alias it: C11 6.5p7); ms is never negative. */
    *(uint64_t *)field = (uint64_t)ms;
    return 0;
  case PS_FLAG_SIZE:
    ok = parse_size(v, SIZE_MAX, &u);
    if ((r = check_range(f, who, q, "size", ok, u, err, errlen)) != 0) return r;
    *(size_t *)field = (size_t)u;
    return 0;
  case PS_FLAG_COUNT:
    ok = parse_uint(v, SIZE_MAX, &u);
    if ((r = check_range(f, who, q, "whole number", ok, u, err, errlen)) != 0) return r;
    *(size_t *)field = (size_t)u;
    return 0;
  case PS_FLAG_LOG_LEVEL:
    if (ps_log_level_parse(v, (enum ps_log_level *)field) != 0)
      return ps_flags_fail(err, errlen, "%s: %s is not a log level (debug, info, warn or error)", who, q);
    return 0;
  case PS_FLAG_LOG_FORMAT:
    if (ps_log_format_parse(v, (enum ps_log_format *)field) != 0)
      return ps_flags_fail(err, errlen, "%s: %s is not a log format (text or json)", who, q);
    return 0;
  case PS_FLAG_SWITCH: *(bool *)field = true; return 0;
  case PS_FLAG_CUSTOM:
    if (f->check == NULL) return ps_flags_fail(err, errlen, "%s: no check for this flag", who);
    if ((why = f->check(v, field)) != NULL) return ps_flags_fail(err, errlen, "%s: %s %s", who, q, why);
    return 0;
  }
  return ps_flags_fail(err, errlen, "%s: unknown kind of flag", who);
}

/* ---- argv and the environment -------------------------------------------------------------------- */

static const struct ps_flag *find_short(const struct ps_flags_spec *spec, char c) {
  for (size_t k = 0; k < spec->nflags; k++)
    if (spec->flags[k].short_name != '\0' && spec->flags[k].short_name == c) return &spec->flags[k];
  return NULL;
}

static const struct ps_flag *find(const struct ps_flags_spec *spec, const char *name, size_t nlen) {
  for (size_t k = 0; k < spec->nflags; k++) {
    const struct ps_flag *f = &spec->flags[k];
    if (strlen(f->name) == nlen && strncmp(f->name, name, nlen) == 0) return f;
  }
  return NULL;
}

/* `unknown flag "--x" (see --help)`, echoing the first len bytes of a (the name, without any "=V"). */
static int unknown(const struct ps_flags_spec *spec, const char *a, size_t len, char *err, size_t errlen) {
  char name[UNKNOWN_ECHO + 1], q[PS_FLAGS_QUOTED_MAX];
  snprintf(name, sizeof name, "%.*s", (int)(len < UNKNOWN_ECHO ? len : UNKNOWN_ECHO), a);
  ps_flags_quote(q, sizeof q, name);
  return ps_flags_fail(err, errlen, "unknown flag %s (see --help)", q);
}

/* An argument that is not a flag (argv[i]): the spec's operand, or an error that says what it may be. */
static int operand(const struct ps_flags_spec *spec, void *dst, int i, const char *a, char *err,
                   size_t errlen) {
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, a);
  if (spec->operand != NULL) {
    const char **slot = (const char **)(void *)((char *)dst + spec->operand_offset);
    if (*slot == NULL) {
      *slot = a;
      return 0;
    }
    char first[PS_FLAGS_QUOTED_MAX];
    ps_flags_quote(first, sizeof first, *slot);
    return ps_flags_fail(err, errlen, "unexpected argument %s: one %s only, and %s came first (see --help)",
                         q, spec->operand, first);
  }
  if (spec->subcommands != NULL && i == 1)
    return ps_flags_fail(err, errlen, "unknown subcommand %s (known: %s; see --help)", q, spec->subcommands);
  const char *note = spec->positional_note;
  return ps_flags_fail(err, errlen, "unexpected argument %s%s%s (see --help)", q, note != NULL ? ": " : "",
                       note != NULL ? note : "");
}

int ps_flags_parse(const struct ps_flags_spec *spec, void *dst, int argc, char **argv, FILE *out, char *err,
                   size_t errlen) {
  if (err != NULL && errlen > 0) err[0] = '\0';
  /* The environment first, so flags override it. An empty variable counts as unset. */
  for (size_t k = 0; k < spec->nflags; k++) {
    const struct ps_flag *f = &spec->flags[k];
    /* A table mistake, caught by the program's own tests rather than by a user. */
    if (strlen(f->name) > PS_FLAGS_MAX_NAME)
      return ps_flags_fail(err, errlen, "flag table: --%.*s... is longer than %d bytes", PS_FLAGS_MAX_NAME,
                           f->name, PS_FLAGS_MAX_NAME);
    const char *v = f->env != NULL ? getenv(f->env) : NULL;
    if (v == NULL || *v == '\0') continue;
    int r = apply(f, dst, f->env, v, err, errlen);
    if (r != 0) return r;
  }

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      ps_flags_usage(spec, out);
      return 1;
    }
    if (strcmp(a, "--version") == 0) {
      fprintf(out, "%s %s\n", spec->program, spec->version);
      return 2;
    }
    if (a[0] != '-') {
      int r = operand(spec, dst, i, a, err, errlen);
      if (r != 0) return r;
      continue;
    }
    const struct ps_flag *f;
    const char *v = NULL; /* the value given in the same argument */
    /* "-" (stdin) means nothing to these programs. */
    if (a[1] == '\0') return unknown(spec, a, 1, err, errlen);
    if (a[1] != '-') {
      /* -x V, -x=V, -xV */
      if ((f = find_short(spec, a[1])) == NULL) return unknown(spec, a, strlen(a), err, errlen);
      if (a[2] != '\0') v = a[2] == '=' ? a + 3 : a + 2;
    } else {
      const char *name = a + 2, *eq = strchr(name, '=');
      size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
      if (nlen == 0 || (f = find(spec, name, nlen)) == NULL) return unknown(spec, a, nlen + 2, err, errlen);
      if (eq != NULL) v = eq + 1;
    }
    char who[WHO_MAX];
    snprintf(who, sizeof who, "--%s", f->name);
    if (f->kind == PS_FLAG_SWITCH) {
      if (v != NULL) return ps_flags_fail(err, errlen, "%s: takes no value (see --help)", who);
      v = "";
    } else if (v == NULL && i + 1 < argc) {
      v = argv[++i];
    } else if (v == NULL && f->def != NULL) {
      return ps_flags_fail(err, errlen, "%s: missing value (e.g. %s %s)", who, who, f->def);
    } else if (v == NULL) {
      return ps_flags_fail(err, errlen, "%s: missing value (see --help)", who);
    }
    int r = apply(f, dst, who, v, err, errlen);
    if (r != 0) return r;
  }
  return 0;
}

int ps_flags_defaults(const struct ps_flags_spec *spec, void *dst) {
  int rc = 0;
  for (size_t k = 0; k < spec->nflags; k++) {
    const struct ps_flag *f = &spec->flags[k];
    if (f->def != NULL && apply(f, dst, f->name, f->def, NULL, 0) != 0) rc = UV_EINVAL;
  }
  return rc;
}

/* ---- usage --------------------------------------------------------------------------------------- */

void ps_flags_usage(const struct ps_flags_spec *spec, FILE *out) {
  bool any_env = false;
  for (size_t k = 0; k < spec->nflags; k++) any_env = any_env || spec->flags[k].env != NULL;
  fprintf(out, "Usage: %s%s%s [flags]\n\n%s\nFlags%s:\n", spec->program, spec->operand != NULL ? " " : "",
          spec->operand != NULL ? spec->operand : "", spec->about != NULL ? spec->about : "",
          any_env ? " (each may also be set by the environment variable shown; a flag wins over its variable)"
                  : "");
  for (size_t k = 0; k < spec->nflags; k++) {
    const struct ps_flag *f = &spec->flags[k];
    char lhs[USAGE_LHS_MAX];
    int n = f->short_name != '\0' ? snprintf(lhs, sizeof lhs, "-%c, ", f->short_name) : 0;
    if (f->kind == PS_FLAG_SWITCH)
      snprintf(lhs + n, sizeof lhs - (size_t)n, "--%s", f->name);
    else
      snprintf(lhs + n, sizeof lhs - (size_t)n, "--%s %s", f->name, f->arg != NULL ? f->arg : "V");
    fprintf(out, "  %-*s %s", PS_FLAGS_HELP_WIDTH, lhs, f->help != NULL ? f->help : "");
    if (f->def != NULL && f->env != NULL)
      fprintf(out, " (default %s; $%s)", f->def, f->env);
    else if (f->def != NULL)
      fprintf(out, " (default %s)", f->def);
    else if (f->env != NULL)
      fprintf(out, " ($%s)", f->env);
    fputc('\n', out);
  }
  fprintf(out, "  %-*s %s\n  %-*s %s\n%s", PS_FLAGS_HELP_WIDTH, "-h, --help", "print this help and exit",
          PS_FLAGS_HELP_WIDTH, "--version", "print the version and exit",
          spec->footer != NULL ? spec->footer : "");
}
