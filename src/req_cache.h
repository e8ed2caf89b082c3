/* The service's memory of requests it has answered: the exact bytes of a request message, with its
 * method, lead to the target and the metric name the full path (unpack, NUL check, metadata, key, look-up)
 * found for them. KEDA sends the same bytes for a trigger at every poll, so the steady path costs one hash
 * and one compare instead. Only requests that passed every check are remembered, and an entry is used
 * only while no target has left the registry since it was made (ps_targets_epoch), so a hit answers
 * exactly as the full path would. */
#ifndef PS_REQ_CACHE_H
#define PS_REQ_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entries, direct-mapped by hash (a power of two): a collision replaces. 4,096 hold the three requests of
 * 1,365 triggers; with more, the rest take the full path as they would without a cache. */
#define PS_REQ_CACHE_SLOTS   4096
/* Bytes of a request (and of the metric name asked for) kept at most: about 5 MiB in all, at worst. */
#define PS_REQ_CACHE_MAX_MSG 1024

struct ps_target;
struct ps_req_cache;

struct ps_req_hit {
  struct ps_target *target;
  const char *metric_name; /* the name asked for, or NULL for the target's own; valid until the next put */
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

#endif
