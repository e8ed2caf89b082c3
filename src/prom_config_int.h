/* State shared by the two halves of the --prometheus-config reader: prom_config.c (libyaml events into
 * the struct: the schema, scalars, sections, the document, the files) and prom_config_check.c (the rules
 * on what was read: urls, authorization, basic_auth, tls_config, header names, and matching). Not an API:
 * prom_config.h is. */
#ifndef PS_PROM_CONFIG_INT_H
#define PS_PROM_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "prom_config.h"

#define PS_PC_PATH_BUF 64  /* a key path: "servers[63].authorization.credentials_file" */
#define PS_PC_WHAT_BUF 512 /* the part of an error after the path */

/* The sections whose presence matters after the server's mapping ends (their line, for messages). */
enum ps_pc_section { S_SERVER, S_AUTH, S_BASIC, S_TLS, NSECTIONS };

/* One parse. */
struct pc {
  yaml_parser_t yp;
  yaml_event_t ev;
  bool held; /* ev holds an event to delete */
  const char *yaml;
  size_t len;
  const char *file;
  size_t dirlen; /* bytes of file up to its last '/' included; 0: relative paths stay as written */
  bool check_files;
  size_t events;
  int depth;
  char path[PS_PC_PATH_BUF]; /* the key path of what is being read, for messages */
  char *err;
  size_t errlen;
};

/* One server as it is read: its config and where its sections were (0: absent). */
struct srv {
  struct ps_prom_server_cfg *cfg;
  size_t idx;
  size_t line[NSECTIONS];
  size_t url_line;
  size_t header_bytes;
};

/* `prometheus-config FILE:LINE: PATH: what` into p->err; returns UV_EINVAL. */
__attribute__((format(printf, 3, 4))) int ps_pc_fail(struct pc *p, size_t line, const char *fmt, ...);
/* The path becomes path[..base] + "." + name (or name at the top). */
void ps_pc_push(struct pc *p, size_t base, const char *name);
/* Control bytes (RFC 5234 CTL) other than HTAB: what would end or split a header line. */
bool ps_pc_has_ctl(const char *s);
/* A header name about to be added to c (at line): a token, not reserved, not there yet, room left. */
int ps_pc_header_name(struct pc *p, const struct ps_prom_server_cfg *c, const char *name, size_t line);
/* After a server's mapping (that started at map_line): its url (normalised here), each section, then the
 * pairs Prometheus refuses too; cfg holds the servers before it, for duplicate urls. */
int ps_pc_check_server(struct pc *p, struct srv *s, const struct ps_prom_config *cfg, size_t map_line);

#endif
