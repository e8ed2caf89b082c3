/* "host:port" and "[v6]:port": the one parser and formatter of the authorities prescale listens on,
 * connects to (gRPC targets) and finds in URLs. Syntax only: nothing is resolved here. */
#ifndef PS_HOSTPORT_H
#define PS_HOSTPORT_H

#include <stddef.h>

/* A host is at most this long, NUL included: a DNS name has at most 253 characters (RFC 1035 2.3.4). */
#define PS_HOSTPORT_HOST_MAX 256
/* What ps_hostport_parse stores in *port when PS_HOSTPORT_PORT_OPTIONAL let the port be left out. */
#define PS_HOSTPORT_NO_PORT  (-1)

/* Relaxations of ps_hostport_parse; the default is the strictest form, "host:port" with a port in
 * 1..65535 and a non-empty host. */
enum {
  PS_HOSTPORT_PORT_OPTIONAL = 1 << 0, /* "host" alone is accepted (a URL's authority: the scheme's port) */
  PS_HOSTPORT_PORT_ZERO = 1 << 1,     /* port 0 is accepted (listening: the kernel picks a free port) */
  PS_HOSTPORT_EMPTY_HOST = 1 << 2,    /* ":port" is accepted with host "" (listening: every address) */
};

/* Parses the len bytes at s (no NUL needed) as host[:port]. The host is a name or IPv4 address (letters,
 * digits, '-', '.', '_'), or an IPv6 literal in brackets (hex digits, ':' and '.', at least one ':';
 * brackets are for IPv6 only, and an IPv6 literal needs them). The port is 1 to 5 decimal digits, at
 * most 65535. Writes the host, unbracketed and NUL-terminated, to host (host_cap bytes) and the port to
 * *port. 0, or UV_EINVAL when s is malformed, the port is missing or out of range, or the host does not
 * fit in host_cap or PS_HOSTPORT_HOST_MAX bytes; host and *port are then unspecified. */
int ps_hostport_parse(const char *s, size_t len, unsigned flags, char *host, size_t host_cap, int *port);

/* Writes "host:port", or "[host]:port" when host is an IPv6 literal (has a ':'), truncated to cap. */
void ps_hostport_format(char *out, size_t cap, const char *host, int port);

#endif
