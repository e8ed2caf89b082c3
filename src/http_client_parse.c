/* The HTTP/1.1 response parser of the client (RFC 9112), as llhttp callbacks on a struct ps_http_req: the
 * status, headers (counted toward PS_HTTP_MAX_HEADER_BYTES, Content-Type kept), the body (collected or
 * streamed to the request's sink, bounded) and interim 1xx responses. No socket here: the connection half
 * (http_client_conn.c) feeds it what it reads, and ps_http_parse_response feeds it bytes (tests, fuzzing).
 * The URL splitting of requests is here too (pure). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_client_int.h"

/* ==== URL splitting ================================================================================ */

int ps_hc_url_split(const char *url, char *host, size_t hostlen, int *port, const char **path, bool *https) {
  if (url == NULL) return UV_EINVAL;
  size_t skip = strncasecmp(url, "http://", 7) == 0 ? 7 : strncasecmp(url, "https://", 8) == 0 ? 8 : 0;
  if (skip == 0) return UV_EINVAL;
  size_t ulen = strlen(url);
  if (ulen > PS_HTTP_MAX_URL) return UV_EINVAL;
  /* Bytes that may never appear raw in a request line (RFC 3986 2, RFC 9112 3): refuse rather than send. */
  for (size_t i = 0; i < ulen; i++) {
    unsigned char ch = (unsigned char)url[i];
    if (ch <= 0x20 || ch >= 0x7f || ch == '#') return UV_EINVAL;
  }
  const char *a = url + skip;
  const char *aend = a + strcspn(a, "/?");
  if (*aend == '?') return UV_EINVAL; /* "http://h?x": a query needs a path to hang on */
  if (memchr(a, '@', (size_t)(aend - a)) != NULL) return UV_EINVAL; /* userinfo: never for Prometheus */
  int pt;
  if (ps_hostport_parse(a, (size_t)(aend - a), PS_HOSTPORT_PORT_OPTIONAL, host, hostlen, &pt) != 0)
    return UV_EINVAL;
  *port = pt != PS_HOSTPORT_NO_PORT ? pt : skip == 8 ? HTTPS_DEFAULT_PORT : HTTP_DEFAULT_PORT;
  *path = *aend == '\0' ? "/" : aend;
  if (https != NULL) *https = skip == 8;
  return 0;
}

int ps_http_url_split(const char *url, char *host, size_t hostlen, int *port, const char **path) {
  return ps_hc_url_split(url, host, hostlen, port, path, NULL);
}

/* ==== response buffers ============================================================================= */

/* The buffers a response is parsed into (ps_http_get's requests and ps_http_parse_response's). */
void ps_hc_req_bufs_init(struct ps_http_req *r) {
  ps_buf_init(&r->body);
  ps_buf_init(&r->hname);
  ps_buf_init(&r->hval);
  ps_buf_init(&r->content_type);
}

void ps_hc_req_bufs_free(struct ps_http_req *r) {
  ps_buf_free(&r->body);
  ps_buf_free(&r->hname);
  ps_buf_free(&r->hval);
  ps_buf_free(&r->content_type);
}

void ps_hc_req_reset_response(struct ps_http_req *r) {
  r->got_bytes = false;
  r->complete = false;
  r->parse_err = 0;
  r->header_bytes = 0;
  r->status = 0;
  r->body_seen = 0;
  ps_buf_reset(&r->body);
  ps_buf_reset(&r->hname);
  ps_buf_reset(&r->hval);
  ps_buf_reset(&r->content_type);
}

/* ==== response parsing (llhttp callbacks) ========================================================== */

/* The parser's data is the request it parses for: a connection's, or ps_http_parse_response's. */
static struct ps_http_req *parser_req(llhttp_t *p) { return p->data; }

static int count_header_bytes(struct ps_http_req *r, size_t n) {
  r->header_bytes += n;
  if (r->header_bytes > PS_HTTP_MAX_HEADER_BYTES) {
    r->parse_err = UV_E2BIG;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response headers exceed %u bytes", URL_IN_MSG_MAX,
             r->url, PS_HTTP_MAX_HEADER_BYTES);
    return -1;
  }
  return 0;
}

static size_t body_limit(const struct ps_http_req *r) {
  return r->max_body != 0 ? r->max_body : PS_HTTP_MAX_RESPONSE;
}

static int on_status(llhttp_t *p, const char *at, size_t n) { return count_header_bytes(parser_req(p), n); }

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_req *r = parser_req(p);
  if (count_header_bytes(r, n) != 0) return -1;
  return ps_buf_append(&r->hname, at, n) == 0 ? 0 : -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_req *r = parser_req(p);
  if (count_header_bytes(r, n) != 0) return -1;
  return ps_buf_append(&r->hval, at, n) == 0 ? 0 : -1;
}

static int on_header_value_complete(llhttp_t *p) {
  struct ps_http_req *r = parser_req(p);
  if (count_header_bytes(r, HEADER_LINE_OVERHEAD) != 0) return -1;
  if (r->hname.len == 12 && strncasecmp(r->hname.data, "content-type", 12) == 0) {
    ps_buf_reset(&r->content_type);
    if (ps_buf_append(&r->content_type, r->hval.data ? r->hval.data : "", r->hval.len) != 0) return -1;
  }
  ps_buf_reset(&r->hname);
  ps_buf_reset(&r->hval);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct ps_http_req *r = parser_req(p);
  r->status = llhttp_get_status_code(p);
  if (r->status < 100 || r->status > 999) { /* status-code = 3DIGIT (RFC 9112 4) */
    r->parse_err = UV_EPROTO;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: malformed HTTP response: status code %d", URL_IN_MSG_MAX,
             r->url, r->status);
    return -1;
  }
  /* Refuse a declared oversize body at once rather than after reading the limit's worth of it. */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > body_limit(r)) {
    r->parse_err = UV_E2BIG;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response body exceeds %zu bytes (Content-Length %llu)",
             URL_IN_MSG_MAX, r->url, body_limit(r), (unsigned long long)p->content_length);
    return -1;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct ps_http_req *r = parser_req(p);
  if (n > body_limit(r) - r->body_seen) {
    r->parse_err = UV_E2BIG;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response body exceeds %zu bytes", URL_IN_MSG_MAX, r->url,
             body_limit(r));
    return -1;
  }
  r->body_seen += n;
  if (r->body_cb != NULL) {
    int err = r->body_cb(r->body_arg, at, n);
    if (err != 0) {
      r->parse_err = err;
      snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: response body refused: %s", URL_IN_MSG_MAX, r->url,
               uv_strerror(err));
      return -1;
    }
    return 0;
  }
  if (ps_buf_append(&r->body, at, n) != 0) {
    r->parse_err = UV_ENOMEM;
    snprintf(r->errmsg, sizeof r->errmsg, "GET %.*s: out of memory", URL_IN_MSG_MAX, r->url);
    return -1;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct ps_http_req *r = parser_req(p);
  /* Interim 1xx responses precede the real one (RFC 9110 15.2): forget them and keep parsing. */
  if (r->status >= 100 && r->status < 200) {
    size_t hb = r->header_bytes; /* interim headers still count: a stream of 1xx must hit the limit */
    ps_hc_req_reset_response(r);
    r->header_bytes = hb;
    r->got_bytes = true;
    return 0;
  }
  r->complete = true;
  return HPE_PAUSED; /* stop at the end of this response; anything after it is not ours */
}

const llhttp_settings_t ps_hc_parser_settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* At EOF: whether the response is complete, a body delimited by the close of the connection (RFC 9112
 * 6.3 item 8) ending here. */
bool ps_hc_complete_at_eof(llhttp_t *p, const struct ps_http_req *r) {
  llhttp_errno_t e = llhttp_finish(p);
  return (e == HPE_OK || e == HPE_PAUSED) && r->complete;
}

/* ==== pure response parsing (tests, fuzzing) ======================================================= */

int ps_http_parse_response(const char *data, size_t len, size_t piece, int *status, struct ps_buf *body) {
  struct ps_http_req *r = calloc(1, sizeof *r);
  if (r == NULL) return UV_ENOMEM;
  r->url = (char *)"(parse)";
  ps_hc_req_bufs_init(r);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &ps_hc_parser_settings);
  parser.data = r;
  if (piece == 0) piece = len ? len : 1;
  int err = UV_ECONNRESET; /* what a connection reports when the bytes end before the response */
  size_t off = 0;
  while (off < len) {
    size_t n = len - off < piece ? len - off : piece;
    r->got_bytes = true;
    llhttp_errno_t e = llhttp_execute(&parser, data + off, n);
    off += n;
    if (e == HPE_PAUSED && r->complete) {
      err = 0;
      break;
    }
    if (e != HPE_OK) {
      err = r->parse_err != 0 ? r->parse_err : UV_EPROTO;
      break;
    }
  }
  if (off >= len && err == UV_ECONNRESET && r->got_bytes && ps_hc_complete_at_eof(&parser, r)) err = 0;
  if (err == 0) {
    if (status != NULL) *status = r->status;
    if (body != NULL && ps_buf_append(body, r->body.data ? r->body.data : "", r->body.len) != 0)
      err = UV_ENOMEM;
  }
  ps_hc_req_bufs_free(r);
  free(r);
  return err;
}
