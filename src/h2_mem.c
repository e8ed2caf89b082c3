/* See h2_mem.h. Every block starts with a header that says its class and capacity, so that free and realloc
 * need nothing else; the header is as large as max_align_t, so blocks keep malloc's alignment. */
#include "h2_mem.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

union header {
  struct {
    size_t cls; /* 0: a large block (malloc's own), else the size class */
    size_t cap; /* bytes usable after the header */
  } h;
  max_align_t align;
};

static union header *head_of(void *p) { return (union header *)p - 1; }

static void *mem_malloc(size_t size, void *user) {
  struct ps_h2_mem *m = user;
  size_t cls = size <= PS_H2_MEM_SMALL_MAX ? (size + PS_H2_MEM_STEP - 1) / PS_H2_MEM_STEP : 0;
  if (size == 0) cls = 1;
  union header *b;
  if (cls != 0 && m->lists[cls] != NULL) {
    b = m->lists[cls];
    memcpy(&m->lists[cls], b + 1, sizeof(void *)); /* the next free block */
    m->kept -= b->h.cap;
  } else {
    size_t cap = cls != 0 ? cls * PS_H2_MEM_STEP : size;
    if (cap > SIZE_MAX - sizeof *b || (b = malloc(sizeof *b + cap)) == NULL) return NULL;
    b->h.cls = cls;
    b->h.cap = cap;
  }
  m->live++;
  return b + 1;
}

static void mem_free(void *p, void *user) {
  if (p == NULL) return;
  struct ps_h2_mem *m = user;
  union header *b = head_of(p);
  m->live--;
  if (b->h.cls == 0 || m->kept + b->h.cap > PS_H2_MEM_KEEP_BYTES) {
    free(b);
    return;
  }
  memcpy(p, &m->lists[b->h.cls], sizeof(void *));
  m->lists[b->h.cls] = b;
  m->kept += b->h.cap;
}

static void *mem_calloc(size_t n, size_t size, void *user) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  void *p = mem_malloc(n * size, user);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

static void *mem_realloc(void *p, size_t size, void *user) {
  if (p == NULL) return mem_malloc(size, user);
  union header *b = head_of(p);
  if (size <= b->h.cap && size > 0) return p; /* still fits (a smaller size keeps the block) */
  if (size == 0) {
    mem_free(p, user);
    return NULL;
  }
  void *q = mem_malloc(size, user);
  if (q == NULL) return NULL; /* p stays valid, as with realloc */
  memcpy(q, p, b->h.cap);
  mem_free(p, user);
  return q;
}

void ps_h2_mem_init(struct ps_h2_mem *m) { memset(m, 0, sizeof *m); }

nghttp2_mem ps_h2_mem_hooks(struct ps_h2_mem *m) {
  return (nghttp2_mem){.mem_user_data = m,
                       .malloc = mem_malloc,
                       .free = mem_free,
                       .calloc = mem_calloc,
                       .realloc = mem_realloc};
}

void ps_h2_mem_release(struct ps_h2_mem *m) {
  for (size_t c = 1; c < PS_H2_MEM_CLASSES; c++) {
    while (m->lists[c] != NULL) {
      union header *b = m->lists[c];
      memcpy(&m->lists[c], b + 1, sizeof(void *));
      free(b);
    }
  }
  m->kept = 0;
}
