/* The send path of a gRPC server connection (h2_conn.c is the connection, h2_call.c its calls): nghttp2's
 * frames serialized into one batch per connection and written through ps_net_write (or a memory
 * connection's buffer), at once after an input or at the end of the loop turn for sends from timers and
 * refreshes. Apart from h2_conn.c because it is the one place that moves bytes out of the session, with
 * its own handles (the flusher) and limits (WRITE_BATCH, SERIALIZE_EVERY); the connection and the calls
 * reach it only through ps_h2c_flush, ps_h2c_flush_soon and ps_h2c_flusher_close (h2_conn_int.h). */
#include "h2_conn.h"

#include <nghttp2/nghttp2.h>
#include <stdlib.h>

#include "h2_conn_int.h"
#include "log.h"

#define WRITE_BATCH (64u << 10) /* frames are gathered up to this size per ps_net_write */

/* Sends queued outside the input are serialized (not written) every this many, see ps_h2c_flush_soon. */
#define SERIALIZE_EVERY 32

/* ---- serializing and writing ---------------------------------------------------------------------- */

static void write_batch(struct ps_h2_conn *c) {
  if (c->batch.len == 0) return;
  c->srv->writes++;
  int err = c->net ? ps_net_write(c->net, (const uint8_t *)c->batch.data, c->batch.len)
                   : ps_buf_append(c->mem_out, c->batch.data, c->batch.len);
  ps_buf_reset(&c->batch);
  if (err != 0) c->dead = true;
}

/* Moves nghttp2's frames into c->batch (written when it fills); the caller holds in_session. */
static void serialize(struct ps_h2_conn *c) {
  c->sends_due = 0;
  while (!c->fatal && !c->dead && !(c->net && ps_net_paused(c->net))) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->session, &p);
    if (n < 0) {
      ps_log(PS_LOG_DEBUG, "http2 send failed", "peer", ps_h2c_peer(c), "error", nghttp2_strerror((int)n),
             NULL);
      c->dead = c->fatal = true;
      break;
    }
    if (n == 0) break;
    if (ps_buf_append(&c->batch, p, (size_t)n) != 0) c->dead = true;
    if (c->batch.len >= WRITE_BATCH) write_batch(c);
  }
}

/* Moves frames from nghttp2 to the socket while it keeps up. Reading pauses in net.c when too much is
 * queued, and on_drain calls back here, so a client that does not read stalls only itself.
 * Every stream's frames of one input go out in one write: calls answered inside nghttp2's callbacks only
 * queue their frames (in_session), and the flush after the input gathers them all into c->batch, which
 * net.c hands to the kernel at once (uv_try_write). libuv reads a socket once per loop turn unless the
 * read fills its buffer (64 KiB), so this is one write per connection per loop turn. */
void ps_h2c_flush(struct ps_h2_conn *c) {
  if (c->flush_due) { /* whoever flushes now takes what was due at the end of the turn too */
    ps_list_remove(&c->flush_node);
    c->flush_due = false;
  }
  if (c->closed || c->in_session > 0) return; /* the outer recv/send loop will pick the frames up */
  c->in_session++;
  serialize(c);
  write_batch(c);
  c->in_session--;
  if (!c->dead && !c->fatal && !nghttp2_session_want_read(c->session) &&
      !nghttp2_session_want_write(c->session))
    c->dead = true;                                    /* GOAWAY exchanged and every stream done */
  if (c->dead && c->net != NULL) ps_net_close(c->net); /* asynchronous: on_close frees us later */
}

/* ---- flushing at the end of a loop turn ---------------------------------------------------------- */

/* A check handle runs right after the poll phase, where the Prometheus answers that change a target
 * arrive, so that a refresh's updates to 1,000 streams of a connection leave in one write instead of
 * 1,000 (each a nghttp2_session_mem_send and a write syscall). An idle handle runs meanwhile only so
 * that the poll does not block when the sends came from a timer or an idle callback (libuv runs idle
 * handles before the poll, which then does not wait; uv_run in libuv's docs, "Design overview"). */
struct flusher {
  uv_check_t check;
  uv_idle_t idle;
  struct ps_h2_server *srv; /* NULL once the handles are closing */
  int open;                 /* handles not yet closed; the struct is freed when both are */
};

static void flusher_closed(uv_handle_t *h) {
  struct flusher *f = h->data;
  if (--f->open == 0) free(f);
}

void ps_h2c_flusher_close(struct ps_h2_server *srv) {
  struct flusher *f = srv->flusher;
  if (f == NULL) return;
  srv->flusher = NULL;
  f->srv = NULL;
  uv_close((uv_handle_t *)&f->check, flusher_closed);
  uv_close((uv_handle_t *)&f->idle, flusher_closed);
}

static void flush_due_cb(uv_check_t *h) {
  struct flusher *f = h->data;
  uv_check_stop(&f->check);
  uv_idle_stop(&f->idle);
  /* ps_h2c_flush takes each off the list; closing a socket is asynchronous, so none is freed meanwhile. */
  for (struct ps_list *n; f->srv != NULL && (n = ps_list_first(&f->srv->flush_due)) != NULL;)
    ps_h2c_flush(ps_list_entry(n, struct ps_h2_conn, flush_node));
}

static void flusher_idle_cb(uv_idle_t *h) { (void)h; }

/* A refresh that changes 1,000 streams of a connection queues 1,000 DATA frames: nghttp2 keeps the streams
 * with data in a priority queue (a binary heap) and pops each one through log2(1,000) levels of other
 * streams' structs, cold by the end of the turn (a cache miss each; the heap's compare was ~8 % of
 * prescale's CPU in the fan-out). So every SERIALIZE_EVERY sends the frames are serialized into c->batch
 * at once, from a small heap of streams just touched; the write still waits for the end of the turn. */
void ps_h2c_flush_soon(struct ps_h2_conn *c) {
  if (c->closed || c->in_session > 0) return;
  if (c->flush_due) {
    if (++c->sends_due >= SERIALIZE_EVERY) {
      c->in_session++;
      serialize(c);
      c->in_session--;
    }
    return;
  }
  struct ps_h2_server *srv = c->srv;
  struct flusher *f = srv->flusher;
  if (f == NULL) {
    f = calloc(1, sizeof *f);
    if (f == NULL) {
      ps_h2c_flush(c);
      return;
    }
    uv_check_init(srv->loop, &f->check);
    uv_idle_init(srv->loop, &f->idle);
    f->check.data = f->idle.data = f;
    f->srv = srv;
    f->open = 2;
    srv->flusher = f;
  }
  c->flush_due = true;
  ps_list_insert_tail(&srv->flush_due, &c->flush_node);
  uv_check_start(&f->check, flush_due_cb);
  uv_idle_start(&f->idle, flusher_idle_cb);
}
