/* grpc.health.v1.Health (src/health_grpc.c) in front of a test dispatcher, on prescale's own server stack
 * (net.c + h2_conn.c) over loopback, called by prescale's own gRPC client: every answer is read off the
 * wire and decoded with the protobuf-c code of proto/health.proto. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <uv.h>

#include "grpc.h"
#include "grpc_client.h"
#include "h2_conn.h"
#include "health.pb-c.h"
#include "health_grpc.h"
#include "log.h"
#include "loop_fixture.h"
#include "metrics.h"
#include "net.h"
#include "service.h"

static uv_loop_t loop;

/* ---- the server: the h2 stack, the health service, and a next dispatcher ------------------------- */

static struct {
  bool ready;
  int next_calls;
} d;

static bool test_ready(void *arg) {
  cr_assert_eq(arg, &d);
  return d.ready;
}

/* What prescale's ExternalScaler is to the health service: the dispatcher of every other path. */
static void next_dispatch(struct ps_call *call, const char *path, const uint8_t *msg, size_t len, void *arg) {
  cr_assert_eq(arg, &d);
  d.next_calls++;
  cr_assert_eq(ps_call_send(call, msg, len), 0);
  ps_call_finish(call, PS_GRPC_OK, NULL);
}

static struct ps_h2_server server;
static struct ps_health_grpc *health;
static struct ps_net_listener *listener;
static char target[64];
static bool listener_done;
static void done_cb(void *arg) { listener_done = true; }
static bool is_true(void *arg) { return *(bool *)arg; }

static void start(size_t max_watches, bool with_next) {
  struct ps_health_grpc_config cfg = {.ready = test_ready,
                                      .ready_arg = &d,
                                      .next = with_next ? next_dispatch : NULL,
                                      .next_arg = &d,
                                      .max_watches = max_watches};
  cr_assert_eq(ps_health_grpc_new(&cfg, &health), 0);
  server.dispatch_arg = health;
  cr_assert_eq(ps_net_listen(&loop, "127.0.0.1:0", &ps_h2_net_proto, &server, &listener), 0);
  snprintf(target, sizeof target, "127.0.0.1:%d", ps_net_listener_port(listener));
}

static void setup(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  ps_metrics_reset();
  ps_log_setup(PS_LOG_ERROR, PS_LOG_TEXT, NULL);
  memset(&d, 0, sizeof d);
  d.ready = true;
  memset(&server, 0, sizeof server);
  server.loop = &loop;
  server.dispatch = ps_health_grpc_dispatch;
  listener_done = false;
  health = NULL;
  listener = NULL;
}

/* Every test ends with stop_server() then PS_LOOP_END. Closing the listener closes its connections,
 * which cancels the Watches still open: none may be left. */
static void stop_server(void) {
  ps_net_listener_close(listener, done_cb, NULL);
  cr_assert(ps_test_run_until(&loop, is_true, &listener_done, 5000));
  cr_assert_eq(ps_health_grpc_watches(health), 0, "every Watch is freed with its connection");
}

static void teardown(void) {
  if (health != NULL) ps_health_grpc_free(health);
  health = NULL;
  ps_metrics_reset();
}

TestSuite(health_grpc, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the client side ------------------------------------------------------------------------------ */

#define MAX_MSGS 8
struct result {
  bool done, raw; /* raw: not a health call, its answer is not decoded */
  int status;
  char message[512];
  int nmsgs;
  int st[MAX_MSGS]; /* the ServingStatus of each message (unary: st[0]) */
};

static int decode_status(const uint8_t *msg, size_t len) {
  Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, len, msg);
  cr_assert_not_null(r, "a HealthCheckResponse");
  int st = r->status;
  grpc__health__v1__health_check_response__free_unpacked(r, NULL);
  return st;
}

static void on_msg(void *arg, const uint8_t *msg, size_t len) {
  struct result *r = arg;
  cr_assert_lt(r->nmsgs, MAX_MSGS);
  r->st[r->nmsgs++] = decode_status(msg, len);
}

static void on_done(void *arg, int status, const char *message, const uint8_t *msg, size_t len) {
  struct result *r = arg;
  cr_assert_not(r->done, "done ran twice");
  r->done = true;
  r->status = status;
  snprintf(r->message, sizeof r->message, "%s", message);
  if (msg != NULL && !r->raw) on_msg(r, msg, len);
}

static bool is_done(void *arg) { return ((struct result *)arg)->done; }

static struct ps_grpc_client *client_new(void) {
  struct ps_grpc_client *c = NULL;
  struct ps_grpc_client_opts o = {.target = target, .connect_timeout_ms = 5000};
  cr_assert_eq(ps_grpc_client_new(&loop, &o, NULL, NULL, &c), 0);
  return c;
}

static void client_close(struct ps_grpc_client *c) {
  ps_grpc_client_close(c);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* A HealthCheckRequest naming `service` (len bytes, so that it may hold a NUL). */
static size_t pack_req(uint8_t *buf, size_t cap, const char *service, size_t len) {
  cr_assert_lt(len, 128);
  cr_assert_leq(len + 2, cap);
  if (len == 0) return 0; /* proto3: the default value is not sent */
  buf[0] = 0x0a;          /* field 1, length-delimited */
  buf[1] = (uint8_t)len;
  memcpy(buf + 2, service, len);
  return len + 2;
}

static struct ps_grpc_call *start_call(struct ps_grpc_client *c, const char *method, const char *service,
                                       size_t slen, struct result *r) {
  char path[128];
  snprintf(path, sizeof path, PS_HEALTH_GRPC_PREFIX "%s", method);
  uint8_t req[160];
  size_t n = pack_req(req, sizeof req, service, slen);
  struct ps_grpc_call *call = NULL;
  memset(r, 0, sizeof *r);
  bool stream = strcmp(method, "Watch") == 0;
  cr_assert_eq(ps_grpc_client_call(c, path, req, n, 0, stream ? on_msg : NULL, on_done, r, &call), 0);
  return call;
}

/* A unary call to its end. */
static void call_sync(struct ps_grpc_client *c, const char *method, const char *service, size_t slen,
                      struct result *r) {
  start_call(c, method, service, slen, r);
  cr_assert(ps_test_run_until(&loop, is_done, r, 5000), "the call did not end");
}

/* A Check of "" to its end on the same connection. The server writes a stream's messages in the order it
 * makes them, so once this answer is in, every Watch message sent before it is in too. */
static int check(struct ps_grpc_client *c) {
  struct result r;
  call_sync(c, "Check", "", 0, &r);
  cr_assert_eq(r.status, PS_GRPC_OK, "%s", r.message);
  return r.st[0];
}

static double metric(const char *labels) { return ps_metrics_get("prescale_grpc_requests_total", labels); }

#define S(x) x, strlen(x)

/* ---- Check ---------------------------------------------------------------------------------------- */

Test(health_grpc, the_known_names_are_serving_while_ready_and_not_serving_when_not) {
  start(0, true);
  cr_assert_str_eq(PS_SERVICE_PREFIX, "/" PS_HEALTH_GRPC_SCALER "/", "the known name is the service's");
  struct ps_grpc_client *c = client_new();
  struct result r;
  call_sync(c, "Check", S(""), &r);
  cr_assert_eq(r.status, PS_GRPC_OK, "%s", r.message);
  cr_assert_eq(r.nmsgs, 1);
  cr_assert_eq(r.st[0], PS_HEALTH_SERVING);
  call_sync(c, "Check", S("externalscaler.ExternalScaler"), &r);
  cr_assert_eq(r.status, PS_GRPC_OK, "%s", r.message);
  cr_assert_eq(r.st[0], PS_HEALTH_SERVING);
  d.ready = false; /* read at each Check: no notify needed */
  call_sync(c, "Check", S(""), &r);
  cr_assert_eq(r.st[0], PS_HEALTH_NOT_SERVING);
  call_sync(c, "Check", S("externalscaler.ExternalScaler"), &r);
  cr_assert_eq(r.st[0], PS_HEALTH_NOT_SERVING);
  d.ready = true;
  cr_assert_eq(check(c), PS_HEALTH_SERVING);
  cr_assert_eq(metric("method=\"Check\",code=\"OK\""), 5);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, an_unknown_name_is_not_found_a_nul_included) {
  start(0, true);
  struct ps_grpc_client *c = client_new();
  struct result r;
  call_sync(c, "Check", S("foo"), &r);
  cr_assert_eq(r.status, PS_GRPC_NOT_FOUND, "%d %s", r.status, r.message);
  cr_assert_eq(r.nmsgs, 0);
  cr_assert_str_eq(r.message,
                   "unknown service \"foo\": prescale knows \"\" and \"externalscaler.ExternalScaler\"");
  /* protobuf-c would cut these at the NUL into known names. */
  call_sync(c, "Check", "externalscaler.ExternalScaler\0x", 31, &r);
  cr_assert_eq(r.status, PS_GRPC_NOT_FOUND, "%d %s", r.status, r.message);
  call_sync(c, "Check", "\0", 1, &r);
  cr_assert_eq(r.status, PS_GRPC_NOT_FOUND, "%d %s", r.status, r.message);
  /* The names are exact: no prefix, no case folding. */
  call_sync(c, "Check", S("externalscaler.externalscaler"), &r);
  cr_assert_eq(r.status, PS_GRPC_NOT_FOUND);
  call_sync(c, "Check", S("externalscaler"), &r);
  cr_assert_eq(r.status, PS_GRPC_NOT_FOUND);
  /* A known method: NOT_FOUND is counted under its name. */
  cr_assert_eq(metric("method=\"Check\",code=\"NOT_FOUND\""), 5);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, a_request_that_does_not_decode_is_invalid_argument) {
  start(0, true);
  struct ps_grpc_client *c = client_new();
  struct result r = {0};
  const uint8_t bad[] = {0x0a, 0x05, 'a'}; /* a field announcing 5 bytes, with 1 */
  cr_assert_eq(
      ps_grpc_client_call(c, PS_HEALTH_GRPC_PREFIX "Check", bad, sizeof bad, 0, NULL, on_done, &r, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_done, &r, 5000));
  cr_assert_eq(r.status, PS_GRPC_INVALID_ARGUMENT, "%d %s", r.status, r.message);
  cr_assert_str_eq(r.message, "cannot decode the HealthCheckRequest");
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, other_methods_are_unimplemented_without_a_label_and_other_paths_go_on) {
  start(0, true);
  struct ps_grpc_client *c = client_new();
  struct result r;
  call_sync(c, "List", S(""), &r);
  cr_assert_eq(r.status, PS_GRPC_UNIMPLEMENTED, "%d %s", r.status, r.message);
  cr_assert_str_eq(r.message,
                   "unknown method List of grpc.health.v1.Health (prescale serves Check and Watch)");
  cr_assert_eq(metric("method=\"unknown\",code=\"UNIMPLEMENTED\""), 1);
  cr_assert(isnan(metric("method=\"List\",code=\"UNIMPLEMENTED\"")),
            "no series for a method we do not serve");
  /* Every other path is the next dispatcher's, untouched. */
  memset(&r, 0, sizeof r);
  struct result e = {.raw = true};
  cr_assert_eq(ps_grpc_client_call(c, "/externalscaler.ExternalScaler/IsActive", (const uint8_t *)"\x0a\x01x",
                                   3, 0, NULL, on_done, &e, NULL),
               0);
  cr_assert(ps_test_run_until(&loop, is_done, &e, 5000));
  cr_assert_eq(e.status, PS_GRPC_OK, "%s", e.message);
  cr_assert_eq(d.next_calls, 1);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, without_a_next_dispatcher_other_paths_are_unimplemented) {
  start(0, false);
  struct ps_grpc_client *c = client_new();
  struct result r = {0};
  cr_assert_eq(ps_grpc_client_call(c, "/test.Svc/Echo", NULL, 0, 0, NULL, on_done, &r, NULL), 0);
  cr_assert(ps_test_run_until(&loop, is_done, &r, 5000));
  cr_assert_eq(r.status, PS_GRPC_UNIMPLEMENTED);
  cr_assert_eq(check(c), PS_HEALTH_SERVING);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

/* ---- Watch ---------------------------------------------------------------------------------------- */

static bool nmsgs_at_least(void *arg) {
  struct result *r = arg;
  return r->nmsgs >= r->st[MAX_MSGS - 1];
}
/* Runs until the stream has n messages (st[MAX_MSGS - 1] is only used as the goal while waiting). */
static void wait_msgs(struct result *r, int n) {
  cr_assert_lt(n, MAX_MSGS - 1);
  r->st[MAX_MSGS - 1] = n;
  cr_assert(ps_test_run_until(&loop, nmsgs_at_least, r, 5000), "%d of %d messages", r->nmsgs, n);
  r->st[MAX_MSGS - 1] = 0;
}

static bool no_watch(void *arg) { return ps_health_grpc_watches(health) == 0; }
static bool one_watch(void *arg) { return ps_health_grpc_watches(health) == 1; }

Test(health_grpc, watch_sends_the_status_at_once_then_each_change_then_ends_at_the_drain) {
  start(0, true);
  struct ps_grpc_client *c = client_new();
  struct result w, s;
  start_call(c, "Watch", S(""), &w);
  start_call(c, "Watch", S("externalscaler.ExternalScaler"), &s);
  wait_msgs(&w, 1);
  wait_msgs(&s, 1);
  cr_assert_eq(w.st[0], PS_HEALTH_SERVING);
  cr_assert_eq(s.st[0], PS_HEALTH_SERVING);
  cr_assert_eq(ps_health_grpc_watches(health), 2);
  /* A notify without a change sends nothing. */
  ps_health_grpc_notify(health);
  cr_assert_eq(check(c), PS_HEALTH_SERVING);
  cr_assert_eq(w.nmsgs, 1);
  /* Not ready: pushed from the notify, no timer involved. */
  d.ready = false;
  ps_health_grpc_notify(health);
  wait_msgs(&w, 2);
  wait_msgs(&s, 2);
  cr_assert_eq(w.st[1], PS_HEALTH_NOT_SERVING);
  cr_assert_eq(s.st[1], PS_HEALTH_NOT_SERVING);
  d.ready = true;
  ps_health_grpc_notify(health);
  wait_msgs(&w, 3);
  cr_assert_eq(w.st[2], PS_HEALTH_SERVING);
  cr_assert_not(w.done);
  /* The drain: NOT_SERVING, then the stream ends with UNAVAILABLE, and the connection stays usable. */
  cr_assert_eq(ps_health_grpc_drain(health), 2);
  cr_assert(ps_test_run_until(&loop, is_done, &w, 5000));
  cr_assert(ps_test_run_until(&loop, is_done, &s, 5000));
  cr_assert_eq(w.nmsgs, 4);
  cr_assert_eq(w.st[3], PS_HEALTH_NOT_SERVING);
  cr_assert_eq(w.status, PS_GRPC_UNAVAILABLE, "%d %s", w.status, w.message);
  cr_assert_str_eq(w.message, "prescale is shutting down");
  cr_assert_eq(s.nmsgs, 4);
  cr_assert_eq(s.st[3], PS_HEALTH_NOT_SERVING);
  cr_assert_eq(s.status, PS_GRPC_UNAVAILABLE);
  cr_assert_eq(ps_health_grpc_watches(health), 0);
  cr_assert_eq(metric("method=\"Watch\",code=\"UNAVAILABLE\""), 2);
  /* While draining: Check says NOT_SERVING, and a new Watch gets it then ends at once. */
  cr_assert_eq(check(c), PS_HEALTH_NOT_SERVING);
  start_call(c, "Watch", S(""), &w);
  cr_assert(ps_test_run_until(&loop, is_done, &w, 5000));
  cr_assert_eq(w.nmsgs, 1);
  cr_assert_eq(w.st[0], PS_HEALTH_NOT_SERVING);
  cr_assert_eq(w.status, PS_GRPC_UNAVAILABLE);
  cr_assert_eq(ps_health_grpc_watches(health), 0);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, watch_of_an_unknown_name_says_service_unknown_and_stays_open_until_cancelled) {
  start(0, true);
  struct ps_grpc_client *c = client_new();
  struct result w;
  struct ps_grpc_call *call = start_call(c, "Watch", S("foo"), &w);
  wait_msgs(&w, 1);
  cr_assert_eq(w.st[0], PS_HEALTH_SERVICE_UNKNOWN);
  /* A change of readiness is not this name's: nothing more is sent, and the stream stays open. */
  d.ready = false;
  ps_health_grpc_notify(health);
  cr_assert_eq(check(c), PS_HEALTH_NOT_SERVING);
  cr_assert_eq(w.nmsgs, 1);
  cr_assert_not(w.done);
  cr_assert_eq(ps_health_grpc_watches(health), 1);
  /* The client cancels (RST_STREAM CANCEL): the Watch is freed, counted CANCELLED under its method. */
  ps_grpc_client_cancel(call);
  cr_assert(ps_test_run_until(&loop, no_watch, NULL, 5000));
  cr_assert_eq(metric("method=\"Watch\",code=\"CANCELLED\""), 1);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, watches_are_bounded_and_a_slot_frees_when_a_watch_ends) {
  start(2, true);
  struct ps_grpc_client *c = client_new();
  struct result w1, w2, w3;
  struct ps_grpc_call *first = start_call(c, "Watch", S(""), &w1);
  start_call(c, "Watch", S("foo"), &w2); /* an unknown name counts as well */
  wait_msgs(&w1, 1);
  wait_msgs(&w2, 1);
  call_sync(c, "Watch", S(""), &w3);
  cr_assert_eq(w3.status, PS_GRPC_RESOURCE_EXHAUSTED, "%d %s", w3.status, w3.message);
  cr_assert_str_eq(w3.message, "too many health watches open (2, PS_HEALTH_GRPC_MAX_WATCHES)");
  cr_assert_eq(w3.nmsgs, 0);
  cr_assert_eq(metric("method=\"Watch\",code=\"RESOURCE_EXHAUSTED\""), 1);
  cr_assert_eq(check(c), PS_HEALTH_SERVING, "Check is not bounded by the watches");
  ps_grpc_client_cancel(first);
  cr_assert(ps_test_run_until(&loop, one_watch, NULL, 5000));
  struct result w4;
  start_call(c, "Watch", S(""), &w4);
  wait_msgs(&w4, 1);
  cr_assert_eq(w4.st[0], PS_HEALTH_SERVING);
  cr_assert_eq(ps_health_grpc_watches(health), 2);
  client_close(c);
  stop_server();
  PS_LOOP_END(&loop);
}

Test(health_grpc, a_client_that_goes_away_frees_its_watches_and_close_ends_the_rest) {
  start(0, true);
  struct ps_grpc_client *gone = client_new(), *stays = client_new();
  struct result a, b, k;
  start_call(gone, "Watch", S(""), &a);
  start_call(gone, "Watch", S("foo"), &b);
  start_call(stays, "Watch", S("externalscaler.ExternalScaler"), &k);
  wait_msgs(&a, 1);
  wait_msgs(&b, 1);
  wait_msgs(&k, 1);
  cr_assert_eq(ps_health_grpc_watches(health), 3);
  client_close(gone);
  cr_assert(ps_test_run_until(&loop, one_watch, NULL, 5000), "%zu watches", ps_health_grpc_watches(health));
  /* The end of a shutdown without a drain first: NOT_SERVING, then UNAVAILABLE. */
  cr_assert_eq(ps_health_grpc_close(health), 1);
  cr_assert(ps_test_run_until(&loop, is_done, &k, 5000));
  cr_assert_eq(k.nmsgs, 2);
  cr_assert_eq(k.st[1], PS_HEALTH_NOT_SERVING);
  cr_assert_eq(k.status, PS_GRPC_UNAVAILABLE);
  client_close(stays);
  stop_server();
  PS_LOOP_END(&loop);
}
