/* gRPC framing, grpc-timeout, grpc-message and status mapping (src/grpc.c). */
#include <criterion/criterion.h>
#include <string.h>
#include <uv.h>

#include "grpc.h"

/* Collects every message the reader delivers, each as prefix "len:" + bytes + ";". */
struct sink {
  struct ps_buf all;
  int count;
  int fail_at; /* return an error for this message (1-based), 0 = never */
};

static int collect(void *arg, const uint8_t *msg, size_t len) {
  struct sink *s = arg;
  s->count++;
  if (s->fail_at == s->count) return UV_ECANCELED;
  ps_buf_printf(&s->all, "%zu:", len);
  ps_buf_append(&s->all, msg, len);
  ps_buf_puts(&s->all, ";");
  return 0;
}

static void frame(struct ps_buf *b, const char *msg) {
  cr_assert_eq(ps_grpc_frame(b, (const uint8_t *)msg, strlen(msg)), 0);
}

Test(grpc, frame_prefix_is_big_endian_uncompressed) {
  struct ps_buf b;
  ps_buf_init(&b);
  uint8_t big[300];
  memset(big, 'x', sizeof big);
  cr_assert_eq(ps_grpc_frame(&b, big, sizeof big), 0);
  cr_assert_eq(b.len, 305);
  const uint8_t want[] = {0, 0, 0, 1, 44};
  cr_assert_eq(memcmp(b.data, want, 5), 0);
  ps_buf_free(&b);
}

Test(grpc, reader_byte_by_byte) {
  struct ps_buf in;
  ps_buf_init(&in);
  frame(&in, "hello");
  frame(&in, "");
  frame(&in, "world!");
  struct sink s = {0};
  ps_buf_init(&s.all);
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, 100);
  for (size_t i = 0; i < in.len; i++) {
    cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data + i, 1, collect, &s), 0);
    /* Partial exactly while inside a frame: not at the frame boundaries 10, 15, 26. */
    bool boundary = i + 1 == 10 || i + 1 == 15 || i + 1 == 26;
    cr_assert_eq(ps_grpc_reader_partial(&r), !boundary, "at byte %zu", i);
  }
  cr_assert_eq(s.count, 3);
  cr_assert_eq(r.messages, 3);
  cr_assert_str_eq(s.all.data, "5:hello;0:;6:world!;");
  ps_grpc_reader_free(&r);
  ps_buf_free(&s.all);
  ps_buf_free(&in);
}

Test(grpc, reader_several_messages_in_one_chunk_and_split_chunks) {
  struct ps_buf in;
  ps_buf_init(&in);
  for (int i = 0; i < 10; i++) frame(&in, "abcdefghij");
  /* Every split point of the stream into two chunks gives the same messages. */
  for (size_t cut = 0; cut <= in.len; cut++) {
    struct sink s = {0};
    ps_buf_init(&s.all);
    struct ps_grpc_reader r;
    ps_grpc_reader_init(&r, 10);
    cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data, cut, collect, &s), 0);
    cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data + cut, in.len - cut, collect, &s), 0);
    cr_assert_eq(s.count, 10);
    cr_assert_eq(s.all.len, 10 * strlen("10:abcdefghij;"));
    cr_assert_not(ps_grpc_reader_partial(&r));
    ps_grpc_reader_free(&r);
    ps_buf_free(&s.all);
  }
  ps_buf_free(&in);
}

Test(grpc, reader_refuses_oversize_before_buffering) {
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, 1000);
  struct sink s = {0};
  ps_buf_init(&s.all);
  /* Announces 1001 bytes but sends none of them: refused on the prefix alone. */
  const uint8_t p[] = {0, 0, 0, 0x03, 0xE9};
  cr_assert_eq(ps_grpc_reader_feed(&r, p, sizeof p, collect, &s), UV_E2BIG);
  cr_assert_null(r.msg);
  cr_assert_eq(r.msg_len, 1001);
  cr_assert_eq(s.count, 0);
  ps_grpc_reader_free(&r);
  /* Exactly the limit is fine. */
  ps_grpc_reader_init(&r, 1001);
  cr_assert_eq(ps_grpc_reader_feed(&r, p, sizeof p, collect, &s), 0);
  cr_assert(ps_grpc_reader_partial(&r));
  ps_grpc_reader_free(&r);
  /* The largest length a prefix can announce. */
  ps_grpc_reader_init(&r, PS_GRPC_MAX_MSG_DEFAULT);
  const uint8_t huge[] = {0, 0xFF, 0xFF, 0xFF, 0xFF};
  cr_assert_eq(ps_grpc_reader_feed(&r, huge, sizeof huge, collect, &s), UV_E2BIG);
  ps_grpc_reader_free(&r);
  ps_buf_free(&s.all);
}

Test(grpc, reader_flags) {
  struct ps_grpc_reader r;
  struct sink s = {0};
  ps_buf_init(&s.all);
  const uint8_t compressed[] = {1, 0, 0, 0, 1, 'x'};
  ps_grpc_reader_init(&r, 100);
  /* Refused on the flag byte alone, before the length arrives. */
  cr_assert_eq(ps_grpc_reader_feed(&r, compressed, 1, collect, &s), UV_ENOTSUP);
  ps_grpc_reader_free(&r);
  const uint8_t bad[] = {2, 0, 0, 0, 1, 'x'};
  ps_grpc_reader_init(&r, 100);
  cr_assert_eq(ps_grpc_reader_feed(&r, bad, sizeof bad, collect, &s), UV_EPROTO);
  ps_grpc_reader_free(&r);
  const uint8_t bad2[] = {0x80};
  ps_grpc_reader_init(&r, 100);
  cr_assert_eq(ps_grpc_reader_feed(&r, bad2, sizeof bad2, collect, &s), UV_EPROTO);
  ps_grpc_reader_free(&r);
  cr_assert_eq(s.count, 0);
  ps_buf_free(&s.all);
}

Test(grpc, reader_stops_on_callback_error) {
  struct ps_buf in;
  ps_buf_init(&in);
  frame(&in, "one");
  frame(&in, "two");
  frame(&in, "three");
  struct sink s = {.fail_at = 2};
  ps_buf_init(&s.all);
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, 100);
  /* Split so that the second message is assembled in the reader's own buffer (freed on error). */
  cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data, 10, collect, &s), 0);
  cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data + 10, in.len - 10, collect, &s),
               UV_ECANCELED);
  cr_assert_eq(s.count, 2);
  cr_assert_str_eq(s.all.data, "3:one;");
  ps_grpc_reader_free(&r);
  ps_buf_free(&s.all);
  ps_buf_free(&in);
}

static uint64_t timeout_ok(const char *v) {
  uint64_t ms = 12345;
  int err = ps_grpc_timeout_parse(v, strlen(v), &ms);
  cr_assert_eq(err, 0, "\"%s\" refused", v);
  return ms;
}

Test(grpc, timeout_units) {
  cr_assert_eq(timeout_ok("2H"), 7200000);
  cr_assert_eq(timeout_ok("3M"), 180000);
  cr_assert_eq(timeout_ok("5S"), 5000);
  cr_assert_eq(timeout_ok("250m"), 250);
  cr_assert_eq(timeout_ok("1000u"), 1);
  cr_assert_eq(timeout_ok("1001u"), 2); /* rounded up */
  cr_assert_eq(timeout_ok("1u"), 1);
  cr_assert_eq(timeout_ok("1n"), 1);
  cr_assert_eq(timeout_ok("2000000n"), 2);
  cr_assert_eq(timeout_ok("0m"), 0);
  cr_assert_eq(timeout_ok("0n"), 0);
  cr_assert_eq(timeout_ok("99999999H"), 99999999ull * 3600000ull);
  cr_assert_eq(timeout_ok("00000001S"), 1000);
}

Test(grpc, timeout_invalid) {
  const char *bad[] = {"",    "S",   "1",    "123456789S", "1s",   "1h", "-1S",
                       "1 S", " 1S", "1.5S", "1SS",        "0x1S", "1Su"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t ms = 7;
    cr_assert_eq(ps_grpc_timeout_parse(bad[i], strlen(bad[i]), &ms), UV_EINVAL, "\"%s\" accepted", bad[i]);
  }
  /* The length given is what counts, not a NUL. */
  uint64_t ms;
  cr_assert_eq(ps_grpc_timeout_parse("10Sxyz", 3, &ms), 0);
  cr_assert_eq(ms, 10000);
}

Test(grpc, message_encode_decode_round_trip) {
  const char *text = "bad value \"q\xC3\xA9\" 100% \n\t~ \x7F end";
  struct ps_buf enc, dec;
  ps_buf_init(&enc);
  ps_buf_init(&dec);
  cr_assert_eq(ps_grpc_message_encode(&enc, text), 0);
  cr_assert_str_eq(enc.data, "bad value \"q%C3%A9\" 100%25 %0A%09~ %7F end");
  cr_assert_eq(ps_grpc_message_decode(&dec, enc.data, enc.len), 0);
  cr_assert_str_eq(dec.data, text);
  /* Every byte value survives. */
  char all[256];
  for (int i = 1; i < 256; i++) all[i - 1] = (char)i;
  all[255] = '\0';
  ps_buf_reset(&enc);
  ps_buf_reset(&dec);
  cr_assert_eq(ps_grpc_message_encode(&enc, all), 0);
  for (size_t i = 0; i < enc.len; i++) cr_assert(enc.data[i] >= 0x20 && enc.data[i] <= 0x7E);
  cr_assert_eq(ps_grpc_message_decode(&dec, enc.data, enc.len), 0);
  cr_assert_eq(dec.len, 255);
  cr_assert_eq(memcmp(dec.data, all, 255), 0);
  ps_buf_free(&enc);
  ps_buf_free(&dec);
}

Test(grpc, message_decode_keeps_malformed_escapes) {
  struct ps_buf dec;
  ps_buf_init(&dec);
  cr_assert_eq(ps_grpc_message_decode(&dec, "a%zzb%4", 7), 0);
  cr_assert_str_eq(dec.data, "a%zzb%4");
  ps_buf_reset(&dec);
  cr_assert_eq(ps_grpc_message_decode(&dec, "%41%", 4), 0);
  cr_assert_str_eq(dec.data, "A%");
  ps_buf_free(&dec);
}

Test(grpc, message_encode_truncates_on_a_character_boundary) {
  char text[PS_GRPC_MAX_MESSAGE_TEXT + 10];
  memset(text, 'a', sizeof text);
  /* A 2-byte character straddles the limit: it is dropped whole. */
  text[PS_GRPC_MAX_MESSAGE_TEXT - 1] = (char)0xC3;
  text[PS_GRPC_MAX_MESSAGE_TEXT] = (char)0xA9;
  text[sizeof text - 1] = '\0';
  struct ps_buf enc;
  ps_buf_init(&enc);
  cr_assert_eq(ps_grpc_message_encode(&enc, text), 0);
  cr_assert_eq(enc.len, PS_GRPC_MAX_MESSAGE_TEXT - 1);
  ps_buf_reset(&enc);
  memset(text, 'b', sizeof text - 1);
  cr_assert_eq(ps_grpc_message_encode(&enc, text), 0);
  cr_assert_eq(enc.len, PS_GRPC_MAX_MESSAGE_TEXT);
  ps_buf_free(&enc);
}

Test(grpc, status_names) {
  cr_assert_str_eq(ps_grpc_status_name(PS_GRPC_OK), "OK");
  cr_assert_str_eq(ps_grpc_status_name(PS_GRPC_INVALID_ARGUMENT), "INVALID_ARGUMENT");
  cr_assert_str_eq(ps_grpc_status_name(PS_GRPC_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  cr_assert_str_eq(ps_grpc_status_name(PS_GRPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  cr_assert_str_eq(ps_grpc_status_name(PS_GRPC_UNIMPLEMENTED), "UNIMPLEMENTED");
  cr_assert_str_eq(ps_grpc_status_name(PS_GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
  cr_assert_str_eq(ps_grpc_status_name(17), "UNKNOWN");
  cr_assert_str_eq(ps_grpc_status_name(-1), "UNKNOWN");
}

Test(grpc, status_from_error) {
  struct {
    int err, status;
  } cases[] = {
      {0, PS_GRPC_OK},
      {UV_EINVAL, PS_GRPC_INVALID_ARGUMENT},
      {UV_ETIMEDOUT, PS_GRPC_DEADLINE_EXCEEDED},
      {UV_EAGAIN, PS_GRPC_UNAVAILABLE},
      {UV_ECONNREFUSED, PS_GRPC_UNAVAILABLE},
      {UV_ECONNRESET, PS_GRPC_UNAVAILABLE},
      {UV_EAI_NONAME, PS_GRPC_UNAVAILABLE},
      {UV_EAI_AGAIN, PS_GRPC_UNAVAILABLE},
      {UV_EHOSTUNREACH, PS_GRPC_UNAVAILABLE},
      {UV_EPROTO, PS_GRPC_UNAVAILABLE},
      {UV_ENOENT, PS_GRPC_NOT_FOUND},
      {UV_E2BIG, PS_GRPC_RESOURCE_EXHAUSTED},
      {UV_ENOBUFS, PS_GRPC_RESOURCE_EXHAUSTED},
      {UV_ENOMEM, PS_GRPC_RESOURCE_EXHAUSTED},
      {UV_ENOSYS, PS_GRPC_UNIMPLEMENTED},
      {UV_ENOTSUP, PS_GRPC_UNIMPLEMENTED},
      {UV_ECANCELED, PS_GRPC_CANCELLED},
      {UV_EPERM, PS_GRPC_FAILED_PRECONDITION},
      {UV_EIO, PS_GRPC_INTERNAL},
      {UV_EBADF, PS_GRPC_INTERNAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    cr_assert_eq(ps_grpc_status_from_error(cases[i].err), cases[i].status, "error %d", cases[i].err);
}

Test(grpc, content_type) {
  const char *good[] = {"application/grpc", "application/grpc+proto", "application/grpc; charset=x",
                        "Application/GRPC", "application/grpc+proto;x=y"};
  const char *bad[] = {"",
                       "application/json",
                       "application/grpc+json",
                       "application/grpcx",
                       "application/grp",
                       "text/plain",
                       "application/grpc+protobuf"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    cr_assert(ps_grpc_content_type_ok(good[i], strlen(good[i])), "%s", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_not(ps_grpc_content_type_ok(bad[i], strlen(bad[i])), "%s", bad[i]);
}

/* ---- request memory: growth with the bytes that arrive, and the shared budget ----------------- */

static void prefix_of(uint8_t p[PS_GRPC_PREFIX_LEN], uint32_t len) {
  p[0] = 0;
  p[1] = (uint8_t)(len >> 24);
  p[2] = (uint8_t)(len >> 16);
  p[3] = (uint8_t)(len >> 8);
  p[4] = (uint8_t)len;
}

Test(grpc, prefix_alone_reserves_nothing) {
  struct ps_grpc_budget b = {.limit = 1u << 20};
  struct ps_grpc_reader r[64];
  uint8_t p[PS_GRPC_PREFIX_LEN];
  prefix_of(p, PS_GRPC_MAX_MSG_DEFAULT - 1);
  struct sink s = {0};
  ps_buf_init(&s.all);
  /* 64 prefixes announcing 4 MiB - 1 each: not a byte is reserved, and none is refused. */
  for (int i = 0; i < 64; i++) {
    ps_grpc_reader_init(&r[i], PS_GRPC_MAX_MSG_DEFAULT);
    r[i].budget = &b;
    cr_assert_eq(ps_grpc_reader_feed(&r[i], p, sizeof p, collect, &s), 0);
    cr_assert(ps_grpc_reader_partial(&r[i]));
    cr_assert_null(r[i].msg);
    cr_assert_eq(r[i].cap, 0);
  }
  cr_assert_eq(b.used, 0);
  for (int i = 0; i < 64; i++) ps_grpc_reader_free(&r[i]);
  cr_assert_eq(b.used, 0);
  cr_assert_eq(s.count, 0);
  ps_buf_free(&s.all);
}

Test(grpc, buffer_grows_with_the_bytes_that_arrive) {
  struct ps_grpc_budget b = {0}; /* no limit: only counted */
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, 1u << 20);
  r.budget = &b;
  enum { LEN = 300000 };
  static uint8_t body[PS_GRPC_PREFIX_LEN + LEN];
  prefix_of(body, LEN);
  for (size_t i = 0; i < LEN; i++) body[PS_GRPC_PREFIX_LEN + i] = (uint8_t)(i * 7);
  struct sink s = {0};
  ps_buf_init(&s.all);
  size_t fed = 0, step = 1000;
  while (fed < sizeof body) {
    size_t n = sizeof body - fed < step ? sizeof body - fed : step;
    cr_assert_eq(ps_grpc_reader_feed(&r, body + fed, n, collect, &s), 0);
    fed += n;
    if (s.count > 0) break;
    size_t have = r.msg_have;
    /* Never more than twice what arrived (or the first small block), never more than announced, and
     * every reserved byte is counted. */
    cr_assert_leq(r.cap, have * 2 > PS_GRPC_READER_MIN_CAP ? have * 2 : PS_GRPC_READER_MIN_CAP, "at %zu",
                  have);
    cr_assert_leq(r.cap, LEN);
    cr_assert_geq(r.cap, have);
    cr_assert_eq(b.used, r.cap);
  }
  cr_assert_eq(s.count, 1);
  cr_assert_eq(s.all.len, strlen("300000:") + LEN + 1);
  cr_assert_eq(memcmp(s.all.data + strlen("300000:"), body + PS_GRPC_PREFIX_LEN, LEN), 0);
  cr_assert_eq(b.used, 0, "the delivered message's buffer was given back");
  cr_assert_null(r.msg);
  ps_grpc_reader_free(&r);
  ps_buf_free(&s.all);
}

Test(grpc, budget_refuses_the_reader_whose_bytes_would_exceed_it) {
  struct ps_grpc_budget b = {.limit = 100000};
  struct ps_grpc_reader a, c;
  ps_grpc_reader_init(&a, 1u << 20);
  ps_grpc_reader_init(&c, 1u << 20);
  a.budget = c.budget = &b;
  static uint8_t chunk[10000];
  uint8_t p[PS_GRPC_PREFIX_LEN];
  prefix_of(p, (1u << 20) - 1);
  struct sink s = {0};
  ps_buf_init(&s.all);
  cr_assert_eq(ps_grpc_reader_feed(&a, p, sizeof p, collect, &s), 0);
  cr_assert_eq(ps_grpc_reader_feed(&c, p, sizeof p, collect, &s), 0);
  /* a takes 60000 bytes; c then gets what is left and is refused on the bytes beyond it. */
  for (int i = 0; i < 6; i++) cr_assert_eq(ps_grpc_reader_feed(&a, chunk, sizeof chunk, collect, &s), 0);
  cr_assert_leq(b.used, b.limit);
  int err = 0, fed = 0;
  while (err == 0 && fed < 20) {
    err = ps_grpc_reader_feed(&c, chunk, sizeof chunk, collect, &s);
    fed++;
    cr_assert_leq(b.used, b.limit);
  }
  cr_assert_eq(err, UV_ENOBUFS);
  /* It held no more than the budget minus what a holds, and exactly what it arrived with fit. */
  cr_assert_leq(a.cap + c.cap, b.limit);
  cr_assert_eq(b.used, a.cap + c.cap);
  cr_assert_lt(b.limit - a.cap, (size_t)fed * sizeof chunk); /* refused only once the bytes did not fit */
  ps_grpc_reader_free(&c);
  cr_assert_eq(b.used, a.cap, "the refused reader's bytes are back");
  /* a goes on with what was released. */
  cr_assert_eq(ps_grpc_reader_feed(&a, chunk, sizeof chunk, collect, &s), 0);
  ps_grpc_reader_free(&a);
  cr_assert_eq(b.used, 0);
  cr_assert_eq(s.count, 0);
  ps_buf_free(&s.all);
}

Test(grpc, budget_reserve_is_for_small_messages_only) {
  struct ps_grpc_budget b = {.limit = 1000, .small = 100, .reserve = 300, .used = 1000};
  cr_assert_eq(ps_grpc_budget_charge(&b, 1, 101), UV_ENOBUFS);
  cr_assert_eq(ps_grpc_budget_charge(&b, 100, 100), 0);
  cr_assert_eq(ps_grpc_budget_charge(&b, 100, 100), 0);
  cr_assert_eq(ps_grpc_budget_charge(&b, 100, 100), 0);
  cr_assert_eq(b.used, 1300);
  cr_assert_eq(ps_grpc_budget_charge(&b, 1, 1), UV_ENOBUFS, "the reserve is bounded too");
  ps_grpc_budget_release(&b, 1300);
  cr_assert_eq(b.used, 0);
  ps_grpc_budget_release(&b, 5); /* never below zero */
  cr_assert_eq(b.used, 0);
  cr_assert_eq(ps_grpc_budget_charge(NULL, SIZE_MAX, 0), 0);
  struct ps_grpc_budget none = {0};
  cr_assert_eq(ps_grpc_budget_charge(&none, 1u << 30, 0), 0, "limit 0: counted, never refused");
}

/* A callback that keeps the assembled message without a copy. */
struct keeper {
  struct ps_grpc_reader *r;
  uint8_t *kept;
  size_t charged, len;
};

static int keep(void *arg, const uint8_t *msg, size_t len) {
  struct keeper *k = arg;
  k->kept = ps_grpc_reader_take(k->r, &k->charged);
  k->len = len;
  if (k->kept == NULL) cr_assert_eq(k->charged, 0);
  return 0;
}

Test(grpc, take_hands_over_the_buffer_and_its_charge) {
  struct ps_grpc_budget b = {.limit = 1u << 20};
  struct ps_grpc_reader r;
  ps_grpc_reader_init(&r, 1000);
  r.budget = &b;
  struct keeper k = {.r = &r};
  struct ps_buf in;
  ps_buf_init(&in);
  frame(&in, "assembled");
  cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data, 8, keep, &k), 0);
  cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data + 8, in.len - 8, keep, &k), 0);
  cr_assert_not_null(k.kept);
  cr_assert_eq(memcmp(k.kept, "assembled", 9), 0);
  cr_assert_geq(k.charged, 9);
  cr_assert_eq(b.used, k.charged, "the charge went with the buffer");
  free(k.kept);
  ps_grpc_budget_release(&b, k.charged);
  /* Delivered in place: nothing to take, nothing charged. */
  k = (struct keeper){.r = &r};
  cr_assert_eq(ps_grpc_reader_feed(&r, (const uint8_t *)in.data, in.len, keep, &k), 0);
  cr_assert_null(k.kept);
  cr_assert_eq(k.len, 9);
  cr_assert_eq(b.used, 0);
  ps_grpc_reader_free(&r);
  ps_buf_free(&in);
}
