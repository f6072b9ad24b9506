/* coffre — TLS credentials and the policy we serve (TR1, TR2).
 *
 * Certificates are handed to GnuTLS through a retrieve callback rather than fixed at
 * start, so SIGHUP can swap in a renewed certificate without dropping a connection. A
 * replaced credential is kept until the process ends: GnuTLS keeps pointers to the one a
 * session chose for as long as that session lives, and reloads are rare. A session's
 * records leave through cf_tls_push, which sends a reply's head with its body. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "http/http.h"
#include "http/tls_cb.h"

/* TR1: TLS 1.3 and 1.2 only; AEAD ciphers only (AES-GCM, ChaCha20-Poly1305); no SHA-1
 * signatures. TR2: ECDHE only (-KX-ALL then ECDHE; TLS 1.3 groups limited to elliptic
 * curves, so no finite-field DHE either); %NO_TICKETS keeps session tickets from
 * carrying keys across connections. No compression exists in GnuTLS 3.7. Renegotiation
 * is never started by the server; a client's renegotiating ClientHello makes GnuTLS
 * return GNUTLS_E_REHANDSHAKE, on which libmicrohttpd closes the connection without
 * running a handshake (GnuTLS has no switch to answer it with an alert instead).
 * Built from NORMAL rather than NONE: a NONE-based string that enables the same suites
 * leaves out extensions some clients' TLS 1.3 hellos rely on (testssl.sh's raw-socket
 * probe fails against it). */
const char cf_tls_priorities[] =
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:"
        "-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM:-MAC-ALL:+AEAD:"
        "-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"
        "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"
        "-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:"
        "%SERVER_PRECEDENCE:%NO_TICKETS";

#define CHAIN_MAX 8

struct tls_creds {
	gnutls_pcert_st chain[CHAIN_MAX];
	unsigned nchain;
	gnutls_privkey_t key;
	struct tls_creds *older;
};

static _Atomic(struct tls_creds *) current;
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

static void creds_free(struct tls_creds *c)
{
	for (unsigned i = 0; i < c->nchain; i++)
		gnutls_pcert_deinit(&c->chain[i]);
	if (c->key)
		gnutls_privkey_deinit(c->key);
	free(c);
}

int cf_tls_retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
	(void)s;
	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	struct tls_creds *c = atomic_load(&current);
	if (!c)
		return -1;
	*pcert = c->chain;
	*pcert_length = c->nchain;
	*pkey = c->key;
	return 0;
}

static cf_err pubkey_id(gnutls_pubkey_t pk, uint8_t *id, size_t *len)
{
	if (gnutls_pubkey_get_key_id(pk, GNUTLS_KEYID_USE_SHA256, id, len) < 0)
		return CF_E_CRYPTO;
	return CF_OK;
}

static cf_err creds_load(const char *cert_path, const char *key_path, struct tls_creds **out)
{
	cf_err err = CF_OK;
	struct cf_buf cb = {0}, kb = {0};
	gnutls_pubkey_t from_key = NULL;
	struct tls_creds *c = calloc(1, sizeof *c);
	if (!c)
		return CF_E_NOMEM;
	if (cf_file_read(cert_path, 256 * 1024, &cb) != CF_OK) {
		char why[CF_ERR_DETAIL_MAX];
		(void)snprintf(why, sizeof why, "%s", cf_err_detail());
		err = cf_err_fail(CF_E_CONFIG, "TLS certificate: %s", why);
		goto out;
	}
	if (cf_file_read(key_path, 64 * 1024, &kb) != CF_OK) {
		char why[CF_ERR_DETAIL_MAX];
		(void)snprintf(why, sizeof why, "%s", cf_err_detail());
		err = cf_err_fail(CF_E_CONFIG, "TLS key: %s", why);
		goto out;
	}
	gnutls_datum_t cd = {cb.data, (unsigned)cb.len}, kd = {kb.data, (unsigned)kb.len};
	c->nchain = CHAIN_MAX;
	int rc = gnutls_pcert_list_import_x509_raw(c->chain, &c->nchain, &cd, GNUTLS_X509_FMT_PEM,
	                                           0);
	if (rc < 0 || c->nchain == 0) {
		c->nchain = 0;
		err = cf_err_fail(CF_E_CONFIG, "%s: not a PEM certificate chain (%s)", cert_path,
		                  rc < 0 ? gnutls_strerror(rc) : "empty");
		goto out;
	}
	if ((rc = gnutls_privkey_init(&c->key)) < 0 ||
	    (rc = gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		err = cf_err_fail(CF_E_CONFIG, "%s: not an unencrypted PEM private key (%s)",
		                  key_path, gnutls_strerror(rc));
		goto out;
	}
	/* The key must belong to the first certificate. */
	uint8_t a[64], b[64];
	size_t alen = sizeof a, blen = sizeof b;
	if (gnutls_pubkey_init(&from_key) < 0 ||
	    gnutls_pubkey_import_privkey(from_key, c->key, 0, 0) < 0 ||
	    pubkey_id(from_key, a, &alen) != CF_OK ||
	    pubkey_id(c->chain[0].pubkey, b, &blen) != CF_OK || alen != blen ||
	    memcmp(a, b, alen) != 0) {
		err = cf_err_fail(CF_E_CONFIG, "%s does not match the certificate in %s", key_path,
		                  cert_path);
		goto out;
	}
	*out = c;
	c = NULL;
out:
	if (from_key)
		gnutls_pubkey_deinit(from_key);
	if (kb.data)
		cf_wipe(kb.data, kb.len);
	cf_buf_free(&kb);
	cf_buf_free(&cb);
	if (c)
		creds_free(c);
	return err;
}

cf_err cf_tls_load(const char *cert_path, const char *key_path)
{
	struct tls_creds *c = NULL;
	CF_TRY(creds_load(cert_path, key_path, &c));
	CF_ENSURE(c, CF_E_INTERNAL);
	pthread_mutex_lock(&reload_lock);
	c->older = atomic_load(&current);
	atomic_store(&current, c);
	pthread_mutex_unlock(&reload_lock);
	return CF_OK;
}

void cf_tls_shutdown(void)
{
	pthread_mutex_lock(&reload_lock);
	struct tls_creds *c = atomic_exchange(&current, NULL);
	while (c) {
		struct tls_creds *older = c->older;
		creds_free(c);
		c = older;
	}
	pthread_mutex_unlock(&reload_lock);
}

/* One send a reply, not two. libmicrohttpd 0.9.75 sends a reply's head and its body as
 * two TLS records, each its own send: the head went out alone, and the client woke for
 * it. The head's record is kept here, and goes out with the body's in one sendmsg: one
 * TCP segment, one system call (docs/PERFORMANCE.md). GnuTLS is told the head is sent;
 * what the socket does not take of it is sent first at the body's push, which reports
 * EAGAIN until the head is all gone and then how much of the body went, so GnuTLS sends
 * the body's record again from there. A head too large to keep goes out at once, marked
 * MSG_MORE (the kernel holds it for the body, or sends it after its own short delay).
 * Only a reply with a body marks its head (server.c, tls_out_hold): no head is left
 * waiting for a body that does not come. */
ssize_t cf_tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
	struct cf_tls_out *t = p;
	int flags = MSG_NOSIGNAL;
	if (t->more) {
		t->more = false;
		size_t len = 0;
		for (int i = 0; i < n; i++)
			len += iov[i].iov_len;
		if (t->held == 0 && len <= sizeof t->head) {
			for (int i = 0; i < n; i++) {
				memcpy(t->head + t->held, iov[i].iov_base, iov[i].iov_len);
				t->held += iov[i].iov_len;
			}
			return (ssize_t)len;
		}
		flags |= MSG_MORE;
	}
	struct iovec v[8];
	size_t nv = 0;
	if (t->held)
		v[nv++] = (struct iovec){.iov_base = t->head, .iov_len = t->held};
	for (int i = 0; i < n && nv < sizeof v / sizeof v[0]; i++)
		v[nv++] = (struct iovec){.iov_base = iov[i].iov_base, .iov_len = iov[i].iov_len};
	struct msghdr m = {.msg_iov = v, .msg_iovlen = nv};
	ssize_t r = sendmsg(t->fd, &m, flags);
	if (r < 0 || t->held == 0)
		return r; /* (iov past the seventh waits for the next push, as a short send) */
	if ((size_t)r < t->held) {
		memmove(t->head, t->head + r, t->held - (size_t)r);
		t->held -= (size_t)r;
		r = 0;
	} else {
		r -= (ssize_t)t->held;
		t->held = 0;
	}
	if (r == 0) {
		errno = EAGAIN; /* GnuTLS sends this record again, from its start */
		return -1;
	}
	return r;
}
