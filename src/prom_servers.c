/* The configured Prometheus servers at run time (see prom_servers.h): their TLS contexts, credentials and
 * headers, loaded at startup and reloaded when their files change. */
#include "prom_servers.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_token.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

/* The files of one server's watch group, in this order (those it has). */
enum { F_SECRET, F_CA, F_CERT, F_KEY, NFILES };

struct server {
  struct ps_prom_servers *owner;
  size_t index;  /* servers[index] in the file, for messages */
  char *url;     /* not a secret (prom_config refuses user:password@) */
  char *headers; /* the configured headers, "Name: value\r\n" each; "" when none */
  char *auth;    /* the Authorization line (a secret): "Authorization: <type> <credentials>\r\n"; or NULL */
  char *auth_type, *username; /* authorization's type, or basic_auth's username */
  const char *secret_key;     /* "authorization.credentials_file" or "basic_auth.password_file" */
  char *path[NFILES];         /* owned; NULL when the server has no such file */
  bool https, insecure;
  char *server_name;
  struct ps_tls_ctx *tls;           /* from tls_config (https only) */
  unsigned char tls_digest[32];     /* of the TLS files last loaded, to reload only when they change */
  struct ps_filewatch_group *group; /* its files' watch (the watcher's); NULL when not watched */
};

struct ps_prom_servers {
  struct server *v;
  size_t n;
  struct ps_prom_config match; /* the urls only (servers[i].url borrows v[i].url), for ps_prom_config_match */
  struct ps_tls_ctx *insecure_default; /* unsafeSsl for a server not listed */
  size_t reloads_ok, reloads_failed;
};

static const char *const file_keys[NFILES] = {NULL, "tls_config.ca_file", "tls_config.cert_file",
                                              "tls_config.key_file"};

static char *dup_or_null(const char *s) { return s != NULL ? strdup(s) : NULL; }

/* "Authorization: <scheme> <credentials>\r\n" into b (empty), appended into room made first: neither
 * left in a block a growth frees nor formatted (ps_buf_printf would leave a short line in its stack
 * buffer). */
static int put_auth(struct ps_buf *b, const char *scheme, const char *cred, size_t len) {
  static const char name[] = "Authorization: ";
  size_t slen = strlen(scheme);
  int err = ps_buf_reserve(b, sizeof name - 1 + slen + 1 + len + 2);
  if (err == 0) err = ps_buf_append(b, name, sizeof name - 1);
  if (err == 0) err = ps_buf_append(b, scheme, slen);
  if (err == 0) err = ps_buf_append(b, " ", 1);
  if (err == 0) err = ps_buf_append(b, cred, len);
  if (err == 0) err = ps_buf_append(b, "\r\n", 2);
  return err;
}

/* The Authorization line for a credential read from a file or inline (as Prometheus does, the whitespace
 * around a file's content is dropped). NULL with why set when it cannot be sent: empty, or a control byte
 * that would break the header (RFC 9110 5.5). why never quotes the secret. */
static char *auth_line(const struct server *sv, const char *secret, size_t len, const char **why) {
  while (len > 0 && isspace((unsigned char)*secret)) secret++, len--;
  while (len > 0 && isspace((unsigned char)secret[len - 1])) len--;
  if (len == 0 && sv->username == NULL) { /* basic_auth may have an empty password (RFC 7617) */
    *why = "is empty";
    return NULL;
  }
  for (size_t i = 0; i < len; i++) {
    if (ps_field_ctl((unsigned char)secret[i])) {
      *why = "holds a control character (a line break inside the value?)";
      return NULL;
    }
  }
  struct ps_buf b;
  ps_buf_init(&b);
  int err;
  if (sv->username == NULL) {
    err = put_auth(&b, sv->auth_type, secret, len);
  } else { /* RFC 7617: base64 of user-id ":" password */
    size_t ulen = strlen(sv->username), plen = ulen + 1 + len;
    char *plain = malloc(plen);
    unsigned char *b64 = malloc(4 * ((plen + 2) / 3) + 1);
    err = plain != NULL && b64 != NULL ? 0 : UV_ENOMEM;
    if (err == 0) {
      memcpy(plain, sv->username, ulen);
      plain[ulen] = ':';
      memcpy(plain + ulen + 1, secret, len);
      EVP_EncodeBlock(b64, (const unsigned char *)plain, (int)plen);
      err = put_auth(&b, "Basic", (const char *)b64, strlen((const char *)b64));
      OPENSSL_cleanse(plain, plen);
      OPENSSL_cleanse(b64, strlen((const char *)b64));
    }
    free(plain);
    free(b64);
  }
  if (err != 0 || b.len > PS_PROM_SERVERS_MAX_AUTH) {
    if (b.data != NULL) OPENSSL_cleanse(b.data, b.len);
    ps_buf_free(&b);
    *why = err != 0 ? "out of memory"
                    : "makes an Authorization header longer than PS_PROM_SERVERS_MAX_AUTH bytes";
    return NULL;
  }
  return ps_buf_steal(&b, NULL);
}

static void digest(const char *const data[NFILES], const size_t len[NFILES], unsigned char out[32]) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  unsigned int n = 0;
  if (m != NULL && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1) {
    for (int f = F_CA; f < NFILES; f++) {
      uint64_t l = data[f] != NULL ? len[f] : UINT64_MAX; /* absent and empty differ */
      EVP_DigestUpdate(m, &l, sizeof l);
      if (data[f] != NULL) EVP_DigestUpdate(m, data[f], len[f]);
    }
    EVP_DigestFinal_ex(m, out, &n);
  }
  EVP_MD_CTX_free(m);
}

/* Builds (ctx NULL) or reloads the server's context from the TLS files' bytes. err names the key. */
static int load_tls(struct server *sv, const char *const data[NFILES], const size_t len[NFILES], char *err,
                    size_t errlen) {
  char why[PS_TLS_ERR_MAX];
  struct ps_tls_pem ca_only = {.ca = data[F_CA], .ca_len = len[F_CA]};
  struct ps_tls_pem pem = {.cert = data[F_CERT],
                           .cert_len = len[F_CERT],
                           .key = data[F_KEY],
                           .key_len = len[F_KEY],
                           .ca = data[F_CA],
                           .ca_len = len[F_CA]};
  /* The CA alone first, so that a bad one is named as such. */
  struct ps_tls_ctx *probe = NULL;
  if (data[F_CA] != NULL && ps_tls_ctx_client(&ca_only, false, &probe, why, sizeof why) != 0) {
    snprintf(err, errlen, "%s %s: %s", file_keys[F_CA], sv->path[F_CA], why);
    return UV_EINVAL;
  }
  ps_tls_ctx_free(probe);
  int rc;
  if (sv->tls == NULL) {
    rc = ps_tls_ctx_client(&pem, sv->insecure, &sv->tls, why, sizeof why);
  } else {
    rc = ps_tls_ctx_reload(sv->tls, &pem, why, sizeof why);
  }
  if (rc != 0) {
    if (data[F_CERT] != NULL)
      snprintf(err, errlen, "%s %s and %s %s: %s", file_keys[F_CERT], sv->path[F_CERT], file_keys[F_KEY],
               sv->path[F_KEY], why);
    else
      snprintf(err, errlen, "tls_config: %s", why);
    return UV_EINVAL;
  }
  digest(data, len, sv->tls_digest);
  return 0;
}

/* ---- reloads (filewatch callbacks) ----------------------------------------------------------------- */

static void reload_log(struct server *sv, bool ok, const char *what, const char *why) {
  char idx[32];
  snprintf(idx, sizeof idx, "servers[%zu]", sv->index);
  if (ok) {
    sv->owner->reloads_ok++;
    ps_metrics_add("prescale_prometheus_config_reloads_total", "result=\"ok\"", 1);
    ps_log(PS_LOG_INFO, "prometheus credentials reloaded", "server", sv->url, "config", idx, "what", what,
           NULL);
  } else {
    sv->owner->reloads_failed++;
    ps_metrics_add("prescale_prometheus_config_reloads_total", "result=\"failed\"", 1);
    ps_log(PS_LOG_ERROR, "prometheus credentials not reloaded: keeping the previous ones", "server", sv->url,
           "config", idx, "error", why, NULL);
  }
}

static void files_changed(void *arg, const struct ps_file_content *files, size_t n) {
  struct server *sv = arg;
  const char *data[NFILES] = {0};
  size_t len[NFILES] = {0};
  int failed = -1, ferr = 0;
  size_t k = 0;
  for (int f = 0; f < NFILES; f++) {
    if (sv->path[f] == NULL || k >= n) continue;
    if (files[k].err != 0 && failed < 0) failed = f, ferr = files[k].err;
    data[f] = files[k].data;
    len[f] = files[k].len;
    k++;
  }
  char why[512];
  if (failed >= 0) { /* the user keeps what it had for that file (filewatch.h) */
    ps_file_error(sv->path[failed], ferr, 0, why, sizeof why);
    reload_log(sv, false, NULL, why);
    return;
  }
  if (sv->path[F_SECRET] != NULL) {
    const char *bad = NULL;
    char *line = auth_line(sv, data[F_SECRET], len[F_SECRET], &bad);
    if (line == NULL) {
      snprintf(why, sizeof why, "%s %s %s", sv->secret_key, sv->path[F_SECRET], bad);
      reload_log(sv, false, NULL, why);
    } else if (sv->auth == NULL || strcmp(line, sv->auth) != 0) {
      ps_free_secret(sv->auth);
      sv->auth = line;
      reload_log(sv, true, sv->secret_key, NULL);
    } else {
      ps_free_secret(line);
    }
  }
  if (sv->tls != NULL && (data[F_CA] != NULL || data[F_CERT] != NULL)) {
    unsigned char d[32];
    digest(data, len, d);
    if (memcmp(d, sv->tls_digest, sizeof d) == 0) return;
    if (load_tls(sv, data, len, why, sizeof why) != 0)
      reload_log(sv, false, NULL, why);
    else
      reload_log(sv, true, "tls_config", NULL);
  }
}

/* ---- startup --------------------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const struct server *sv, const char *fmt, const char *a,
                const char *b) {
  char what[1024];
  snprintf(what, sizeof what, fmt, a, b);
  snprintf(err, errlen, "prometheus-config: servers[%zu] (%s): %s", sv->index, sv->url, what);
  return UV_EINVAL;
}

static int server_init(struct server *sv, const struct ps_prom_server_cfg *c, char *err, size_t errlen) {
  sv->url = strdup(c->url);
  if (sv->url == NULL) return UV_ENOMEM;
  sv->https = strncasecmp(c->url, "https://", 8) == 0;
  sv->insecure = c->insecure_skip_verify;
  sv->server_name = dup_or_null(c->server_name);
  struct ps_buf h;
  ps_buf_init(&h);
  int rc = ps_buf_puts(&h, "");
  for (size_t i = 0; rc == 0 && i < c->nheaders; i++)
    rc = ps_buf_printf(&h, "%s: %s\r\n", c->headers[i].name, c->headers[i].value);
  sv->headers = ps_buf_steal(&h, NULL);
  if (rc != 0 || sv->headers == NULL) return UV_ENOMEM;
  const char *secret = NULL;
  if (c->auth_type != NULL) {
    sv->auth_type = strdup(c->auth_type);
    secret = c->credentials;
    sv->path[F_SECRET] = dup_or_null(c->credentials_file);
    sv->secret_key = "authorization.credentials_file";
  } else if (c->username != NULL) {
    sv->username = strdup(c->username);
    secret = c->password != NULL || c->password_file != NULL ? c->password : "";
    sv->path[F_SECRET] = dup_or_null(c->password_file);
    sv->secret_key = "basic_auth.password_file";
  }
  sv->path[F_CA] = dup_or_null(c->ca_file);
  sv->path[F_CERT] = dup_or_null(c->cert_file);
  sv->path[F_KEY] = dup_or_null(c->key_file);
  /* Read every file now: a startup error names it. */
  char *data[NFILES] = {0};
  size_t len[NFILES] = {0};
  for (int f = 0; rc == 0 && f < NFILES; f++) {
    char why[512];
    if (sv->path[f] != NULL &&
        ps_file_read_sync(sv->path[f], PS_FILEWATCH_MAX_BYTES, &data[f], &len[f], why, sizeof why) != 0)
      rc = fail(err, errlen, sv, "%s: %s", f == F_SECRET ? sv->secret_key : file_keys[f], why);
  }
  if (rc == 0 && (sv->auth_type != NULL || sv->username != NULL)) {
    const char *bad = NULL, *from = data[F_SECRET] != NULL ? data[F_SECRET] : secret != NULL ? secret : "";
    sv->auth = auth_line(sv, from, data[F_SECRET] != NULL ? len[F_SECRET] : strlen(from), &bad);
    if (sv->auth == NULL && data[F_SECRET] != NULL)
      rc = fail(err, errlen, sv, "%s %s", sv->secret_key, sv->path[F_SECRET]);
    else if (sv->auth == NULL)
      rc = fail(err, errlen, sv, "%s%s",
                sv->username != NULL ? "basic_auth.password" : "authorization.credentials", "");
    if (sv->auth == NULL) { /* the reason after what fail() wrote */
      size_t used = strlen(err);
      snprintf(err + used, errlen > used ? errlen - used : 0, " %s", bad);
    }
  }
  if (rc == 0 && sv->https) {
    char why[700];
    const char *cd[NFILES] = {data[0], data[1], data[2], data[3]};
    if (load_tls(sv, cd, len, why, sizeof why) != 0) rc = fail(err, errlen, sv, "%s%s", why, "");
  }
  for (int f = 0; f < NFILES; f++) {
    if (data[f] != NULL) OPENSSL_cleanse(data[f], len[f]);
    free(data[f]);
  }
  return rc;
}

int ps_prom_servers_new(const struct ps_prom_config *cfg, struct ps_prom_servers **out, char *err,
                        size_t errlen) {
  *out = NULL;
  ps_metrics_declare("prescale_prometheus_config_reloads_total", PS_METRIC_COUNTER,
                     "Reloads of the files of --prometheus-config servers (credentials, TLS) by result.");
  struct ps_prom_servers *s = calloc(1, sizeof *s);
  size_t n = cfg != NULL ? cfg->nservers : 0;
  if (s == NULL) return UV_ENOMEM;
  s->v = n > 0 ? calloc(n, sizeof *s->v) : NULL;
  s->match.servers = n > 0 ? calloc(n, sizeof *s->match.servers) : NULL;
  if (n > 0 && (s->v == NULL || s->match.servers == NULL)) {
    ps_prom_servers_free(s);
    return UV_ENOMEM;
  }
  int rc = ps_tls_ctx_client(NULL, true, &s->insecure_default, err, errlen);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    struct server *sv = &s->v[i];
    sv->owner = s;
    sv->index = i;
    s->n = i + 1;
    rc = server_init(sv, &cfg->servers[i], err, errlen);
    s->match.servers[i].url = sv->url;
    s->match.nservers = i + 1;
  }
  if (rc != 0) {
    ps_prom_servers_free(s);
    return rc;
  }
  ps_metrics_add("prescale_prometheus_config_reloads_total", "result=\"ok\"", 0);
  ps_metrics_add("prescale_prometheus_config_reloads_total", "result=\"failed\"", 0);
  *out = s;
  return 0;
}

int ps_prom_servers_watch(struct ps_prom_servers *s, struct ps_filewatch *w, char *err, size_t errlen) {
  for (size_t i = 0; s != NULL && i < s->n; i++) {
    struct server *sv = &s->v[i];
    const char *paths[NFILES];
    size_t np = 0;
    for (int f = 0; f < NFILES; f++)
      if (sv->path[f] != NULL) paths[np++] = sv->path[f];
    if (np == 0) continue;
    int rc = ps_filewatch_add(w, paths, np, files_changed, sv, &sv->group);
    if (rc != 0) {
      snprintf(err, errlen, "prometheus-config: servers[%zu] (%s): cannot watch its files: %s", i, sv->url,
               uv_strerror(rc));
      return rc;
    }
  }
  return 0;
}

/* ---- requests -------------------------------------------------------------------------------------- */

/* Whether the header line at line (up to its ':') has a name that `lines` ("Name: value\r\n"...) sets. */
static bool name_in(const char *line, size_t nlen, const char *lines) {
  for (const char *l = lines; l != NULL && *l != '\0';) {
    size_t n = strcspn(l, ":");
    if (n == nlen && strncasecmp(l, line, n) == 0) return true;
    const char *next = strstr(l, "\r\n");
    l = next != NULL ? next + 2 : NULL;
  }
  return false;
}

int ps_prom_servers_apply(struct ps_prom_servers *s, const char *server_url, bool unsafe_ssl,
                          const char *custom, struct ps_http_opts *o, struct ps_buf *headers) {
  ps_buf_reset(headers);
  const struct ps_prom_server_cfg *m = s != NULL ? ps_prom_config_match(&s->match, server_url) : NULL;
  struct server *sv = m != NULL ? &s->v[m - s->match.servers] : NULL;
  /* A listed server's own tls_config decides (its insecure_skip_verify), never a trigger's unsafeSsl: the
   * credentials it carries go only where the operator's configuration says they may. */
  if (sv != NULL && sv->tls != NULL)
    o->tls = sv->tls;
  else if (sv == NULL && s != NULL && unsafe_ssl)
    o->tls = s->insecure_default;
  if (sv != NULL && sv->server_name != NULL) o->tls_server_name = sv->server_name;
  /* Room for all of it first: the Authorization line is never left behind in a block a growth frees. */
  size_t need = (custom != NULL ? strlen(custom) : 0) +
                (sv != NULL && sv->auth != NULL ? strlen(sv->auth) : 0) +
                (sv != NULL ? strlen(sv->headers) : 0);
  int rc = ps_buf_reserve(headers, need);
  if (rc == 0) rc = ps_buf_puts(headers, "");
  for (const char *l = custom; rc == 0 && l != NULL && *l != '\0';) {
    const char *end = strstr(l, "\r\n");
    size_t len = end != NULL ? (size_t)(end - l) + 2 : strlen(l), nlen = strcspn(l, ":");
    bool overridden =
        sv != NULL && ((sv->auth != NULL && nlen == 13 && strncasecmp(l, "Authorization", 13) == 0) ||
                       name_in(l, nlen, sv->headers));
    if (!overridden) rc = ps_buf_append(headers, l, len);
    l += len;
  }
  if (rc == 0 && sv != NULL && sv->auth != NULL) rc = ps_buf_puts(headers, sv->auth);
  if (rc == 0 && sv != NULL) rc = ps_buf_puts(headers, sv->headers);
  if (rc == 0 && headers->len > PS_HTTP_MAX_EXTRA_HEADERS) rc = UV_E2BIG;
  o->headers = rc == 0 ? headers->data : NULL;
  return rc;
}

void ps_prom_servers_wipe(struct ps_buf *headers) {
  if (headers->data != NULL) OPENSSL_cleanse(headers->data, headers->len);
  ps_buf_free(headers);
}

bool ps_prom_servers_watch_ready(const struct ps_prom_servers *s) {
  for (size_t i = 0; s != NULL && i < s->n; i++)
    if (s->v[i].group != NULL && !ps_filewatch_group_ready(s->v[i].group)) return false;
  return true;
}

void ps_prom_servers_reloads(const struct ps_prom_servers *s, size_t *ok, size_t *failed) {
  *ok = s != NULL ? s->reloads_ok : 0;
  *failed = s != NULL ? s->reloads_failed : 0;
}

void ps_prom_servers_free(struct ps_prom_servers *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->n; i++) {
    struct server *sv = &s->v[i];
    ps_tls_ctx_free(sv->tls);
    ps_free_secret(sv->auth);
    ps_free_secret(sv->headers); /* an operator's header may be a key too (X-API-Key) */
    for (int f = 0; f < NFILES; f++) free(sv->path[f]);
    char *owned[] = {sv->url, sv->auth_type, sv->username, sv->server_name};
    for (size_t k = 0; k < sizeof owned / sizeof owned[0]; k++) free(owned[k]);
  }
  free(s->v);
  free(s->match.servers);
  ps_tls_ctx_free(s->insecure_default);
  free(s);
}
