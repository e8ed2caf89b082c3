/* A protobuf-c allocator that carves an unpacked message out of one fixed block, for a message that
 * lives only while one function runs (a request during its dispatch): no malloc per string, map entry or
 * sub-message. What does not fit goes to the heap and is freed by protobuf-c as usual, so any message
 * still decodes; the block itself is released with the struct. */
#ifndef PS_PB_ARENA_H
#define PS_PB_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define PS_PB_ARENA_BYTES 4096 /* KEDA's requests take a few hundred bytes; larger ones spill to the heap */

struct ps_pb_arena {
  ProtobufCAllocator alloc; /* give &arena.alloc to protobuf-c's unpack and free_unpacked */
  size_t used;
  _Alignas(max_align_t) uint8_t mem[PS_PB_ARENA_BYTES];
};

void ps_pb_arena_init(struct ps_pb_arena *a);

#endif
