/* src/req_cache.c: a request is found again only with the same method, the very same bytes and the same
 * registry epoch; the name asked for comes back as it was put; a long request is never kept; a collision
 * replaces. The targets are opaque to the cache, so plain addresses stand for them here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "req_cache.h"

static struct ps_req_cache *c;
static void setup(void) { cr_assert_not_null(c = ps_req_cache_new()); }
static void teardown(void) { ps_req_cache_free(c); }
TestSuite(req_cache, .init = setup, .fini = teardown);

static int a_target, b_target;
#define TA ((struct ps_target *)&a_target)
#define TB ((struct ps_target *)&b_target)

Test(req_cache, found_only_for_the_same_method_bytes_and_epoch) {
  const uint8_t req[] = "\x0a\x05shop1\x12\x03web";
  struct ps_req_hit hit;
  cr_assert_not(ps_req_cache_get(c, 3, req, sizeof req, 7, &hit), "empty");
  ps_req_cache_put(c, 3, req, sizeof req, 7, TA, NULL);
  cr_assert(ps_req_cache_get(c, 3, req, sizeof req, 7, &hit));
  cr_assert_eq(hit.target, TA);
  cr_assert_null(hit.metric_name);
  cr_assert_not(ps_req_cache_get(c, 0, req, sizeof req, 7, &hit), "another method");
  cr_assert_not(ps_req_cache_get(c, 3, req, sizeof req, 8, &hit), "a target left since");
  cr_assert_not(ps_req_cache_get(c, 3, req, sizeof req - 1, 7, &hit), "a prefix");
  uint8_t other[sizeof req];
  memcpy(other, req, sizeof req);
  other[4] ^= 1;
  cr_assert_not(ps_req_cache_get(c, 3, other, sizeof other, 7, &hit), "one byte differs");
}

Test(req_cache, the_name_asked_for_is_a_copy) {
  const uint8_t req[] = "\x12\x0bs0-prescale";
  char name[] = "s0-prescale";
  ps_req_cache_put(c, 3, req, sizeof req, 1, TB, name);
  memset(name, 'x', sizeof name - 1);
  struct ps_req_hit hit;
  cr_assert(ps_req_cache_get(c, 3, req, sizeof req, 1, &hit));
  cr_assert_eq(hit.target, TB);
  cr_assert_str_eq(hit.metric_name, "s0-prescale");
}

Test(req_cache, long_requests_are_not_kept) {
  static uint8_t big[PS_REQ_CACHE_MAX_MSG + 1];
  memset(big, 'a', sizeof big);
  struct ps_req_hit hit;
  ps_req_cache_put(c, 3, big, sizeof big, 1, TA, NULL);
  cr_assert_not(ps_req_cache_get(c, 3, big, sizeof big, 1, &hit));
  ps_req_cache_put(c, 3, big, PS_REQ_CACHE_MAX_MSG, 1, TA, NULL);
  cr_assert(ps_req_cache_get(c, 3, big, PS_REQ_CACHE_MAX_MSG, 1, &hit), "the longest kept");
}

/* Request i: its number, then i % 7 more bytes, so that a slot changes hands between lengths (its memory
 * grows or is reused). */
static size_t numbered(uint8_t *out, unsigned i) {
  memcpy(out, &i, sizeof i);
  memset(out + sizeof i, 'z', i % 7);
  return sizeof i + i % 7;
}

Test(req_cache, many_requests_stay_bounded_and_correct) {
  /* Four times as many distinct requests as slots: every hit returns its own target and name (collisions
   * replaced, never confused), and what is found is at most one per slot. */
  static int targets[4 * PS_REQ_CACHE_SLOTS];
  uint8_t req[16];
  char name[16];
  for (unsigned i = 0; i < 4 * PS_REQ_CACHE_SLOTS; i++) {
    snprintf(name, sizeof name, "n%u", i);
    ps_req_cache_put(c, 3, req, numbered(req, i), 1, (struct ps_target *)&targets[i], i % 2 ? name : NULL);
  }
  size_t found = 0;
  for (unsigned i = 0; i < 4 * PS_REQ_CACHE_SLOTS; i++) {
    struct ps_req_hit hit;
    if (!ps_req_cache_get(c, 3, req, numbered(req, i), 1, &hit)) continue;
    cr_assert_eq(hit.target, (struct ps_target *)&targets[i]);
    snprintf(name, sizeof name, "n%u", i);
    if (i % 2)
      cr_assert_str_eq(hit.metric_name, name);
    else
      cr_assert_null(hit.metric_name);
    found++;
  }
  cr_assert_gt(found, 0);
  cr_assert_leq(found, PS_REQ_CACHE_SLOTS);
}
