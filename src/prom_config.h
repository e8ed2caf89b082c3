/* The --prometheus-config file (docs/prometheus-config.md): per Prometheus server, the TLS files, the
 * credentials and the extra headers prescale uses when it queries that server. YAML, with the field names
 * of Prometheus's own http_config (prometheus/common config/http_config.go), so that a user can copy them
 * from a scrape config:
 *
 *     servers:
 *       - url: https://thanos-querier.openshift-monitoring.svc:9091
 *         authorization: {type: Bearer, credentials_file:
 * /var/run/secrets/kubernetes.io/serviceaccount/token} tls_config: {ca_file: /etc/prescale/ca.pem}
 *       - url: https://prometheus.example:9090
 *         basic_auth: {username: keda, password_file: /etc/prescale/prom-password}
 *         tls_config: {ca_file: ..., cert_file: ..., key_file: ..., server_name: ..., insecure_skip_verify:
 * false} headers: {X-Scope-OrgID: team-a}
 *
 * Parsed with libyaml's event API (no hand-written YAML). Pure but for ps_prom_config_load, which reads the
 * file and checks the files it names, synchronously: startup only, before the loop runs.
 *
 * Every error is one line, `prometheus-config FILE:LINE: PATH: what`, e.g.
 *     prometheus-config /etc/p.yaml:7: servers[1].tls_config: unknown key "cafile" (known: ca_file, ...)
 * (servers are counted from 0). A key of Prometheus's http_config that prescale does not implement
 * (oauth2, proxy_url, follow_redirects, enable_http2, bearer_token_file, tls_config.min_version, ...) says
 * "is not supported by prescale" rather than "unknown". No error ever quotes a secret (credentials,
 * password, a header value) nor a url that holds user:password@: they are named by their key only. */
#ifndef PS_PROM_CONFIG_H
#define PS_PROM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Bounds (docs/reliability.md, "Every limit"). Anchors and aliases are refused outright, so a
 * billion-laughs file fails at its first anchor; these bound everything else a file can make the parser
 * do. Past any of them the file is refused with an error naming the bound. */
#define PS_PROM_CONFIG_MAX_BYTES        (256u << 10) /* the file; a real one is a few KiB */
#define PS_PROM_CONFIG_MAX_EVENTS       4096         /* libyaml events; a real file has about 10 per server */
/* Nested mappings and sequences: the schema's own depth (the file > servers > a server > its sections). */
#define PS_PROM_CONFIG_MAX_DEPTH        4
#define PS_PROM_CONFIG_MAX_SERVERS      64
#define PS_PROM_CONFIG_MAX_HEADERS      32          /* headers: entries per server */
#define PS_PROM_CONFIG_MAX_SCALAR       (16u << 10) /* bytes of one value (an inline token, a path) */
#define PS_PROM_CONFIG_MAX_HEADER_BYTES (8u << 10)  /* "Name: value\r\n" of all headers of one server */

struct ps_prom_header {
  char *name;  /* an HTTP token (RFC 9110 5.6.2), not a reserved one (Host, Authorization, ...) */
  char *value; /* no control byte but HTAB (so no CR, LF or NUL: no header smuggling); may be "" */
};

/* One server. Every string is owned by the config (freed by ps_prom_config_free); NULL when absent.
 * Paths (*_file) are as written, or, when relative, joined to the directory of the config file (as
 * Prometheus resolves the paths of its own config). */
struct ps_prom_server_cfg {
  /* http:// or https://, a host, an optional path; no query, fragment or user:password@; stored without
   * trailing '/'. */
  char *url;
  /* authorization: the scheme of the Authorization header, an HTTP token, default "Bearer" ("Basic" is
   * refused: basic_auth says it); NULL when there is no authorization section. Exactly one of credentials
   * (inline) and credentials_file is set then. The Authorization header is "<auth_type> <credentials>".
   * Like Prometheus, the user of credentials_file trims the whitespace around what it reads. */
  char *auth_type;
  char *credentials, *credentials_file;
  /* basic_auth (RFC 7617): username NULL: none. The username has no ':' and no control byte; at most one
   * of password and password_file (neither: an empty password). Never together with authorization. */
  char *username, *password, *password_file;
  /* tls_config, https:// only: ca_file NULL: the system CAs; cert_file and key_file come together (a client
   * certificate); server_name: the name sent in SNI and verified, instead of the url's host. */
  char *ca_file, *cert_file, *key_file, *server_name;
  bool insecure_skip_verify;
  struct ps_prom_header *headers; /* headers: sent with every request to this server, in file order */
  size_t nheaders;
};

struct ps_prom_config {
  struct ps_prom_server_cfg *servers; /* in file order; no two with the same url */
  size_t nservers;
};

/* Parses len bytes of YAML (a top-level mapping with `servers:`, one document) into *out (zeroed first).
 * filename is used in messages and to resolve relative paths; the files themselves are not touched.
 * Returns 0; UV_EINVAL with one line in err (see above), *out then empty; UV_ENOMEM. */
int ps_prom_config_parse(const char *yaml, size_t len, const char *filename, struct ps_prom_config *out,
                         char *err, size_t errlen);
/* Startup only (blocking reads, before the loop runs): reads path (at most PS_PROM_CONFIG_MAX_BYTES),
 * parses it, and checks that every file it names (credentials_file, password_file, ca_file, cert_file,
 * key_file) is a regular file this process can open for reading, naming the key and the file when it is
 * not: `prometheus-config /etc/p.yaml:4: servers[0].tls_config.ca_file: cannot read "/x.pem": No such file
 * or directory`. What those files hold (the PEM, the token) is for the HTTP client to check. Same returns
 * as ps_prom_config_parse. */
int ps_prom_config_load(const char *path, struct ps_prom_config *out, char *err, size_t errlen);
/* The server whose url is the longest prefix of server_url (a trigger's serverAddress) that ends at a
 * boundary: at the end of server_url or before a '/'. So https://p:9090 matches https://p:9090 and
 * https://p:9090/api but not https://p:90901. Trailing slashes are ignored on both sides (ps_flags_url_len);
 * scheme and host compare without regard to case, the path exactly. NULL: no server matches (or c NULL). */
const struct ps_prom_server_cfg *ps_prom_config_match(const struct ps_prom_config *c, const char *server_url);
/* Frees what the config owns and zeroes it; c may be NULL or zeroed. */
void ps_prom_config_free(struct ps_prom_config *c);

#endif
