/* grpcblast: a light HTTP/2 load client for `make bench` (grpc_bench.py --client grpcblast), the same for
 * every server it compares, so that a run measures the servers and not the client.
 *
 *   grpcblast [-c CONNS] [-m STREAMS] (-D SECONDS [-W SECONDS] | -n REQUESTS) [-T SECONDS] [-d BODY_FILE]
 *             -e EXPECTED_FILE [-g] [-H 'name: value']... [-S MAX_STREAM_ID] http://HOST:PORT/PATH
 *
 * One thread, epoll, CONNS connections with STREAMS requests in flight on each (fewer if the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS says so). Every request is the same pre-encoded bytes but its stream id
 * (blast_h2.c): a POST of BODY_FILE (a GET without -d). Every answer is checked: :status 200, its DATA equal
 * to EXPECTED_FILE, and with -g the trailers' grpc-status 0. Each connection is read once and written
 * once per loop turn (its new requests and its control frames in one write), with one clock reading per
 * read and one per write.
 *
 * Timing mode (-D, like h2load's): -W seconds of warm-up (connections set up, answers checked, not counted),
 * then -D seconds measured: the answers that end inside it give the rate and the latency (from the write
 * that sent the request to the read that ended its answer); after it no request is sent and the answers
 * in flight are awaited (checked) for up to -T seconds (default 10). Count mode (-n): that many requests in
 * all, the rate over the whole run, -T bounds it (default 60).
 *
 * Prints one line: `grpcblast: rps=... ok=... failed=... p50_ms=... p99_ms=... cpu_s=... measured_s=...
 * ...` where ok counts the answers measured, failed every wrong or missing answer of the run, cpu_s
 * grpcblast's own user + system CPU over the measured part (getrusage). Exits 1 when any answer was wrong
 * or missing, a connection failed, or nothing was measured; 2 on bad usage. -S lowers the last stream id a
 * connection may use (RFC 9113 §5.1.1: 2^31-1): a connection whose ids run out is drained, closed with
 * GOAWAY and opened again (tests use it to go through that path). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "blast_h2.h"

#define BLAST_MAX_CONNS      10000  /* -c */
#define BLAST_EVENTS         1024   /* epoll events taken per loop turn */
#define BLAST_MAX_RECONNECTS 100000 /* connections opened again in one run (GOAWAY, ids used up) */
#define BLAST_TICK_MS        100    /* the longest epoll wait: phases are checked at least this often */
#define BLAST_MAX_SECONDS    86400  /* -D, -W, -T */

enum { CLOSED, CONNECTING, OPEN };

struct client {
  int fd;
  int state;
  int polling_out; /* EPOLLOUT is on: output is waiting for the socket */
  struct ps_blast_conn h2;
  size_t in_len;
  uint8_t in[PS_BLAST_IN_BUF];
};

struct run {
  int epfd;
  struct addrinfo *addr;
  struct client *clients;
  int conns;
  uint32_t streams, sid_limit;
  struct ps_blast_req req;
  struct ps_blast_expect expect;
  struct ps_blast_stats stats;
  uint64_t budget; /* count mode: the requests to send; timing mode: unbounded */
  int sending;     /* new requests may be sent */
  uint64_t reconnects, conn_errors;
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int read_file(const char *path, uint8_t **out, size_t *len, size_t max) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -1;
  uint8_t *b = malloc(max + 1);
  size_t n = b ? fread(b, 1, max + 1, f) : 0;
  int bad = b == NULL || ferror(f) || n > max;
  fclose(f);
  if (bad) {
    free(b);
    return -1;
  }
  *out = b, *len = n;
  return 0;
}

/* ---- connections ---- */

static int client_open(struct run *r, struct client *cl) {
  cl->fd = socket(r->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (cl->fd < 0) return -errno;
  int one = 1;
  setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small frames go out at once */
  if (connect(cl->fd, r->addr->ai_addr, r->addr->ai_addrlen) < 0 && errno != EINPROGRESS) {
    int e = -errno;
    close(cl->fd);
    return e;
  }
  if (ps_blast_conn_init(&cl->h2, r->streams, r->sid_limit, &r->expect, &r->stats, r->req.len) < 0) {
    close(cl->fd);
    return -ENOMEM;
  }
  ps_blast_conn_start(&cl->h2);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = cl};
  epoll_ctl(r->epfd, EPOLL_CTL_ADD, cl->fd, &ev);
  cl->state = CONNECTING;
  cl->polling_out = 1;
  cl->in_len = 0;
  return 0;
}

/* Closes the socket; the streams still in flight are counted as lost. */
static void client_close(struct client *cl, int64_t now) {
  close(cl->fd); /* also leaves the epoll set */
  ps_blast_conn_free(&cl->h2, now);
  cl->fd = -1;
  cl->state = CLOSED;
}

/* Writes what is queued; keeps the rest and asks for EPOLLOUT when the socket is full. Returns 0 or -1 (the
 * connection is broken). */
static int client_flush(struct run *r, struct client *cl) {
  struct ps_blast_conn *c = &cl->h2;
  if (c->out_len > 0) {
    ssize_t n = send(cl->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    if (n > 0) {
      memmove(c->out, c->out + n, c->out_len - (size_t)n);
      c->out_len -= (size_t)n;
    }
  }
  int want = c->out_len > 0;
  if (want != cl->polling_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = cl};
    epoll_ctl(r->epfd, EPOLL_CTL_MOD, cl->fd, &ev);
    cl->polling_out = want;
  }
  return 0;
}

/* The connection ended (by us, the server, or an error): open it again while requests are still sent. */
static void client_end(struct run *r, struct client *cl, int64_t now) {
  client_close(cl, now);
  /* -n: once every request is sent, no connection is opened again (a GOAWAY that refuses streams takes
   * them back from `issued`, and then this connection is opened again to send them). */
  if (!r->sending || r->stats.issued >= r->budget) return;
  if (r->reconnects >= BLAST_MAX_RECONNECTS) {
    fprintf(stderr, "grpcblast: more than %d reconnections, not opening more\n", BLAST_MAX_RECONNECTS);
    r->conn_errors++;
    return;
  }
  r->reconnects++;
  int e = client_open(r, cl);
  if (e < 0) {
    fprintf(stderr, "grpcblast: cannot open a connection again: %s\n", strerror(-e));
    r->conn_errors++;
  }
}

/* New requests, then one write of everything queued; a connection that may open no more streams and has
 * none in flight says GOAWAY and goes. */
static void client_service(struct run *r, struct client *cl) {
  if (cl->state != OPEN) return;
  struct ps_blast_conn *c = &cl->h2;
  int64_t now = now_ns();
  if (r->sending && r->budget > r->stats.issued)
    ps_blast_conn_fill(c, &r->req, now, r->budget - r->stats.issued);
  if (c->got_settings && r->req.body_len > c->server_initial) {
    fprintf(stderr, "grpcblast: the server's stream window (%lld) is smaller than the request body (%u)\n",
            (long long)c->server_initial, r->req.body_len);
    r->conn_errors++;
    r->sending = 0;
  }
  int done = ps_blast_conn_done(c);
  if (done) ps_blast_conn_goaway(c, 0); /* NO_ERROR */
  int broken = client_flush(r, cl) < 0;
  /* The fill keeps PS_BLAST_CTRL_ROOM free for control frames, and those already queued (the preface, our
   * SETTINGS, the ACK of the server's) can take part of it: when the server's SETTINGS came in the read that
   * also completed the connect, the first fill found no room. Once they are written, fill again: the
   * server has nothing more to say until it gets a request, so no later event would. */
  if (!broken && !done && c->out_len == 0 && r->sending && r->budget > r->stats.issued &&
      ps_blast_conn_fill(c, &r->req, now, r->budget - r->stats.issued) > 0)
    broken = client_flush(r, cl) < 0;
  if (broken || done) client_end(r, cl, now);
}

static void client_read(struct run *r, struct client *cl) {
  struct ps_blast_conn *c = &cl->h2;
  ssize_t n = 0;
  if (cl->in_len < sizeof cl->in) {
    n = recv(cl->fd, cl->in + cl->in_len, sizeof cl->in - cl->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) n = -2;
  }
  int64_t now = now_ns();
  if (n == 0 || n == -1) { /* closed by the server, or broken: what is in flight is lost */
    if (!c->goaway && c->in_flight > 0)
      fprintf(stderr, "grpcblast: the server closed a connection with %u answers in flight\n", c->in_flight);
    client_end(r, cl, now);
    return;
  }
  if (n > 0) cl->in_len += (size_t)n;
  size_t used = 0;
  int rv = ps_blast_conn_recv(c, cl->in, cl->in_len, now, &used);
  memmove(cl->in, cl->in + used, cl->in_len - used);
  cl->in_len -= used;
  if (rv < 0) {
    fprintf(stderr, "grpcblast: HTTP/2 error %d from the server's frames: the connection is closed\n", -rv);
    r->conn_errors++;
    ps_blast_conn_goaway(c, (uint32_t)-rv);
    client_flush(r, cl);
    client_close(cl, now);
  }
}

static void on_event(struct run *r, struct client *cl, uint32_t events) {
  if (cl->state == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(cl->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fprintf(stderr, "grpcblast: connect: %s\n", strerror(err));
      r->conn_errors++;
      client_close(cl, now_ns());
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLIN))) return;
    cl->state = OPEN;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) client_read(r, cl);
  client_service(r, cl);
}

/* ---- the run ---- */

static int any_in_flight(const struct run *r) {
  uint64_t n = 0;
  for (int i = 0; i < r->conns; i++) n += r->clients[i].state != CLOSED ? r->clients[i].h2.in_flight : 0;
  return n > 0;
}

static int any_open(const struct run *r) {
  for (int i = 0; i < r->conns; i++)
    if (r->clients[i].state != CLOSED) return 1;
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: grpcblast [-c CONNS] [-m STREAMS] (-D SECONDS [-W SECONDS] | -n REQUESTS) "
                  "[-T SECONDS] [-d BODY_FILE] -e EXPECTED_FILE [-g] [-H 'name: value']... "
                  "[-S MAX_STREAM_ID] http://HOST:PORT/PATH\n");
  exit(2);
}

static double seconds_arg(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (*end != 0 || !(v >= 0 && v <= BLAST_MAX_SECONDS)) usage();
  return v;
}

static long long int_arg(const char *s, long long lo, long long hi) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (*end != 0 || v < lo || v > hi) usage();
  return v;
}

int main(int argc, char **argv) {
  static struct run r; /* large (the histogram): not on the stack */
  double duration = -1, warm = 1, timeout = -1;
  long long count = 0;
  const char *body_path = NULL, *expect_path = NULL, *headers[PS_BLAST_MAX_HEADERS];
  int n_headers = 0, opt;
  r.conns = 1, r.streams = 1, r.sid_limit = PS_BLAST_MAX_SID;
  while ((opt = getopt(argc, argv, "c:m:D:W:n:T:d:e:gH:S:")) != -1) {
    switch (opt) {
    case 'c': r.conns = (int)int_arg(optarg, 1, BLAST_MAX_CONNS); break;
    case 'm': r.streams = (uint32_t)int_arg(optarg, 1, PS_BLAST_MAX_STREAMS); break;
    case 'D': duration = seconds_arg(optarg); break;
    case 'W': warm = seconds_arg(optarg); break;
    case 'n': count = int_arg(optarg, 1, 1LL << 40); break;
    case 'T': timeout = seconds_arg(optarg); break;
    case 'd': body_path = optarg; break;
    case 'e': expect_path = optarg; break;
    case 'g': r.expect.grpc = 1; break;
    case 'H':
      if (n_headers == PS_BLAST_MAX_HEADERS) usage();
      headers[n_headers++] = optarg;
      break;
    case 'S': r.sid_limit = (uint32_t)int_arg(optarg, 1, PS_BLAST_MAX_SID); break;
    default: usage();
    }
  }
  if (optind != argc - 1 || expect_path == NULL || (duration > 0) == (count > 0)) usage();

  /* The URL: http://host:port/path (no TLS). */
  const char *url = argv[optind];
  if (strncmp(url, "http://", 7) != 0) usage();
  const char *hp = url + 7, *slash = strchr(hp, '/');
  char authority[256], host[256], port[16];
  size_t alen = slash ? (size_t)(slash - hp) : strlen(hp);
  if (alen == 0 || alen >= sizeof authority) usage();
  memcpy(authority, hp, alen);
  authority[alen] = 0;
  const char *colon = strrchr(authority, ':');
  if (colon == NULL || strlen(colon + 1) >= sizeof port) usage();
  size_t hlen = (size_t)(colon - authority);
  if (authority[0] == '[' && hlen >= 2 && authority[hlen - 1] == ']') /* [v6]:port */
    memcpy(host, authority + 1, hlen - 2), host[hlen - 2] = 0;
  else
    memcpy(host, authority, hlen), host[hlen] = 0;
  strcpy(port, colon + 1);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  int gai = getaddrinfo(host, port, &hints, &r.addr); /* before the run: blocking is fine here */
  if (gai != 0) {
    fprintf(stderr, "grpcblast: %s: %s\n", host, gai_strerror(gai));
    return 2;
  }

  uint8_t *body = NULL, *expected = NULL;
  size_t body_len = 0, expected_len = 0;
  if (body_path && read_file(body_path, &body, &body_len, PS_BLAST_MAX_BODY) < 0) {
    fprintf(stderr, "grpcblast: cannot read %s (at most %d bytes)\n", body_path, PS_BLAST_MAX_BODY);
    return 2;
  }
  if (read_file(expect_path, &expected, &expected_len, PS_BLAST_MAX_EXPECT) < 0) {
    fprintf(stderr, "grpcblast: cannot read %s (at most %d bytes)\n", expect_path, PS_BLAST_MAX_EXPECT);
    return 2;
  }
  r.expect.data = expected, r.expect.len = expected_len;
  char err[256];
  if (ps_blast_req_build(&r.req, body_path ? "POST" : "GET", "http", authority, slash ? slash : "/", headers,
                         n_headers, body, body_len, err, sizeof err) < 0) {
    fprintf(stderr, "grpcblast: %s\n", err);
    return 2;
  }

  /* One descriptor per connection, and a few. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t)r.conns + 16) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  r.clients = calloc((size_t)r.conns, sizeof *r.clients);
  r.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (r.clients == NULL || r.epfd < 0) {
    fprintf(stderr, "grpcblast: out of memory or descriptors\n");
    return 1;
  }

  int64_t t0 = now_ns();
  if (count > 0) {
    r.budget = (uint64_t)count;
    r.stats.win_start = t0, r.stats.win_end = INT64_MAX;
    if (timeout < 0) timeout = 60;
  } else {
    r.budget = UINT64_MAX;
    r.stats.win_start = t0 + (int64_t)(warm * 1e9);
    r.stats.win_end = r.stats.win_start + (int64_t)(duration * 1e9);
    if (timeout < 0) timeout = 10;
  }
  int64_t deadline = (count > 0 ? t0 : r.stats.win_end) + (int64_t)(timeout * 1e9);
  r.sending = 1;
  for (int i = 0; i < r.conns; i++) {
    int e = client_open(&r, &r.clients[i]);
    if (e < 0) {
      fprintf(stderr, "grpcblast: cannot open connection %d: %s\n", i, strerror(-e));
      r.clients[i].state = CLOSED;
      r.conn_errors++;
      r.sending = 0;
    }
  }

  double cpu0 = count > 0 ? cpu_s() : -1, cpu1 = -1;
  int64_t t_end = 0;
  static struct epoll_event events[BLAST_EVENTS];
  for (;;) { /* ends by the deadline at the latest */
    int64_t now = now_ns();
    if (cpu0 < 0 && now >= r.stats.win_start) cpu0 = cpu_s();
    if (count > 0 && r.stats.ok + r.stats.failed >= (uint64_t)count) {
      t_end = now, cpu1 = cpu_s();
      break;
    }
    if (count == 0 && now >= r.stats.win_end && r.sending) {
      r.sending = 0; /* the measured part is over: the answers in flight are awaited and checked */
      cpu1 = cpu_s();
    }
    if ((!r.sending && !any_in_flight(&r)) || !any_open(&r) || now >= deadline) break;
    int64_t next = count > 0 || now >= r.stats.win_end ? deadline
                   : now < r.stats.win_start           ? r.stats.win_start
                                                       : r.stats.win_end;
    int64_t wait_ms = (next - now) / 1000000 + 1;
    int n =
        epoll_wait(r.epfd, events, BLAST_EVENTS, (int)(wait_ms < BLAST_TICK_MS ? wait_ms : BLAST_TICK_MS));
    if (n < 0 && errno != EINTR) {
      perror("grpcblast: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) on_event(&r, events[i].data.ptr, events[i].events);
  }
  int64_t now = now_ns();
  if (cpu1 < 0) cpu1 = cpu_s();
  if (t_end == 0) t_end = now;
  r.sending = 0;
  for (int i = 0; i < r.conns; i++) { /* what is still in flight now is lost */
    struct client *cl = &r.clients[i];
    if (cl->state == CLOSED) continue;
    ps_blast_conn_goaway(&cl->h2, 0);
    client_flush(&r, cl);
    client_close(cl, now);
  }

  double measured = count > 0 ? (double)(t_end - t0) / 1e9 : duration;
  const struct ps_blast_stats *st = &r.stats;
  printf("grpcblast: rps=%.1f ok=%llu failed=%llu p50_ms=%.4f p99_ms=%.4f cpu_s=%.4f measured_s=%.4f "
         "total_ok=%llu refused=%llu reconnects=%llu conn_errors=%llu conns=%d streams=%u\n",
         (double)(st->win_ok + st->win_failed) / measured, (unsigned long long)st->win_ok,
         (unsigned long long)st->failed, ps_blast_hist_quantile(&st->hist, 0.5) / 1e6,
         ps_blast_hist_quantile(&st->hist, 0.99) / 1e6, cpu1 - cpu0, measured, (unsigned long long)st->ok,
         (unsigned long long)st->refused, (unsigned long long)r.reconnects, (unsigned long long)r.conn_errors,
         r.conns, r.streams);
  if (st->failed)
    fprintf(stderr, "grpcblast: %llu answers wrong or missing; the first:%s%s%s%s%s%s\n",
            (unsigned long long)st->failed,
            st->first_fail_reason & PS_BLAST_WHY_STATUS ? " :status not 200" : "",
            st->first_fail_reason & PS_BLAST_WHY_DATA ? " DATA not the expected bytes" : "",
            st->first_fail_reason & PS_BLAST_WHY_GRPC ? " no grpc-status 0" : "",
            st->first_fail_reason & PS_BLAST_WHY_RESET ? " reset" : "",
            st->first_fail_reason & PS_BLAST_WHY_LOST ? " no end (connection closed or time out)" : "",
            st->first_fail_reason & PS_BLAST_WHY_BLOCKS ? " too many header blocks" : "");
  int bad =
      st->failed > 0 || r.conn_errors > 0 || st->win_ok == 0 || (count > 0 && st->ok != (uint64_t)count);
  free(body), free(expected), free(r.clients);
  freeaddrinfo(r.addr);
  close(r.epfd);
  return bad ? 1 : 0;
}
