/* `prescale backtest` (src/backtest/backtest.c): the command's exit codes and CSV output. The replay is
 * tested in test_replay.c, the flags in test_backtest_flags.c; the JSON and SVG outputs are checked end to
 * end by tests/integration/test_backtest.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "backtest/backtest.h"
#include "backtest/run.h"

/* ---- the command ------------------------------------------------------------------------------------ */

static int run(int argc, const char **argv) { return ps_backtest_main(argc, (char **)argv); }

static void write_file(const char *path, const char *body) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(body, f);
  fclose(f);
}

Test(backtest, exit_codes) {
  const char *help[] = {"backtest", "--help"};
  cr_assert_eq(run(2, help), 0);
  const char *none[] = {"backtest"};
  cr_assert_eq(run(1, none), 2);
  const char *bogus[] = {"backtest", "x.csv", "--bogus"};
  cr_assert_eq(run(3, bogus), 2);
  const char *bad_dur[] = {"backtest", "x.csv", "--lookahead", "soon"};
  cr_assert_eq(run(4, bad_dur), 2);
  const char *bad_q[] = {"backtest", "x.csv", "--quantile=0.3"};
  cr_assert_eq(run(3, bad_q), 2);
  const char *bad_model[] = {"backtest", "x.csv", "--model", "magic"};
  cr_assert_eq(run(4, bad_model), 2);
  const char *no_value[] = {"backtest", "x.csv", "--startup"};
  cr_assert_eq(run(3, no_value), 2);
  const char *missing[] = {"backtest", "/nonexistent/trace.csv"};
  cr_assert_eq(run(2, missing), 1);
}

Test(backtest, csv_output_has_a_header_and_one_row_per_trace_row) {
  char dir[] = "/tmp/test_backtest_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char trace[128], out[128], line[256];
  snprintf(trace, sizeof trace, "%s/t.csv", dir);
  snprintf(out, sizeof out, "%s/out.csv", dir);
  char body[4096] = "timestamp_seconds,value\n";
  for (int i = 0; i < 30; i++)
    snprintf(body + strlen(body), sizeof body - strlen(body), "%d,%d\n", 60 * i, 100 + i);
  write_file(trace, body);
  const char *argv[] = {"backtest", trace, "--csv", out, "--model", "last", "--threshold=1"};
  cr_assert_eq(run(7, argv), 0);
  FILE *f = fopen(out, "r");
  cr_assert_not_null(f);
  cr_assert_not_null(fgets(line, sizeof line, f));
  cr_assert_str_eq(line, "timestamp,demand,forecast,value,replicas_reactive,replicas_prescale\n");
  int rows = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    long long ts, rr, rp;
    double d, fc, v;
    cr_assert_eq(sscanf(line, "%lld,%lf,%lf,%lf,%lld,%lld", &ts, &d, &fc, &v, &rr, &rp), 6, "%s", line);
    cr_assert_eq(ts, 60LL * rows);
    cr_assert_float_eq(d, (100.0 + rows) / 60, 1e-9);
    cr_assert_geq(rr, 1);
    cr_assert_geq(rp, 1);
    rows++;
  }
  fclose(f);
  cr_assert_eq(rows, 30);
  /* an unwritable output is a failure */
  const char *bad[] = {"backtest", trace, "--csv", "/nonexistent/dir/out.csv"};
  cr_assert_eq(run(4, bad), 1);
  unlink(trace);
  unlink(out);
  rmdir(dir);
}

Test(backtest, bad_trace_is_a_failure) {
  char path[] = "/tmp/test_backtest_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  close(fd);
  write_file(path, "timestamp_seconds,value\n0,1\n60,1\n180,1\n");
  const char *argv[] = {"backtest", path};
  cr_assert_eq(run(2, argv), 1);
  unlink(path);
}
