/* The token of RFC 9110 5.6.2, which every HTTP field name is (5.1): the one check of it for the HTTP
 * server's request headers, the client's extra header lines, a trigger's customHeaders and the
 * --prometheus-config headers and authentication scheme. ASCII ranges rather than isalnum, so that no locale
 * can widen it. */
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

#endif
