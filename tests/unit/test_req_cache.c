/* src/req_cache.c: a request is found again only with the same method, the very same bytes and the same
 * registry epoch; the name asked for comes back as it was put; a long request is never kept; a collision
 * replaces; an answer kept with an entry stays with that entry only. The targets are opaque to the cache, so
 * plain addresses stand for them here. */
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

/* The answer kept with an entry comes back from the next get, as it was kept (a copy) with its
 * generation, and a later keep replaces it; a put of another request in the same slot drops it, and a
 * keep through a hit of the entry that was replaced does nothing: an answer is never given to another
 * request. */
Test(req_cache, an_answer_is_kept_with_its_entry_until_the_entry_changes_hands) {
  uint8_t req[16], other[16];
  size_t len = numbered(req, 1);
  ps_req_cache_put(c, 3, req, len, 1, TA, NULL);
  struct ps_req_hit hit, again;
  cr_assert(ps_req_cache_get(c, 3, req, len, 1, &hit));
  cr_assert_not(hit.has_answer, "nothing kept yet");
  uint8_t answer[] = "\x0a\x12\x0a\x08prescale\x10\x08\x19\x00\x00\x00\x00\x00\x00\x1e\x40";
  ps_req_cache_keep(c, &hit, 5, answer, sizeof answer);
  memset(answer, 0, sizeof answer);
  cr_assert(ps_req_cache_get(c, 3, req, len, 1, &again));
  cr_assert(again.has_answer);
  cr_assert_eq(again.answer_gen, 5);
  cr_assert_eq(again.answer_len, sizeof answer);
  cr_assert_eq(memcmp(again.answer, "\x0a\x12\x0a\x08prescale", 12), 0, "a copy of what was kept");
  /* A newer answer, longer than the memory the first took, replaces it. */
  uint8_t longer[100];
  memset(longer, 'L', sizeof longer);
  ps_req_cache_keep(c, &again, 6, longer, sizeof longer);
  cr_assert(ps_req_cache_get(c, 3, req, len, 1, &again));
  cr_assert_eq(again.answer_gen, 6);
  cr_assert_eq(again.answer_len, sizeof longer);
  cr_assert_eq(memcmp(again.answer, longer, sizeof longer), 0);
  /* Another request that lands in the same slot takes the entry: the old answer is not its. */
  size_t olen = 0;
  struct ps_req_hit ohit;
  for (unsigned i = 2; olen == 0 && i < 64 * PS_REQ_CACHE_SLOTS; i++) {
    size_t n = numbered(other, i);
    ps_req_cache_put(c, 3, other, n, 1, TB, NULL);
    if (ps_req_cache_get(c, 3, other, n, 1, &ohit) && ohit.slot == hit.slot) olen = n;
  }
  cr_assert_gt(olen, 0, "no request found for the same slot");
  cr_assert_not(ohit.has_answer, "another request's answer is not given");
  ps_req_cache_keep(c, &hit, 7, answer, sizeof answer);
  cr_assert(ps_req_cache_get(c, 3, other, olen, 1, &ohit));
  cr_assert_not(ohit.has_answer, "a keep through a hit of the replaced entry does nothing");
  /* The first request comes back: a new entry, without an answer until one is kept. */
  ps_req_cache_put(c, 3, req, len, 1, TA, NULL);
  cr_assert(ps_req_cache_get(c, 3, req, len, 1, &hit));
  cr_assert_not(hit.has_answer);
}

/* An empty answer (IsActive's false is a message without fields) is an answer; one longer than
 * PS_REQ_CACHE_MAX_ANSWER is not kept. */
Test(req_cache, empty_answers_are_kept_and_long_ones_are_not) {
  const uint8_t req[] = "\x0a\x04shop\x12\x03web";
  struct ps_req_hit hit;
  ps_req_cache_put(c, 0, req, sizeof req, 1, TA, NULL);
  cr_assert(ps_req_cache_get(c, 0, req, sizeof req, 1, &hit));
  ps_req_cache_keep(c, &hit, 1, (const uint8_t *)"", 0);
  cr_assert(ps_req_cache_get(c, 0, req, sizeof req, 1, &hit));
  cr_assert(hit.has_answer);
  cr_assert_eq(hit.answer_len, 0);
  static uint8_t big[PS_REQ_CACHE_MAX_ANSWER + 1];
  memset(big, 'b', sizeof big);
  ps_req_cache_keep(c, &hit, 2, big, sizeof big);
  cr_assert(ps_req_cache_get(c, 0, req, sizeof req, 1, &hit));
  cr_assert_eq(hit.answer_gen, 1, "too long: the answer before stays");
  ps_req_cache_keep(c, &hit, 3, big, PS_REQ_CACHE_MAX_ANSWER);
  cr_assert(ps_req_cache_get(c, 0, req, sizeof req, 1, &hit));
  cr_assert_eq(hit.answer_gen, 3, "the longest kept");
  cr_assert_eq(hit.answer_len, PS_REQ_CACHE_MAX_ANSWER);
}
