/*
 * census: who is connected, counted across the workers of a generation.
 *
 * Layout of the shared region: a header, then one part per worker.  A part
 * is its connection count and an open-addressing table (linear probing) of
 * identity key -> connections.  Only the owning worker writes its part; a
 * key, once in a slot, stays there until the owner rebuilds the table, so
 * a reader's probe for a key can stop at the first empty slot.  A slot
 * whose count fell to 0 is reused for the next new key.
 */
#include "census.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct slot {
	_Atomic uint64_t key; /* 0: never used since the last rebuild */
	_Atomic uint32_t count;
	uint32_t pad;
};

struct part {
	_Atomic uint64_t conns;
	_Atomic bool accepting;
	size_t used; /* slots with a key: the owner's business only */
	struct slot slot[];
};

struct census {
	size_t maplen;
	unsigned nworkers;
	size_t nslots; /* per worker, a power of two, or 0 */
	size_t partlen;
	_Atomic uint32_t drain_ms; /* UINT32_MAX: not set */
	unsigned char seed[16];
	/* then, at HDRLEN, nworkers parts of partlen bytes */
};

/* The header rounded up to a cache line: parts start aligned. */
#define HDRLEN ((sizeof(struct census) + 63) & ~(size_t)63)

static struct part *
part(const struct census *c, unsigned w)
{
	/* Shared memory: the const is about the header, not the parts. */
	return (struct part *)((uintptr_t)c + HDRLEN +
	    (size_t)w * c->partlen);
}

struct census *
census_new(unsigned nworkers, size_t id_slots, const unsigned char seed[16])
{
	struct census *c;
	size_t nslots = 0, partlen, len;
	void *p;

	if (id_slots > 0) {
		nslots = 16;
		while (nslots < id_slots && nslots < ((size_t)1 << 24))
			nslots *= 2;
	}
	/* Parts on their own cache lines: no false sharing of counters. */
	partlen = (sizeof(struct part) + nslots * sizeof(struct slot) + 63) &
	    ~(size_t)63;
	len = HDRLEN + (size_t)nworkers * partlen;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	c = p;
	c->maplen = len;
	c->nworkers = nworkers;
	c->nslots = nslots;
	c->partlen = partlen;
	memcpy(c->seed, seed, sizeof(c->seed));
	atomic_init(&c->drain_ms, UINT32_MAX);
	return c;
}

void
census_free(struct census *c)
{
	if (c != NULL)
		(void)munmap(c, c->maplen);
}

void
census_worker_start(struct census *c, unsigned w)
{
	struct part *p = part(c, w);

	/* Nobody else writes here; readers may see a half-cleared table
	 * for an instant and undercount (see census.h).  "accepting" is the
	 * master's to set (before fork) and ours to clear. */
	atomic_store_explicit(&p->conns, 0, memory_order_relaxed);
	p->used = 0;
	memset(p->slot, 0, c->nslots * sizeof(struct slot));
}

void
census_set_accepting(struct census *c, unsigned w, bool on)
{
	atomic_store_explicit(&part(c, w)->accepting, on,
	    memory_order_release);
}

bool
census_accepting(const struct census *c, unsigned w)
{
	return atomic_load_explicit(&part(c, w)->accepting,
	    memory_order_acquire);
}

void
census_set_drain_ms(struct census *c, uint32_t ms)
{
	atomic_store_explicit(&c->drain_ms, ms, memory_order_release);
}

uint32_t
census_drain_ms(const struct census *c, uint32_t dflt)
{
	uint32_t ms = atomic_load_explicit(&c->drain_ms, memory_order_acquire);

	return ms == UINT32_MAX ? dflt : ms;
}

void
census_conns_set(struct census *c, unsigned w, size_t n)
{
	atomic_store_explicit(&part(c, w)->conns, n, memory_order_relaxed);
}

uint64_t
census_conns_total(const struct census *c)
{
	uint64_t n = 0;
	unsigned w;

	for (w = 0; w < c->nworkers; w++)
		n += atomic_load_explicit(&part(c, w)->conns,
		    memory_order_relaxed);
	return n;
}

static uint64_t
mix(uint64_t h, const char *s)
{
	/* FNV-1a over the string and its terminator. */
	do {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	} while (*s++ != '\0');
	return h;
}

uint64_t
census_id_key(const struct census *c, const char *listener,
    const char *identity)
{
	uint64_t h = 0xcbf29ce484222325ULL, k0, k1;

	memcpy(&k0, c->seed, 8);
	memcpy(&k1, c->seed + 8, 8);
	h = mix(h ^ k0, listener);
	h = mix(h ^ k1, identity);
	/* Finish with splitmix64's avalanche. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h != 0 ? h : 1;
}

/* The slot holding ${key} in part ${p}, or NULL. */
static struct slot *
find(const struct census *c, struct part *p, uint64_t key)
{
	size_t mask = c->nslots - 1, i, n;

	for (i = (size_t)key & mask, n = 0; n < c->nslots;
	    i = (i + 1) & mask, n++) {
		uint64_t k = atomic_load_explicit(&p->slot[i].key,
		    memory_order_acquire);

		if (k == key)
			return &p->slot[i];
		if (k == 0)
			return NULL;
	}
	return NULL;
}

unsigned
census_id_count(const struct census *c, uint64_t key)
{
	unsigned w, n = 0;

	if (c->nslots == 0)
		return 0;
	for (w = 0; w < c->nworkers; w++) {
		struct slot *s = find(c, part(c, w), key);

		if (s != NULL)
			n += atomic_load_explicit(&s->count,
			    memory_order_relaxed);
	}
	return n;
}

/* Insert ${key} with ${count} into part ${p}'s table; NULL if full. */
static struct slot *
insert(const struct census *c, struct part *p, uint64_t key, uint32_t count)
{
	size_t mask = c->nslots - 1, i, n;
	struct slot *reuse = NULL;

	for (i = (size_t)key & mask, n = 0; n < c->nslots;
	    i = (i + 1) & mask, n++) {
		struct slot *s = &p->slot[i];
		uint64_t k = atomic_load_explicit(&s->key,
		    memory_order_relaxed);

		/* The caller made sure ${key} is not in the table. */
		if (k == 0) {
			reuse = s;
			p->used++;
			break;
		}
		if (atomic_load_explicit(&s->count, memory_order_relaxed) == 0) {
			reuse = s;
			break;
		}
	}
	if (reuse == NULL)
		return NULL;
	/* Count first: a reader finding the key must not see an old count. */
	atomic_store_explicit(&reuse->count, count, memory_order_relaxed);
	atomic_store_explicit(&reuse->key, key, memory_order_release);
	return reuse;
}

/* Too few empty slots make probes long: start over with the live keys. */
static void
rebuild(struct census *c, struct part *p)
{
	struct { uint64_t key; uint32_t count; } *live;
	size_t i, n = 0;

	if ((live = calloc(c->nslots, sizeof(*live))) == NULL)
		return; /* keep the long probes; still correct */
	for (i = 0; i < c->nslots; i++) {
		uint32_t count = atomic_load_explicit(&p->slot[i].count,
		    memory_order_relaxed);

		if (count > 0) {
			live[n].key = atomic_load_explicit(&p->slot[i].key,
			    memory_order_relaxed);
			live[n++].count = count;
		}
	}
	memset(p->slot, 0, c->nslots * sizeof(struct slot));
	p->used = 0;
	for (i = 0; i < n; i++)
		(void)insert(c, p, live[i].key, live[i].count);
	free(live);
}

int
census_id_add(struct census *c, unsigned w, uint64_t key)
{
	struct part *p;
	struct slot *s;

	if (c->nslots == 0)
		return -1;
	p = part(c, w);
	if ((s = find(c, p, key)) != NULL) {
		atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
		return 0;
	}
	if (p->used >= c->nslots - c->nslots / 4)
		rebuild(c, p);
	return insert(c, p, key, 1) != NULL ? 0 : -1;
}

void
census_id_del(struct census *c, unsigned w, uint64_t key)
{
	struct slot *s;

	if (c->nslots == 0)
		return;
	if ((s = find(c, part(c, w), key)) != NULL &&
	    atomic_load_explicit(&s->count, memory_order_relaxed) > 0)
		atomic_fetch_sub_explicit(&s->count, 1, memory_order_relaxed);
}
