/* src/h2_mem.c: nghttp2's allocations from free lists by size class. A freed block serves the next
 * allocation of its class, with malloc's alignment, and calloc still zeroes it; realloc keeps the bytes;
 * the lists never hold more than PS_H2_MEM_KEEP_BYTES, large blocks are never kept, and release gives
 * every kept block back (LeakSanitizer checks that in the ASan build). */
#include <criterion/criterion.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "h2_mem.h"

static struct ps_h2_mem m;
static nghttp2_mem hooks;
static void setup(void) {
  ps_h2_mem_init(&m);
  hooks = ps_h2_mem_hooks(&m);
}
static void teardown(void) { ps_h2_mem_release(&m); }
TestSuite(h2_mem, .init = setup, .fini = teardown);

static void *mal(size_t n) { return hooks.malloc(n, hooks.mem_user_data); }
static void fre(void *p) { hooks.free(p, hooks.mem_user_data); }
static void *cal(size_t n, size_t s) { return hooks.calloc(n, s, hooks.mem_user_data); }
static void *rea(void *p, size_t n) { return hooks.realloc(p, n, hooks.mem_user_data); }

static bool aligned(const void *p) { return (uintptr_t)p % alignof(max_align_t) == 0; }

Test(h2_mem, a_freed_block_serves_the_next_allocation_of_its_class) {
  uint8_t *p = mal(100);
  cr_assert_not_null(p);
  cr_assert(aligned(p));
  memset(p, 0xab, 100);
  fre(p);
  cr_assert_eq(m.kept, 112, "100 bytes are a block of the 112-byte class");
  uint8_t *q = mal(97);
  cr_assert_eq(q, p, "the same class: the block comes back");
  cr_assert_eq(m.kept, 0);
  uint8_t *r = mal(80);
  cr_assert_neq(r, p, "another class: a block of its own");
  cr_assert(aligned(r));
  fre(q);
  uint8_t *z = cal(4, 25);
  cr_assert_eq(z, p, "calloc reuses it too");
  for (int i = 0; i < 100; i++) cr_assert_eq(z[i], 0, "byte %d not zeroed", i);
  fre(z);
  fre(r);
  cr_assert_eq(m.live, 0);
  void *zero = mal(0);
  cr_assert_not_null(zero, "malloc(0) gives a block, as nghttp2 may ask");
  fre(zero);
  fre(NULL);
  cr_assert_null(cal(SIZE_MAX / 2, 4), "an overflowing calloc fails");
  cr_assert_eq(m.live, 0);
}

Test(h2_mem, realloc_keeps_the_bytes_across_classes_and_large_blocks) {
  uint8_t *p = rea(NULL, 40);
  for (int i = 0; i < 40; i++) p[i] = (uint8_t)i;
  cr_assert_eq(rea(p, 33), p, "a smaller size keeps the block");
  cr_assert_eq(rea(p, 48), p, "so does one that still fits its class");
  uint8_t *q = rea(p, 600);
  for (int i = 0; i < 40; i++) cr_assert_eq(q[i], (uint8_t)i);
  memset(q + 40, 7, 560);
  uint8_t *big = rea(q, 5000);
  cr_assert(aligned(big));
  for (int i = 0; i < 40; i++) cr_assert_eq(big[i], (uint8_t)i);
  for (int i = 40; i < 600; i++) cr_assert_eq(big[i], 7);
  size_t kept = m.kept;
  fre(big);
  cr_assert_eq(m.kept, kept, "a large block goes back to free, not to a list");
  cr_assert_eq(m.live, 0);
}

Test(h2_mem, the_lists_hold_at_most_the_bound_and_release_empties_them) {
  enum { N = 2 * PS_H2_MEM_KEEP_BYTES / PS_H2_MEM_SMALL_MAX };
  static void *blocks[N];
  for (int i = 0; i < N; i++) cr_assert_not_null(blocks[i] = mal(PS_H2_MEM_SMALL_MAX));
  cr_assert_eq(m.live, N);
  for (int i = 0; i < N; i++) fre(blocks[i]);
  cr_assert_eq(m.live, 0);
  cr_assert_eq(m.kept, PS_H2_MEM_KEEP_BYTES, "twice the bound freed: the bound kept, the rest freed");
  ps_h2_mem_release(&m);
  cr_assert_eq(m.kept, 0);
  void *p = mal(PS_H2_MEM_SMALL_MAX + 1);
  fre(p);
  cr_assert_eq(m.kept, 0, "a block larger than PS_H2_MEM_SMALL_MAX is not kept");
}
