/* The trigger keys of KEDA's prometheus scaler that are not secrets (pkg/scalers/prometheus_scaler.go),
 * so that moving a trigger from `prometheus` to prescale is a rename: namespace, queryParameters,
 * customHeaders (unsafeSsl and timeout are plain rows of config_trigger.c's key table). Values end up in a
 * request line or in header lines, so whatever could smuggle a header or a request (CR, LF, NUL, other
 * control bytes) is refused, and messages name the key and the entry, never a header's value: a
 * ScaledObject's status and prescale's log are read by more people than its Secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "flags.h"
#include "http_client.h"
#include "http_token.h"

/* Query parameters prescale sets itself (/api/v1/query_range): a second one would be ignored by
 * Prometheus (Go's url.Values.Get takes the first), silently. */
static const char *const own_params[] = {"query", "start", "end", "step"};

static int parse_namespace(struct ps_target_config *c, const char *ns, char *err, size_t errlen) {
  /* KEDA trims every value and treats a blank one as absent (typed_config.go configParamValue). */
  size_t b = strspn(ns, " \t"), e = strlen(ns);
  while (e > b && (ns[e - 1] == ' ' || ns[e - 1] == '\t')) e--;
  if (b == e) return 0;
  if (e - b > PS_MAX_NAMESPACE)
    return ps_flags_fail(err, errlen, "namespace: the value is %zu bytes; the maximum is %d", e - b,
                         PS_MAX_NAMESPACE);
  for (size_t i = b; i < e; i++)
    if (ps_ctl((unsigned char)ns[i]))
      return ps_flags_fail(err, errlen, "namespace: the value holds a control byte (CR, LF, ...)");
  c->prom_namespace = strndup(ns + b, e - b);
  return c->prom_namespace == NULL ? UV_ENOMEM : 0;
}

static int parse_query_params(struct ps_target_config *c, const char *s, char *err, size_t errlen) {
  char why[256];
  int r = ps_kv_list_parse(s, &c->query_params, why, sizeof why);
  if (r == UV_ENOMEM) return r;
  if (r != 0) return ps_flags_fail(err, errlen, "queryParameters: %s (expected k1=v1,k2=v2)", why);
  for (size_t i = 0; i < sizeof own_params / sizeof own_params[0]; i++)
    if (ps_kv_list_get(&c->query_params, own_params[i]) != NULL)
      return ps_flags_fail(err, errlen, "queryParameters: \"%s\" is set by prescale itself (query_range)",
                           own_params[i]);
  return 0;
}

static int parse_custom_headers(struct ps_target_config *c, const char *s, char *err, size_t errlen) {
  char why[256], q[PS_FLAGS_QUOTED_MAX];
  struct ps_kv_list l;
  int r = ps_kv_list_parse(s, &l, why, sizeof why);
  if (r == UV_ENOMEM) return r;
  if (r != 0)
    return ps_flags_fail(err, errlen, "customHeaders: %s (expected Name1=value1,Name2=value2)", why);
  struct ps_buf b;
  ps_buf_init(&b);
  for (size_t i = 0; r == 0 && i < l.n; i++) {
    const char *name = l.items[i].key;
    ps_flags_quote(q, sizeof q, name);
    if (!ps_http_token(name))
      r = ps_flags_fail(err, errlen, "customHeaders: header name %s is not a token (RFC 9110 5.6.2)", q);
    else if (ps_http_header_reserved(name, strlen(name)))
      r = ps_flags_fail(err, errlen, "customHeaders: header %s is set by prescale's HTTP client itself", q);
    else
      r = ps_buf_printf(&b, "%s: %s\r\n", name, l.items[i].value);
  }
  if (r == 0 && b.len > PS_MAX_CUSTOM_HEADERS)
    r = ps_flags_fail(err, errlen, "customHeaders: the headers take %zu bytes; the maximum is %d", b.len,
                      PS_MAX_CUSTOM_HEADERS);
  /* The lines were built from checked names and values; the client's own check must agree. */
  if (r == 0 && ps_http_headers_check(b.data) != 0)
    r = ps_flags_fail(err, errlen, "customHeaders: refused by the HTTP client");
  ps_kv_list_free(&l);
  if (r == 0 && b.len > 0) c->custom_headers = ps_buf_steal(&b, NULL);
  ps_buf_free(&b);
  return r;
}

int ps_trigger_prom_keys_parse(struct ps_target_config *c, const char *ns, const char *query_params,
                               const char *custom_headers, char *err, size_t errlen) {
  int r = 0;
  if (ns != NULL) r = parse_namespace(c, ns, err, errlen);
  if (r == 0 && query_params != NULL) r = parse_query_params(c, query_params, err, errlen);
  if (r == 0 && custom_headers != NULL) r = parse_custom_headers(c, custom_headers, err, errlen);
  return r;
}

void ps_trigger_prom_keys_free(struct ps_target_config *c) {
  free(c->prom_namespace);
  free(c->custom_headers);
  c->prom_namespace = c->custom_headers = NULL;
  ps_kv_list_free(&c->query_params);
}
