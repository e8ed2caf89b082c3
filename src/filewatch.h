/* Watching files that prescale reloads while it runs (TLS certificates, Prometheus credentials), and reading
 * them without blocking the loop.
 *
 * Why stat polling and not inotify: the kubelet updates a Secret or ConfigMap volume atomically by writing
 * a new directory `..2026_x`, pointing a new symlink `..data_tmp` at it and renaming that over `..data`;
 * each visible file is a symlink `name -> ..data/name`. The file a path names changes while the path and
 * its own inode do not, so an inotify watch on the path may never fire. stat(2) follows the symlinks, so
 * comparing what stat says (device, inode, size, mtime, ctime) every interval sees the swap.
 *
 * Why a timer and uv_fs_stat rather than uv_fs_poll: uv_fs_poll compares each stat with its own previous
 * one, taken on its own schedule, so a change that lands between our read of a file and uv_fs_poll's first
 * stat is never seen. Here the stat of the next poll is compared with the fstat(2) of the very descriptor
 * the delivered bytes were read from, so a change after that read is always noticed. One timer serves
 * every file of a watcher.
 *
 * A group is a set of files that are delivered together (a certificate and its key): when any of them
 * changed, every file of the group is re-read (uv_fs_open / uv_fs_fstat / uv_fs_read / uv_fs_close on the
 * libuv thread pool, never a read on the loop), and the group's callback runs once with all of them, but
 * only when some file's content (its bytes, or whether it could be read, and why not) differs from what
 * was delivered last: a touch, or a rewrite with the same bytes, delivers nothing.
 *
 * The baseline: ps_filewatch_add reads the group once at once (asynchronously) and takes what it reads as
 * what the user already has, without calling back; the user loaded the files itself at startup with
 * ps_file_read_sync, where a failure is a startup error. A change that lands between the user's read and
 * that first read is not delivered (a window of a loop turn at startup). ps_filewatch_group_ready says
 * when that first read finished.
 *
 * Limit of stat polling: a rewrite in place that keeps the size and lands within the filesystem's timestamp
 * granularity (a few ms) of our read looks unchanged; it is seen at the next change, or at check_now. The
 * kubelet and atomic writers (a new file renamed over the old one) always change the inode.
 *
 * Costs: one stat per file per interval; a read only after a stat differed (or check_now). A file whose
 * read failed for a reason that may pass (EACCES, EIO) is read again at every poll until it reads. */
#ifndef PS_FILEWATCH_H
#define PS_FILEWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* How often every watched file is stat'ed. The kubelet itself refreshes mounted Secrets only every
 * minute or so (its sync period plus the cache TTL), so 10 s adds little to a rotation's delay. */
#define PS_FILEWATCH_INTERVAL_MS     10000
/* The largest file read (by the watcher and by ps_file_read_sync): a larger one is an error for that file,
 * UV_E2BIG. Certificates, keys and tokens are a few KiB; this bounds the memory of a wrong path (a log). */
#define PS_FILEWATCH_MAX_BYTES       (1u << 20)
/* Groups per watcher (ps_filewatch_add: UV_ENOSPC beyond) and files per group (UV_EINVAL beyond): a
 * TLS server context and one group per configured Prometheus server. So at most 64 x 8 x 1 MiB is held. */
#define PS_FILEWATCH_MAX_GROUPS      64
#define PS_FILEWATCH_MAX_GROUP_FILES 8
/* The longest path accepted (UV_ENAMETOOLONG beyond), as Linux's PATH_MAX. */
#define PS_FILEWATCH_MAX_PATH        4096

/* One file as delivered. data is NUL-terminated (data[len] == '\0', for PEM and token parsers) and valid
 * only during the callback: copy what is kept. err != 0: the file could not be read (data NULL, len 0):
 * UV_ENOENT (gone), UV_EACCES, UV_E2BIG (larger than PS_FILEWATCH_MAX_BYTES), UV_EISDIR, UV_EFTYPE (not a
 * regular file), ...; ps_file_error words it. The user keeps what it had for that file and logs. */
struct ps_file_content {
  const char *path;
  const char *data;
  size_t len;
  int err;
};

/* Called once per change of a group, with every file of the group in the order given to ps_filewatch_add
 * (n of them), after all of them were re-read, so a certificate and its key arrive together. It may call
 * ps_filewatch_check_now and ps_filewatch_close (no callback follows the close). */
typedef void (*ps_filewatch_cb)(void *arg, const struct ps_file_content *files, size_t n);

struct ps_filewatch;
struct ps_filewatch_group;

/* A watcher on loop, polling every interval_ms (> 0, else UV_EINVAL; PS_FILEWATCH_INTERVAL_MS in the
 * server, a few ms in tests). Owns a timer that runs once a group is added; *out is freed by
 * ps_filewatch_close. 0, UV_EINVAL or UV_ENOMEM. */
int ps_filewatch_new(uv_loop_t *loop, uint64_t interval_ms, struct ps_filewatch **out);

/* Watches the n paths (1..PS_FILEWATCH_MAX_GROUP_FILES, copied) as one group and starts the baseline read.
 * arg is not owned. *out (may be NULL) belongs to the watcher and lives until ps_filewatch_close. 0,
 * UV_EINVAL (n out of range, a NULL or empty path, or the watcher closing), UV_ENAMETOOLONG, UV_ENOSPC
 * (PS_FILEWATCH_MAX_GROUPS already) or UV_ENOMEM; on an error nothing is watched and cb never runs. */
int ps_filewatch_add(struct ps_filewatch *w, const char *const *paths, size_t n, ps_filewatch_cb cb,
                     void *arg, struct ps_filewatch_group **out);

/* True once the group's baseline read finished: a change from then on is delivered. */
bool ps_filewatch_group_ready(const struct ps_filewatch_group *g);
/* Reads of the group that finished, delivered or not (the baseline, polls that saw a stat differ,
 * check_now): with the callback's count, it tells a touch that was read and not delivered. */
uint64_t ps_filewatch_group_reads(const struct ps_filewatch_group *g);

/* SIGHUP: re-reads every group at once, without waiting for the stat to differ, and delivers the groups
 * whose content changed (a group being read is read again after that read). Nothing when closing. */
void ps_filewatch_check_now(struct ps_filewatch *w);

/* Stops watching: the timer is closed, and no callback runs from now on, not even for a read in flight.
 * Memory is freed in the close callbacks, once the timer has closed and every request in flight has
 * returned (an open descriptor is closed first), so the loop must run on. NULL is a no-op. */
void ps_filewatch_close(struct ps_filewatch *w);

/* Startup only (before the loop runs, or where blocking is fine): reads the whole regular file at path,
 * following symlinks, at most max bytes (else UV_E2BIG). On success *data (owned by the caller, free(),
 * NUL-terminated) and *len. On an error *data is NULL and err says, naming the file, e.g.
 * "read /etc/x.pem: no such file or directory". Returns 0 or a negative libuv error. */
int ps_file_read_sync(const char *path, size_t max, char **data, size_t *len, char *err, size_t errlen);

/* Writes "read PATH: REASON" into buf (always NUL-terminated): REASON is uv_strerror's words except for
 * UV_E2BIG ("larger than PS_FILEWATCH_MAX_BYTES bytes" with max in it, max 0 meaning that constant),
 * UV_EISDIR ("is a directory") and UV_EFTYPE ("not a regular file"). The user of a watcher logs with it. */
void ps_file_error(const char *path, int err, size_t max, char *buf, size_t len);

#endif
