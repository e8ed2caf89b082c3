/* The Prometheus servers of --prometheus-config (src/prom_config.h) while prescale runs: per server, the TLS
 * context built from its tls_config, its credentials (authorization or basic_auth) and its headers; what a
 * request to a serverAddress needs, found by the server's url (longest prefix).
 *
 * At startup (before the loop runs) every file is read synchronously and checked: a bad PEM, an unreadable
 * or empty credentials file is an error naming the file and the key, and prescale does not start. Then one
 * ps_filewatch group per server watches its files (credentials_file or password_file, ca_file, cert_file,
 * key_file): when they change (a service-account token rotates every hour, cert-manager renews a
 * certificate) they are re-read off the loop and the next request uses them. A file that fails to read or
 * to load keeps what was loaded before and logs why, naming the server and the file, never the secret.
 *
 * Secrets (a token, a password, the Authorization value) live only in this module's memory and in the bytes
 * of a request being written; they reach no log line, error message or metric. */
#ifndef PS_PROM_SERVERS_H
#define PS_PROM_SERVERS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "filewatch.h"
#include "http_client.h"
#include "prom_config.h"

/* The longest Authorization line a credential may make (a service-account token, a JWT, is 1-2 KiB): a
 * longer one is refused at startup and at a reload (which keeps the previous). With customHeaders
 * (PS_MAX_CUSTOM_HEADERS) and the configured headers (PS_PROM_CONFIG_MAX_HEADER_BYTES) a request may still
 * exceed PS_HTTP_MAX_EXTRA_HEADERS: ps_prom_servers_apply then says UV_E2BIG. */
#define PS_PROM_SERVERS_MAX_AUTH 8192

struct ps_prom_servers;

/* Builds every configured server from cfg (copied: cfg may be freed afterwards; NULL: none). Startup only,
 * before the loop runs: reads files synchronously. 0; UV_EINVAL with err naming the server, the key and
 * the file ("prometheus-config: servers[1] (https://p:9090): tls_config.ca_file /etc/ca.pem: ..."); or
 * UV_ENOMEM. *out is freed by ps_prom_servers_free. */
int ps_prom_servers_new(const struct ps_prom_config *cfg, struct ps_prom_servers **out, char *err,
                        size_t errlen);
/* Watches every server's files with w (one group per server that has files): a change is re-read off the
 * loop and used by the next request. 0, or the error of ps_filewatch_add with err saying which server. */
int ps_prom_servers_watch(struct ps_prom_servers *s, struct ps_filewatch *w, char *err, size_t errlen);
/* Whether every group's first read finished (ps_filewatch_group_ready): a change from then on is
 * delivered; one between the startup read and that first read is not (filewatch.h, "The baseline"). */
bool ps_prom_servers_watch_ready(const struct ps_prom_servers *s);

/* What a request to server_url needs: o->tls and o->tls_server_name (the matching server's context, from
 * its tls_config: a trigger's unsafe_ssl does not change it, so that a ScaledObject cannot turn off the
 * verification of a server that gets credentials; for a server not listed, NULL, i.e. the HTTP client's
 * default, or a shared context without verification when unsafe_ssl), and o->headers, pointed at
 * `headers` (reset first): the trigger's `custom` lines ("Name: value\r\n" each, may be NULL) but those
 * whose name the server's configuration sets (its Authorization, its headers: the operator's
 * configuration wins, so a ScaledObject cannot pick another tenant's X-Scope-OrgID), then the server's
 * Authorization line and headers. headers holds a secret: free it with ps_prom_servers_wipe once the
 * request was made (ps_http_get_opts copies it). s may be NULL (no --prometheus-config servers).
 * 0, UV_E2BIG (more than PS_HTTP_MAX_EXTRA_HEADERS bytes in all) or UV_ENOMEM. */
int ps_prom_servers_apply(struct ps_prom_servers *s, const char *server_url, bool unsafe_ssl,
                          const char *custom, struct ps_http_opts *o, struct ps_buf *headers);
/* Overwrites and frees what apply put in headers. */
void ps_prom_servers_wipe(struct ps_buf *headers);

/* Reloads (credentials and TLS files) that succeeded and failed since start, for tests. */
void ps_prom_servers_reloads(const struct ps_prom_servers *s, size_t *ok, size_t *failed);

/* Frees the servers and their contexts (connections made with them keep working). The filewatch groups
 * belong to the watcher: close it first (ps_filewatch_close), so that no callback reaches freed memory. */
void ps_prom_servers_free(struct ps_prom_servers *s);

#endif
