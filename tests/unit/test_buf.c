#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

Test(buf, append_grows_and_terminates) {
  struct ps_buf b;
  ps_buf_init(&b);
  for (int i = 0; i < 1000; i++) cr_assert_eq(ps_buf_append(&b, "abc", 3), 0);
  cr_assert_eq(b.len, 3000);
  cr_assert_eq(b.data[b.len], '\0');
  cr_assert_eq(memcmp(b.data + 2997, "abc", 3), 0);
  ps_buf_free(&b);
  cr_assert_null(b.data);
}

Test(buf, printf_long_and_short) {
  struct ps_buf b;
  ps_buf_init(&b);
  cr_assert_eq(ps_buf_printf(&b, "%d-%s", 42, "x"), 0);
  cr_assert_str_eq(b.data, "42-x");
  char big[1000];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq(ps_buf_printf(&b, "%s!", big), 0);
  cr_assert_eq(b.len, 4 + 999 + 1);
  cr_assert_eq(b.data[b.len - 1], '!');
  ps_buf_free(&b);
}

Test(buf, consume_and_steal) {
  struct ps_buf b;
  ps_buf_init(&b);
  ps_buf_puts(&b, "hello world");
  ps_buf_consume(&b, 6);
  cr_assert_str_eq(b.data, "world");
  size_t n;
  char *p = ps_buf_steal(&b, &n);
  cr_assert_eq(n, 5);
  cr_assert_str_eq(p, "world");
  cr_assert_null(b.data);
  cr_assert_eq(b.len, 0);
  free(p);
  ps_buf_consume(&b, 10); /* on an empty buffer: nothing to do */
  cr_assert_eq(b.len, 0);
}

Test(buf, wipe_zeroes_the_whole_capacity_and_keeps_it) {
  struct ps_buf b;
  ps_buf_init(&b);
  ps_buf_wipe(&b); /* nothing yet: nothing to do */
  cr_assert_null(b.data);
  ps_buf_puts(&b, "Authorization: Bearer a-long-enough-secret-token\r\n");
  ps_buf_reset(&b); /* reset keeps the old bytes beyond the first */
  ps_buf_puts(&b, "x");
  size_t cap = b.cap;
  char *mem = b.data;
  cr_assert_neq(memchr(b.data, 's', b.cap), NULL, "the old secret is in the memory before the wipe");
  ps_buf_wipe(&b);
  cr_assert_eq(b.len, 0);
  cr_assert_eq(b.cap, cap);
  cr_assert_eq(b.data, mem, "the memory is kept");
  for (size_t i = 0; i < cap; i++) cr_assert_eq(b.data[i], 0, "byte %zu of %zu not wiped", i, cap);
  cr_assert_eq(ps_buf_puts(&b, "y"), 0); /* still a buffer */
  cr_assert_str_eq(b.data, "y");
  ps_buf_free(&b);
  ps_free_secret(NULL);
  ps_free_secret(strdup("a secret")); /* freed: the leak check after the test would say otherwise */
}
