/* host:port syntax (RFC 3986 3.2.2 and 3.2.3, restricted to what prescale needs: no zone identifiers,
 * no percent-encoding, no IPvFuture). */
#include "hostport.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#define PORT_DIGITS_MAX 5 /* "65535" */
#define PORT_MAX        65535

static bool is_name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
         ch == '.' || ch == '_';
}

static bool is_v6_char(char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || ch == ':' ||
         ch == '.';
}

/* The port: 1 to PORT_DIGITS_MAX decimal digits (no sign, no space), at most PORT_MAX. -1 when not. */
static int parse_port(const char *p, size_t n) {
  if (n == 0 || n > PORT_DIGITS_MAX) return -1;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v <= PORT_MAX ? v : -1;
}

int ps_hostport_parse(const char *s, size_t len, unsigned flags, char *host, size_t host_cap, int *port) {
  if (s == NULL) return UV_EINVAL;
  const char *end = s + len;
  const char *h, *hend, *rest; /* the host is [h, hend); rest is what follows it: "" or ":port" */
  if (len > 0 && s[0] == '[') {
    h = s + 1;
    hend = memchr(h, ']', len - 1);
    if (hend == NULL || hend == h) return UV_EINVAL;
    for (const char *q = h; q < hend; q++)
      if (!is_v6_char(*q)) return UV_EINVAL;
    if (memchr(h, ':', (size_t)(hend - h)) == NULL) return UV_EINVAL; /* brackets are for IPv6 only */
    rest = hend + 1;
  } else {
    /* The first ':' ends the host: a name has none, and an IPv6 literal must be bracketed. */
    h = s;
    hend = memchr(s, ':', len);
    if (hend == NULL) hend = end;
    for (const char *q = h; q < hend; q++)
      if (!is_name_char(*q)) return UV_EINVAL;
    /* An empty host stands for every address, and only next to a port. */
    if (hend == h && (!(flags & PS_HOSTPORT_EMPTY_HOST) || hend == end)) return UV_EINVAL;
    rest = hend;
  }
  int pt = PS_HOSTPORT_NO_PORT;
  if (rest == end) {
    if (!(flags & PS_HOSTPORT_PORT_OPTIONAL)) return UV_EINVAL;
  } else {
    if (*rest != ':') return UV_EINVAL;
    pt = parse_port(rest + 1, (size_t)(end - rest - 1));
    if (pt < 0 || (pt == 0 && !(flags & PS_HOSTPORT_PORT_ZERO))) return UV_EINVAL;
  }
  size_t hlen = (size_t)(hend - h);
  if (hlen >= host_cap || hlen >= PS_HOSTPORT_HOST_MAX) return UV_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = pt;
  return 0;
}

void ps_hostport_format(char *out, size_t cap, const char *host, int port) {
  if (strchr(host, ':') != NULL)
    snprintf(out, cap, "[%s]:%d", host, port);
  else
    snprintf(out, cap, "%s:%d", host, port);
}
