/* Tests src/kv_list.c: KEDA's "k1=v1,k2=v2" syntax (scalersconfig/typed_config.go setConfigValueMap),
 * its bounds, and that no error message quotes a value. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kv_list.h"

static char err[256];

Test(kv_list, keda_syntax) {
  struct ps_kv_list l;
  cr_assert_eq(ps_kv_list_parse(" b = 2 ,a=1,\tc=,d= x y ", &l, err, sizeof err), 0, "%s", err);
  cr_assert_eq(l.n, 4);
  /* sorted by key, trimmed, an empty value kept, inner spaces kept */
  const char *want[][2] = {{"a", "1"}, {"b", "2"}, {"c", ""}, {"d", "x y"}};
  for (size_t i = 0; i < 4; i++) {
    cr_assert_str_eq(l.items[i].key, want[i][0]);
    cr_assert_str_eq(l.items[i].value, want[i][1]);
  }
  cr_assert_str_eq(ps_kv_list_get(&l, "d")->value, "x y");
  cr_assert_null(ps_kv_list_get(&l, "e"));
  ps_kv_list_free(&l);
  cr_assert_eq(l.n, 0);
  /* a later key replaces an earlier one (KEDA fills a map) */
  cr_assert_eq(ps_kv_list_parse("a=1,a=2", &l, err, sizeof err), 0);
  cr_assert_eq(l.n, 1);
  cr_assert_str_eq(l.items[0].value, "2");
  ps_kv_list_free(&l);
  /* blank or NULL: the empty list */
  cr_assert_eq(ps_kv_list_parse(" \t", &l, err, sizeof err), 0);
  cr_assert_eq(l.n, 0);
  cr_assert_eq(ps_kv_list_parse(NULL, &l, err, sizeof err), 0);
  cr_assert_eq(l.n, 0);
  /* non-ASCII text and every printable byte but ',' and '=' are kept as they are */
  cr_assert_eq(ps_kv_list_parse("é=ü;:\"'&?#%", &l, err, sizeof err), 0);
  cr_assert_str_eq(l.items[0].value, "ü;:\"'&?#%");
  ps_kv_list_free(&l);
}

Test(kv_list, errors_name_the_entry_never_the_value) {
  static const struct {
    const char *in;
    int rc;
    const char *msg;
  } cases[] = {
      {"tok3n", UV_EINVAL, "entry 1 is not key=value"},
      {"a=1,secret", UV_EINVAL, "entry 2 is not key=value"},
      {"a=1,", UV_EINVAL, "entry 2 is not key=value"}, /* KEDA refuses the empty entry too */
      {"a=1,,b=2", UV_EINVAL, "entry 2 is not key=value"},
      {"=secret", UV_EINVAL, "entry 1 has an empty key"},
      {"Authorization=Bearer secret==", UV_EINVAL, "entry 1 (key \"Authorization\") has more than one '='"},
      {"X-A=sec\rret", UV_EINVAL, "entry 1 (key \"X-A\"): the value holds a control byte (CR, LF, ...)"},
      {"X-A=sec\nX-B: ret", UV_EINVAL, "entry 1 (key \"X-A\"): the value holds a control byte (CR, LF, ...)"},
      {"X-A=a\x01", UV_EINVAL, "entry 1 (key \"X-A\"): the value holds a control byte (CR, LF, ...)"},
      {"X\r\nEvil=1", UV_EINVAL, "entry 1: the key holds a control byte (CR, LF, ...)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct ps_kv_list l = {(void *)1, 7};
    cr_assert_eq(ps_kv_list_parse(cases[i].in, &l, err, sizeof err), cases[i].rc, "case %zu", i);
    cr_assert_str_eq(err, cases[i].msg, "case %zu", i);
    cr_assert_null(l.items);
    cr_assert_eq(l.n, 0);
    cr_assert_null(strstr(err, "secret"), "case %zu: %s", i, err);
  }
}

Test(kv_list, bounds) {
  struct ps_kv_list l;
  char *s = malloc(PS_KV_LIST_MAX_ITEMS * 16 + PS_KV_LIST_MAX_VALUE + PS_KV_LIST_MAX_KEY + 64);
  /* PS_KV_LIST_MAX_ITEMS distinct keys go; one more does not; a repeated key is not one more */
  size_t at = 0;
  for (int i = 0; i < PS_KV_LIST_MAX_ITEMS; i++) at += (size_t)sprintf(s + at, "%sk%d=v", i ? "," : "", i);
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), 0, "%s", err);
  cr_assert_eq(l.n, PS_KV_LIST_MAX_ITEMS);
  ps_kv_list_free(&l);
  strcpy(s + at, ",k0=again");
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), 0, "%s", err);
  ps_kv_list_free(&l);
  strcpy(s + at, ",one=more");
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), UV_E2BIG);
  cr_assert_str_eq(err, "more than 32 entries");
  /* a key of PS_KV_LIST_MAX_KEY bytes goes, one more does not */
  memset(s, 'k', PS_KV_LIST_MAX_KEY);
  strcpy(s + PS_KV_LIST_MAX_KEY, "=v");
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), 0, "%s", err);
  ps_kv_list_free(&l);
  memset(s, 'k', PS_KV_LIST_MAX_KEY + 1);
  strcpy(s + PS_KV_LIST_MAX_KEY + 1, "=v");
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), UV_E2BIG);
  cr_assert_str_eq(err, "entry 1: the key is 257 bytes; the maximum is 256");
  /* a value of PS_KV_LIST_MAX_VALUE bytes goes, one more does not, and is not quoted */
  strcpy(s, "k=");
  memset(s + 2, 'v', PS_KV_LIST_MAX_VALUE);
  s[2 + PS_KV_LIST_MAX_VALUE] = '\0';
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), 0, "%s", err);
  cr_assert_eq(strlen(l.items[0].value), PS_KV_LIST_MAX_VALUE);
  ps_kv_list_free(&l);
  strcpy(s + 2 + PS_KV_LIST_MAX_VALUE, "v");
  cr_assert_eq(ps_kv_list_parse(s, &l, err, sizeof err), UV_E2BIG);
  cr_assert_str_eq(err, "entry 1 (key \"k\"): the value is 4097 bytes; the maximum is 4096");
  free(s);
}
