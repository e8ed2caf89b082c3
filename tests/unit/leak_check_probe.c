/* Criterion tests that test_leak_check.c runs one at a time as a separate program, checking each verdict:
 * a test that leaks heap memory must FAIL through the check every suite runs after each test body
 * (leak_check.c), under the ASan build and under memcheck. Built by meson, never registered as a test. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* Where the probe's blocks are handed so that the compiler cannot drop a malloc nothing reads. */
static void *volatile sink;

struct node {
  struct node *next;
  char payload[40];
};

/* Allocates a block and forgets the only pointer to it: a direct leak ("definitely lost"). */
static __attribute__((noinline)) void lose_a_block(void) {
  char *p = malloc(77);
  cr_assert_not_null(p);
  memset(p, 'x', 77);
  sink = p;
  sink = NULL;
}

Test(probe, leaks_a_block) { lose_a_block(); }

/* Forgets the head of a two-node list: the head is lost directly, the node behind it indirectly. */
static __attribute__((noinline)) void lose_a_list(void) {
  struct node *head = calloc(1, sizeof *head);
  cr_assert_not_null(head);
  head->next = calloc(1, sizeof *head->next);
  cr_assert_not_null(head->next);
  sink = head;
  sink = NULL;
}

Test(probe, leaks_a_list) { lose_a_list(); }

/* Frees what it allocates: passes. */
Test(probe, frees_what_it_allocates) {
  char *p = malloc(77);
  cr_assert_not_null(p);
  sink = p;
  free(p);
  sink = NULL;
}

/* A block still pointed to from a static is not a leak (the process may free it at exit): passes. */
static void *volatile kept; /* volatile: a store nothing reads is not optimised away */

Test(probe, keeps_a_block_in_a_static) {
  kept = malloc(77);
  cr_assert_not_null(kept);
}
