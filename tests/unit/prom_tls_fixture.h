/* A real Prometheus behind its own --web.config.file for C tests (issue 10): TLS, basic auth with a bcrypt
 * hash made by `htpasswd -nbBC 10` (apache2-utils), client certificates. Readiness is awaited through TLS,
 * verified against the test's CA, with the credentials (a blocking OpenSSL client: test code only). */
#ifndef PS_PROM_TLS_FIXTURE_H
#define PS_PROM_TLS_FIXTURE_H

#include <stddef.h>

#include "prom_fixture.h"

/* How a blocking HTTPS GET reaches the server. Paths of PEM files; NULL: none. */
struct ps_test_https {
  const char *ca_file;   /* the CA the server's certificate must verify against (name 127.0.0.1) */
  const char *cert_file; /* client certificate and its key */
  const char *key_file;
  const char *authorization; /* an Authorization header value, or NULL */
  int insecure;              /* skip the verification (a server with an expired certificate) */
};

/* Blocking GET https://127.0.0.1:port/path (2 s socket timeouts): the HTTP status, or -1 (connect, TLS or
 * verification failed). */
int ps_test_https_status(int port, const char *path, const struct ps_test_https *h);
/* The bcrypt hash of password (htpasswd -nbBC 10 user password) into out: 0, or -1. */
int ps_test_bcrypt(const char *user, const char *password, char *out, size_t len);
/* "Basic base64(user:password)" into out. */
void ps_test_basic_auth(const char *user, const char *password, char *out, size_t len);
/* Starts Prometheus with web_config (a file path), readiness through TLS as `ready` says. As
 * ps_test_prom_start: 0, or -1 with a reason in why; p->url is https://127.0.0.1:PORT. */
int ps_test_prom_start_secure(struct ps_test_prom *p, const char *web_config,
                              const struct ps_test_https *ready, char *why, size_t whylen);

#endif
