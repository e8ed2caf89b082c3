/* Tests src/filewatch.c with real files in a temporary directory and a real loop: each change is awaited
 * as an event (the callback, or the count of reads the watcher finished), with a generous bound, and the
 * poll interval is 20 ms so that a poll comes often. Where a test must show that NOTHING was delivered, it
 * waits for the read that decided so (ps_filewatch_group_reads), never for a time to pass. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "filewatch.h"
#include "loop_fixture.h"

#define POLL_MS  20
#define LONG_MS  3600000 /* a poll that never comes during a test: only check_now reads */
#define WAIT_MS  10000   /* the bound on waiting for an event; a busy machine stays far below it */
#define MAX_KEEP 256     /* bytes of each delivered file the recorder keeps */

static uv_loop_t loop;
static char dir[64];

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path);
}

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  snprintf(dir, sizeof dir, "/tmp/ps_filewatch_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

TestSuite(filewatch, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------------------------------------ */

static const char *path_of(const char *name) {
  static char bufs[8][256];
  static int next;
  char *p = bufs[next++ % 8];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

/* Writes name as the atomic writers do (a temporary file renamed over it), so that no poll reads half. */
static void write_file(const char *name, const char *data, size_t len) {
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", path_of(name));
  FILE *f = fopen(tmp, "wb");
  cr_assert_not_null(f, "fopen %s", tmp);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
  cr_assert_eq(rename(tmp, path_of(name)), 0);
}

static void write_str(const char *name, const char *s) { write_file(name, s, strlen(s)); }

/* What the callback saw: each call, with a copy of every file. */
struct rec {
  int calls;
  size_t n;
  int err[PS_FILEWATCH_MAX_GROUP_FILES];
  size_t len[PS_FILEWATCH_MAX_GROUP_FILES];
  bool null_data[PS_FILEWATCH_MAX_GROUP_FILES];
  bool nul_ended[PS_FILEWATCH_MAX_GROUP_FILES];
  char data[PS_FILEWATCH_MAX_GROUP_FILES][MAX_KEEP];
  struct ps_filewatch *close_from_cb; /* set: the callback closes this watcher */
};

static void rec_cb(void *arg, const struct ps_file_content *files, size_t n) {
  struct rec *r = arg;
  r->calls++;
  r->n = n;
  for (size_t i = 0; i < n && i < PS_FILEWATCH_MAX_GROUP_FILES; i++) {
    r->err[i] = files[i].err;
    r->len[i] = files[i].len;
    r->null_data[i] = files[i].data == NULL;
    r->nul_ended[i] = files[i].data != NULL && files[i].data[files[i].len] == '\0';
    size_t k = files[i].len < MAX_KEEP - 1 ? files[i].len : MAX_KEEP - 1;
    if (files[i].data != NULL) memcpy(r->data[i], files[i].data, k);
    r->data[i][files[i].data != NULL ? k : 0] = '\0';
  }
  if (r->close_from_cb != NULL) ps_filewatch_close(r->close_from_cb);
}

struct wait_calls {
  struct rec *r;
  int calls;
};
static bool calls_reached(void *arg) {
  struct wait_calls *w = arg;
  return w->r->calls >= w->calls;
}
/* Runs the loop until the recorder has seen `calls` calls. */
static bool until_calls(struct rec *r, int calls) {
  struct wait_calls w = {r, calls};
  return ps_test_run_until(&loop, calls_reached, &w, WAIT_MS);
}

struct wait_reads {
  struct ps_filewatch_group *g;
  uint64_t reads;
};
static bool reads_reached(void *arg) {
  struct wait_reads *w = arg;
  return ps_filewatch_group_reads(w->g) >= w->reads;
}
static bool until_reads(struct ps_filewatch_group *g, uint64_t reads) {
  struct wait_reads w = {g, reads};
  return ps_test_run_until(&loop, reads_reached, &w, WAIT_MS);
}

/* A watcher with one group over the named files, its baseline read done. */
static struct ps_filewatch_group *watch(struct ps_filewatch **w, uint64_t interval, const char *const *names,
                                        size_t n, struct rec *r) {
  const char *paths[PS_FILEWATCH_MAX_GROUP_FILES];
  for (size_t i = 0; i < n; i++) paths[i] = strdup(path_of(names[i]));
  cr_assert_eq(ps_filewatch_new(&loop, interval, w), 0);
  struct ps_filewatch_group *g = NULL;
  cr_assert_eq(ps_filewatch_add(*w, paths, n, rec_cb, r, &g), 0);
  for (size_t i = 0; i < n; i++) free((void *)paths[i]);
  cr_assert_not_null(g);
  cr_assert(until_reads(g, 1), "the baseline read did not finish");
  cr_assert(ps_filewatch_group_ready(g));
  cr_assert_eq(r->calls, 0, "the baseline read is not delivered");
  return g;
}

/* ---- changes ------------------------------------------------------------------------------------------ */

Test(filewatch, a_change_is_delivered_with_the_new_content_of_every_file_of_the_group) {
  write_str("cert.pem", "cert one");
  write_str("key.pem", "key one");
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"cert.pem", "key.pem"};
  watch(&w, POLL_MS, names, 2, &r);

  write_str("cert.pem", "cert two, longer");
  cr_assert(until_calls(&r, 1), "the change was not delivered");
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.err[0], 0);
  cr_assert_str_eq(r.data[0], "cert two, longer");
  cr_assert_eq(r.len[0], strlen("cert two, longer"));
  cr_assert(r.nul_ended[0], "data[len] is the NUL the header promises");
  cr_assert_eq(r.err[1], 0);
  cr_assert_str_eq(r.data[1], "key one", "the unchanged file of the group comes along");

  /* A rewrite in place (same inode; O_TRUNC then write) is seen too, by its mtime and size. */
  int fd = open(path_of("key.pem"), O_WRONLY | O_TRUNC);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "key two", 7), 7);
  close(fd);
  struct wait_calls wc = {&r, 2};
  bool seen = false;
  /* An in-place write may be read half-way (empty after O_TRUNC); the last delivery has it whole. */
  for (int i = 0; i < 10 && !seen; i++) {
    cr_assert(ps_test_run_until(&loop, calls_reached, &wc, WAIT_MS), "the rewrite was not delivered");
    seen = strcmp(r.data[1], "key two") == 0;
    wc.calls = r.calls + 1;
  }
  cr_assert(seen, "the rewritten key was delivered: last saw '%s'", r.data[1]);
  cr_assert_str_eq(r.data[0], "cert two, longer");

  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

Test(filewatch, a_touch_or_a_rewrite_with_the_same_bytes_is_read_and_not_delivered) {
  write_str("token", "s3cr3t-token");
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"token"};
  struct ps_filewatch_group *g = watch(&w, POLL_MS, names, 1, &r);

  /* A touch: mtime (and ctime) change, the bytes do not. */
  struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
  cr_assert_eq(utimensat(AT_FDCWD, path_of("token"), ts, 0), 0);
  cr_assert(until_reads(g, 2), "the poll did not see the touch");
  cr_assert_eq(r.calls, 0, "a touch is not a change");

  /* The same bytes in a new file renamed over it (a new inode): read, not delivered. */
  write_str("token", "s3cr3t-token");
  cr_assert(until_reads(g, 3), "the poll did not see the new inode");
  cr_assert_eq(r.calls, 0, "the same bytes are not a change");

  /* The control: different bytes are delivered, so the two reads above could have delivered. */
  write_str("token", "rotated-token");
  cr_assert(until_calls(&r, 1));
  cr_assert_str_eq(r.data[0], "rotated-token");

  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

/* The kubelet's atomic writer (kubernetes pkg/volume/util/atomic_writer.go): the data goes to a new
 * timestamped directory, a symlink ..data_tmp to it is renamed over ..data, and each visible file is a
 * symlink to ..data/<name>; the visible paths themselves never change. */
Test(filewatch, a_kubelet_symlink_swap_delivers_both_files_of_the_group_together) {
  cr_assert_eq(mkdir(path_of("..2026_12_06_01"), 0700), 0);
  write_str("..2026_12_06_01/tls.crt", "CERT-A");
  write_str("..2026_12_06_01/tls.key", "KEY-A");
  cr_assert_eq(symlink("..2026_12_06_01", path_of("..data")), 0);
  cr_assert_eq(symlink("..data/tls.crt", path_of("tls.crt")), 0);
  cr_assert_eq(symlink("..data/tls.key", path_of("tls.key")), 0);
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"tls.crt", "tls.key"};
  struct ps_filewatch_group *g = watch(&w, POLL_MS, names, 2, &r);

  struct stat before;
  cr_assert_eq(lstat(path_of("tls.crt"), &before), 0);
  cr_assert_eq(mkdir(path_of("..2026_12_06_02"), 0700), 0);
  write_str("..2026_12_06_02/tls.crt", "CERT-B"); /* the same sizes: the inode and times tell */
  write_str("..2026_12_06_02/tls.key", "KEY-B");
  cr_assert_eq(symlink("..2026_12_06_02", path_of("..data_tmp")), 0);
  cr_assert_eq(rename(path_of("..data_tmp"), path_of("..data")), 0);

  cr_assert(until_calls(&r, 1), "the swap was not delivered");
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.err[0], 0);
  cr_assert_eq(r.err[1], 0);
  cr_assert_str_eq(r.data[0], "CERT-B");
  cr_assert_str_eq(r.data[1], "KEY-B", "the key arrives in the same call as its certificate");
  struct stat after;
  cr_assert_eq(lstat(path_of("tls.crt"), &after), 0);
  cr_assert_eq(before.st_ino, after.st_ino, "the visible path itself did not change: only what it leads to");

  /* The kubelet then removes the old directory: nothing the watcher reads changes, nothing is delivered.
   * A later poll still reads nothing new: a check_now read proves the state is unchanged. */
  nftw(path_of("..2026_12_06_01"), rm_one, 16, FTW_DEPTH | FTW_PHYS);
  uint64_t reads = ps_filewatch_group_reads(g);
  ps_filewatch_check_now(w);
  cr_assert(until_reads(g, reads + 1));
  cr_assert_eq(r.calls, 1, "removing the old directory is no change");

  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

/* What is compared at each poll is stat(2) of the path (through the symlinks) against the fstat(2) of the
 * descriptor last read, so a quiet file is stat'ed and never read again. Another group of the same watcher,
 * changed three times, is the clock: its three deliveries need three polls, each of which stat'ed the quiet
 * files too. (A poll comparing lstat(2), or anything else than what the read saw, reads them every time.) */
Test(filewatch, a_quiet_file_is_stated_at_each_poll_and_not_read_again) {
  cr_assert_eq(mkdir(path_of("..2026_12_06_01"), 0700), 0);
  write_str("..2026_12_06_01/token", "TOKEN");
  cr_assert_eq(symlink("..2026_12_06_01", path_of("..data")), 0);
  cr_assert_eq(symlink("..data/token", path_of("token")), 0);
  write_str("plain", "PLAIN");
  write_str("clock", "0");
  struct rec r = {0}, rc = {0};
  struct ps_filewatch *w;
  const char *names[] = {"token", "plain"};
  struct ps_filewatch_group *g = watch(&w, POLL_MS, names, 2, &r);
  const char *pc[] = {path_of("clock")};
  struct ps_filewatch_group *gc = NULL;
  cr_assert_eq(ps_filewatch_add(w, pc, 1, rec_cb, &rc, &gc), 0);
  cr_assert(until_reads(gc, 1));
  for (int i = 1; i <= 3; i++) {
    char v[8];
    snprintf(v, sizeof v, "%d", i);
    write_str("clock", v);
    cr_assert(until_calls(&rc, i), "change %d of the clock file was not delivered", i);
  }
  cr_assert_eq(ps_filewatch_group_reads(g), 1, "the quiet group was read again without a change");
  cr_assert_eq(r.calls, 0);
  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

Test(filewatch, a_deleted_file_gives_its_error_once_and_a_recreated_one_is_delivered) {
  write_str("ca.pem", "CA-1");
  write_str("password", "pw-1");
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"ca.pem", "password"};
  struct ps_filewatch_group *g = watch(&w, POLL_MS, names, 2, &r);

  cr_assert_eq(unlink(path_of("password")), 0);
  cr_assert(until_calls(&r, 1), "the deletion was not delivered");
  cr_assert_eq(r.err[1], UV_ENOENT);
  cr_assert(r.null_data[1], "a file in error has no data");
  cr_assert_eq(r.len[1], 0);
  cr_assert_eq(r.err[0], 0);
  cr_assert_str_eq(r.data[0], "CA-1", "the other file of the group is still delivered");

  /* Still missing: check_now reads it again and delivers nothing (the same error is no change). */
  uint64_t reads = ps_filewatch_group_reads(g);
  ps_filewatch_check_now(w);
  cr_assert(until_reads(g, reads + 1));
  cr_assert_eq(r.calls, 1, "the same error twice is delivered once");

  /* Re-created with the very bytes it had: delivered, since an error was delivered last. */
  write_str("password", "pw-1");
  cr_assert(until_calls(&r, 2), "the re-created file was not delivered");
  cr_assert_eq(r.err[1], 0);
  cr_assert_str_eq(r.data[1], "pw-1");

  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

Test(filewatch, a_file_over_the_limit_is_uv_e2big_for_that_file_only) {
  write_str("cert.pem", "small cert");
  write_str("key.pem", "small key");
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"cert.pem", "key.pem"};
  watch(&w, POLL_MS, names, 2, &r);

  size_t big = PS_FILEWATCH_MAX_BYTES + 1;
  char *data = malloc(big);
  cr_assert_not_null(data);
  memset(data, 'k', big);
  write_file("key.pem", data, big);
  cr_assert(until_calls(&r, 1), "the oversized file was not delivered as an error");
  cr_assert_eq(r.err[1], UV_E2BIG);
  cr_assert(r.null_data[1]);
  cr_assert_eq(r.err[0], 0);
  cr_assert_str_eq(r.data[0], "small cert");

  /* Exactly at the limit is fine. */
  write_file("key.pem", data, PS_FILEWATCH_MAX_BYTES);
  cr_assert(until_calls(&r, 2));
  cr_assert_eq(r.err[1], 0);
  cr_assert_eq(r.len[1], PS_FILEWATCH_MAX_BYTES);
  free(data);

  char msg[256];
  ps_file_error(path_of("key.pem"), UV_E2BIG, 0, msg, sizeof msg);
  char want[300];
  snprintf(want, sizeof want, "read %s: larger than %u bytes", path_of("key.pem"), PS_FILEWATCH_MAX_BYTES);
  cr_assert_str_eq(msg, want);

  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

/* ---- check_now ---------------------------------------------------------------------------------------- */

Test(filewatch, check_now_delivers_a_change_at_once_without_a_poll) {
  write_str("a", "one");
  write_str("b", "bee");
  struct rec ra = {0}, rb = {0};
  struct ps_filewatch *w;
  const char *names[] = {"a"};
  struct ps_filewatch_group *ga = watch(&w, LONG_MS, names, 1, &ra);
  const char *pb[] = {path_of("b")};
  struct ps_filewatch_group *gb = NULL;
  cr_assert_eq(ps_filewatch_add(w, pb, 1, rec_cb, &rb, &gb), 0);
  cr_assert(until_reads(gb, 1));

  write_str("a", "two");
  /* The poll is an hour away: only check_now can read it during this test. */
  ps_filewatch_check_now(w);
  cr_assert(until_calls(&ra, 1), "check_now did not deliver the change");
  cr_assert_str_eq(ra.data[0], "two");
  cr_assert(until_reads(gb, 2), "check_now reads every group");
  cr_assert_eq(rb.calls, 0, "an unchanged group is not delivered");
  cr_assert_eq(ps_filewatch_group_reads(ga), 2);

  /* check_now during a read: the group is read once more after it, so the later change is not lost. */
  write_str("a", "three");
  ps_filewatch_check_now(w);
  ps_filewatch_check_now(w);
  cr_assert(until_reads(ga, 4), "the second check_now was not read after the first");
  cr_assert_eq(ra.calls, 2);
  cr_assert_str_eq(ra.data[0], "three");

  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}

/* ---- closing ------------------------------------------------------------------------------------------ */

Test(filewatch, close_with_a_read_in_flight_never_calls_back) {
  write_str("a", "one");
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"a"};
  watch(&w, LONG_MS, names, 1, &r);

  write_str("a", "two");
  ps_filewatch_check_now(w); /* the open is on the thread pool now */
  ps_filewatch_close(w);     /* before any of it came back */
  PS_LOOP_END(&loop);        /* runs the loop dry: the read returns, and must not call back */
  cr_assert_eq(r.calls, 0, "a callback ran after ps_filewatch_close");
}

/* How many of this process's descriptors are open on path (their /proc/self/fd link names it). */
static int fds_on(const char *path) {
  DIR *d = opendir("/proc/self/fd");
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    char link[300], target[300];
    snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
    ssize_t k = readlink(link, target, sizeof target - 1);
    if (k <= 0) continue;
    target[k] = '\0';
    if (strcmp(target, path) == 0) n++;
  }
  closedir(d);
  return n;
}

/* The close comes after the thread pool opened the file but before the loop ran the open's callback (so
 * it cannot be cancelled): that callback must close the descriptor it is handed, and call nothing back. */
Test(filewatch, close_after_the_open_ran_closes_its_descriptor) {
  write_str("a", "one");
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"a"};
  watch(&w, LONG_MS, names, 1, &r);
  write_str("a", "two");
  char file[300];
  cr_assert_not_null(realpath(path_of("a"), file));
  cr_assert_eq(fds_on(file), 0);
  ps_filewatch_check_now(w);
  /* The loop does not run here, so the open's callback cannot; the thread pool's open shows in
   * /proc/self/fd. A bounded wait on that state, yielding the CPU. */
  uint64_t end = uv_hrtime() + (uint64_t)WAIT_MS * 1000000;
  while (fds_on(file) == 0 && uv_hrtime() < end) sched_yield();
  cr_assert_eq(fds_on(file), 1, "the thread pool did not open the file");
  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
  cr_assert_eq(r.calls, 0, "a callback ran after ps_filewatch_close");
  cr_assert_eq(fds_on(file), 0, "the descriptor opened before the close was leaked");
}

Test(filewatch, close_during_the_baseline_read_and_from_the_callback) {
  write_str("a", "one");
  struct rec r = {0};
  struct ps_filewatch *w;
  cr_assert_eq(ps_filewatch_new(&loop, POLL_MS, &w), 0);
  const char *pa[] = {path_of("a")};
  cr_assert_eq(ps_filewatch_add(w, pa, 1, rec_cb, &r, NULL), 0);
  ps_filewatch_close(w); /* the baseline read is in flight */
  ps_filewatch_close(w); /* twice is a no-op */
  cr_assert_eq(ps_filewatch_add(w, pa, 1, rec_cb, &r, NULL), UV_EINVAL, "closing: nothing more is added");
  ps_filewatch_check_now(w); /* closing: a no-op */

  /* A second watcher closed by its own callback: nothing after it, and nothing leaks (ASan). */
  struct rec r2 = {0};
  struct ps_filewatch *w2;
  const char *names[] = {"a"};
  watch(&w2, POLL_MS, names, 1, &r2);
  r2.close_from_cb = w2;
  write_str("a", "two");
  cr_assert(until_calls(&r2, 1));
  write_str("a", "three");
  PS_LOOP_END(&loop);
  cr_assert_eq(r2.calls, 1, "no callback after the close in the callback");
  cr_assert_eq(r.calls, 0);
}

Test(filewatch, an_empty_watcher_closes_and_needs_no_loop_turn_to_stay_clean) {
  struct ps_filewatch *w;
  cr_assert_eq(ps_filewatch_new(&loop, 0, &w), UV_EINVAL, "an interval of 0 is refused");
  cr_assert_null(w);
  cr_assert_eq(ps_filewatch_new(&loop, POLL_MS, &w), 0);
  ps_filewatch_check_now(w); /* no group: nothing to do */
  cr_assert_eq(uv_loop_alive(&loop), 0, "a watcher without a group keeps the loop alive");
  ps_filewatch_close(w);
  ps_filewatch_close(NULL);
  PS_LOOP_END(&loop);
}

/* ---- limits ------------------------------------------------------------------------------------------- */

Test(filewatch, groups_and_files_are_bounded) {
  write_str("a", "x");
  struct rec r = {0};
  struct ps_filewatch *w;
  cr_assert_eq(ps_filewatch_new(&loop, LONG_MS, &w), 0);
  const char *many[PS_FILEWATCH_MAX_GROUP_FILES + 1];
  for (size_t i = 0; i <= PS_FILEWATCH_MAX_GROUP_FILES; i++) many[i] = path_of("a");
  cr_assert_eq(ps_filewatch_add(w, many, PS_FILEWATCH_MAX_GROUP_FILES + 1, rec_cb, &r, NULL), UV_EINVAL);
  cr_assert_eq(ps_filewatch_add(w, many, 0, rec_cb, &r, NULL), UV_EINVAL);
  const char *empty[] = {""};
  cr_assert_eq(ps_filewatch_add(w, empty, 1, rec_cb, &r, NULL), UV_EINVAL);
  char *longp = malloc(PS_FILEWATCH_MAX_PATH + 2);
  memset(longp, 'p', PS_FILEWATCH_MAX_PATH + 1);
  longp[PS_FILEWATCH_MAX_PATH + 1] = '\0';
  const char *lp[] = {longp};
  cr_assert_eq(ps_filewatch_add(w, lp, 1, rec_cb, &r, NULL), UV_ENAMETOOLONG);
  free(longp);
  struct ps_filewatch_group *last = NULL;
  cr_assert_eq(ps_filewatch_add(w, many, PS_FILEWATCH_MAX_GROUP_FILES, rec_cb, &r, &last), 0, "8 files fit");
  for (size_t i = 1; i < PS_FILEWATCH_MAX_GROUPS; i++)
    cr_assert_eq(ps_filewatch_add(w, many, 1, rec_cb, &r, &last), 0, "group %zu", i);
  struct ps_filewatch_group *g = (struct ps_filewatch_group *)1;
  cr_assert_eq(ps_filewatch_add(w, many, 1, rec_cb, &r, &g), UV_ENOSPC);
  cr_assert_null(g, "*out is NULL on an error");
  cr_assert(until_reads(last, 1), "the groups that fit are read");
  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
  cr_assert_eq(r.calls, 0);
}

/* ---- ps_file_read_sync -------------------------------------------------------------------------------- */

Test(filewatch, read_sync_reads_a_whole_file_through_a_symlink) {
  write_str("real.pem", "-----BEGIN CERTIFICATE-----\n");
  cr_assert_eq(symlink("real.pem", path_of("link.pem")), 0);
  char *data = NULL;
  size_t len = 0;
  char err[256] = "unset";
  cr_assert_eq(ps_file_read_sync(path_of("link.pem"), PS_FILEWATCH_MAX_BYTES, &data, &len, err, sizeof err),
               0);
  cr_assert_eq(len, 28);
  cr_assert_str_eq(data, "-----BEGIN CERTIFICATE-----\n", "NUL-terminated");
  cr_assert_str_eq(err, "");
  free(data);
  write_str("empty", "");
  cr_assert_eq(ps_file_read_sync(path_of("empty"), 10, &data, &len, err, sizeof err), 0);
  cr_assert_eq(len, 0);
  cr_assert_str_eq(data, "");
  free(data);
  write_str("ten", "0123456789");
  cr_assert_eq(ps_file_read_sync(path_of("ten"), 10, &data, &len, err, sizeof err), 0, "exactly max fits");
  cr_assert_eq(len, 10);
  free(data);
  PS_LOOP_END(&loop); /* the suite's loop, unused here */
}

Test(filewatch, read_sync_errors_name_the_file_and_the_reason) {
  char *data = (char *)1;
  size_t len = 7;
  char err[512], want[512];
  const char *missing = path_of("nope.pem");
  cr_assert_eq(ps_file_read_sync(missing, 100, &data, &len, err, sizeof err), UV_ENOENT);
  snprintf(want, sizeof want, "read %s: no such file or directory", missing);
  cr_assert_str_eq(err, want);
  cr_assert_null(data);
  cr_assert_eq(len, 0);

  cr_assert_eq(ps_file_read_sync(dir, 100, &data, &len, err, sizeof err), UV_EISDIR);
  snprintf(want, sizeof want, "read %s: is a directory", dir);
  cr_assert_str_eq(err, want);

  write_str("eleven", "0123456789A");
  cr_assert_eq(ps_file_read_sync(path_of("eleven"), 10, &data, &len, err, sizeof err), UV_E2BIG);
  snprintf(want, sizeof want, "read %s: larger than 10 bytes", path_of("eleven"));
  cr_assert_str_eq(err, want);

  /* A FIFO would block a reader until a writer comes: refused at once, not waited on. */
  cr_assert_eq(mkfifo(path_of("fifo"), 0600), 0);
  cr_assert_eq(ps_file_read_sync(path_of("fifo"), 100, &data, &len, err, sizeof err), UV_EFTYPE);
  snprintf(want, sizeof want, "read %s: not a regular file", path_of("fifo"));
  cr_assert_str_eq(err, want);

  /* A dangling symlink (a kubelet ..data that is gone) is a missing file. */
  cr_assert_eq(symlink("..data/tls.crt", path_of("tls.crt")), 0);
  cr_assert_eq(ps_file_read_sync(path_of("tls.crt"), 100, &data, &len, err, sizeof err), UV_ENOENT);
  snprintf(want, sizeof want, "read %s: no such file or directory", path_of("tls.crt"));
  cr_assert_str_eq(err, want);

  /* Unreadable (skipped as root, who reads it anyway). */
  if (geteuid() != 0) {
    write_str("secret", "x");
    cr_assert_eq(chmod(path_of("secret"), 0), 0);
    cr_assert_eq(ps_file_read_sync(path_of("secret"), 100, &data, &len, err, sizeof err), UV_EACCES);
    snprintf(want, sizeof want, "read %s: permission denied", path_of("secret"));
    cr_assert_str_eq(err, want);
  }
  PS_LOOP_END(&loop); /* the suite's loop, unused here */
}

Test(filewatch, a_fifo_and_a_directory_are_errors_for_the_watcher_too) {
  write_str("ok", "fine");
  cr_assert_eq(mkfifo(path_of("fifo"), 0600), 0);
  cr_assert_eq(mkdir(path_of("d"), 0700), 0);
  struct rec r = {0};
  struct ps_filewatch *w;
  const char *names[] = {"ok", "fifo", "d"};
  struct ps_filewatch_group *g = watch(&w, POLL_MS, names, 3, &r);
  /* The baseline read came back (the FIFO did not hang the thread pool); a change shows what it saw. */
  write_str("ok", "finer");
  cr_assert(until_calls(&r, 1));
  cr_assert_str_eq(r.data[0], "finer");
  cr_assert_eq(r.err[1], UV_EFTYPE);
  cr_assert_eq(r.err[2], UV_EISDIR);
  cr_assert_geq(ps_filewatch_group_reads(g), 2);
  ps_filewatch_close(w);
  PS_LOOP_END(&loop);
}
