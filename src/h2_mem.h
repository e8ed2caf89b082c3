/* nghttp2's memory (its nghttp2_mem hooks) from free lists by size class, shared by the sessions of one
 * server. A stream costs nghttp2 about eight allocations and frees of a few sizes (its stream object,
 * outbound items, header buffers): at the rate of the steady path glibc's malloc and free were ~1,300
 * instructions per GetMetrics (callgrind, docs/performance.md), because 16 streams at once overflow its
 * per-size cache of 7 and fall through to its slower bins. A free list pop or push costs a few. */
#ifndef PS_H2_MEM_H
#define PS_H2_MEM_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* Sizes are rounded up to a multiple of PS_H2_MEM_STEP; blocks up to PS_H2_MEM_SMALL_MAX bytes are kept
 * on their class's list when freed, as long as the lists hold at most PS_H2_MEM_KEEP_BYTES in all; larger
 * blocks, and frees beyond that, go to malloc and free as before. */
#define PS_H2_MEM_STEP       16
#define PS_H2_MEM_SMALL_MAX  1024
#define PS_H2_MEM_KEEP_BYTES (256u << 10)
#define PS_H2_MEM_CLASSES    (PS_H2_MEM_SMALL_MAX / PS_H2_MEM_STEP + 1) /* class 0: a large block */

struct ps_h2_mem {
  void *lists[PS_H2_MEM_CLASSES]; /* of free blocks (each holds the next one's address), by class */
  size_t kept;                    /* bytes of the blocks on the lists */
  size_t live;                    /* blocks handed out and not freed yet */
};

/* An empty set of lists (no memory of its own until the first free). */
void ps_h2_mem_init(struct ps_h2_mem *m);
/* The hooks for nghttp2_session_server_new3, allocating from m (which must outlive every session made
 * with them). */
nghttp2_mem ps_h2_mem_hooks(struct ps_h2_mem *m);
/* Gives the blocks on the lists back to malloc; blocks still handed out stay valid. */
void ps_h2_mem_release(struct ps_h2_mem *m);

#endif
