/* Command-line flags from a table: one parser over argv (and the environment, for flags that name a
 * variable) and one usage printer, shared by prescale's server flags (config.c), its subcommands
 * `prescale backtest` (backtest/bt_flags.c) and `prescale probe` (client/probe.c), and prescale-demo-app
 * (demo_app/demo_flags.c), so that they all accept the same syntax and word their errors the same way.
 *
 * A program describes its flags in a `struct ps_flag` table whose entries say where each value goes in
 * a struct of its own (offsetof), then calls ps_flags_parse with that struct. Pure: no I/O beyond
 * printing --help and --version to the FILE it is given. */
#ifndef PS_FLAGS_H
#define PS_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PS_FLAGS_QUOTE_MAX  64 /* bytes of a value echoed in an error; the rest is elided as "..." */
/* Room for ps_flags_quote's output: each echoed byte may become a 4-byte \xNN escape, plus the quotes,
 * the "..." and the NUL. */
#define PS_FLAGS_QUOTED_MAX (PS_FLAGS_QUOTE_MAX * 4 + 8)
#define PS_FLAGS_MAX_NAME   48 /* bytes of a flag's name in a table, without the leading "--" */
#define PS_FLAGS_HELP_WIDTH 28 /* usage: the column where help texts start */
/* Between the lines of a help text that goes on over several: a newline, then the indent of the first
 * line (two spaces, PS_FLAGS_HELP_WIDTH, one space), so that the text stays in its column. */
#define PS_FLAGS_MORE       "\n                               "

enum ps_flag_kind {
  PS_FLAG_STRING,     /* any value; stores the const char * (argv or environment, not copied) */
  PS_FLAG_LISTEN,     /* host:port or [v6]:port, decimal port <= 65535; stores the const char * */
  PS_FLAG_URL,        /* an http:// or https:// URL (ps_flags_url_problem); stores the const char * */
  PS_FLAG_DURATION,   /* ps_duration_parse syntax, in [min, max] ms; stores uint64_t milliseconds */
  PS_FLAG_SIZE,       /* bytes, or a whole number of KiB or MiB, in [min, max]; stores size_t */
  PS_FLAG_COUNT,      /* a whole decimal number in [min, max]; stores size_t */
  PS_FLAG_LOG_LEVEL,  /* ps_log_level_parse; stores enum ps_log_level */
  PS_FLAG_LOG_FORMAT, /* ps_log_format_parse; stores enum ps_log_format */
  PS_FLAG_SWITCH,     /* takes no value: `--json` stores true into a bool; `--json=V` is an error */
  PS_FLAG_CUSTOM,     /* the flag's check callback validates and stores */
};

/* A PS_FLAG_CUSTOM check: stores what `value` means into `field` (the caller's struct at the flag's
 * offset) and returns NULL, or returns what is wrong with it, worded to follow the quoted value:
 * `--listen: "x" <returned text>`. Never stores on failure. */
typedef const char *(*ps_flag_check_cb)(const char *value, void *field);

struct ps_flag {
  const char *name; /* without the leading "--", at most PS_FLAGS_MAX_NAME bytes */
  const char *env;  /* the environment variable that sets it too, or NULL */
  enum ps_flag_kind kind;
  size_t offset;          /* offsetof() the field in the struct given to ps_flags_parse */
  const char *arg;        /* the value's name in the usage: "ADDR", "DUR" */
  const char *help;       /* one line */
  const char *def;        /* the default: stored by ps_flags_defaults, shown in usage and in the
                           * missing-value error; NULL for none */
  uint64_t min, max;      /* DURATION (ms), SIZE (bytes), COUNT: the accepted range; max 0 = no upper bound */
  const char *example;    /* shown in errors, e.g. "e.g. 5s; 0 = no drain"; NULL: the kind's own example */
  ps_flag_check_cb check; /* PS_FLAG_CUSTOM only */
  char short_name;        /* a one-letter alias: 'm' reads `-m V`, `-m=V` and `-mV`; 0 for none */
};

struct ps_flags_spec {
  const char *program; /* "prescale": in the usage line and the --version output */
  const char *version;
  const char *about;  /* usage: what the program is, between "Usage:" and the flags; ends with '\n' */
  const char *footer; /* usage: after the flags (subcommands, metrics); NULL or starts with '\n' */
  /* Said after `unexpected argument "x"` for an argument that is not a flag, e.g. "prescale has no
   * subcommands yet"; NULL says nothing more. */
  const char *positional_note;
  /* The one argument that is not a flag, named in the usage line ("TRACE.csv") and stored as a
   * const char * at operand_offset (which must hold NULL before the parse); a second one is an error.
   * NULL: every such argument is an error. */
  const char *operand;
  size_t operand_offset;
  /* For a program whose first argument may name a subcommand (main.c runs those before the flags are
   * parsed): the known ones, "backtest, probe". A word in that place then reads
   * `unknown subcommand "x" (known: backtest, probe; see --help)`. */
  const char *subcommands;
  const struct ps_flag *flags;
  size_t nflags;
};

/* Reads each flag's environment variable (an empty one counts as unset: manifests often template
 * `value: ""`), then argv[1..argc-1], so a flag wins over its variable. Every source is checked: a bad
 * variable is an error even where its flag is given too. Flags are `--name V` or `--name=V`; -h/--help
 * prints the usage to `out` and --version "<program> <version>", each as soon as it is seen. A flag with a
 * short_name is also `-x V`, `-x=V` or `-xV`; a switch takes no value. Values are
 * stored into `dst` at each flag's offset; a value that fails leaves its field alone (earlier ones stay).
 * Returns 0; 1 after --help; 2 after --version; UV_EINVAL with one line in err naming the flag (or the
 * variable) and the offending value, quoted and bounded: `--log-level: "loud" is not a log level (...)`,
 * `unknown flag "--x" (see --help)`, `--log-level: missing value (e.g. --log-level info)`. */
int ps_flags_parse(const struct ps_flags_spec *spec, void *dst, int argc, char **argv, FILE *out, char *err,
                   size_t errlen);

/* Stores every flag's `def` into `dst`, as if it had been given (flags without one are left alone), so a
 * default is written once, in the table, for --help and the program alike. A `def` that its own flag
 * refuses is a mistake in the table: 0, or UV_EINVAL after storing the others. */
int ps_flags_defaults(const struct ps_flags_spec *spec, void *dst);

/* "Usage: <program> [<operand>] [flags]", about, one line per flag (`--name ARG  help (default D; $ENV)`,
 * `-x, --name ARG ...` with a short name, no ARG for a switch; a help text may go on over more lines, each
 * indented by the caller), -h/--help and --version, then the footer. The flags header says that variables
 * work too when a flag has one. */
void ps_flags_usage(const struct ps_flags_spec *spec, FILE *out);

/* ---- helpers for every parser of user input (flags here, trigger metadata in config_trigger.c) ---- */

/* Writes s double-quoted and safe for one log line into dst (cap bytes, always NUL-terminated when cap >
 * 0): quotes, backslashes and control bytes escaped, at most PS_FLAGS_QUOTE_MAX bytes of s echoed, then
 * "..." when s is longer, so a pasted megabyte does not become a megabyte error. */
void ps_flags_quote(char *dst, size_t cap, const char *s);
/* vsnprintf into err (when err != NULL and errlen > 0); returns UV_EINVAL: `return ps_flags_fail(...)`. */
__attribute__((format(printf, 3, 4))) int ps_flags_fail(char *err, size_t errlen, const char *fmt, ...);
/* What is wrong with s as prescale's Prometheus URL (http:// only, a host, no query or fragment, no
 * spaces or control bytes), worded to follow the quoted value; NULL when it is fine. */
const char *ps_flags_url_problem(const char *s);
/* The length of a Prometheus URL without its trailing '/'s, which name no other server ("http://h/" and
 * "http://h" are one server); the "scheme://" and the first byte after it always stay. */
size_t ps_flags_url_len(const char *s);

#endif
