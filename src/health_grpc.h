/* grpc.health.v1.Health on the gRPC port: Check and Watch, as the gRPC Health Checking Protocol specifies
 * (https://github.com/grpc/grpc/blob/master/doc/health-checking.md), for Kubernetes' native gRPC probes,
 * grpc_health_probe, grpcurl and gRPC's client-side health checking (gRFC A17). It sits in front of the
 * ExternalScaler dispatch on the same h2 server: calls under PS_HEALTH_GRPC_PREFIX are served here, every
 * other call goes on to the next dispatcher. The only module that sees the health protobuf-c types. */
#ifndef PS_HEALTH_GRPC_H
#define PS_HEALTH_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2_conn.h"

#define PS_HEALTH_GRPC_PREFIX      "/grpc.health.v1.Health/"
/* The service names Check and Watch know: "" (the whole server, as the spec suggests) and the
 * ExternalScaler (service.h's PS_SERVICE_PREFIX without its slashes). Any other name: Check answers
 * NOT_FOUND, Watch SERVICE_UNKNOWN. */
#define PS_HEALTH_GRPC_SCALER      "externalscaler.ExternalScaler"
/* Watch streams open at once, on every connection together. A Watch beyond it is answered
 * RESOURCE_EXHAUSTED at once. A Watch costs a stream of its connection and a few dozen bytes here, but it
 * also keeps its connection busy, and a busy connection is never closed idle nor evicted at --max-conns
 * (h2_conn.h): without a bound well below --max-conns' default (1024), Watches of any name, which need
 * no valid trigger, could hold every slot and lock KEDA out. A client health-checks with one Watch per
 * connection and service name (gRFC A17); KEDA uses none and probes use Check, so 128 is plenty. */
#define PS_HEALTH_GRPC_MAX_WATCHES 128

/* HealthCheckResponse.ServingStatus (proto/health.proto), for callers that do not include the protobuf-c
 * header. */
enum ps_health_status {
  PS_HEALTH_UNKNOWN = 0,
  PS_HEALTH_SERVING = 1,
  PS_HEALTH_NOT_SERVING = 2,
  PS_HEALTH_SERVICE_UNKNOWN = 3,
};

struct ps_health_grpc_config {
  /* SERVING while this returns true (the same answer as /readyz) and the server is not draining;
   * NOT_SERVING otherwise. NULL: always ready. */
  bool (*ready)(void *arg);
  void *ready_arg;
  /* Every call outside PS_HEALTH_GRPC_PREFIX (ps_service_dispatch in prescale); NULL: UNIMPLEMENTED. */
  ps_call_dispatch_fn next;
  void *next_arg;
  size_t max_watches; /* 0 means PS_HEALTH_GRPC_MAX_WATCHES */
};

struct ps_health_grpc;

/* Copies cfg; its args must outlive the health service. 0 or UV_ENOMEM. */
int ps_health_grpc_new(const struct ps_health_grpc_config *cfg, struct ps_health_grpc **out);
/* The ps_call_dispatch_fn for struct ps_h2_server (arg = the health service). */
void ps_health_grpc_dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len,
                             void *arg);
/* The readiness may have changed (call it where it changes): every Watch whose status differs from the
 * last one it was sent gets the new one now. Cheap when nothing changed or no Watch is open. */
void ps_health_grpc_notify(struct ps_health_grpc *h);
/* The start of a graceful shutdown: NOT_SERVING from now on. Every open Watch is sent NOT_SERVING (unless
 * that was its last status, or its name is unknown) and then ends with UNAVAILABLE "prescale is shutting
 * down", as ps_service_drain ends the ExternalScaler's streams, so that its connection can close and its
 * client watches another replica. A Watch opened later gets the same two answers at once; Check answers
 * NOT_SERVING. Returns how many Watches it ended. */
size_t ps_health_grpc_drain(struct ps_health_grpc *h);
/* The end of a shutdown: as ps_health_grpc_drain, and the same for any Watch opened since. */
size_t ps_health_grpc_close(struct ps_health_grpc *h);
/* Watch streams open now. */
size_t ps_health_grpc_watches(const struct ps_health_grpc *h);
/* Frees the service once no connection can dispatch to it any more (after the listener closed). */
void ps_health_grpc_free(struct ps_health_grpc *h);

#endif
