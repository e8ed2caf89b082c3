/* TLS on memory BIOs: OpenSSL never touches a socket. The user (net.c on the server side, http_client.c on
 * the client side) feeds the bytes it read with ps_tls_feed and gets plaintext back through io->on_plain;
 * plaintext it wants to send goes in through ps_tls_write and comes out as records through io->on_cipher.
 * So the record layer runs on the loop, adds no thread and no blocking call (as Knot Resolver's and h2o's
 * TLS layers do), and the protocol above it (nghttp2, llhttp) never knows. */
#ifndef PS_TLS_H
#define PS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A handshake must complete within this long: enforced by the user of a ps_tls (net.c, http_client.c), so
 * that a slow or garbage handshake costs one connection slot for a bounded time. */
#define PS_TLS_HANDSHAKE_TIMEOUT_MS 10000
/* Plaintext written before the handshake completes (the server's HTTP/2 SETTINGS) waits in a buffer of at
 * most this many bytes; past it ps_tls_write returns UV_ENOBUFS. */
#define PS_TLS_MAX_EARLY_PLAIN      (64u << 10)
/* Room for the words of a failure (ps_tls_error, err arguments). */
#define PS_TLS_ERR_MAX              256

/* PEM bytes in memory; any may be NULL (then its length is ignored). cert may hold a chain (the leaf first),
 * ca several certificates. The key must not be encrypted (there is nobody to ask for a passphrase). */
struct ps_tls_pem {
  const char *cert;
  size_t cert_len;
  const char *key;
  size_t key_len;
  const char *ca;
  size_t ca_len;
};

struct ps_tls_ctx; /* wraps an SSL_CTX; reloadable; open connections keep the SSL_CTX they started with */
struct ps_tls;     /* one connection */

/* Server: cert+key required; ca set -> a client certificate is required and verified against it (mTLS).
 * TLS >= 1.2; ALPN: selects "h2" (a client that offers ALPN without "h2" fails the handshake with
 * no_application_protocol, RFC 7301 section 3.2; one that offers no ALPN is let through). 0 or UV_EINVAL /
 * UV_ENOMEM; err names what failed, e.g. "key does not match certificate", never a secret. */
int ps_tls_ctx_server(const struct ps_tls_pem *pem, struct ps_tls_ctx **out, char *err, size_t errlen);
/* Client: pem may be NULL; ca NULL -> the system CAs; cert+key optional (a client certificate, both or
 * neither); insecure_skip_verify skips the verification of the server's certificate and name. */
int ps_tls_ctx_client(const struct ps_tls_pem *pem, bool insecure_skip_verify, struct ps_tls_ctx **out,
                      char *err, size_t errlen);
/* Client: the ALPN protocol to offer (e.g. "h2"; NULL or "": none, the default). Kept across reloads.
 * 0 or UV_EINVAL (longer than 15 bytes). */
int ps_tls_ctx_set_alpn(struct ps_tls_ctx *ctx, const char *proto);
/* Builds a new SSL_CTX from pem with the same role and options and swaps it in: connections made from here
 * on use it, open ones keep theirs (each SSL holds a reference on its SSL_CTX). On failure the old one
 * stays and err says why. */
int ps_tls_ctx_reload(struct ps_tls_ctx *ctx, const struct ps_tls_pem *pem, char *err, size_t errlen);
/* The notAfter of the certificate the context serves (server) or presents (client), in seconds since the
 * epoch: 0, or UV_ENOENT when it has none. */
int ps_tls_ctx_not_after(const struct ps_tls_ctx *ctx, int64_t *unix_seconds);
/* Connections made earlier keep working after this. NULL is fine. */
void ps_tls_ctx_free(struct ps_tls_ctx *ctx);

struct ps_tls_io {
  /* Decrypted application bytes (valid during the call). A negative return stops ps_tls_feed, which
   * returns it. */
  int (*on_plain)(void *arg, const uint8_t *data, size_t len);
  /* Bytes to write to the socket (valid during the call; copy them). A negative return is passed up. */
  int (*on_cipher)(void *arg, const uint8_t *data, size_t len);
};

/* server_name: client side, the SNI (DNS names only, RFC 6066 section 3) and the name verified, a DNS name
 * or an IP address; required unless the context skips verification. NULL on the server side. io and arg
 * must outlive the ps_tls. 0, UV_EINVAL or UV_ENOMEM. */
int ps_tls_new(struct ps_tls_ctx *ctx, const char *server_name, const struct ps_tls_io *io, void *arg,
               struct ps_tls **out);
/* Client: emits the ClientHello. (A server waits for one in ps_tls_feed.) */
int ps_tls_start(struct ps_tls *t);
/* Bytes read from the socket. Drives the handshake, then hands plaintext to on_plain. 0; UV_EOF after the
 * peer's close_notify; UV_EPROTO when the handshake or a record failed (ps_tls_error says why; the alert
 * for the peer was already given to on_cipher); or what a callback returned. */
int ps_tls_feed(struct ps_tls *t, const uint8_t *data, size_t len);
/* Plaintext to send; before the handshake completes it waits (at most PS_TLS_MAX_EARLY_PLAIN bytes) and
 * goes out once it does. 0, UV_ENOBUFS, UV_EPROTO (failed or shut down), or what on_cipher returned. */
int ps_tls_write(struct ps_tls *t, const uint8_t *data, size_t len);
bool ps_tls_handshake_done(const struct ps_tls *t);
/* The ALPN protocol agreed: "h2" or "" (none). */
const char *ps_tls_alpn(const struct ps_tls *t);
/* The last failure in words, e.g. "x509: unknown authority", "tls: client certificate required"; "" when
 * none. Never a secret (certificate names, not keys). */
const char *ps_tls_error(const struct ps_tls *t);
/* Sends close_notify (RFC 8446 section 6.1) if the handshake completed; later writes fail. 0 or what
 * on_cipher returned. */
int ps_tls_shutdown(struct ps_tls *t);
/* Not from inside one of its own io callbacks. NULL is fine. */
void ps_tls_free(struct ps_tls *t);

#endif
