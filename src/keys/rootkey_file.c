/* coffre — root key provider `file` (ER3): the root key sealed under a passphrase.
 *
 *   "CFRK" | format 1 | rk_version u32 | m_kib u32 | t u32 | p u32 | salt 16
 *   | nonce 12 | AES-256-GCM(root key 64) + tag 16 | checksum 8
 *
 * The GCM key is Argon2id(passphrase, salt, m, t, p) and its associated data is every
 * header byte, so no parameter can be changed. The checksum (the first 8 bytes of
 * SHA-256 over everything before it) tells a damaged file from a wrong passphrase. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "keys/keys.h"

#define MAGIC    "CFRK"
#define HEADER   37 /* magic 4, format 1, version 4, m 4, t 4, p 4, salt 16 */
#define CHECKSUM 8
/* Bounds on what a file may ask of us: opening must not be a denial of service. */
#define M_KIB_MAX (4u * 1024u * 1024u) /* 4 GiB */
#define T_MAX     64u
#define P_MAX     64u

static cf_err checksum(const uint8_t *p, size_t n, uint8_t out[CHECKSUM])
{
	uint8_t d[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, p, n, d) < 0)
		return cf_err_fail(CF_E_CRYPTO, "SHA-256");
	memcpy(out, d, CHECKSUM);
	return CF_OK;
}

cf_err cf_rootkey_file_parse(struct cf_span b, struct cf_rk_file_view *v)
{
	*v = (struct cf_rk_file_view){0};
	CF_ENSURE(b.len == CF_RK_FILE_LEN && memcmp(b.ptr, MAGIC, 4) == 0,
	          cf_err_fail(CF_E_INTEGRITY, "not a coffre root key file (or truncated)"));
	CF_ENSURE(b.ptr[4] == 1,
	          cf_err_fail(CF_E_INTEGRITY, "root key file format %u is unknown", b.ptr[4]));
	uint8_t sum[CHECKSUM];
	CF_TRY(checksum(b.ptr, b.len - CHECKSUM, sum));
	CF_ENSURE(cf_span_eq_ct((struct cf_span){sum, CHECKSUM},
	                        (struct cf_span){b.ptr + b.len - CHECKSUM, CHECKSUM}),
	          cf_err_fail(CF_E_INTEGRITY, "the root key file is damaged (checksum mismatch)"));
	v->rk_version = cf_be32_get(b.ptr + 5);
	v->prm = (struct cf_argon2_params){cf_be32_get(b.ptr + 9), cf_be32_get(b.ptr + 13),
	                                   cf_be32_get(b.ptr + 17)};
	CF_ENSURE(v->prm.m_kib >= 8 * v->prm.p && v->prm.m_kib <= M_KIB_MAX && v->prm.t >= 1 &&
	                  v->prm.t <= T_MAX && v->prm.p >= 1 && v->prm.p <= P_MAX,
	          cf_err_fail(CF_E_INTEGRITY,
	                      "the root key file asks for Argon2id parameters out of bounds"));
	v->salt = (struct cf_span){b.ptr + 21, 16};
	v->header = (struct cf_span){b.ptr, HEADER};
	v->nonce = (struct cf_span){b.ptr + HEADER, CF_GCM_NONCE};
	v->sealed = (struct cf_span){b.ptr + HEADER + CF_GCM_NONCE, CF_RK_LEN + CF_AEAD_TAG};
	return CF_OK;
}

/* The key that seals the root key, from the passphrase (in secure memory). */
static cf_err derive(struct cf_span passphrase, struct cf_span salt,
                     const struct cf_argon2_params *prm, struct cf_secbuf **out)
{
	CF_TRY(cf_secbuf_new(CF_GCM_KEY, out));
	cf_err err = cf_argon2id_raw(passphrase, salt, (struct cf_span){NULL, 0},
	                             (struct cf_span){(const uint8_t *)"coffre root key v1", 18},
	                             prm, (*out)->ptr, CF_GCM_KEY);
	if (err)
		cf_secbuf_free(out);
	return err;
}

cf_err cf_rootkey_file_create(const char *path, struct cf_span passphrase,
                              const struct cf_argon2_params *prm, uint32_t rk_version,
                              struct cf_secbuf **rk_out)
{
	cf_err err = CF_OK;
	struct cf_secbuf *rk = NULL, *k = NULL;
	uint8_t file[CF_RK_FILE_LEN];
	CF_ENSURE(passphrase.len >= 8,
	          cf_err_fail(CF_E_INVALID, "the passphrase must be at least 8 bytes"));
	CF_ENSURE(access(path, F_OK) != 0,
	          cf_err_fail(CF_E_CONFLICT, "%s exists: a root key file is never overwritten",
	                      path));
	file[0] = 'C'; /* MAGIC, byte by byte: it is not a string in the file */
	file[1] = 'F';
	file[2] = 'R';
	file[3] = 'K';
	file[4] = 1;
	cf_be32_put(file + 5, rk_version);
	cf_be32_put(file + 9, prm->m_kib);
	cf_be32_put(file + 13, prm->t);
	cf_be32_put(file + 17, prm->p);
	CF_TRY_OUT(cf_crypto_random(file + 21, 16), out);
	CF_TRY_OUT(cf_crypto_random(file + HEADER, CF_GCM_NONCE), out);
	CF_TRY_OUT(cf_secbuf_new(CF_RK_LEN, &rk), out);
	CF_TRY_OUT(cf_crypto_random_key(rk->ptr, CF_RK_LEN), out);
	CF_TRY_OUT(derive(passphrase, (struct cf_span){file + 21, 16}, prm, &k), out);
	CF_TRY_OUT(cf_gcm_seal(k->ptr, file + HEADER, (struct cf_span){file, HEADER},
	                       (struct cf_span){rk->ptr, CF_RK_LEN}, file + HEADER + CF_GCM_NONCE),
	           out);
	CF_TRY_OUT(checksum(file, CF_RK_FILE_LEN - CHECKSUM, file + CF_RK_FILE_LEN - CHECKSUM),
	           out);
	CF_TRY_OUT(cf_file_write_atomic(path, file, sizeof file, 0600), out);
	*rk_out = rk;
	rk = NULL;
out:
	cf_secbuf_free(&k);
	cf_secbuf_free(&rk);
	return err;
}

cf_err cf_rootkey_file_open(const char *path, struct cf_span passphrase, struct cf_secbuf **rk_out,
                            uint32_t *rk_version)
{
	cf_err err = CF_OK;
	struct cf_buf b = {0};
	struct cf_secbuf *k = NULL, *rk = NULL;
	CF_TRY(cf_file_read(path, CF_RK_FILE_LEN + 1, &b));
	struct cf_rk_file_view v;
	CF_TRY_OUT(cf_rootkey_file_parse((struct cf_span){b.data, b.len}, &v), out);
	CF_TRY_OUT(derive(passphrase, v.salt, &v.prm, &k), out);
	CF_TRY_OUT(cf_secbuf_new(CF_RK_LEN, &rk), out);
	err = cf_gcm_open(k->ptr, v.nonce.ptr, v.header, v.sealed, rk->ptr);
	if (err == CF_E_INTEGRITY) {
		/* the checksum held, so the file is whole: the passphrase is wrong */
		err = cf_err_fail(CF_E_UNSEAL_FAILED, "the passphrase does not open %s", path);
		goto out;
	}
	CF_TRY_OUT(err, out);
	*rk_version = v.rk_version;
	*rk_out = rk;
	rk = NULL;
out:
	cf_secbuf_free(&k);
	cf_secbuf_free(&rk);
	cf_buf_free(&b);
	return err;
}
