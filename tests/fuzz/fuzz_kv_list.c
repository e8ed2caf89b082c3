/* Fuzzes KEDA's "k1=v1,k2=v2" lists (src/kv_list.c) and what the trigger keys make of them
 * (src/config_prom.c, src/prom.c). Input: byte 0 picks the mode, the rest is the text (cut at a NUL, as
 * a metadata value would be refused there). Checked:
 *  - mode 0, the list: a parsed list is sorted with unique keys, within its bounds, trimmed, free of
 *    ',', '=' and control bytes, and reads back the same once written out again; an error is one line
 *    and never quotes the bytes after the first '=' of an entry (a value: it may be a token);
 *  - mode 1, customHeaders: the header lines built pass the HTTP client's own check (no smuggled line);
 *  - mode 2, namespace and queryParameters: the URL built is one the HTTP client accepts (no raw byte
 *    that could end the request line). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "http_client.h"
#include "kv_list.h"
#include "prom.h"

static bool clean(const char *s) {
  size_t n = strlen(s);
  if (n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t')) return false;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ',' || *s == '=') return false;
  return true;
}

static void check_list(const char *s) {
  struct ps_kv_list l, again;
  char err[256] = "";
  int r = ps_kv_list_parse(s, &l, err, sizeof err);
  if (r != 0) {
    if ((r != UV_EINVAL && r != UV_E2BIG && r != UV_ENOMEM) || l.n != 0 || l.items != NULL) abort();
    if (err[0] == '\0' || strchr(err, '\n') != NULL || strchr(err, '\r') != NULL) abort();
    return;
  }
  if (l.n > PS_KV_LIST_MAX_ITEMS) abort();
  struct ps_buf out;
  ps_buf_init(&out);
  for (size_t i = 0; i < l.n; i++) {
    const char *k = l.items[i].key, *v = l.items[i].value;
    if (k[0] == '\0' || strlen(k) > PS_KV_LIST_MAX_KEY || strlen(v) > PS_KV_LIST_MAX_VALUE) abort();
    if (!clean(k) || !clean(v)) abort();
    if (i > 0 && strcmp(l.items[i - 1].key, k) >= 0) abort();
    ps_buf_printf(&out, "%s%s=%s", i ? "," : "", k, v);
  }
  if (ps_kv_list_parse(out.data ? out.data : "", &again, err, sizeof err) != 0 || again.n != l.n) abort();
  for (size_t i = 0; i < l.n; i++)
    if (strcmp(again.items[i].key, l.items[i].key) != 0 ||
        strcmp(again.items[i].value, l.items[i].value) != 0)
      abort();
  ps_kv_list_free(&again);
  ps_kv_list_free(&l);
  ps_buf_free(&out);
}

static void check_keys(const char *s, bool headers) {
  struct ps_target_config c;
  memset(&c, 0, sizeof c);
  char err[512] = "";
  int r = headers ? ps_trigger_prom_keys_parse(&c, NULL, NULL, s, err, sizeof err)
                  : ps_trigger_prom_keys_parse(&c, s, s, NULL, err, sizeof err);
  if (r != 0) {
    if (err[0] == '\0' || strchr(err, '\n') != NULL) abort();
  } else if (headers) {
    if (c.custom_headers != NULL &&
        (ps_http_headers_check(c.custom_headers) != 0 || strlen(c.custom_headers) > PS_MAX_CUSTOM_HEADERS))
      abort();
  } else {
    struct ps_prom_params pp = {.ns = c.prom_namespace, .query_params = &c.query_params};
    struct ps_buf url;
    ps_buf_init(&url);
    if (ps_prom_range_url(&url, "http://h:9090", "up", 0, 1000, 1000, &pp) == 0) {
      char host[64];
      int port;
      const char *path;
      if (ps_http_url_split(url.data, host, sizeof host, &port, &path) != 0) abort();
    }
    ps_buf_free(&url);
  }
  ps_trigger_prom_keys_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0] % 3;
  data++, size--;
  char *s = malloc(size + 1);
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  if (mode == 0)
    check_list(s);
  else
    check_keys(s, mode == 1);
  free(s);
  return 0;
}
