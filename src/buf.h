/* A growable byte buffer: the one way bytes are accumulated in prescale (responses, URLs, exposition). */
#ifndef PS_BUF_H
#define PS_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct ps_buf {
  char *data; /* NUL-terminated after every append (the NUL is not counted in len) */
  size_t len;
  size_t cap;
};

void ps_buf_init(struct ps_buf *b);
/* Ensures room for n more bytes (+1 for the NUL). 0 or UV_ENOMEM. */
int ps_buf_reserve(struct ps_buf *b, size_t n);
int ps_buf_append(struct ps_buf *b, const void *p, size_t n);
int ps_buf_puts(struct ps_buf *b, const char *s);
int ps_buf_printf(struct ps_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ps_buf_vprintf(struct ps_buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes (n <= len). */
void ps_buf_consume(struct ps_buf *b, size_t n);
/* len = 0, keeps the memory. */
void ps_buf_reset(struct ps_buf *b);
/* Hands the memory to the caller (free() it); b is left empty. */
char *ps_buf_steal(struct ps_buf *b, size_t *len);
void ps_buf_free(struct ps_buf *b);
/* For memory that held a secret (a token, a password, an Authorization line, a key), before it is reused
 * or freed: explicit_bzero, which the compiler may not drop as a dead store. ps_buf_wipe overwrites b's
 * whole capacity and empties it (the memory is kept); ps_free_wiped overwrites n bytes at p and frees p;
 * ps_free_secret does so for a NUL-terminated string. NULL: nothing. */
void ps_buf_wipe(struct ps_buf *b);
void ps_free_wiped(void *p, size_t n);
void ps_free_secret(char *s);

#endif
