/*
 * stats: one worker's counters, in memory it shares with the master alone.
 *
 * The master maps a region for each worker process just before it forks
 * that worker, and marks it "not inherited" (MADV_DONTFORK) right after:
 * the worker sees its own counters and no other worker's, and no worker
 * forked later inherits them.  The region is one block of STATS_N
 * fixed-size 64-bit counters per listener of the worker's generation.
 * The worker, the only writer, bumps them with plain relaxed atomic stores
 * (no lock, no read-modify-write bus lock on the data path); the master
 * reads them with relaxed loads whenever it likes.
 *
 * The region's size and its number of blocks live in each process's
 * private memory: a worker can write anything over its region, never make
 * the master read outside it.  What the numbers mean is the master's
 * business (metrics.c clamps them and keeps them monotonic).  Leaf module:
 * libc only, no logging.
 */
#ifndef TLS_ECHOD_STATS_H
#define TLS_ECHOD_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The refusal reasons counted one by one (CLOSE_REASON tokens); the rest
 * count as "other". */
#define STATS_NREFUSAL 25
/* Backend failures (CLOSE_REASON tokens of a relay that could not relay). */
#define STATS_NBACKEND 5
/* Histogram buckets: STATS_NBOUNDS upper bounds, then +Inf. */
#define STATS_NBOUNDS 14
#define STATS_NBUCKETS (STATS_NBOUNDS + 1)

/* Where each counter sits in a listener's block. */
enum stats_counter {
	STATS_CONNS = 0,        /* connections accepted */
	STATS_ACTIVE,           /* a gauge: connections open now */
	STATS_HS,               /* 4: [TLS 1.2, 1.3] x [full, resumed] */
	STATS_BYTES_IN = STATS_HS + 4, /* read from clients */
	STATS_BYTES_OUT,        /* written to clients */
	STATS_REFUSAL,          /* STATS_NREFUSAL, by stats_refusal_index */
	STATS_BACKEND = STATS_REFUSAL + STATS_NREFUSAL, /* STATS_NBACKEND */
	STATS_HS_BUCKET = STATS_BACKEND + STATS_NBACKEND, /* STATS_NBUCKETS,
	                           not cumulative */
	STATS_HS_SUM_US = STATS_HS_BUCKET + STATS_NBUCKETS,
	STATS_BE_BUCKET,        /* backend connect: STATS_NBUCKETS */
	STATS_BE_SUM_US = STATS_BE_BUCKET + STATS_NBUCKETS,
	STATS_N,
};

/* One listener's counters, as they lie in shared memory. */
struct stats_block {
	_Atomic uint64_t v[STATS_N];
};

struct stats;

/* Histogram upper bounds, microseconds (0.5 ms ... 10 s). */
extern const uint64_t stats_bounds_us[STATS_NBOUNDS];
/* Refusal tokens, STATS_NREFUSAL of them; the last is "other". */
extern const char *const stats_refusal_names[STATS_NREFUSAL];
/* Backend failure tokens, STATS_NBACKEND of them. */
extern const char *const stats_backend_names[STATS_NBACKEND];

/**
 * stats_new(nblocks):
 * A zeroed shared region of ${nblocks} listener blocks (at least one is
 * made), or NULL with errno set.  Call it in the master right before the
 * fork of the worker that will own it, then stats_sealed() in the master.
 */
struct stats *stats_new(size_t nblocks);

/**
 * stats_sealed(s):
 * In the master after the fork: processes forked from now on do not
 * inherit ${s}'s region.  0, or -1 with errno set (the region is then
 * inherited by later workers: they could read, not hide, its counts).
 */
int stats_sealed(struct stats *s);

/**
 * stats_free(s):
 * Unmap ${s}'s region and free it.  NULL is a no-op.
 */
void stats_free(struct stats *s);

/**
 * stats_forget(s):
 * Free ${s} without unmapping: for a worker holding the master's copy of
 * another worker's ${s}, whose region it never had (its address may hold
 * one of the worker's own mappings by now).  NULL is a no-op.
 */
void stats_forget(struct stats *s);

/**
 * stats_block(s, i):
 * Block ${i} of ${s}, or NULL if there is no such block.
 */
struct stats_block *stats_block(struct stats *s, size_t i);

/**
 * stats_nblocks(s):
 * How many blocks ${s} has (from private memory).
 */
size_t stats_nblocks(const struct stats *s);

/**
 * stats_read(s, i, out):
 * Copy block ${i}'s counters as they are now into ${out} (STATS_N values,
 * each read atomically; zeros if there is no such block).  Values are
 * whatever the worker wrote: the caller validates them.
 */
void stats_read(const struct stats *s, size_t i, uint64_t out[STATS_N]);

/**
 * stats_refusal_index(token):
 * The refusal counter of CLOSE_REASON ${token}: its index in
 * stats_refusal_names, "other" for a token not listed.
 */
size_t stats_refusal_index(const char *token);

/**
 * stats_backend_index(token):
 * The backend failure counter of ${token}, or -1 if it is not one.
 */
int stats_backend_index(const char *token);

/**
 * stats_bucket(us):
 * The histogram bucket of a duration of ${us} microseconds.
 */
size_t stats_bucket(uint64_t us);

/**
 * stats_add(b, k, n):
 * Owner only: counter ${k} of block ${b} grows by ${n}.  ${b} NULL: no-op.
 */
static inline void
stats_add(struct stats_block *b, enum stats_counter k, uint64_t n)
{
	if (b == NULL)
		return;
	/* One writer: load and store, no locked read-modify-write. */
	atomic_store_explicit(&b->v[k], atomic_load_explicit(&b->v[k],
	    memory_order_relaxed) + n, memory_order_relaxed);
}

/**
 * stats_set(b, k, n):
 * Owner only: counter ${k} of block ${b} (a gauge) is now ${n}.
 */
static inline void
stats_set(struct stats_block *b, enum stats_counter k, uint64_t n)
{
	if (b != NULL)
		atomic_store_explicit(&b->v[k], n, memory_order_relaxed);
}

/**
 * stats_observe(b, bucket0, sum, us):
 * Owner only: one observation of ${us} microseconds in the histogram whose
 * buckets start at ${bucket0} and whose sum is counter ${sum}.
 */
static inline void
stats_observe(struct stats_block *b, enum stats_counter bucket0,
    enum stats_counter sum, uint64_t us)
{
	if (b == NULL)
		return;
	stats_add(b, (enum stats_counter)(bucket0 + stats_bucket(us)), 1);
	stats_add(b, sum, us);
}

#endif
