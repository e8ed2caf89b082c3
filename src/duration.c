/* Durations: see duration.h. */
#include "duration.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static const struct {
  const char *name;
  int64_t ms;
} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};

#define FRAC_DIGITS 18 /* fraction digits that count; 10^18 x a day in ms still fits 128 bits */

/* Reads digits[.digits] at *p into an integer part and a fraction num/10^den_digits. */
static bool read_decimal(const char **p, uint64_t *ip, uint64_t *fnum, int *fdig) {
  const char *s = *p;
  bool any = false;
  *ip = 0;
  *fnum = 0;
  *fdig = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    any = true;
    if (*ip > (UINT64_MAX - 9) / 10) return false;
    *ip = *ip * 10 + (uint64_t)(*s - '0');
  }
  if (*s == '.') {
    s++;
    for (; *s >= '0' && *s <= '9'; s++) {
      any = true;
      if (*fdig < FRAC_DIGITS) {
        *fnum = *fnum * 10 + (uint64_t)(*s - '0');
        (*fdig)++;
      }
    }
  }
  *p = s;
  return any;
}

/* ip.frac x unit_ms, rounded to the nearest millisecond; false on overflow. */
static bool scale(uint64_t ip, uint64_t fnum, int fdig, int64_t unit_ms, __int128 *out) {
  __int128 den = 1;
  for (int i = 0; i < fdig; i++) den *= 10;
  __int128 v = (__int128)ip * unit_ms + ((__int128)fnum * unit_ms * 2 + den) / (den * 2);
  if (v > INT64_MAX) return false;
  *out = v;
  return true;
}

int ps_duration_parse(const char *s, int64_t *out_ms) {
  if (s == NULL || *s == '\0') return UV_EINVAL;
  const char *p = s;
  uint64_t ip, fnum;
  int fdig;
  __int128 total = 0, part;

  /* Plain (possibly fractional) seconds: "15", "1.5". */
  if (!read_decimal(&p, &ip, &fnum, &fdig)) return UV_EINVAL;
  if (*p == '\0') {
    if (!scale(ip, fnum, fdig, 1000, &part)) return UV_EINVAL;
    *out_ms = (int64_t)part;
    return 0;
  }

  /* Go-like sequence of number+unit: "1h30m", "1.5s", "250ms". */
  p = s;
  while (*p != '\0') {
    if (!read_decimal(&p, &ip, &fnum, &fdig)) return UV_EINVAL;
    int64_t unit = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
      size_t n = strlen(units[i].name);
      if (strncmp(p, units[i].name, n) == 0 && !(n == 1 && p[0] == 'm' && p[1] == 's')) {
        unit = units[i].ms;
        p += n;
        break;
      }
    }
    if (unit == 0) return UV_EINVAL;
    if (!scale(ip, fnum, fdig, unit, &part)) return UV_EINVAL;
    total += part;
    if (total > INT64_MAX) return UV_EINVAL;
  }
  *out_ms = (int64_t)total;
  return 0;
}

int ps_duration_format(int64_t ms, char *buf, size_t len) {
  char tmp[64];
  size_t n = 0;
  uint64_t u = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
  if (ms < 0) tmp[n++] = '-';
  if (u == 0) return snprintf(buf, len, "0s");
  if (u < 1000) return snprintf(buf, len, "%s%" PRIu64 "ms", ms < 0 ? "-" : "", u);
  uint64_t d = u / 86400000, h = u / 3600000 % 24, m = u / 60000 % 60, s = u / 1000 % 60, f = u % 1000;
  if (d) n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%" PRIu64 "d", d);
  if (h) n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%" PRIu64 "h", h);
  if (m) n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%" PRIu64 "m", m);
  if (f) {
    /* Milliseconds as a fraction of the seconds, trailing zeros dropped: 1.5s, 1m0.25s. */
    char frac[4];
    snprintf(frac, sizeof frac, "%03" PRIu64, f);
    int fl = 3;
    while (frac[fl - 1] == '0') fl--;
    n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%" PRIu64 ".%.*ss", s, fl, frac);
  } else if (s) {
    n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%" PRIu64 "s", s);
  }
  return snprintf(buf, len, "%s", tmp);
}
