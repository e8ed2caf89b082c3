/* Fuzzes grpcblast's frame walker (tests/bench/blast_h2.c): arbitrary server bytes read in arbitrary chunks,
 * with requests sent between the reads as grpcblast sends them.
 * Input: byte 0 picks the streams per connection (1-16), byte 1 bit 0 gRPC mode and bit 1 a lower stream id
 * limit; then repeatedly one byte of chunk length and that many bytes (the server's). Checked after every
 * walk: the walk stays within what was read, the output within its buffer, every stream issued is in
 * flight, answered or refused, and the connection's counts are consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blast_h2.h"

/* A gRPC answer of "abc": the 5-byte prefix and the message. */
static const uint8_t EXPECTED[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};

static void check(const struct ps_blast_conn *c, const struct ps_blast_stats *st) {
  if (c->out_len > c->out_cap) abort();
  if (st->ok + st->failed + c->in_flight != st->issued) abort();
  if ((c->next_sid & 1) == 0) abort();
  uint32_t held = 0;
  for (uint32_t i = 0; i <= c->ring_mask; i++) held += c->ring[i].id != 0;
  if (held != c->in_flight || c->in_flight > c->streams) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  static struct ps_blast_stats st;
  static struct ps_blast_req req;
  memset(&st, 0, sizeof st);
  st.win_start = 0, st.win_end = INT64_MAX;
  struct ps_blast_expect x = {.data = EXPECTED, .len = sizeof EXPECTED, .grpc = data[1] & 1};
  char err[128];
  const char *hdrs[] = {"content-type: application/grpc", "te: trailers"};
  const uint8_t body[] = {0, 0, 0, 0, 2, 0x0a, 0x00};
  if (ps_blast_req_build(&req, "POST", "http", "127.0.0.1:1", "/a.B/C", hdrs, 2, body, sizeof body, err,
                         sizeof err) < 0)
    abort();
  struct ps_blast_conn c;
  uint32_t streams = (uint32_t)(data[0] % 16) + 1, sid_limit = data[1] & 2 ? 9 : PS_BLAST_MAX_SID;
  if (ps_blast_conn_init(&c, streams, sid_limit, &x, &st, req.len) < 0) return 0;
  ps_blast_conn_start(&c);
  static uint8_t in[PS_BLAST_IN_BUF];
  size_t in_len = 0, pos = 2;
  int64_t now = 1;
  while (pos < size) {
    size_t n = data[pos++];
    if (n > size - pos) n = size - pos;
    if (n > sizeof in - in_len) n = sizeof in - in_len;
    memcpy(in + in_len, data + pos, n);
    in_len += n, pos += n;
    size_t used = 0;
    int rv = ps_blast_conn_recv(&c, in, in_len, now++, &used);
    if (used > in_len) abort();
    memmove(in, in + used, in_len - used);
    in_len -= used;
    check(&c, &st);
    if (rv < 0) {
      if (rv != PS_BLAST_E_PROTOCOL && rv != PS_BLAST_E_FLOW && rv != PS_BLAST_E_FRAME_SIZE &&
          rv != PS_BLAST_E_COMPRESSION)
        abort();
      ps_blast_conn_goaway(&c, (uint32_t)-rv);
      break;
    }
    c.out_len = 0; /* written */
    ps_blast_conn_fill(&c, &req, now++, 4);
    check(&c, &st);
    if (ps_blast_conn_done(&c)) break;
  }
  ps_blast_conn_free(&c, now);
  if (st.ok + st.failed != st.issued) abort();
  return 0;
}
