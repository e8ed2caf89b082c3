/* The --prometheus-config YAML (prom_config.h, docs/prometheus-config.md), read with libyaml's event API:
 * a small recursive descent over events, driven by one table of keys per mapping, so that the schema,
 * the "known:" lists of the errors and the unsupported Prometheus keys are written once. It stops at the
 * first event the schema does not expect, so nothing a file holds beyond its first mistake is ever read,
 * and every error names the file, the line and the key path. */
#include "prom_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <yaml.h>

#include "buf.h"
#include "flags.h"
#include "prom_config_int.h"

/* ---- the schema ---------------------------------------------------------------------------------- */

enum vkind {
  V_STRING,  /* any scalar, as text */
  V_SECRET,  /* a scalar never quoted in an error; no control bytes (it goes into a header) */
  V_FILE,    /* a path: resolved against the config's directory; checked by ps_prom_config_load */
  V_BOOL,    /* true or false, unquoted */
  V_SECTION, /* a nested mapping with its own table */
  V_HEADERS, /* a mapping of header names to values */
};

struct section;
struct key {
  const char *name;
  enum vkind kind;
  size_t off; /* of the field in struct ps_prom_server_cfg */
  const struct section *sub;
};
/* A key of Prometheus's http_config (prometheus/common config/http_config.go) that prescale does not
 * implement: it gets "not supported" rather than "unknown", so that a copied scrape config fails
 * with words that say which part to drop. */
struct unsupported {
  const char *name;
  const char *hint; /* NULL or " (use ...)" */
};
struct section {
  enum ps_pc_section id;
  const struct key *keys;
  size_t nkeys;
  const struct unsupported *no;
  size_t nno;
  const char *known; /* the keys, for "unknown key" */
};

#define F(f) offsetof(struct ps_prom_server_cfg, f)
#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SEC(id, k, no, known)                                                                                \
  { id, k, N(k), no, N(no), known }

static const struct key auth_keys[] = {{"type", V_STRING, F(auth_type), NULL},
                                       {"credentials", V_SECRET, F(credentials), NULL},
                                       {"credentials_file", V_FILE, F(credentials_file), NULL}};
static const struct unsupported auth_no[] = {{"credentials_ref", NULL}};
static const struct section auth_section =
    SEC(S_AUTH, auth_keys, auth_no, "type, credentials, credentials_file");

static const struct key basic_keys[] = {{"username", V_STRING, F(username), NULL},
                                        {"password", V_SECRET, F(password), NULL},
                                        {"password_file", V_FILE, F(password_file), NULL}};
static const struct unsupported basic_no[] = {
    {"username_file", NULL}, {"username_ref", NULL}, {"password_ref", NULL}};
static const struct section basic_section =
    SEC(S_BASIC, basic_keys, basic_no, "username, password, password_file");

static const struct key tls_keys[] = {{"ca_file", V_FILE, F(ca_file), NULL},
                                      {"cert_file", V_FILE, F(cert_file), NULL},
                                      {"key_file", V_FILE, F(key_file), NULL},
                                      {"server_name", V_STRING, F(server_name), NULL},
                                      {"insecure_skip_verify", V_BOOL, F(insecure_skip_verify), NULL}};
static const struct unsupported tls_no[] = {{"ca", " (use ca_file)"},
                                            {"cert", " (use cert_file)"},
                                            {"key", " (use key_file)"},
                                            {"ca_ref", NULL},
                                            {"cert_ref", NULL},
                                            {"key_ref", NULL},
                                            {"min_version", " (prescale uses TLS 1.2 or later)"},
                                            {"max_version", NULL}};
static const struct section tls_section =
    SEC(S_TLS, tls_keys, tls_no, "ca_file, cert_file, key_file, server_name, insecure_skip_verify");

static const struct key server_keys[] = {{"url", V_STRING, F(url), NULL},
                                         {"authorization", V_SECTION, 0, &auth_section},
                                         {"basic_auth", V_SECTION, 0, &basic_section},
                                         {"tls_config", V_SECTION, 0, &tls_section},
                                         {"headers", V_HEADERS, 0, NULL}};
static const struct unsupported server_no[] = {
    {"oauth2", NULL},
    {"bearer_token", " (use authorization: {credentials: ...})"},
    {"bearer_token_file", " (use authorization: {credentials_file: ...})"},
    {"http_headers", " (use headers: {Name: value})"},
    {"proxy_url", NULL},
    {"no_proxy", NULL},
    {"proxy_from_environment", NULL},
    {"proxy_connect_header", NULL},
    {"follow_redirects", " (prescale never follows redirects)"},
    {"enable_http2", " (prescale speaks HTTP/1.1 to Prometheus)"},
    {"sigv4", NULL}};
static const struct section server_section =
    SEC(S_SERVER, server_keys, server_no, "url, authorization, basic_auth, tls_config, headers");

/* ---- parser state and errors --------------------------------------------------------------------- */

static size_t ev_line(const struct pc *p) { return p->ev.start_mark.line + 1; }

/* `prometheus-config FILE:LINE: PATH: what`; returns UV_EINVAL. */
int ps_pc_fail(struct pc *p, size_t line, const char *fmt, ...) {
  char what[PS_PC_WHAT_BUF];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ps_flags_fail(p->err, p->errlen, "prometheus-config %s:%zu: %s%s%s", p->file, line, p->path,
                       p->path[0] != '\0' ? ": " : "", what);
}

/* The path becomes path[..base] + "." + name (or name at the top). */
void ps_pc_push(struct pc *p, size_t base, const char *name) {
  snprintf(p->path + base, sizeof p->path - base, "%s%s", base > 0 ? "." : "", name);
}

static const char *event_noun(yaml_event_type_t t) {
  switch (t) {
  case YAML_SCALAR_EVENT: return "a scalar";
  case YAML_SEQUENCE_START_EVENT: return "a sequence";
  case YAML_MAPPING_START_EVENT: return "a mapping";
  default: return "nothing";
  }
}

/* libyaml's own words (static strings, never the input) and where it stopped. A reader error (bad
 * UTF-8, a control byte) has an offset rather than a mark. */
static int syntax_error(struct pc *p) {
  if (p->yp.error == YAML_MEMORY_ERROR) return UV_ENOMEM;
  size_t line = p->yp.problem_mark.line + 1;
  if (p->yp.error == YAML_READER_ERROR) {
    line = 1;
    for (size_t i = 0; i < p->yp.problem_offset && i < p->len; i++) line += p->yaml[i] == '\n';
  }
  const char *ctx = p->yp.context;
  return ps_pc_fail(p, line, "not valid YAML: %s%s%s", ctx != NULL ? ctx : "", ctx != NULL ? ", " : "",
                    p->yp.problem != NULL ? p->yp.problem : "unknown error");
}

/* The next event into p->ev, within the bounds: events, depth, no anchor, alias or tag. */
static int next(struct pc *p) {
  if (p->held) yaml_event_delete(&p->ev);
  p->held = false;
  if (!yaml_parser_parse(&p->yp, &p->ev)) return syntax_error(p);
  p->held = true;
  if (++p->events > PS_PROM_CONFIG_MAX_EVENTS)
    return ps_pc_fail(p, ev_line(p),
                      "more than %d YAML events (keys, values, starts and ends of mappings and sequences)",
                      PS_PROM_CONFIG_MAX_EVENTS);
  const yaml_char_t *anchor = NULL, *tag = NULL;
  switch (p->ev.type) {
  case YAML_ALIAS_EVENT: return ps_pc_fail(p, ev_line(p), "YAML aliases (*name) are not supported");
  case YAML_SCALAR_EVENT:
    anchor = p->ev.data.scalar.anchor;
    tag = p->ev.data.scalar.tag;
    break;
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT:
    anchor = p->ev.type == YAML_MAPPING_START_EVENT ? p->ev.data.mapping_start.anchor
                                                    : p->ev.data.sequence_start.anchor;
    tag =
        p->ev.type == YAML_MAPPING_START_EVENT ? p->ev.data.mapping_start.tag : p->ev.data.sequence_start.tag;
    if (++p->depth > PS_PROM_CONFIG_MAX_DEPTH)
      return ps_pc_fail(p, ev_line(p), "expected a string, got %s (nothing nests deeper than %d levels)",
                        event_noun(p->ev.type), PS_PROM_CONFIG_MAX_DEPTH);
    break;
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT: p->depth--; break;
  default: break;
  }
  /* Anchors and aliases are what a billion-laughs file is made of, and no schema here needs them. */
  if (anchor != NULL) return ps_pc_fail(p, ev_line(p), "YAML anchors (&name) are not supported");
  if (tag != NULL) return ps_pc_fail(p, ev_line(p), "YAML tags (!tag) are not supported");
  return 0;
}

/* ---- scalars ------------------------------------------------------------------------------------- */

static bool is_null(const yaml_event_t *e) {
  const char *v = (const char *)e->data.scalar.value;
  return e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
          strcmp(v, "NULL") == 0);
}

/* The current event as a string into *out (owned by the caller): NULL for a YAML null. `want` names what
 * is expected, for the error. */
static int scalar(struct pc *p, const char *want, char **out) {
  *out = NULL;
  if (p->ev.type != YAML_SCALAR_EVENT)
    return ps_pc_fail(p, ev_line(p), "expected %s, got %s", want, event_noun(p->ev.type));
  size_t len = p->ev.data.scalar.length;
  const char *v = (const char *)p->ev.data.scalar.value;
  if (len > PS_PROM_CONFIG_MAX_SCALAR)
    return ps_pc_fail(p, ev_line(p), "the value is %zu bytes; the maximum is %u", len,
                      PS_PROM_CONFIG_MAX_SCALAR);
  /* A double-quoted "\0" is a NUL inside the value: C strings would cut it short. */
  if (memchr(v, '\0', len) != NULL) return ps_pc_fail(p, ev_line(p), "the value must not contain a NUL byte");
  if (is_null(&p->ev)) return 0;
  return (*out = strndup(v, len)) == NULL ? UV_ENOMEM : 0;
}

/* A path as written, or joined to the config file's directory when relative. */
static int resolve(const struct pc *p, char **path) {
  if ((*path)[0] == '/' || p->dirlen == 0) return 0;
  size_t n = strlen(*path);
  char *joined = malloc(p->dirlen + n + 1);
  if (joined == NULL) return UV_ENOMEM;
  memcpy(joined, p->file, p->dirlen);
  memcpy(joined + p->dirlen, *path, n + 1);
  free(*path);
  *path = joined;
  return 0;
}

/* ps_prom_config_load: the file exists, is a regular file and opens for reading. O_NONBLOCK, so that a
 * FIFO put there by mistake does not hang the start. */
static int check_file(struct pc *p, const char *path, size_t line) {
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, path);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return ps_pc_fail(p, line, "cannot read %s: %s", q, strerror(errno));
  struct stat st;
  int r = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : ps_pc_fail(p, line, "%s is not a regular file", q);
  close(fd);
  return r;
}

static int value(struct pc *p, const struct key *k, struct srv *s, size_t key_line);

/* ---- mappings ------------------------------------------------------------------------------------ */

static int unknown_key(struct pc *p, const struct section *sec, const char *k, size_t line) {
  char q[PS_FLAGS_QUOTED_MAX];
  ps_flags_quote(q, sizeof q, k);
  for (size_t i = 0; i < sec->nno; i++)
    if (strcmp(k, sec->no[i].name) == 0)
      return ps_pc_fail(p, line, "%s is not supported by prescale%s", q,
                        sec->no[i].hint != NULL ? sec->no[i].hint : "");
  return ps_pc_fail(p, line, "unknown key %s (known: %s)", q, sec->known);
}

/* The current event is the section's MAPPING_START: reads its keys up to MAPPING_END. */
static int section(struct pc *p, const struct section *sec, struct srv *s) {
  size_t base = strlen(p->path);
  unsigned seen = 0;
  for (;;) {
    int r = next(p);
    if (r != 0) return r;
    if (p->ev.type == YAML_MAPPING_END_EVENT) return 0;
    size_t line = ev_line(p);
    if (p->ev.type != YAML_SCALAR_EVENT)
      return ps_pc_fail(p, line, "a key must be a scalar, got %s", event_noun(p->ev.type));
    const char *name = (const char *)p->ev.data.scalar.value;
    size_t i = 0;
    while (i < sec->nkeys && strcmp(name, sec->keys[i].name) != 0) i++;
    if (i == sec->nkeys) return unknown_key(p, sec, name, line);
    if (seen & (1u << i)) return ps_pc_fail(p, line, "key \"%s\" is given twice", sec->keys[i].name);
    seen |= 1u << i;
    ps_pc_push(p, base, sec->keys[i].name);
    if ((r = next(p)) != 0 || (r = value(p, &sec->keys[i], s, line)) != 0) return r;
    p->path[base] = '\0';
  }
}

/* headers: {Name: value, ...}. Names by ps_pc_header_name; values hold no control byte but HTAB (RFC 9110
 * 5.5) and are never quoted (an API key is a header value); all of them together are bounded. */
static int headers(struct pc *p, struct srv *s) {
  struct ps_prom_server_cfg *c = s->cfg;
  if (p->ev.type != YAML_MAPPING_START_EVENT)
    return ps_pc_fail(p, ev_line(p), "expected a mapping of header names to values, got %s",
                      event_noun(p->ev.type));
  for (;;) {
    int r = next(p);
    if (r != 0) return r;
    if (p->ev.type == YAML_MAPPING_END_EVENT) return 0;
    size_t line = ev_line(p);
    char *name;
    if ((r = scalar(p, "a header name", &name)) != 0) return r;
    if ((r = ps_pc_header_name(p, c, name != NULL ? name : "", line)) == 0 && c->headers == NULL &&
        (c->headers = calloc(PS_PROM_CONFIG_MAX_HEADERS, sizeof *c->headers)) == NULL)
      r = UV_ENOMEM;
    if (r != 0) {
      free(name);
      return r;
    }
    struct ps_prom_header *h = &c->headers[c->nheaders++];
    h->name = name;
    if ((r = next(p)) != 0 || (r = scalar(p, "a header value", &h->value)) != 0) return r;
    if (h->value == NULL && (h->value = strdup("")) == NULL) return UV_ENOMEM;
    if (ps_pc_has_ctl(h->value))
      return ps_pc_fail(p, ev_line(p),
                        "header \"%s\": the value must not contain control characters (CR, LF, NUL, ...)",
                        name);
    s->header_bytes += strlen(name) + strlen(h->value) + 4; /* "Name: value\r\n" */
    if (s->header_bytes > PS_PROM_CONFIG_MAX_HEADER_BYTES)
      return ps_pc_fail(p, ev_line(p), "the headers come to more than %u bytes",
                        PS_PROM_CONFIG_MAX_HEADER_BYTES);
  }
}

/* The current event is the value of key k (at key_line): stored by the key's kind. */
static int value(struct pc *p, const struct key *k, struct srv *s, size_t key_line) {
  struct ps_prom_server_cfg *c = s->cfg;
  char **field = (char **)(void *)((char *)c + k->off);
  int r;
  switch (k->kind) {
  case V_SECTION:
    if (p->ev.type != YAML_MAPPING_START_EVENT)
      return ps_pc_fail(p, ev_line(p), "expected a mapping, got %s", event_noun(p->ev.type));
    s->line[k->sub->id] = key_line;
    return section(p, k->sub, s);
  case V_HEADERS: return headers(p, s);
  case V_BOOL: {
    /* YAML 1.2's core schema booleans, unquoted: a quoted "true" is a string, as Prometheus reads it. */
    const char *v = p->ev.type == YAML_SCALAR_EVENT ? (const char *)p->ev.data.scalar.value : "";
    bool plain = p->ev.type == YAML_SCALAR_EVENT && p->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    bool t = plain && (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"));
    bool f = plain && (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"));
    if (t || f) {
      *(bool *)(void *)((char *)c + k->off) = t;
      return 0;
    }
    if (p->ev.type != YAML_SCALAR_EVENT)
      return ps_pc_fail(p, ev_line(p), "expected true or false, got %s", event_noun(p->ev.type));
    char q[PS_FLAGS_QUOTED_MAX];
    ps_flags_quote(q, sizeof q, v);
    return ps_pc_fail(p, ev_line(p), "expected true or false, got %s", q);
  }
  case V_STRING:
  case V_SECRET:
  case V_FILE:
    if ((r = scalar(p, "a string", field)) != 0 || *field == NULL) return r;
    if (field == &c->url) s->url_line = ev_line(p);
    if (k->kind == V_SECRET && ps_pc_has_ctl(*field))
      return ps_pc_fail(p, ev_line(p), "must not contain control characters (CR, LF, NUL, ...)");
    if (k->kind != V_FILE) return 0;
    if ((r = resolve(p, field)) != 0) return r;
    return p->check_files ? check_file(p, *field, ev_line(p)) : 0;
  }
  return UV_EINVAL;
}

/* ---- the document -------------------------------------------------------------------------------- */

static int servers(struct pc *p, struct ps_prom_config *cfg) {
  if (p->ev.type != YAML_SEQUENCE_START_EVENT)
    return ps_pc_fail(p, ev_line(p), "expected a sequence of servers (- url: ...), got %s",
                      event_noun(p->ev.type));
  if ((cfg->servers = calloc(PS_PROM_CONFIG_MAX_SERVERS, sizeof *cfg->servers)) == NULL) return UV_ENOMEM;
  for (;;) {
    int r = next(p);
    if (r != 0) return r;
    if (p->ev.type == YAML_SEQUENCE_END_EVENT) return 0;
    if (cfg->nservers == PS_PROM_CONFIG_MAX_SERVERS)
      return ps_pc_fail(p, ev_line(p), "more than %d servers", PS_PROM_CONFIG_MAX_SERVERS);
    struct srv s = {.cfg = &cfg->servers[cfg->nservers], .idx = cfg->nservers};
    cfg->nservers++; /* from here on ps_prom_config_free frees what it holds */
    snprintf(p->path, sizeof p->path, "servers[%zu]", s.idx);
    size_t map_line = ev_line(p);
    if (p->ev.type != YAML_MAPPING_START_EVENT)
      return ps_pc_fail(p, map_line, "expected a mapping (url: ...), got %s", event_noun(p->ev.type));
    if ((r = section(p, &server_section, &s)) != 0 || (r = ps_pc_check_server(p, &s, cfg, map_line)) != 0)
      return r;
    snprintf(p->path, sizeof p->path, "servers");
  }
}

static int document(struct pc *p, struct ps_prom_config *cfg) {
  int r;
  if ((r = next(p)) != 0 || (r = next(p)) != 0) return r; /* STREAM_START, then a document or the end */
  if (p->ev.type == YAML_STREAM_END_EVENT)
    return ps_pc_fail(p, 1, "the file is empty (expected servers: ...)");
  if ((r = next(p)) != 0) return r;
  if (p->ev.type != YAML_MAPPING_START_EVENT)
    return ps_pc_fail(p, ev_line(p), "expected a mapping with servers:, got %s", event_noun(p->ev.type));
  bool seen = false;
  for (;;) {
    if ((r = next(p)) != 0) return r;
    if (p->ev.type == YAML_MAPPING_END_EVENT) break;
    size_t line = ev_line(p);
    if (p->ev.type != YAML_SCALAR_EVENT)
      return ps_pc_fail(p, line, "a key must be a scalar, got %s", event_noun(p->ev.type));
    const char *name = (const char *)p->ev.data.scalar.value;
    if (strcmp(name, "servers") != 0) {
      char q[PS_FLAGS_QUOTED_MAX];
      ps_flags_quote(q, sizeof q, name);
      return ps_pc_fail(p, line, "unknown key %s (known: servers)", q);
    }
    if (seen) return ps_pc_fail(p, line, "key \"servers\" is given twice");
    seen = true;
    snprintf(p->path, sizeof p->path, "servers");
    if ((r = next(p)) != 0 || (r = servers(p, cfg)) != 0) return r;
    p->path[0] = '\0';
  }
  if (!seen) return ps_pc_fail(p, ev_line(p), "servers: is required");
  if ((r = next(p)) != 0 || (r = next(p)) != 0) return r; /* DOCUMENT_END, then the end */
  if (p->ev.type != YAML_STREAM_END_EVENT)
    return ps_pc_fail(p, ev_line(p),
                      "more than one YAML document (---): put every server under one servers:");
  return 0;
}

static int parse(const char *yaml, size_t len, const char *filename, bool check_files,
                 struct ps_prom_config *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err != NULL && errlen > 0) err[0] = '\0';
  struct pc p = {
      .yaml = yaml, .len = len, .file = filename, .check_files = check_files, .err = err, .errlen = errlen};
  const char *slash = strrchr(filename, '/');
  p.dirlen = slash != NULL ? (size_t)(slash - filename) + 1 : 0;
  if (len > PS_PROM_CONFIG_MAX_BYTES)
    return ps_flags_fail(err, errlen, "prometheus-config %s: the file is %zu bytes; the maximum is %u",
                         filename, len, PS_PROM_CONFIG_MAX_BYTES);
  if (!yaml_parser_initialize(&p.yp)) return UV_ENOMEM;
  yaml_parser_set_input_string(&p.yp, (const unsigned char *)yaml, len);
  int r = document(&p, out);
  if (p.held) yaml_event_delete(&p.ev);
  yaml_parser_delete(&p.yp);
  if (r != 0) ps_prom_config_free(out);
  return r;
}

/* ---- API ----------------------------------------------------------------------------------------- */

int ps_prom_config_parse(const char *yaml, size_t len, const char *filename, struct ps_prom_config *out,
                         char *err, size_t errlen) {
  return parse(yaml, len, filename, false, out, err, errlen);
}

int ps_prom_config_load(const char *path, struct ps_prom_config *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    return ps_flags_fail(err, errlen, "prometheus-config %s: cannot read: %s", path, strerror(errno));
  /* One byte more than the bound is read, so that a file that grew past it is seen to. */
  char *buf = malloc(PS_PROM_CONFIG_MAX_BYTES + 1);
  size_t n = 0;
  int r = buf == NULL ? UV_ENOMEM : 0;
  struct stat st;
  if (r == 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)))
    r = ps_flags_fail(err, errlen, "prometheus-config %s: not a regular file", path);
  while (r == 0 && n <= PS_PROM_CONFIG_MAX_BYTES) {
    ssize_t got = read(fd, buf + n, PS_PROM_CONFIG_MAX_BYTES + 1 - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      r = ps_flags_fail(err, errlen, "prometheus-config %s: cannot read: %s", path, strerror(errno));
    if (got <= 0) break;
    n += (size_t)got;
  }
  close(fd);
  if (r == 0) r = parse(buf, n, path, true, out, err, errlen);
  if (buf != NULL) explicit_bzero(buf, n); /* the text of inline credentials and passwords */
  free(buf);
  return r;
}

void ps_prom_config_free(struct ps_prom_config *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < c->nservers; i++) {
    struct ps_prom_server_cfg *s = &c->servers[i];
    char **fields[] = {&s->url,       &s->auth_type, &s->credentials,   &s->credentials_file,
                       &s->username,  &s->password,  &s->password_file, &s->ca_file,
                       &s->cert_file, &s->key_file,  &s->server_name};
    for (size_t k = 0; k < N(fields); k++) {
      /* Secrets are wiped before the memory goes back to the allocator. */
      if (*fields[k] != NULL && (fields[k] == &s->credentials || fields[k] == &s->password))
        explicit_bzero(*fields[k], strlen(*fields[k]));
      free(*fields[k]);
    }
    for (size_t h = 0; h < s->nheaders; h++) {
      free(s->headers[h].name);
      ps_free_secret(s->headers[h].value); /* may be a key too (X-API-Key) */
    }
    free(s->headers);
  }
  free(c->servers);
  memset(c, 0, sizeof *c);
}
