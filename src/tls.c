/* TLS on memory BIOs (see tls.h). Two halves: contexts (building an SSL_CTX from PEM in memory, reloading)
 * and connections (driving one SSL between a read BIO we fill and a write BIO we drain). */
#include "tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "buf.h"

#define ALPN_MAX    15          /* one protocol name, as we offer or accept it */
#define READ_CHUNK  (16u << 10) /* one TLS record's worth of plaintext (RFC 8446 section 5.1) */
#define WRITE_CHUNK (64u << 10) /* plaintext per SSL_write, so the write BIO stays small */

struct ps_tls_ctx {
  SSL_CTX *ssl_ctx; /* swapped by reload; each SSL holds its own reference */
  bool server;
  bool insecure;
  char alpn[ALPN_MAX + 1];
};

struct ps_tls {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  const struct ps_tls_io *io;
  void *arg;
  bool server, insecure, done, failed, shut;
  char *name;          /* client: the name verified, for the error message */
  char names[128];     /* client: the names the refused certificate is valid for (verify_cb) */
  struct ps_buf early; /* plaintext written before the handshake completed */
  char alpn[ALPN_MAX + 1];
  char err[PS_TLS_ERR_MAX];
};

/* ---- contexts ------------------------------------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  ERR_clear_error();
  return UV_EINVAL;
}

/* No passphrase prompt: OpenSSL's default callback would read the terminal and block the loop. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) { return -1; }

/* Every certificate of a PEM blob, in order; NULL and 0 when there is none or one does not parse. */
static STACK_OF(X509) * read_certs(const char *pem, size_t len) {
  if (!pem || len == 0 || len > INT_MAX) return NULL;
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  STACK_OF(X509) *sk = sk_X509_new_null();
  if (!b || !sk) goto bad;
  X509 *x;
  while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
    if (!sk_X509_push(sk, x)) {
      X509_free(x);
      goto bad;
    }
  }
  /* The loop ends on "no start line" at the end of the blob; anything else is a broken certificate. */
  unsigned long e = ERR_peek_last_error();
  if (sk_X509_num(sk) == 0 || (e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)) goto bad;
  ERR_clear_error();
  BIO_free(b);
  return sk;
bad:
  BIO_free(b);
  sk_X509_pop_free(sk, X509_free);
  return NULL;
}

static int use_cert_and_key(SSL_CTX *c, const struct ps_tls_pem *pem, char *err, size_t errlen) {
  STACK_OF(X509) *chain = read_certs(pem->cert, pem->cert_len);
  if (!chain) return fail(err, errlen, "cert: no valid PEM certificate");
  X509 *leaf = sk_X509_shift(chain);
  int ok = SSL_CTX_use_certificate(c, leaf);
  X509_free(leaf);
  /* The rest of the file is the chain to send (intermediates), RFC 8446 section 4.4.2. */
  for (X509 *x; ok && (x = sk_X509_shift(chain));) {
    ok = SSL_CTX_add0_chain_cert(c, x);
    if (!ok) X509_free(x);
  }
  sk_X509_pop_free(chain, X509_free);
  if (!ok) return fail(err, errlen, "cert: the certificate was refused (too weak a key or signature?)");
  if (!pem->key || pem->key_len == 0 || pem->key_len > INT_MAX) return fail(err, errlen, "key: empty");
  BIO *b = BIO_new_mem_buf(pem->key, (int)pem->key_len);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
  BIO_free(b);
  /* The words are ours: OpenSSL's would not quote the key, but there is no reason to find out. */
  if (!k) return fail(err, errlen, "key: no valid unencrypted PEM private key");
  ok = SSL_CTX_use_PrivateKey(c, k);
  EVP_PKEY_free(k);
  if (!ok || !SSL_CTX_check_private_key(c)) return fail(err, errlen, "key does not match certificate");
  return 0;
}

static int use_ca(SSL_CTX *c, const struct ps_tls_pem *pem, bool server, char *err, size_t errlen) {
  STACK_OF(X509) *cas = read_certs(pem->ca, pem->ca_len);
  if (!cas) return fail(err, errlen, "ca: no valid PEM certificate");
  X509_STORE *store = SSL_CTX_get_cert_store(c);
  STACK_OF(X509_NAME) *names = server ? sk_X509_NAME_new_null() : NULL;
  int ok = !server || names;
  for (int i = 0; ok && i < sk_X509_num(cas); i++) {
    X509 *x = sk_X509_value(cas, i);
    ok = X509_STORE_add_cert(store, x);
    /* The server names its CAs in the CertificateRequest, so a client with several certificates picks
     * the right one (RFC 8446 section 4.2.4). */
    if (ok && server) {
      X509_NAME *n = X509_NAME_dup(X509_get_subject_name(x));
      ok = n && sk_X509_NAME_push(names, n);
      if (!ok) X509_NAME_free(n);
    }
  }
  sk_X509_pop_free(cas, X509_free);
  if (!ok) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return fail(err, errlen, "ca: a certificate was refused");
  }
  if (server) SSL_CTX_set_client_CA_list(c, names); /* owns names from here on */
  return 0;
}

/* RFC 7301 section 3.2: the server picks "h2" or, when the client offered ALPN without it, refuses. A
 * client that sent no ALPN extension never gets here. grpc-go refuses a server that does not select h2. */
static int select_alpn(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  static const unsigned char h2[] = {2, 'h', '2'};
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, h2, sizeof h2, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static void san_list(X509 *x, char *out, size_t len);

/* OpenSSL forgets the peer's certificate when verification fails, so the names for "valid for X, not Y"
 * are taken here, while the certificate is at hand. The verdict is OpenSSL's own (preverify_ok). */
static int verify_cb(int preverify_ok, X509_STORE_CTX *x) {
  int e = X509_STORE_CTX_get_error(x);
  if (!preverify_ok && (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct ps_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t) san_list(X509_STORE_CTX_get_current_cert(x), t->names, sizeof t->names);
  }
  return preverify_ok;
}

/* The system CAs, read now. SSL_CTX_set_default_verify_paths would also register the hashed certificate
 * directory, which OpenSSL reads lazily, with blocking file reads during a handshake, i.e. on the loop,
 * whenever an issuer is not in the store (any unknown CA). So the bundle file (SSL_CERT_FILE, or Debian's
 * /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt) is loaded when the context is made, and the
 * directory (SSL_CERT_DIR) is used only on a system without a bundle. */
static int load_system_cas(SSL_CTX *c) {
  /* Read once, by the first client context (at startup: ps_http_client_tls_init), then shared by reference
   * by every context that has no CA of its own: a context rebuilt on the loop (a rotated client certificate
   * of a --prometheus-config server) then reads no file. Nothing is ever added to this store. */
  static X509_STORE *system_store;
  if (system_store != NULL) {
    SSL_CTX_set1_cert_store(c, system_store);
    return 1;
  }
  const char *file = getenv(X509_get_default_cert_file_env());
  if (SSL_CTX_load_verify_file(c, file && *file ? file : X509_get_default_cert_file()) != 1) {
    ERR_clear_error();
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (SSL_CTX_load_verify_dir(c, dir && *dir ? dir : X509_get_default_cert_dir()) != 1) return 0;
  }
  X509_STORE *st = SSL_CTX_get_cert_store(c);
  if (X509_STORE_up_ref(st) != 1) return 0;
  system_store = st;
  return 1;
}

static SSL_CTX *build(const struct ps_tls_ctx *t, const struct ps_tls_pem *pem, char *err, size_t errlen) {
  SSL_CTX *c = SSL_CTX_new(t->server ? TLS_server_method() : TLS_client_method());
  if (!c) {
    fail(err, errlen, "out of memory");
    return NULL;
  }
  /* TLS 1.0 and 1.1 are deprecated (RFC 8996); renegotiation is an easy way to burn our CPU. */
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_default_passwd_cb(c, no_passphrase);
  static const struct ps_tls_pem none = {0};
  if (!pem) pem = &none;
  bool has_cert = pem->cert && pem->cert_len, has_key = pem->key && pem->key_len;
  if (t->server && (!has_cert || !has_key)) goto bad_msg_server;
  if (!t->server && has_cert != has_key) goto bad_msg_pair;
  if (has_cert && use_cert_and_key(c, pem, err, errlen) != 0) goto bad;
  if (pem->ca && pem->ca_len) {
    if (use_ca(c, pem, t->server, err, errlen) != 0) goto bad;
  } else if (!t->server && !t->insecure && !load_system_cas(c)) {
    fail(err, errlen, "ca: the system CA certificates could not be loaded");
    goto bad;
  }
  if (t->server) {
    /* Stateless tickets only: a server-side session cache would be memory a client could fill. */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(c, select_alpn, NULL);
    if (pem->ca && pem->ca_len)
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  } else {
    SSL_CTX_set_verify(c, t->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, verify_cb);
    size_t n = strlen(t->alpn);
    unsigned char wire[ALPN_MAX + 1];
    wire[0] = (unsigned char)n;
    memcpy(wire + 1, t->alpn, n);
    if (n && SSL_CTX_set_alpn_protos(c, wire, (unsigned)n + 1) != 0) { /* 0 is success here */
      fail(err, errlen, "out of memory");
      goto bad;
    }
  }
  return c;
bad_msg_server:
  fail(err, errlen, "a server needs both a certificate and its key");
  goto bad;
bad_msg_pair:
  fail(err, errlen, "a client certificate needs both cert and key");
bad:
  SSL_CTX_free(c);
  return NULL;
}

static int ctx_new(const struct ps_tls_pem *pem, bool server, bool insecure, struct ps_tls_ctx **out,
                   char *err, size_t errlen) {
  *out = NULL;
  struct ps_tls_ctx *t = calloc(1, sizeof *t);
  if (!t) {
    fail(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  t->server = server;
  t->insecure = insecure;
  t->ssl_ctx = build(t, pem, err, errlen);
  if (!t->ssl_ctx) {
    free(t);
    return UV_EINVAL;
  }
  *out = t;
  return 0;
}

int ps_tls_ctx_server(const struct ps_tls_pem *pem, struct ps_tls_ctx **out, char *err, size_t errlen) {
  return ctx_new(pem, true, false, out, err, errlen);
}

int ps_tls_ctx_client(const struct ps_tls_pem *pem, bool insecure_skip_verify, struct ps_tls_ctx **out,
                      char *err, size_t errlen) {
  return ctx_new(pem, false, insecure_skip_verify, out, err, errlen);
}

int ps_tls_ctx_set_alpn(struct ps_tls_ctx *ctx, const char *proto) {
  if (!proto) proto = "";
  size_t n = strlen(proto);
  if (ctx->server || n > ALPN_MAX) return UV_EINVAL;
  unsigned char wire[ALPN_MAX + 1];
  wire[0] = (unsigned char)n;
  memcpy(wire + 1, proto, n);
  /* An empty list turns ALPN off. SSL_CTX_set_alpn_protos returns 0 on success. */
  if (SSL_CTX_set_alpn_protos(ctx->ssl_ctx, n ? wire : NULL, n ? (unsigned)n + 1 : 0) != 0) return UV_ENOMEM;
  memcpy(ctx->alpn, proto, n + 1);
  return 0;
}

int ps_tls_ctx_reload(struct ps_tls_ctx *ctx, const struct ps_tls_pem *pem, char *err, size_t errlen) {
  SSL_CTX *c = build(ctx, pem, err, errlen);
  if (!c) return UV_EINVAL;
  SSL_CTX_free(ctx->ssl_ctx); /* drops our reference; open connections hold theirs */
  ctx->ssl_ctx = c;
  return 0;
}

int ps_tls_ctx_not_after(const struct ps_tls_ctx *ctx, int64_t *unix_seconds) {
  X509 *x = SSL_CTX_get0_certificate(ctx->ssl_ctx);
  struct tm tm;
  if (!x || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) return UV_ENOENT;
  *unix_seconds = (int64_t)timegm(&tm);
  return 0;
}

void ps_tls_ctx_free(struct ps_tls_ctx *ctx) {
  if (!ctx) return;
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx);
}

/* ---- connections --------------------------------------------------------------------------------- */

static bool is_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int ps_tls_new(struct ps_tls_ctx *ctx, const char *server_name, const struct ps_tls_io *io, void *arg,
               struct ps_tls **out) {
  *out = NULL;
  if (!ctx->server && !ctx->insecure && (!server_name || !*server_name)) return UV_EINVAL;
  struct ps_tls *t = calloc(1, sizeof *t);
  if (!t) return UV_ENOMEM;
  t->io = io;
  t->arg = arg;
  t->server = ctx->server;
  t->insecure = ctx->insecure;
  ps_buf_init(&t->early);
  t->ssl = SSL_new(ctx->ssl_ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) goto nomem;
  /* An empty read BIO means "wait for more bytes", not end of file. */
  BIO_set_mem_eof_return(t->rbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both from here on */
  SSL_set_app_data(t->ssl, t);           /* for verify_cb */
  if (t->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (server_name && *server_name) {
      if (!(t->name = strdup(server_name))) goto nomem_ssl;
      bool ip = is_ip(server_name);
      /* SNI carries DNS names only (RFC 6066 section 3); the name checked may be either (RFC 6125). */
      if (!ip && !SSL_set_tlsext_host_name(t->ssl, server_name)) goto nomem_ssl;
      X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
      if (!t->insecure && !(ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, server_name)
                               : X509_VERIFY_PARAM_set1_host(vp, server_name, 0)))
        goto nomem_ssl;
    }
  }
  *out = t;
  return 0;
nomem:
  BIO_free(t->rbio);
  BIO_free(t->wbio);
  t->rbio = t->wbio = NULL;
nomem_ssl:
  ERR_clear_error();
  SSL_free(t->ssl);
  free(t->name);
  free(t);
  return UV_ENOMEM;
}

/* Hands what the SSL wrote (records, alerts) to on_cipher. */
static int flush(struct ps_tls *t) {
  char *p;
  long n = BIO_get_mem_data(t->wbio, &p);
  if (n <= 0) return 0;
  int rc = t->io->on_cipher(t->arg, (const uint8_t *)p, (size_t)n);
  (void)BIO_reset(t->wbio); /* a read-write memory BIO forgets its data on reset */
  return rc;
}

/* The names a certificate is valid for, for "valid for X, not Y": its DNS and IP SANs, printable only. */
static void san_list(X509 *x, char *out, size_t len) {
  out[0] = 0;
  GENERAL_NAMES *gens = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
  size_t used = 0;
  for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && used + 8 < len; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    char name[64];
    if (g->type == GEN_DNS) {
      const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
      int n = ASN1_STRING_length(g->d.dNSName);
      int k = 0;
      for (int j = 0; j < n && k < (int)sizeof name - 1; j++)
        name[k++] = d[j] > 32 && d[j] < 127 ? (char)d[j] : '?';
      name[k] = 0;
    } else if (g->type == GEN_IPADD && (g->d.iPAddress->length == 4 || g->d.iPAddress->length == 16)) {
      inet_ntop(g->d.iPAddress->length == 4 ? AF_INET : AF_INET6, g->d.iPAddress->data, name, sizeof name);
    } else {
      continue;
    }
    int w = snprintf(out + used, len - used, "%s%s", used ? ", " : "", name);
    if (w < 0 || (size_t)w >= len - used) {
      snprintf(out + used, len - used, "%s...", used ? ", " : "");
      break;
    }
    used += (size_t)w;
  }
  GENERAL_NAMES_free(gens);
}

/* Words for a verification result, in the style of Go's crypto/x509 (what KEDA's logs say). */
static void verify_words(struct ps_tls *t, long vr) {
  const char *who = t->server ? "client certificate: " : "";
  switch (vr) {
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    snprintf(t->err, sizeof t->err, "%sx509: unknown authority", who);
    break;
  case X509_V_ERR_CERT_HAS_EXPIRED:
    snprintf(t->err, sizeof t->err, "%sx509: certificate has expired", who);
    break;
  case X509_V_ERR_CERT_NOT_YET_VALID:
    snprintf(t->err, sizeof t->err, "%sx509: certificate is not yet valid", who);
    break;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH: {
    snprintf(t->err, sizeof t->err, "x509: certificate is valid for %s, not %.60s",
             t->names[0] ? t->names : "no name", t->name ? t->name : "");
    break;
  }
  default: snprintf(t->err, sizeof t->err, "%sx509: %s", who, X509_verify_cert_error_string(vr));
  }
}

/* A failed handshake or record: the words, then the alert for the peer. Returns UV_EPROTO. */
static int failed(struct ps_tls *t) {
  long vr = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_last_error();
  /* A server's result stays X509_V_OK when no certificate came (that is the reason below). */
  if (vr != X509_V_OK && !t->insecure) {
    verify_words(t, vr);
  } else if (e && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    snprintf(t->err, sizeof t->err, "tls: client certificate required");
  } else if (e && t->server && !t->done &&
             (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER || ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)) {
    /* The usual mistake on a TLS port: a client speaking h2c (KEDA without TLS) or plain HTTP. */
    snprintf(t->err, sizeof t->err, "tls: not a TLS handshake (a plaintext client: h2c or HTTP?)");
  } else if (e && ERR_GET_REASON(e) == SSL_R_NO_APPLICATION_PROTOCOL) {
    snprintf(t->err, sizeof t->err, "tls: no application protocol in common (ALPN h2 expected)");
  } else if (e && ERR_reason_error_string(e)) {
    /* OpenSSL's reason strings name the failure ("wrong version number", "tlsv1 alert unknown ca"),
     * never a key. */
    snprintf(t->err, sizeof t->err, "tls: %s", ERR_reason_error_string(e));
  } else {
    snprintf(t->err, sizeof t->err, "tls: %s failed", t->done ? "record" : "handshake");
  }
  ERR_clear_error();
  t->failed = true;
  (void)flush(t); /* the alert, so the peer learns why */
  return UV_EPROTO;
}

static int send_plain(struct ps_tls *t, const uint8_t *data, size_t len) {
  while (len > 0) {
    size_t n = len < WRITE_CHUNK ? len : WRITE_CHUNK, wrote = 0;
    ERR_clear_error();
    /* A memory BIO never says "retry" on write, so SSL_write_ex takes it all or fails. */
    if (SSL_write_ex(t->ssl, data, n, &wrote) != 1) return failed(t);
    int rc = flush(t);
    if (rc != 0) return rc;
    data += wrote;
    len -= wrote;
  }
  return 0;
}

static int handshake(struct ps_tls *t) {
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r != 1) {
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return flush(t);
    return failed(t);
  }
  t->done = true;
  const unsigned char *a = NULL;
  unsigned alen = 0;
  SSL_get0_alpn_selected(t->ssl, &a, &alen);
  if (a && alen <= ALPN_MAX) {
    memcpy(t->alpn, a, alen);
    t->alpn[alen] = 0;
  }
  int rc = flush(t);
  if (rc == 0 && t->early.len) rc = send_plain(t, (const uint8_t *)t->early.data, t->early.len);
  ps_buf_wipe(&t->early); /* the client's request: its Authorization line */
  ps_buf_free(&t->early);
  return rc;
}

int ps_tls_start(struct ps_tls *t) {
  if (t->server || t->failed) return UV_EINVAL;
  return handshake(t);
}

int ps_tls_feed(struct ps_tls *t, const uint8_t *data, size_t len) {
  if (t->failed) return UV_EPROTO;
  if (len > INT_MAX || BIO_write(t->rbio, data, (int)len) != (int)len) return UV_ENOMEM;
  if (!t->done) {
    int rc = handshake(t);
    if (rc != 0 || !t->done) return rc;
  }
  uint8_t buf[READ_CHUNK];
  for (;;) {
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, sizeof buf, &n) == 1) {
      int rc = t->io->on_plain(t->arg, buf, n);
      if (rc != 0) return rc;
      continue;
    }
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
      (void)flush(t);
      return UV_EOF;
    }
    return failed(t);
  }
  /* Reading may have produced records to send (a KeyUpdate answer, RFC 8446 section 4.6.3). */
  return flush(t);
}

int ps_tls_write(struct ps_tls *t, const uint8_t *data, size_t len) {
  if (t->failed || t->shut) return UV_EPROTO;
  if (t->done) return send_plain(t, data, len);
  if (t->early.len + len > PS_TLS_MAX_EARLY_PLAIN) return UV_ENOBUFS;
  return ps_buf_append(&t->early, data, len);
}

bool ps_tls_handshake_done(const struct ps_tls *t) { return t->done; }

const char *ps_tls_alpn(const struct ps_tls *t) { return t->alpn; }

const char *ps_tls_error(const struct ps_tls *t) { return t->err; }

int ps_tls_shutdown(struct ps_tls *t) {
  if (!t->done || t->failed || t->shut) return 0;
  t->shut = true;
  ERR_clear_error();
  /* One call sends our close_notify; we do not wait for the peer's (RFC 8446 section 6.1 allows it). */
  (void)SSL_shutdown(t->ssl);
  ERR_clear_error();
  return flush(t);
}

void ps_tls_free(struct ps_tls *t) {
  if (!t) return;
  SSL_free(t->ssl); /* frees both BIOs */
  ps_buf_wipe(&t->early);
  ps_buf_free(&t->early);
  free(t->name);
  free(t);
}
