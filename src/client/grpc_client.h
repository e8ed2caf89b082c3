/* prescale's own gRPC client: h2c (HTTP/2 over cleartext TCP, prior knowledge) on libuv + nghttp2, for
 * unary and server-streaming calls (PROTOCOL-HTTP2.md, grpc/grpc doc). One client is one connection.
 *
 * It owns its socket (this module is the client's I/O module, as http_client.c is for HTTP/1.1); the
 * gRPC framing, grpc-message coding and status names come from grpc.c. It knows nothing of protobuf:
 * requests and responses are serialized messages.
 *
 * Every callback runs on the loop, never from inside the function that started the operation. A
 * callback may call any function of this module, ps_grpc_client_close included. */
#ifndef PS_GRPC_CLIENT_H
#define PS_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PS_GRPC_CLIENT_CONNECT_TIMEOUT_MS 5000       /* default: per address, TCP connect + server SETTINGS */
#define PS_GRPC_CLIENT_MAX_TARGET         300        /* bytes of "host:port" */
#define PS_GRPC_CLIENT_MAX_PATH           256        /* bytes of a method path "/pkg.Service/Method" */
#define PS_GRPC_CLIENT_INITIAL_WINDOW     (1u << 20) /* per-stream receive window we advertise */
#define PS_GRPC_CLIENT_CONN_WINDOW        (4u << 20) /* connection receive window */
#define PS_GRPC_CLIENT_MAX_HEADER_LIST                                                                       \
  (64u << 10)                                      /* response header/trailer block bytes (RFC 9113 6.5.2)   \
                                                    */
#define PS_GRPC_CLIENT_MAX_MESSAGE_TEXT 4096       /* decoded grpc-message bytes kept; longer is cut */
#define PS_GRPC_CLIENT_HIGH_WATER       (1u << 20) /* frames are not pulled from nghttp2 while more is unsent */
#define PS_GRPC_CLIENT_CLOSE_LINGER_MS  1000 /* ps_grpc_client_close waits this long for GOAWAY to go out */
#define PS_GRPC_CLIENT_MAX_TIMEOUT_MS   (99999999ull * 1000) /* grpc-timeout: at most 8 digits (seconds) */

struct ps_grpc_client;
struct ps_grpc_call;

struct ps_grpc_client_opts {
  const char *target;          /* "host:port" or "[v6]:port"; host is resolved with uv_getaddrinfo */
  uint64_t connect_timeout_ms; /* 0: PS_GRPC_CLIENT_CONNECT_TIMEOUT_MS */
  size_t max_msg;              /* largest response message; 0: PS_GRPC_MAX_MSG_DEFAULT (4 MiB) */
};

/* The connection is ready (err 0: the server's SETTINGS arrived) or could not be made (err < 0:
 * UV_ECONNREFUSED, UV_ETIMEDOUT, UV_EAI_*, UV_EPROTO when the peer does not speak HTTP/2, UV_ECANCELED
 * when closed first). errmsg is one line naming the target, e.g.
 * "cannot connect to 127.0.0.1:9: connection refused"; NULL when err is 0. Runs once. */
typedef void (*ps_grpc_connect_cb)(void *arg, int err, const char *errmsg);

/* Starts resolving and connecting. Calls may be started at once; they are sent when the connection is
 * ready. cb may be NULL. 0 with *out set, or UV_EINVAL (malformed target) / UV_ENOMEM (cb never runs). */
int ps_grpc_client_new(uv_loop_t *loop, const struct ps_grpc_client_opts *opts, ps_grpc_connect_cb cb,
                       void *arg, struct ps_grpc_client **out);

/* Ends the calls still open with CANCELLED (their done callbacks run, from inside this call), sends
 * GOAWAY, and closes the connection. The memory goes in close callbacks: run the loop afterwards until
 * it is empty. A pending connect callback runs with UV_ECANCELED. Idempotent. */
void ps_grpc_client_close(struct ps_grpc_client *c);

/* "host:port" as given. */
const char *ps_grpc_client_target(const struct ps_grpc_client *c);

/* ---- calls ------------------------------------------------------------------------------------- */

/* A response message of a server-streaming call; msg is valid only during the call. */
typedef void (*ps_grpc_msg_fn)(void *arg, const uint8_t *msg, size_t len);
/* The call ended, exactly once (unless cancelled first). status is a gRPC status (grpc.h); message is
 * the decoded grpc-message, or a description of what went wrong locally ("deadline exceeded after
 * 10000 ms", "connection to 127.0.0.1:6000 lost: EOF"); "" when none. For a unary call, msg/len is the
 * one response message when status is OK (NULL/0 otherwise); valid only during the call. For a stream,
 * msg is NULL. How statuses arise:
 *  - grpc-status of the trailers (or of a Trailers-Only response) when present, whatever :status says;
 *  - else a :status other than 200 maps as http-grpc-status-mapping.md (grpc/grpc doc) says: 400
 *    INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504
 *    UNAVAILABLE, anything else UNKNOWN;
 *  - else (200 and no grpc-status) UNKNOWN, or INTERNAL when the stream ended without trailers;
 *  - the deadline passed: DEADLINE_EXCEEDED (the stream is reset with CANCEL);
 *  - the server reset the stream: REFUSED_STREAM -> UNAVAILABLE, CANCEL -> CANCELLED,
 *    ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED, others INTERNAL (PROTOCOL-HTTP2.md, "Errors");
 *  - the connection could not be made, was lost, or got GOAWAY before the stream began: UNAVAILABLE;
 *  - a response message over max_msg: RESOURCE_EXHAUSTED; a compressed one, a bad frame or a message cut
 *    by END_STREAM: INTERNAL; a unary call with OK and not exactly one message: INTERNAL. */
typedef void (*ps_grpc_done_fn)(void *arg, int status, const char *message, const uint8_t *msg, size_t len);

/* Starts a call of `path` ("/externalscaler.ExternalScaler/IsActive") with one request message, sent
 * with END_STREAM. timeout_ms > 0 is sent as grpc-timeout (the time left when the request goes out) and
 * enforced here; 0 means no deadline. The request bytes are copied.
 * Unary: done gets the one response message. Server streaming (on_msg non-NULL): each message goes to
 * on_msg as it completes, then done runs with msg NULL.
 * Returns 0 (done will run later), or, with no callback ever: UV_EINVAL (bad path, timeout over
 * PS_GRPC_CLIENT_MAX_TIMEOUT_MS), UV_ENOTCONN (the connection failed, was lost, got GOAWAY or is
 * closing: make a new client), UV_E2BIG (request over 4 GiB), UV_ENOMEM.
 * *out (may be NULL) is valid until done runs or the call is cancelled. */
int ps_grpc_client_call(struct ps_grpc_client *c, const char *path, const uint8_t *req, size_t len,
                        uint64_t timeout_ms, ps_grpc_msg_fn on_msg, ps_grpc_done_fn done, void *arg,
                        struct ps_grpc_call **out);

/* Cancels the call: RST_STREAM(CANCEL) goes to the server (PROTOCOL-HTTP2.md: a client cancels so), and
 * no callback of the call runs afterwards. No-op on NULL. */
void ps_grpc_client_cancel(struct ps_grpc_call *call);

/* Calls started and not yet ended. */
size_t ps_grpc_client_open_calls(const struct ps_grpc_client *c);

/* The gRPC status for an HTTP :status without grpc-status (http-grpc-status-mapping.md). */
int ps_grpc_status_from_http(int http_status);

/* Writes a grpc-timeout value for ms (> 0) into buf (at least 16 bytes): whole milliseconds while they
 * fit in 8 digits, else seconds, minutes or hours rounded up. Exposed for tests. */
void ps_grpc_client_format_timeout(uint64_t ms, char *buf, size_t len);

#endif
