/* Why a leak went unnoticed, and how it fails the test now.
 *
 * Criterion 2.4 runs each test in a worker process (BoxFort: fork and re-exec of the test binary) whose
 * main returns after the test, so LeakSanitizer's at-exit check and memcheck's exit-time leak check do
 * run there and do find the leak. But the runner has already decided the test's verdict when the worker
 * sends the end of its teardown phase (client.c, handle_phase: POST_TEST computes the status), and an
 * exit status that arrives after that phase is recorded and ignored (handle_death). `--tap` to stderr
 * also makes criterion "quiet": it points every process's stdout and stderr at /dev/null, so neither
 * report reaches the log.
 * (CRITERION_NO_EARLY_EXIT / --no-early-exit change nothing in 2.4: the option is deprecated and read
 * nowhere.) A check in .fini runs in the teardown phase, where criterion ignores a failed assertion too.
 *
 * So the check runs in the test's main phase, right after its body: every suite is linked with
 * -Wl,--wrap=criterion_internal_test_main (tests/meson.build), the function criterion's Test() trampoline
 * calls with the body; the wrapper hands criterion a body that runs the test's body and then
 * ps_test_leak_check, whose failure is an ordinary failed assertion of that test. */
#include "leak_check.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <valgrind/memcheck.h>

#if defined(__SANITIZE_ADDRESS__)
#define PS_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PS_HAVE_LSAN 1
#endif
#endif
#ifdef PS_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Stack scrubbed before a check: the finished body's frames lie where the checker's frames go, and a
 * slot the checker leaves unwritten may still hold a pointer to the block the body leaked, which hides
 * the leak from the scan (memcheck and LeakSanitizer treat every word on the stack as a pointer). */
#define PS_TEST_LEAK_SCRUB_BYTES 32768

/* Not instrumented: ASan would put a redzone between this frame's top and the array, and leave there,
 * unwritten, the very slots where the body's last frame was. */
static __attribute__((noinline, no_sanitize_address)) void scrub_stack(void) {
  volatile char junk[PS_TEST_LEAK_SCRUB_BYTES];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = 0;
}

#ifdef PS_HAVE_LSAN
/* LeakSanitizer writes its report to fd 2: fd 2 goes to a temporary file while it runs, and the report
 * is read back for the failure message, so that it reaches the TAP log next to the failing case. */
struct capture {
  FILE *file;
  int saved;
};

static void capture_start(struct capture *c) {
  fflush(stderr);
  c->file = tmpfile();
  c->saved = c->file != NULL ? dup(2) : -1;
  if (c->saved >= 0) dup2(fileno(c->file), 2);
}

/* Restores fd 2 and returns up to len-1 bytes of what was written meanwhile (the start of the report). */
static const char *capture_end(struct capture *c, char *out, size_t len) {
  out[0] = '\0';
  if (c->saved < 0) {
    if (c->file != NULL) fclose(c->file);
    return "(report not captured)";
  }
  dup2(c->saved, 2);
  close(c->saved);
  rewind(c->file);
  size_t n = fread(out, 1, len - 1, c->file);
  out[n] = '\0';
  fclose(c->file);
  return out;
}

static char report[PS_TEST_LEAK_REPORT_MAX];
#endif

static __attribute__((noinline)) void check_now(void) {
#ifdef PS_HAVE_LSAN
  {
    struct capture c;
    capture_start(&c);
    int leaked = __lsan_do_recoverable_leak_check();
    const char *r = capture_end(&c, report, sizeof report);
    if (leaked) cr_assert_fail("the test leaked heap memory (LeakSanitizer):\n%s", r);
  }
#endif
/* Criterion is quiet only when its TAP goes to stderr: without --tap the report reaches the terminal. */
#define PS_TEST_LEAK_RERUN                                                                                   \
  "for the report, run the test alone without --tap: valgrind --leak-check=full "                            \
  "build/tests/test_SUITE --filter='SUITE/TEST' -j1"

  if (RUNNING_ON_VALGRIND) {
    unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0; /* memcheck's four kinds */
    /* Memory errors (an invalid read, a jump on an uninitialised value) in the body fail it too. */
    unsigned errors = VALGRIND_COUNT_ERRORS;
    if (errors > 0)
      cr_expect_fail("memcheck found %u error%s in the test; " PS_TEST_LEAK_RERUN, errors,
                     errors == 1 ? "" : "s");
    /* memcheck writes to its own copy of fd 2 (/dev/null under --tap), which cannot be captured here: the
     * failure says how to see the report. */
    VALGRIND_DO_LEAK_CHECK;
    VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
    (void)dubious, (void)reachable, (void)suppressed; /* only a definite loss is a leak */
    if (leaked > 0)
      cr_assert_fail("the test leaked %lu bytes (memcheck, definitely lost); " PS_TEST_LEAK_RERUN, leaked);
  }
}

void ps_test_leak_check(void) {
  scrub_stack(); /* then the checker's frames start on a clean stack */
  check_now();
}

/* ---- running the check after every test body ----------------------------------------------------- */

void __real_criterion_internal_test_main(void (*fn)(void));
void __wrap_criterion_internal_test_main(void (*fn)(void));

static void (*test_body)(void);

static void body_then_leak_check(void) {
  test_body();
  ps_test_leak_check();
}

void __wrap_criterion_internal_test_main(void (*fn)(void)) {
  /* A parameterized test's body takes its parameter: it is passed through unchecked (none in this tree).
   * The worker's copy of the test data is not aligned (criterion deserializes it): memcpy, not ->. */
  struct criterion_test_extra_data *datap, data;
  memcpy(&datap, (const char *)criterion_current_test + offsetof(struct criterion_test, data), sizeof datap);
  memcpy(&data, datap, sizeof data);
  if (data.param_ != NULL) {
    __real_criterion_internal_test_main(fn);
    return;
  }
  test_body = fn;
  __real_criterion_internal_test_main(body_then_leak_check);
}
