/* The token of RFC 9110 5.6.2, which every HTTP field name is (5.1): the one check of it for the HTTP
 * server's request headers, the client's extra header lines, a trigger's customHeaders and the
 * --prometheus-config headers and authentication scheme. ASCII ranges rather than isalnum, so that no locale
 * can widen it. And the control bytes, the one check of them: what a field value, a label, a namespace or
 * a line of text from a peer must not hold. */
#ifndef PS_HTTP_TOKEN_H
#define PS_HTTP_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* tchar: a letter, a digit or one of !#$%&'*+-.^_`|~ */
static inline bool ps_http_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* A NUL-terminated token: at least one tchar, nothing else. */
static inline bool ps_http_token(const char *s) {
  if (*s == '\0') return false;
  for (; *s; s++)
    if (!ps_http_tchar((unsigned char)*s)) return false;
  return true;
}

/* CTL (RFC 5234 B.1): 0x00-0x1F and DEL. Bytes >= 0x80 (UTF-8, obs-text) are not. */
static inline bool ps_ctl(unsigned char ch) { return ch < 0x20 || ch == 0x7f; }

/* A byte no field value holds (RFC 9110 5.5: field-vchar, SP and HTAB): a CTL other than HTAB. */
static inline bool ps_field_ctl(unsigned char ch) { return ps_ctl(ch) && ch != '\t'; }

/* Control bytes to spaces, in place: text from a peer (an error page, a decoder's message) that ends in a
 * log line or a grpc-message stays one line. */
static inline void ps_ctl_to_space(char *s) {
  for (; *s != '\0'; s++)
    if (ps_ctl((unsigned char)*s)) *s = ' ';
}

#endif
