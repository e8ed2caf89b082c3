/* The test's own side of an HTTP/2 connection: an nghttp2 session (client or server, with the test's
 * callbacks) on a libuv TCP handle, for suites that talk to prescale's server or client over loopback. */
#ifndef PS_H2PEER_FIXTURE_H
#define PS_H2PEER_FIXTURE_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <uv.h>

struct ps_test_h2peer {
  uv_tcp_t tcp; /* connected or accepted by the test */
  nghttp2_session *s;
  bool eof; /* reading ended (EOF or an error): nothing more is sent either */
};

/* Writes every frame the session has queued (each write owns its copy); nothing once reading ended or
 * the handle is closing. */
void ps_test_h2peer_flush(struct ps_test_h2peer *p);
/* Reads from the handle into the session (which must take every byte), flushing its answers. */
void ps_test_h2peer_read_start(struct ps_test_h2peer *p);

#endif
