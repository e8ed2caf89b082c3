/* "k1=v1,k2=v2" lists, as KEDA writes the map-valued keys of its prometheus scaler (customHeaders,
 * queryParameters): the syntax of KEDA's typed config (pkg/scalers/scalersconfig/typed_config.go,
 * setConfigValueMap). Pure: no I/O; fuzzed by tests/fuzz/fuzz_kv_list.c. */
#ifndef PS_KV_LIST_H
#define PS_KV_LIST_H

#include <stddef.h>

#define PS_KV_LIST_MAX_ITEMS 32   /* entries of one list; more -> UV_E2BIG */
#define PS_KV_LIST_MAX_KEY   256  /* bytes of a key (trimmed); more -> UV_E2BIG */
#define PS_KV_LIST_MAX_VALUE 4096 /* bytes of a value (trimmed); more -> UV_E2BIG */

struct ps_kv_pair {
  char *key;   /* owned, NUL-terminated, never empty */
  char *value; /* owned, NUL-terminated, may be empty */
};

/* Sorted by key (strcmp), keys unique, so that two spellings of one list compare equal. */
struct ps_kv_list {
  struct ps_kv_pair *items; /* owned */
  size_t n;
};

/* Parses s: entries separated by ',', each `key=value` with exactly one '=', key and value trimmed of
 * spaces and tabs (as KEDA's strings.TrimSpace); a later key replaces an earlier one (KEDA fills a Go
 * map). An empty or blank s is the empty list; an empty entry (",," or a trailing ',') is an error, as
 * in KEDA. Keys and values must not hold control bytes (CR, LF, NUL cannot reach here, TAB only as
 * trimmed space): they end up in a request line or a header.
 * Returns 0 (*out filled, to free with ps_kv_list_free), UV_EINVAL (syntax) or UV_E2BIG (a bound) with
 * one line in err that names the entry by its position and, once it parsed, by its key, never quoting a
 * value (customHeaders may carry a token), or UV_ENOMEM. *out is empty on error. */
int ps_kv_list_parse(const char *s, struct ps_kv_list *out, char *err, size_t errlen);
/* The pair of key, or NULL. */
const struct ps_kv_pair *ps_kv_list_get(const struct ps_kv_list *l, const char *key);
void ps_kv_list_free(struct ps_kv_list *l);

#endif
