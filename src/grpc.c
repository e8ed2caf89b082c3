/* gRPC message framing, grpc-timeout, grpc-message and status codes, as PROTOCOL-HTTP2.md
 * (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) specifies. Pure: no I/O. */
#include "grpc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

/* ---- status codes --------------------------------------------------------------------------- */

static const char *const status_names[] = {
    "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED",
};

const char *ps_grpc_status_name(int status) {
  if (status < 0 || (size_t)status >= sizeof status_names / sizeof status_names[0]) return "UNKNOWN";
  return status_names[status];
}

int ps_grpc_status_from_error(int err) {
  switch (err) {
  case 0: return PS_GRPC_OK;
  case UV_EINVAL: return PS_GRPC_INVALID_ARGUMENT;
  case UV_ETIMEDOUT: return PS_GRPC_DEADLINE_EXCEEDED;
  case UV_EAGAIN:
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_EHOSTUNREACH:
  case UV_EPROTO:
  case UV_EAI_ADDRFAMILY:
  case UV_EAI_AGAIN:
  case UV_EAI_BADFLAGS:
  case UV_EAI_BADHINTS:
  case UV_EAI_CANCELED:
  case UV_EAI_FAIL:
  case UV_EAI_FAMILY:
  case UV_EAI_MEMORY:
  case UV_EAI_NODATA:
  case UV_EAI_NONAME:
  case UV_EAI_OVERFLOW:
  case UV_EAI_PROTOCOL:
  case UV_EAI_SERVICE:
  case UV_EAI_SOCKTYPE: return PS_GRPC_UNAVAILABLE;
  case UV_ENOENT: return PS_GRPC_NOT_FOUND;
  case UV_E2BIG:
  case UV_ENOBUFS:
  case UV_ENOMEM: return PS_GRPC_RESOURCE_EXHAUSTED;
  case UV_ENOSYS:
  case UV_ENOTSUP: return PS_GRPC_UNIMPLEMENTED;
  case UV_ECANCELED: return PS_GRPC_CANCELLED;
  case UV_EPERM: return PS_GRPC_FAILED_PRECONDITION;
  default: return PS_GRPC_INTERNAL;
  }
}

/* ---- budget --------------------------------------------------------------------------------- */

int ps_grpc_budget_charge(struct ps_grpc_budget *b, size_t n, size_t msg_len) {
  if (b == NULL) return 0;
  if (b->limit != 0) {
    size_t extra = msg_len <= b->small ? b->reserve : 0;
    size_t cap = b->limit > SIZE_MAX - extra ? SIZE_MAX : b->limit + extra;
    if (b->used > cap || n > cap - b->used) return UV_ENOBUFS;
  }
  b->used += n;
  return 0;
}

void ps_grpc_budget_release(struct ps_grpc_budget *b, size_t n) {
  if (b == NULL) return;
  b->used = n > b->used ? 0 : b->used - n; /* never below 0, whatever a caller does wrong */
}

/* ---- message reader ------------------------------------------------------------------------- */

void ps_grpc_reader_init(struct ps_grpc_reader *r, size_t max_msg) {
  memset(r, 0, sizeof *r);
  r->max_msg = max_msg;
}

/* The 1-byte Compressed-Flag: 0 = identity, 1 = compressed with grpc-encoding. We never negotiate
 * compression (we answer grpc-accept-encoding: identity), so 1 is refused; anything else is not gRPC. */
static int check_flag(uint8_t flag) {
  if (flag == 0) return 0;
  return flag == 1 ? UV_ENOTSUP : UV_EPROTO;
}

/* Makes room for `need` bytes of the message (need <= msg_len). The prefix's length is the peer's
 * claim, not what it sent: the buffer grows with the bytes that actually arrive, doubling (so a message
 * costs O(log n) reallocations) but never beyond the announced length. When the budget cannot cover
 * the doubled size, exactly what arrived is tried before giving up. */
static int reserve(struct ps_grpc_reader *r, size_t need) {
  if (need <= r->cap) return 0;
  size_t want = r->cap < PS_GRPC_READER_MIN_CAP / 2 ? PS_GRPC_READER_MIN_CAP : r->cap * 2;
  if (want > r->msg_len) want = r->msg_len;
  if (want < need) want = need;
  if (ps_grpc_budget_charge(r->budget, want - r->cap, r->msg_len) != 0) {
    want = need;
    if (ps_grpc_budget_charge(r->budget, want - r->cap, r->msg_len) != 0) return UV_ENOBUFS;
  }
  uint8_t *p = realloc(r->msg, want);
  if (p == NULL) {
    ps_grpc_budget_release(r->budget, want - r->cap);
    return UV_ENOMEM;
  }
  r->msg = p;
  r->cap = want;
  return 0;
}

/* Frees the buffer of the message being assembled and gives its charge back. */
static void drop_msg(struct ps_grpc_reader *r) {
  free(r->msg);
  ps_grpc_budget_release(r->budget, r->cap);
  r->msg = NULL;
  r->cap = 0;
}

int ps_grpc_reader_feed(struct ps_grpc_reader *r, const uint8_t *data, size_t len, ps_grpc_msg_cb cb,
                        void *arg) {
  while (len > 0) {
    if (r->prefix_have < PS_GRPC_PREFIX_LEN) {
      /* A prefix may span chunks (PROTOCOL-HTTP2.md: DATA frame boundaries are not message ones). */
      size_t n = PS_GRPC_PREFIX_LEN - r->prefix_have;
      if (n > len) n = len;
      memcpy(r->prefix + r->prefix_have, data, n);
      if (r->prefix_have == 0) {
        int err = check_flag(r->prefix[0]);
        if (err != 0) return err;
      }
      r->prefix_have += n;
      data += n;
      len -= n;
      if (r->prefix_have < PS_GRPC_PREFIX_LEN) return 0;
      uint32_t mlen = (uint32_t)r->prefix[1] << 24 | (uint32_t)r->prefix[2] << 16 |
                      (uint32_t)r->prefix[3] << 8 | (uint32_t)r->prefix[4];
      r->msg_len = mlen; /* kept on E2BIG so the caller can name the announced size */
      r->msg_have = 0;
      /* Refuse before buffering a byte: the length is the peer's claim, not what it sent. */
      if (mlen > r->max_msg) return UV_E2BIG;
      if (mlen == 0 || len >= mlen) {
        /* The whole message is in this chunk: deliver it in place, without a copy. */
        r->prefix_have = 0;
        r->messages++;
        int err = cb(arg, mlen == 0 ? (const uint8_t *)"" : data, mlen);
        if (err != 0) return err;
        data += mlen;
        len -= mlen;
        continue;
      }
    }
    if (len == 0) return 0; /* the chunk ended with the prefix: nothing to reserve yet */
    size_t n = r->msg_len - r->msg_have;
    if (n > len) n = len;
    int err = reserve(r, r->msg_have + n);
    if (err != 0) return err;
    memcpy(r->msg + r->msg_have, data, n);
    r->msg_have += (uint32_t)n;
    data += n;
    len -= n;
    if (r->msg_have < r->msg_len) return 0;
    r->prefix_have = 0;
    r->messages++;
    err = cb(arg, r->msg, r->msg_len); /* cb may take the buffer (ps_grpc_reader_take) */
    drop_msg(r);                       /* freed here whatever cb returns, unless it took it */
    if (err != 0) return err;
  }
  return 0;
}

uint8_t *ps_grpc_reader_take(struct ps_grpc_reader *r, size_t *charged) {
  uint8_t *p = r->msg;
  *charged = p != NULL ? r->cap : 0;
  r->msg = NULL;
  r->cap = 0;
  return p;
}

bool ps_grpc_reader_partial(const struct ps_grpc_reader *r) { return r->prefix_have > 0; }

void ps_grpc_reader_free(struct ps_grpc_reader *r) {
  drop_msg(r);
  r->prefix_have = 0;
  r->msg_have = 0;
}

int ps_grpc_frame(struct ps_buf *out, const uint8_t *msg, size_t len) {
  if (len > UINT32_MAX) return UV_E2BIG;
  uint8_t prefix[PS_GRPC_PREFIX_LEN] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                                        (uint8_t)len};
  int err = ps_buf_reserve(out, PS_GRPC_PREFIX_LEN + len);
  if (err != 0) return err;
  ps_buf_append(out, prefix, sizeof prefix);
  return ps_buf_append(out, msg, len);
}

/* ---- grpc-timeout --------------------------------------------------------------------------- */

#define TIMEOUT_MAX_DIGITS                                                                                   \
  8 /* PROTOCOL-HTTP2.md: TimeoutValue is {positive integer as ASCII, at most 8 digits} */

int ps_grpc_timeout_parse(const char *v, size_t len, uint64_t *out_ms) {
  if (len < 2 || len > TIMEOUT_MAX_DIGITS + 1) return UV_EINVAL;
  uint64_t n = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    if (v[i] < '0' || v[i] > '9') return UV_EINVAL;
    n = n * 10 + (uint64_t)(v[i] - '0');
  }
  /* The largest value, 99999999 hours, is 3.6e14 ms: no overflow in 64 bits. Sub-millisecond units
   * round up so that a short but non-zero deadline is not mistaken for an expired one. */
  switch (v[len - 1]) {
  case 'H': *out_ms = n * 3600000u; break;
  case 'M': *out_ms = n * 60000u; break;
  case 'S': *out_ms = n * 1000u; break;
  case 'm': *out_ms = n; break;
  case 'u': *out_ms = (n + 999u) / 1000u; break;
  case 'n': *out_ms = (n + 999999u) / 1000000u; break;
  default: return UV_EINVAL;
  }
  return 0;
}

/* ---- grpc-message --------------------------------------------------------------------------- */

static const char hex_digits[] = "0123456789ABCDEF";

int ps_grpc_message_encode(struct ps_buf *out, const char *text) {
  size_t len = strlen(text);
  if (len > PS_GRPC_MAX_MESSAGE_TEXT) {
    len = PS_GRPC_MAX_MESSAGE_TEXT;
    /* Do not cut a UTF-8 sequence in half: back up over continuation bytes (10xxxxxx). */
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--;
  }
  int err = ps_buf_reserve(out, len * 3);
  if (err != 0) return err;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)text[i];
    /* PROTOCOL-HTTP2.md: Percent-Byte-Unencoded is 0x20-0x24 / 0x26-0x7E; the rest is %XX. */
    if (ch >= 0x20 && ch <= 0x7E && ch != '%') {
      out->data[out->len++] = (char)ch;
    } else {
      out->data[out->len++] = '%';
      out->data[out->len++] = hex_digits[ch >> 4];
      out->data[out->len++] = hex_digits[ch & 15];
    }
  }
  out->data[out->len] = '\0';
  return 0;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int ps_grpc_message_decode(struct ps_buf *out, const char *v, size_t len) {
  int err = ps_buf_reserve(out, len);
  if (err != 0) return err;
  for (size_t i = 0; i < len; i++) {
    int hi = -1, lo = -1;
    if (v[i] == '%' && i + 2 < len) {
      hi = hex_value(v[i + 1]);
      lo = hex_value(v[i + 2]);
    }
    /* The spec asks decoders to keep a malformed %-sequence as it is rather than fail the call. */
    if (hi >= 0 && lo >= 0) {
      out->data[out->len++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out->data[out->len++] = v[i];
    }
  }
  out->data[out->len] = '\0';
  return 0;
}

/* ---- content-type --------------------------------------------------------------------------- */

static bool prefix_ci(const char *v, size_t len, const char *p, size_t plen) {
  return len >= plen && strncasecmp(v, p, plen) == 0;
}

bool ps_grpc_content_type_ok(const char *v, size_t len) {
  static const char base[] = "application/grpc";
  static const char proto[] = "+proto";
  if (!prefix_ci(v, len, base, sizeof base - 1)) return false;
  v += sizeof base - 1;
  len -= sizeof base - 1;
  if (prefix_ci(v, len, proto, sizeof proto - 1)) {
    v += sizeof proto - 1;
    len -= sizeof proto - 1;
  }
  while (len > 0 && (*v == ' ' || *v == '\t')) v++, len--;
  return len == 0 || *v == ';';
}
