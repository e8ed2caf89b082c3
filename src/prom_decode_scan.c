/* The streaming scanner of the Prometheus answer decoder: RFC 8259 JSON fed in pieces of any size, with
 * the roles of the containers of interest (data, data.result, the first series, its pairs) tracked as it
 * goes, the envelope's strings kept, and the first series' samples appended as their pairs close. Apart
 * from prom_decode.c, which creates the decoder and judges the finished answer, because it is the byte-level
 * half: JSON lexing, escapes and surrogates, numbers, nesting. Same module (prom_decode.h, tested in
 * tests/unit/test_prom_decode.c and fuzzed by tests/fuzz/fuzz_prom_decode.c, which reach every line here
 * through ps_prom_dec_feed). */
#include "prom_decode_int.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_S        1000
/* Timestamps beyond this many seconds cannot be turned into int64 milliseconds. */
#define MAX_ABS_SECONDS 9.0e15

#define FIRST_CAP 64 /* samples of the first allocation; then doubling */

/* ---- samples ---- */

/* A timestamp in seconds, as the API writes it, to milliseconds. */
static bool parse_time(const char *txt, int64_t *t_ms) {
  double sec = strtod(txt, NULL);
  if (!isfinite(sec) || fabs(sec) > MAX_ABS_SECONDS) return false;
  *t_ms = (int64_t)llround(sec * MS_PER_S);
  return true;
}

/* Go's strconv.FormatFloat output, plus the three specials; strtod takes all of them. */
static bool parse_value(const char *vs, const struct text *t, double *v) {
  if (t->over || t->len == 0 || isspace((unsigned char)*vs)) return false;
  char *end;
  double x = strtod(vs, &end);
  if (end != vs + t->len) return false; /* trailing bytes, or a NUL inside */
  *v = x;
  return true;
}

void ps_prom_dec_push_sample(struct ps_prom_dec *d, struct ps_sample s) {
  if (*d->n == *d->cap) {
    size_t cap = *d->cap ? *d->cap * 2 : FIRST_CAP;
    struct ps_sample *ns = realloc(*d->out, cap * sizeof *ns);
    if (ns == NULL) {
      d->err = UV_ENOMEM;
      return;
    }
    *d->out = ns;
    *d->cap = cap;
  }
  if (*d->n > d->mark && s.t_ms < (*d->out)[*d->n - 1].t_ms) d->sorted = false;
  (*d->out)[(*d->n)++] = s;
}

/* ---- the scanner ---- */

static bool top_is_arr(const struct ps_prom_dec *d) {
  unsigned i = d->depth - 1;
  return (d->is_arr[i / 8] >> (i % 8)) & 1;
}

static enum role top_role(const struct ps_prom_dec *d) {
  return d->depth > 0 && d->depth <= ROLE_DEPTH ? (enum role)d->role[d->depth - 1] : R_OTHER;
}

/* The keys looked for, by the object they are in. The first of duplicate keys counts (d->seen). */
static const struct {
  enum role in;
  const char *name;
  enum slot slot;
} known_keys[] = {
    {R_ROOT, "status", S_STATUS},  {R_ROOT, "errorType", S_ERRTYPE}, {R_ROOT, "error", S_ERROR},
    {R_ROOT, "data", S_DATA},      {R_DATA, "resultType", S_RTYPE},  {R_DATA, "result", S_RESULT},
    {R_SERIES0, "value", S_VALUE}, {R_SERIES0, "values", S_VALUES},  {R_SERIES0, "histograms", S_HIST},
};

/* After a key of an object of interest: where its value sits. */
static void key_done(struct ps_prom_dec *d) {
  enum role r = top_role(d);
  d->key_slot = S_OTHER;
  for (unsigned i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
    size_t len = strlen(known_keys[i].name);
    if (known_keys[i].in != r || d->key_text.over || d->key_text.len != len ||
        memcmp(d->key, known_keys[i].name, len) != 0)
      continue;
    if (!(d->seen & 1u << i)) d->key_slot = known_keys[i].slot;
    d->seen |= 1u << i;
    return;
  }
}

/* The slot of the value that begins now, counting it among its array's elements. */
static enum slot value_slot(struct ps_prom_dec *d) {
  if (d->depth == 0) return S_ROOT;
  switch (top_role(d)) {
  case R_ROOT:
  case R_DATA:
  case R_SERIES0: return d->key_slot;
  case R_RESULT: {
    size_t i = d->series++;
    d->scalar.count++;
    return i == 0 ? S_RES0 : i == 1 ? S_RES1 : S_OTHER;
  }
  case R_VALUES: return S_PAIR;
  case R_PAIR:
  case R_VPAIR: {
    size_t i = d->pair.count++;
    return i == 0 ? S_PAIR_T : i == 1 ? S_PAIR_V : S_PAIR_EXTRA;
  }
  default: return S_OTHER;
  }
}

/* Records the kind of a value that begins at slot s, and what it breaks. */
static void note_kind(struct ps_prom_dec *d, enum slot s, enum kind k) {
  switch (s) {
  case S_ROOT: d->root_k = k; break;
  case S_STATUS: d->status_k = k; break;
  case S_ERRTYPE: d->errtype_k = k; break;
  case S_ERROR: d->error_k = k; break;
  case S_DATA: d->data_k = k; break;
  case S_RTYPE: d->rtype_k = k; break;
  case S_RESULT: d->result_k = k; break;
  case S_RES0:
    d->series0_k = k;
    if (k != K_NUMBER) d->scalar.bad = true;
    break;
  case S_RES1:
    if (k != K_STRING) d->scalar.bad = true;
    break;
  case S_VALUES: d->values_k = k; break;
  case S_HIST: d->hist_k = k; break;
  case S_PAIR:
    if (k != K_ARRAY) d->values_bad = true;
    break;
  case S_PAIR_T:
    if (k != K_NUMBER) d->pair.bad = true;
    break;
  case S_PAIR_V:
    if (k != K_STRING) d->pair.bad = true;
    break;
  case S_PAIR_EXTRA: d->pair.bad = true; break;
  default: break;
  }
}

static void value_done(struct ps_prom_dec *d) { d->st = d->depth == 0 ? L_DONE : L_AFTER; }

static void push(struct ps_prom_dec *d, bool arr, enum role r) {
  if (d->depth >= PS_PROM_JSON_MAX_DEPTH) {
    d->st = L_ERROR;
    return;
  }
  unsigned i = d->depth;
  if (arr)
    d->is_arr[i / 8] |= (uint8_t)(1u << (i % 8));
  else
    d->is_arr[i / 8] &= (uint8_t) ~(1u << (i % 8));
  if (i < ROLE_DEPTH) d->role[i] = (uint8_t)r;
  d->depth++;
  d->st = arr ? L_ARR_FIRST : L_OBJ_FIRST;
}

static void pop(struct ps_prom_dec *d) {
  switch (top_role(d)) {
  case R_PAIR:
    if (!ps_prom_pair_ok(&d->pair))
      d->values_bad = true;
    else if (!d->values_bad)
      ps_prom_dec_push_sample(d, d->pair.s);
    break;
  case R_VPAIR:
    d->one_ok = ps_prom_pair_ok(&d->pair);
    d->one = d->pair.s;
    break;
  default: break;
  }
  d->depth--;
  value_done(d);
}

static void capture(struct ps_prom_dec *d, char *dst, size_t max, struct text *t) {
  d->cap_dst = dst;
  d->cap_max = max;
  d->cap_text = t;
  t->len = 0;
  t->over = false;
}

static void begin_value(struct ps_prom_dec *d, unsigned char c) {
  enum slot s = value_slot(d);
  if (c == '{') {
    note_kind(d, s, K_OBJECT);
    push(d, false, s == S_ROOT ? R_ROOT : s == S_DATA ? R_DATA : s == S_RES0 ? R_SERIES0 : R_OTHER);
  } else if (c == '[') {
    note_kind(d, s, K_ARRAY);
    enum role r = R_OTHER;
    if (s == S_RESULT) {
      r = R_RESULT;
      memset(&d->scalar, 0, sizeof d->scalar);
    } else if (s == S_VALUE || s == S_PAIR) {
      r = s == S_VALUE ? R_VPAIR : R_PAIR;
      memset(&d->pair, 0, sizeof d->pair);
    } else if (s == S_VALUES) {
      r = R_VALUES;
    }
    push(d, true, r);
  } else if (c == '"') {
    note_kind(d, s, K_STRING);
    d->in_key = false;
    d->str_slot = s;
    switch (s) {
    case S_STATUS: capture(d, d->status, SHORT_TEXT, &d->status_text); break;
    case S_RTYPE: capture(d, d->rtype, SHORT_TEXT, &d->rtype_text); break;
    case S_ERRTYPE: capture(d, d->errtype, TYPE_MAX, &d->errtype_text); break;
    case S_ERROR: capture(d, d->error, sizeof d->error - 1, &d->error_text); break;
    case S_RES1:
    case S_PAIR_V: capture(d, d->value, PS_PROM_MAX_VALUE_TEXT, &d->value_text); break;
    default: capture(d, NULL, 0, &d->skip_text); break;
    }
    d->esc = 0;
    d->st = L_STRING;
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    note_kind(d, s, K_NUMBER);
    d->str_slot = s;
    d->num[0] = (char)c;
    d->num_len = 1;
    d->st = L_NUMBER;
  } else if (c == 't' || c == 'f' || c == 'n') {
    note_kind(d, s, K_LITERAL);
    d->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
    d->lit_pos = 1; /* c was its first letter */
    d->st = L_LITERAL;
  } else {
    d->st = L_ERROR;
  }
}

static void string_done(struct ps_prom_dec *d) {
  if (d->cap_dst != NULL) d->cap_dst[d->cap_text->len] = '\0';
  if (d->in_key) {
    key_done(d);
    d->st = L_COLON;
    return;
  }
  if (d->str_slot == S_RES1 || d->str_slot == S_PAIR_V) {
    struct pair *p = d->str_slot == S_RES1 ? &d->scalar : &d->pair;
    p->v_ok = parse_value(d->value, &d->value_text, &p->s.v);
  }
  value_done(d);
}

void ps_prom_dec_number_done(struct ps_prom_dec *d) {
  d->num[d->num_len] = '\0';
  char *end;
  strtod(d->num, &end);
  /* At the top, what strtod leaves is trailing bytes, which cJSON ignored (the answer fails anyway). */
  if (end != d->num + d->num_len && !(d->depth == 0 && end != d->num)) {
    d->st = L_ERROR;
    return;
  }
  if (d->str_slot == S_RES0 || d->str_slot == S_PAIR_T) {
    struct pair *p = d->str_slot == S_RES0 ? &d->scalar : &d->pair;
    p->t_ok = parse_time(d->num, &p->s.t_ms);
  }
  value_done(d);
}

static void put_byte(struct ps_prom_dec *d, unsigned char c) {
  if (d->cap_dst == NULL) return;
  if (d->cap_text->len < d->cap_max)
    d->cap_dst[d->cap_text->len++] = (char)c;
  else
    d->cap_text->over = true;
}

static void put_code_point(struct ps_prom_dec *d, uint32_t cp) {
  if (cp < 0x80) {
    put_byte(d, (unsigned char)cp);
  } else if (cp < 0x800) {
    put_byte(d, (unsigned char)(0xc0 | (cp >> 6)));
    put_byte(d, (unsigned char)(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    put_byte(d, (unsigned char)(0xe0 | (cp >> 12)));
    put_byte(d, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
    put_byte(d, (unsigned char)(0x80 | (cp & 0x3f)));
  } else {
    put_byte(d, (unsigned char)(0xf0 | (cp >> 18)));
    put_byte(d, (unsigned char)(0x80 | ((cp >> 12) & 0x3f)));
    put_byte(d, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
    put_byte(d, (unsigned char)(0x80 | (cp & 0x3f)));
  }
}

static int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* One byte of an escape (RFC 8259 7): esc 1 after '\'; 2-5 the 4 hex digits of \u; 6-7 the "\u" that must
 * follow a high surrogate, 8-11 its low surrogate's digits. */
static void escape_byte(struct ps_prom_dec *d, unsigned char c) {
  static const char simple_in[] = "\"\\/bfnrt", simple_out[] = "\"\\/\b\f\n\r\t";
  if (d->esc == 1) {
    const char *e = c != '\0' ? strchr(simple_in, c) : NULL;
    if (e != NULL) {
      put_byte(d, (unsigned char)simple_out[e - simple_in]);
      d->esc = 0;
    } else if (c == 'u') {
      d->unit = 0;
      d->esc = 2;
    } else {
      d->st = L_ERROR;
    }
    return;
  }
  if (d->esc == 6 || d->esc == 7) {
    if (c != (d->esc == 6 ? '\\' : 'u')) {
      d->st = L_ERROR; /* a high surrogate alone */
      return;
    }
    d->esc++;
    d->unit = 0;
    return;
  }
  int h = hex_digit(c);
  if (h < 0) {
    d->st = L_ERROR;
    return;
  }
  d->unit = d->unit << 4 | (uint32_t)h;
  if (d->esc != 5 && d->esc != 11) {
    d->esc++;
    return;
  }
  if (d->esc == 5) {
    if (d->unit >= 0xdc00 && d->unit <= 0xdfff) {
      d->st = L_ERROR; /* a low surrogate first */
    } else if (d->unit >= 0xd800 && d->unit <= 0xdbff) {
      d->high = d->unit;
      d->esc = 6;
    } else {
      put_code_point(d, d->unit);
      d->esc = 0;
    }
    return;
  }
  if (d->unit < 0xdc00 || d->unit > 0xdfff) {
    d->st = L_ERROR;
    return;
  }
  put_code_point(d, 0x10000 + ((d->high - 0xd800) << 10) + (d->unit - 0xdc00));
  d->esc = 0;
}

static bool is_number_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'e' || c == 'E' || c == '.';
}

/* Runs the scanner over p[0..len) (no state beyond the struct: pieces may split anything). */
static void scan(struct ps_prom_dec *d, const unsigned char *p, const unsigned char *end) {
  while (p < end && d->st != L_DONE && d->st != L_ERROR) {
    unsigned char c = *p;
    switch (d->st) {
    case L_STRING:
      if (d->esc != 0) {
        escape_byte(d, c);
        p++;
        break;
      }
      {
        const unsigned char *q = p;
        while (q < end && *q != '"' && *q != '\\') q++;
        if (d->cap_dst != NULL) {
          size_t k = (size_t)(q - p), room = d->cap_max - d->cap_text->len;
          if (k > room) {
            k = room;
            d->cap_text->over = true;
          }
          memcpy(d->cap_dst + d->cap_text->len, p, k);
          d->cap_text->len += k;
        }
        p = q;
        if (p == end) break;
        p++;
        if (*(p - 1) == '"')
          string_done(d);
        else
          d->esc = 1;
      }
      break;
    case L_NUMBER:
      if (!is_number_byte(c)) {
        ps_prom_dec_number_done(d); /* c is read again in the next state */
        break;
      }
      if (d->num_len == PS_PROM_JSON_MAX_NUMBER) {
        d->st = L_ERROR;
        break;
      }
      d->num[d->num_len++] = (char)c;
      p++;
      break;
    case L_LITERAL:
      if (c != (unsigned char)d->lit[d->lit_pos]) {
        d->st = L_ERROR;
        break;
      }
      p++;
      if (d->lit[++d->lit_pos] == '\0') value_done(d);
      break;
    case L_BOM:
      if (c == (unsigned char)"\xEF\xBB\xBF"[d->bom]) {
        p++;
        if (++d->bom == 3) d->st = L_VALUE;
      } else {
        d->st = d->bom == 0 ? L_VALUE : L_ERROR;
      }
      break;
    default:
      if (c <= 0x20) { /* whitespace, as cJSON reads it */
        p++;
        break;
      }
      p++;
      switch (d->st) {
      case L_VALUE: begin_value(d, c); break;
      case L_ARR_FIRST:
        if (c == ']')
          pop(d);
        else
          begin_value(d, c);
        break;
      case L_OBJ_FIRST:
      case L_KEY:
        if (c == '}' && d->st == L_OBJ_FIRST) {
          pop(d);
        } else if (c == '"') {
          enum role r = top_role(d);
          if (r == R_ROOT || r == R_DATA || r == R_SERIES0)
            capture(d, d->key, KEY_MAX, &d->key_text);
          else
            capture(d, NULL, 0, &d->skip_text);
          d->in_key = true;
          d->esc = 0;
          d->st = L_STRING;
        } else {
          d->st = L_ERROR;
        }
        break;
      case L_COLON: d->st = c == ':' ? L_VALUE : L_ERROR; break;
      case L_AFTER:
        if (c == ',')
          d->st = top_is_arr(d) ? L_VALUE : L_KEY;
        else if (c == (top_is_arr(d) ? ']' : '}'))
          pop(d);
        else
          d->st = L_ERROR;
        break;
      default: d->st = L_ERROR; break;
      }
      break;
    }
  }
}

int ps_prom_dec_feed(struct ps_prom_dec *d, const char *data, size_t len) {
  if (len == 0) return d->err;
  if (d->head_len < HEAD_KEEP) {
    size_t k = len < HEAD_KEEP - d->head_len ? len : HEAD_KEEP - d->head_len;
    memcpy(d->head + d->head_len, data, k);
    d->head_len += k;
    d->head[d->head_len] = '\0';
  }
  d->bytes += len;
  if (d->err == 0) scan(d, (const unsigned char *)data, (const unsigned char *)data + len);
  return d->err;
}
