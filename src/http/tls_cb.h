/* coffre — http internal: the certificate callback tls.c gives libmicrohttpd. */
#ifndef CF_HTTP_TLS_CB_H
#define CF_HTTP_TLS_CB_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

/* A gnutls_certificate_retrieve_function2: the credentials loaded last. */
int cf_tls_retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey);

#endif
