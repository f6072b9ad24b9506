/* coffre — crypto: primitives over GnuTLS. This issue brings the development PKI; the
 * AEAD, HKDF, HMAC, Ed25519 and Argon2 layers follow with key management. */
#ifndef CF_CRYPTO_H
#define CF_CRYPTO_H

#include "base/base.h"

/* Development PKI for `coffred --dev`: in folder dir (which must already be private),
 * makes sure there is an ECDSA P-256 development CA (ca.pem, ca.key) and a server
 * certificate it signed (server.pem, server.key) for localhost, 127.0.0.1 and ::1,
 * valid for at least 30 more days. Missing or expiring files are (re)made with GnuTLS's
 * X.509 API; keys are written 0600. The CA's CRL (ca.crl, DER) is signed anew each
 * time, and the leaf names it by a file:// URI. *created tells whether a key or
 * certificate was made. */
CF_MUST cf_err cf_crypto_dev_pki(const char *dir, bool *created);

/* File names inside the development PKI folder. */
#define CF_DEV_CA_CERT     "ca.pem"
#define CF_DEV_CA_KEY      "ca.key"
#define CF_DEV_SERVER_CERT "server.pem"
#define CF_DEV_SERVER_KEY  "server.key"
#define CF_DEV_CA_CRL      "ca.crl"

#endif
