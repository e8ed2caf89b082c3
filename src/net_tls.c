/* The TLS glue of net.c: each connection of a TLS listener owns a server ps_tls whose plaintext goes to the
 * protocol (ps_net_deliver) and whose records go to the socket (ps_net_write_cipher). */
#include <stdio.h>

#include "log.h"
#include "metrics.h"
#include "net_int.h"
#include "tls.h"

static int on_plain(void *arg, const uint8_t *data, size_t len) { return ps_net_deliver(arg, data, len); }
static int on_cipher(void *arg, const uint8_t *data, size_t len) {
  return ps_net_write_cipher(arg, data, len);
}

static const struct ps_tls_io net_tls_io = {on_plain, on_cipher};

int ps_net_tls_new(struct ps_tls_ctx *ctx, struct ps_net_conn *c, struct ps_tls **out) {
  return ps_tls_new(ctx, NULL, &net_tls_io, c, out);
}

void ps_net_tls_count(const char *name, const char *result) {
  if (name == NULL) return;
  /* Declared on use, as the slot counters are. The labels come from a fixed set (the listener's name and
   * one of four results), never from what a client sends. */
  ps_metrics_declare("prescale_tls_handshakes_total", PS_METRIC_COUNTER,
                     "TLS handshakes on a listener by result: ok, failed (refused or garbage), timeout "
                     "(not done within the handshake timeout), closed (the peer left first).");
  char labels[96];
  snprintf(labels, sizeof labels, "listener=\"%s\",result=\"%s\"", name, result);
  ps_metrics_add("prescale_tls_handshakes_total", labels, 1);
}

void ps_net_tls_handshake_done(const char *name, const char *peer, const char *error) {
  ps_net_tls_count(name, error == NULL ? "ok" : "failed");
  /* A client that KEDA configured with the wrong CA or certificate shows up here; the rate limit of the
   * log (log.h) keeps a scanner from filling it. The words name certificates, never keys. */
  if (error != NULL) ps_log(PS_LOG_WARN, "TLS handshake failed", "peer", peer, "error", error, NULL);
}
