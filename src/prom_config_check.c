/* The rules on what prom_config.c read from a --prometheus-config file (prom_config.h): a server's url,
 * its authorization, basic_auth and tls_config sections, the names of its headers, and the lookup of a
 * trigger's serverAddress. The words of every refusal follow the key path; none quotes a secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "flags.h"
#include "http_token.h"
#include "prom_config_int.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- headers and tokens -------------------------------------------------------------------------- */

/* Headers prescale writes itself, or that change the framing or the connection of a request (RFC 9110
 * 7.6.1, 8.6, 11.6.2; RFC 9112 6.1): Prometheus refuses most of them in its own headers too
 * (ReservedHeaders, config/http_config.go). Credentials go through authorization or basic_auth. */
/* clang-format off */
static const char *const reserved_headers[] = {
    "Accept", "Accept-Encoding", "Authorization", "Connection", "Content-Encoding", "Content-Length",
    "Content-Type", "Expect", "Host", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "WWW-Authenticate"};
/* clang-format on */
#define RESERVED_WORDS                                                                                       \
  "Accept, Accept-Encoding, Authorization, Connection, Content-Encoding, Content-Length, Content-Type, "     \
  "Expect, Host, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, Proxy-Connection, TE, Trailer, "       \
  "Transfer-Encoding, Upgrade, User-Agent, WWW-Authenticate"

bool ps_pc_has_ctl(const char *s) {
  for (; *s; s++)
    if (ps_field_ctl((unsigned char)*s)) return true;
  return false;
}

/* Names are tokens (RFC 9110 5.6.2), neither reserved nor repeated (in any case: field names are
 * case-insensitive, 5.1). A name that is not a token is not quoted: it may be a pasted
 * "Authorization: Bearer ..." line. */
int ps_pc_header_name(struct pc *p, const struct ps_prom_server_cfg *c, const char *name, size_t line) {
  if (!ps_http_token(name))
    return ps_pc_fail(p, line, "a header name must be an HTTP token: letters, digits and !#$%%&'*+-.^_`|~");
  for (size_t i = 0; i < N(reserved_headers); i++)
    if (strcasecmp(name, reserved_headers[i]) == 0)
      return ps_pc_fail(p, line, "header \"%s\" cannot be set here (reserved: " RESERVED_WORDS ")", name);
  for (size_t i = 0; i < c->nheaders; i++)
    if (strcasecmp(name, c->headers[i].name) == 0)
      return ps_pc_fail(p, line, "header \"%s\" is given twice", name);
  if (c->nheaders == PS_PROM_CONFIG_MAX_HEADERS)
    return ps_pc_fail(p, line, "more than %d headers", PS_PROM_CONFIG_MAX_HEADERS);
  return 0;
}

/* ---- one server: checks across keys -------------------------------------------------------------- */

/* What is wrong with a server's url, worded to follow the quoted value; *quiet when the value must not
 * be quoted at all (it holds a password). */
static const char *url_problem(const char *u, bool *quiet) {
  size_t scheme = strncasecmp(u, "https://", 8) == 0 ? 8 : strncasecmp(u, "http://", 7) == 0 ? 7 : 0;
  const char *sep = strstr(u, "://"), *host = scheme > 0 ? u + scheme : sep != NULL ? sep + 3 : u;
  size_t hostlen = strcspn(host, "/?#");
  *quiet = memchr(host, '@', hostlen) != NULL;
  if (*quiet) return "must not hold user:password@ (use basic_auth)";
  if (scheme == 0) return "is not an http:// or https:// URL";
  if (hostlen == 0) return "has no host";
  if (strpbrk(u, "?#") != NULL) return "must not have a query or fragment";
  return ps_pc_has_ctl(u) || strchr(u, ' ') != NULL ? "must not contain spaces or control characters" : NULL;
}

/* Bytes of url's scheme://host:port, compared without regard to case (RFC 3986 6.2.2.1). */
static size_t authority_len(const char *url) {
  const char *sep = strstr(url, "://");
  if (sep == NULL) return 0;
  return (size_t)(sep + 3 - url) + strcspn(sep + 3, "/");
}

/* Whether the first n bytes of server_url are url (n = strlen(url)). */
static bool same_prefix(const char *url, size_t n, const char *server_url) {
  size_t a = authority_len(url);
  if (a > n) a = n;
  return strncasecmp(url, server_url, a) == 0 && strncmp(url + a, server_url + a, n - a) == 0;
}

static int check_auth(struct pc *p, struct srv *s) {
  struct ps_prom_server_cfg *c = s->cfg;
  char q[PS_FLAGS_QUOTED_MAX];
  size_t line = s->line[S_AUTH];
  if (c->auth_type == NULL && (c->auth_type = strdup("Bearer")) == NULL) return UV_ENOMEM;
  ps_flags_quote(q, sizeof q, c->auth_type);
  /* The type is the auth-scheme of the Authorization header (RFC 9110 11.4): a token. */
  if (!ps_http_token(c->auth_type))
    return ps_pc_fail(p, line, "type: %s is not an HTTP authentication scheme", q);
  if (strcasecmp(c->auth_type, "Basic") == 0)
    return ps_pc_fail(p, line, "type: %s is not allowed; use basic_auth: {username, password_file}", q);
  if (c->credentials != NULL && c->credentials_file != NULL)
    return ps_pc_fail(p, line, "credentials and credentials_file are mutually exclusive");
  if (c->credentials == NULL && c->credentials_file == NULL)
    return ps_pc_fail(p, line, "needs credentials_file (or credentials)");
  return 0;
}

static int check_basic(struct pc *p, struct srv *s) {
  struct ps_prom_server_cfg *c = s->cfg;
  size_t line = s->line[S_BASIC];
  if (c->username == NULL || c->username[0] == '\0') return ps_pc_fail(p, line, "username is required");
  /* RFC 7617 2: the user-id holds no colon, and neither part a control character. */
  if (strchr(c->username, ':') != NULL || ps_pc_has_ctl(c->username))
    return ps_pc_fail(p, line, "username must not contain ':' or control characters");
  if (c->password != NULL && c->password_file != NULL)
    return ps_pc_fail(p, line, "password and password_file are mutually exclusive");
  return 0;
}

static int check_tls(struct pc *p, struct srv *s) {
  struct ps_prom_server_cfg *c = s->cfg;
  size_t line = s->line[S_TLS];
  if (strncasecmp(c->url, "https://", 8) != 0)
    return ps_pc_fail(p, line, "is for https:// servers; this url is http://");
  if ((c->cert_file == NULL) != (c->key_file == NULL))
    return ps_pc_fail(p, line,
                      "cert_file and key_file go together (a client certificate and its key); %s is missing",
                      c->cert_file == NULL ? "cert_file" : "key_file");
  /* A DNS name (RFC 1035 2.3.4: at most 253 bytes written out) or an address, for SNI and verification. */
  if (c->server_name != NULL &&
      (c->server_name[0] == '\0' || strlen(c->server_name) > 253 ||
       strcspn(c->server_name, " /@?#") != strlen(c->server_name) || ps_pc_has_ctl(c->server_name)))
    return ps_pc_fail(p, line, "server_name must be a host name");
  return 0;
}

/* After the server's mapping: the url, each section, then the pairs Prometheus refuses too. */
int ps_pc_check_server(struct pc *p, struct srv *s, const struct ps_prom_config *cfg, size_t map_line) {
  struct ps_prom_server_cfg *c = s->cfg;
  snprintf(p->path, sizeof p->path, "servers[%zu]", s->idx);
  if (c->url == NULL) return ps_pc_fail(p, map_line, "url is required (e.g. url: https://prometheus:9090)");
  bool quiet;
  const char *why = url_problem(c->url, &quiet);
  size_t base = strlen(p->path);
  ps_pc_push(p, base, "url");
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, c->url);
  if (why != NULL && quiet) return ps_pc_fail(p, s->url_line, "%s", why);
  if (why != NULL) return ps_pc_fail(p, s->url_line, "%s %s", q, why);
  c->url[ps_flags_url_len(c->url)] = '\0'; /* "https://p/" and "https://p" are one server */
  for (size_t i = 0; i < s->idx; i++)
    if (strlen(cfg->servers[i].url) == strlen(c->url) &&
        same_prefix(cfg->servers[i].url, strlen(c->url), c->url))
      return ps_pc_fail(p, s->url_line, "%s is already the url of servers[%zu]", q, i);
  p->path[base] = '\0';
  if (s->line[S_AUTH] != 0 && s->line[S_BASIC] != 0)
    return ps_pc_fail(p, s->line[S_AUTH] > s->line[S_BASIC] ? s->line[S_AUTH] : s->line[S_BASIC],
                      "authorization and basic_auth are mutually exclusive");
  static const struct {
    enum ps_pc_section id;
    const char *name;
    int (*check)(struct pc *, struct srv *);
  } checks[] = {{S_AUTH, "authorization", check_auth},
                {S_BASIC, "basic_auth", check_basic},
                {S_TLS, "tls_config", check_tls}};
  for (size_t i = 0; i < N(checks); i++) {
    if (s->line[checks[i].id] == 0) continue;
    ps_pc_push(p, base, checks[i].name);
    int r = checks[i].check(p, s);
    if (r != 0) return r;
  }
  return 0;
}

/* ---- lookup ------------------------------------------------------------------------------------------ */

const struct ps_prom_server_cfg *ps_prom_config_match(const struct ps_prom_config *c,
                                                      const char *server_url) {
  if (c == NULL || server_url == NULL) return NULL;
  size_t n = ps_flags_url_len(server_url);
  const struct ps_prom_server_cfg *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < c->nservers; i++) {
    const char *u = c->servers[i].url;
    size_t len = strlen(u);
    /* At a boundary: the url ends where server_url does, or where a path segment of it starts. */
    if (len > n || (len < n && server_url[len] != '/') || !same_prefix(u, len, server_url)) continue;
    if (best == NULL || len > best_len) best = &c->servers[i], best_len = len;
  }
  return best;
}
