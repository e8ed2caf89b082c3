/* The CSV trace reader (src/backtest/trace.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "backtest/trace.h"

static struct ps_trace t;
static char err[512];

static int parse(const char *s) { return ps_trace_parse(s, strlen(s), &t, err, sizeof err); }

static void teardown(void) { ps_trace_free(&t); }

TestSuite(trace, .fini = teardown);

Test(trace, header_and_rows) {
  cr_assert_eq(parse("timestamp_seconds,value\n100,1\n160,2.5\n220,0\n"), 0, "%s", err);
  cr_assert_eq(t.n, 3);
  cr_assert_eq(t.t0_ms, 100000);
  cr_assert_eq(t.step_ms, 60000);
  cr_assert_eq(t.v[0], 1);
  cr_assert_eq(t.v[1], 2.5);
  cr_assert_eq(t.v[2], 0);
}

Test(trace, no_header_crlf_blanks_spaces) {
  cr_assert_eq(parse("\r\n0,4\r\n\r\n 1 , 5 \r\n2,6e1"), 0, "%s", err);
  cr_assert_eq(t.n, 3);
  cr_assert_eq(t.t0_ms, 0);
  cr_assert_eq(t.step_ms, 1000);
  cr_assert_eq(t.v[2], 60);
}

Test(trace, fractional_and_negative_timestamps) {
  cr_assert_eq(parse("t,v\n-1,1\n-0.5,2\n0,3\n.5,4\n"), 0, "%s", err);
  cr_assert_eq(t.t0_ms, -1000);
  cr_assert_eq(t.step_ms, 500);
  cr_assert_eq(t.n, 4);
}

Test(trace, bad_line_names_line_and_content) {
  cr_assert_eq(parse("timestamp_seconds,value\n0,1\n60,abc\n120,3\n"), UV_EINVAL);
  cr_assert(strstr(err, "line 3") != NULL, "%s", err);
  cr_assert(strstr(err, "\"60,abc\"") != NULL, "%s", err);
  cr_assert(strstr(err, "value \"abc\"") != NULL, "%s", err);
  cr_assert_eq(t.v, NULL, "nothing to free after an error");
}

Test(trace, bad_values) {
  const char *bad[] = {"0,1\n60,-1\n", "0,1\n60,nan\n",   "0,1\n60,inf\n", "0,1\n60,0x10\n",
                       "0,1\n60,\n",   "0,1\n60,1,2\n",   "0,1\n60\n",     "0,1\nx60,1\n",
                       "0,1\n60,1e\n", "0,1\n60,1e999\n", "0,1\n60,1 2\n", "0,1\n1e13,1\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(parse(bad[i]), UV_EINVAL, "accepted %s", bad[i]);
    cr_assert(strstr(err, "line 2") != NULL, "%s: %s", bad[i], err);
  }
}

Test(trace, binary_garbage_is_quoted_printably) {
  const char s[] = "0,1\n60,\x01\xff\"\n";
  cr_assert_eq(ps_trace_parse(s, sizeof s - 1, &t, err, sizeof err), UV_EINVAL);
  cr_assert(strstr(err, "\\x01\\xff\\\"") != NULL, "%s", err);
  for (const char *p = err; *p; p++) cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
}

Test(trace, nul_byte_in_a_field) {
  const char s[] = "0,1\n60,1\0002\n";
  cr_assert_eq(ps_trace_parse(s, sizeof s - 1, &t, err, sizeof err), UV_EINVAL);
  cr_assert(strstr(err, "line 2") != NULL, "%s", err);
}

Test(trace, non_fixed_interval) {
  cr_assert_eq(parse("timestamp_seconds,value\n0,1\n60,1\n120,1\n240,1\n"), UV_EINVAL);
  cr_assert(strstr(err, "line 5") != NULL, "%s", err);
  cr_assert(strstr(err, "120.000 s after") != NULL, "%s", err);
  cr_assert(strstr(err, "interval is 60.000 s") != NULL, "%s", err);
}

Test(trace, duplicate_and_backwards_timestamps) {
  cr_assert_eq(parse("h\n0,1\n0,1\n"), UV_EINVAL);
  cr_assert(strstr(err, "line 3") != NULL && strstr(err, "time order") != NULL, "%s", err);
  cr_assert_eq(parse("h\n60,1\n0,1\n"), UV_EINVAL);
  cr_assert_eq(parse("h\n0,1\n60,1\n60,1\n"), UV_EINVAL);
  cr_assert(strstr(err, "line 4") != NULL, "%s", err);
}

Test(trace, too_few_rows) {
  cr_assert_eq(parse(""), UV_EINVAL);
  cr_assert(strstr(err, "0 data rows") != NULL, "%s", err);
  cr_assert_eq(parse("timestamp_seconds,value\n"), UV_EINVAL);
  cr_assert_eq(parse("timestamp_seconds,value\n0,1\n"), UV_EINVAL);
  cr_assert(strstr(err, "1 data rows") != NULL, "%s", err);
}

Test(trace, header_only_on_the_first_line) {
  cr_assert_eq(parse("timestamp_seconds,value\n0,1\ntimestamp_seconds,value\n"), UV_EINVAL);
  cr_assert(strstr(err, "line 3") != NULL, "%s", err);
}

Test(trace, long_field_is_refused) {
  char s[256];
  snprintf(s, sizeof s, "0,1\n60,%0100d\n", 1);
  cr_assert_eq(parse(s), UV_EINVAL);
}

Test(trace, load_file_and_errors) {
  char path[] = "/tmp/test_trace_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  const char body[] = "timestamp_seconds,value\n10,1\n20,2\n30,3\n";
  cr_assert_eq(write(fd, body, sizeof body - 1), (ssize_t)(sizeof body - 1));
  close(fd);
  cr_assert_eq(ps_trace_load(path, &t, err, sizeof err), 0, "%s", err);
  cr_assert_eq(t.n, 3);
  cr_assert_eq(t.step_ms, 10000);
  ps_trace_free(&t);
  unlink(path);
  cr_assert_eq(ps_trace_load(path, &t, err, sizeof err), UV_ENOENT);
  cr_assert(strstr(err, path) != NULL, "%s", err);
}

Test(trace, load_error_names_the_path) {
  char path[] = "/tmp/test_trace_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  const char body[] = "timestamp_seconds,value\n10,1\n20,-2\n";
  cr_assert_eq(write(fd, body, sizeof body - 1), (ssize_t)(sizeof body - 1));
  close(fd);
  cr_assert_eq(ps_trace_load(path, &t, err, sizeof err), UV_EINVAL);
  unlink(path);
  cr_assert(strncmp(err, path, strlen(path)) == 0, "%s", err);
  cr_assert(strstr(err, "line 3") != NULL, "%s", err);
}
