/* Durations as an operator writes them, for flags and trigger metadata alike: "30s", "5m", "1h30m",
 * "250ms", "1.5s", "2d" or plain (possibly fractional) seconds "15". A small module of its own so that
 * the generic flag parser (flags.c) and the trigger metadata (config_trigger.c) both read them without one
 * importing the other. Pure: no I/O, no allocation. */
#ifndef PS_DURATION_H
#define PS_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Units ms, s, m, h, d (24h); fractions round to the nearest millisecond.
 * 0 or UV_EINVAL (empty, negative, unknown unit, overflow). */
int ps_duration_parse(const char *s, int64_t *out_ms);
/* Shortest form: 90000 -> "1m30s", 250 -> "250ms", 1500 -> "1.5s", 86400000 -> "1d", 0 -> "0s".
 * ps_duration_parse reads it back to the same value. Returns snprintf's count. */
int ps_duration_format(int64_t ms, char *buf, size_t len);

#endif
