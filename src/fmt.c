/* Shortest round-trip formatting of doubles. */
#include "fmt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define EXACT_INT_MAX 9007199254740992.0 /* 2^53: every integer up to here is a double */
/* Every double reads back from %.17g. For a normal double, a text of at most 15 significant digits that
 * reads back as v is v rounded to 15 digits (any 15-digit decimal survives decimal -> double -> decimal:
 * DBL_DIG), which %.15g prints with its trailing zeros dropped; so the search for the shortest starts at
 * 15. Subnormals carry fewer bits, so theirs starts at 1. */
#define PREC_MIN      15
#define PREC_MAX      17

int ps_fmt_double(char *dst, size_t cap, double v) {
  if (isnan(v)) return snprintf(dst, cap, "NaN");
  if (isinf(v)) return snprintf(dst, cap, v > 0 ? "+Inf" : "-Inf");
  /* Integers print exactly and without an exponent while a double holds them exactly. */
  if (v == trunc(v) && fabs(v) <= EXACT_INT_MAX) return snprintf(dst, cap, "%.0f", v == 0 ? 0.0 : v);
  char tmp[PS_FMT_DOUBLE_MAX];
  for (int prec = fabs(v) < DBL_MIN ? 1 : PREC_MIN; prec <= PREC_MAX; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (prec == PREC_MAX || strtod(tmp, NULL) == v) break;
  }
  return snprintf(dst, cap, "%s", tmp);
}
