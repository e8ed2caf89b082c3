/* grpc.health.v1.Health (health-checking.md, grpc/grpc doc) on top of the call API (h2_conn.h).
 *
 * What the status means: SERVING while prescale is ready, in the sense of /readyz (main.c's is_ready: the
 * gRPC listener is bound and no shutdown has begun), and NOT_SERVING from the first SIGTERM on. Readiness is
 * not computed by a timer anywhere: it changes at two places in main.c (the listener bound, the shutdown
 * begun), which call ps_health_grpc_notify and ps_health_grpc_drain. So Watch is pushed from those events
 * and no timer runs for it. */
#include "health_grpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "grpc.h"
#include "health.pb-c.h"
#include "list.h"
#include "log.h"
#include "service.h"

#define STATUS(s) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##s

_Static_assert((int)PS_HEALTH_SERVING == (int)STATUS(SERVING) &&
                   (int)PS_HEALTH_NOT_SERVING == (int)STATUS(NOT_SERVING) &&
                   (int)PS_HEALTH_SERVICE_UNKNOWN == (int)STATUS(SERVICE_UNKNOWN) &&
                   (int)PS_HEALTH_UNKNOWN == (int)STATUS(UNKNOWN),
               "enum ps_health_status follows proto/health.proto");

/* One open Watch. Freed when its call ends: by us (ps_call_finish), or by the h2 layer (the cancel
 * callback: the client cancelled, reset the stream or went away). */
struct watch {
  struct ps_health_grpc *h;
  struct ps_list node; /* in h->watches */
  struct ps_call *call;
  bool known;                 /* the name is one we serve; else it stays SERVICE_UNKNOWN */
  enum ps_health_status last; /* the last status sent */
};

struct ps_health_grpc {
  struct ps_health_grpc_config cfg;
  struct ps_list watches;
  size_t nwatches;
  bool draining; /* ps_health_grpc_drain ran: NOT_SERVING, and a Watch ends after its first answer */
};

int ps_health_grpc_new(const struct ps_health_grpc_config *cfg, struct ps_health_grpc **out) {
  struct ps_health_grpc *h = calloc(1, sizeof *h);
  if (h == NULL) return UV_ENOMEM;
  h->cfg = *cfg;
  if (h->cfg.max_watches == 0) h->cfg.max_watches = PS_HEALTH_GRPC_MAX_WATCHES;
  ps_list_init(&h->watches);
  *out = h;
  return 0;
}

static enum ps_health_status server_status(const struct ps_health_grpc *h) {
  bool ready = h->cfg.ready == NULL || h->cfg.ready(h->cfg.ready_arg);
  return ready && !h->draining ? PS_HEALTH_SERVING : PS_HEALTH_NOT_SERVING;
}

static int send_status(struct ps_call *call, enum ps_health_status st) {
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
  uint8_t buf[16]; /* a tag and a one-byte varint */
  size_t n = grpc__health__v1__health_check_response__get_packed_size(&resp);
  if (n > sizeof buf) return UV_E2BIG;
  grpc__health__v1__health_check_response__pack(&resp, buf);
  return ps_call_send(call, buf, n);
}

/* ---- Watch streams ------------------------------------------------------------------------------- */

static void watch_free(struct watch *w) {
  ps_list_remove(&w->node);
  w->h->nwatches--;
  free(w);
}

/* Ends the Watch's call (its cancel callback will not run) and frees it. */
static void watch_end(struct watch *w, int status, const char *text) {
  ps_log(status == PS_GRPC_UNAVAILABLE ? PS_LOG_DEBUG : PS_LOG_WARN, "health watch ended", "status",
         ps_grpc_status_name(status), "error", text, NULL);
  ps_call_finish(w->call, status, text);
  watch_free(w);
}

static void watch_cancel_cb(struct ps_call *call, void *arg) {
  (void)call;
  watch_free(arg);
}

/* Sends the watch its status when it changed. false when that failed and the watch was ended. */
static bool watch_push(struct watch *w, enum ps_health_status st) {
  if (!w->known || st == w->last) return true;
  int r = send_status(w->call, st);
  if (r != 0) {
    /* UV_ENOBUFS: the client stopped reading its stream; end it rather than buffer without bound. */
    watch_end(w, ps_grpc_status_from_error(r), "the stream's client is not reading its updates");
    return false;
  }
  w->last = st;
  return true;
}

void ps_health_grpc_notify(struct ps_health_grpc *h) {
  if (ps_list_empty(&h->watches)) return;
  enum ps_health_status st = server_status(h);
  /* Ending a call closes that stream only (h2_conn), so the saved next node stays linked. */
  ps_list_foreach_safe(n, next, &h->watches) watch_push(ps_list_entry(n, struct watch, node), st);
}

/* The spec leaves open what a Watch does when the server goes away. Its last message says NOT_SERVING,
 * then UNAVAILABLE tells the client (grpc-go's client-side health check, for one) to watch again,
 * which it does on another replica since this connection got GOAWAY. */
static size_t end_all(struct ps_health_grpc *h) {
  size_t ended = 0;
  ps_list_foreach_safe(n, next, &h->watches) {
    struct watch *w = ps_list_entry(n, struct watch, node);
    if (watch_push(w, PS_HEALTH_NOT_SERVING)) watch_end(w, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
    ended++;
  }
  return ended;
}

size_t ps_health_grpc_drain(struct ps_health_grpc *h) {
  h->draining = true;
  return end_all(h);
}

size_t ps_health_grpc_close(struct ps_health_grpc *h) { return ps_health_grpc_drain(h); }

size_t ps_health_grpc_watches(const struct ps_health_grpc *h) { return h->nwatches; }

/* Watch: the current status at once, then each change. For a name it does not know, the spec says: "the
 * server will send a single response message with status SERVICE_UNKNOWN but will not terminate the
 * call", since the service may be registered later; prescale's services never change, but the stream
 * stays open as specified (and counts against the limit). */
static void watch_start(struct ps_health_grpc *h, struct ps_call *call, bool known) {
  if (h->nwatches >= h->cfg.max_watches) {
    char text[128];
    snprintf(text, sizeof text, "too many health watches open (%zu, PS_HEALTH_GRPC_MAX_WATCHES)",
             h->cfg.max_watches);
    ps_log(PS_LOG_WARN, "rpc failed", "method", "Watch", "status", "RESOURCE_EXHAUSTED", "error", text, NULL);
    ps_call_finish(call, PS_GRPC_RESOURCE_EXHAUSTED, text);
    return;
  }
  struct watch *w = calloc(1, sizeof *w);
  if (w == NULL) {
    ps_call_finish(call, PS_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  w->h = h;
  w->call = call;
  w->known = known;
  w->last = PS_HEALTH_UNKNOWN; /* nothing sent yet */
  ps_list_insert_tail(&h->watches, &w->node);
  h->nwatches++;
  ps_call_on_cancel(call, watch_cancel_cb, w);
  enum ps_health_status first = known ? server_status(h) : PS_HEALTH_SERVICE_UNKNOWN;
  int r = send_status(call, first);
  if (r != 0) {
    watch_end(w, ps_grpc_status_from_error(r), "cannot send the response");
    return;
  }
  w->last = first;
  if (h->draining) watch_end(w, PS_GRPC_UNAVAILABLE, "prescale is shutting down");
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

/* True when the request names a service we serve. protobuf-c hands strings over NUL-terminated, so a
 * name holding a NUL ("externalscaler.ExternalScaler\0x") would read as a known one: the wire bytes are
 * checked with the service's walk, which applies as it is since HealthCheckRequest.service has the
 * number and wire type of ScaledObjectRef.name (1, length-delimited), and HealthCheckRequest has no
 * other field. */
static bool known_service(const Grpc__Health__V1__HealthCheckRequest *req, const uint8_t *msg, size_t len) {
  const char *name = req->service != NULL ? req->service : "";
  if (strcmp(name, "") != 0 && strcmp(name, PS_HEALTH_GRPC_SCALER) != 0) return false;
  char text[64];
  return ps_service_nul_check(false, msg, len, text, sizeof text) == 0;
}

void ps_health_grpc_dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len,
                             void *arg) {
  struct ps_health_grpc *h = arg;
  size_t plen = strlen(PS_HEALTH_GRPC_PREFIX);
  if (strncmp(path, PS_HEALTH_GRPC_PREFIX, plen) != 0) {
    if (h->cfg.next != NULL)
      h->cfg.next(call, path, msg, len, h->cfg.next_arg);
    else
      ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, "unknown service");
    return;
  }
  const char *method = path + plen;
  bool watch = strcmp(method, "Watch") == 0;
  if (!watch && strcmp(method, "Check") != 0) {
    char text[320];
    snprintf(text, sizeof text,
             "unknown method %.200s of grpc.health.v1.Health (prescale serves Check and Watch)", method);
    ps_call_finish(call, PS_GRPC_UNIMPLEMENTED, text);
    return;
  }
  Grpc__Health__V1__HealthCheckRequest *req = grpc__health__v1__health_check_request__unpack(NULL, len, msg);
  if (req == NULL) {
    ps_call_finish(call, PS_GRPC_INVALID_ARGUMENT, "cannot decode the HealthCheckRequest");
    return;
  }
  bool known = known_service(req, msg, len);
  if (watch) {
    watch_start(h, call, known);
  } else if (!known) {
    /* The spec: "If the service name is not registered, the server returns a NOT_FOUND GRPC status." */
    char q[PS_FLAGS_QUOTED_MAX], text[PS_FLAGS_QUOTED_MAX + 96];
    ps_flags_quote(q, sizeof q, req->service != NULL ? req->service : "");
    snprintf(text, sizeof text, "unknown service %s: prescale knows \"\" and \"%s\"", q,
             PS_HEALTH_GRPC_SCALER);
    ps_call_finish(call, PS_GRPC_NOT_FOUND, text);
  } else {
    int r = send_status(call, server_status(h));
    if (r != 0)
      ps_call_finish(call, ps_grpc_status_from_error(r), "cannot send the response");
    else
      ps_call_finish(call, PS_GRPC_OK, NULL);
  }
  grpc__health__v1__health_check_request__free_unpacked(req, NULL);
}

void ps_health_grpc_free(struct ps_health_grpc *h) { free(h); }
