/* Number formatting shared by the /metrics exposition and `prescale probe`'s text output. */
#ifndef PS_FMT_H
#define PS_FMT_H

#include <stddef.h>

/* Room for any ps_fmt_double result, NUL included ("-2.2250738585072014e-308" is 24 bytes). */
#define PS_FMT_DOUBLE_MAX 32

/* Formats v as the shortest decimal that reads back (strtod) as the same double: integers up to 2^53 in
 * magnitude without exponent or fraction ("10", not "1e+01"; -0 as "0"), others with the fewest
 * significant digits (%g) that round-trip, and the specials as the Prometheus text format spells them: NaN,
 * +Inf, -Inf. Returns snprintf's count; dst is truncated to cap (PS_FMT_DOUBLE_MAX always suffices). */
int ps_fmt_double(char *dst, size_t cap, double v);

#endif
