/* TCP listeners and connections on libuv: the only code that reads and writes server sockets.
 * Lifetimes: a connection owns a uv_tcp_t and a uv_timer_t (the close linger) embedded in it and is
 * freed only when both close callbacks have run; a listener is freed once its own handle and every
 * connection it accepted are closed. The protocol sees only struct ps_net_conn and its callbacks.
 * On a TLS listener (ps_net_listener_set_tls) every connection runs its bytes through a ps_tls: reads are
 * decrypted before on_read and ps_net_write encrypts, so the protocol never knows (the glue is in
 * net_tls.c). */
#include "net.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "hostport.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "net_int.h"
#include "tls.h"

struct ps_net_conn {
  uv_tcp_t tcp;
  uv_timer_t linger; /* bounds a graceful close to PS_NET_CLOSE_LINGER_MS, and before it a TLS handshake */
  uv_shutdown_t shutdown_req;
  struct ps_net_listener *listener;
  struct ps_list node; /* in listener->conns, from accept until freed */
  void *state;         /* the protocol's, from on_open; NULL until then */
  size_t pending;      /* bytes handed to uv_write and not yet completed */
  int open_handles;    /* handles whose close callback has not run yet */
  bool opened;         /* on_open returned a state: on_close is owed */
  bool counted;        /* counts against the listener's max_conns */
  bool paused;         /* reading stopped for backpressure */
  bool closing;        /* ps_net_close ran: no more reads or writes accepted */
  bool shutting_down;  /* uv_shutdown issued */
  bool handles_closing;
  char peer[64];
  struct ps_tls *tls; /* on a TLS listener; freed with the connection */
  bool tls_counted;   /* its handshake's result is counted */

  /* In listener->idle while the protocol says the connection is idle (ps_net_set_idle) and it is not
   * closing; self-linked otherwise. */
  struct ps_list idle_node;
};

struct ps_net_listener {
  uv_tcp_t tcp;
  uv_loop_t *loop;
  const struct ps_net_proto *proto;
  void *arg;
  struct ps_list conns; /* of ps_net_conn.node: every conn not yet freed, rejected ones included */
  size_t nconns;        /* counted conns */
  size_t max_conns;     /* PS_NET_MAX_CONNS unless set */
  bool stopped;         /* the listening handle is closed or closing: nothing more is accepted */
  bool closing;         /* ps_net_listener_close ran: freed once the handle and every conn closed */
  bool handle_closed;
  void (*done)(void *arg);
  void *done_arg;
  /* Of ps_net_conn.idle_node: the idle connections, longest idle first (eviction takes the head). */
  struct ps_list idle;
  size_t evicted, refused; /* connections evicted, and refused with none idle, at the limit */
  const char *name;        /* in the slot metrics; NULL: not counted */
  struct ps_tls_ctx *tls;  /* not owned; NULL: plain TCP */
  uint64_t handshake_ms;
  /* Connections read into this buffer in turn: the loop is single-threaded and on_read consumes the
   * bytes before returning, so one buffer per listener replaces one per connection. */
  uint8_t rbuf[PS_NET_READ_BUF];
};

/* One queued write. Owns its bytes; freed in write_cb. */
struct wreq {
  uv_write_t req;
  struct ps_net_conn *c;
  size_t len;
  uint8_t data[];
};

/* ---- addresses ------------------------------------------------------------------------------ */

int ps_net_parse_addr(const char *hostport, struct sockaddr_storage *ss) {
  char host[64];
  int p;
  if (hostport == NULL ||
      ps_hostport_parse(hostport, strlen(hostport), PS_HOSTPORT_PORT_ZERO | PS_HOSTPORT_EMPTY_HOST, host,
                        sizeof host, &p) != 0)
    return UV_EINVAL;
  memset(ss, 0, sizeof *ss);
  if (host[0] == '\0') {
    /* All addresses: the IPv6 wildcard is dual-stack on Linux; ps_net_listen falls back to 0.0.0.0
     * where IPv6 is disabled. */
    return uv_ip6_addr("::", p, (struct sockaddr_in6 *)ss);
  }
  if (strcmp(host, "localhost") == 0) return uv_ip4_addr("127.0.0.1", p, (struct sockaddr_in *)ss);
  if (uv_ip4_addr(host, p, (struct sockaddr_in *)ss) == 0) return 0;
  memset(ss, 0, sizeof *ss);
  if (strchr(host, ':') != NULL && uv_ip6_addr(host, p, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    ps_hostport_format(out, cap, ip, ntohs(a->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    ps_hostport_format(out, cap, ip, ntohs(a->sin6_port));
  } else {
    snprintf(out, cap, "?");
  }
}

/* ---- connection lifecycle ------------------------------------------------------------------- */

static void maybe_free_listener(struct ps_net_listener *l) {
  /* A stopped listener outlives its handle: its connections still refer to it, and its owner has yet
   * to call ps_net_listener_close. */
  if (!l->closing || !l->handle_closed || !ps_list_empty(&l->conns)) return;
  void (*done)(void *) = l->done;
  void *arg = l->done_arg;
  free(l);
  if (done != NULL) done(arg);
}

static void conn_closed_cb(uv_handle_t *h) {
  struct ps_net_conn *c = h->data;
  if (--c->open_handles > 0) return;
  struct ps_net_listener *l = c->listener;
  /* on_close runs from a close callback, never from inside a protocol callback, so the protocol may
   * free its state (and an nghttp2 session) here safely. */
  if (c->opened) l->proto->on_close(c->state);
  if (c->tls != NULL) {
    if (!c->tls_counted) ps_net_tls_count(l->name, "closed");
    ps_tls_free(c->tls);
  }
  if (c->counted) l->nconns--;
  ps_list_remove(&c->node);
  free(c);
  maybe_free_listener(l);
}

/* Closes the handles now; queued writes fail with UV_ECANCELED. */
static void close_now(struct ps_net_conn *c) {
  if (c->handles_closing) return;
  c->handles_closing = true;
  c->closing = true;
  ps_list_remove(&c->idle_node);
  uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
  uv_close((uv_handle_t *)&c->linger, conn_closed_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status) { close_now(req->data); }

/* Everything queued was written: send FIN (so the peer reads all our bytes before it sees the close,
 * rather than an RST that could discard them) and close once the kernel has taken it. */
static void start_shutdown(struct ps_net_conn *c) {
  if (c->shutting_down || c->handles_closing) return;
  c->shutting_down = true;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) close_now(c);
}

static void linger_cb(uv_timer_t *t) {
  struct ps_net_conn *c = t->data;
  ps_log(PS_LOG_DEBUG, "connection did not drain before close; dropping queued bytes", "peer", c->peer, NULL);
  close_now(c);
}

void ps_net_close(struct ps_net_conn *c) {
  if (c->closing) return;
  c->closing = true;
  /* A closing connection is on its way out: evicting it would free nothing. */
  ps_list_remove(&c->idle_node);
  uv_read_stop((uv_stream_t *)&c->tcp);
  /* close_notify before the FIN, so the peer knows it got everything (RFC 8446 section 6.1). */
  if (c->tls != NULL) (void)ps_tls_shutdown(c->tls);
  uv_timer_start(&c->linger, linger_cb, PS_NET_CLOSE_LINGER_MS, 0);
  if (c->pending == 0) start_shutdown(c);
}

/* ---- reading -------------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct ps_net_conn *c = h->data;
  buf->base = (char *)c->listener->rbuf;
  buf->len = sizeof c->listener->rbuf;
}

/* The handshake did not complete in time: the slot goes back at once (nothing useful is queued). */
static void handshake_timeout_cb(uv_timer_t *t) {
  struct ps_net_conn *c = t->data;
  c->tls_counted = true;
  ps_net_tls_count(c->listener->name, "timeout");
  ps_log(PS_LOG_DEBUG, "TLS handshake timed out; closing", "peer", c->peer, NULL);
  close_now(c);
}

/* Decrypts; the plaintext reaches on_read through ps_net_deliver. */
static int read_tls(struct ps_net_conn *c, const uint8_t *data, size_t len) {
  int err = ps_tls_feed(c->tls, data, len);
  if (!c->tls_counted && (err == UV_EPROTO || ps_tls_handshake_done(c->tls))) {
    c->tls_counted = true;
    if (!c->closing) uv_timer_stop(&c->linger); /* the handshake timer; a closing conn's is the linger */
    ps_net_tls_handshake_done(c->listener->name, c->peer, err == UV_EPROTO ? ps_tls_error(c->tls) : NULL);
  } else if (err == UV_EPROTO) {
    ps_log(PS_LOG_DEBUG, "TLS record failed; closing", "peer", c->peer, "error", ps_tls_error(c->tls), NULL);
  }
  return err;
}

int ps_net_deliver(struct ps_net_conn *c, const uint8_t *data, size_t len) {
  /* The protocol asked to close while a read was being decrypted: what follows is not for it. */
  if (c->closing) return UV_ECANCELED;
  return c->listener->proto->on_read(c->state, data, len);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct ps_net_conn *c = s->data;
  if (nread == 0 || c->closing) return;
  if (nread == UV_EOF) {
    /* The peer will send no more; finish writing what is queued, then close. */
    ps_net_close(c);
    return;
  }
  if (nread < 0) {
    ps_log(PS_LOG_DEBUG, "connection read failed", "peer", c->peer, "error", uv_strerror((int)nread), NULL);
    close_now(c);
    return;
  }
  const uint8_t *data = (const uint8_t *)buf->base;
  int err = c->tls != NULL ? read_tls(c, data, (size_t)nread)
                           : c->listener->proto->on_read(c->state, data, (size_t)nread);
  if (err != 0) ps_net_close(c);
}

/* ---- writing -------------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  struct wreq *w = (struct wreq *)req;
  struct ps_net_conn *c = w->c;
  c->pending -= w->len;
  free(w);
  if (status < 0) {
    if (status != UV_ECANCELED)
      ps_log(PS_LOG_DEBUG, "connection write failed", "peer", c->peer, "error", uv_strerror(status), NULL);
    close_now(c);
    return;
  }
  if (c->closing) {
    if (c->pending == 0) start_shutdown(c);
    return;
  }
  if (c->paused && c->pending < PS_NET_LOW_WATER) {
    c->paused = false;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
      close_now(c);
      return;
    }
    if (c->listener->proto->on_drain != NULL) c->listener->proto->on_drain(c->state);
  }
}

int ps_net_write(struct ps_net_conn *c, const uint8_t *data, size_t len) {
  if (c->closing) return UV_EPIPE;
  if (len == 0) return 0;
  if (c->tls != NULL) {
    /* Encrypted records come back through ps_net_write_cipher. */
    int err = ps_tls_write(c->tls, data, len);
    return err == 0 ? 0 : err == UV_ENOMEM || err == UV_ENOBUFS ? UV_ENOMEM : UV_EPIPE;
  }
  return ps_net_write_cipher(c, data, len);
}

/* Bytes as they go on the wire (ciphertext on a TLS connection): pending and the water marks count these.
 * A closing connection still writes (its TLS close_notify); only closed handles refuse. */
int ps_net_write_cipher(struct ps_net_conn *c, const uint8_t *data, size_t len) {
  if (c->handles_closing) return UV_EPIPE;
  if (len == 0) return 0;
  if (len > UINT32_MAX) return UV_ENOMEM; /* a uv_buf_t holds at most 4 GiB; nothing sends that much */
  if (c->pending == 0) {
    /* Nothing queued: hand the bytes to the kernel now and copy only what it did not take. */
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      ps_log(PS_LOG_DEBUG, "connection write failed", "peer", c->peer, "error", uv_strerror(n), NULL);
      close_now(c);
      return UV_EPIPE;
    }
    if (n > 0) {
      data += n;
      len -= (size_t)n;
    }
    if (len == 0) return 0;
  }
  struct wreq *w = malloc(sizeof *w + len);
  if (w == NULL) return UV_ENOMEM;
  /* Owns its copy of the bytes from here on; freed in write_cb. */
  memcpy(w->data, data, len);
  w->c = c;
  w->len = len;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  int err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (err != 0) {
    free(w);
    close_now(c);
    return UV_EPIPE;
  }
  c->pending += len;
  if (!c->paused && c->pending > PS_NET_HIGH_WATER) {
    /* A peer that does not read must not make us buffer without bound: stop taking its requests
     * until it has drained our answers. */
    c->paused = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
  return 0;
}

size_t ps_net_pending(const struct ps_net_conn *c) { return c->pending; }
bool ps_net_paused(const struct ps_net_conn *c) { return c->paused; }
uv_loop_t *ps_net_loop(const struct ps_net_conn *c) { return c->tcp.loop; }
const char *ps_net_peer(const struct ps_net_conn *c) { return c->peer; }

/* ---- connection slots ----------------------------------------------------------------------- */

void ps_net_set_idle(struct ps_net_conn *c, bool idle) {
  if (c->closing) return;
  ps_list_remove(&c->idle_node);
  if (idle) ps_list_insert_tail(&c->listener->idle, &c->idle_node);
}

static void count_slot_event(const struct ps_net_listener *l, const char *family, const char *help) {
  if (l->name == NULL) return;
  /* Declared on use: idempotent, and it survives a registry reset (tests). */
  ps_metrics_declare(family, PS_METRIC_COUNTER, help);
  char labels[64];
  snprintf(labels, sizeof labels, "listener=\"%s\"", l->name);
  ps_metrics_add(family, labels, 1);
}

/* Frees the slot of the longest-idle connection for a new one (`for_peer`, for the log). The evicted
 * connection stops counting at once and is closed now, not after a graceful flush: its descriptor must be
 * free before the next accept, since a burst of connections is accepted in one loop turn. Its goodbye
 * (on_evict) is in the kernel's send buffer by then and is still delivered, followed by a FIN. */
static void evict(struct ps_net_listener *l, struct ps_net_conn *v, const char *for_peer) {
  ps_list_remove(&v->idle_node);
  v->counted = false;
  l->nconns--;
  l->evicted++;
  count_slot_event(l, "prescale_connections_evicted_total",
                   "Idle connections closed to make room for a new one at the connection limit.");
  ps_log(PS_LOG_DEBUG, "connection limit reached; evicting the longest-idle connection", "peer", v->peer,
         "for", for_peer, NULL);
  if (v->opened && l->proto->on_evict != NULL) l->proto->on_evict(v->state);
  if (v->tls != NULL) (void)ps_tls_shutdown(v->tls);
  close_now(v);
}

void ps_net_fd_budget(uint64_t nofile, size_t listeners, size_t max_conns, struct ps_net_fd_budget *out) {
  uint64_t usable = nofile > PS_NET_FD_RESERVE ? nofile - PS_NET_FD_RESERVE : 0;
  uint64_t share = usable / PS_NET_FD_SHARE;
  uint64_t per = max_conns < share ? max_conns : share;
  if (per == 0) per = 1;
  uint64_t taken = per * listeners;
  uint64_t rest = usable > taken ? usable - taken : 0;
  out->listener_conns = (size_t)per;
  out->outgoing_conns = rest > 0 ? (size_t)(rest < SIZE_MAX ? rest : SIZE_MAX) : 1;
}

uint64_t ps_net_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return UINT64_MAX;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < PS_NET_NOFILE_WANT) {
    rlim_t want =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > PS_NET_NOFILE_WANT ? PS_NET_NOFILE_WANT : rl.rlim_max;
    if (want > rl.rlim_cur) {
      struct rlimit raised = {want, rl.rlim_max};
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl.rlim_cur = want;
    }
  }
  return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/* ---- listener ------------------------------------------------------------------------------- */

static void connection_cb(uv_stream_t *server, int status) {
  struct ps_net_listener *l = server->data;
  if (status < 0) {
    ps_log(PS_LOG_WARN, "accept failed", "error", uv_strerror(status), NULL);
    return;
  }
  struct ps_net_conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    /* Not accepting makes libuv stop polling the listener; out of memory, nothing better is left. */
    ps_log(PS_LOG_ERROR, "out of memory accepting a connection", NULL);
    return;
  }
  c->listener = l;
  uv_tcp_init(l->loop, &c->tcp);
  uv_timer_init(l->loop, &c->linger);
  c->tcp.data = c;
  c->linger.data = c;
  c->open_handles = 2;
  ps_list_init(&c->idle_node);
  ps_list_insert_head(&l->conns, &c->node);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    close_now(c);
    return;
  }
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0)
    format_addr(&ss, c->peer, sizeof c->peer);
  else
    snprintf(c->peer, sizeof c->peer, "?");
  if (l->nconns >= l->max_conns) {
    struct ps_list *oldest = ps_list_first(&l->idle);
    if (oldest == NULL) {
      /* Every connection has a request in progress: those are never cut for a newcomer. */
      l->refused++;
      count_slot_event(l, "prescale_connections_refused_total",
                       "New connections closed at once at the connection limit (no idle one to evict).");
      ps_log(PS_LOG_WARN, "too many connections, none idle; closing the new one", "peer", c->peer, NULL);
      close_now(c);
      return;
    }
    evict(l, ps_list_entry(oldest, struct ps_net_conn, idle_node), c->peer);
  }
  c->counted = true;
  l->nconns++;
  /* gRPC answers are small and latency-bound: do not let Nagle hold them back. */
  uv_tcp_nodelay(&c->tcp, 1);
  if (l->tls != NULL) {
    if (ps_net_tls_new(l->tls, c, &c->tls) != 0) {
      close_now(c);
      return;
    }
    uv_timer_start(&c->linger, handshake_timeout_cb, l->handshake_ms, 0);
  }
  c->state = l->proto->on_open(c, l->arg);
  if (c->state == NULL) {
    close_now(c);
    return;
  }
  c->opened = true;
  if (c->closing) return; /* on_open may have called ps_net_close */
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) close_now(c);
}

static void listener_closed_cb(uv_handle_t *h) {
  struct ps_net_listener *l = h->data;
  l->handle_closed = true;
  maybe_free_listener(l);
}

static int bind_and_listen(struct ps_net_listener *l, const struct sockaddr_storage *ss) {
  int err = uv_tcp_bind(&l->tcp, (const struct sockaddr *)ss, 0);
  if (err == UV_EAFNOSUPPORT && ss->ss_family == AF_INET6) {
    /* ":port" on a host without IPv6: the handle has no socket yet, so bind the IPv4 wildcard. */
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
    struct sockaddr_in a4;
    uv_ip4_addr("0.0.0.0", ntohs(a6->sin6_port), &a4);
    if (memcmp(&a6->sin6_addr, &in6addr_any, sizeof in6addr_any) == 0)
      err = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&a4, 0);
  }
  if (err != 0) return err;
  return uv_listen((uv_stream_t *)&l->tcp, ps_net_backlog(l->max_conns), connection_cb);
}

int ps_net_listen(uv_loop_t *loop, const char *hostport, const struct ps_net_proto *proto, void *arg,
                  struct ps_net_listener **out) {
  struct sockaddr_storage ss;
  int err = ps_net_parse_addr(hostport, &ss);
  if (err != 0) return err;
  struct ps_net_listener *l = calloc(1, sizeof *l);
  if (l == NULL) return UV_ENOMEM;
  l->loop = loop;
  l->proto = proto;
  l->arg = arg;
  ps_list_init(&l->conns);
  ps_list_init(&l->idle);
  l->max_conns = PS_NET_MAX_CONNS;
  err = uv_tcp_init(loop, &l->tcp);
  if (err != 0) {
    free(l);
    return err;
  }
  l->tcp.data = l;
  err = bind_and_listen(l, &ss);
  if (err != 0) {
    /* The handle is initialised: it can only be freed from its close callback (the loop must run). */
    l->stopped = l->closing = true;
    uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
    return err;
  }
  *out = l;
  return 0;
}

int ps_net_listener_port(const struct ps_net_listener *l) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return 0;
}

size_t ps_net_listener_conns(const struct ps_net_listener *l) { return l->nconns; }
size_t ps_net_listener_evicted(const struct ps_net_listener *l) { return l->evicted; }
size_t ps_net_listener_refused(const struct ps_net_listener *l) { return l->refused; }

int ps_net_backlog(size_t max_conns) {
  if (max_conns < PS_NET_BACKLOG) return PS_NET_BACKLOG;
  return max_conns > PS_NET_BACKLOG_MAX ? PS_NET_BACKLOG_MAX : (int)max_conns;
}

int ps_net_listener_set_slots(struct ps_net_listener *l, size_t max_conns, const char *name) {
  int before = ps_net_backlog(l->max_conns);
  l->max_conns = max_conns > 0 ? max_conns : 1;
  l->name = name;
  if (l->stopped || ps_net_backlog(l->max_conns) == before) return 0;
  /* listen(2) again on the listening socket sets its backlog anew, connections already queued stay (Linux:
   * inet_listen updates sk_max_ack_backlog whatever the socket's state). */
  uv_os_fd_t fd;
  int err = uv_fileno((const uv_handle_t *)&l->tcp, &fd);
  if (err == 0 && listen(fd, ps_net_backlog(l->max_conns)) != 0) err = -errno;
  return err;
}

void ps_net_listener_set_tls(struct ps_net_listener *l, struct ps_tls_ctx *ctx,
                             uint64_t handshake_timeout_ms) {
  l->tls = ctx;
  l->handshake_ms = handshake_timeout_ms > 0 ? handshake_timeout_ms : PS_TLS_HANDSHAKE_TIMEOUT_MS;
}

void ps_net_listener_stop(struct ps_net_listener *l) {
  if (l->stopped) return;
  l->stopped = true;
  /* uv_close closes the socket at once, so from here the kernel refuses new connections (and resets
   * those still in the accept backlog); connection_cb never runs again. */
  uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
}

void ps_net_listener_close(struct ps_net_listener *l, void (*done)(void *arg), void *arg) {
  if (l->closing) return;
  l->closing = true;
  l->done = done;
  l->done_arg = arg;
  /* Connections are unlinked only in their close callbacks, so walking the list here is safe. */
  ps_list_foreach(n, &l->conns) ps_net_close(ps_list_entry(n, struct ps_net_conn, node));
  if (!l->stopped) {
    ps_net_listener_stop(l);
    return;
  }
  /* Stopped earlier: the handle may be closed already, and every connection too. */
  maybe_free_listener(l);
}
