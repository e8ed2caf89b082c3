/* src/backtest/backtest_flags.c: `prescale backtest`'s flags, and that those named like trigger keys
 * read, default and word their values as the keys do. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backtest/run.h"
#include "config.h"

struct parsed {
  int rc;
  char err[512];
  struct ps_bt_options o;
};

static void parse(struct parsed *p, char **argv) {
  int argc = 0;
  while (argv[argc] != NULL) argc++;
  FILE *out = fopen("/dev/null", "w");
  cr_assert_not_null(out);
  p->err[0] = '\0';
  p->rc = ps_bt_options_parse(&p->o, argc, argv, out, p->err, sizeof p->err);
  fclose(out);
}

#define PARSE(p, ...)                                                                                        \
  do {                                                                                                       \
    char *argv_[] = {"backtest", __VA_ARGS__, NULL};                                                         \
    parse(&(p), argv_);                                                                                      \
  } while (0)

/* The defaults of the trigger-like flags are the trigger's: a backtest without flags asks the engine what
 * the server asks it for a trigger without those keys. */
Test(backtest_flags, defaults_are_the_triggers) {
  struct parsed p;
  PARSE(p, "t.csv");
  cr_assert_eq(p.rc, 0, "%s", p.err);
  struct ps_kv md[] = {{"query", "up"}, {"threshold", "1"}};
  struct ps_target_config c;
  char err[256];
  cr_assert_eq(ps_target_config_parse(&c, md, 2, NULL, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(p.o.trace_path, "t.csv");
  cr_assert_eq(p.o.lookahead_ms, c.lookahead_ms);
  cr_assert_eq(p.o.lookahead_ms, 30000);
  cr_assert_eq(p.o.model, c.model);
  cr_assert_eq(p.o.period_ms, c.period_ms);
  cr_assert_eq(p.o.quantile, c.quantile);
  cr_assert_eq(p.o.target_coverage, c.target_coverage);
  cr_assert_eq(p.o.headroom, c.headroom);
  ps_target_config_free(&c);
  cr_assert_eq(p.o.startup_ms, 60000);
  cr_assert_eq(p.o.threshold, 0, "0: the trace's median rate / 5");
  cr_assert_eq(p.o.history_ms, 0, "0: the server's default for the step and period");
  cr_assert(!p.o.json);
  cr_assert_null(p.o.svg_path);
  cr_assert_null(p.o.csv_path);
}

Test(backtest_flags, every_flag) {
  struct parsed p;
  PARSE(p, "--json", "--lookahead=2m", "--startup", "90s", "--threshold", "2.5", "--model", "seasonal",
        "--period", "1h", "--history", "3h", "--quantile", "0", "--headroom", "250", "--svg", "c.svg",
        "--csv=r.csv", "t.csv");
  cr_assert_eq(p.rc, 0, "%s", p.err);
  cr_assert(p.o.json);
  cr_assert_eq(p.o.lookahead_ms, 120000);
  cr_assert_eq(p.o.startup_ms, 90000);
  cr_assert_eq(p.o.threshold, 2.5);
  cr_assert_eq(p.o.model, PS_MODEL_SEASONAL);
  cr_assert_eq(p.o.period_ms, 3600000);
  cr_assert_eq(p.o.history_ms, 3 * 3600000);
  cr_assert_eq(p.o.quantile, 0);
  cr_assert_eq(p.o.headroom, 250, "no upper bound, as the trigger's headroom");
  cr_assert_str_eq(p.o.svg_path, "c.svg");
  cr_assert_str_eq(p.o.csv_path, "r.csv");
  cr_assert_str_eq(p.o.trace_path, "t.csv");
}

/* Each refusal is the trigger key's own words after the flag's name. */
Test(backtest_flags, errors_are_the_trigger_keys_words) {
  static const struct {
    const char *flag, *value, *want;
  } cases[] = {
      {"--lookahead", "soon", "--lookahead: \"soon\" is not a duration from 0s to 1d (e.g. 30s, 5m)"},
      {"--lookahead", "25h", "--lookahead: \"25h\" is not a duration from 0s to 1d (e.g. 30s, 5m)"},
      {"--threshold", "0", "--threshold: \"0\" is not a number > 0"},
      {"--threshold", " 5", "--threshold: \" 5\" is not a number > 0"},
      {"--threshold", "1e999", "--threshold: \"1e999\" is not a number > 0"},
      {"--model", "magic",
       "--model: \"magic\" is not a model (auto, holtwinters, seasonal, linear, peak, analog or last)"},
      {"--period", "daily", "--period: \"daily\" is not a duration or auto (e.g. 1d, 1h, 7d)"},
      {"--period", "0", "--period: \"0\" must be at least 2 steps of the trace's interval"},
      {"--history", "0", "--history: \"0\" must be more than 0"},
      {"--history", "long", "--history: \"long\" is not a duration (e.g. 3d, 12h)"},
      {"--quantile", "0.3", "--quantile: \"0.3\" is not 0 (none) or a number from 0.5 to below 1 (e.g. 0.9)"},
      {"--headroom", "-1", "--headroom: \"-1\" is not a number >= 0 (e.g. 0.2 for +20%)"},
      {"--target-coverage", "1",
       "--target-coverage: \"1\" is not a number between 0 and 1, both excluded (e.g. 0.99: the answer "
       "covers 99% of the lookahead windows' peaks)"},
      {"--startup", "2d", "--startup: \"2d\" is not a duration from 0 to 1d (e.g. 60s)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct parsed p;
    PARSE(p, "t.csv", (char *)cases[i].flag, (char *)cases[i].value);
    cr_assert_eq(p.rc, UV_EINVAL, "%s %s", cases[i].flag, cases[i].value);
    cr_assert_str_eq(p.err, cases[i].want);
  }
}

Test(backtest_flags, the_trace) {
  struct parsed p;
  char *none[] = {"backtest", NULL};
  parse(&p, none);
  cr_assert_eq(p.rc, UV_EINVAL);
  cr_assert_str_eq(p.err, "a trace file is required (prescale backtest TRACE.csv)");
  PARSE(p, "a.csv", "b.csv");
  cr_assert_eq(p.rc, UV_EINVAL);
  cr_assert_str_eq(
      p.err, "unexpected argument \"b.csv\": one TRACE.csv only, and \"a.csv\" came first (see --help)");
  PARSE(p, "a.csv", "--bogus");
  cr_assert_str_eq(p.err, "unknown flag \"--bogus\" (see --help)");
  PARSE(p, "a.csv", "--startup");
  cr_assert_str_eq(p.err, "--startup: missing value (e.g. --startup 60s)");
  PARSE(p, "--help");
  cr_assert_eq(p.rc, 1);
}

/* --target-coverage sets the margin (the quantile is then 0), as targetCoverage does; with --quantile it is
 * refused in the trigger's words, whichever comes first. */
Test(backtest_flags, target_coverage) {
  struct parsed p;
  PARSE(p, "t.csv", "--target-coverage", "0.95");
  cr_assert_eq(p.rc, 0, "%s", p.err);
  cr_assert_eq(p.o.target_coverage, 0.95);
  cr_assert_eq(p.o.quantile, 0);
  PARSE(p, "t.csv", "--quantile", "0.8", "--target-coverage", "0.95");
  cr_assert_eq(p.rc, UV_EINVAL);
  cr_assert_str_eq(p.err, "--quantile: \"0.8\" " PS_COVERAGE_BOTH_WORDS);
  PARSE(p, "t.csv", "--target-coverage=0.9", "--quantile=0");
  cr_assert_eq(p.rc, UV_EINVAL);
  cr_assert_str_eq(p.err, "--quantile: \"0\" " PS_COVERAGE_BOTH_WORDS);
  PARSE(p, "t.csv", "--quantile", "0.8");
  cr_assert_eq(p.rc, 0, "%s", p.err);
  cr_assert_eq(p.o.quantile, 0.8);
  cr_assert_eq(p.o.target_coverage, 0, "a quantile replaces the default target coverage");
  PARSE(p, "t.csv");
  cr_assert_eq(p.o.quantile, 0);
  cr_assert_eq(p.o.target_coverage, PS_DEFAULT_TARGET_COVERAGE);
}
