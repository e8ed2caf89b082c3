/* Tests src/prom_decode.c: Prometheus answers of every shape decoded in one piece (ps_prom_decode), and the
 * streaming decoder fed the same bodies cut anywhere (ps_prom_dec_*). The decoder fed by a real Prometheus
 * through the HTTP client is tested in test_prom.c (large_answers_from_a_real_prometheus). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "prom_decode.h"

/* ==== decoding ===================================================================================== */

struct dec {
  int rc;
  struct ps_sample *s;
  size_t n;
  char err[PS_PROM_MAX_ERROR_TEXT];
};

static struct dec decode(const char *json) {
  struct dec d;
  memset(&d, 0, sizeof d);
  d.rc = ps_prom_decode(json, strlen(json), &d.s, &d.n, d.err, sizeof d.err);
  if (d.rc != 0) {
    cr_assert_null(d.s);
    cr_assert_eq(d.n, 0);
    cr_assert(d.err[0] != '\0');
    cr_assert(strchr(d.err, '\n') == NULL);
  }
  return d;
}

Test(prom_decode, decode_matrix) {
  struct dec d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":"
                        "{\"job\":\"x\"},\"values\":[[1700000000,\"1.5\"],[1700000015.5,\"NaN\"],"
                        "[1700000030.123,\"+Inf\"],[1700000045,\"-Inf\"],[1700000060,\"-2e3\"]]}]},"
                        "\"warnings\":[\"w\"]}");
  cr_assert_eq(d.rc, 0, "%s", d.err);
  cr_assert_eq(d.n, 5);
  cr_assert_eq(d.s[0].t_ms, 1700000000000);
  cr_assert_eq(d.s[0].v, 1.5);
  cr_assert_eq(d.s[1].t_ms, 1700000015500);
  cr_assert(isnan(d.s[1].v));
  cr_assert_eq(d.s[2].t_ms, 1700000030123);
  cr_assert(isinf(d.s[2].v) && d.s[2].v > 0);
  cr_assert(isinf(d.s[3].v) && d.s[3].v < 0);
  cr_assert_eq(d.s[4].v, -2000.0);
  free(d.s);
}

Test(prom_decode, decode_unsorted_matrix_is_sorted) {
  struct dec d =
      decode("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},"
             "\"values\":[[3,\"3\"],[1,\"1\"],[2,\"2\"]]}]}}");
  cr_assert_eq(d.rc, 0);
  cr_assert_eq(d.n, 3);
  for (size_t i = 0; i < 3; i++) cr_assert_eq(d.s[i].t_ms, (int64_t)(i + 1) * 1000);
  free(d.s);
}

Test(prom_decode, decode_vector_and_scalar) {
  struct dec d =
      decode("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{},"
             "\"value\":[1700000000.25,\"42\"]}]}}");
  cr_assert_eq(d.rc, 0, "%s", d.err);
  cr_assert_eq(d.n, 1);
  cr_assert_eq(d.s[0].t_ms, 1700000000250);
  cr_assert_eq(d.s[0].v, 42.0);
  free(d.s);
  d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1700000001,\"0.5\"]}}");
  cr_assert_eq(d.rc, 0, "%s", d.err);
  cr_assert_eq(d.n, 1);
  cr_assert_eq(d.s[0].t_ms, 1700000001000);
  cr_assert_eq(d.s[0].v, 0.5);
  free(d.s);
  d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}");
  cr_assert_eq(d.rc, 0);
  cr_assert_eq(d.n, 0);
}

Test(prom_decode, decode_empty_matrix) {
  struct dec d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}");
  cr_assert_eq(d.rc, 0);
  cr_assert_eq(d.n, 0);
  cr_assert_null(d.s);
  d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},"
             "\"values\":[]}]}}");
  cr_assert_eq(d.rc, 0);
  cr_assert_eq(d.n, 0);
}

Test(prom_decode, decode_errors_from_prometheus) {
  struct dec d = decode("{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"1:5: parse error: "
                        "unexpected end of input\"}");
  cr_assert_eq(d.rc, UV_EINVAL);
  cr_assert(strstr(d.err, "1:5: parse error: unexpected end of input") != NULL, "%s", d.err);
  d = decode("{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"query processing would load too "
             "many samples\\ninto memory\"}");
  cr_assert_eq(d.rc, UV_EAGAIN);
  cr_assert(strstr(d.err, "execution") != NULL && strstr(d.err, "too many samples") != NULL, "%s", d.err);
  d = decode("{\"status\":\"error\",\"errorType\":\"timeout\",\"error\":\"query timed out\"}");
  cr_assert_eq(d.rc, UV_EAGAIN);
  d = decode("{\"status\":\"error\"}");
  cr_assert_eq(d.rc, UV_EAGAIN);
}

Test(prom_decode, decode_several_series) {
  struct dec d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":["
                        "{\"metric\":{\"a\":\"1\"},\"values\":[[1,\"1\"]]},"
                        "{\"metric\":{\"a\":\"2\"},\"values\":[[1,\"1\"]]}]}}");
  cr_assert_eq(d.rc, UV_EINVAL);
  cr_assert(strstr(d.err, "2 series") != NULL && strstr(d.err, "sum(") != NULL, "%s", d.err);
  d = decode("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
             "{\"metric\":{},\"value\":[1,\"1\"]},{\"metric\":{},\"value\":[1,\"1\"]},"
             "{\"metric\":{},\"value\":[1,\"1\"]}]}}");
  cr_assert_eq(d.rc, UV_EINVAL);
  cr_assert(strstr(d.err, "3 series") != NULL, "%s", d.err);
}

Test(prom_decode, decode_wrong_shapes) {
  const char *bad[] = {
      "[]",
      "{}",
      "{\"status\":1}",
      "{\"status\":\"maybe\"}",
      "{\"status\":\"success\"}",
      "{\"status\":\"success\",\"data\":[]}",
      "{\"status\":\"success\",\"data\":{\"result\":[]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"string\",\"result\":[1,\"x\"]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":{}}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[1]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{}}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1]]}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,2]]}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[\"1\",\"2\"]]}]}"
      "}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\"2x\"]]}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\"\"]]}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\" 2\"]]}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1e300,\"2\"]]}]}"
      "}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,\"2\",3]}]}}",
      "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1]}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct dec d = decode(bad[i]);
    cr_expect_eq(d.rc, UV_EPROTO, "%s -> %d %s", bad[i], d.rc, d.err);
  }
}

Test(prom_decode, decode_not_json_and_truncated) {
  struct dec d = decode("<html>502 Bad Gateway</html>");
  cr_assert_eq(d.rc, UV_EPROTO);
  cr_assert(strstr(d.err, "not JSON") != NULL, "%s", d.err);
  d = decode("");
  cr_assert_eq(d.rc, UV_EPROTO);
  const char *full = "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},"
                     "\"values\":[[1,\"1\"]]}]}}";
  for (size_t cut = 0; cut < strlen(full); cut++) {
    struct ps_sample *s = NULL;
    size_t n = 0;
    char err[128];
    cr_assert_eq(ps_prom_decode(full, cut, &s, &n, err, sizeof err), UV_EPROTO, "cut at %zu", cut);
    cr_assert_null(s);
  }
  /* the length is honoured: no reading past it even without a NUL */
  char buf[8] = {'{', '"', 's', '"', ':', '1', '}', 'x'};
  struct ps_sample *s = NULL;
  size_t n = 0;
  cr_assert_eq(ps_prom_decode(buf, sizeof buf - 1, &s, &n, NULL, 0), UV_EPROTO);
}

/* ==== the streaming decoder ======================================================================== */

/* Decodes json fed in pieces cut at cuts[0..ncuts) (increasing offsets), into an array that already holds
 * `pre` samples (times 1 and 2 ms), and checks the decoder's promises about that array. */
static struct dec decode_split(const char *json, size_t len, const size_t *cuts, size_t ncuts, size_t pre) {
  struct dec d;
  memset(&d, 0, sizeof d);
  struct ps_sample *arr = NULL;
  size_t n = 0, cap = 0;
  if (pre > 0) {
    cap = pre;
    arr = malloc(pre * sizeof *arr);
    for (size_t i = 0; i < pre; i++) arr[i] = (struct ps_sample){.t_ms = (int64_t)i + 1, .v = -1};
    n = pre;
  }
  struct ps_prom_dec *dec;
  cr_assert_eq(ps_prom_dec_new(&arr, &n, &cap, &dec), 0);
  size_t off = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : len;
    cr_assert_eq(ps_prom_dec_feed(dec, json + off, to - off), 0);
    off = to;
  }
  cr_assert_eq(ps_prom_dec_bytes(dec), len);
  bool api = false;
  d.rc = ps_prom_dec_finish(dec, d.err, sizeof d.err, &api);
  ps_prom_dec_free(dec);
  for (size_t i = 0; i < pre; i++) cr_assert_eq(arr[i].t_ms, (int64_t)i + 1); /* what was there stays */
  if (d.rc != 0) cr_assert_eq(n, pre, "an error leaves the array at its mark");
  d.n = n - pre;
  if (d.n > 0) {
    d.s = malloc(d.n * sizeof *d.s);
    memcpy(d.s, arr + pre, d.n * sizeof *d.s);
  }
  free(arr);
  return d;
}

static void expect_same(const struct dec *a, const struct dec *b, const char *what) {
  cr_assert_eq(a->rc, b->rc, "%s: %d vs %d (%s | %s)", what, a->rc, b->rc, a->err, b->err);
  cr_assert_str_eq(a->err, b->err, "%s", what);
  cr_assert_eq(a->n, b->n, "%s", what);
  for (size_t i = 0; i < a->n; i++) {
    cr_assert_eq(a->s[i].t_ms, b->s[i].t_ms, "%s: sample %zu", what, i);
    cr_assert(a->s[i].v == b->s[i].v || (isnan(a->s[i].v) && isnan(b->s[i].v)), "%s: sample %zu", what, i);
  }
}

/* Answers of every shape the decoder tells apart, each small enough to be cut at every place. */
static const char *split_cases[] = {
    "\xEF\xBB\xBF {\"status\" : "
    "\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{\"j\\u00e9"
    "\\ud83d\\ude00\":\"a\\\"b\\\\\"},\"values\":[ [1700000000,\"1.5\"] "
    ",[1700000015.5,\"NaN\"],[1700000030.123,"
    "\"+Inf\"],[1700000045,\"-Inf\"],[1700000001e0,\"-2e3\"]]}]},\"warnings\":[\"w\",{\"x\":[null,true,false,"
    "-0.5e-3]}]}  trailing",
    "{\"data\":{\"result\":[{\"values\":[[3,\"3\"],[1,\"1\"]],\"metric\":{}}],\"resultType\":\"matrix\"},"
    "\"status\":\"success\"}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{},\"value\":"
    "[1700000000.25,\"42\"]}]}}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1700000001,\"0.5\"]}}",
    "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"1:5: parse error\\nunexpected\"}",
    "{\"status\":\"error\",\"errorType\":\"timeout\",\"error\":\"query timed out\"}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\"1\"]]},"
    "{\"values\":[[1,\"1\"]]},{}]}}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"histograms\":[]}]}}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\"2x\"]]}]}}",
    "{\"status\":\"success\",\"status\":\"error\",\"data\":{\"resultType\":\"matrix\",\"resultType\":\"x\","
    "\"result\":[]}}",
    "{\"st\\u0061tus\":\"maybe\"}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"values\":[[1,\"1\"],]}]}}",
    "<html>502 Bad Gateway</html>",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"1\",2]}}",
    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,\"1\"]}]},\"x\":"
    "\"\\ud800\"}",
};

Test(prom_decode, dec_every_split_gives_the_one_piece_result) {
  for (size_t c = 0; c < sizeof split_cases / sizeof split_cases[0]; c++) {
    const char *json = split_cases[c];
    size_t len = strlen(json);
    struct dec whole = decode(json); /* ps_prom_decode: the reference */
    char what[64];
    for (size_t cut = 0; cut <= len; cut++) { /* two pieces, cut everywhere */
      struct dec d = decode_split(json, len, &cut, 1, 0);
      snprintf(what, sizeof what, "case %zu cut at %zu", c, cut);
      expect_same(&whole, &d, what);
      free(d.s);
    }
    size_t *bytes = malloc(len * sizeof *bytes); /* a byte at a time */
    for (size_t i = 0; i < len; i++) bytes[i] = i + 1;
    struct dec d = decode_split(json, len, bytes, len ? len - 1 : 0, 3);
    snprintf(what, sizeof what, "case %zu byte by byte", c);
    expect_same(&whole, &d, what);
    free(d.s);
    free(bytes);
    free(whole.s);
  }
}

Test(prom_decode, dec_results_of_the_split_cases) {
  struct dec d = decode(split_cases[0]);
  cr_assert_eq(d.rc, 0, "%s", d.err);
  cr_assert_eq(d.n, 5);
  cr_assert_eq(d.s[0].t_ms, 1700000000000); /* sorted: 1700000001e0 came last */
  cr_assert_eq(d.s[1].t_ms, 1700000001000);
  cr_assert_eq(d.s[1].v, -2000.0);
  cr_assert(isnan(d.s[2].v));
  cr_assert(isinf(d.s[3].v) && d.s[3].v > 0);
  free(d.s);
  d = decode(split_cases[1]); /* keys in any order */
  cr_assert_eq(d.rc, 0, "%s", d.err);
  cr_assert_eq(d.n, 2);
  cr_assert_eq(d.s[0].t_ms, 1000);
  free(d.s);
  d = decode(split_cases[6]);
  cr_assert_eq(d.rc, UV_EINVAL);
  cr_assert(strstr(d.err, "query returned 3 series") != NULL, "%s", d.err);
  d = decode(split_cases[7]);
  cr_assert_eq(d.rc, UV_EINVAL);
  cr_assert(strstr(d.err, "native histograms") != NULL, "%s", d.err);
  d = decode(split_cases[9]); /* the first of duplicate keys counts, as with cJSON */
  cr_assert_eq(d.rc, 0, "%s", d.err);
  d = decode(split_cases[10]); /* escapes in keys are decoded */
  cr_assert_eq(d.rc, UV_EPROTO);
  cr_assert_str_eq(d.err, "unknown response status \"maybe\"");
  d = decode(split_cases[11]);
  cr_assert(strstr(d.err, "not JSON") != NULL, "%s", d.err);
  d = decode(split_cases[14]); /* a lone surrogate is not JSON */
  cr_assert(strstr(d.err, "not JSON") != NULL, "%s", d.err);
}

Test(prom_decode, dec_json_edges) {
  /* As cJSON read them: numbers are runs strtod reads whole; nesting 1000 deep. */
  const char *ok_time[] = {"1", "-1", "1.5e3", "1E3", "0.001", "+1" /* not JSON: below */};
  for (size_t i = 0; i < 5; i++) {
    char j[256];
    snprintf(j, sizeof j,
             "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[%s,\"7\"]}}",
             ok_time[i]);
    struct dec d = decode(j);
    cr_expect_eq(d.rc, 0, "%s: %s", ok_time[i], d.err);
    free(d.s);
  }
  const char *bad_json[] = {
      "{\"status\":\"success\",\"x\":+1}",  "{\"status\":\"success\",\"x\":1-2}",
      "{\"status\":\"success\",\"x\":.5}",  "{\"status\":\"success\",\"x\":\"\\x\"}",
      "{\"status\":\"success\",\"x\":tru}", "{\"status\":\"success\",\"x\":\"\\udc00\"}",
      "{\"status\":\"success\" \"x\":1}",   "{\"status\":\"success\",\"x\":[1}",
      "{\"status\":\"success\",}",          "{\"status\":\"success\",\"x\":\"\\u12g4\"}",
  };
  for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
    struct dec d = decode(bad_json[i]);
    cr_expect(d.rc == UV_EPROTO && strstr(d.err, "not JSON") != NULL, "%s: %s", bad_json[i], d.err);
  }
  char num[PS_PROM_JSON_MAX_NUMBER + 64];
  snprintf(num, sizeof num, "{\"status\":\"maybe\",\"x\":1%0*d}", PS_PROM_JSON_MAX_NUMBER - 1, 0);
  cr_assert_str_eq(decode(num).err, "unknown response status \"maybe\"");
  snprintf(num, sizeof num, "{\"status\":\"maybe\",\"x\":1%0*d}", PS_PROM_JSON_MAX_NUMBER, 0);
  cr_assert(strstr(decode(num).err, "not JSON") != NULL);
  struct ps_buf deep;
  ps_buf_init(&deep);
  ps_buf_puts(&deep, "{\"status\":\"maybe\",\"x\":");
  for (int i = 1; i < PS_PROM_JSON_MAX_DEPTH; i++) ps_buf_puts(&deep, "[");
  for (int i = 1; i < PS_PROM_JSON_MAX_DEPTH; i++) ps_buf_puts(&deep, "]");
  ps_buf_puts(&deep, "}");
  cr_assert_str_eq(decode(deep.data).err, "unknown response status \"maybe\"");
  ps_buf_reset(&deep);
  ps_buf_puts(&deep, "{\"status\":\"maybe\",\"x\":");
  for (int i = 0; i < PS_PROM_JSON_MAX_DEPTH; i++) ps_buf_puts(&deep, "[");
  for (int i = 0; i < PS_PROM_JSON_MAX_DEPTH; i++) ps_buf_puts(&deep, "]");
  ps_buf_puts(&deep, "}");
  cr_assert(strstr(decode(deep.data).err, "not JSON") != NULL);
  ps_buf_free(&deep);
  /* A NUL inside a string is part of it: "success\u0000x" is not "success". */
  struct dec d = decode("{\"status\":\"success\\u0000x\"}");
  cr_assert(strstr(d.err, "unknown response status") != NULL, "%s", d.err);
  /* A value string longer than any float's text is malformed, not cut. */
  char longv[400];
  snprintf(longv, sizeof longv,
           "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"1.%0*d\"]}}",
           PS_PROM_MAX_VALUE_TEXT, 0);
  cr_assert_eq(decode(longv).rc, UV_EPROTO);
}

Test(prom_decode, dec_state_is_bounded_whatever_the_body) {
  /* A 4 MiB error text, an 8 MiB ignored member: the decoder keeps its fixed state, cuts the text it
   * reports, and its array stays empty. */
  size_t big = 4u << 20;
  struct ps_buf b;
  ps_buf_init(&b);
  ps_buf_puts(&b, "{\"status\":\"error\",\"errorType\":\"execution\",\"ignored\":[\"");
  for (size_t i = 0; i < 2 * big; i += 64)
    ps_buf_puts(&b, "0123456789012345678901234567890123456789012345678901234567890123");
  ps_buf_puts(&b, "\"],\"error\":\"");
  for (size_t i = 0; i < big; i += 8) ps_buf_puts(&b, "boom... ");
  ps_buf_puts(&b, "\"}");
  struct ps_sample *arr = NULL;
  size_t n = 0, cap = 0;
  struct ps_prom_dec *dec;
  cr_assert_eq(ps_prom_dec_new(&arr, &n, &cap, &dec), 0);
  for (size_t off = 0; off < b.len; off += 65536)
    cr_assert_eq(ps_prom_dec_feed(dec, b.data + off, b.len - off < 65536 ? b.len - off : 65536), 0);
  char err[PS_PROM_MAX_ERROR_TEXT];
  bool api = false;
  cr_assert_eq(ps_prom_dec_finish(dec, err, sizeof err, &api), UV_EAGAIN);
  cr_assert(api);
  cr_assert(strncmp(err, "Prometheus query failed (execution): boom... boom", 49) == 0, "%s", err);
  cr_assert_eq(strlen(err), sizeof err - 1); /* cut to the buffer */
  cr_assert_null(arr);
  cr_assert_eq(cap, 0);
  ps_prom_dec_free(dec);
  ps_buf_free(&b);
}
