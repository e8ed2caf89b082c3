/* The server side of an HTTP/1.1 connection (RFC 9112), on top of net.c: parsing with llhttp, the limits
 * and the status each maps to, keep-alive, pipelining with responses in request order, and response
 * framing. A server built on it (health_http.c, the demo app's demo_http.c) supplies only its routes: a
 * handler that gets each complete request and answers it, at once or later, with ps_http_server_respond.
 *
 * Requests of a connection are handled one at a time: while a request waits for its answer nothing more
 * of its connection is parsed, and the bytes of the requests pipelined behind it wait unparsed (up to
 * PS_HTTP_SERVER_MAX_STASH). So responses leave in request order (RFC 9112 9.3.2) without any response being
 * buffered here, and a slow answer delays only its own connection. */
#ifndef PS_HTTP_SERVER_H
#define PS_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "net.h"

/* What a client sees for each limit and error. Every one of them closes the connection after the
 * response: once a message is refused part-way, where the next one starts is unknown (RFC 9112 9.6). */
/* Request line + header section, as sent: beyond -> 414 while the request target is still being read
 * (RFC 9112 3 requires 414 for a target too long), 431 otherwise (RFC 6585 5). Exact, whatever the reads. */
#define PS_HTTP_SERVER_MAX_HEAD  (16u << 10)
/* Request body as sent, chunk framing included: beyond -> 413 (RFC 9110 15.5.14). A Content-Length above
 * it gets the 413 before any of the body is read. */
#define PS_HTTP_SERVER_MAX_BODY  (64u << 10)
/* Input held unparsed, behind a request waiting for its answer or while the client does not read our
 * responses (net.c stops reading past PS_NET_HIGH_WATER, so only reads already under way land here):
 * beyond -> the connection is closed without a response. */
#define PS_HTTP_SERVER_MAX_STASH PS_NET_HIGH_WATER
/* Other refusals: unparsable (llhttp, strict) -> 400; an HTTP/1.1 request without a Host header, or any
 * with several -> 400 (RFC 9112 3.2); a major version other than 1 -> 505; out of memory -> 500. */

/* A request handed to the handler. Owned by the application from the handler call until it passes it to
 * ps_http_server_respond, which it must do exactly once, whether or not the connection is still open. */
struct ps_http_server_req;
/* One connection's state: for a server's struct ps_net_proto, or in memory (fuzzing, tests). */
struct ps_http_server_conn;

struct ps_http_server_config {
  /* Called once per complete request, in order. It answers with ps_http_server_respond, during the call or
   * later; until then the connection parses nothing more and its idle timeout is suspended. */
  void (*handler)(struct ps_http_server_req *req, void *arg);
  /* May be NULL. The connection of a request not answered yet has closed (the client went away, or the
   * listener is closing): nothing can be sent any more. The request must still be passed to
   * ps_http_server_respond (which then only frees it); this lets the application do it now rather than when
   * its answer would have been ready. Runs from a close callback, never from inside the handler. */
  void (*on_cancel)(struct ps_http_server_req *req, void *arg);
  /* May be NULL. A request was refused by this layer (a parse error or a limit) and its error response
   * queued; `path` is what was received of its target's path (see ps_http_server_req_path), possibly empty.
   * For metrics. */
  void (*on_reject)(int status, const char *path, size_t path_len, void *arg);
  void *arg;
  /* A connection is closed after this long without a request to answer: counted from the accept and
   * from each response, which also bounds slow request heads (bytes do not restart it, so a request must be
   * complete within it, however it trickles in); suspended while a request is answered later. Must be > 0
   * (ignored in memory mode). Whenever no request waits for its answer the connection is also idle for
   * net.c (ps_net_set_idle): at the listener's connection limit, the one idle longest, counted from its
   * accept or its last response, is closed (no response) to let a new connection in. */
  uint64_t idle_ms;
  /* The value of the Allow header sent with every 405 (RFC 9110 15.5.6 requires one), e.g. "GET, HEAD". */
  const char *allow;
  /* Prepended to this layer's log messages ("http " gives "http request rejected"); may be NULL. */
  const char *log_prefix;
};

/* ---- requests ------------------------------------------------------------------------------------ */

/* The method as llhttp names it: "GET", "HEAD", "POST"... */
const char *ps_http_server_req_method(const struct ps_http_server_req *req);
/* The path of the request target, query and fragment cut: origin-form "/a?x" gives "/a", and
 * absolute-form "http://host/a" (which a server MUST accept, RFC 9112 3.2.2) gives "/a" too, "" when it
 * has no path. Not percent-decoded. Valid until the request is answered. */
const char *ps_http_server_req_path(const struct ps_http_server_req *req, size_t *len);

/* One pointer of the application's, kept with the request (NULL until set), e.g. to find its own state
 * again in on_cancel. */
void ps_http_server_req_set_data(struct ps_http_server_req *req, void *data);
void *ps_http_server_req_data(const struct ps_http_server_req *req);

/* The Content-Type of plain-text answers (error bodies here, and the servers' own). */
#define PS_HTTP_SERVER_TEXT_PLAIN "text/plain; charset=utf-8"

/* Ask for the connection to close once this response is written ("Connection: close" is sent). */
#define PS_HTTP_SERVER_CLOSE 1u

/* Answers `req` and frees it (the application's pointer is dead from here, whatever the result).
 * Content-Length is always sent, so keep-alive works for HTTP/1.0 clients too; a HEAD request gets the
 * header fields of a GET and no content (RFC 9110 9.3.2); the body is copied. The connection stays open
 * if the request allows it (RFC 9112 9.3) and `flags` has no PS_HTTP_SERVER_CLOSE. A later answer never runs
 * the handler from inside this call: the requests pipelined behind it are parsed from the loop.
 * 0 when queued; UV_EPIPE when the connection is closed or closing (nothing is sent); UV_ENOMEM. */
int ps_http_server_respond(struct ps_http_server_req *req, int status, const char *content_type,
                           const void *body, size_t len, unsigned flags);

/* The reason phrase of a status line for the codes sent by prescale's servers (RFC 9110 15); "Internal
 * Server Error" for any other. */
const char *ps_http_server_reason(int status);

/* ---- on net.c ------------------------------------------------------------------------------------ */

/* For a server's ps_net_proto.on_open: the state of a new connection, or NULL (out of memory). `cfg` is
 * copied; what its pointers point to must outlive the connection. The other three callbacks of the
 * server's ps_net_proto are the functions below, as they are. */
struct ps_http_server_conn *ps_http_server_open(struct ps_net_conn *nc,
                                                const struct ps_http_server_config *cfg);
int ps_http_server_on_read(void *conn, const uint8_t *data, size_t len);
void ps_http_server_on_drain(void *conn);
/* Cancels a request still waiting for its answer (cfg.on_cancel), then frees the state once its timer
 * has closed. */
void ps_http_server_on_close(void *conn);

/* ---- in memory (no socket, no loop) --------------------------------------------------------------- */

/* A connection whose responses are appended to `out` (not owned). No idle timeout; NULL when out of
 * memory. */
struct ps_http_server_conn *ps_http_server_mem_new(const struct ps_http_server_config *cfg,
                                                   struct ps_buf *out);
/* Delivers one read. Input held back (behind a request answered later) is parsed first, so a call with
 * len 0 just resumes after a late answer. 0 while the connection would stay open, UV_EOF once it would
 * close (further input is ignored). */
int ps_http_server_mem_feed(struct ps_http_server_conn *c, const uint8_t *data, size_t len);
/* As if the client went away: a request not answered yet is cancelled (cfg.on_cancel). */
void ps_http_server_mem_free(struct ps_http_server_conn *c);
/* One connection fed `data` as successive reads of at most `chunk` bytes (0: one read), then freed.
 * 0 when it would stay open, UV_EOF when it would close, UV_ENOMEM. */
int ps_http_server_feed_mem(const struct ps_http_server_config *cfg, const uint8_t *data, size_t len,
                            size_t chunk, struct ps_buf *out);

#endif
