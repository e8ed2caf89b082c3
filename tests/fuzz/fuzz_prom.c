/* libFuzzer target for ps_prom_decode (src/prom.c): any bytes a Prometheus, a proxy or an attacker on the
 * path may send as a query response. Checks the decoder's promises, not only that it does not crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ps_sample *s = NULL;
  size_t n = 0;
  char err[PS_PROM_MAX_ERROR_TEXT];
  err[0] = '\0';
  int rc = ps_prom_decode((const char *)data, size, &s, &n, err, sizeof err);
  if (rc == 0) {
    for (size_t i = 1; i < n; i++)
      if (s[i].t_ms < s[i - 1].t_ms) abort(); /* promised sorted by time */
  } else {
    if (s != NULL || n != 0) abort();
    if (err[0] == '\0' || strchr(err, '\n') != NULL) abort(); /* one line, always */
    if (rc != UV_EINVAL && rc != UV_EAGAIN && rc != UV_EPROTO && rc != UV_ENOMEM) abort();
  }
  free(s);
  return 0;
}
