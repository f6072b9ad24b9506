/* coffre — clocks, and whether the kernel says the wall clock is synchronised (AL6). */
#include <stdatomic.h>
#include <stdio.h>
#include <sys/timex.h>
#include <time.h>

#include "base/base.h"

uint64_t cf_now_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t cf_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cf_time_format_us(int64_t us, char *buf, size_t cap)
{
	time_t secs = (time_t)(us / 1000000);
	long frac = (long)(us % 1000000);
	if (frac < 0) {
		frac += 1000000;
		secs -= 1;
	}
	struct tm tm;
	if (!gmtime_r(&secs, &tm)) {
		(void)snprintf(buf, cap, "invalid-time");
		return;
	}
	(void)snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
	               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void cf_clock_state(struct cf_clock_state *st)
{
	/* adjtimex with modes = 0 only reads. TIME_ERROR, or STA_UNSYNC in the status, is
	 * how the kernel says no NTP daemon keeps this clock disciplined. */
	struct timex tx = {.modes = 0};
	int state = adjtimex(&tx);
	st->synchronized = state >= 0 && state != TIME_ERROR && !(tx.status & STA_UNSYNC);
	st->max_error_us = tx.maxerror;
	st->est_error_us = tx.esterror;
}

bool cf_clock_synchronized(void)
{
	/* the time of the last asking (0: never) and its answer; a race only asks twice */
	static _Atomic uint64_t asked_ns;
	static atomic_bool answer;
	uint64_t now = cf_now_mono_ns(),
	         then = atomic_load_explicit(&asked_ns, memory_order_acquire);
	if (then && now - then < 1000000000u)
		return atomic_load_explicit(&answer, memory_order_relaxed);
	struct cf_clock_state st;
	cf_clock_state(&st);
	atomic_store_explicit(&answer, st.synchronized, memory_order_relaxed);
	atomic_store_explicit(&asked_ns, now ? now : 1, memory_order_release);
	return st.synchronized;
}
