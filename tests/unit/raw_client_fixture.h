/* A raw HTTP/1.1 client for tests of a server on the same loop: it connects to 127.0.0.1, writes one request
 * text as soon as it is connected, and keeps every byte it reads until the server closes. */
#ifndef PS_RAW_CLIENT_FIXTURE_H
#define PS_RAW_CLIENT_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct ps_test_client {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  const char *request; /* not copied: it must outlive the write */
  char in[8192];       /* what was read, NUL-terminated */
  size_t in_len;
  bool eof;
  bool closed;
  uint64_t sent_at; /* uv_now() when the request was written */
  uint64_t eof_at;  /* uv_now() when the EOF (or an error) was read */
};

/* Connects to 127.0.0.1:port on `loop`; the request is written from the connect callback. */
void ps_test_client_start(struct ps_test_client *c, uv_loop_t *loop, int port, const char *request);
/* Closes the client and runs its loop until the close callback has run. */
void ps_test_client_close(struct ps_test_client *c);
/* For ps_test_run_until: the server closed the connection (arg is the client). */
bool ps_test_client_eof(void *c);
/* Complete responses in `s`, NUL-terminated, each framed by its Content-Length (HEAD responses are not told
 * apart). NULL counts none. */
int ps_test_count_responses(const char *s);

#endif
