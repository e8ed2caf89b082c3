/* Fuzzes the NUL check of request strings (ps_service_nul_check, src/service.c), a walk over the protobuf
 * wire bytes of a ScaledObjectRef or a GetMetricsRequest. Input: byte 0 picks the message type, the rest
 * is the message, copied to a buffer of exactly its length so that ASan catches a read past it. Checked:
 * the answer is 0 or UV_EINVAL with a one-line text; a NUL is reported only when the bytes hold one; and a
 * message protobuf-c accepts is never called undecodable by the walk. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "externalscaler.pb-c.h"
#include "service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  bool gm = data[0] & 1;
  data++, size--;
  uint8_t *m = malloc(size ? size : 1);
  if (m == NULL) return 0;
  memcpy(m, data, size);
  char text[512];
  text[0] = '\0';
  int r = ps_service_nul_check(gm, m, size, text, sizeof text);
  if (r != 0 && (r != UV_EINVAL || text[0] == '\0' || strchr(text, '\n') != NULL)) abort();
  if (r != 0 && strstr(text, "NUL") != NULL && memchr(m, 0, size) == NULL) abort();
  ProtobufCMessage *msg = gm ? (ProtobufCMessage *)externalscaler__get_metrics_request__unpack(NULL, size, m)
                             : (ProtobufCMessage *)externalscaler__scaled_object_ref__unpack(NULL, size, m);
  if (msg != NULL) {
    if (r != 0 && strcmp(text, "cannot decode the request message") == 0) abort();
    protobuf_c_message_free_unpacked(msg, NULL);
  }
  free(m);
  return 0;
}
