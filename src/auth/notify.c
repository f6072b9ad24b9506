/* coffre — the notifier: setup and reset links reach their user by email (SMTP through
 * libcurl, TLS required off loopback), or, for development and tests, as JSON files in an
 * outbox folder. Invitations are delivered before the call returns (an admin waits for
 * them); reset links are queued to a thread of their own, so that asking for a reset
 * takes the same time whether or not the account exists (IA5). */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "auth/internal.h"

#define QUEUE_MAX 64

struct msg {
	char to[256], kind[16], tenant[CF_TENANT_NAME_MAX + 1], token[64];
	int64_t expires_at;
};

struct cf_notifier {
	char outbox[CF_PATH_MAX];
	char smtp_url[256], smtp_from[256], smtp_user[128];
	char smtp_password[256];
	char public_url[256];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct msg q[QUEUE_MAX];
	size_t n;
	bool stop, started;
	pthread_t thread;
};

static cf_err to_outbox(struct cf_notifier *nf, const struct msg *m, const char *url)
{
	if (mkdir(nf->outbox, 0700) != 0 && errno != EEXIST)
		return cf_err_fail(CF_E_IO, "notifier: cannot create %s: %s", nf->outbox,
		                   strerror(errno));
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "to", m->to, "kind", m->kind,
	                      "tenant", m->tenant, "url", url, "token", m->token, "expires_at",
	                      (json_int_t)m->expires_at);
	char *text = NULL;
	size_t len = 0;
	cf_err err = o ? cf_json_dump(o, &text, &len) : CF_E_NOMEM;
	json_decref(o);
	CF_TRY(err);
	char id[17], path[CF_PATH_MAX + 64];
	err = cf_random_hex(id, sizeof id, 8);
	(void)snprintf(path, sizeof path, "%s/%lld-%s.json", nf->outbox, (long long)time(NULL), id);
	if (err == CF_OK)
		err = cf_file_write_atomic(path, (const uint8_t *)text, len, 0600);
	cf_wipe(text, len);
	free(text);
	return err;
}

struct upload {
	const char *p;
	size_t left;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ctx)
{
	struct upload *u = ctx;
	size_t n = size * nitems < u->left ? size * nitems : u->left;
	memcpy(buf, u->p, n);
	u->p += n;
	u->left -= n;
	return n;
}

static bool loopback(const char *url)
{
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	return strncmp(h, "127.0.0.1", 9) == 0 || strncmp(h, "localhost", 9) == 0 ||
	       strncmp(h, "[::1]", 5) == 0;
}

static cf_err by_smtp(struct cf_notifier *nf, const struct msg *m, const char *url)
{
	char body[2048], date[64], from[300], rcpt[300];
	time_t now = time(NULL);
	struct tm tm;
	(void)gmtime_r(&now, &tm);
	(void)strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	bool reset = strcmp(m->kind, "reset") == 0;
	bool ops = strcmp(m->tenant, CF_OPS_REALM) == 0;
	int n = snprintf(
	        body, sizeof body,
	        "Date: %s\r\nFrom: %s\r\nTo: %s\r\nSubject: %s\r\n"
	        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
	        "%s %s%s.\r\n\r\n"
	        "Set your password by sending this token to %s\r\n"
	        "(or open the link your administrator's console shows):\r\n\r\n"
	        "  %s\r\n\r\n"
	        "It works once, for %s. If you did not ask for it, ignore this message.\r\n",
	        date, nf->smtp_from, m->to,
	        reset ? "coffre: reset your password" : "coffre: your new account",
	        reset ? "A password reset was asked" : "An account was made for you",
	        ops ? "as an operator of this deployment" : "for tenant ", ops ? "" : m->tenant,
	        url, m->token, reset ? "15 minutes" : "72 hours");
	CF_ENSURE(n > 0 && (size_t)n < sizeof body, CF_E_INTERNAL);
	(void)snprintf(from, sizeof from, "<%s>", nf->smtp_from);
	(void)snprintf(rcpt, sizeof rcpt, "<%s>", m->to);
	CURL *c = curl_easy_init();
	CF_ENSURE(c, CF_E_NOMEM);
	struct curl_slist *to = curl_slist_append(NULL, rcpt);
	struct upload up = {body, (size_t)n};
	(void)curl_easy_setopt(c, CURLOPT_URL, nf->smtp_url);
	(void)curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	(void)curl_easy_setopt(c, CURLOPT_MAIL_RCPT, to);
	(void)curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
	(void)curl_easy_setopt(c, CURLOPT_READDATA, &up);
	(void)curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	(void)curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	(void)curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* The token is a secret: off this machine it travels over TLS only (smtps://, or
	 * STARTTLS required). */
	if (!loopback(nf->smtp_url))
		(void)curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	if (nf->smtp_user[0]) {
		(void)curl_easy_setopt(c, CURLOPT_USERNAME, nf->smtp_user);
		(void)curl_easy_setopt(c, CURLOPT_PASSWORD, nf->smtp_password);
	}
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(to);
	curl_easy_cleanup(c);
	cf_wipe(body, sizeof body);
	CF_ENSURE(rc == CURLE_OK, cf_err_fail(CF_E_IO, "notifier: SMTP delivery failed: %s",
	                                      curl_easy_strerror(rc)));
	return CF_OK;
}

static cf_err deliver(struct cf_notifier *nf, const struct msg *m)
{
	char url[512];
	if (strcmp(m->tenant, CF_OPS_REALM) == 0)
		(void)snprintf(url, sizeof url, "%s/v1/operator/setup", nf->public_url);
	else
		(void)snprintf(url, sizeof url, "%s/v1/t/%s/auth/setup", nf->public_url, m->tenant);
	return nf->smtp_url[0] ? by_smtp(nf, m, url)
	       : nf->outbox[0] ? to_outbox(nf, m, url)
	                       : CF_OK;
}

static void *notifier_main(void *arg)
{
	struct cf_notifier *nf = arg;
	pthread_mutex_lock(&nf->mu);
	for (;;) {
		while (!nf->n && !nf->stop)
			pthread_cond_wait(&nf->cv, &nf->mu);
		if (!nf->n)
			break;
		struct msg m = nf->q[0];
		memmove(nf->q, nf->q + 1, (nf->n - 1) * sizeof nf->q[0]);
		nf->n--;
		cf_wipe(&nf->q[nf->n], sizeof nf->q[0]);
		pthread_mutex_unlock(&nf->mu);
		if (deliver(nf, &m) != CF_OK)
			cf_log(CF_LOG_ERROR, NULL, "notify_failed",
			       "a %s message was not delivered: %s", m.kind, cf_err_detail());
		cf_wipe(&m, sizeof m);
		pthread_mutex_lock(&nf->mu);
	}
	pthread_mutex_unlock(&nf->mu);
	return NULL;
}

cf_err auth_notifier_new(const struct cf_auth_opts *o, struct cf_notifier **out)
{
	/* Thread-safe since curl 7.84 (Debian 12 has 7.88); idempotent. */
	CF_ENSURE(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK,
	          cf_err_fail(CF_E_INTERNAL, "libcurl could not start"));
	/* Thread-safe since curl 7.84 (Debian 12 has 7.88); idempotent. */
	CF_ENSURE(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK,
	          cf_err_fail(CF_E_INTERNAL, "libcurl could not start"));
	struct cf_notifier *nf = calloc(1, sizeof *nf);
	CF_ENSURE(nf, CF_E_NOMEM);
	(void)snprintf(nf->outbox, sizeof nf->outbox, "%s", o->outbox ? o->outbox : "");
	(void)snprintf(nf->smtp_url, sizeof nf->smtp_url, "%s", o->smtp_url ? o->smtp_url : "");
	(void)snprintf(nf->smtp_from, sizeof nf->smtp_from, "%s",
	               o->smtp_from && o->smtp_from[0] ? o->smtp_from : "coffre@localhost");
	(void)snprintf(nf->smtp_user, sizeof nf->smtp_user, "%s", o->smtp_user ? o->smtp_user : "");
	(void)snprintf(nf->public_url, sizeof nf->public_url, "%s",
	               o->public_url ? o->public_url : "https://localhost");
	cf_err err = CF_OK;
	if (o->smtp_password_file && o->smtp_password_file[0]) {
		struct cf_buf b;
		err = cf_file_read(o->smtp_password_file, sizeof nf->smtp_password - 1, &b);
		if (err == CF_OK) {
			size_t len = b.len;
			while (len && (b.data[len - 1] == '\n' || b.data[len - 1] == '\r'))
				len--;
			memcpy(nf->smtp_password, b.data, len);
			cf_wipe(b.data, b.len);
			cf_buf_free(&b);
		}
	}
	pthread_mutex_init(&nf->mu, NULL);
	pthread_cond_init(&nf->cv, NULL);
	if (err == CF_OK && pthread_create(&nf->thread, NULL, notifier_main, nf) == 0)
		nf->started = true;
	else if (err == CF_OK)
		err = cf_err_fail(CF_E_INTERNAL, "notifier: no thread");
	if (err) {
		auth_notifier_free(&nf);
		return err;
	}
	*out = nf;
	return CF_OK;
}

void auth_notifier_free(struct cf_notifier **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_notifier *nf = *pp;
	*pp = NULL;
	if (nf->started) {
		pthread_mutex_lock(&nf->mu);
		nf->stop = true;
		pthread_cond_signal(&nf->cv);
		pthread_mutex_unlock(&nf->mu);
		pthread_join(nf->thread, NULL);
	}
	pthread_mutex_destroy(&nf->mu);
	pthread_cond_destroy(&nf->cv);
	cf_wipe(nf, sizeof *nf);
	free(nf);
}

void auth_notifier_set_url(struct cf_notifier *nf, const char *url)
{
	pthread_mutex_lock(&nf->mu);
	(void)snprintf(nf->public_url, sizeof nf->public_url, "%s", url);
	pthread_mutex_unlock(&nf->mu);
}

static void fill(struct msg *m, const char *to, const char *kind, const char *tenant,
                 const char *token, int64_t expires_at)
{
	(void)snprintf(m->to, sizeof m->to, "%s", to);
	(void)snprintf(m->kind, sizeof m->kind, "%s", kind);
	(void)snprintf(m->tenant, sizeof m->tenant, "%s", tenant);
	(void)snprintf(m->token, sizeof m->token, "%s", token);
	m->expires_at = expires_at;
}

cf_err auth_notify_now(struct cf_notifier *nf, const char *to, const char *kind, const char *tenant,
                       const char *token, int64_t expires_at)
{
	struct msg m = {0};
	fill(&m, to, kind, tenant, token, expires_at);
	cf_err err = deliver(nf, &m);
	cf_wipe(&m, sizeof m);
	return err;
}

void auth_notify_later(struct cf_notifier *nf, const char *to, const char *kind, const char *tenant,
                       const char *token, int64_t expires_at)
{
	pthread_mutex_lock(&nf->mu);
	if (nf->n < QUEUE_MAX) {
		fill(&nf->q[nf->n++], to, kind, tenant, token, expires_at);
		pthread_cond_signal(&nf->cv);
	} else {
		cf_log(CF_LOG_WARN, NULL, "notify_dropped",
		       "the notifier's queue is full: a %s message was dropped", kind);
	}
	pthread_mutex_unlock(&nf->mu);
}
