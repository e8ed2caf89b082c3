/* What net.c and its TLS glue (net_tls.c) share; not for other modules. */
#ifndef PS_NET_INT_H
#define PS_NET_INT_H

#include "net.h"

struct ps_tls;
struct ps_tls_ctx;

/* net.c: queues bytes as they go on the wire (ciphertext on a TLS connection); 0, UV_ENOMEM or UV_EPIPE. */
int ps_net_write_cipher(struct ps_net_conn *c, const uint8_t *data, size_t len);
/* net.c: hands decrypted bytes to the protocol's on_read (UV_ECANCELED once the connection is closing). */
int ps_net_deliver(struct ps_net_conn *c, const uint8_t *data, size_t len);

/* net_tls.c: the server side ps_tls of a connection, wired to the two functions above. */
int ps_net_tls_new(struct ps_tls_ctx *ctx, struct ps_net_conn *c, struct ps_tls **out);
/* net_tls.c: counts a handshake's result (ok, failed, timeout, closed) for the listener `name` (NULL: not
 * counted). */
void ps_net_tls_count(const char *name, const char *result);
/* net_tls.c: a handshake ended, well (error NULL) or not (error in words): counted and, when it failed,
 * logged. */
void ps_net_tls_handshake_done(const char *name, const char *peer, const char *error);

#endif
