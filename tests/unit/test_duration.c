/* src/duration.c: parsing and formatting of durations ("30s", "1h30m", "1.5s"). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "duration.h"

Test(duration, valid) {
  static const struct {
    const char *s;
    int64_t ms;
  } cases[] = {
      {"0", 0},
      {"0s", 0},
      {"15", 15000},
      {"1.5", 1500},
      {"30s", 30000},
      {"5m", 300000},
      {"1h30m", 5400000},
      {"250ms", 250},
      {"1.5s", 1500},
      {"2d", 172800000},
      {"1d2h3m4s5ms", 93784005},
      {"0.5m", 30000},
      {".5s", 500},
      {"1m0.25s", 60250},
      {"100ms", 100},
      {"1.0005s", 1001},
      {"0.0004s", 0},
      {"90s", 90000},
      {"1h1h", 7200000},
      {"007s", 7000},
      {"106751991167d", 106751991167LL * 86400000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t ms = -1;
    cr_assert_eq(ps_duration_parse(cases[i].s, &ms), 0, "%s", cases[i].s);
    cr_assert_eq(ms, cases[i].ms, "%s -> %lld", cases[i].s, (long long)ms);
  }
}

Test(duration, invalid) {
  static const char *const cases[] = {"",
                                      "-1s",
                                      "+1s",
                                      "s",
                                      "1",
                                      "1x",
                                      "1 s",
                                      " 1s",
                                      "1s ",
                                      "1h30",
                                      "ms",
                                      "1us",
                                      "1ns",
                                      "1.s.",
                                      ".",
                                      "1..5s",
                                      "1sm",
                                      "abc",
                                      "1e3",
                                      "inf",
                                      "nan",
                                      "--1",
                                      "1S",
                                      "1H",
                                      "1mss",
                                      "999999999999999999999s",
                                      "106751991168d",
                                      "9223372036854775808ms",
                                      "1w"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t ms = 42;
    if (strcmp(cases[i], "1") == 0) continue; /* "1" is plain seconds: see below */
    cr_assert_eq(ps_duration_parse(cases[i], &ms), UV_EINVAL, "%s", cases[i]);
  }
  int64_t ms;
  cr_assert_eq(ps_duration_parse(NULL, &ms), UV_EINVAL);
  cr_assert_eq(ps_duration_parse("1", &ms), 0);
  cr_assert_eq(ms, 1000);
}

Test(duration, format) {
  static const struct {
    int64_t ms;
    const char *s;
  } cases[] = {
      {0, "0s"},        {250, "250ms"},      {1000, "1s"},     {1500, "1.5s"},     {90000, "1m30s"},
      {3600000, "1h"},  {5400000, "1h30m"},  {86400000, "1d"}, {90000000, "1d1h"}, {60250, "1m0.25s"},
      {1001, "1.001s"}, {3600500, "1h0.5s"}, {-250, "-250ms"}, {-90000, "-1m30s"}, {15000, "15s"},
  };
  char buf[64];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int n = ps_duration_format(cases[i].ms, buf, sizeof buf);
    cr_assert_str_eq(buf, cases[i].s);
    cr_assert_eq(n, (int)strlen(cases[i].s));
  }
  char small[4];
  cr_assert_eq(ps_duration_format(5400000, small, sizeof small), 5); /* snprintf's count */
  cr_assert_str_eq(small, "1h3");
}

Test(duration, round_trip) {
  char buf[64];
  int64_t samples[] = {1, 999, 1000, 1001, 59999, 60000, 61000, 3599999, 86399999, 86400001, INT64_MAX};
  for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
    ps_duration_format(samples[i], buf, sizeof buf);
    int64_t back;
    cr_assert_eq(ps_duration_parse(buf, &back), 0, "%s", buf);
    cr_assert_eq(back, samples[i], "%s", buf);
  }
  for (int64_t ms = 0; ms < 200000000; ms += 7919) { /* a prime stride hits every field combination */
    ps_duration_format(ms, buf, sizeof buf);
    int64_t back;
    cr_assert_eq(ps_duration_parse(buf, &back), 0, "%s", buf);
    cr_assert_eq(back, ms, "%s", buf);
  }
}
