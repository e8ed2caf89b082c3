/* The --prometheus-config suites' shared checks (test_prom_config.c, test_prom_config_check.c): a parse that
 * must fail with exact words, and none of them a secret; a parse that must succeed. */
#ifndef PS_PROM_CONFIG_FIXTURE_H
#define PS_PROM_CONFIG_FIXTURE_H

#include <criterion/criterion.h>
#include <string.h>
#include <uv.h>

#include "prom_config.h"

#define FILE_NAME "/etc/p.yaml"
/* Every secret in these files is this word, so that one check finds any that leaks into a message. */
#define SECRET    "s3cr3t"

static inline char *parse_err(const char *yaml, size_t len) {
  static char err[512];
  struct ps_prom_config c;
  memset(&c, 0xab, sizeof c); /* parse zeroes it first, and leaves it empty on error */
  strcpy(err, "unset");
  int r = ps_prom_config_parse(yaml, len, FILE_NAME, &c, err, sizeof err);
  cr_assert_eq(r, UV_EINVAL, "rc %d for:\n%s", r, yaml);
  cr_assert_null(c.servers);
  cr_assert_eq(c.nservers, 0);
  cr_assert_null(strstr(err, SECRET), "a secret in: %s", err);
  cr_assert_null(strchr(err, '\n'), "%s", err);
  return err;
}

/* The error for yaml must be exactly want. */
#define EXPECT_ERR(yaml, want)                                                                               \
  do {                                                                                                       \
    const char *y_ = (yaml);                                                                                 \
    cr_assert_str_eq(parse_err(y_, strlen(y_)), (want));                                                     \
  } while (0)

static inline void parse_ok(const char *yaml, struct ps_prom_config *c) {
  char err[512] = "";
  int r = ps_prom_config_parse(yaml, strlen(yaml), FILE_NAME, c, err, sizeof err);
  cr_assert_eq(r, 0, "%s", err);
}

#endif
