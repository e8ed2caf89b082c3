/* Private to src/prom_decode.c and src/prom_decode_scan.c: the state of one Prometheus answer being
 * decoded, shared by the scanner that fills it as bytes arrive (prom_decode_scan.c) and the lifecycle and
 * the judgement of the finished answer (prom_decode.c). Not a contract for other modules: prom_decode.h is.
 */
#ifndef PS_PROM_DECODE_INT_H
#define PS_PROM_DECODE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prom_decode.h"

/* The decoder is a pushdown scanner of RFC 8259 JSON, fed any number of pieces, that builds no tree: it
 * keeps the few things an answer is judged by (the envelope's strings, the kind of each value of
 * interest, the series count) and writes the first series' samples to the output as their pairs close.
 * Once the body has ended, ps_prom_dec_finish judges them in the order the checks have always run.
 * It accepts what cJSON (which decoded answers before) accepts: any byte <= 0x20 as whitespace, a leading
 * UTF-8 BOM, anything after the top value; numbers as a run of [0-9+-eE.] that strtod reads whole (of at
 * most PS_PROM_JSON_MAX_NUMBER bytes: cJSON took any); the first of duplicate keys. Unlike cJSON, a \u
 * escape must have 4 hex digits (cJSON read "\u12g4" as "\u0000"). Strings compare by their length, so a
 * NUL escaped into "success\u0000x" does not make it "success". */

#define HEAD_KEEP  80  /* bytes of the body kept for messages: 80 of an error page, 40 of a non-JSON body */
#define KEY_MAX    15  /* the longest key looked for is "histograms" */
#define SHORT_TEXT 47  /* status and resultType are compared, and printed with %.40s */
#define TYPE_MAX   127 /* errorType */
#define ROLE_DEPTH 8   /* containers of interest sit at depths 1..6 */

enum lex {
  L_BOM,
  L_VALUE,
  L_ARR_FIRST,
  L_OBJ_FIRST,
  L_KEY,
  L_COLON,
  L_AFTER,
  L_STRING,
  L_NUMBER,
  L_LITERAL,
  L_DONE,
  L_ERROR
};
/* What a container is in the answer. R_PAIR is a [time, "value"] of data.result[0].values, R_VPAIR is
 * data.result[0].value; data.result itself is also the pair of a scalar. */
enum role { R_OTHER, R_ROOT, R_DATA, R_RESULT, R_SERIES0, R_VALUES, R_PAIR, R_VPAIR };
/* Where a value sits. */
enum slot {
  S_OTHER,
  S_ROOT,
  S_STATUS,
  S_ERRTYPE,
  S_ERROR,
  S_DATA,
  S_RTYPE,
  S_RESULT,
  S_RES0,
  S_RES1,
  S_VALUE,
  S_VALUES,
  S_HIST,
  S_PAIR,
  S_PAIR_T,
  S_PAIR_V,
  S_PAIR_EXTRA
};
enum kind { K_ABSENT, K_STRING, K_NUMBER, K_OBJECT, K_ARRAY, K_LITERAL };

/* A [time, "value"] being read: element 0 a number of seconds, element 1 a float as a string. */
struct pair {
  struct ps_sample s;
  bool t_ok, v_ok, bad;
  size_t count;
};

struct text {
  size_t len;
  bool over; /* longer than its buffer: cut */
};

struct ps_prom_dec {
  struct ps_sample **out; /* the caller's array, appended from mark on */
  size_t *n, *cap, mark;
  bool sorted;
  int err; /* UV_ENOMEM once an append failed */
  size_t bytes;
  char head[HEAD_KEEP + 1];
  size_t head_len;
  /* scanner */
  enum lex st;
  unsigned depth;
  uint8_t is_arr[(PS_PROM_JSON_MAX_DEPTH + 7) / 8];
  uint8_t role[ROLE_DEPTH];
  enum slot key_slot; /* the slot of the value after the key just read */
  enum slot str_slot; /* the slot of the string or number being read */
  bool in_key;
  unsigned bom, esc; /* BOM bytes matched; escape state (0: none, 1: after '\', 2.. \u digits) */
  uint32_t unit, high;
  char *cap_dst; /* where the string being read is kept, or NULL */
  size_t cap_max;
  struct text *cap_text;
  struct text key_text, skip_text;
  char key[KEY_MAX + 1];
  char num[PS_PROM_JSON_MAX_NUMBER + 1];
  size_t num_len;
  const char *lit;
  size_t lit_pos;
  /* what the answer holds */
  enum kind root_k, status_k, errtype_k, error_k, data_k, rtype_k, result_k, series0_k, values_k, hist_k;
  unsigned seen; /* bit i: known_keys[i] was read in its object */
  char status[SHORT_TEXT + 1], rtype[SHORT_TEXT + 1], errtype[TYPE_MAX + 1], error[PS_PROM_MAX_ERROR_TEXT];
  struct text status_text, rtype_text, errtype_text, error_text, value_text;
  char value[PS_PROM_MAX_VALUE_TEXT + 1];
  size_t series; /* elements of data.result */
  struct pair pair, scalar;
  struct ps_sample one; /* data.result[0].value */
  bool one_ok, values_bad;
};

/* A [time, "value"] that closed well-formed: both elements, of the right kinds, and readable. */
static inline bool ps_prom_pair_ok(const struct pair *p) {
  return !p->bad && p->count == 2 && p->t_ok && p->v_ok;
}

/* Appends s to the caller's array (d->err = UV_ENOMEM when that fails). */
void ps_prom_dec_push_sample(struct ps_prom_dec *d, struct ps_sample s);
/* Ends the number being read (a bare number at the top ends only with the body: ps_prom_dec_finish). */
void ps_prom_dec_number_done(struct ps_prom_dec *d);

#endif
