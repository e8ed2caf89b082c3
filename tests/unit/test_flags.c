/* flags.c: the table-driven parser behind prescale's and prescale-demo-app's flags, over a table of its
 * own with one flag of every kind. The two programs' own tables are tested in test_config.c and
 * test_demo_app.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "flags.h"
#include "log.h"

struct opts {
  const char *name;
  const char *listen;
  const char *url;
  uint64_t wait_ms;   /* more than 0, no upper bound */
  uint64_t grace_ms;  /* 0 to 10m */
  uint64_t tick_ms;   /* at least 1s */
  int64_t service_ms; /* an int64_t field: 0 to 1m */
  size_t buf;         /* 1000 to 1536KiB */
  size_t big;         /* any size */
  size_t n;           /* 1 to 100 */
  enum ps_log_level level;
  enum ps_log_format format;
  int even;          /* PS_FLAG_CUSTOM */
  const char *nodef; /* no default shown */
};

static const char *check_even(const char *v, void *field) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x % 2 != 0 || x < 0 || x > 1000)
    return "is not an even number up to 1000";
  *(int *)field = (int)x;
  return NULL;
}

static const struct ps_flag table[] = {
    {.name = "name",
     .env = "PSTEST_NAME",
     .kind = PS_FLAG_STRING,
     .offset = offsetof(struct opts, name),
     .arg = "S",
     .help = "any text",
     .def = "x"},
    {.name = "listen",
     .env = "PSTEST_LISTEN",
     .kind = PS_FLAG_LISTEN,
     .offset = offsetof(struct opts, listen),
     .arg = "ADDR",
     .help = "where to listen",
     .def = "0.0.0.0:1"},
    {.name = "url",
     .env = "PSTEST_URL",
     .kind = PS_FLAG_URL,
     .offset = offsetof(struct opts, url),
     .arg = "URL",
     .help = "a server",
     .def = "http://h"},
    {.name = "wait",
     .env = "PSTEST_WAIT",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct opts, wait_ms),
     .arg = "DUR",
     .help = "how long",
     .def = "5s",
     .min = 1},
    {.name = "grace",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct opts, grace_ms),
     .arg = "DUR",
     .help = "a drain",
     .def = "5s",
     .max = 10 * 60 * 1000,
     .example = "e.g. 5s; 0 = none"},
    {.name = "tick",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct opts, tick_ms),
     .arg = "DUR",
     .help = "a period",
     .def = "1m",
     .min = 1000},
    {.name = "service",
     .kind = PS_FLAG_DURATION,
     .offset = offsetof(struct opts, service_ms),
     .arg = "DUR",
     .help = "a delay",
     .def = "20ms",
     .max = 60 * 1000,
     .example = "e.g. 20ms"},
    {.name = "buf",
     .kind = PS_FLAG_SIZE,
     .offset = offsetof(struct opts, buf),
     .arg = "BYTES",
     .help = "a buffer",
     .def = "64KiB",
     .min = 1000,
     .max = 1536 * 1024,
     .example = "e.g. 64KiB"},
    {.name = "big",
     .kind = PS_FLAG_SIZE,
     .offset = offsetof(struct opts, big),
     .arg = "BYTES",
     .help = "any size",
     .def = "0"},
    {.name = "n",
     .kind = PS_FLAG_COUNT,
     .offset = offsetof(struct opts, n),
     .arg = "N",
     .help = "how many",
     .def = "10",
     .min = 1,
     .max = 100},
    {.name = "level",
     .kind = PS_FLAG_LOG_LEVEL,
     .offset = offsetof(struct opts, level),
     .arg = "LEVEL",
     .help = "log level",
     .def = "info"},
    {.name = "format",
     .kind = PS_FLAG_LOG_FORMAT,
     .offset = offsetof(struct opts, format),
     .arg = "FMT",
     .help = "log format",
     .def = "text"},
    {.name = "even",
     .kind = PS_FLAG_CUSTOM,
     .offset = offsetof(struct opts, even),
     .arg = "N",
     .help = "an even number",
     .def = "2",
     .check = check_even},
    {.name = "nodef",
     .kind = PS_FLAG_STRING,
     .offset = offsetof(struct opts, nodef),
     .arg = "S",
     .help = "no default"},
};

static const struct ps_flags_spec spec = {
    .program = "tool",
    .version = "1.2.3",
    .about = "tool does things.\n",
    .footer = "\nMore text.\n",
    .flags = table,
    .nflags = sizeof table / sizeof table[0],
};

static void clear_env(void) {
  unsetenv("PSTEST_NAME");
  unsetenv("PSTEST_LISTEN");
  unsetenv("PSTEST_URL");
  unsetenv("PSTEST_WAIT");
}

TestSuite(flags, .init = clear_env);

struct run {
  int rc;
  char err[512];
  char *out;
  size_t outlen;
  struct opts o;
};

static const struct opts defaults = {.name = "x",
                                     .listen = "0.0.0.0:1",
                                     .url = "http://h",
                                     .wait_ms = 5000,
                                     .grace_ms = 5000,
                                     .tick_ms = 60000,
                                     .service_ms = 20,
                                     .buf = 64 * 1024,
                                     .level = PS_LOG_INFO,
                                     .format = PS_LOG_TEXT,
                                     .even = 2};

/* Field by field: a memcmp would also compare the padding, which struct assignment need not copy. */
static void assert_defaults(const struct opts *o, const char *what) {
  cr_assert_str_eq(o->name, defaults.name, "%s", what);
  cr_assert_str_eq(o->listen, defaults.listen, "%s", what);
  cr_assert_str_eq(o->url, defaults.url, "%s", what);
  cr_assert_eq(o->wait_ms, defaults.wait_ms, "%s", what);
  cr_assert_eq(o->grace_ms, defaults.grace_ms, "%s", what);
  cr_assert_eq(o->tick_ms, defaults.tick_ms, "%s", what);
  cr_assert_eq(o->service_ms, defaults.service_ms, "%s", what);
  cr_assert_eq(o->buf, defaults.buf, "%s", what);
  cr_assert_eq(o->big, defaults.big, "%s", what);
  cr_assert_eq(o->n, defaults.n, "%s", what);
  cr_assert_eq(o->level, defaults.level, "%s", what);
  cr_assert_eq(o->format, defaults.format, "%s", what);
  cr_assert_eq(o->even, defaults.even, "%s", what);
  cr_assert_null(o->nodef, "%s", what);
}

static void run_spec(struct run *r, const struct ps_flags_spec *s, char **argv) {
  int argc = 0;
  while (argv[argc] != NULL) argc++;
  r->o = defaults;
  FILE *f = open_memstream(&r->out, &r->outlen);
  strcpy(r->err, "X");
  r->rc = ps_flags_parse(s, &r->o, argc, argv, f, r->err, sizeof r->err);
  fclose(f);
}

#define RUN(r, ...)                                                                                          \
  do {                                                                                                       \
    char *argv_[] = {"tool", __VA_ARGS__, NULL};                                                             \
    run_spec(&(r), &spec, argv_);                                                                            \
  } while (0)

/* One flag, one value: `--flag=value` and `--flag value` must give the same result. */
static void both_forms(struct run *eq, struct run *sep, const char *flag, const char *value) {
  char joined[1024];
  snprintf(joined, sizeof joined, "--%s=%s", flag, value);
  char sepflag[128];
  snprintf(sepflag, sizeof sepflag, "--%s", flag);
  RUN(*eq, joined);
  RUN(*sep, sepflag, (char *)value);
  cr_assert_eq(eq->rc, sep->rc, "%s %s", flag, value);
  cr_assert_str_eq(eq->err, sep->err, "%s %s", flag, value);
  free(eq->out);
  free(sep->out);
}

/* ---- syntax -------------------------------------------------------------------------------------- */

Test(flags, no_arguments_keep_the_defaults) {
  struct run r;
  char *argv[] = {"tool", NULL};
  run_spec(&r, &spec, argv);
  cr_assert_eq(r.rc, 0);
  cr_assert_str_eq(r.err, "");
  assert_defaults(&r.o, "no arguments");
  cr_assert_eq(r.outlen, 0);
  free(r.out);
}

Test(flags, separate_and_equals_forms) {
  struct run r;
  RUN(r, "--name", "a", "--listen=127.0.0.1:0", "--wait", "1.5s", "--n=7", "--level", "debug",
      "--format=json");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.o.name, "a");
  cr_assert_str_eq(r.o.listen, "127.0.0.1:0");
  cr_assert_eq(r.o.wait_ms, 1500);
  cr_assert_eq(r.o.n, 7);
  cr_assert_eq(r.o.level, PS_LOG_DEBUG);
  cr_assert_eq(r.o.format, PS_LOG_JSON);
  free(r.out);
  /* After '=' everything is the value, '=' included; an empty value is a value. */
  RUN(r, "--name=a=b", "--nodef=");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.o.name, "a=b");
  cr_assert_str_eq(r.o.nodef, "");
  free(r.out);
  /* The word after a flag is its value, even when it looks like a flag. */
  RUN(r, "--name", "--wait");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.o.name, "--wait");
  cr_assert_eq(r.o.wait_ms, 5000);
  free(r.out);
  /* Repeated: the last wins. */
  RUN(r, "--n", "3", "--n=4");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.o.n, 4);
  free(r.out);
}

Test(flags, unknown_flags) {
  static const struct {
    const char *arg, *err;
  } cases[] = {
      {"--nope", "unknown flag \"--nope\" (see --help)"},
      {"--nope=1", "unknown flag \"--nope\" (see --help)"},
      {"--wait-x=1", "unknown flag \"--wait-x\" (see --help)"},
      {"--Wait", "unknown flag \"--Wait\" (see --help)"},
      {"-v", "unknown flag \"-v\" (see --help)"},
      {"-", "unknown flag \"-\" (see --help)"},
      {"--", "unknown flag \"--\" (see --help)"},
      {"---wait", "unknown flag \"---wait\" (see --help)"},
      {"--=1", "unknown flag \"--\" (see --help)"},
      {"--bad\x01\"", "unknown flag \"--bad\\x01\\\"\" (see --help)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    RUN(r, (char *)cases[i].arg);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", cases[i].arg);
    cr_assert_str_eq(r.err, cases[i].err);
    free(r.out);
  }
  /* An unknown flag without a value is unknown, not missing its value. */
  struct run r;
  RUN(r, "--wait", "1s", "--nope");
  cr_assert_str_eq(r.err, "unknown flag \"--nope\" (see --help)");
  free(r.out);
}

Test(flags, unknown_flag_names_are_bounded) {
  static char arg[4096];
  memset(arg, 'n', sizeof arg - 1);
  arg[0] = arg[1] = '-';
  arg[100] = '=';
  struct run r;
  RUN(r, arg);
  cr_assert_eq(r.rc, UV_EINVAL);
  char want[256];
  snprintf(want, sizeof want, "unknown flag \"--%.*s...\" (see --help)", PS_FLAGS_QUOTE_MAX - 2, arg + 2);
  cr_assert_str_eq(r.err, want);
  free(r.out);
}

Test(flags, missing_value) {
  struct run r;
  RUN(r, "--level");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--level: missing value (e.g. --level info)");
  free(r.out);
  RUN(r, "--n", "3", "--wait");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--wait: missing value (e.g. --wait 5s)");
  cr_assert_eq(r.o.n, 3); /* what came before stays stored */
  free(r.out);
  RUN(r, "--nodef");
  cr_assert_str_eq(r.err, "--nodef: missing value (see --help)");
  free(r.out);
}

Test(flags, positional_arguments) {
  struct run r;
  RUN(r, "stray");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unexpected argument \"stray\" (see --help)");
  free(r.out);
  RUN(r, "");
  cr_assert_str_eq(r.err, "unexpected argument \"\" (see --help)");
  free(r.out);
  struct ps_flags_spec noted = spec;
  noted.positional_note = "tool has no subcommands";
  char *argv[] = {"tool", "run", NULL};
  run_spec(&r, &noted, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unexpected argument \"run\": tool has no subcommands (see --help)");
  free(r.out);
}

/* ---- the environment ----------------------------------------------------------------------------- */

Test(flags, environment_sets_and_flags_win) {
  setenv("PSTEST_NAME", "from-env", 1);
  setenv("PSTEST_WAIT", "2m", 1);
  setenv("PSTEST_LISTEN", "[::1]:9", 1);
  struct run r;
  RUN(r, "--wait=3s");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.o.name, "from-env");
  cr_assert_str_eq(r.o.listen, "[::1]:9");
  cr_assert_eq(r.o.wait_ms, 3000); /* the flag wins over its variable */
  free(r.out);
  RUN(r, "--listen", "127.0.0.1:5", "--name", "flag");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.o.name, "flag");
  cr_assert_str_eq(r.o.listen, "127.0.0.1:5");
  cr_assert_eq(r.o.wait_ms, 120000);
  free(r.out);
}

Test(flags, empty_variable_is_unset) {
  setenv("PSTEST_WAIT", "", 1);
  setenv("PSTEST_NAME", "", 1);
  struct run r;
  char *argv[] = {"tool", NULL};
  run_spec(&r, &spec, argv);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.o.wait_ms, 5000);
  cr_assert_str_eq(r.o.name, "x");
  free(r.out);
}

Test(flags, variable_errors_name_the_variable) {
  setenv("PSTEST_WAIT", "soon", 1);
  struct run r;
  char *argv[] = {"tool", NULL};
  run_spec(&r, &spec, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "PSTEST_WAIT: \"soon\" is not a duration (e.g. 30s, 5m, 1h30m)");
  free(r.out);
  /* Every source is checked: a bad variable is an error even when its flag is given too. */
  RUN(r, "--wait=1s");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "PSTEST_WAIT: \"soon\" is not a duration (e.g. 30s, 5m, 1h30m)");
  free(r.out);
  clear_env();
  setenv("PSTEST_URL", "ftp://x", 1);
  run_spec(&r, &spec, argv);
  cr_assert_str_eq(r.err, "PSTEST_URL: \"ftp://x\" is not an http:// or https:// URL");
  free(r.out);
}

/* ---- every kind, good and bad values ------------------------------------------------------------- */

Test(flags, listen_values) {
  static const char *const ok[] = {"127.0.0.1:0", "0.0.0.0:65535", "[::1]:80", "[::]:6000", "host.example:1"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    struct run r;
    RUN(r, "--listen", (char *)ok[i]);
    cr_assert_eq(r.rc, 0, "%s: %s", ok[i], r.err);
    cr_assert_str_eq(r.o.listen, ok[i]);
    free(r.out);
  }
  static const char *const bad[] = {"6000",   ":6000",   "h:",    "h:65536", "h:-1", "h:1x",
                                    "::1:80", "[::1]80", "[]:80", "[::1",    ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct run r, s;
    RUN(r, "--listen", (char *)bad[i]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", bad[i]);
    char want[200];
    snprintf(want, sizeof want, "--listen: \"%s\" is not host:port or [v6]:port (e.g. 0.0.0.0:6000)", bad[i]);
    cr_assert_str_eq(r.err, want);
    cr_assert_str_eq(r.o.listen, "0.0.0.0:1"); /* a bad value stores nothing */
    free(r.out);
    both_forms(&r, &s, "listen", bad[i]);
  }
}

Test(flags, url_values) {
  static const char *const ok[] = {"http://p",  "http://p:9090/prefix/",  "http://[::1]:9090",
                                   "https://p", "https://p:9091/prefix/", "HTTP://x",
                                   "HTTPS://x"};
  static const char *const why[] = {
      NULL, NULL, NULL, NULL, NULL, "is not an http:// or https:// URL", "is not an http:// or https:// URL"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    struct run r;
    RUN(r, "--url", (char *)ok[i]);
    if (why[i] == NULL) {
      cr_assert_eq(r.rc, 0, "%s: %s", ok[i], r.err);
      cr_assert_str_eq(r.o.url, ok[i]);
    } else {
      cr_assert_eq(r.rc, UV_EINVAL, "%s", ok[i]); /* the scheme is case-sensitive, as prescale writes it */
    }
    free(r.out);
  }
  static const struct {
    const char *v, *why;
  } bad[] = {
      {"ftp://p", "is not an http:// or https:// URL"},
      {"p:9090", "is not an http:// or https:// URL"},
      {"", "is not an http:// or https:// URL"},
      {"http://", "has no host"},
      {"https://", "has no host"},
      {"https://p?x=1", "must not have a query or fragment"},
      {"http:///x", "has no host"},
      {"http://?x", "has no host"},
      {"http://p?x=1", "must not have a query or fragment"},
      {"http://p/#f", "must not have a query or fragment"},
      {"http://p q", "must not contain spaces or control characters"},
      {"http://p\x7f", "must not contain spaces or control characters"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct run r;
    RUN(r, "--url", (char *)bad[i].v);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", bad[i].v);
    cr_assert_str_eq(ps_flags_url_problem(bad[i].v), bad[i].why);
    cr_assert_not_null(strstr(r.err, bad[i].why), "%s", r.err);
    cr_assert_eq(strncmp(r.err, "--url: \"", 8), 0, "%s", r.err);
    free(r.out);
  }
  cr_assert_null(ps_flags_url_problem("http://prom.monitoring:9090/x"));
}

/* One server, however many '/' end its URL; the scheme and the byte after it always stay. */
Test(flags, url_len_drops_trailing_slashes) {
  static const struct {
    const char *v;
    size_t want;
  } cases[] = {{"http://p", 8},
               {"http://p/", 8},
               {"http://p///", 8},
               {"https://p:9090/", 14},
               {"http://p/a/", 10},
               {"http:///", 8},
               {"http://", 7},
               {"p/", 1},
               {"/", 1},
               {"", 0},
               {"https://p/x//y//", 14}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    cr_assert_eq(ps_flags_url_len(cases[i].v), cases[i].want, "%s: %zu", cases[i].v,
                 ps_flags_url_len(cases[i].v));
}

Test(flags, duration_values) {
  static const struct {
    const char *flag, *v;
    size_t off;
    uint64_t want;
  } ok[] = {
      {"wait", "1ms", offsetof(struct opts, wait_ms), 1},
      {"wait", "1h30m", offsetof(struct opts, wait_ms), 5400000},
      {"wait", "15", offsetof(struct opts, wait_ms), 15000},
      {"wait", "365d", offsetof(struct opts, wait_ms), 365ULL * 86400000}, /* no upper bound */
      {"grace", "0", offsetof(struct opts, grace_ms), 0},
      {"grace", "10m", offsetof(struct opts, grace_ms), 600000},
      {"tick", "1s", offsetof(struct opts, tick_ms), 1000},
      {"service", "0", offsetof(struct opts, service_ms), 0},
      {"service", "1m", offsetof(struct opts, service_ms), 60000},
      {"service", "0.5s", offsetof(struct opts, service_ms), 500},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    struct run r;
    char flag[32];
    snprintf(flag, sizeof flag, "--%s", ok[i].flag);
    RUN(r, flag, (char *)ok[i].v);
    cr_assert_eq(r.rc, 0, "%s %s: %s", flag, ok[i].v, r.err);
    uint64_t got;
    memcpy(&got, (char *)&r.o + ok[i].off, sizeof got);
    cr_assert_eq(got, ok[i].want, "%s %s", flag, ok[i].v);
    free(r.out);
  }
  static const struct {
    const char *flag, *v, *err;
  } bad[] = {
      {"wait", "x", "--wait: \"x\" is not a duration (e.g. 30s, 5m, 1h30m)"},
      {"wait", "-1s", "--wait: \"-1s\" is not a duration (e.g. 30s, 5m, 1h30m)"},
      {"wait", "", "--wait: \"\" is not a duration (e.g. 30s, 5m, 1h30m)"},
      {"wait", "0", "--wait: \"0\" must be more than 0"},
      {"wait", "0s", "--wait: \"0s\" must be more than 0"},
      {"tick", "999ms", "--tick: \"999ms\" must be at least 1s"},
      {"grace", "10m1ms", "--grace: \"10m1ms\" is not a duration from 0 to 10m (e.g. 5s; 0 = none)"},
      {"grace", "soon", "--grace: \"soon\" is not a duration from 0 to 10m (e.g. 5s; 0 = none)"},
      {"grace", "99999999999999999999d",
       "--grace: \"99999999999999999999d\" is not a duration from 0 to 10m (e.g. 5s; 0 = none)"},
      {"service", "61s", "--service: \"61s\" is not a duration from 0 to 1m (e.g. 20ms)"},
      {"service", "-1", "--service: \"-1\" is not a duration from 0 to 1m (e.g. 20ms)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct run r, s;
    char flag[32];
    snprintf(flag, sizeof flag, "--%s", bad[i].flag);
    RUN(r, flag, (char *)bad[i].v);
    cr_assert_eq(r.rc, UV_EINVAL, "%s %s", flag, bad[i].v);
    cr_assert_str_eq(r.err, bad[i].err);
    assert_defaults(&r.o, bad[i].err); /* a bad value stores nothing */
    free(r.out);
    both_forms(&r, &s, bad[i].flag, bad[i].v);
  }
}

Test(flags, size_values) {
  static const struct {
    const char *v;
    size_t want;
  } ok[] = {{"1000", 1000}, {"1KiB", 1024}, {"1MiB", 1u << 20}, {"1536KiB", 1536 * 1024}, {"007KiB", 7168}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    struct run r;
    RUN(r, "--buf", (char *)ok[i].v);
    cr_assert_eq(r.rc, 0, "%s: %s", ok[i].v, r.err);
    cr_assert_eq(r.o.buf, ok[i].want, "%s", ok[i].v);
    free(r.out);
  }
  /* The bounds are written as a user would: 1000 is not a whole number of KiB, 1536KiB not of MiB. */
  static const char *const bad[] = {"0",
                                    "999",
                                    "1537KiB",
                                    "2MiB",
                                    "4MB",
                                    "4 MiB",
                                    "MiB",
                                    "-1",
                                    "4kib",
                                    "1.5MiB",
                                    "",
                                    "KiB",
                                    "+4",
                                    " 4",
                                    "1KiB ",
                                    "99999999999999999999999",
                                    "17592186044416MiB"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct run r;
    RUN(r, "--buf", (char *)bad[i]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", bad[i]);
    char want[200];
    snprintf(want, sizeof want, "--buf: \"%s\" is not a size from 1000 to 1536KiB (e.g. 64KiB)", bad[i]);
    cr_assert_str_eq(r.err, want);
    cr_assert_eq(r.o.buf, 64 * 1024);
    free(r.out);
  }
  /* Without bounds: any size, 0 included; the error says only what a size is. */
  struct run r;
  RUN(r, "--big=0");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.o.big, 0);
  free(r.out);
  RUN(r, "--big=3MiB");
  cr_assert_eq(r.o.big, 3u << 20);
  free(r.out);
  RUN(r, "--big=lots");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--big: \"lots\" is not a size (e.g. 4MiB, 65536)");
  free(r.out);
}

Test(flags, count_values) {
  struct run r;
  RUN(r, "--n", "1");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.o.n, 1);
  free(r.out);
  RUN(r, "--n=100");
  cr_assert_eq(r.o.n, 100);
  free(r.out);
  RUN(r, "--n=007");
  cr_assert_eq(r.o.n, 7);
  free(r.out);
  static const char *const bad[] = {"0", "101", "12a", "-3", "+3", "", "1e2", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    RUN(r, "--n", (char *)bad[i]);
    cr_assert_eq(r.rc, UV_EINVAL, "%s", bad[i]);
    char want[200];
    snprintf(want, sizeof want, "--n: \"%s\" is not a whole number from 1 to 100", bad[i]);
    cr_assert_str_eq(r.err, want);
    cr_assert_eq(r.o.n, 0);
    free(r.out);
  }
}

Test(flags, log_level_and_format_values) {
  static const struct {
    const char *v;
    enum ps_log_level want;
  } levels[] = {
      {"debug", PS_LOG_DEBUG}, {"info", PS_LOG_INFO}, {"warn", PS_LOG_WARN}, {"error", PS_LOG_ERROR}};
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
    struct run r;
    RUN(r, "--level", (char *)levels[i].v);
    cr_assert_eq(r.rc, 0, "%s: %s", levels[i].v, r.err);
    cr_assert_eq(r.o.level, levels[i].want);
    free(r.out);
  }
  struct run r;
  RUN(r, "--level=trace");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--level: \"trace\" is not a log level (debug, info, warn or error)");
  cr_assert_eq(r.o.level, PS_LOG_INFO);
  free(r.out);
  RUN(r, "--format", "text");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.o.format, PS_LOG_TEXT);
  free(r.out);
  RUN(r, "--format", "xml");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--format: \"xml\" is not a log format (text or json)");
  free(r.out);
}

Test(flags, custom_check) {
  struct run r;
  RUN(r, "--even", "42");
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.o.even, 42);
  free(r.out);
  RUN(r, "--even=7");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--even: \"7\" is not an even number up to 1000");
  cr_assert_eq(r.o.even, 2);
  free(r.out);
  /* A custom flag without its check is a table mistake, reported as an error rather than a crash. */
  struct ps_flag broken = table[12]; /* --even */
  cr_assert_str_eq(broken.name, "even");
  broken.check = NULL;
  struct ps_flags_spec s = {.program = "tool", .version = "1", .flags = &broken, .nflags = 1};
  char *argv[] = {"tool", "--even=2", NULL};
  run_spec(&r, &s, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "--even: no check for this flag");
  free(r.out);
}

Test(flags, table_names_are_bounded) {
  static char name[PS_FLAGS_MAX_NAME + 2];
  memset(name, 'f', sizeof name - 1);
  struct ps_flag one = {.name = name, .kind = PS_FLAG_STRING, .offset = offsetof(struct opts, name)};
  struct ps_flags_spec s = {.program = "tool", .version = "1", .flags = &one, .nflags = 1};
  struct run r;
  char *argv[] = {"tool", NULL};
  run_spec(&r, &s, argv);
  cr_assert_eq(r.rc, UV_EINVAL);
  char want[128];
  snprintf(want, sizeof want, "flag table: --%.*s... is longer than %d bytes", PS_FLAGS_MAX_NAME, name,
           PS_FLAGS_MAX_NAME);
  cr_assert_str_eq(r.err, want);
  free(r.out);
  name[PS_FLAGS_MAX_NAME] = '\0'; /* exactly the maximum is fine */
  char flag[PS_FLAGS_MAX_NAME + 8];
  snprintf(flag, sizeof flag, "--%s=v", name);
  char *argv2[] = {"tool", flag, NULL};
  run_spec(&r, &s, argv2);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.o.name, "v");
  free(r.out);
}

/* ---- bounded echo -------------------------------------------------------------------------------- */

Test(flags, long_values_are_echoed_bounded_and_escaped) {
  static char v[100000];
  memset(v, 'z', sizeof v - 1);
  v[0] = '"';
  v[1] = '\n';
  struct run r;
  RUN(r, "--wait", v);
  cr_assert_eq(r.rc, UV_EINVAL);
  char want[256];
  snprintf(want, sizeof want, "--wait: \"\\\"\\x0a%.*s...\" is not a duration (e.g. 30s, 5m, 1h30m)",
           PS_FLAGS_QUOTE_MAX - 2, v + 2);
  cr_assert_str_eq(r.err, want);
  free(r.out);
  /* A small err buffer is still NUL-terminated; none at all is fine too. */
  char small[8];
  struct opts o = defaults;
  char *argv[] = {"tool", "--wait=x", NULL};
  cr_assert_eq(ps_flags_parse(&spec, &o, 2, argv, stdout, small, sizeof small), UV_EINVAL);
  cr_assert_str_eq(small, "--wait:");
  cr_assert_eq(ps_flags_parse(&spec, &o, 2, argv, stdout, NULL, 0), UV_EINVAL);
}

Test(flags, quote) {
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, "");
  cr_assert_str_eq(q, "\"\"");
  ps_flags_quote(q, sizeof q, "a\\b\"c\td\x7f");
  cr_assert_str_eq(q, "\"a\\\\b\\\"c\\x09d\\x7f\"");
  char exact[PS_FLAGS_QUOTE_MAX + 1], over[PS_FLAGS_QUOTE_MAX + 2];
  memset(exact, 'e', sizeof exact - 1);
  exact[sizeof exact - 1] = '\0';
  memset(over, 'o', sizeof over - 1);
  over[sizeof over - 1] = '\0';
  ps_flags_quote(q, sizeof q, exact);
  cr_assert_eq(strlen(q), PS_FLAGS_QUOTE_MAX + 2, "%s", q); /* all of it, no "..." */
  ps_flags_quote(q, sizeof q, over);
  cr_assert_eq(strlen(q), PS_FLAGS_QUOTE_MAX + 5, "%s", q);
  cr_assert_str_eq(q + PS_FLAGS_QUOTE_MAX + 1, "...\"");
  /* The worst case fits PS_FLAGS_QUOTED_MAX: every byte escaped, then "...". */
  char ctl[PS_FLAGS_QUOTE_MAX + 10];
  memset(ctl, '\x01', sizeof ctl - 1);
  ctl[sizeof ctl - 1] = '\0';
  ps_flags_quote(q, sizeof q, ctl);
  cr_assert_eq(strlen(q), PS_FLAGS_QUOTE_MAX * 4 + 5);
  char tiny[4];
  ps_flags_quote(tiny, sizeof tiny, "abcdef");
  cr_assert_str_eq(tiny, "\"ab");
  ps_flags_quote(tiny, 0, "abcdef"); /* writes nothing */
}

Test(flags, fail_formats_and_returns_einval) {
  char err[32];
  cr_assert_eq(ps_flags_fail(err, sizeof err, "%s: %d", "x", 5), UV_EINVAL);
  cr_assert_str_eq(err, "x: 5");
  cr_assert_eq(ps_flags_fail(NULL, 0, "%s", "x"), UV_EINVAL);
}

/* ---- help and version ---------------------------------------------------------------------------- */

Test(flags, help_formatting) {
  static const struct ps_flag two[] = {
      {.name = "listen",
       .env = "T_LISTEN",
       .kind = PS_FLAG_LISTEN,
       .arg = "ADDR",
       .help = "where",
       .def = "0.0.0.0:1"},
      {.name = "wait", .kind = PS_FLAG_DURATION, .arg = "DUR", .help = "how long", .def = "5s"},
      {.name = "nodef", .kind = PS_FLAG_STRING, .arg = "S", .help = "no default"},
      {.name = "a-rather-long-flag-name", .kind = PS_FLAG_STRING, .arg = "VALUE", .help = "long", .def = "v"},
  };
  struct ps_flags_spec s = {.program = "tool",
                            .version = "1.2.3",
                            .about = "tool does things.\n",
                            .footer = "\nMore text.\n",
                            .flags = two,
                            .nflags = 4};
  struct run r;
  char *help[] = {"tool", "--help", NULL};
  run_spec(&r, &s, help);
  cr_assert_eq(r.rc, 1);
  cr_assert_str_eq(
      r.out,
      "Usage: tool [flags]\n"
      "\n"
      "tool does things.\n"
      "\n"
      "Flags (each may also be set by the environment variable shown; a flag wins over its variable):\n"
      "  --listen ADDR                where (default 0.0.0.0:1; $T_LISTEN)\n"
      "  --wait DUR                   how long (default 5s)\n"
      "  --nodef S                    no default\n"
      "  --a-rather-long-flag-name VALUE long (default v)\n"
      "  -h, --help                   print this help and exit\n"
      "  --version                    print the version and exit\n"
      "\n"
      "More text.\n");
  /* -h prints the same, and ps_flags_usage is what both print. */
  char *first = r.out;
  char *h[] = {"tool", "-h", NULL};
  run_spec(&r, &s, h);
  cr_assert_eq(r.rc, 1);
  cr_assert_str_eq(r.out, first);
  free(r.out);
  char *direct;
  size_t len;
  FILE *f = open_memstream(&direct, &len);
  ps_flags_usage(&s, f);
  fclose(f);
  cr_assert_str_eq(direct, first);
  free(direct);
  free(first);

  /* Without any variable the header says only "Flags:"; without a footer the help ends after --version. */
  s.nflags = 2;
  s.flags = two + 1;
  s.footer = NULL;
  run_spec(&r, &s, help);
  cr_assert_str_eq(r.out, "Usage: tool [flags]\n"
                          "\n"
                          "tool does things.\n"
                          "\n"
                          "Flags:\n"
                          "  --wait DUR                   how long (default 5s)\n"
                          "  --nodef S                    no default\n"
                          "  -h, --help                   print this help and exit\n"
                          "  --version                    print the version and exit\n");
  free(r.out);
}

Test(flags, help_and_version_act_when_seen) {
  struct run r;
  RUN(r, "--version");
  cr_assert_eq(r.rc, 2);
  cr_assert_str_eq(r.out, "tool 1.2.3\n");
  free(r.out);
  RUN(r, "--version", "--bogus");
  cr_assert_eq(r.rc, 2);
  free(r.out);
  RUN(r, "--help", "--bogus");
  cr_assert_eq(r.rc, 1);
  free(r.out);
  RUN(r, "--bogus", "--help"); /* an error before it wins */
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_eq(r.outlen, 0);
  free(r.out);
  RUN(r, "--name", "--help"); /* a value, not a request for help */
  cr_assert_eq(r.rc, 0);
  cr_assert_str_eq(r.o.name, "--help");
  free(r.out);
  RUN(r, "--version=1");
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unknown flag \"--version\" (see --help)");
  free(r.out);
}

/* ---- switches, short names, an operand, subcommands ------------------------------------------------ */

struct cli {
  const char *file; /* the operand */
  bool json;
  const char *tag;
};

static const struct ps_flag cli_table[] = {
    {.name = "json", .kind = PS_FLAG_SWITCH, .offset = offsetof(struct cli, json), .help = "print JSON"},
    {.name = "tag",
     .kind = PS_FLAG_STRING,
     .offset = offsetof(struct cli, tag),
     .arg = "K=V",
     .help = "a tag;\n                               said over two lines",
     .short_name = 't'},
};

static const struct ps_flags_spec cli_spec = {.program = "tool run",
                                              .version = "1",
                                              .about = "runs.\n",
                                              .operand = "FILE",
                                              .operand_offset = offsetof(struct cli, file),
                                              .flags = cli_table,
                                              .nflags = 2};

static int cli_parse(struct cli *c, char **argv, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  int argc = 0;
  while (argv[argc] != NULL) argc++;
  return ps_flags_parse(&cli_spec, c, argc, argv, stdout, err, errlen);
}

Test(flags, switches_short_names_and_an_operand) {
  struct cli c;
  char err[256];
  char *all[] = {"run", "--json", "f.csv", "-t", "a=1", NULL};
  cr_assert_eq(cli_parse(&c, all, err, sizeof err), 0, "%s", err);
  cr_assert(c.json);
  cr_assert_str_eq(c.file, "f.csv");
  cr_assert_str_eq(c.tag, "a=1");
  char *glued[] = {"run", "-tb=2", NULL};
  cr_assert_eq(cli_parse(&c, glued, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.tag, "b=2");
  cr_assert_null(c.file, "the operand is the caller's to require");
  cr_assert(!c.json);
  char *eq[] = {"run", "-t=c=3", NULL};
  cr_assert_eq(cli_parse(&c, eq, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(c.tag, "c=3");

  char *two[] = {"run", "a.csv", "b.csv", NULL};
  cr_assert_eq(cli_parse(&c, two, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err,
                   "unexpected argument \"b.csv\": one FILE only, and \"a.csv\" came first (see --help)");
  char *valued[] = {"run", "--json=yes", NULL};
  cr_assert_eq(cli_parse(&c, valued, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "--json: takes no value (see --help)");
  char *bare[] = {"run", "-t", NULL};
  cr_assert_eq(cli_parse(&c, bare, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "--tag: missing value (see --help)");
  char *unknown_short[] = {"run", "-x", NULL};
  cr_assert_eq(cli_parse(&c, unknown_short, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "unknown flag \"-x\" (see --help)");
  char *dash[] = {"run", "-", NULL};
  cr_assert_eq(cli_parse(&c, dash, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "unknown flag \"-\" (see --help)");

  char *usage;
  size_t len;
  FILE *f = open_memstream(&usage, &len);
  ps_flags_usage(&cli_spec, f);
  fclose(f);
  cr_assert_str_eq(usage, "Usage: tool run FILE [flags]\n"
                          "\n"
                          "runs.\n"
                          "\n"
                          "Flags:\n"
                          "  --json                       print JSON\n"
                          "  -t, --tag K=V                a tag;\n"
                          "                               said over two lines\n"
                          "  -h, --help                   print this help and exit\n"
                          "  --version                    print the version and exit\n");
  free(usage);
}

Test(flags, a_first_word_is_an_unknown_subcommand) {
  struct ps_flags_spec s = spec;
  s.subcommands = "run, stop";
  struct run r;
  char *first[] = {"tool", "rnu", NULL};
  run_spec(&r, &s, first);
  cr_assert_eq(r.rc, UV_EINVAL);
  cr_assert_str_eq(r.err, "unknown subcommand \"rnu\" (known: run, stop; see --help)");
  free(r.out);
  /* Later on, a subcommand is no longer possible: the word is only out of place. */
  char *later[] = {"tool", "--n", "3", "rnu", NULL};
  run_spec(&r, &s, later);
  cr_assert_str_eq(r.err, "unexpected argument \"rnu\" (see --help)");
  free(r.out);
}
