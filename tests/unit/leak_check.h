/* A heap leak fails the test that leaked: under the ASan build (LeakSanitizer) and under memcheck (the
 * `valgrind` test setup). Every unit suite links this check in front of each test body; a test needs no
 * change. See leak_check.c for why criterion's own process exit cannot do it. */
#ifndef PS_LEAK_CHECK_H
#define PS_LEAK_CHECK_H

/* Room for the part of the leak report quoted in the failure message (the allocation stacks). */
#define PS_TEST_LEAK_REPORT_MAX 4096

/* Checks the heap for blocks nothing points to any more (LeakSanitizer's direct and indirect leaks,
 * memcheck's "definitely lost" and its memory errors so far) and fails the running test with the report
 * when there are some. Without ASan and outside valgrind it does nothing. Runs after every test body; a
 * test that must check earlier (before a deliberate exit) may call it. */
void ps_test_leak_check(void);

#endif
