/* Tests src/fmt.c: shortest round-trip doubles, integers without exponent, the Prometheus specials. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

Test(fmt, double_cases) {
  static const struct {
    double v;
    const char *want;
  } cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-7, "-7"},
      {10, "10"},
      {12.5, "12.5"},
      {1e15, "1000000000000000"},
      {9007199254740992.0, "9007199254740992"},
      {1e300, "1e+300"},
      {1e16, "1e+16"},
      {123456.789e3, "123456789"},
      {0.1, "0.1"},
      {1.0 / 3, "0.3333333333333333"},
      {0.1 + 0.2, "0.30000000000000004"},
      {2.5, "2.5"},
      {-0.25, "-0.25"},
      {1e-5, "1e-05"},
      {5e-324, "5e-324"}, /* subnormal: fewer digits than a normal double needs */
      {1000000000000000.5, "1000000000000000.5"},
      {NAN, "NaN"},
      {INFINITY, "+Inf"},
      {-INFINITY, "-Inf"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[64];
    int n = ps_fmt_double(buf, sizeof buf, cases[i].v);
    cr_assert_str_eq(buf, cases[i].want, "case %zu", i);
    cr_assert_eq(n, (int)strlen(buf));
    if (!isnan(cases[i].v)) cr_assert_eq(strtod(buf[0] == '+' ? buf + 1 : buf, NULL), cases[i].v);
  }
}

/* Significant digits of a %g text: its mantissa's digits without the leading zeros. */
static size_t sig_digits(const char *s) {
  size_t n = 0;
  bool leading = true;
  for (; *s != '\0' && *s != 'e'; s++) {
    if (*s < '0' || *s > '9') continue;
    if (leading && *s == '0') continue;
    leading = false;
    n++;
  }
  return n;
}

/* Random doubles (and the extremes) read back exactly, fit PS_FMT_DOUBLE_MAX, and a non-integer takes
 * no more significant digits than the shortest %g text that reads back. */
Test(fmt, round_trips_shortest) {
  static const double extremes[] = {
      5e-324,   2.2250738585072014e-308, -2.2250738585072014e-308, 1.7976931348623157e308, 4503599627370495.5,
      0.1 + 0.7};
  size_t nextremes = sizeof extremes / sizeof extremes[0];
  srand(1);
  for (size_t i = 0; i < 20000; i++) {
    double v;
    if (i < nextremes) {
      v = extremes[i];
    } else {
      uint64_t bits = ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^ (uint64_t)rand();
      memcpy(&v, &bits, sizeof v);
      if (!isfinite(v)) continue;
    }
    char buf[PS_FMT_DOUBLE_MAX];
    int n = ps_fmt_double(buf, sizeof buf, v);
    cr_assert_lt(n, PS_FMT_DOUBLE_MAX, "%.17g", v);
    cr_assert_eq(strtod(buf, NULL), v, "%s for %.17g", buf, v);
    if (v == trunc(v) && fabs(v) <= 9007199254740992.0) continue; /* exact integers: all their digits */
    int shortest = 17;
    for (int prec = 1; prec < 17; prec++) {
      char t[64];
      snprintf(t, sizeof t, "%.*g", prec, v);
      if (strtod(t, NULL) == v) {
        shortest = prec;
        break;
      }
    }
    cr_assert_leq(sig_digits(buf), (size_t)shortest, "%s for %.17g: %d digits suffice", buf, v, shortest);
  }
}

Test(fmt, truncates_to_cap) {
  char small[4];
  cr_assert_eq(ps_fmt_double(small, sizeof small, 123456), 6);
  cr_assert_str_eq(small, "123");
  cr_assert_eq(ps_fmt_double(small, sizeof small, -INFINITY), 4);
  cr_assert_str_eq(small, "-In");
}
