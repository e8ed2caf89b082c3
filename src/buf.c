#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

void ps_buf_init(struct ps_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

int ps_buf_reserve(struct ps_buf *b, size_t n) {
  if (n > SIZE_MAX / 2 - b->len - 1) return UV_ENOMEM;
  size_t need = b->len + n + 1; /* room for the terminating NUL */
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) return UV_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int ps_buf_append(struct ps_buf *b, const void *p, size_t n) {
  int r = ps_buf_reserve(b, n);
  if (r != 0) return r;
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int ps_buf_puts(struct ps_buf *b, const char *s) { return ps_buf_append(b, s, strlen(s)); }

int ps_buf_vprintf(struct ps_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0) return UV_EINVAL;
  if ((size_t)n < sizeof small) return ps_buf_append(b, small, (size_t)n);
  int r = ps_buf_reserve(b, (size_t)n);
  if (r != 0) return r;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int ps_buf_printf(struct ps_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = ps_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return r;
}

void ps_buf_consume(struct ps_buf *b, size_t n) {
  if (n >= b->len) {
    ps_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

void ps_buf_reset(struct ps_buf *b) {
  b->len = 0;
  if (b->data != NULL) b->data[0] = '\0';
}

char *ps_buf_steal(struct ps_buf *b, size_t *len) {
  char *p = b->data;
  if (len != NULL) *len = b->len;
  ps_buf_init(b);
  return p;
}

void ps_buf_free(struct ps_buf *b) {
  free(b->data);
  ps_buf_init(b);
}

void ps_buf_wipe(struct ps_buf *b) {
  if (b->data != NULL) explicit_bzero(b->data, b->cap);
  b->len = 0;
}

void ps_free_wiped(void *p, size_t n) {
  if (p == NULL) return;
  explicit_bzero(p, n);
  free(p);
}

void ps_free_secret(char *s) {
  if (s != NULL) ps_free_wiped(s, strlen(s));
}
