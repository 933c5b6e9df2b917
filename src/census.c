/*
 * census: who is connected, counted across the workers of a generation.
 *
 * Layout of the shared region: one part per worker, nothing else (sizes
 * and offsets stay in private memory).  A part is its connection count and
 * an open-addressing table (linear probing) of identity key -> connections.  Only the owning worker writes its part; a
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

/* What lives in shared memory: one of these per worker, and nothing else. */
struct part {
	_Atomic uint64_t conns;
	struct slot slot[];
};

/*
 * The layout, in each process's private memory (the master's, inherited
 * copy-on-write by its workers): a worker can rewrite every shared byte,
 * never where the parts are, how big, or how many.  The master reads only
 * connection counts there, clamped to max_conns.
 */
struct census {
	unsigned char *map;  /* the shared parts */
	size_t maplen;
	unsigned nworkers;
	size_t nslots;       /* per worker, a power of two, or 0 */
	size_t partlen;
	uint64_t max_conns;  /* what a worker may hold: larger counts lie */
	size_t *used;        /* per worker: slots with a key (the owner's) */
	unsigned char seed[16];
};

static struct part *
part(const struct census *c, unsigned w)
{
	return (struct part *)(void *)(c->map + (size_t)w * c->partlen);
}

struct census *
census_new(unsigned nworkers, size_t id_slots, uint64_t max_conns,
    const unsigned char seed[16])
{
	struct census *c;
	size_t nslots = 0, partlen;
	void *p;

	if (nworkers == 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if (id_slots > 0) {
		nslots = 16;
		while (nslots < id_slots && nslots < ((size_t)1 << 24))
			nslots *= 2;
	}
	/* Parts on their own cache lines: no false sharing of counters. */
	partlen = (sizeof(struct part) + nslots * sizeof(struct slot) + 63) &
	    ~(size_t)63;
	c->maplen = (size_t)nworkers * partlen;
	p = mmap(NULL, c->maplen, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || (c->used = calloc(nworkers,
	    sizeof(*c->used))) == NULL) {
		if (p != MAP_FAILED)
			(void)munmap(p, c->maplen);
		free(c);
		return NULL;
	}
	c->map = p;
	c->nworkers = nworkers;
	c->nslots = nslots;
	c->partlen = partlen;
	c->max_conns = max_conns;
	memcpy(c->seed, seed, sizeof(c->seed));
	return c;
}

void
census_free(struct census *c)
{
	if (c == NULL)
		return;
	(void)munmap(c->map, c->maplen);
	free(c->used);
	explicit_bzero(c->seed, sizeof(c->seed));
	free(c);
}

void
census_worker_start(struct census *c, unsigned w)
{
	struct part *p;

	if (w >= c->nworkers)
		return;
	p = part(c, w);
	/* Nobody else writes here; readers may see a half-cleared table
	 * for an instant and undercount (see census.h). */
	atomic_store_explicit(&p->conns, 0, memory_order_relaxed);
	c->used[w] = 0;
	memset(p->slot, 0, c->nslots * sizeof(struct slot));
}

void
census_conns_set(struct census *c, unsigned w, size_t n)
{
	if (w < c->nworkers)
		atomic_store_explicit(&part(c, w)->conns, n,
		    memory_order_relaxed);
}

uint64_t
census_conns_total(const struct census *c)
{
	uint64_t n = 0, k;
	unsigned w;

	for (w = 0; w < c->nworkers; w++) {
		k = atomic_load_explicit(&part(c, w)->conns,
		    memory_order_relaxed);
		n += k < c->max_conns ? k : c->max_conns;
	}
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
		uint32_t k;

		if (s == NULL)
			continue;
		/* Other workers' counts: clamped, so a sum cannot wrap. */
		k = atomic_load_explicit(&s->count, memory_order_relaxed);
		n += k < c->max_conns ? k : (unsigned)c->max_conns;
	}
	return n;
}

/* Insert ${key} with ${count} into worker ${w}'s table; NULL if full. */
static struct slot *
insert(struct census *c, unsigned w, uint64_t key, uint32_t count)
{
	struct part *p = part(c, w);
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
			c->used[w]++;
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
rebuild(struct census *c, unsigned w)
{
	struct part *p = part(c, w);
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
	c->used[w] = 0;
	for (i = 0; i < n; i++)
		(void)insert(c, w, live[i].key, live[i].count);
	free(live);
}

int
census_id_add(struct census *c, unsigned w, uint64_t key)
{
	struct part *p;
	struct slot *s;

	if (c->nslots == 0 || w >= c->nworkers)
		return -1;
	p = part(c, w);
	if ((s = find(c, p, key)) != NULL) {
		atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
		return 0;
	}
	if (c->used[w] >= c->nslots - c->nslots / 4)
		rebuild(c, w);
	return insert(c, w, key, 1) != NULL ? 0 : -1;
}

void
census_id_del(struct census *c, unsigned w, uint64_t key)
{
	struct slot *s;

	if (c->nslots == 0 || w >= c->nworkers)
		return;
	if ((s = find(c, part(c, w), key)) != NULL &&
	    atomic_load_explicit(&s->count, memory_order_relaxed) > 0)
		atomic_fetch_sub_explicit(&s->count, 1, memory_order_relaxed);
}
