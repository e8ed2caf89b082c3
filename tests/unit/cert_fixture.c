/* Certificates made with OpenSSL's API (see cert_fixture.h). */
#include "cert_fixture.h"

#include <criterion/criterion.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *bio_text(BIO *b, size_t *len) {
  char *p;
  long n = BIO_get_mem_data(b, &p);
  cr_assert_gt(n, 0);
  char *s = malloc((size_t)n + 1);
  cr_assert(s);
  memcpy(s, p, (size_t)n);
  s[n] = 0;
  *len = (size_t)n;
  return s;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  cr_assert(e, "extension %d=%s", nid, value);
  cr_assert(X509_add_ext(x, e, -1));
  X509_EXTENSION_free(e);
}

void ps_test_cert_make(struct ps_test_cert *out, const struct ps_test_cert *issuer, const char *cn,
                       const char *sans, long not_before_s, long not_after_s, long serial) {
  memset(out, 0, sizeof *out);
  EVP_PKEY *k = EVP_EC_gen("P-256");
  cr_assert(k);
  X509 *x = X509_new();
  cr_assert(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(x), not_after_s);
  X509_set_pubkey(x, k);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509 *ix = issuer ? issuer->x509 : x;
  X509_set_issuer_name(x, X509_get_subject_name(ix));
  if (!issuer) {
    add_ext(x, ix, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, ix, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, ix, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, ix, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  add_ext(x, ix, NID_subject_key_identifier, "hash");
  if (sans) add_ext(x, ix, NID_subject_alt_name, sans);
  cr_assert(X509_sign(x, issuer ? issuer->pkey : k, EVP_sha256()));
  BIO *b = BIO_new(BIO_s_mem());
  cr_assert(PEM_write_bio_X509(b, x));
  out->cert = bio_text(b, &out->cert_len);
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  cr_assert(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL));
  out->key = bio_text(b, &out->key_len);
  BIO_free(b);
  out->x509 = x;
  out->pkey = k;
}

void ps_test_cert_ca(struct ps_test_cert *out, const char *cn) {
  ps_test_cert_make(out, NULL, cn, NULL, -3600, 86400, 1);
}

void ps_test_cert_leaf(struct ps_test_cert *out, const struct ps_test_cert *ca, long serial) {
  ps_test_cert_make(out, ca, "localhost", "DNS:localhost,IP:127.0.0.1", -3600, 86400, serial);
}

char *ps_test_write_file(const char *dir, const char *name, const char *text) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *path = malloc(n);
  cr_assert(path);
  snprintf(path, n, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(text, f);
  cr_assert_eq(fclose(f), 0);
  return path;
}

void ps_test_cert_free(struct ps_test_cert *c) {
  free(c->cert);
  free(c->key);
  X509_free(c->x509);
  EVP_PKEY_free(c->pkey);
  memset(c, 0, sizeof *c);
}
