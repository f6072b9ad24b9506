/* coffre — secure memory for secrets (ER3).
 *
 * One arena of locked pages, excluded from core dumps (MADV_DONTDUMP) and from child
 * processes (MADV_DONTFORK), carved into power-of-two slots of 32 B .. 4 KiB with a free
 * list per size. A secret larger than a slot gets a locked mapping of its own. Every
 * slot is wiped when freed, before it goes back on its list. If the pages cannot be
 * locked we fail loudly: a key that can reach swap is a key that can reach a disk.
 * mlock and munlock are called through syscall(2): AddressSanitizer replaces the libc
 * functions with no-ops, and a sanitizer build must lock its secrets too. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/base.h"

#define SLOT_CLASSES   8 /* 32, 64, ..., 4096 */
#define SLOT_MIN_SHIFT 5
#define BIG_MAX        (16u * 1024u * 1024u)

struct slot_free {
	struct slot_free *next;
};

static struct {
	pthread_mutex_t lock;
	uint8_t *base;
	size_t size;
	size_t bump;
	size_t in_use;
	struct slot_free *free_list[SLOT_CLASSES];
} arena = {.lock = PTHREAD_MUTEX_INITIALIZER};
/* Bumped at every init and shutdown: per-thread scratch from another generation is void. */
static atomic_uint generation;

void cf_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

static cf_err map_locked(size_t size, uint8_t **out)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return cf_err_fail(CF_E_NOMEM, "mmap of %zu bytes for secrets failed", size);
	if (syscall(SYS_mlock, p, size) != 0) {
		munmap(p, size);
		return cf_err_fail(CF_E_SECMEM,
		                   "cannot lock %zu bytes of memory for secrets (raise the memlock "
		                   "limit: ulimit -l, or LimitMEMLOCK= in the systemd unit)",
		                   size);
	}
	if (madvise(p, size, MADV_DONTDUMP) != 0 || madvise(p, size, MADV_DONTFORK) != 0) {
		(void)syscall(SYS_munlock, p, size);
		munmap(p, size);
		return cf_err_fail(CF_E_SECMEM, "cannot exclude secret memory from core dumps");
	}
	*out = p;
	return CF_OK;
}

static size_t page_round(size_t n)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096u;
	return (n + page - 1) / page * page;
}

cf_err cf_secmem_init(size_t arena_bytes)
{
	cf_err err = CF_OK;
	pthread_mutex_lock(&arena.lock);
	if (arena.base)
		goto out_unlock;
	if (arena_bytes < CF_SECMEM_SLOT_MAX)
		arena_bytes = CF_SECMEM_SLOT_MAX;
	size_t size = page_round(arena_bytes);
	CF_TRY_OUT(map_locked(size, &arena.base), out_unlock);
	arena.size = size;
	arena.bump = 0;
	atomic_fetch_add(&generation, 1);
out_unlock:
	pthread_mutex_unlock(&arena.lock);
	return err;
}

void cf_secmem_shutdown(void)
{
	pthread_mutex_lock(&arena.lock);
	if (arena.base) {
		cf_wipe(arena.base, arena.size);
		(void)syscall(SYS_munlock, arena.base, arena.size);
		munmap(arena.base, arena.size);
	}
	arena.base = NULL;
	atomic_fetch_add(&generation, 1);
	arena.size = arena.bump = arena.in_use = 0;
	memset(arena.free_list, 0, sizeof arena.free_list);
	pthread_mutex_unlock(&arena.lock);
}

static unsigned slot_class(size_t len)
{
	unsigned c = 0;
	while (((size_t)1 << (c + SLOT_MIN_SHIFT)) < len)
		c++;
	return c;
}

cf_err cf_secbuf_new(size_t len, struct cf_secbuf **out)
{
	if (len == 0 || len > BIG_MAX)
		return cf_err_fail(CF_E_INVALID, "secure buffer size %zu out of range", len);
	struct cf_secbuf *sb = calloc(1, sizeof *sb);
	if (!sb)
		return CF_E_NOMEM;
	sb->len = len;
	if (len > CF_SECMEM_SLOT_MAX) {
		cf_err err = map_locked(page_round(len), &sb->ptr);
		if (err) {
			free(sb);
			return err;
		}
		*out = sb;
		return CF_OK;
	}
	unsigned c = slot_class(len);
	size_t slot = (size_t)1 << (c + SLOT_MIN_SHIFT);
	pthread_mutex_lock(&arena.lock);
	if (!arena.base) {
		pthread_mutex_unlock(&arena.lock);
		free(sb);
		return cf_err_fail(CF_E_SECMEM, "secure memory was not initialised");
	}
	if (arena.free_list[c]) {
		struct slot_free *f = arena.free_list[c];
		arena.free_list[c] = f->next;
		sb->ptr = (uint8_t *)f;
	} else if (arena.size - arena.bump >= slot) {
		sb->ptr = arena.base + arena.bump;
		arena.bump += slot;
	}
	if (sb->ptr)
		arena.in_use += slot;
	pthread_mutex_unlock(&arena.lock);
	if (!sb->ptr) {
		free(sb);
		return cf_err_fail(CF_E_SECMEM, "the secure memory arena is full");
	}
	cf_wipe(sb->ptr, slot); /* the free-list link lived here */
	*out = sb;
	return CF_OK;
}

void cf_secbuf_free(struct cf_secbuf **pp)
{
	if (!pp || !*pp)
		return;
	struct cf_secbuf *sb = *pp;
	*pp = NULL;
	if (sb->len > CF_SECMEM_SLOT_MAX) {
		size_t size = page_round(sb->len);
		cf_wipe(sb->ptr, size);
		(void)syscall(SYS_munlock, sb->ptr, size);
		munmap(sb->ptr, size);
	} else {
		unsigned c = slot_class(sb->len);
		size_t slot = (size_t)1 << (c + SLOT_MIN_SHIFT);
		cf_wipe(sb->ptr, slot);
		pthread_mutex_lock(&arena.lock);
		struct slot_free *f = (struct slot_free *)(void *)sb->ptr;
		f->next = arena.free_list[c];
		arena.free_list[c] = f;
		arena.in_use -= slot;
		pthread_mutex_unlock(&arena.lock);
	}
	free(sb);
}

size_t cf_secmem_in_use(void)
{
	pthread_mutex_lock(&arena.lock);
	size_t n = arena.in_use;
	pthread_mutex_unlock(&arena.lock);
	return n;
}

/* Per-thread scratch: one secure buffer per thread for short-lived keys (a DEK while a
 * value is sealed), so that the hot path takes no lock. Returned to the arena when the
 * thread ends; void after the arena is shut down (the generation tells). */
struct scratch {
	struct cf_secbuf *sb;
	unsigned generation;
};
static __thread struct scratch tl_scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *p)
{
	struct scratch *s = p;
	if (s->generation == atomic_load(&generation))
		cf_secbuf_free(&s->sb);
	else
		free(s->sb); /* its memory went with the arena */
	s->sb = NULL;
}

static void scratch_key_make(void)
{
	(void)pthread_key_create(&scratch_key, scratch_release);
}

uint8_t *cf_secmem_scratch(void)
{
	unsigned gen = atomic_load(&generation);
	if (tl_scratch.sb && tl_scratch.generation == gen)
		return tl_scratch.sb->ptr;
	if (tl_scratch.sb) {
		free(tl_scratch.sb);
		tl_scratch.sb = NULL;
	}
	(void)pthread_once(&scratch_once, scratch_key_make);
	if (cf_secbuf_new(CF_SECMEM_SCRATCH, &tl_scratch.sb) != CF_OK)
		return NULL;
	tl_scratch.generation = gen;
	(void)pthread_setspecific(scratch_key, &tl_scratch);
	return tl_scratch.sb->ptr;
}
