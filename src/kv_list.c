/* KEDA's "k1=v1,k2=v2" map syntax (kv_list.h). Errors name an entry by position and key only: a value
 * may be a credential (customHeaders: "Authorization=Bearer ..."). */
#include "kv_list.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "flags.h"
#include "http_token.h"

/* An error: the words into err (ps_flags_fail), code returned. */
#define FAIL(code, ...) (ps_flags_fail(err, errlen, __VA_ARGS__), (code))

/* Go's strings.TrimSpace trims Unicode space; ASCII space and tab are what a YAML value can carry here
 * (other controls are refused below, and non-ASCII space is kept as text). */
static bool is_space(char c) { return c == ' ' || c == '\t'; }

static void trim(const char **b, const char **e) {
  while (*b < *e && is_space(**b)) (*b)++;
  while (*e > *b && is_space((*e)[-1])) (*e)--;
}

static bool has_control(const char *b, const char *e) {
  for (; b < e; b++)
    if (ps_ctl((unsigned char)*b)) return true;
  return false;
}

static int pair_cmp(const void *a, const void *b) {
  return strcmp(((const struct ps_kv_pair *)a)->key, ((const struct ps_kv_pair *)b)->key);
}

void ps_kv_list_free(struct ps_kv_list *l) {
  if (l == NULL) return;
  for (size_t i = 0; i < l->n; i++) {
    free(l->items[i].key);
    free(l->items[i].value);
  }
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

const struct ps_kv_pair *ps_kv_list_get(const struct ps_kv_list *l, const char *key) {
  for (size_t i = 0; l != NULL && i < l->n; i++)
    if (strcmp(l->items[i].key, key) == 0) return &l->items[i];
  return NULL;
}

/* The index of the key k[0..klen) in l, or l->n. */
static size_t find(const struct ps_kv_list *l, const char *k, size_t klen) {
  size_t i = 0;
  while (i < l->n && !(strlen(l->items[i].key) == klen && memcmp(l->items[i].key, k, klen) == 0)) i++;
  return i;
}

/* One entry p[0..end): checked, then put. Messages name the entry (1-based) and, once the key is known
 * to be fine, the key; never the value. */
static int parse_entry(struct ps_kv_list *out, size_t entry, const char *p, const char *end, char *err,
                       size_t errlen) {
  const char *eq = memchr(p, '=', (size_t)(end - p));
  if (eq == NULL) return FAIL(UV_EINVAL, "entry %zu is not key=value", entry);
  const char *kb = p, *ke = eq, *vb = eq + 1, *ve = end;
  trim(&kb, &ke);
  trim(&vb, &ve);
  size_t klen = (size_t)(ke - kb), vlen = (size_t)(ve - vb);
  if (klen == 0) return FAIL(UV_EINVAL, "entry %zu has an empty key", entry);
  if (klen > PS_KV_LIST_MAX_KEY)
    return FAIL(UV_E2BIG, "entry %zu: the key is %zu bytes; the maximum is %d", entry, klen,
                PS_KV_LIST_MAX_KEY);
  if (has_control(kb, ke))
    return FAIL(UV_EINVAL, "entry %zu: the key holds a control byte (CR, LF, ...)", entry);
  if (memchr(vb, '=', vlen) != NULL) /* KEDA splits on every '=' and wants exactly two parts */
    return FAIL(UV_EINVAL, "entry %zu (key \"%.*s\") has more than one '='", entry, (int)klen, kb);
  if (vlen > PS_KV_LIST_MAX_VALUE)
    return FAIL(UV_E2BIG, "entry %zu (key \"%.*s\"): the value is %zu bytes; the maximum is %d", entry,
                (int)klen, kb, vlen, PS_KV_LIST_MAX_VALUE);
  if (has_control(vb, ve))
    return FAIL(UV_EINVAL, "entry %zu (key \"%.*s\"): the value holds a control byte (CR, LF, ...)", entry,
                (int)klen, kb);
  size_t i = find(out, kb, klen);
  if (i == out->n && out->n == PS_KV_LIST_MAX_ITEMS)
    return FAIL(UV_E2BIG, "more than %d entries", PS_KV_LIST_MAX_ITEMS);
  char *value = strndup(vb, vlen), *key = i == out->n ? strndup(kb, klen) : NULL;
  if (value == NULL || (i == out->n && key == NULL)) {
    free(value);
    free(key);
    return UV_ENOMEM;
  }
  if (i < out->n) { /* a later key replaces an earlier one */
    free(out->items[i].value);
    out->items[i].value = value;
    return 0;
  }
  out->items[out->n].key = key;
  out->items[out->n].value = value;
  out->n++;
  return 0;
}

static int parse(const char *s, struct ps_kv_list *out, char *err, size_t errlen) {
  const char *b = s, *e = s + strlen(s);
  trim(&b, &e);
  if (b == e) return 0; /* KEDA treats a blank value as the key being absent */
  out->items = calloc(PS_KV_LIST_MAX_ITEMS, sizeof *out->items);
  if (out->items == NULL) return UV_ENOMEM;
  size_t entry = 1;
  for (const char *p = b;; entry++) {
    const char *end = memchr(p, ',', (size_t)(e - p));
    int r = parse_entry(out, entry, p, end != NULL ? end : e, err, errlen);
    if (r != 0) return r;
    if (end == NULL) break;
    p = end + 1;
  }
  qsort(out->items, out->n, sizeof *out->items, pair_cmp);
  return 0;
}

int ps_kv_list_parse(const char *s, struct ps_kv_list *out, char *err, size_t errlen) {
  out->items = NULL;
  out->n = 0;
  if (err != NULL && errlen > 0) err[0] = '\0';
  if (s == NULL) return 0;
  int r = parse(s, out, err, errlen);
  if (r != 0) {
    ps_kv_list_free(out);
    if (r == UV_ENOMEM) ps_flags_fail(err, errlen, "out of memory");
  }
  return r;
}
