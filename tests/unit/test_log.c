#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"

static char *mem;
static size_t memlen;
static FILE *out;

static void setup(void) {
  out = open_memstream(&mem, &memlen);
  cr_assert_not_null(out);
}

static void teardown(void) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_TEXT, NULL);
  fclose(out);
  free(mem);
}

TestSuite(log, .init = setup, .fini = teardown);

/* Checks the RFC 3339 UTC timestamp with milliseconds at p (24 bytes) and that it is within a minute of
 * now; returns p past it. */
static const char *check_ts(const char *p) {
  int y, mo, d, h, mi, s, ms;
  char z;
  cr_assert_eq(sscanf(p, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z), 8, "ts: %.30s",
               p);
  cr_assert_eq(z, 'Z');
  cr_assert_eq(p[4], '-');
  cr_assert_eq(p[10], 'T');
  cr_assert_eq(p[19], '.');
  struct tm tm = {
      .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
  time_t t = timegm(&tm);
  cr_assert(llabs((long long)(t - time(NULL))) < 60);
  return p + 24;
}

/* Everything after "ts=<ts> " on the single line written. */
static const char *text_line(void) {
  fflush(out);
  cr_assert(memlen > 0);
  cr_assert_eq(strncmp(mem, "ts=", 3), 0, "%s", mem);
  const char *rest = check_ts(mem + 3);
  cr_assert_eq(*rest, ' ');
  cr_assert_eq(mem[memlen - 1], '\n');
  cr_assert_eq(strchr(mem, '\n'), mem + memlen - 1, "one line only: %s", mem);
  return rest + 1;
}

Test(log, parse_level_and_format) {
  enum ps_log_level l;
  enum ps_log_format f;
  cr_assert_eq(ps_log_level_parse("debug", &l), 0);
  cr_assert_eq(l, PS_LOG_DEBUG);
  cr_assert_eq(ps_log_level_parse("info", &l), 0);
  cr_assert_eq(l, PS_LOG_INFO);
  cr_assert_eq(ps_log_level_parse("WARN", &l), 0);
  cr_assert_eq(l, PS_LOG_WARN);
  cr_assert_eq(ps_log_level_parse("error", &l), 0);
  cr_assert_eq(l, PS_LOG_ERROR);
  cr_assert_eq(ps_log_level_parse("trace", &l), UV_EINVAL);
  cr_assert_eq(ps_log_level_parse("", &l), UV_EINVAL);
  cr_assert_eq(ps_log_format_parse("text", &f), 0);
  cr_assert_eq(f, PS_LOG_TEXT);
  cr_assert_eq(ps_log_format_parse("json", &f), 0);
  cr_assert_eq(f, PS_LOG_JSON);
  cr_assert_eq(ps_log_format_parse("xml", &f), UV_EINVAL);
}

Test(log, text_plain_and_quoted) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_TEXT, out);
  ps_log(PS_LOG_WARN, "refresh failed", "target", "ns/app", "error", "connection refused", NULL);
  cr_assert_str_eq(text_line(),
                   "level=warn msg=\"refresh failed\" target=ns/app error=\"connection refused\"\n");
}

Test(log, text_escapes) {
  ps_log_setup(PS_LOG_DEBUG, PS_LOG_TEXT, out);
  ps_log(PS_LOG_INFO, "ok", "eq", "a=b", "q", "say \"hi\"", "nl", "x\ny\tz\r", "bs", "c:\\d", "ctl", "\x01",
         "empty", "", "null", NULL, "bad", "\xff", "utf8", "h\xc3\xa9", NULL);
  cr_assert_str_eq(text_line(),
                   "level=info msg=ok eq=\"a=b\" q=\"say \\\"hi\\\"\" nl=\"x\\ny\\tz\\r\" bs=\"c:\\\\d\" "
                   "ctl=\"\\u0001\" empty= null= bad=\"\\xff\" utf8=\"h\xc3\xa9\"\n");
}

Test(log, text_bad_key_chars_replaced) {
  ps_log_setup(PS_LOG_DEBUG, PS_LOG_TEXT, out);
  ps_log(PS_LOG_ERROR, "m", "a key=", "v", NULL);
  cr_assert_str_eq(text_line(), "level=error msg=m a_key_=v\n");
}

Test(log, level_filtering) {
  ps_log_setup(PS_LOG_WARN, PS_LOG_TEXT, out);
  cr_assert(!ps_log_enabled(PS_LOG_DEBUG));
  cr_assert(!ps_log_enabled(PS_LOG_INFO));
  cr_assert(ps_log_enabled(PS_LOG_WARN));
  cr_assert(ps_log_enabled(PS_LOG_ERROR));
  ps_log(PS_LOG_DEBUG, "no", NULL);
  ps_log(PS_LOG_INFO, "no", NULL);
  fflush(out);
  cr_assert_eq(memlen, 0);
  ps_log(PS_LOG_ERROR, "yes", NULL);
  cr_assert_str_eq(text_line(), "level=error msg=yes\n");
}

Test(log, json_valid_and_escaped) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_JSON, out);
  ps_log(PS_LOG_WARN, "refresh \"failed\"", "target", "ns/app", "error", "a\\b\nc\x01\x7f", "bad",
         "x\xff\xfey", "utf8", "\xe2\x82\xac", "null", NULL, NULL);
  fflush(out);
  cr_assert_eq(mem[memlen - 1], '\n');
  cr_assert_eq(strchr(mem, '\n'), mem + memlen - 1);
  cr_assert_eq(strncmp(mem, "{\"ts\":\"", 7), 0);
  check_ts(mem + 7);
  const char *rest = strstr(mem, "\",\"level\"");
  cr_assert_not_null(rest);
  cr_assert_str_eq(
      rest, "\",\"level\":\"warn\",\"msg\":\"refresh \\\"failed\\\"\",\"target\":\"ns/app\","
            "\"error\":\"a\\\\b\\nc\\u0001\\u007f\",\"bad\":\"x\\ufffd\\ufffdy\",\"utf8\":\"\xe2\x82\xac\","
            "\"null\":\"\"}\n");
  cJSON *j = cJSON_Parse(mem);
  cr_assert_not_null(j);
  cr_assert_str_eq(cJSON_GetObjectItem(j, "error")->valuestring, "a\\b\nc\x01\x7f");
  cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
  cr_assert_str_eq(cJSON_GetObjectItem(j, "utf8")->valuestring, "\xe2\x82\xac");
  cJSON_Delete(j);
}

Test(log, json_rejects_overlong_and_surrogates) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_JSON, out);
  /* overlong "/" (C0 AF), a UTF-16 surrogate (ED A0 80), above U+10FFFF (F4 90 80 80), truncated (E2 82) */
  ps_log(PS_LOG_INFO, "m", "a", "\xc0\xaf", "b", "\xed\xa0\x80", "c", "\xf4\x90\x80\x80", "d", "\xe2\x82",
         NULL);
  fflush(out);
  const char *rest = strstr(mem, ",\"a\"");
  cr_assert_not_null(rest);
  cr_assert_str_eq(rest, ",\"a\":\"\\ufffd\\ufffd\",\"b\":\"\\ufffd\\ufffd\\ufffd\","
                         "\"c\":\"\\ufffd\\ufffd\\ufffd\\ufffd\",\"d\":\"\\ufffd\\ufffd\"}\n");
}

Test(log, many_lines_each_whole) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_JSON, out);
  ps_log_set_rate(0, 0, NULL); /* 100 lines of one kind: without the rate limit (see rate_limit_*) */
  char big[10000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  for (int i = 0; i < 100; i++) ps_log(PS_LOG_INFO, "big", "v", big, NULL);
  fflush(out);
  int lines = 0;
  for (char *p = mem, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
    *nl = '\0';
    cJSON *j = cJSON_Parse(p);
    cr_assert_not_null(j, "line %d", lines);
    cr_assert_eq(strlen(cJSON_GetObjectItem(j, "v")->valuestring), sizeof big - 1);
    cJSON_Delete(j);
    lines++;
  }
  cr_assert_eq(lines, 100);
}

Test(log, null_out_means_stderr) {
  /* Redirect stderr to a temporary file to see the line arrive there. */
  fflush(stderr);
  FILE *tmp = tmpfile();
  cr_assert_not_null(tmp);
  int saved = dup(2);
  dup2(fileno(tmp), 2);
  ps_log_setup(PS_LOG_INFO, PS_LOG_TEXT, NULL);
  ps_log(PS_LOG_INFO, "to stderr", NULL);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  char line[200] = {0};
  cr_assert_not_null(fgets(line, sizeof line, tmp));
  cr_assert_not_null(strstr(line, " level=info msg=\"to stderr\"\n"));
  fclose(tmp);
}

/* ---- rate limit ---------------------------------------------------------------------------------- */

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void) { return fake_now; }

/* The lines written so far, counted, and whether one of them holds `needle`. */
static int count_lines(const char *needle, int *with) {
  fflush(out);
  int n = 0;
  *with = 0;
  for (const char *p = mem; p != NULL && *p; n++) {
    const char *nl = strchr(p, '\n');
    cr_assert_not_null(nl);
    if (needle != NULL && memmem(p, (size_t)(nl - p), needle, strlen(needle)) != NULL) (*with)++;
    p = nl + 1;
  }
  return n;
}

Test(log, rate_limit_keeps_a_burst_per_window_then_counts_what_it_dropped) {
  ps_log_setup(PS_LOG_DEBUG, PS_LOG_TEXT, out);
  ps_log_set_rate(3, 10000, fake_clock);
  int with;
  for (int i = 0; i < 50; i++) ps_log(PS_LOG_WARN, "client resets streams too fast", "peer", "p", NULL);
  cr_assert_eq(count_lines("msg=\"client resets streams too fast\"", &with), 3);
  cr_assert_eq(ps_log_suppressed_total(), 47);
  cr_assert_float_eq(ps_metrics_get(PS_LOG_SUPPRESSED_METRIC, ""), 47, 1e-9);
  /* Another message, or the same at another level, has its own count; debug lines are never limited. */
  for (int i = 0; i < 5; i++) ps_log(PS_LOG_INFO, "client resets streams too fast", NULL);
  for (int i = 0; i < 20; i++) ps_log(PS_LOG_DEBUG, "chatty", NULL);
  cr_assert_eq(count_lines("level=debug msg=chatty", &with), 3 + 3 + 20);
  cr_assert_eq(with, 20);
  cr_assert_eq(ps_log_suppressed_total(), 49);
  /* Within the window nothing is reported yet; once it is over, the next line of any kind first says
   * what was suppressed, with the count and how long the window ran. */
  fake_now += 9999;
  ps_log_flush_suppressed(false);
  cr_assert_eq(count_lines(NULL, &with), 26);
  fake_now += 1;
  ps_log(PS_LOG_WARN, "client resets streams too fast", "peer", "p", NULL);
  count_lines(
      "level=warn msg=\"client resets streams too fast (suppressed 47 similar lines in the last 10s)\" "
      "suppressed=47",
      &with);
  cr_assert_eq(with, 1, "%s", mem);
  count_lines(
      "level=info msg=\"client resets streams too fast (suppressed 2 similar lines in the last 10s)\"",
      &with);
  cr_assert_eq(with, 1, "%s", mem);
  /* The new window lets a burst through again. */
  cr_assert_eq(count_lines(NULL, &with), 26 + 2 + 1);
  ps_metrics_reset();
}

Test(log, rate_limit_flush_reports_a_count_no_line_follows) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_JSON, out);
  ps_log_set_rate(1, 1000, fake_clock);
  for (int i = 0; i < 4; i++) ps_log(PS_LOG_ERROR, "accept failed", "error", "EMFILE", NULL);
  int with;
  cr_assert_eq(count_lines(NULL, &with), 1);
  ps_log_flush_suppressed(true); /* at exit: whatever the window */
  count_lines("\"level\":\"error\",\"msg\":\"accept failed (suppressed 3 similar lines in the last 1s)\","
              "\"suppressed\":\"3\"}",
              &with);
  cr_assert_eq(with, 1, "%s", mem);
  cr_assert_eq(count_lines(NULL, &with), 2, "%s", mem);
  ps_log_flush_suppressed(true); /* reported once */
  cr_assert_eq(count_lines(NULL, &with), 2);
  ps_metrics_reset();
}

Test(log, rate_limit_more_kinds_than_slots_reports_the_evicted_count) {
  ps_log_setup(PS_LOG_INFO, PS_LOG_TEXT, out);
  ps_log_set_rate(1, 60000, fake_clock);
  char msg[32];
  /* Two lines of each of PS_LOG_RATE_KEYS kinds, one ms apart: one written, one counted, each. */
  for (int k = 0; k < PS_LOG_RATE_KEYS; k++) {
    snprintf(msg, sizeof msg, "kind %d", k);
    fake_now++;
    ps_log(PS_LOG_WARN, msg, NULL);
    ps_log(PS_LOG_WARN, msg, NULL);
  }
  int with;
  cr_assert_eq(count_lines(NULL, &with), PS_LOG_RATE_KEYS);
  /* One kind more takes the oldest slot, whose count is reported first. */
  fake_now++;
  ps_log(PS_LOG_WARN, "kind new", NULL);
  count_lines("msg=\"kind 0 (suppressed 1 similar lines in the last 1s)\"", &with);
  cr_assert_eq(with, 1, "%s", mem);
  cr_assert_eq(count_lines(NULL, &with), PS_LOG_RATE_KEYS + 2);
  ps_metrics_reset();
}
