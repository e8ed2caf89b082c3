/* The service's memory of requests it has answered: the exact bytes of a request message, with its
 * method, lead to the target and the metric name the full path (unpack, NUL check, metadata, key, look-up)
 * found for them. KEDA sends the same bytes for a trigger at every poll, so the steady path costs one hash
 * and one compare instead. Only requests that passed every check are remembered, and an entry is used
 * only while no target has left the registry since it was made (ps_targets_epoch), so a hit answers
 * exactly as the full path would.
 * An entry also keeps the encoded answer last given to its request (ps_req_cache_keep) with the target
 * generation it was built at (ps_target_generation): an entry stands for one (method, target, metric name
 * asked for), so its answer is the target's answer to that method under that name, and the service sends
 * it as it is while the target's generation is the same, instead of packing it again. */
#ifndef PS_REQ_CACHE_H
#define PS_REQ_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entries, direct-mapped by hash (a power of two): a collision replaces. 4,096 hold the three requests of
 * 1,365 triggers; with more, the rest take the full path as they would without a cache. */
#define PS_REQ_CACHE_SLOTS      4096
/* Bytes of a request (and of the metric name asked for) kept at most: about 5 MiB in all, at worst. */
#define PS_REQ_CACHE_MAX_MSG    1024
/* Bytes of an encoded answer kept with an entry at most (a GetMetrics answer is its metric name plus 24
 * bytes; KEDA's names are tens of bytes): 2 MiB more at worst; a longer answer is packed at each call. */
#define PS_REQ_CACHE_MAX_ANSWER 512

struct ps_target;
struct ps_req_cache;

struct ps_req_hit {
  struct ps_target *target;
  const char *metric_name; /* the name asked for, or NULL for the target's own; valid until the next put */
  /* The answer kept with the entry, when has_answer: answer_len bytes built at target generation
   * answer_gen; valid until the next put or keep. */
  bool has_answer;
  const uint8_t *answer;
  size_t answer_len;
  uint64_t answer_gen;
  size_t slot;    /* where the entry is, and */
  uint64_t stamp; /* which put made it (for ps_req_cache_keep) */
};

/* NULL when out of memory (the service then has no cache: every request takes the full path). */
struct ps_req_cache *ps_req_cache_new(void);
void ps_req_cache_free(struct ps_req_cache *c);
/* true with *hit set when (method, msg[0..len)) was put under the same epoch. */
bool ps_req_cache_get(struct ps_req_cache *c, int method, const uint8_t *msg, size_t len,
                      unsigned long long epoch, struct ps_req_hit *hit);
/* Remembers a request that the full path answered from target t (metric_name: NULL for t's own name,
 * else copied). Silently does nothing when the request is too long or memory is short. */
void ps_req_cache_put(struct ps_req_cache *c, int method, const uint8_t *msg, size_t len,
                      unsigned long long epoch, struct ps_target *t, const char *metric_name);
/* Keeps answer[0..n) (copied), the encoded answer to the request that get found as *hit, built at target
 * generation gen, in place of the one kept before. Does nothing when the entry changed hands since that
 * get (a put in between), when n > PS_REQ_CACHE_MAX_ANSWER or memory is short. */
void ps_req_cache_keep(struct ps_req_cache *c, const struct ps_req_hit *hit, uint64_t gen,
                       const uint8_t *answer, size_t n);

#endif
