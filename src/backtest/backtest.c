/* `prescale backtest`: reads the flags (backtest_flags.c) and the trace (trace.c), replays it
 * (replay.c) and reports (report.c). */
#include "backtest.h"

#include <stdio.h>
#include <string.h>

#include "run.h"

#define ERR_MAX 1024 /* bytes of one error line */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* One error line, then (for a usage error) where the flags are explained. */
static int report_error(const char *err, int status) {
  fprintf(stderr, "prescale backtest: %s\n", err);
  if (status == EXIT_USAGE) fprintf(stderr, "Run 'prescale backtest --help' for the flags.\n");
  return status;
}

/* The outputs asked for: --csv and --svg files, then the results on stdout. */
static int write_outputs(const struct ps_bt_run *r) {
  char err[ERR_MAX];
  int status = EXIT_OK;
  bool sw = r->opt.sweep; /* --csv and --svg write the cost curve instead of the rows */
  if (r->opt.csv_path != NULL &&
      (sw ? ps_bt_sweep_write_csv : ps_bt_write_csv)(r, r->opt.csv_path, err, sizeof err) != 0)
    status = report_error(err, EXIT_FAIL);
  if (r->opt.svg_path != NULL &&
      (sw ? ps_bt_sweep_write_svg : ps_bt_write_svg)(r, r->opt.svg_path, err, sizeof err) != 0)
    status = report_error(err, EXIT_FAIL);
  if (r->opt.json) {
    if (ps_bt_print_json(r, stdout) != 0) status = EXIT_FAIL;
  } else {
    ps_bt_print_text(r, stdout);
    if (sw) ps_bt_sweep_print_text(r, stdout);
  }
  if (fflush(stdout) != 0) status = EXIT_FAIL;
  return status;
}

int ps_backtest_main(int argc, char **argv) {
  struct ps_bt_run r;
  memset(&r, 0, sizeof r);
  char err[ERR_MAX];
  int rc = ps_bt_options_parse(&r.opt, argc, argv, stdout, err, sizeof err);
  if (rc == 1 || rc == 2) return EXIT_OK; /* --help or --version, already printed */
  if (rc != 0) return report_error(err, EXIT_USAGE);

  if (ps_trace_load(r.opt.trace_path, &r.trace, err, sizeof err) != 0) return report_error(err, EXIT_FAIL);
  bool usage_err;
  if (ps_bt_replay(&r, &usage_err, err, sizeof err) != 0) {
    ps_bt_run_free(&r);
    return report_error(err, usage_err ? EXIT_USAGE : EXIT_FAIL);
  }
  int status = write_outputs(&r);
  ps_bt_run_free(&r);
  return status;
}
