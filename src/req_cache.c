/* See req_cache.h. One allocation per entry (the request's bytes, then the metric name), made on a miss
 * only, and one for its kept answer, made at its first keep; the slots themselves are allocated at the
 * first put, so an idle process pays nothing. A slot that changes hands keeps both allocations. */
#include "req_cache.h"

#include <stdlib.h>
#include <string.h>

struct slot {
  uint64_t hash;
  unsigned long long epoch;
  struct ps_target *target;
  uint8_t *bytes; /* len bytes of the request, then the metric name's NUL-terminated copy if any; owned */
  uint32_t len;
  uint32_t cap; /* bytes allocated, kept when the slot changes hands */
  int method;
  bool has_name;
  bool has_answer;
  uint8_t *answer; /* answer_cap bytes (owned), answer_len of them the kept answer while has_answer */
  uint32_t answer_len, answer_cap;
  uint64_t answer_gen;
  uint64_t stamp; /* the put that made the entry */
};

struct ps_req_cache {
  struct slot *slots; /* PS_REQ_CACHE_SLOTS, NULL until the first put */
  uint64_t puts;      /* stamps entries, so that a keep finds the entry its get found or none */
};

/* Eight bytes a step, each folded in with a multiply and a shift (the finaliser of MurmurHash3's 64-bit
 * variant): every request is hashed, so a byte-at-a-time hash showed in the profile. A collision only
 * costs a miss: the bytes are compared before an entry is used. */
static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static uint64_t req_hash(int method, const uint8_t *msg, size_t len) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)(unsigned)method ^ ((uint64_t)len << 16);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, msg + i, 8);
    h = mix(h ^ w) * 0xc4ceb9fe1a85ec53ull;
  }
  uint64_t w = 0;
  if (len > i) memcpy(&w, msg + i, len - i);
  return mix(h ^ w);
}

struct ps_req_cache *ps_req_cache_new(void) {
  return calloc(1, sizeof(struct ps_req_cache));
}

void ps_req_cache_free(struct ps_req_cache *c) {
  if (c == NULL) return;
  if (c->slots != NULL)
    for (size_t i = 0; i < PS_REQ_CACHE_SLOTS; i++) {
      free(c->slots[i].bytes);
      free(c->slots[i].answer);
    }
  free(c->slots);
  free(c);
}

bool ps_req_cache_get(struct ps_req_cache *c, int method, const uint8_t *msg, size_t len,
                      unsigned long long epoch, struct ps_req_hit *hit) {
  if (c == NULL || c->slots == NULL || len > PS_REQ_CACHE_MAX_MSG) return false;
  uint64_t h = req_hash(method, msg, len);
  const struct slot *s = &c->slots[h & (PS_REQ_CACHE_SLOTS - 1)];
  if (s->bytes == NULL || s->hash != h || s->epoch != epoch || s->method != method || s->len != len ||
      memcmp(s->bytes, msg, len) != 0)
    return false;
  hit->target = s->target;
  hit->metric_name = s->has_name ? (const char *)s->bytes + len : NULL;
  hit->has_answer = s->has_answer;
  hit->answer = s->answer;
  hit->answer_len = s->answer_len;
  hit->answer_gen = s->answer_gen;
  hit->slot = (size_t)(s - c->slots);
  hit->stamp = s->stamp;
  return true;
}

void ps_req_cache_put(struct ps_req_cache *c, int method, const uint8_t *msg, size_t len,
                      unsigned long long epoch, struct ps_target *t, const char *metric_name) {
  if (c == NULL || len > PS_REQ_CACHE_MAX_MSG) return;
  if (c->slots == NULL && (c->slots = calloc(PS_REQ_CACHE_SLOTS, sizeof *c->slots)) == NULL) return;
  size_t nlen = metric_name != NULL ? strlen(metric_name) + 1 : 0;
  if (nlen > PS_REQ_CACHE_MAX_MSG) return;
  uint64_t h = req_hash(method, msg, len);
  struct slot *s = &c->slots[h & (PS_REQ_CACHE_SLOTS - 1)];
  /* More requests than slots (many targets) make slots change hands on every miss: the memory is reused,
   * so that costs a copy, not a malloc and a free. */
  size_t need = len + nlen + 1;
  if (need > s->cap) {
    uint8_t *bytes = malloc(need);
    if (bytes == NULL) return;
    free(s->bytes);
    s->bytes = bytes;
    s->cap = (uint32_t)need;
  }
  memcpy(s->bytes, msg, len);
  if (nlen > 0) memcpy(s->bytes + len, metric_name, nlen);
  s->hash = h;
  s->epoch = epoch;
  s->target = t;
  s->len = (uint32_t)len;
  s->method = method;
  s->has_name = nlen > 0;
  s->has_answer = false; /* another request's answer, if any: its memory is reused by the next keep */
  s->stamp = ++c->puts;
}

void ps_req_cache_keep(struct ps_req_cache *c, const struct ps_req_hit *hit, uint64_t gen,
                       const uint8_t *answer, size_t n) {
  if (c == NULL || c->slots == NULL || n > PS_REQ_CACHE_MAX_ANSWER) return;
  struct slot *s = &c->slots[hit->slot & (PS_REQ_CACHE_SLOTS - 1)];
  /* Only puts move entries, and each put stamps its entry anew: the stamp names the entry exactly. */
  if (s->bytes == NULL || s->stamp != hit->stamp) return;
  if (n > s->answer_cap || s->answer == NULL) {
    /* Rounded up, so that an answer that grows by a digit or two reuses its memory. */
    size_t cap = (n + 64) & ~(size_t)63;
    uint8_t *a = malloc(cap);
    if (a == NULL) return;
    free(s->answer);
    s->answer = a;
    s->answer_cap = (uint32_t)cap;
  }
  if (n > 0) memcpy(s->answer, answer, n);
  s->answer_len = (uint32_t)n;
  s->answer_gen = gen;
  s->has_answer = true;
}
