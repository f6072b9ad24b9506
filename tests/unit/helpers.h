/* coffre — what several unit tests share: a real PostgreSQL's superuser statements, a
 * fresh SoftHSM2 token, and asserting CF_OK with the error's detail. Include after
 * cmocka.h. */
#ifndef CF_TEST_HELPERS_H
#define CF_TEST_HELPERS_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"

#define S(str)  ((struct cf_span){(const uint8_t *)(str), sizeof(str) - 1})
#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

#define OK(x)                                                                                      \
	do {                                                                                       \
		cf_err e_ = (x);                                                                   \
		if (e_ != CF_OK)                                                                   \
			fail_msg("%s: %s: %s", #x, cf_err_name(e_), cf_err_detail());              \
	} while (0)

static inline void pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Runs one statement as the test PostgreSQL's superuser (CREATE/DROP DATABASE). */
static inline void pg_admin(const char *super_url, const char *sql)
{
	PGconn *c = PQconnectdb(super_url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PQsetNoticeProcessor(c, pg_quiet, NULL);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* A fresh SoftHSM2 token labelled label (user PIN 123456) in the folder dir (a mkdtemp
 * template), made the process's SOFTHSM2_CONF. */
static inline bool softhsm_token(char *dir, const char *label)
{
	char conf[128], cmd[512];
	if (!mkdtemp(dir))
		return false;
	(void)snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
	FILE *f = fopen(conf, "w");
	if (!f)
		return false;
	fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
	        dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", conf, 1);
	(void)snprintf(cmd, sizeof cmd,
	               "softhsm2-util --init-token --free --label %s --pin 123456 "
	               "--so-pin 12345678 >/dev/null 2>&1",
	               label);
	FILE *p = popen(cmd, "r");
	return p && pclose(p) == 0;
}

#endif
