/* Fuzzes the --prometheus-config parser (src/prom_config.c): the input is the YAML file. Besides not
 * crashing or leaking, checks what the HTTP client relies on in an accepted config (every url http:// or
 * https://, without trailing '/', distinct and found by ps_prom_config_match; credentials in one place;
 * headers that cannot split a request) and that every refusal is one line naming the file. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "prom_config.h"

#define FILE_NAME "/fuzz/p.yaml"

static bool clean(const char *s) {
  for (; *s; s++)
    if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) return false;
  return true;
}

static void check_server(const struct ps_prom_config *c, const struct ps_prom_server_cfg *s) {
  size_t n = strlen(s->url);
  if (strncasecmp(s->url, "http://", 7) != 0 && strncasecmp(s->url, "https://", 8) != 0) abort();
  if (s->url[n - 1] == '/' || !clean(s->url) || strchr(s->url, ' ') != NULL) abort();
  /* Urls are distinct, so each finds itself. */
  if (ps_prom_config_match(c, s->url) != s) abort();
  if (s->auth_type != NULL && s->username != NULL) abort();
  if (s->auth_type != NULL && (s->credentials == NULL) == (s->credentials_file == NULL)) abort();
  if (s->credentials != NULL && (s->auth_type == NULL || !clean(s->credentials))) abort();
  if (s->password != NULL && (s->password_file != NULL || !clean(s->password))) abort();
  if (s->username != NULL && (s->username[0] == '\0' || strchr(s->username, ':') != NULL)) abort();
  if ((s->cert_file == NULL) != (s->key_file == NULL)) abort();
  if (s->nheaders > PS_PROM_CONFIG_MAX_HEADERS) abort();
  for (size_t i = 0; i < s->nheaders; i++) {
    const char *name = s->headers[i].name;
    if (name[0] == '\0' || !clean(s->headers[i].value)) abort();
    for (const char *p = name; *p; p++)
      if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL) abort();
    if (strcasecmp(name, "Authorization") == 0 || strcasecmp(name, "Host") == 0) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ps_prom_config c;
  char err[512];
  int r = ps_prom_config_parse((const char *)data, size, FILE_NAME, &c, err, sizeof err);
  if (r == 0) {
    if (c.nservers > PS_PROM_CONFIG_MAX_SERVERS) abort();
    for (size_t i = 0; i < c.nservers; i++) check_server(&c, &c.servers[i]);
    ps_prom_config_free(&c);
    if (c.servers != NULL || c.nservers != 0) abort();
    return 0;
  }
  if (r != UV_EINVAL && r != UV_ENOMEM) abort();
  if (c.servers != NULL || c.nservers != 0) abort(); /* nothing is left to free after a refusal */
  if (r == UV_EINVAL && (strncmp(err, "prometheus-config " FILE_NAME, 30) != 0 || strchr(err, '\n') != NULL))
    abort();
  return 0;
}
