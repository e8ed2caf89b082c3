/* Fuzzes the host:port parser (src/hostport.c). Input: byte 0 picks the flags, the rest is the text,
 * copied to a buffer of exactly its length so that ASan catches a read past len. What is accepted must
 * be a well-formed host and port, and must read back the same after ps_hostport_format. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hostport.h"

#define ALL_FLAGS (PS_HOSTPORT_PORT_OPTIONAL | PS_HOSTPORT_PORT_ZERO | PS_HOSTPORT_EMPTY_HOST)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned flags = data[0] & ALL_FLAGS;
  size_t cap = data[0] & 0x80 ? 8 : PS_HOSTPORT_HOST_MAX; /* also a host buffer too small for most */
  data++, size--;
  char *s = malloc(size ? size : 1);
  if (s == NULL) return 0;
  memcpy(s, data, size);
  char host[PS_HOSTPORT_HOST_MAX];
  int port;
  int r = ps_hostport_parse(s, size, flags, host, cap, &port);
  free(s);
  if (r != 0) return 0;
  size_t hlen = strlen(host);
  if (hlen >= cap) abort();
  if (port == PS_HOSTPORT_NO_PORT ? !(flags & PS_HOSTPORT_PORT_OPTIONAL) : port < 0 || port > 65535) abort();
  if (port == 0 && !(flags & PS_HOSTPORT_PORT_ZERO)) abort();
  if (hlen == 0 && !(flags & PS_HOSTPORT_EMPTY_HOST)) abort();
  if (port == PS_HOSTPORT_NO_PORT) return 0;
  char text[PS_HOSTPORT_HOST_MAX + 16], again[PS_HOSTPORT_HOST_MAX];
  int port2;
  ps_hostport_format(text, sizeof text, host, port);
  if (ps_hostport_parse(text, strlen(text), flags, again, sizeof again, &port2) != 0) abort();
  if (strcmp(again, host) != 0 || port2 != port) abort();
  return 0;
}
