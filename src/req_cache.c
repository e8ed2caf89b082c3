/* See req_cache.h. One allocation per entry (the request's bytes, then the metric name), made on a miss
 * only; the slots themselves are allocated at the first put, so an idle process pays nothing. */
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
};

struct ps_req_cache {
  struct slot *slots; /* PS_REQ_CACHE_SLOTS, NULL until the first put */
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
    for (size_t i = 0; i < PS_REQ_CACHE_SLOTS; i++) free(c->slots[i].bytes);
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
}
