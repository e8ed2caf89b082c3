/* See pb_arena.h. protobuf-c calls the allocator through ProtobufCAllocator
 * (protobuf-c/protobuf-c.h: alloc(allocator_data, size), free(allocator_data, pointer)). */
#include "pb_arena.h"

#include <stdlib.h>

static void *arena_alloc(void *data, size_t size) {
  struct ps_pb_arena *a = data;
  const size_t align = _Alignof(max_align_t);
  size_t at = (a->used + align - 1) & ~(align - 1);
  /* size 0 goes to malloc: a pointer one past the block could not be told from the next allocation. */
  if (size > 0 && size <= sizeof a->mem && at <= sizeof a->mem - size) {
    a->used = at + size;
    return a->mem + at;
  }
  return malloc(size);
}

static void arena_free(void *data, void *p) {
  struct ps_pb_arena *a = data;
  uintptr_t u = (uintptr_t)p, lo = (uintptr_t)a->mem;
  if (u >= lo && u < lo + sizeof a->mem) return; /* released with the arena */
  free(p);
}

void ps_pb_arena_init(struct ps_pb_arena *a) {
  a->alloc.alloc = arena_alloc;
  a->alloc.free = arena_free;
  a->alloc.allocator_data = a;
  a->used = 0;
}
