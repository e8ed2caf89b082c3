/* TLS on memory BIOs (src/tls.c): a client and a server ps_tls talk to each other through memory, with
 * certificates made by the test (cert_fixture.c). No socket and no loop: what each side writes is queued
 * and pumped to the other until both are quiet. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "cert_fixture.h"
#include "tls.h"

/* One side of a connection: what it decrypted, and the records it wants to send. */
struct side {
  struct ps_tls *t;
  struct ps_buf plain, out;
  int feed_rc; /* the first failure of ps_tls_feed */
  bool echo;   /* write back every plaintext byte */
};

static int on_plain(void *arg, const uint8_t *data, size_t len) {
  struct side *s = arg;
  cr_assert_eq(ps_buf_append(&s->plain, data, len), 0);
  return s->echo ? ps_tls_write(s->t, data, len) : 0;
}

static int on_cipher(void *arg, const uint8_t *data, size_t len) {
  struct side *s = arg;
  return ps_buf_append(&s->out, data, len);
}

static const struct ps_tls_io io = {on_plain, on_cipher};

/* Moves bytes between the two until neither has anything to send (bounded: a handshake is a few flights). */
static void pump(struct side *c, struct side *s) {
  for (int round = 0; round < 10000 && (c->out.len || s->out.len); round++) {
    struct side *from = c->out.len ? c : s, *to = from == c ? s : c;
    struct ps_buf b = from->out;
    ps_buf_init(&from->out);
    if (to->feed_rc == 0) to->feed_rc = ps_tls_feed(to->t, (const uint8_t *)b.data, b.len);
    ps_buf_free(&b);
  }
  cr_assert(c->out.len == 0 && s->out.len == 0, "the pump did not settle");
}

static void side_free(struct side *s) {
  ps_tls_free(s->t);
  ps_buf_free(&s->plain);
  ps_buf_free(&s->out);
  memset(s, 0, sizeof *s);
}

static struct ps_tls_ctx *server_ctx(const struct ps_test_cert *leaf, const struct ps_test_cert *client_ca) {
  struct ps_tls_pem pem = {
      .cert = leaf->cert, .cert_len = leaf->cert_len, .key = leaf->key, .key_len = leaf->key_len};
  if (client_ca) pem.ca = client_ca->cert, pem.ca_len = client_ca->cert_len;
  struct ps_tls_ctx *ctx = NULL;
  char err[PS_TLS_ERR_MAX] = "";
  cr_assert_eq(ps_tls_ctx_server(&pem, &ctx, err, sizeof err), 0, "%s", err);
  return ctx;
}

/* Trusts ca; presents cert (may be NULL); offers ALPN h2, as a gRPC client does. */
static struct ps_tls_ctx *client_ctx(const struct ps_test_cert *ca, const struct ps_test_cert *cert,
                                     bool insecure) {
  struct ps_tls_pem pem = {.ca = ca->cert, .ca_len = ca->cert_len};
  if (cert)
    pem.cert = cert->cert, pem.cert_len = cert->cert_len, pem.key = cert->key, pem.key_len = cert->key_len;
  struct ps_tls_ctx *ctx = NULL;
  char err[PS_TLS_ERR_MAX] = "";
  cr_assert_eq(ps_tls_ctx_client(&pem, insecure, &ctx, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ps_tls_ctx_set_alpn(ctx, "h2"), 0);
  return ctx;
}

/* A client for `name` and a server, connected through memory; the handshake has run. */
static void connect_pair(struct ps_tls_ctx *cctx, struct ps_tls_ctx *sctx, const char *name, struct side *c,
                         struct side *s) {
  memset(c, 0, sizeof *c);
  memset(s, 0, sizeof *s);
  cr_assert_eq(ps_tls_new(cctx, name, &io, c, &c->t), 0);
  cr_assert_eq(ps_tls_new(sctx, NULL, &io, s, &s->t), 0);
  cr_assert_eq(ps_tls_start(c->t), 0);
  pump(c, s);
}

static struct ps_test_cert ca, leaf, other_ca;

static void certs(void) {
  ps_test_cert_ca(&ca, "prescale test CA");
  ps_test_cert_leaf(&leaf, &ca, 2);
  ps_test_cert_ca(&other_ca, "another CA");
}

static void certs_free(void) {
  ps_test_cert_free(&ca);
  ps_test_cert_free(&leaf);
  ps_test_cert_free(&other_ca);
}

TestSuite(tls, .init = certs, .fini = certs_free, .timeout = 60);

Test(tls, handshake_alpn_h2_and_data_both_ways) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL), *cctx = client_ctx(&ca, NULL, false);
  struct side c, s;
  memset(&c, 0, sizeof c);
  memset(&s, 0, sizeof s);
  cr_assert_eq(ps_tls_new(cctx, "localhost", &io, &c, &c.t), 0);
  cr_assert_eq(ps_tls_new(sctx, NULL, &io, &s, &s.t), 0);
  /* The server speaks first in HTTP/2 (its SETTINGS), before the handshake is done: that waits. */
  cr_assert_eq(ps_tls_write(s.t, (const uint8_t *)"early", 5), 0);
  cr_assert_eq(s.out.len, 0, "plaintext must not leave before the handshake");
  cr_assert_eq(ps_tls_start(c.t), 0);
  pump(&c, &s);
  cr_assert(ps_tls_handshake_done(c.t) && ps_tls_handshake_done(s.t));
  cr_assert_eq(c.feed_rc, 0, "%s", ps_tls_error(c.t));
  cr_assert_eq(s.feed_rc, 0, "%s", ps_tls_error(s.t));
  cr_assert_str_eq(ps_tls_alpn(s.t), "h2");
  cr_assert_str_eq(ps_tls_alpn(c.t), "h2");
  cr_assert_str_eq(c.plain.data, "early");

  /* A megabyte each way, so that records and write chunks are many. */
  size_t big = 1u << 20;
  uint8_t *data = malloc(big);
  for (size_t i = 0; i < big; i++) data[i] = (uint8_t)(i * 7 + 1);
  s.echo = true;
  cr_assert_eq(ps_tls_write(c.t, data, big), 0);
  pump(&c, &s);
  cr_assert_eq(s.plain.len, big);
  cr_assert_eq(memcmp(s.plain.data, data, big), 0);
  cr_assert_eq(c.plain.len, 5 + big);
  cr_assert_eq(memcmp(c.plain.data + 5, data, big), 0);
  free(data);

  /* close_notify: the server's next feed says the peer closed (RFC 8446 section 6.1); writes then fail. */
  cr_assert_eq(ps_tls_shutdown(c.t), 0);
  cr_assert_gt(c.out.len, 0);
  pump(&c, &s);
  cr_assert_eq(s.feed_rc, UV_EOF);
  cr_assert_eq(ps_tls_write(c.t, (const uint8_t *)"x", 1), UV_EPROTO);
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
}

Test(tls, ip_address_is_verified_against_ip_sans) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL), *cctx = client_ctx(&ca, NULL, false);
  struct side c, s;
  connect_pair(cctx, sctx, "127.0.0.1", &c, &s);
  cr_assert(ps_tls_handshake_done(c.t), "%s", ps_tls_error(c.t));
  side_free(&c);
  side_free(&s);
  connect_pair(cctx, sctx, "127.0.0.2", &c, &s);
  cr_assert_not(ps_tls_handshake_done(c.t));
  cr_assert_eq(c.feed_rc, UV_EPROTO);
  cr_assert_str_eq(ps_tls_error(c.t), "x509: certificate is valid for localhost, 127.0.0.1, not 127.0.0.2");
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
}

Test(tls, wrong_ca_on_the_client_is_unknown_authority) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL), *cctx = client_ctx(&other_ca, NULL, false);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert_not(ps_tls_handshake_done(c.t));
  cr_assert_eq(c.feed_rc, UV_EPROTO);
  cr_assert_str_eq(ps_tls_error(c.t), "x509: unknown authority");
  /* The client's alert reached the server, whose handshake failed too (naming the alert). */
  cr_assert_eq(s.feed_rc, UV_EPROTO);
  cr_assert(strstr(ps_tls_error(s.t), "unknown ca"), "%s", ps_tls_error(s.t));
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);

  /* insecure_skip_verify lets the same certificate through. */
  cctx = client_ctx(&other_ca, NULL, true);
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert(ps_tls_handshake_done(c.t), "%s", ps_tls_error(c.t));
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
}

Test(tls, expired_server_certificate) {
  struct ps_test_cert old;
  ps_test_cert_make(&old, &ca, "localhost", "DNS:localhost", -7200, -3600, 3);
  struct ps_tls_ctx *sctx = server_ctx(&old, NULL), *cctx = client_ctx(&ca, NULL, false);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert_not(ps_tls_handshake_done(c.t));
  cr_assert_str_eq(ps_tls_error(c.t), "x509: certificate has expired");
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
  ps_test_cert_free(&old);
}

Test(tls, wrong_name_says_what_the_certificate_is_valid_for) {
  struct ps_test_cert other;
  ps_test_cert_make(&other, &ca, "other", "DNS:other.example,DNS:*.other.example", -3600, 3600, 4);
  struct ps_tls_ctx *sctx = server_ctx(&other, NULL), *cctx = client_ctx(&ca, NULL, false);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert_not(ps_tls_handshake_done(c.t));
  cr_assert_str_eq(ps_tls_error(c.t),
                   "x509: certificate is valid for other.example, *.other.example, not localhost");
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
  ps_test_cert_free(&other);
}

/* mTLS: the server requires a client certificate from client_ca. */
Test(tls, mtls_accepts_a_client_certificate_from_the_ca) {
  struct ps_test_cert client;
  ps_test_cert_make(&client, &ca, "keda", NULL, -3600, 3600, 5);
  struct ps_tls_ctx *sctx = server_ctx(&leaf, &ca), *cctx = client_ctx(&ca, &client, false);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  s.echo = true;
  cr_assert_eq(ps_tls_write(c.t, (const uint8_t *)"ping", 4), 0);
  pump(&c, &s);
  cr_assert(ps_tls_handshake_done(s.t), "%s", ps_tls_error(s.t));
  cr_assert_eq(s.feed_rc, 0, "%s", ps_tls_error(s.t));
  cr_assert_eq(c.feed_rc, 0, "%s", ps_tls_error(c.t));
  cr_assert_str_eq(c.plain.data, "ping");
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
  ps_test_cert_free(&client);
}

/* In TLS 1.3 the client's handshake completes before the server has checked its certificate, so the
 * client learns of the refusal from the alert that follows; the server never completes. */
static void refused(struct ps_test_cert *client_cert, const char *server_says) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, &ca), *cctx = client_ctx(&ca, client_cert, false);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert_not(ps_tls_handshake_done(s.t));
  cr_assert_eq(s.feed_rc, UV_EPROTO);
  cr_assert_str_eq(ps_tls_error(s.t), server_says);
  cr_assert_eq(s.plain.len, 0, "no application byte may reach the server");
  cr_assert_eq(c.feed_rc, UV_EPROTO, "the client must see the alert");
  cr_assert(strstr(ps_tls_error(c.t), "alert"), "%s", ps_tls_error(c.t));
  cr_assert_eq(ps_tls_write(c.t, (const uint8_t *)"ping", 4), UV_EPROTO);
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
}

Test(tls, mtls_refuses_a_client_without_certificate) { refused(NULL, "tls: client certificate required"); }

Test(tls, mtls_refuses_a_client_certificate_from_another_ca) {
  struct ps_test_cert stranger;
  ps_test_cert_make(&stranger, &other_ca, "keda", NULL, -3600, 3600, 6);
  refused(&stranger, "client certificate: x509: unknown authority");
  ps_test_cert_free(&stranger);
}

Test(tls, alpn_without_h2_is_refused_and_no_alpn_is_let_through) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL), *cctx = client_ctx(&ca, NULL, false);
  cr_assert_eq(ps_tls_ctx_set_alpn(cctx, "http/1.1"), 0);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert_not(ps_tls_handshake_done(s.t));
  cr_assert_str_eq(ps_tls_error(s.t), "tls: no application protocol in common (ALPN h2 expected)");
  side_free(&c);
  side_free(&s);
  cr_assert_eq(ps_tls_ctx_set_alpn(cctx, NULL), 0);
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert(ps_tls_handshake_done(c.t) && ps_tls_handshake_done(s.t));
  cr_assert_str_eq(ps_tls_alpn(s.t), "");
  side_free(&c);
  side_free(&s);
  cr_assert_eq(ps_tls_ctx_set_alpn(cctx, "a-protocol-name-too-long"), UV_EINVAL);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
}

Test(tls, garbage_fails_the_server_handshake_in_words) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL);
  struct side s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(ps_tls_new(sctx, NULL, &io, &s, &s.t), 0);
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(ps_tls_feed(s.t, (const uint8_t *)http, strlen(http)), UV_EPROTO);
  cr_assert_str_eq(ps_tls_error(s.t), "tls: not a TLS handshake (a plaintext client: h2c or HTTP?)");
  cr_assert_eq(ps_tls_feed(s.t, (const uint8_t *)"x", 1), UV_EPROTO, "a failed connection stays failed");
  side_free(&s);
  /* The HTTP/2 connection preface of an h2c client (RFC 9113 section 3.4). */
  memset(&s, 0, sizeof s);
  cr_assert_eq(ps_tls_new(sctx, NULL, &io, &s, &s.t), 0);
  const char *preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  cr_assert_eq(ps_tls_feed(s.t, (const uint8_t *)preface, strlen(preface)), UV_EPROTO);
  cr_assert_str_eq(ps_tls_error(s.t), "tls: not a TLS handshake (a plaintext client: h2c or HTTP?)");
  side_free(&s);
  /* A record of the right kind holding a ClientHello that does not parse. */
  memset(&s, 0, sizeof s);
  cr_assert_eq(ps_tls_new(sctx, NULL, &io, &s, &s.t), 0);
  cr_assert_eq(ps_tls_feed(s.t, (const uint8_t *)"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10), UV_EPROTO);
  cr_assert(strncmp(ps_tls_error(s.t), "tls: ", 5) == 0, "%s", ps_tls_error(s.t));
  side_free(&s);
  ps_tls_ctx_free(sctx);
}

/* Reload swaps the context: the open connection keeps working on the old certificate, a new one gets the
 * new certificate (here from another CA, so only a client trusting that CA gets through). */
Test(tls, reload_keeps_open_connections_and_serves_the_new_certificate) {
  struct ps_test_cert leaf2;
  ps_test_cert_make(&leaf2, &other_ca, "localhost", "DNS:localhost", -3600, 7200, 7);
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL);
  struct ps_tls_ctx *trust1 = client_ctx(&ca, NULL, false), *trust2 = client_ctx(&other_ca, NULL, false);
  int64_t before = 0, after = 0;
  cr_assert_eq(ps_tls_ctx_not_after(sctx, &before), 0);
  struct side c, s;
  connect_pair(trust1, sctx, "localhost", &c, &s);
  cr_assert(ps_tls_handshake_done(c.t));

  struct ps_tls_pem pem = {
      .cert = leaf2.cert, .cert_len = leaf2.cert_len, .key = leaf2.key, .key_len = leaf2.key_len};
  char err[PS_TLS_ERR_MAX] = "";
  cr_assert_eq(ps_tls_ctx_reload(sctx, &pem, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ps_tls_ctx_not_after(sctx, &after), 0);
  cr_assert_lt(after, before, "the new certificate's notAfter is served (%lld then %lld)", (long long)before,
               (long long)after);

  s.echo = true;
  cr_assert_eq(ps_tls_write(c.t, (const uint8_t *)"still here", 10), 0);
  pump(&c, &s);
  cr_assert_eq(c.feed_rc, 0, "%s", ps_tls_error(c.t));
  cr_assert_str_eq(c.plain.data, "still here");

  struct side c2, s2;
  connect_pair(trust1, sctx, "localhost", &c2, &s2);
  cr_assert_str_eq(ps_tls_error(c2.t), "x509: unknown authority",
                   "a new connection gets the new certificate");
  side_free(&c2);
  side_free(&s2);
  connect_pair(trust2, sctx, "localhost", &c2, &s2);
  cr_assert(ps_tls_handshake_done(c2.t), "%s", ps_tls_error(c2.t));
  side_free(&c2);
  side_free(&s2);

  /* A reload that fails keeps the certificate in use. */
  struct ps_tls_pem mismatch = {
      .cert = leaf.cert, .cert_len = leaf.cert_len, .key = leaf2.key, .key_len = leaf2.key_len};
  cr_assert_eq(ps_tls_ctx_reload(sctx, &mismatch, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "key does not match certificate");
  struct ps_tls_pem junk = {.cert = "not a pem", .cert_len = 9, .key = leaf2.key, .key_len = leaf2.key_len};
  cr_assert_eq(ps_tls_ctx_reload(sctx, &junk, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "cert: no valid PEM certificate");
  connect_pair(trust2, sctx, "localhost", &c2, &s2);
  cr_assert(ps_tls_handshake_done(c2.t), "%s", ps_tls_error(c2.t));
  side_free(&c2);
  side_free(&s2);

  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(trust1);
  ps_tls_ctx_free(trust2);
  ps_tls_ctx_free(sctx);
  ps_test_cert_free(&leaf2);
}

/* Contexts that cannot be built say why, and never quote the key. */
Test(tls, context_errors_are_words_without_secrets) {
  struct ps_tls_ctx *ctx = NULL;
  char err[PS_TLS_ERR_MAX];
  struct ps_tls_pem no_key = {.cert = leaf.cert, .cert_len = leaf.cert_len};
  cr_assert_eq(ps_tls_ctx_server(&no_key, &ctx, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "a server needs both a certificate and its key");
  cr_assert_null(ctx);

  /* A key cut in half, and an encrypted key: refused at once (no passphrase prompt on the terminal). */
  struct ps_tls_pem cut = {
      .cert = leaf.cert, .cert_len = leaf.cert_len, .key = leaf.key, .key_len = leaf.key_len / 2};
  cr_assert_eq(ps_tls_ctx_server(&cut, &ctx, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "key: no valid unencrypted PEM private key");
  const char *enc = "-----BEGIN ENCRYPTED PRIVATE "
                    "KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgAAAAAAAAAAAICCAAw\n"
                    "-----END ENCRYPTED PRIVATE KEY-----\n";
  struct ps_tls_pem encrypted = {
      .cert = leaf.cert, .cert_len = leaf.cert_len, .key = enc, .key_len = strlen(enc)};
  cr_assert_eq(ps_tls_ctx_server(&encrypted, &ctx, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "key: no valid unencrypted PEM private key");
  cr_assert_null(strstr(err, "PRIVATE"));

  struct ps_tls_pem bad_ca = {.cert = leaf.cert,
                              .cert_len = leaf.cert_len,
                              .key = leaf.key,
                              .key_len = leaf.key_len,
                              .ca = "garbage",
                              .ca_len = 7};
  cr_assert_eq(ps_tls_ctx_server(&bad_ca, &ctx, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "ca: no valid PEM certificate");

  struct ps_tls_pem half_client = {.cert = leaf.cert, .cert_len = leaf.cert_len};
  cr_assert_eq(ps_tls_ctx_client(&half_client, false, &ctx, err, sizeof err), UV_EINVAL);
  cr_assert_str_eq(err, "a client certificate needs both cert and key");

  /* A client with the system CAs needs a name to verify. */
  cr_assert_eq(ps_tls_ctx_client(NULL, false, &ctx, err, sizeof err), 0, "%s", err);
  struct side c;
  memset(&c, 0, sizeof c);
  cr_assert_eq(ps_tls_new(ctx, NULL, &io, &c, &c.t), UV_EINVAL);
  cr_assert_eq(ps_tls_new(ctx, "localhost", &io, &c, &c.t), 0);
  side_free(&c);
  ps_tls_ctx_free(ctx);
}

/* The system CAs do not know our test CA: the default client refuses it. */
Test(tls, system_cas_by_default) {
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL), *cctx = NULL;
  char err[PS_TLS_ERR_MAX];
  cr_assert_eq(ps_tls_ctx_client(NULL, false, &cctx, err, sizeof err), 0, "%s", err);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert_str_eq(ps_tls_error(c.t), "x509: unknown authority");
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
}

/* The system bundle is read when the context is made (SSL_CERT_FILE points at it, as OpenSSL reads it): a
 * CA in it is trusted, and removing the file afterwards changes nothing, so no handshake reads a file. */
Test(tls, system_bundle_is_read_when_the_context_is_made) {
  char dir[] = "/tmp/ps_tls_cas_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char *bundle = ps_test_write_file(dir, "bundle.pem", ca.cert);
  cr_assert_eq(setenv("SSL_CERT_FILE", bundle, 1), 0);
  struct ps_tls_ctx *sctx = server_ctx(&leaf, NULL), *cctx = NULL;
  char err[PS_TLS_ERR_MAX];
  cr_assert_eq(ps_tls_ctx_client(NULL, false, &cctx, err, sizeof err), 0, "%s", err);
  unsetenv("SSL_CERT_FILE");
  cr_assert_eq(remove(bundle), 0);
  cr_assert_eq(rmdir(dir), 0);
  struct side c, s;
  connect_pair(cctx, sctx, "localhost", &c, &s);
  cr_assert(ps_tls_handshake_done(c.t), "%s", ps_tls_error(c.t));
  side_free(&c);
  side_free(&s);
  ps_tls_ctx_free(cctx);
  ps_tls_ctx_free(sctx);
  free(bundle);
}
