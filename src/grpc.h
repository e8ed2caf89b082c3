/* gRPC over HTTP/2 framing and status, as PROTOCOL-HTTP2.md (grpc/grpc doc) specifies.
 * Pure: no sockets, no nghttp2, no protobuf. */
#ifndef PS_GRPC_H
#define PS_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* https://grpc.github.io/grpc/core/md_doc_statuscodes.html */
enum ps_grpc_status {
  PS_GRPC_OK = 0,
  PS_GRPC_CANCELLED = 1,
  PS_GRPC_UNKNOWN = 2,
  PS_GRPC_INVALID_ARGUMENT = 3,
  PS_GRPC_DEADLINE_EXCEEDED = 4,
  PS_GRPC_NOT_FOUND = 5,
  PS_GRPC_ALREADY_EXISTS = 6,
  PS_GRPC_PERMISSION_DENIED = 7,
  PS_GRPC_RESOURCE_EXHAUSTED = 8,
  PS_GRPC_FAILED_PRECONDITION = 9,
  PS_GRPC_ABORTED = 10,
  PS_GRPC_OUT_OF_RANGE = 11,
  PS_GRPC_UNIMPLEMENTED = 12,
  PS_GRPC_INTERNAL = 13,
  PS_GRPC_UNAVAILABLE = 14,
  PS_GRPC_DATA_LOSS = 15,
  PS_GRPC_UNAUTHENTICATED = 16,
};

#define PS_GRPC_PREFIX_LEN       5
#define PS_GRPC_MAX_MSG_DEFAULT  (4u << 20) /* --grpc-max-msg: 4 MiB, grpc's default receive limit */
#define PS_GRPC_MAX_MESSAGE_TEXT 1024       /* grpc-message is truncated beyond this (before encoding) */

/* "OK", "INVALID_ARGUMENT", ... (the names metrics and logs use). */
const char *ps_grpc_status_name(int status);

/* The one mapping from prescale's negative error codes to what a client sees:
 * UV_EINVAL -> INVALID_ARGUMENT, UV_ETIMEDOUT -> DEADLINE_EXCEEDED (for RPC deadlines; a Prometheus
 * timeout is passed as UV_EAGAIN), UV_EAGAIN/UV_ECONNREFUSED/UV_ECONNRESET/UV_EAI_* /UV_EHOSTUNREACH/
 * UV_EPROTO -> UNAVAILABLE, UV_ENOENT -> NOT_FOUND, UV_E2BIG/UV_ENOBUFS/UV_ENOMEM -> RESOURCE_EXHAUSTED,
 * UV_ENOSYS/UV_ENOTSUP -> UNIMPLEMENTED, UV_ECANCELED -> CANCELLED, UV_EPERM -> FAILED_PRECONDITION,
 * anything else -> INTERNAL; 0 -> OK. */
int ps_grpc_status_from_error(int err);

/* Bytes of memory that many holders (every stream of every connection of a server) draw from: each
 * charges what it reserves before it reserves it, and gives it back when it frees it, so that `used`
 * is the memory held. It never exceeds limit + reserve, and only messages of at most `small` bytes
 * may take it beyond `limit`: big uploads that fill the budget leave room for small requests. */
struct ps_grpc_budget {
  size_t limit;   /* 0: no limit */
  size_t small;   /* messages of at most this many bytes ... */
  size_t reserve; /* ... may use this much beyond limit */
  size_t used;
};

/* Charges n bytes for a message of msg_len bytes: 0, or UV_ENOBUFS (nothing charged) when used + n
 * would exceed what that message may use. A NULL budget always accepts. */
int ps_grpc_budget_charge(struct ps_grpc_budget *b, size_t n, size_t msg_len);
/* Gives back n bytes charged earlier (NULL: nothing to do). */
void ps_grpc_budget_release(struct ps_grpc_budget *b, size_t n);

/* The smallest buffer the reader reserves for a message that spans chunks; it then doubles, never
 * beyond the announced length, so it holds at most twice the bytes that arrived (and not what the
 * prefix announces: a prefix alone costs nothing). */
#define PS_GRPC_READER_MIN_CAP 4096

/* Reassembles length-prefixed messages from DATA chunks of any size: a prefix or a message may span
 * chunks, and one chunk may hold several messages (PROTOCOL-HTTP2.md, "Length-Prefixed-Message"). */
struct ps_grpc_reader {
  size_t max_msg;                /* larger messages are refused before any byte is buffered */
  struct ps_grpc_budget *budget; /* NULL: none; set after ps_grpc_reader_init; charged with `cap` */
  uint8_t prefix[PS_GRPC_PREFIX_LEN];
  size_t prefix_have;
  uint8_t *msg;     /* owned; the message being assembled, grown as its bytes arrive */
  size_t cap;       /* bytes reserved at msg, all charged to budget */
  uint32_t msg_len; /* announced length; still set when feed returns UV_E2BIG */
  uint32_t msg_have;
  uint32_t messages; /* complete messages delivered so far */
};

/* Called for each complete message; msg is valid only during the call. Return 0 to go on, or a negative
 * error to stop (ps_grpc_reader_feed returns it). */
typedef int (*ps_grpc_msg_cb)(void *arg, const uint8_t *msg, size_t len);
/* What a ps_grpc_msg_cb returns for a message beyond the one a unary call carries (INTERNAL): a code the
 * reader itself never returns, so that a switch over ps_grpc_reader_feed's result tells it apart. */
#define PS_GRPC_ERR_TOO_MANY_MESSAGES UV_EOVERFLOW

void ps_grpc_reader_init(struct ps_grpc_reader *r, size_t max_msg);
/* Feeds bytes. Returns 0 or: UV_E2BIG (a message announces more than max_msg: RESOURCE_EXHAUSTED),
 * UV_ENOBUFS (the budget cannot cover the bytes that arrived: RESOURCE_EXHAUSTED), UV_ENOTSUP (compressed
 * flag set: we only accept identity, UNIMPLEMENTED), UV_EPROTO (flag byte not 0/1), UV_ENOMEM, or what cb
 * returned. After an error the reader must not be fed again (ps_grpc_reader_free it). */
int ps_grpc_reader_feed(struct ps_grpc_reader *r, const uint8_t *data, size_t len, ps_grpc_msg_cb cb,
                        void *arg);
/* Inside a ps_grpc_msg_cb only: hands the buffer the message was assembled in to the caller, with its
 * charge of *charged bytes on the budget (the caller releases them when it frees the buffer), so that a
 * message is kept without a copy. NULL when the message was delivered from the fed chunk itself. */
uint8_t *ps_grpc_reader_take(struct ps_grpc_reader *r, size_t *charged);
/* True when bytes of an unfinished message are held (END_STREAM now would truncate a message). */
bool ps_grpc_reader_partial(const struct ps_grpc_reader *r);
/* Frees the message being assembled and gives its bytes back to the budget. */
void ps_grpc_reader_free(struct ps_grpc_reader *r);

/* Appends prefix (uncompressed) + msg. 0 or UV_ENOMEM / UV_E2BIG (len > UINT32_MAX). */
int ps_grpc_frame(struct ps_buf *out, const uint8_t *msg, size_t len);

/* Parses a grpc-timeout header value: 1-8 ASCII digits then H M S m u n. Rounds up to whole ms
 * (a non-zero timeout never becomes 0). 0 or UV_EINVAL. */
int ps_grpc_timeout_parse(const char *v, size_t len, uint64_t *out_ms);

/* Percent-encodes a grpc-message value as the spec says (bytes outside 0x20-0x7E and '%').
 * Appends to out; 0 or UV_ENOMEM. Truncates the input at PS_GRPC_MAX_MESSAGE_TEXT bytes. */
int ps_grpc_message_encode(struct ps_buf *out, const char *text);
/* Inverse, for our own client and tests. */
int ps_grpc_message_decode(struct ps_buf *out, const char *v, size_t len);

/* content-type is "application/grpc" or "application/grpc+proto" (optionally followed by ";params"). */
bool ps_grpc_content_type_ok(const char *v, size_t len);

#endif
