/* The leak check every unit suite runs after each test body (leak_check.c): it must be able to fail, so a
 * separate criterion program (leak_check_probe.c) leaks on purpose and these tests check its verdicts.
 * Under the ASan build LeakSanitizer must fail the leaking tests; under memcheck (`make valgrind`: the
 * probe runs under valgrind too, children are traced) memcheck must; in a plain build outside valgrind
 * there is no checker, and the leaking tests pass. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <valgrind/valgrind.h>

#include "loop_fixture.h"

#if defined(__SANITIZE_ADDRESS__)
#define PS_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PS_HAVE_LSAN 1
#endif
#endif

#ifdef PS_HAVE_LSAN
static const bool have_lsan = true;
#else
static const bool have_lsan = false;
#endif

TestSuite(leak_check, .timeout = 120);

/* Room for the probe's report: criterion's verdict with the quoted leak report. */
#define PROBE_OUT_MAX 16384

static int run_probe(const char *test, char *out, size_t len) {
  return ps_test_run_probe(PS_TEST_LEAK_PROBE, test, out, len);
}

/* A leaking test fails, and the failure quotes the report naming the function that allocated. */
static void expect_caught(const char *test, const char *allocator) {
  static char out[PROBE_OUT_MAX];
  int rc = run_probe(test, out, sizeof out);
  if (!have_lsan && !RUNNING_ON_VALGRIND) {
    cr_assert_eq(rc, 0, "no checker in this build, yet:\n%s", out);
    return;
  }
  cr_assert_neq(rc, 0, "%s", out);
  cr_assert_not_null(strstr(out, "Failing: 1"), "%s", out);
  cr_assert_not_null(strstr(out, have_lsan ? "the test leaked heap memory (LeakSanitizer)"
                                           : "bytes (memcheck, definitely lost)"),
                     "%s", out);
  /* the probe's stderr is in `out` too: memcheck's report (on stderr), or LeakSanitizer's (quoted) */
  cr_assert_not_null(strstr(out, allocator), "the report names the allocating function:\n%s", out);
}

static void expect_passed(const char *test) {
  static char out[PROBE_OUT_MAX];
  cr_assert_eq(run_probe(test, out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "Passing: 1"), "%s", out);
}

Test(leak_check, a_forgotten_block_fails_the_test) { expect_caught("leaks_a_block", "lose_a_block"); }

Test(leak_check, a_forgotten_list_fails_the_test) { expect_caught("leaks_a_list", "lose_a_list"); }

Test(leak_check, a_test_that_frees_what_it_allocates_passes) { expect_passed("frees_what_it_allocates"); }

Test(leak_check, a_block_kept_in_a_static_is_not_a_leak) { expect_passed("keeps_a_block_in_a_static"); }
