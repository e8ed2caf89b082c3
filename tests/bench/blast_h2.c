/* grpcblast's HTTP/2 client side without sockets: see blast_h2.h. RFC 9113 (HTTP/2), RFC 7541 (HPACK). */
#include "blast_h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frame types and flags (RFC 9113 §6). */
enum { T_DATA, T_HEADERS, T_PRIORITY, T_RST, T_SETTINGS, T_PUSH, T_PING, T_GOAWAY, T_WINDOW, T_CONT };
#define F_END_STREAM  0x1
#define F_ACK         0x1
#define F_END_HEADERS 0x4
#define F_PADDED      0x8
#define F_PRIORITY    0x20
/* The most a frame's reply takes (PING ACK, 17 bytes, the largest): the walk stops with less room left. */
#define REPLY_MAX     32

static const uint8_t PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; /* RFC 9113 §3.4 */

/* ---- bytes ---- */

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void frame_head(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid) {
  p[0] = (uint8_t)(len >> 16), p[1] = (uint8_t)(len >> 8), p[2] = (uint8_t)len;
  p[3] = type, p[4] = flags;
  put32(p + 5, sid & PS_BLAST_MAX_SID);
}

/* Appends one frame to the connection's output; the callers checked the room (REPLY_MAX). */
static void emit(struct ps_blast_conn *c, uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *payload,
                 uint32_t len) {
  if (c->out_cap - c->out_len < 9 + (size_t)len) return;
  frame_head(c->out + c->out_len, len, type, flags, sid);
  if (len) memcpy(c->out + c->out_len + 9, payload, len);
  c->out_len += 9 + len;
}

/* ---- the request: HPACK without indexing (RFC 7541) ---- */

/* The static table's names (RFC 7541 Appendix A), index 1 first: a -H name found here is sent by index. */
static const char *const STATIC_NAMES[] = {":authority",
                                           ":method",
                                           ":method",
                                           ":path",
                                           ":path",
                                           ":scheme",
                                           ":scheme",
                                           ":status",
                                           ":status",
                                           ":status",
                                           ":status",
                                           ":status",
                                           ":status",
                                           ":status",
                                           "accept-charset",
                                           "accept-encoding",
                                           "accept-language",
                                           "accept-ranges",
                                           "accept",
                                           "access-control-allow-origin",
                                           "age",
                                           "allow",
                                           "authorization",
                                           "cache-control",
                                           "content-disposition",
                                           "content-encoding",
                                           "content-language",
                                           "content-length",
                                           "content-location",
                                           "content-range",
                                           "content-type",
                                           "cookie",
                                           "date",
                                           "etag",
                                           "expect",
                                           "expires",
                                           "from",
                                           "host",
                                           "if-match",
                                           "if-modified-since",
                                           "if-none-match",
                                           "if-range",
                                           "if-unmodified-since",
                                           "last-modified",
                                           "link",
                                           "location",
                                           "max-forwards",
                                           "proxy-authenticate",
                                           "proxy-authorization",
                                           "range",
                                           "referer",
                                           "refresh",
                                           "retry-after",
                                           "server",
                                           "set-cookie",
                                           "strict-transport-security",
                                           "transfer-encoding",
                                           "user-agent",
                                           "vary",
                                           "via",
                                           "www-authenticate"};

struct enc {
  uint8_t *p;
  size_t len, cap;
  int over;
};

/* An integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
static void enc_int(struct enc *e, uint8_t first, int prefix_bits, size_t v) {
  size_t max = ((size_t)1 << prefix_bits) - 1;
  for (int i = 0; i < 8; i++) { /* a size_t takes at most 1 + 5 bytes below 2^32; 8 bounds the loop */
    if (e->len >= e->cap) {
      e->over = 1;
      return;
    }
    if (i == 0) {
      if (v < max) {
        e->p[e->len++] = (uint8_t)(first | v);
        return;
      }
      e->p[e->len++] = (uint8_t)(first | max);
      v -= max;
    } else if (v < 128) {
      e->p[e->len++] = (uint8_t)v;
      return;
    } else {
      e->p[e->len++] = (uint8_t)(0x80 | (v & 0x7f));
      v >>= 7;
    }
  }
  e->over = 1;
}

/* A string literal, not Huffman-coded (RFC 7541 §5.2). */
static void enc_str(struct enc *e, const char *s, size_t n) {
  enc_int(e, 0x00, 7, n);
  if (e->over || e->cap - e->len < n) {
    e->over = 1;
    return;
  }
  memcpy(e->p + e->len, s, n);
  e->len += n;
}

/* A literal header field without indexing (RFC 7541 §6.2.2): the name by static index when it has one. */
static void enc_field(struct enc *e, const char *name, size_t name_len, const char *value, size_t value_len) {
  size_t idx = 0;
  for (size_t i = 0; i < sizeof STATIC_NAMES / sizeof *STATIC_NAMES && idx == 0; i++)
    if (strlen(STATIC_NAMES[i]) == name_len && memcmp(STATIC_NAMES[i], name, name_len) == 0) idx = i + 1;
  enc_int(e, 0x00, 4, idx);
  if (idx == 0) enc_str(e, name, name_len);
  enc_str(e, value, value_len);
}

int ps_blast_req_build(struct ps_blast_req *r, const char *method, const char *scheme, const char *authority,
                       const char *path, const char *const *headers, int n_headers, const uint8_t *body,
                       size_t body_len, char *err, size_t err_len) {
  memset(r, 0, sizeof *r);
  if (body_len > PS_BLAST_MAX_BODY) {
    snprintf(err, err_len, "the request body is %zu bytes, more than PS_BLAST_MAX_BODY (%d)", body_len,
             PS_BLAST_MAX_BODY);
    return -1;
  }
  if (n_headers > PS_BLAST_MAX_HEADERS) {
    snprintf(err, err_len, "%d headers, more than PS_BLAST_MAX_HEADERS (%d)", n_headers,
             PS_BLAST_MAX_HEADERS);
    return -1;
  }
  struct enc e = {.p = r->bytes + 9, .cap = PS_BLAST_MAX_BLOCK};
  /* Indexed fields where the static table has the pair (RFC 7541 §6.1): :method POST 3, GET 2; :scheme
   * http 6, https 7; :path / 4. */
  if (strcmp(method, "POST") == 0)
    e.p[e.len++] = 0x80 | 3;
  else if (strcmp(method, "GET") == 0)
    e.p[e.len++] = 0x80 | 2;
  else
    enc_field(&e, ":method", 7, method, strlen(method));
  if (strcmp(scheme, "http") == 0)
    e.p[e.len++] = 0x80 | 6;
  else if (strcmp(scheme, "https") == 0)
    e.p[e.len++] = 0x80 | 7;
  else
    enc_field(&e, ":scheme", 7, scheme, strlen(scheme));
  if (strcmp(path, "/") == 0)
    e.p[e.len++] = 0x80 | 4;
  else
    enc_field(&e, ":path", 5, path, strlen(path));
  enc_field(&e, ":authority", 10, authority, strlen(authority));
  for (int i = 0; i < n_headers; i++) {
    const char *h = headers[i], *colon = strchr(h + (h[0] == ':'), ':');
    if (colon == NULL || colon == h) {
      snprintf(err, err_len, "a header is name: value, not %s", h);
      return -1;
    }
    size_t nlen = (size_t)(colon - h);
    for (size_t k = 0; k < nlen; k++)
      if (h[k] >= 'A' && h[k] <= 'Z') { /* RFC 9113 §8.2.1: field names are lower-case in HTTP/2 */
        snprintf(err, err_len, "a header name must be lower-case: %s", h);
        return -1;
      }
    if (h[0] == ':') {
      snprintf(err, err_len, "pseudo-headers come from the URL, not -H: %s", h);
      return -1;
    }
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    enc_field(&e, h, nlen, v, strlen(v));
  }
  if (e.over) {
    snprintf(err, err_len, "the request's header block is over PS_BLAST_MAX_BLOCK (%d bytes)",
             PS_BLAST_MAX_BLOCK);
    return -1;
  }
  frame_head(r->bytes, (uint32_t)e.len, T_HEADERS, F_END_HEADERS | (body_len ? 0 : F_END_STREAM), 1);
  r->sid_at[0] = 5;
  r->len = 9 + e.len;
  r->sid_at[1] = r->len + 5;
  if (body_len) {
    frame_head(r->bytes + r->len, (uint32_t)body_len, T_DATA, F_END_STREAM, 1);
    memcpy(r->bytes + r->len + 9, body, body_len);
    r->len += 9 + body_len;
  }
  r->body_len = (uint32_t)body_len;
  return 0;
}

/* ---- a connection ---- */

int ps_blast_conn_init(struct ps_blast_conn *c, uint32_t streams, uint32_t sid_limit,
                       const struct ps_blast_expect *expect, struct ps_blast_stats *stats, size_t req_len) {
  memset(c, 0, sizeof *c);
  if (streams == 0 || streams > PS_BLAST_MAX_STREAMS) return PS_BLAST_E_NOMEM;
  uint32_t ring = 2;
  while (ring < 2 * streams) ring <<= 1;
  c->ring = calloc(ring, sizeof *c->ring);
  c->out_cap = (size_t)streams * req_len + PS_BLAST_CTRL_ROOM;
  c->out = malloc(c->out_cap);
  if (c->ring == NULL || c->out == NULL || nghttp2_hd_inflate_new(&c->inflater) != 0) {
    free(c->ring), free(c->out);
    c->ring = NULL, c->out = NULL, c->inflater = NULL;
    return PS_BLAST_E_NOMEM;
  }
  c->ring_mask = ring - 1;
  c->streams = streams;
  c->server_max = UINT32_MAX; /* RFC 9113 §6.5.2: no limit until the server sets one */
  c->next_sid = 1;
  c->sid_limit = sid_limit < PS_BLAST_MAX_SID ? sid_limit : PS_BLAST_MAX_SID;
  c->send_window = 65535; /* the initial windows (RFC 9113 §6.9.2) */
  c->server_initial = 65535;
  c->expect = expect;
  c->stats = stats;
  return 0;
}

static void count(struct ps_blast_stats *st, uint8_t why, int64_t sent, int64_t now) {
  int in_window = now >= st->win_start && now < st->win_end;
  if (why == 0) {
    st->ok++;
    if (in_window) {
      st->win_ok++;
      ps_blast_hist_add(&st->hist, now - sent);
    }
  } else {
    st->failed++;
    st->win_failed += in_window;
    if (st->first_fail_reason == 0) st->first_fail_reason = why;
  }
}

void ps_blast_conn_free(struct ps_blast_conn *c, int64_t now) {
  for (uint32_t i = 0; c->ring && i <= c->ring_mask; i++)
    if (c->ring[i].id) count(c->stats, c->ring[i].why | PS_BLAST_WHY_LOST, c->ring[i].sent, now);
  if (c->inflater) nghttp2_hd_inflate_del(c->inflater);
  free(c->ring);
  free(c->out);
  memset(c, 0, sizeof *c);
}

void ps_blast_conn_start(struct ps_blast_conn *c) {
  memcpy(c->out + c->out_len, PREFACE, sizeof PREFACE - 1);
  c->out_len += sizeof PREFACE - 1;
  /* SETTINGS_ENABLE_PUSH 0 (no PUSH_PROMISE, §8.4), SETTINGS_INITIAL_WINDOW_SIZE (§6.5.2). */
  uint8_t s[12] = {0, 0x2, 0, 0, 0, 0, 0, 0x4};
  put32(s + 8, PS_BLAST_WINDOW);
  emit(c, T_SETTINGS, 0, 0, s, sizeof s);
  /* The connection window is not a setting: it is opened by a WINDOW_UPDATE (§6.9.2). */
  uint8_t w[4];
  put32(w, PS_BLAST_WINDOW - 65535);
  emit(c, T_WINDOW, 0, 0, w, sizeof w);
}

uint32_t ps_blast_conn_fill(struct ps_blast_conn *c, const struct ps_blast_req *r, int64_t now,
                            uint64_t budget) {
  if (!c->got_settings || c->goaway || r->body_len > c->server_initial) return 0;
  uint32_t limit = c->streams < c->server_max ? c->streams : c->server_max, n = 0;
  while (n < budget && c->in_flight < limit && c->send_window >= r->body_len &&
         c->out_cap - c->out_len >= r->len + PS_BLAST_CTRL_ROOM) {
    /* The next id whose slot is free: in_flight < limit <= ring / 2, so one is found within limit + 1. */
    uint32_t sid = c->next_sid;
    for (uint32_t k = 0; k <= limit && sid <= c->sid_limit && c->ring[(sid >> 1) & c->ring_mask].id; k++)
      sid += 2;
    c->next_sid = sid;
    if (sid > c->sid_limit) break; /* ids used up: the caller closes the connection once it is drained */
    struct ps_blast_stream *s = &c->ring[(sid >> 1) & c->ring_mask];
    if (s->id) break;
    uint8_t *p = c->out + c->out_len;
    memcpy(p, r->bytes, r->len);
    put32(p + r->sid_at[0], sid);
    if (r->body_len) put32(p + r->sid_at[1], sid);
    c->out_len += r->len;
    *s = (struct ps_blast_stream){.id = sid, .sent = now};
    c->in_flight++;
    c->next_sid = sid + 2;
    c->send_window -= r->body_len;
    c->stats->issued++;
    n++;
  }
  return n;
}

int ps_blast_conn_done(const struct ps_blast_conn *c) {
  return (c->goaway || c->next_sid > c->sid_limit) && c->in_flight == 0;
}

void ps_blast_conn_goaway(struct ps_blast_conn *c, uint32_t code) {
  uint8_t g[8];
  put32(g, 0); /* the last server-initiated stream we processed: none (RFC 9113 §6.8) */
  put32(g + 4, code);
  emit(c, T_GOAWAY, 0, 0, g, sizeof g);
}

/* ---- the frame walker ---- */

static struct ps_blast_stream *find(struct ps_blast_conn *c, uint32_t sid) {
  struct ps_blast_stream *s = &c->ring[(sid >> 1) & c->ring_mask];
  return s->id == sid ? s : NULL;
}

/* The stream's answer is complete (END_STREAM) or cut (RST_STREAM): checked, counted, its slot freed. */
static void finish(struct ps_blast_conn *c, struct ps_blast_stream *s, uint8_t why, int64_t now) {
  why |= s->why;
  if (!s->status_ok) why |= PS_BLAST_WHY_STATUS;
  if (s->got != c->expect->len) why |= PS_BLAST_WHY_DATA;
  if (c->expect->grpc && !s->grpc_ok) why |= PS_BLAST_WHY_GRPC;
  if (s->blocks > 2) why |= PS_BLAST_WHY_BLOCKS;
  count(c->stats, why, s->sent, now);
  s->id = 0;
  c->in_flight--;
}

static int field_is(const nghttp2_nv *nv, const char *name, size_t name_len) {
  return nv->namelen == name_len && memcmp(nv->name, name, name_len) == 0;
}

/* One fragment of the header block open on s (c->cont_sid), through the connection's HPACK inflater. The
 * answer's first block must carry :status 200; the block that ends the stream, with grpc, grpc-status 0
 * (the trailers; gRPC over HTTP/2, "Responses"). */
static int inflate(struct ps_blast_conn *c, struct ps_blast_stream *s, const uint8_t *in, size_t inlen,
                   int final) {
  /* Each turn emits a field (at most PS_BLAST_MAX_FIELDS), consumes input, or ends the loop. */
  const size_t turns_max = inlen + PS_BLAST_MAX_FIELDS + 2;
  for (size_t turns = 0; turns < turns_max; turns++) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t rv = nghttp2_hd_inflate_hd2(c->inflater, &nv, &flags, in, inlen, final);
    if (rv < 0) return PS_BLAST_E_COMPRESSION;
    in += rv, inlen -= (size_t)rv;
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      if (++c->cont_fields > PS_BLAST_MAX_FIELDS) return PS_BLAST_E_PROTOCOL;
      if (s->blocks == 1 && field_is(&nv, ":status", 7))
        s->status_ok = nv.valuelen == 3 && memcmp(nv.value, "200", 3) == 0;
      else if (c->cont_end_stream && field_is(&nv, "grpc-status", 11))
        s->grpc_ok = nv.valuelen == 1 && nv.value[0] == '0';
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(c->inflater);
      return 0;
    }
    if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && inlen == 0) return 0;
  }
  return PS_BLAST_E_COMPRESSION; /* the inflater made no progress */
}

/* A fragment of a header block has arrived (HEADERS or CONTINUATION): inflated, and at END_HEADERS the
 * block closes; with END_STREAM on its HEADERS, so does the stream. */
static int header_fragment(struct ps_blast_conn *c, const uint8_t *frag, size_t len, int end_headers,
                           int64_t now) {
  struct ps_blast_stream *s = find(c, c->cont_sid);
  if (s == NULL) return PS_BLAST_E_PROTOCOL;
  int rv = inflate(c, s, frag, len, end_headers);
  if (rv < 0 || !end_headers) return rv;
  c->cont_sid = 0;
  if (c->cont_end_stream) finish(c, s, 0, now);
  return 0;
}

/* Padding (RFC 9113 §6.1, §6.2): the pad length byte, then the payload, then that many bytes. */
static int unpad(uint8_t flags, const uint8_t **p, size_t *len) {
  if (!(flags & F_PADDED)) return 0;
  if (*len < 1 || (*p)[0] >= *len) return PS_BLAST_E_PROTOCOL;
  size_t pad = (*p)[0];
  *p += 1;
  *len -= 1 + pad;
  return 0;
}

static int on_data(struct ps_blast_conn *c, uint8_t flags, uint32_t sid, const uint8_t *p, size_t len,
                   int64_t now) {
  if (sid == 0) return PS_BLAST_E_PROTOCOL;
  /* Flow control counts the whole payload, padding included (§6.9.1). */
  c->recv_unacked += (uint32_t)len;
  if (c->recv_unacked > PS_BLAST_WINDOW) return PS_BLAST_E_FLOW;
  if (c->recv_unacked >= PS_BLAST_WINDOW / 2) {
    uint8_t w[4];
    put32(w, c->recv_unacked);
    emit(c, T_WINDOW, 0, 0, w, sizeof w);
    c->recv_unacked = 0;
  }
  if (unpad(flags, &p, &len) < 0) return PS_BLAST_E_PROTOCOL;
  struct ps_blast_stream *s = find(c, sid);
  if (s == NULL) return PS_BLAST_E_PROTOCOL; /* we never reset a stream: the server cannot have sent this */
  if (s->blocks == 0) s->why |= PS_BLAST_WHY_STATUS; /* DATA before the response's HEADERS */
  const struct ps_blast_expect *x = c->expect;
  if (s->got > x->len || len > x->len - s->got || (len && memcmp(x->data + s->got, p, len) != 0)) {
    s->why |= PS_BLAST_WHY_DATA;
    s->got = (uint32_t)x->len + 1; /* more than expected: never equal again */
  } else {
    s->got += (uint32_t)len;
  }
  if (flags & F_END_STREAM) finish(c, s, 0, now);
  return 0;
}

static int on_headers(struct ps_blast_conn *c, uint8_t flags, uint32_t sid, const uint8_t *p, size_t len,
                      int64_t now) {
  if (sid == 0) return PS_BLAST_E_PROTOCOL;
  if (unpad(flags, &p, &len) < 0) return PS_BLAST_E_PROTOCOL;
  if (flags & F_PRIORITY) {
    if (len < 5) return PS_BLAST_E_PROTOCOL;
    p += 5, len -= 5;
  }
  struct ps_blast_stream *s = find(c, sid);
  if (s == NULL) return PS_BLAST_E_PROTOCOL; /* even ids: pushed streams, refused by ENABLE_PUSH 0 */
  if (s->blocks < 255) s->blocks++;
  c->cont_sid = sid;
  c->cont_end_stream = (flags & F_END_STREAM) != 0;
  c->cont_fields = 0;
  return header_fragment(c, p, len, (flags & F_END_HEADERS) != 0, now);
}

static int on_settings(struct ps_blast_conn *c, uint8_t flags, uint32_t sid, const uint8_t *p, size_t len) {
  if (sid != 0) return PS_BLAST_E_PROTOCOL;
  if (flags & F_ACK) return len == 0 ? 0 : PS_BLAST_E_FRAME_SIZE;
  if (len % 6) return PS_BLAST_E_FRAME_SIZE;
  for (size_t i = 0; i < len; i += 6) { /* at most PS_BLAST_MAX_FRAME / 6 */
    uint16_t id = (uint16_t)(p[i] << 8 | p[i + 1]);
    uint32_t v = get32(p + i + 2);
    switch (id) {
    case 0x2: /* ENABLE_PUSH: a client treats any value but 0 from a server as PROTOCOL_ERROR (§6.5.2) */
      if (v != 0) return PS_BLAST_E_PROTOCOL;
      break;
    case 0x3: c->server_max = v; break;
    case 0x4:
      if (v > PS_BLAST_MAX_SID) return PS_BLAST_E_FLOW;
      c->server_initial = v;
      break;
    case 0x5:
      if (v < 16384 || v > 16777215) return PS_BLAST_E_PROTOCOL;
      break;
    default: break; /* HEADER_TABLE_SIZE bounds an encoder's table: ours uses none; unknown ones ignored */
    }
  }
  c->got_settings = 1;
  emit(c, T_SETTINGS, F_ACK, 0, NULL, 0);
  return 0;
}

static int on_goaway(struct ps_blast_conn *c, uint32_t sid, const uint8_t *p, size_t len) {
  if (sid != 0) return PS_BLAST_E_PROTOCOL;
  if (len < 8) return PS_BLAST_E_FRAME_SIZE;
  uint32_t last = get32(p) & PS_BLAST_MAX_SID;
  if (c->goaway && last > c->goaway_last) return PS_BLAST_E_PROTOCOL; /* it may only fall (§6.8) */
  c->goaway = 1;
  c->goaway_last = last;
  /* Streams above `last` were not processed and may be sent again elsewhere (§6.8, §8.7). */
  for (uint32_t i = 0; i <= c->ring_mask; i++) {
    struct ps_blast_stream *s = &c->ring[i];
    if (s->id > last) {
      s->id = 0;
      c->in_flight--;
      c->stats->refused++;
      c->stats->issued--;
    }
  }
  return 0;
}

static int frame(struct ps_blast_conn *c, uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *p,
                 size_t len, int64_t now) {
  /* A header block is one HEADERS and its CONTINUATIONs, nothing in between (§6.10). */
  if (c->cont_sid && (type != T_CONT || sid != c->cont_sid)) return PS_BLAST_E_PROTOCOL;
  switch (type) {
  case T_DATA: return on_data(c, flags, sid, p, len, now);
  case T_HEADERS: return on_headers(c, flags, sid, p, len, now);
  case T_CONT:
    if (c->cont_sid == 0) return PS_BLAST_E_PROTOCOL;
    return header_fragment(c, p, len, (flags & F_END_HEADERS) != 0, now);
  case T_RST: {
    if (len != 4) return PS_BLAST_E_FRAME_SIZE;
    if (sid == 0) return PS_BLAST_E_PROTOCOL;
    struct ps_blast_stream *s = find(c, sid);
    /* An unknown stream: one that ended already (a server may reset a stream after its whole answer to
     * stop the request, §8.1); nothing is lost. */
    if (s) finish(c, s, PS_BLAST_WHY_RESET, now);
    return 0;
  }
  case T_SETTINGS: return on_settings(c, flags, sid, p, len);
  case T_PUSH: return PS_BLAST_E_PROTOCOL; /* we sent ENABLE_PUSH 0 (§8.4) */
  case T_PING:
    if (len != 8) return PS_BLAST_E_FRAME_SIZE;
    if (sid != 0) return PS_BLAST_E_PROTOCOL;
    if (!(flags & F_ACK)) emit(c, T_PING, F_ACK, 0, p, 8);
    return 0;
  case T_GOAWAY: return on_goaway(c, sid, p, len);
  case T_WINDOW: {
    if (len != 4) return PS_BLAST_E_FRAME_SIZE;
    uint32_t inc = get32(p) & PS_BLAST_MAX_SID;
    if (sid != 0) return 0; /* a stream's window: our one DATA per stream has gone already */
    if (inc == 0) return PS_BLAST_E_PROTOCOL;
    c->send_window += inc;
    return c->send_window > PS_BLAST_MAX_SID ? PS_BLAST_E_FLOW : 0;
  }
  default: return 0; /* PRIORITY and unknown types are ignored (§5.5) */
  }
}

int ps_blast_conn_recv(struct ps_blast_conn *c, const uint8_t *p, size_t len, int64_t now, size_t *used) {
  size_t off = 0;
  int rv = 0;
  while (len - off >= 9) { /* each turn walks a frame (>= 9 bytes) or stops */
    const uint8_t *h = p + off;
    uint32_t flen = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
    if (flen > PS_BLAST_MAX_FRAME) {
      rv = PS_BLAST_E_FRAME_SIZE;
      break;
    }
    if (len - off - 9 < flen || c->out_cap - c->out_len < REPLY_MAX) break;
    rv = frame(c, h[3], h[4], get32(h + 5) & PS_BLAST_MAX_SID, h + 9, flen, now);
    if (rv < 0) break;
    off += 9 + flen;
  }
  *used = off;
  return rv;
}

/* ---- latency histogram ---- */

void ps_blast_hist_add(struct ps_blast_hist *h, int64_t ns) {
  const uint64_t sub = 1u << PS_BLAST_HIST_SUB_BITS;
  uint64_t v = ns < 0 ? 0 : (uint64_t)ns, idx;
  if (v >= (uint64_t)1 << PS_BLAST_HIST_MAX_BITS) v = ((uint64_t)1 << PS_BLAST_HIST_MAX_BITS) - 1;
  if (v < 2 * sub) {
    idx = v;
  } else {
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - PS_BLAST_HIST_SUB_BITS;
    idx = 2 * sub + (shift - 1) * sub + ((v >> shift) - sub);
  }
  h->count[idx]++;
  h->n++;
}

double ps_blast_hist_quantile(const struct ps_blast_hist *h, double q) {
  const uint64_t sub = 1u << PS_BLAST_HIST_SUB_BITS;
  if (h->n == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999999), seen = 0;
  if (rank < 1) rank = 1;
  for (uint64_t i = 0; i < PS_BLAST_HIST_BUCKETS; i++) {
    seen += h->count[i];
    if (seen < rank) continue;
    if (i < 2 * sub) return (double)i;
    uint64_t j = i - 2 * sub, shift = j / sub + 1, lower = (j % sub + sub) << shift;
    return (double)lower + (double)(((uint64_t)1 << shift) - 1) / 2;
  }
  return 0;
}
