/* The gRPC port's TLS from files (--tls-cert, --tls-key, --tls-client-ca): loaded at startup, then watched
 * (filewatch.h) and reloaded into the same ps_tls_ctx when they change, so that a certificate renewed by
 * cert-manager is served without a restart and without dropping a connection. */
#ifndef PS_TLS_FILES_H
#define PS_TLS_FILES_H

#include <stddef.h>

#include "filewatch.h"
#include "tls.h"

/* Metrics (no label a client can mint): the served certificate's notAfter, for an expiry alert; reloads
 * by result (ok, failed). */
#define PS_TLS_EXPIRY_METRIC  "prescale_tls_cert_expiry_timestamp_seconds"
#define PS_TLS_RELOADS_METRIC "prescale_tls_reloads_total"

struct ps_tls_files;

/* Startup only (blocking reads, before the loop runs): reads cert and key (both required) and ca (NULL:
 * no client certificate asked), builds the server context and sets the expiry gauge. On an error err
 * names the flag and the file, e.g. "--tls-key /etc/tls/tls.key: key does not match certificate"; never
 * a key's bytes. 0, UV_EINVAL, UV_ENOMEM or the file's read error. The paths are copied. */
int ps_tls_files_load(const char *cert, const char *key, const char *ca, struct ps_tls_files **out, char *err,
                      size_t errlen);
/* The context to give the listener (ps_net_listener_set_tls); owned by f, reloaded in place. */
struct ps_tls_ctx *ps_tls_files_ctx(const struct ps_tls_files *f);
/* Watches the files with w (one group, so a certificate and its key are read together; *group, may be
 * NULL, is the watcher's). A changed group is reloaded; a file that cannot be read or does not load keeps
 * the certificate in use and logs an error naming the file. 0 or ps_filewatch_add's error. */
int ps_tls_files_watch(struct ps_tls_files *f, struct ps_filewatch *w, struct ps_filewatch_group **group);
/* After the listener is closed and the watcher closed (no callback may follow). NULL is fine. */
void ps_tls_files_free(struct ps_tls_files *f);

#endif
