/* coffre — http internal: the certificate callback tls.c gives libmicrohttpd, and the
 * sending side of a connection's GnuTLS session (server.c sets it up). */
#ifndef CF_HTTP_TLS_CB_H
#define CF_HTTP_TLS_CB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

/* A gnutls_certificate_retrieve_function2: the credentials loaded last. */
int cf_tls_retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey);

/* A reply's head record, at most, waits for its body's (cf_tls_push). */
#define CF_TLS_HELD_MAX 2048u

/* A connection's sending side, under GnuTLS: its transport pointer. */
struct cf_tls_out {
	int fd;
	bool more;   /* the next record is a reply's head: its body follows at once */
	size_t held; /* bytes of the head's record not sent yet, in head[] */
	uint8_t head[CF_TLS_HELD_MAX];
};

/* A gnutls_vec_push_func over cf_tls_out: a head record marked `more` is kept and sent
 * with the next record in one sendmsg. */
ssize_t cf_tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n);

#endif
