/* src/pb_arena.c: a request decoded through the arena reads the same as through protobuf-c's own
 * allocator, its pieces lie in the arena's block while they fit, and a message larger than the block
 * spills to the heap and is still freed (ASan's leak check runs this suite). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "externalscaler.pb-c.h"
#include "pb_arena.h"

static bool in_block(const struct ps_pb_arena *a, const void *p) {
  uintptr_t u = (uintptr_t)p, lo = (uintptr_t)a->mem;
  return u >= lo && u < lo + sizeof a->mem;
}

/* A GetMetricsRequest with n metadata entries, each value vlen bytes long; returns its packed length. */
static size_t pack(uint8_t *out, size_t cap, size_t n, size_t vlen) {
  static char keys[64][16], value[8192];
  Externalscaler__ScaledObjectRef__ScalerMetadataEntry e[64], *ep[64];
  cr_assert_leq(n, 64);
  cr_assert_lt(vlen, sizeof value);
  memset(value, 'v', vlen);
  value[vlen] = '\0';
  for (size_t i = 0; i < n; i++) {
    externalscaler__scaled_object_ref__scaler_metadata_entry__init(&e[i]);
    snprintf(keys[i], sizeof keys[i], "key%zu", i);
    e[i].key = keys[i];
    e[i].value = value;
    ep[i] = &e[i];
  }
  Externalscaler__ScaledObjectRef ref = EXTERNALSCALER__SCALED_OBJECT_REF__INIT;
  ref.name = "web";
  ref.namespace_ = "shop";
  ref.n_scalermetadata = n;
  ref.scalermetadata = ep;
  Externalscaler__GetMetricsRequest gm = EXTERNALSCALER__GET_METRICS_REQUEST__INIT;
  gm.scaledobjectref = &ref;
  gm.metricname = "prescale";
  cr_assert_leq(externalscaler__get_metrics_request__get_packed_size(&gm), cap);
  return externalscaler__get_metrics_request__pack(&gm, out);
}

static void check(const Externalscaler__GetMetricsRequest *gm, size_t n, size_t vlen) {
  cr_assert_not_null(gm);
  cr_assert_str_eq(gm->metricname, "prescale");
  cr_assert_str_eq(gm->scaledobjectref->name, "web");
  cr_assert_str_eq(gm->scaledobjectref->namespace_, "shop");
  cr_assert_eq(gm->scaledobjectref->n_scalermetadata, n);
  for (size_t i = 0; i < n; i++) {
    char k[16];
    snprintf(k, sizeof k, "key%zu", i);
    cr_assert_str_eq(gm->scaledobjectref->scalermetadata[i]->key, k);
    cr_assert_eq(strlen(gm->scaledobjectref->scalermetadata[i]->value), vlen);
  }
}

Test(pb_arena, small_request_lives_in_the_block) {
  static uint8_t buf[1024];
  size_t len = pack(buf, sizeof buf, 5, 10);
  struct ps_pb_arena a;
  ps_pb_arena_init(&a);
  Externalscaler__GetMetricsRequest *gm = externalscaler__get_metrics_request__unpack(&a.alloc, len, buf);
  check(gm, 5, 10);
  cr_assert(in_block(&a, gm));
  cr_assert(in_block(&a, gm->metricname));
  cr_assert(in_block(&a, gm->scaledobjectref->scalermetadata[4]->value));
  cr_assert_gt(a.used, 0);
  cr_assert_leq(a.used, sizeof a.mem);
  /* Every piece aligned for any type, as malloc's are. */
  cr_assert_eq((uintptr_t)gm->scaledobjectref % _Alignof(max_align_t), 0);
  externalscaler__get_metrics_request__free_unpacked(gm, &a.alloc);
}

Test(pb_arena, large_request_spills_to_the_heap) {
  static uint8_t buf[64 * 1024];
  size_t len = pack(buf, sizeof buf, 10, 2000); /* about 20 KB: five times the block */
  struct ps_pb_arena a;
  ps_pb_arena_init(&a);
  Externalscaler__GetMetricsRequest *gm = externalscaler__get_metrics_request__unpack(&a.alloc, len, buf);
  check(gm, 10, 2000);
  cr_assert(in_block(&a, gm));                                             /* the first pieces fit */
  cr_assert(!in_block(&a, gm->scaledobjectref->scalermetadata[9]->value)); /* the last ones did not */
  cr_assert_leq(a.used, sizeof a.mem);
  externalscaler__get_metrics_request__free_unpacked(gm, &a.alloc); /* frees the heap pieces (ASan) */
}

Test(pb_arena, refused_message_frees_what_it_took) {
  static uint8_t buf[64 * 1024];
  size_t len = pack(buf, sizeof buf, 10, 2000);
  struct ps_pb_arena a;
  ps_pb_arena_init(&a);
  /* Cut inside the last entry: protobuf-c refuses it and frees the pieces already made, heap ones too. */
  cr_assert_null(externalscaler__get_metrics_request__unpack(&a.alloc, len - 5, buf));
}
