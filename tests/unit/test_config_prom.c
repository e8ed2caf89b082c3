/* Tests src/config_prom.c through ps_target_config_parse: the keys of KEDA's prometheus scaler
 * (namespace, queryParameters, customHeaders, unsafeSsl, and timeout as KEDA reads it), valid values,
 * refused ones, header smuggling, bounds, and that no message quotes a header's value. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "http_client.h"

struct tc {
  int rc;
  char err[512];
  struct ps_target_config c;
};

/* The trigger "query: up, threshold: 1" with key = value added (key NULL: nothing). */
static void parse1(struct tc *t, const char *key, const char *value) {
  struct ps_kv md[] = {{"query", "up"}, {"threshold", "1"}, {"model", "last"}, {key, value}};
  t->rc = ps_target_config_parse(&t->c, md, key != NULL ? 4 : 3, "http://p:9090", t->err, sizeof t->err);
}

Test(config_prom, defaults) {
  struct tc t;
  parse1(&t, NULL, NULL);
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_null(t.c.prom_namespace);
  cr_assert_eq(t.c.query_params.n, 0);
  cr_assert_null(t.c.custom_headers);
  cr_assert_eq(t.c.unsafe_ssl, false);
  cr_assert_eq(t.c.timeout_ms, 3000);
  ps_target_config_free(&t.c);
  ps_target_config_free(&t.c); /* idempotent */
}

Test(config_prom, every_key) {
  struct ps_kv md[] = {{"query", "up"},
                       {"threshold", "1"},
                       {"namespace", " team-a "},
                       {"queryParameters", "dedup=false, partial_response=true"},
                       {"customHeaders", "X-Scope-OrgID=team-a, Authorization=Bearer t0k"},
                       {"unsafeSsl", "true"},
                       {"timeout", "1500"}};
  struct tc t;
  t.rc = ps_target_config_parse(&t.c, md, sizeof md / sizeof md[0], NULL, t.err, sizeof t.err);
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_str_eq(t.c.prom_namespace, "team-a"); /* trimmed, as KEDA does */
  cr_assert_eq(t.c.query_params.n, 2);
  cr_assert_str_eq(t.c.query_params.items[0].key, "dedup");
  cr_assert_str_eq(t.c.query_params.items[1].value, "true");
  /* sorted by name, one "Name: value" line each, ready for ps_http_opts.headers */
  cr_assert_str_eq(t.c.custom_headers, "Authorization: Bearer t0k\r\nX-Scope-OrgID: team-a\r\n");
  cr_assert_eq(ps_http_headers_check(t.c.custom_headers), 0);
  cr_assert_eq(t.c.unsafe_ssl, true);
  cr_assert_eq(t.c.timeout_ms, 1500, "digits alone are milliseconds, as KEDA reads a duration");
  ps_target_config_free(&t.c);
  cr_assert_null(t.c.custom_headers);
}

Test(config_prom, accepted_values) {
  static const struct {
    const char *key, *value;
  } cases[] = {
      {"namespace", ""}, /* blank is absent, as in KEDA */
      {"namespace", "openshift-monitoring"},
      {"queryParameters", ""},
      {"queryParameters", "a=b&c, é=ü #"},
      {"queryParameters", "namespace=x"},
      {"customHeaders", ""},
      {"customHeaders", "X-Empty="},
      {"customHeaders", "Accept=application/json"},
      {"customHeaders", "X-A=1,x-a=2"},
      {"unsafeSsl", "false"},
      {"unsafeSsl", "TRUE"},
      {"unsafeSsl", "1"},
      {"timeout", "100"},
      {"timeout", "60000"},
      {"timeout", "1m"},
      {"timeout", "2.5s"},
      {"timeout", "0"}, /* KEDA: 0 is the default */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    parse1(&t, cases[i].key, cases[i].value);
    cr_assert_eq(t.rc, 0, "%s=%s: %s", cases[i].key, cases[i].value, t.err);
    ps_target_config_free(&t.c);
  }
  struct tc t;
  parse1(&t, "timeout", "0");
  cr_assert_eq(t.c.timeout_ms, 3000);
  ps_target_config_free(&t.c);
  parse1(&t, "timeout", "2.5s");
  cr_assert_eq(t.c.timeout_ms, 2500);
  ps_target_config_free(&t.c);
}

Test(config_prom, refused_values_name_the_key_never_a_header_value) {
  static char long_ns[PS_MAX_NAMESPACE + 2];
  memset(long_ns, 'n', PS_MAX_NAMESPACE + 1);
  long_ns[PS_MAX_NAMESPACE + 1] = '\0';
  static const struct {
    const char *key, *value, *err;
  } cases[] = {
      /* header smuggling: CR, LF, other controls, in a value or a name */
      {"customHeaders", "X-A=s3cret\r\nHost: evil",
       "customHeaders: entry 1 (key \"X-A\"): the value holds a control byte (CR, LF, ...) (expected "
       "Name1=value1,Name2=value2)"},
      {"customHeaders", "X-A=s3cret\nX-B: c",
       "customHeaders: entry 1 (key \"X-A\"): the value holds a control byte (CR, LF, ...) (expected "
       "Name1=value1,Name2=value2)"},
      {"customHeaders", "X-A\r\nEvil=s3cret",
       "customHeaders: entry 1: the key holds a control byte (CR, LF, ...) (expected "
       "Name1=value1,Name2=value2)"},
      /* names: a token, not one the client sets */
      {"customHeaders", "X A=s3cret", "customHeaders: header name \"X A\" is not a token (RFC 9110 5.6.2)"},
      {"customHeaders", "X:A=s3cret", "customHeaders: header name \"X:A\" is not a token (RFC 9110 5.6.2)"},
      {"customHeaders", "host=s3cret",
       "customHeaders: header \"host\" is set by prescale's HTTP client itself"},
      {"customHeaders", "Content-Length=0",
       "customHeaders: header \"Content-Length\" is set by prescale's HTTP client itself"},
      {"customHeaders", "Transfer-Encoding=chunked",
       "customHeaders: header \"Transfer-Encoding\" is set by prescale's HTTP client itself"},
      {"customHeaders", "Connection=close",
       "customHeaders: header \"Connection\" is set by prescale's HTTP client itself"},
      /* KEDA's syntax */
      {"customHeaders", "Bearer s3cret",
       "customHeaders: entry 1 is not key=value (expected Name1=value1,Name2=value2)"},
      {"customHeaders", "Authorization=Basic czNjcmV0==",
       "customHeaders: entry 1 (key \"Authorization\") has more than one '=' (expected "
       "Name1=value1,Name2=value2)"},
      {"queryParameters", "a", "queryParameters: entry 1 is not key=value (expected k1=v1,k2=v2)"},
      {"queryParameters", "a=1,,b=2", "queryParameters: entry 2 is not key=value (expected k1=v1,k2=v2)"},
      {"queryParameters", "a=\r\n",
       "queryParameters: entry 1 (key \"a\"): the value holds a control byte (CR, LF, "
       "...) (expected k1=v1,k2=v2)"},
      {"queryParameters", "query=x", "queryParameters: \"query\" is set by prescale itself (query_range)"},
      {"queryParameters", "step=1", "queryParameters: \"step\" is set by prescale itself (query_range)"},
      {"namespace", "a\r\nb", "namespace: the value holds a control byte (CR, LF, ...)"},
      {"namespace", long_ns, "namespace: the value is 254 bytes; the maximum is 253"},
      {"unsafeSsl", "maybe", "unsafeSsl: \"maybe\" is not a boolean (true or false)"},
      {"timeout", "50", "timeout: \"50\" is not a duration from 100ms to 1m (e.g. 3s)"},
      {"timeout", "60001", "timeout: \"60001\" is not a duration from 100ms to 1m (e.g. 3s)"},
      {"timeout", "99999999999999999999",
       "timeout: \"99999999999999999999\" is not a duration from 100ms to 1m "
       "(e.g. 3s)"},
      {"timeout", "-5", "timeout: \"-5\" is not a duration from 100ms to 1m (e.g. 3s)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tc t;
    parse1(&t, cases[i].key, cases[i].value);
    cr_assert_eq(t.rc, UV_EINVAL, "case %zu", i);
    cr_assert_str_eq(t.err, cases[i].err, "case %zu", i);
    cr_assert_null(strstr(t.err, "s3cret"), "case %zu: %s", i, t.err);
    cr_assert_null(strstr(t.err, "czNjcmV0"), "case %zu: %s", i, t.err);
    cr_assert_null(t.c.custom_headers);
    cr_assert_null(t.c.prom_namespace);
    cr_assert_eq(t.c.query_params.n, 0);
  }
}

/* customHeaders: at most PS_MAX_CUSTOM_HEADERS bytes of header lines, which "k=v" entries within the
 * metadata value bound can pass (each line adds ": " and CRLF); the total is said, no value. */
static void headers_of(char *s, int n, int vlen) {
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    at += (size_t)sprintf(s + at, "%sX-%02d=", i ? "," : "", i);
    memset(s + at, 'v', (size_t)vlen);
    at += (size_t)vlen;
  }
  s[at] = '\0';
}

Test(config_prom, custom_header_bounds) {
  char *s = malloc(PS_MAX_METADATA_VALUE + 1);
  struct tc t;
  headers_of(s, PS_KV_LIST_MAX_ITEMS, 200); /* 32 lines of 208 bytes */
  parse1(&t, "customHeaders", s);
  cr_assert_eq(t.rc, 0, "%s", t.err);
  cr_assert_eq(strlen(t.c.custom_headers), 32 * 208);
  ps_target_config_free(&t.c);
  headers_of(s, PS_KV_LIST_MAX_ITEMS, 249); /* 8159 bytes of metadata, 8224 of header lines */
  cr_assert_leq(strlen(s), PS_MAX_METADATA_VALUE);
  parse1(&t, "customHeaders", s);
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert_str_eq(t.err, "customHeaders: the headers take 8224 bytes; the maximum is 8192");
  cr_assert_null(t.c.custom_headers);
  headers_of(s, PS_KV_LIST_MAX_ITEMS + 1, 10);
  parse1(&t, "customHeaders", s);
  cr_assert_eq(t.rc, UV_EINVAL);
  cr_assert_str_eq(t.err, "customHeaders: more than 32 entries (expected Name1=value1,Name2=value2)");
  free(s);
}
