/* Certificates made by the tests with OpenSSL's API: a CA, leaves signed by it (server or client), an
 * expired one, one with the wrong names. EC P-256 keys, so making one costs a millisecond. */
#ifndef PS_CERT_FIXTURE_H
#define PS_CERT_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

struct ps_test_cert {
  char *cert; /* PEM, NUL-terminated */
  size_t cert_len;
  char *key; /* PEM (PKCS#8), NUL-terminated */
  size_t key_len;
  void *x509, *pkey; /* X509 *, EVP_PKEY *: to sign with */
};

/* issuer NULL: a self-signed CA. sans: "DNS:localhost,IP:127.0.0.1" (NULL: none). Validity from now +
 * not_before_s to now + not_after_s (negative values make an expired certificate). serial: to tell two
 * certificates apart. Fails the test on error. */
void ps_test_cert_make(struct ps_test_cert *out, const struct ps_test_cert *issuer, const char *cn,
                       const char *sans, long not_before_s, long not_after_s, long serial);
/* A CA valid for a day. */
void ps_test_cert_ca(struct ps_test_cert *out, const char *cn);
/* A leaf for "localhost" and 127.0.0.1, valid for a day, signed by ca. */
void ps_test_cert_leaf(struct ps_test_cert *out, const struct ps_test_cert *ca, long serial);
/* Writes text to dir/name and returns the path (malloc'ed). */
char *ps_test_write_file(const char *dir, const char *name, const char *text);
void ps_test_cert_free(struct ps_test_cert *c);

#endif
