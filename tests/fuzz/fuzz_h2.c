/* Fuzzes the HTTP/2 server input path (src/h2_conn.c): the bytes after the client preface go through
 * ps_h2_conn_feed, the function a socket's on_read uses, in chunks picked by the input.
 * Input: byte 0 picks the chunk size (1-256), the rest is HTTP/2 frames. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "grpc.h"
#include "h2_conn.h"
#include "log.h"

#define MAX_HELD 64
static struct ps_call *held[MAX_HELD];

static void on_cancel(struct ps_call *call, void *arg) {
  for (int i = 0; i < MAX_HELD; i++)
    if (held[i] == call) held[i] = NULL;
}

/* Exercises the call API the way service.c would: answer now, stream, or hold for later. */
static void dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len, void *arg) {
  const char *m = ps_call_method(call);
  if (strcmp(m, "E") == 0) {
    ps_call_send(call, msg, len);
    ps_call_finish(call, 0, NULL);
  } else if (strcmp(m, "H") == 0) {
    for (int i = 0; i < MAX_HELD; i++)
      if (held[i] == NULL) {
        held[i] = call;
        ps_call_on_cancel(call, on_cancel, NULL);
        if (len > 0) ps_call_send(call, msg, len);
        return;
      }
    ps_call_finish(call, 8, "too many held");
  } else {
    ps_call_finish(call, 12, "unknown method \xff%");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uv_loop_t loop;
  static bool init;
  if (!init) {
    uv_loop_init(&loop);
    ps_log_setup(PS_LOG_ERROR, PS_LOG_TEXT, NULL);
    init = true;
  }
  if (size < 1) return 0;
  size_t chunk = (size_t)data[0] + 1;
  data++, size--;
  /* A budget smaller than two messages, so that refusals over it are reached too. */
  struct ps_h2_server srv = {.loop = &loop, .dispatch = dispatch, .max_msg = 4096, .max_buffered = 6000};
  struct ps_buf out;
  ps_buf_init(&out);
  struct ps_h2_conn *c = ps_h2_conn_new_mem(&srv, &out);
  if (c == NULL) return 0;
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  int err = ps_h2_conn_feed(c, (const uint8_t *)preface, sizeof preface - 1);
  while (err == 0 && size > 0) {
    size_t n = size < chunk ? size : chunk;
    uint8_t *copy = malloc(n);
    memcpy(copy, data, n);
    err = ps_h2_conn_feed(c, copy, n);
    free(copy);
    data += n;
    size -= n;
    ps_buf_reset(&out);
    if (srv.buffered.used > srv.buffered.limit + srv.buffered.reserve) abort();
    /* Let deadlines that are already due fire, as the loop would between reads. */
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  /* Finish half of the held calls from outside any nghttp2 callback; the rest are cancelled by free. */
  for (int i = 0; i < MAX_HELD; i += 2)
    if (held[i] != NULL) {
      struct ps_call *call = held[i];
      held[i] = NULL;
      ps_call_finish(call, 0, "done");
    }
  ps_h2_conn_free(c);
  for (int i = 0; i < MAX_HELD; i++)
    if (held[i] != NULL) abort(); /* free must have cancelled every held call */
  ps_buf_free(&out);
  uv_run(&loop, UV_RUN_NOWAIT); /* closes the deadline timers */
  if (srv.open_conns != 0 || srv.open_streams != 0) abort();
  if (srv.buffered.used != 0) abort(); /* every request byte charged was given back */
  return 0;
}
