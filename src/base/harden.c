/* coffre — process hardening and random ids. */
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <gnutls/crypto.h>

#include "base/base.h"

cf_err cf_harden_process(void)
{
	/* ER3: no core file, and not dumpable (no ptrace by other users, no /proc/PID/mem),
	 * so keys in memory cannot be read through a crash dump. */
	struct rlimit rl = {0, 0};
	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		return cf_err_fail(CF_E_INTERNAL, "cannot set the core file limit to 0");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return cf_err_fail(CF_E_INTERNAL, "cannot make the process non-dumpable");
	/* Each connection is a descriptor: raise the soft limit to the hard one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	return CF_OK;
}

cf_err cf_random_hex(char *buf, size_t cap, size_t nbytes)
{
	uint8_t raw[64];
	if (nbytes > sizeof raw || cap < 2 * nbytes + 1)
		return CF_E_INVALID;
	if (gnutls_rnd(GNUTLS_RND_NONCE, raw, nbytes) != 0)
		return cf_err_fail(CF_E_CRYPTO, "the random generator failed");
	cf_hex_encode(raw, nbytes, buf);
	return CF_OK;
}
