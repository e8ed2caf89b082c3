/* KEDA's externalscaler.ExternalScaler service: decodes requests with protobuf-c, reads targets, encodes
 * answers. The only module that sees protobuf-c types. */
#ifndef PS_SERVICE_H
#define PS_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "h2_conn.h"
#include "targets.h"

#define PS_SERVICE_PREFIX       "/externalscaler.ExternalScaler/"
#define PS_SERVICE_MAX_METADATA 64 /* scalerMetadata entries; more -> INVALID_ARGUMENT */

struct ps_service;

/* Borrows loop, targets and cfg; they must outlive it. */
int ps_service_new(uv_loop_t *loop, struct ps_targets *targets, const struct ps_server_config *cfg,
                   struct ps_service **out);
/* The ps_call_dispatch_fn for struct ps_h2_server (arg = the service). */
void ps_service_dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len, void *arg);
/* The start of a graceful shutdown: ends every open stream (StreamIsActive, StreamMetricSpec, which
 * never end by themselves) with UNAVAILABLE "prescale is shutting down" and answers new streams so,
 * while unary calls, those waiting for a first load included, go on and new ones are served (the
 * h2 layer's GOAWAY decides which calls still arrive). Returns how many streams it ended. */
size_t ps_service_drain(struct ps_service *s);
/* Ends every open call (streams and waiting first loads) with UNAVAILABLE "shutting down" and answers
 * new calls so; per-call memory is freed in close callbacks, so run the loop afterwards. Returns how
 * many calls it ended. */
size_t ps_service_close(struct ps_service *s);
/* Answers packed for requests found in the request cache, since the service started: a request seen
 * before is answered with the bytes kept for it while its target's generation (ps_target_generation) is
 * the one they were built at, so this grows by one per request and change of the target's reading, not
 * per call. For tests. */
size_t ps_service_answers_packed(const struct ps_service *s);
/* The integer field of an answer: the ceiling of v, INT64_MAX from 2^63 up (+Inf included), 0 for NaN and
 * v <= 0. */
int64_t ps_service_ceil_i64(double v);
/* Protobuf strings may hold NUL bytes, which protobuf-c's C strings would cut silently. 0 when no string
 * of the request message msg[0..len) (a GetMetricsRequest when get_metrics, else a ScaledObjectRef) holds
 * one; else UV_EINVAL with text naming the field or metadata key (INVALID_ARGUMENT). */
int ps_service_nul_check(bool get_metrics, const uint8_t *msg, size_t len, char *text, size_t tlen);
/* Frees the service once no connection can dispatch to it any more (after the listener closed). */
void ps_service_free(struct ps_service *s);

#endif
