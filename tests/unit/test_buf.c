#include <criterion/criterion.h>
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
