/* Watching files for change by stat polling and reading them on the libuv thread pool (filewatch.h says
 * why polling, and why a timer rather than uv_fs_poll).
 *
 * Lifetimes: the watcher owns its groups and their files. Every request in flight (a stat of the poll, a
 * step of a read) counts in w->inflight; ps_filewatch_close closes the timer, cancels what has not started
 * and lets the rest return. Each callback checks w->closing first: when closing it only closes a
 * descriptor it was handed and calls maybe_free, which frees everything once the timer has closed and
 * nothing is in flight, so memory goes only from a close callback or the last request's callback. */
#include "filewatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

/* What stat says of a file, enough to see that it changed: the kubelet's swap changes the inode a path
 * leads to, a rewrite in place changes mtime and ctime, a touch too (then the bytes are compared). err != 0:
 * the stat or the open failed with it. */
struct stat_key {
  int err;
  uint64_t dev, ino, size;
  uv_timespec_t mtim, ctim;
};

struct wfile {
  struct ps_filewatch_group *g;
  char *path;
  /* What was delivered last (or the baseline): err, or the bytes; key: the fstat of their descriptor. */
  char *data;
  size_t len;
  int err;
  struct stat_key key;
  /* The poll's stat of the path. */
  uv_fs_t stat_req;
  bool stat_busy;
  /* The read in progress: open, fstat, reads until EOF, close, one request after the other. */
  uv_fs_t req;
  bool req_cancelable; /* an open, fstat or read in flight (never a close: it would leak the descriptor) */
  uv_file fd;          /* -1: none open */
  char *buf;           /* cap + 1 bytes (the NUL) */
  size_t cap, got;
  int rerr;
  struct stat_key rkey;
};

struct ps_filewatch_group {
  struct ps_filewatch *w;
  ps_filewatch_cb cb;
  void *arg;
  struct wfile *files;
  struct ps_file_content *contents; /* what the callback gets, n entries */
  size_t n;
  size_t reading; /* files of the read in progress not done yet; 0: no read */
  size_t stating; /* stats of the poll not returned yet */
  bool dirty;     /* a stat of this poll differed from its key */
  bool again;     /* read again once the read in progress is done (check_now during a read) */
  bool ready;     /* the baseline read is done */
  uint64_t reads; /* reads finished */
};

struct ps_filewatch {
  uv_loop_t *loop;
  uv_timer_t timer;
  uint64_t interval_ms;
  struct ps_filewatch_group *groups[PS_FILEWATCH_MAX_GROUPS];
  size_t ngroups;
  size_t inflight; /* requests submitted whose callback has not run */
  bool closing;
  bool timer_closed;
};

static void read_group(struct ps_filewatch_group *g);

/* ---- lifetime ---------------------------------------------------------------------------------------- */

static void free_all(struct ps_filewatch *w) {
  for (size_t i = 0; i < w->ngroups; i++) {
    struct ps_filewatch_group *g = w->groups[i];
    for (size_t j = 0; j < g->n; j++) {
      free(g->files[j].path);
      /* The contents are credentials and keys: wiped before the memory goes back to the allocator. */
      ps_free_wiped(g->files[j].data, g->files[j].len);
      ps_free_wiped(g->files[j].buf, g->files[j].buf != NULL ? g->files[j].cap + 1 : 0);
    }
    free(g->files);
    free(g->contents);
    free(g);
  }
  free(w);
}

static void maybe_free(struct ps_filewatch *w) {
  if (w->closing && w->timer_closed && w->inflight == 0) free_all(w);
}

static void on_timer_close(uv_handle_t *h) {
  struct ps_filewatch *w = h->data;
  w->timer_closed = true;
  maybe_free(w);
}

static void on_abandoned_close(uv_fs_t *req) {
  struct ps_filewatch *w = req->data;
  w->inflight--;
  uv_fs_req_cleanup(req);
  free(req);
  maybe_free(w);
}

/* Closing: the read of f is abandoned; a descriptor it holds is closed on a request of its own (f->req
 * may be the one that just returned, and f goes with the watcher). */
static void abandon(struct wfile *f) {
  struct ps_filewatch *w = f->g->w;
  if (f->fd >= 0) {
    uv_fs_t *creq = malloc(sizeof *creq);
    if (creq != NULL) creq->data = w;
    if (creq == NULL || uv_fs_close(w->loop, creq, f->fd, on_abandoned_close) != 0) {
      /* Out of memory: close it here; close(2) of a regular file does not wait on the disk. */
      free(creq);
      close(f->fd);
    } else {
      w->inflight++;
    }
    f->fd = -1;
  }
  maybe_free(w);
}

/* ---- reading a group --------------------------------------------------------------------------------- */

static void key_of(struct stat_key *k, int err, const uv_stat_t *st) {
  memset(k, 0, sizeof *k);
  k->err = err;
  if (err != 0) return;
  k->dev = st->st_dev;
  k->ino = st->st_ino;
  k->size = st->st_size;
  k->mtim = st->st_mtim;
  k->ctim = st->st_ctim;
}

static bool key_eq(const struct stat_key *a, const struct stat_key *b) {
  return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
         a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* Every file of g was read: compare with what was delivered, keep the new state, and call back when it
 * differs, except for the baseline read. */
static void group_done(struct ps_filewatch_group *g) {
  struct ps_filewatch *w = g->w;
  bool changed = false;
  for (size_t i = 0; i < g->n; i++) {
    struct wfile *f = &g->files[i];
    if (f->rerr != f->err ||
        (f->rerr == 0 && (f->got != f->len || (f->len > 0 && memcmp(f->buf, f->data, f->len) != 0))))
      changed = true;
  }
  for (size_t i = 0; i < g->n; i++) {
    struct wfile *f = &g->files[i];
    ps_free_wiped(f->data, f->len); /* credentials and keys: wiped */
    f->data = NULL;
    f->len = 0;
    if (f->rerr == 0) {
      f->data = f->buf; /* owned by f from here on, freed at the next change or with the watcher */
      f->len = f->got;
      f->data[f->len] = '\0';
    } else {
      ps_free_wiped(f->buf, f->cap + 1);
    }
    f->buf = NULL;
    f->err = f->rerr;
    f->key = f->rkey;
    /* An error that may pass (EIO, EACCES at open, ENOMEM) must not hide behind an unchanged stat: such a
     * key differs from any successful stat, so the next poll reads again. A missing file (UV_ENOENT from
     * open and from stat alike), one too large, a directory or a FIFO stay as they are until they change. */
    if (f->err != 0 && f->err != UV_ENOENT && f->err != UV_E2BIG && f->err != UV_EISDIR &&
        f->err != UV_EFTYPE)
      f->key.err = f->err;
    g->contents[i] = (struct ps_file_content){.path = f->path, .data = f->data, .len = f->len, .err = f->err};
  }
  bool deliver = g->ready && changed;
  g->ready = true;
  g->reads++;
  if (deliver) g->cb(g->arg, g->contents, g->n); /* may close the watcher, or start a read (check_now) */
  if (w->closing) return;
  if (g->again) {
    g->again = false;
    read_group(g);
  }
}

static void file_done(struct wfile *f) {
  if (--f->g->reading == 0) group_done(f->g);
}

static void on_close(uv_fs_t *req) {
  struct wfile *f = req->data;
  struct ps_filewatch *w = f->g->w;
  w->inflight--;
  uv_fs_req_cleanup(req);
  if (w->closing) {
    maybe_free(w);
    return;
  }
  file_done(f);
}

/* The read of f ends with err (0: f->buf holds f->got bytes): its descriptor is closed first. */
static void finish_read(struct wfile *f, int err) {
  struct ps_filewatch *w = f->g->w;
  f->rerr = err;
  if (f->fd < 0) {
    file_done(f);
    return;
  }
  uv_file fd = f->fd;
  f->fd = -1;
  if (uv_fs_close(w->loop, &f->req, fd, on_close) == 0) {
    w->inflight++;
    return;
  }
  close(fd); /* out of memory for the request: close(2) of a regular file does not wait on the disk */
  file_done(f);
}

/* The start of every read step's callback: the request is done (uncounted, cleaned up). NULL when the
 * watcher is closing: the read is abandoned (a descriptor it holds is closed) and nothing else happens. */
static struct wfile *step_returned(uv_fs_t *req) {
  struct wfile *f = req->data;
  struct ps_filewatch *w = f->g->w;
  w->inflight--;
  f->req_cancelable = false;
  uv_fs_req_cleanup(req);
  if (!w->closing) return f;
  abandon(f);
  return NULL;
}

static void on_read(uv_fs_t *req);

/* Reads into the rest of the buffer at offset f->got (pread: the descriptor's offset is not shared). */
static void read_more(struct wfile *f) {
  struct ps_filewatch *w = f->g->w;
  uv_buf_t b = uv_buf_init(f->buf + f->got, (unsigned)(f->cap - f->got));
  int r = uv_fs_read(w->loop, &f->req, f->fd, &b, 1, (int64_t)f->got, on_read);
  if (r != 0) {
    finish_read(f, r);
    return;
  }
  w->inflight++;
  f->req_cancelable = true;
}

static void on_read(uv_fs_t *req) {
  ssize_t res = req->result;
  struct wfile *f = step_returned(req);
  if (f == NULL) return;
  if (res < 0) {
    finish_read(f, (int)res);
    return;
  }
  if (res == 0) {
    finish_read(f, 0); /* EOF */
    return;
  }
  f->got += (size_t)res;
  if (f->got < f->cap) {
    read_more(f);
    return;
  }
  /* The buffer is full. The last byte of a buffer of PS_FILEWATCH_MAX_BYTES + 1 is one too many: the file
   * grew past the limit after its fstat. Otherwise it grew: double the buffer. */
  if (f->cap > PS_FILEWATCH_MAX_BYTES) {
    finish_read(f, UV_E2BIG);
    return;
  }
  size_t cap = f->cap * 2 > PS_FILEWATCH_MAX_BYTES + 1 ? PS_FILEWATCH_MAX_BYTES + 1 : f->cap * 2;
  /* Not realloc: the old block holds the first bytes of a key or a token, wiped before it is freed. */
  char *nb = malloc(cap + 1);
  if (nb == NULL) {
    finish_read(f, UV_ENOMEM);
    return;
  }
  memcpy(nb, f->buf, f->got);
  ps_free_wiped(f->buf, f->cap + 1);
  f->buf = nb;
  f->cap = cap;
  read_more(f);
}

static void on_fstat(uv_fs_t *req) {
  int res = (int)req->result;
  uv_stat_t st = req->statbuf;
  struct wfile *f = step_returned(req);
  if (f == NULL) return;
  if (res < 0) {
    finish_read(f, res);
    return;
  }
  /* The key is that of the bytes about to be read: a change after this fstat shows at the next poll. */
  key_of(&f->rkey, 0, &st);
  if (S_ISDIR(st.st_mode)) {
    finish_read(f, UV_EISDIR);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    finish_read(f, UV_EFTYPE);
    return;
  }
  if (st.st_size > PS_FILEWATCH_MAX_BYTES) {
    finish_read(f, UV_E2BIG);
    return;
  }
  /* One byte more than the size, so that EOF is read, and so that a file that grew shows it. */
  f->cap = (size_t)st.st_size + 1;
  f->got = 0;
  f->buf = malloc(f->cap + 1);
  if (f->buf == NULL) {
    finish_read(f, UV_ENOMEM);
    return;
  }
  read_more(f);
}

static void on_open(uv_fs_t *req) {
  int res = (int)req->result;
  if (res >= 0) ((struct wfile *)req->data)->fd = res; /* so that a close now closes it */
  struct wfile *f = step_returned(req);
  if (f == NULL) return;
  struct ps_filewatch *w = f->g->w;
  if (res < 0) {
    key_of(&f->rkey, res, NULL); /* a poll that gets the same error from stat reads nothing */
    finish_read(f, res);
    return;
  }
  int r = uv_fs_fstat(w->loop, &f->req, f->fd, on_fstat);
  if (r != 0) {
    finish_read(f, r);
    return;
  }
  w->inflight++;
  f->req_cancelable = true;
}

static void start_file_read(struct wfile *f) {
  struct ps_filewatch *w = f->g->w;
  f->fd = -1;
  f->got = f->cap = 0;
  f->rerr = 0;
  memset(&f->rkey, 0, sizeof f->rkey);
  /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused as not a regular file); it
   * changes nothing for a regular file. */
  int r = uv_fs_open(w->loop, &f->req, f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0, on_open);
  if (r != 0) {
    key_of(&f->rkey, r, NULL);
    finish_read(f, r);
    return;
  }
  w->inflight++;
  f->req_cancelable = true;
}

static void read_group(struct ps_filewatch_group *g) {
  if (g->reading > 0) {
    g->again = true;
    return;
  }
  /* Counted before any file starts: a file that fails at once must not end the group early. */
  g->reading = g->n + 1;
  for (size_t i = 0; i < g->n; i++) start_file_read(&g->files[i]);
  file_done(&g->files[0]); /* the extra count */
}

/* ---- polling ----------------------------------------------------------------------------------------- */

static void on_stat(uv_fs_t *req) {
  struct wfile *f = req->data;
  struct ps_filewatch_group *g = f->g;
  struct ps_filewatch *w = g->w;
  struct stat_key k;
  key_of(&k, (int)req->result, &req->statbuf);
  w->inflight--;
  f->stat_busy = false;
  uv_fs_req_cleanup(req);
  if (w->closing) {
    maybe_free(w);
    return;
  }
  if (!key_eq(&k, &f->key)) g->dirty = true;
  if (--g->stating == 0 && g->dirty) read_group(g);
}

static void on_tick(uv_timer_t *t) {
  struct ps_filewatch *w = t->data;
  for (size_t i = 0; i < w->ngroups; i++) {
    struct ps_filewatch_group *g = w->groups[i];
    /* A group being read gets fresh keys from that read; a slow stat is not stacked on. */
    if (g->reading > 0 || g->stating > 0) continue;
    g->dirty = false;
    g->stating = g->n + 1;
    for (size_t j = 0; j < g->n; j++) {
      struct wfile *f = &g->files[j];
      if (uv_fs_stat(w->loop, &f->stat_req, f->path, on_stat) != 0) {
        g->stating--;
        g->dirty = true; /* out of memory: read instead, which reports it */
        continue;
      }
      w->inflight++;
      f->stat_busy = true;
    }
    if (--g->stating == 0 && g->dirty) read_group(g);
  }
}

/* ---- API --------------------------------------------------------------------------------------------- */

int ps_filewatch_new(uv_loop_t *loop, uint64_t interval_ms, struct ps_filewatch **out) {
  *out = NULL;
  if (loop == NULL || interval_ms == 0) return UV_EINVAL;
  struct ps_filewatch *w = calloc(1, sizeof *w);
  if (w == NULL) return UV_ENOMEM;
  w->loop = loop;
  w->interval_ms = interval_ms;
  int r = uv_timer_init(loop, &w->timer);
  if (r != 0) {
    free(w);
    return r;
  }
  w->timer.data = w;
  *out = w;
  return 0;
}

int ps_filewatch_add(struct ps_filewatch *w, const char *const *paths, size_t n, ps_filewatch_cb cb,
                     void *arg, struct ps_filewatch_group **out) {
  if (out != NULL) *out = NULL;
  if (w == NULL || w->closing || cb == NULL || paths == NULL || n == 0 || n > PS_FILEWATCH_MAX_GROUP_FILES)
    return UV_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (paths[i] == NULL || paths[i][0] == '\0') return UV_EINVAL;
    if (strlen(paths[i]) > PS_FILEWATCH_MAX_PATH) return UV_ENAMETOOLONG;
  }
  if (w->ngroups == PS_FILEWATCH_MAX_GROUPS) return UV_ENOSPC;
  struct ps_filewatch_group *g = calloc(1, sizeof *g);
  if (g != NULL) {
    g->files = calloc(n, sizeof *g->files);
    g->contents = calloc(n, sizeof *g->contents);
  }
  bool ok = g != NULL && g->files != NULL && g->contents != NULL;
  for (size_t i = 0; ok && i < n; i++) {
    struct wfile *f = &g->files[i];
    f->g = g;
    f->fd = -1;
    f->req.data = f->stat_req.data = f;
    f->path = strdup(paths[i]);
    ok = f->path != NULL;
  }
  if (!ok) {
    for (size_t i = 0; g != NULL && g->files != NULL && i < n; i++) free(g->files[i].path);
    if (g != NULL) {
      free(g->files);
      free(g->contents);
    }
    free(g);
    return UV_ENOMEM;
  }
  g->w = w;
  g->cb = cb;
  g->arg = arg;
  g->n = n;
  w->groups[w->ngroups++] = g;
  if (!uv_is_active((uv_handle_t *)&w->timer))
    uv_timer_start(&w->timer, on_tick, w->interval_ms, w->interval_ms);
  read_group(g); /* the baseline: group_done does not call back for it */
  if (out != NULL) *out = g;
  return 0;
}

bool ps_filewatch_group_ready(const struct ps_filewatch_group *g) { return g != NULL && g->ready; }

uint64_t ps_filewatch_group_reads(const struct ps_filewatch_group *g) { return g != NULL ? g->reads : 0; }

void ps_filewatch_check_now(struct ps_filewatch *w) {
  if (w == NULL || w->closing) return;
  /* A group's callback may close the watcher: stop at once then. */
  for (size_t i = 0; i < w->ngroups && !w->closing; i++) read_group(w->groups[i]);
}

void ps_filewatch_close(struct ps_filewatch *w) {
  if (w == NULL || w->closing) return;
  w->closing = true;
  /* What has not started yet returns at once with UV_ECANCELED; what runs returns when it is done. */
  for (size_t i = 0; i < w->ngroups; i++) {
    struct ps_filewatch_group *g = w->groups[i];
    for (size_t j = 0; j < g->n; j++) {
      if (g->files[j].req_cancelable) uv_cancel((uv_req_t *)&g->files[j].req);
      if (g->files[j].stat_busy) uv_cancel((uv_req_t *)&g->files[j].stat_req);
    }
  }
  uv_close((uv_handle_t *)&w->timer, on_timer_close);
}

/* ---- synchronous read and error words ----------------------------------------------------------------- */

void ps_file_error(const char *path, int err, size_t max, char *buf, size_t len) {
  if (len == 0) return;
  char reason[96];
  if (err == UV_E2BIG)
    snprintf(reason, sizeof reason, "larger than %zu bytes", max != 0 ? max : (size_t)PS_FILEWATCH_MAX_BYTES);
  else if (err == UV_EISDIR)
    snprintf(reason, sizeof reason, "is a directory");
  else if (err == UV_EFTYPE)
    snprintf(reason, sizeof reason, "not a regular file");
  else
    snprintf(reason, sizeof reason, "%s", uv_strerror(err));
  snprintf(buf, len, "read %s: %s", path != NULL ? path : "(null)", reason);
}

int ps_file_read_sync(const char *path, size_t max, char **data, size_t *len, char *err, size_t errlen) {
  *data = NULL;
  *len = 0;
  if (err != NULL && errlen > 0) err[0] = '\0';
  if (max > SIZE_MAX / 2) max = SIZE_MAX / 2; /* max + 1 below must not wrap */
  int r = 0;
  char *buf = NULL;
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* O_NONBLOCK: as start_file_read */
  struct stat st;
  if (fd < 0)
    r = -errno;
  else if (fstat(fd, &st) != 0)
    r = -errno;
  else if (S_ISDIR(st.st_mode))
    r = UV_EISDIR;
  else if (!S_ISREG(st.st_mode))
    r = UV_EFTYPE;
  else if ((uint64_t)st.st_size > max)
    r = UV_E2BIG;
  /* Read to EOF, at most max + 1 bytes: the size may be out of date (the file grows, or is in /proc). */
  size_t cap = r == 0 ? (size_t)st.st_size + 1 : 0;
  if (r == 0 && (buf = malloc(cap + 1)) == NULL) r = UV_ENOMEM;
  while (r == 0) {
    if (got == cap) {
      if (cap > max) {
        r = UV_E2BIG;
        break;
      }
      size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      char *nb = realloc(buf, ncap + 1);
      if (nb == NULL) {
        r = UV_ENOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    ssize_t n = read(fd, buf + got, cap - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) r = -errno;
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (fd >= 0) close(fd);
  if (r != 0) {
    free(buf);
    if (err != NULL) ps_file_error(path, r, max, err, errlen);
    return r;
  }
  buf[got] = '\0';
  *data = buf;
  *len = got;
  return 0;
}
