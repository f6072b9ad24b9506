/* coffre — root key provider `pkcs11` (ER6): the root key is an AES-256 key generated
 * inside a hardware security module, sensitive and non-extractable; KEKs are wrapped and
 * unwrapped by the token (CKM_AES_GCM) and only the unwrapped KEK, in locked memory,
 * ever leaves it. p11-kit loads the module; coffre calls the PKCS#11 C API itself
 * (GnuTLS's PKCS#11 layer cannot use a secret key held in a token). One session, used
 * under a lock. Tested against SoftHSM2. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

#include "keys/keys.h"

struct cf_hsm {
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE session;
	bool logged_in;
	pthread_mutex_t lock;
};

static cf_err p11_fail(CK_RV rv, const char *what)
{
	return cf_err_fail(rv == CKR_PIN_INCORRECT ? CF_E_UNSEAL_FAILED : CF_E_CRYPTO,
	                   "HSM: %s: %s (0x%lx)", what, p11_kit_strerror(rv), (unsigned long)rv);
}

static void label_of(uint32_t rk_version, char *buf, size_t cap)
{
	(void)snprintf(buf, cap, "coffre-root-key-v%u", rk_version);
}

cf_err cf_hsm_open(const char *module, const char *token_label, struct cf_span pin,
                   struct cf_hsm **out)
{
	cf_err err = CF_OK;
	struct cf_hsm *h = calloc(1, sizeof *h);
	if (!h)
		return CF_E_NOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->f = p11_kit_module_load(module, P11_KIT_MODULE_UNMANAGED);
	if (!h->f) {
		err = cf_err_fail(CF_E_CONFIG, "HSM: cannot load the PKCS#11 module %s: %s", module,
		                  p11_kit_message() ? p11_kit_message() : "unknown error");
		goto out_fail;
	}
	CK_RV rv = p11_kit_module_initialize(h->f);
	if (rv != CKR_OK) {
		err = p11_fail(rv, "initialize");
		p11_kit_module_release(h->f);
		h->f = NULL;
		goto out_fail;
	}
	CK_SLOT_ID slots[64];
	CK_ULONG nslots = 64;
	if ((rv = h->f->C_GetSlotList(CK_TRUE, slots, &nslots)) != CKR_OK) {
		err = p11_fail(rv, "slot list");
		goto out_fail;
	}
	CK_SLOT_ID slot = 0;
	bool found = false;
	for (CK_ULONG i = 0; i < nslots && !found; i++) {
		CK_TOKEN_INFO ti;
		if (h->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		/* labels are 32 bytes, space-padded */
		char label[33];
		memcpy(label, ti.label, 32);
		label[32] = '\0';
		for (int j = 31; j >= 0 && label[j] == ' '; j--)
			label[j] = '\0';
		if (strcmp(label, token_label) == 0) {
			slot = slots[i];
			found = true;
		}
	}
	if (!found) {
		err = cf_err_fail(CF_E_CONFIG, "HSM: no token labelled '%s' in %s", token_label,
		                  module);
		goto out_fail;
	}
	if ((rv = h->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                              &h->session)) != CKR_OK) {
		err = p11_fail(rv, "open session");
		goto out_fail;
	}
	rv = h->f->C_Login(h->session, CKU_USER, (CK_UTF8CHAR *)(uintptr_t)pin.ptr,
	                   (CK_ULONG)pin.len);
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		err = p11_fail(rv, "login");
		goto out_fail;
	}
	h->logged_in = true;
	*out = h;
	return CF_OK;
out_fail:
	cf_hsm_close(&h);
	return err;
}

void cf_hsm_close(struct cf_hsm **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_hsm *h = *pp;
	*pp = NULL;
	if (h->f) {
		if (h->logged_in)
			(void)h->f->C_Logout(h->session);
		if (h->session)
			(void)h->f->C_CloseSession(h->session);
		(void)p11_kit_module_finalize(h->f);
		p11_kit_module_release(h->f);
	}
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* The root key object of a version, or 0 when there is none. */
static CK_OBJECT_HANDLE find_rk(struct cf_hsm *h, uint32_t rk_version)
{
	char label[40];
	label_of(rk_version, label, sizeof label);
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, label, strlen(label)}};
	CK_OBJECT_HANDLE o = 0;
	CK_ULONG n = 0;
	if (h->f->C_FindObjectsInit(h->session, t, 2) != CKR_OK)
		return 0;
	if (h->f->C_FindObjects(h->session, &o, 1, &n) != CKR_OK || n != 1)
		o = 0;
	(void)h->f->C_FindObjectsFinal(h->session);
	return o;
}

/* The root key object of a version, or CF_E_NOT_FOUND naming it. Under h->lock. */
static cf_err need_rk(struct cf_hsm *h, uint32_t rk_version, CK_OBJECT_HANDLE *out)
{
	*out = find_rk(h, rk_version);
	return *out ? CF_OK
	            : cf_err_fail(CF_E_NOT_FOUND, "HSM: no root key version %u in the token",
	                          rk_version);
}

cf_err cf_hsm_generate_rk(struct cf_hsm *h, uint32_t rk_version)
{
	cf_err err = CF_OK;
	pthread_mutex_lock(&h->lock);
	if (find_rk(h, rk_version)) {
		err = cf_err_fail(CF_E_CONFLICT, "HSM: the token already holds root key version %u",
		                  rk_version);
		goto out;
	}
	char label[40];
	label_of(rk_version, label, sizeof label);
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	/* ER6: generated in the token, never extractable, never readable in clear */
	CK_ATTRIBUTE t[] = {
	        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &type, sizeof type},
	        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &yes, sizeof yes},
	        {CKA_PRIVATE, &yes, sizeof yes},   {CKA_SENSITIVE, &yes, sizeof yes},
	        {CKA_EXTRACTABLE, &no, sizeof no}, {CKA_ENCRYPT, &yes, sizeof yes},
	        {CKA_DECRYPT, &yes, sizeof yes},   {CKA_LABEL, label, strlen(label)},
	};
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE o;
	CK_RV rv = h->f->C_GenerateKey(h->session, &m, t, sizeof t / sizeof t[0], &o);
	if (rv != CKR_OK)
		err = p11_fail(rv, "generate the root key");
out:
	pthread_mutex_unlock(&h->lock);
	return err;
}

#define HSM_IV 12

cf_err cf_hsm_wrap(struct cf_hsm *h, uint32_t rk_version, struct cf_span ad, struct cf_span key,
                   uint8_t *out, size_t out_cap, size_t *out_len)
{
	size_t need = HSM_IV + key.len + CF_AEAD_TAG;
	CF_ENSURE(out_cap >= need && key.len <= 4096, cf_err_fail(CF_E_INVALID, "HSM wrap sizes"));
	CF_TRY(cf_crypto_random(out, HSM_IV));
	cf_err err = CF_OK;
	pthread_mutex_lock(&h->lock);
	CK_OBJECT_HANDLE rk = 0;
	CF_TRY_OUT(need_rk(h, rk_version, &rk), out);
	CK_GCM_PARAMS gp = {out,    HSM_IV, HSM_IV * 8, (unsigned char *)(uintptr_t)ad.ptr,
	                    ad.len, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof gp};
	CK_ULONG n = (CK_ULONG)(out_cap - HSM_IV);
	CK_RV rv = h->f->C_EncryptInit(h->session, &m, rk);
	if (rv == CKR_OK)
		rv = h->f->C_Encrypt(h->session, (CK_BYTE *)(uintptr_t)key.ptr, key.len,
		                     out + HSM_IV, &n);
	if (rv != CKR_OK) {
		err = p11_fail(rv, "wrap");
		goto out;
	}
	*out_len = HSM_IV + n;
out:
	pthread_mutex_unlock(&h->lock);
	return err;
}

cf_err cf_hsm_unwrap(struct cf_hsm *h, uint32_t rk_version, struct cf_span ad,
                     struct cf_span wrapped, struct cf_secbuf **key_out)
{
	CF_ENSURE(wrapped.len > HSM_IV + CF_AEAD_TAG && wrapped.len <= 4096 + HSM_IV + CF_AEAD_TAG,
	          cf_err_fail(CF_E_INTEGRITY, "HSM: wrapped key of a wrong size"));
	cf_err err = CF_OK;
	struct cf_secbuf *k = NULL, *tmp = NULL;
	size_t klen = wrapped.len - HSM_IV - CF_AEAD_TAG;
	/* Some tokens (SoftHSM2) want room for ciphertext and tag: decrypt into a larger
	 * locked buffer, then keep the key alone. */
	CF_TRY(cf_secbuf_new(wrapped.len - HSM_IV, &tmp));
	CF_TRY_OUT(cf_secbuf_new(klen, &k), out_nolock);
	pthread_mutex_lock(&h->lock);
	CK_OBJECT_HANDLE rk = 0;
	CF_TRY_OUT(need_rk(h, rk_version, &rk), out);
	CK_GCM_PARAMS gp = {(unsigned char *)(uintptr_t)wrapped.ptr, HSM_IV, HSM_IV * 8,
	                    (unsigned char *)(uintptr_t)ad.ptr,      ad.len, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof gp};
	CK_ULONG n = (CK_ULONG)tmp->len;
	CK_RV rv = h->f->C_DecryptInit(h->session, &m, rk);
	if (rv == CKR_OK)
		rv = h->f->C_Decrypt(h->session, (CK_BYTE *)(uintptr_t)wrapped.ptr + HSM_IV,
		                     wrapped.len - HSM_IV, tmp->ptr, &n);
	/* A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID in the standard, 0x35
	 * (AEAD decrypt failed) in PKCS#11 3.0, CKR_GENERAL_ERROR from SoftHSM2. Once
	 * C_DecryptInit has accepted the key and sizes, each means "does not open". */
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
	    rv == 0x35UL || rv == CKR_GENERAL_ERROR) {
		err = cf_err_fail(CF_E_INTEGRITY,
		                  "HSM: the wrapped key does not open (altered, or bound to other "
		                  "data; the token said 0x%lx)",
		                  (unsigned long)rv);
		goto out;
	}
	if (rv != CKR_OK || n != klen) {
		err = rv != CKR_OK ? p11_fail(rv, "unwrap")
		                   : cf_err_fail(CF_E_CRYPTO, "HSM: unwrap size");
		goto out;
	}
	memcpy(k->ptr, tmp->ptr, klen);
	*key_out = k;
	k = NULL;
out:
	pthread_mutex_unlock(&h->lock);
out_nolock:
	cf_secbuf_free(&tmp);
	cf_secbuf_free(&k);
	return err;
}
