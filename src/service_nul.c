/* The check of NUL bytes in the strings of a request message (service.h, ps_service_nul_check), apart
 * from service.c: it walks the wire encoding itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "flags.h"
#include "service.h"

/* ---- NUL bytes in strings ------------------------------------------------------------------------ */

/* A proto3 string may hold U+0000, but protobuf-c hands every string over NUL-terminated, so whatever
 * follows a NUL would be cut silently: "threshold=10\0junk" would read as 10, "query=bars_load\0x" as
 * bars_load. The unpacked message cannot tell, so the wire bytes are walked (the encoding:
 * https://protobuf.dev/programming-guides/encoding/) once protobuf-c has accepted them, and a string
 * field holding a NUL fails the call with INVALID_ARGUMENT naming it. */

/* Field numbers of proto/externalscaler.proto (a map entry is a message with key 1 and value 2). */
enum { REF_NAME = 1, REF_NAMESPACE = 2, REF_METADATA = 3, ENTRY_KEY = 1, ENTRY_VALUE = 2 };
enum { GMR_REF = 1, GMR_METRIC_NAME = 2 };

struct wire_field {
  uint32_t num;
  const uint8_t *data; /* a length-delimited field's bytes, else NULL */
  size_t len;
};

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

/* Reads the field at *p into f and steps over it; false at the end, or on bytes it cannot walk (groups,
 * which protobuf-c refuses anyway, or a truncated field). */
static bool wire_next(const uint8_t **p, const uint8_t *end, struct wire_field *f) {
  uint64_t tag, n;
  if (*p >= end || !wire_varint(p, end, &tag)) return false;
  f->num = (uint32_t)(tag >> 3);
  f->data = NULL;
  f->len = 0;
  switch (tag & 7) {
  case 0: return wire_varint(p, end, &n);
  case 1: n = 8; break;
  case 5: n = 4; break;
  case 2:
    if (!wire_varint(p, end, &n) || n > (uint64_t)(end - *p)) return false;
    f->data = *p;
    f->len = (size_t)n;
    break;
  default: return false;
  }
  if (n > (uint64_t)(end - *p)) return false;
  *p += n;
  return true;
}

/* The offset of the first NUL in a length-delimited field, or -1. */
static ptrdiff_t nul_at(const struct wire_field *f) {
  const uint8_t *z = f->data != NULL ? memchr(f->data, 0, f->len) : NULL;
  return z != NULL ? z - f->data : -1;
}

/* s[0..n) as the quoted text protobuf-c made of it (up to its first NUL). */
static void quote_bytes(char *dst, size_t cap, const uint8_t *s, size_t n) {
  char copy[PS_FLAGS_QUOTE_MAX + 2];
  if (n > sizeof copy - 1) n = sizeof copy - 1;
  memcpy(copy, s, n);
  copy[n] = '\0';
  ps_flags_quote(dst, cap, copy);
}

/* 0 when no string of the ScaledObjectRef encoded in p[0..len) holds a NUL; else UV_EINVAL with text
 * naming the field, or the metadata key. */
static int ref_nul_check(const uint8_t *p, size_t len, char *text, size_t tlen) {
  const uint8_t *end = p + len;
  struct wire_field f, e;
  char q[PS_FLAGS_QUOTED_MAX];
  ptrdiff_t at;
  while (p < end) {
    if (!wire_next(&p, end, &f)) goto malformed;
    if ((f.num == REF_NAME || f.num == REF_NAMESPACE) && (at = nul_at(&f)) >= 0) {
      quote_bytes(q, sizeof q, f.data, f.len);
      snprintf(text, tlen, "scaledObjectRef.%s %s holds a NUL byte at offset %td",
               f.num == REF_NAME ? "name" : "namespace", q, at);
      return UV_EINVAL;
    }
    if (f.num != REF_METADATA || f.data == NULL) continue;
    const uint8_t *ep = f.data, *eend = f.data + f.len;
    struct wire_field key = {0}, value = {0};
    while (ep < eend) {
      if (!wire_next(&ep, eend, &e)) goto malformed;
      if (e.num == ENTRY_KEY) key = e; /* the last occurrence wins, as protobuf-c does */
      if (e.num == ENTRY_VALUE) value = e;
    }
    bool in_key = (at = nul_at(&key)) >= 0;
    if (!in_key && (at = nul_at(&value)) < 0) continue; /* the common case: nothing to quote */
    quote_bytes(q, sizeof q, key.data != NULL ? key.data : (const uint8_t *)"", key.len);
    if (in_key) {
      snprintf(text, tlen,
               "metadata key %s holds a NUL byte at offset %td; keys and values are text without NUL", q, at);
      return UV_EINVAL;
    }
    snprintf(text, tlen,
             "metadata %s: the value holds a NUL byte at offset %td; keys and values are text without NUL", q,
             at);
    return UV_EINVAL;
  }
  return 0;
malformed:
  snprintf(text, tlen, "cannot decode the request message");
  return UV_EINVAL;
}

/* The same check over a whole request message of method m. */
int ps_service_nul_check(bool get_metrics, const uint8_t *msg, size_t len, char *text, size_t tlen) {
  if (!get_metrics) return ref_nul_check(msg, len, text, tlen);
  const uint8_t *p = msg, *end = msg + len;
  struct wire_field f;
  while (p < end) {
    if (!wire_next(&p, end, &f)) {
      snprintf(text, tlen, "cannot decode the request message");
      return UV_EINVAL;
    }
    if (f.num == GMR_REF && f.data != NULL) {
      int r = ref_nul_check(f.data, f.len, text, tlen);
      if (r != 0) return r;
    }
    ptrdiff_t at;
    if (f.num == GMR_METRIC_NAME && (at = nul_at(&f)) >= 0) {
      char q[PS_FLAGS_QUOTED_MAX];
      quote_bytes(q, sizeof q, f.data, f.len);
      snprintf(text, tlen, "metricName %s holds a NUL byte at offset %td", q, at);
      return UV_EINVAL;
    }
  }
  return 0;
}
