#include "prom_tls_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int ps_test_https_status(int port, const char *path, const struct ps_test_https *h) {
  int status = -1, fd = -1;
  SSL *ssl = NULL;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) return -1;
  SSL_CTX_set_verify(ctx, h->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  if (h->ca_file != NULL && SSL_CTX_load_verify_locations(ctx, h->ca_file, NULL) != 1) goto out;
  if (h->cert_file != NULL && (SSL_CTX_use_certificate_chain_file(ctx, h->cert_file) != 1 ||
                               SSL_CTX_use_PrivateKey_file(ctx, h->key_file, SSL_FILETYPE_PEM) != 1))
    goto out;
  if ((fd = tcp_connect(port)) < 0 || (ssl = SSL_new(ctx)) == NULL) goto out;
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) goto out;
  char req[1024];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", path,
                   h->authorization ? "Authorization: " : "", h->authorization ? h->authorization : "",
                   h->authorization ? "\r\n" : "");
  if (SSL_write(ssl, req, n) != n) goto out;
  char resp[64] = {0};
  int got = SSL_read(ssl, resp, sizeof resp - 1);
  if (got > 12 && sscanf(resp, "HTTP/%*d.%*d %d", &status) != 1) status = -1;
out:
  if (ssl != NULL) SSL_free(ssl);
  if (fd >= 0) close(fd);
  SSL_CTX_free(ctx);
  return status;
}

int ps_test_bcrypt(const char *user, const char *password, char *out, size_t len) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "htpasswd -nbBC 10 '%s' '%s'", user, password); /* test values: no quotes */
  FILE *f = popen(cmd, "r");
  if (f == NULL) return -1;
  char line[256] = {0};
  char *got = fgets(line, sizeof line, f);
  int rc = pclose(f);
  char *colon = got != NULL ? strchr(line, ':') : NULL;
  if (rc != 0 || colon == NULL || strncmp(colon + 1, "$2", 2) != 0) return -1;
  snprintf(out, len, "%.*s", (int)strcspn(colon + 1, "\r\n"), colon + 1);
  return 0;
}

void ps_test_basic_auth(const char *user, const char *password, char *out, size_t len) {
  char plain[256];
  int n = snprintf(plain, sizeof plain, "%s:%s", user, password);
  unsigned char b64[400];
  EVP_EncodeBlock(b64, (const unsigned char *)plain, n);
  snprintf(out, len, "Basic %s", (const char *)b64);
}

static int https_ready(const struct ps_test_prom *p) {
  return ps_test_https_status(p->port, "/-/ready", p->ready_arg);
}

int ps_test_prom_start_secure(struct ps_test_prom *p, const char *web_config,
                              const struct ps_test_https *ready, char *why, size_t whylen) {
  p->web_config = web_config;
  p->ready_status = https_ready;
  p->ready_arg = (void *)ready;
  return ps_test_prom_start(p, 0, why, whylen);
}
