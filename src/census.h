/*
 * census: who is connected, counted across the workers of a generation.
 *
 * The master maps one anonymous shared region per generation before it
 * forks that generation's workers.  Each worker writes only its own part
 * (its connection count and a table of connections per client identity)
 * and reads everybody's: no locks, and a worker that dies takes nothing
 * with it, because the master clears its part before its replacement
 * serves.  The master reads the connection counts for STATUS=.
 *
 * The census counts, and nothing else: control between master and workers
 * travels on their socket pairs.  The region's size and layout are kept in
 * each process's private memory; a worker may scribble over the whole
 * region (it is the untrusted side) and the master still never derives an
 * address, length or loop bound from it, and clamps every count it reads.
 *
 * Sums read while other workers write are a snapshot, not a transaction:
 * two workers admitting the same identity in the same microsecond may
 * both see room for one more.  Identities are hashed (64 bits, keyed per
 * region); distinct identities colliding would share a count.
 */
#ifndef TLS_ECHOD_CENSUS_H
#define TLS_ECHOD_CENSUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct census;

/**
 * census_new(nworkers, id_slots, max_conns, seed):
 * A shared region for ${nworkers} workers, each with room for ${id_slots}
 * distinct identities at once (0: no identity tables) and holding at most
 * ${max_conns} connections (larger counts read as that), hashing with the
 * 16 bytes at ${seed}.  Returns NULL on failure.  Call it before fork:
 * children share the region and inherit a private copy of its layout.
 */
struct census *census_new(unsigned nworkers, size_t id_slots,
    uint64_t max_conns, const unsigned char seed[16]);

/**
 * census_free(c):
 * Unmap this process's view of ${c} and free its layout.  NULL is a no-op.
 */
void census_free(struct census *c);

/**
 * census_worker_start(c, w):
 * Clear worker ${w}'s part: its counts died with it (the master, when it
 * reaps the worker) or it starts afresh (the worker, before serving).
 */
void census_worker_start(struct census *c, unsigned w);

/**
 * census_conns_set(c, w, n):
 * Worker ${w} now has ${n} connections.
 */
void census_conns_set(struct census *c, unsigned w, size_t n);

/**
 * census_conns_total(c):
 * Connections of all workers of the generation.
 */
uint64_t census_conns_total(const struct census *c);

/**
 * census_id_key(c, listener, identity):
 * The key counting ${identity} on ${listener}.
 */
uint64_t census_id_key(const struct census *c, const char *listener,
    const char *identity);

/**
 * census_id_count(c, key):
 * Connections of identity ${key}, summed over all workers.
 */
unsigned census_id_count(const struct census *c, uint64_t key);

/**
 * census_id_add(c, w, key):
 * Worker ${w} holds one more connection of ${key}.  Returns 0, or -1 if its
 * table is full (the caller refuses the connection).
 */
int census_id_add(struct census *c, unsigned w, uint64_t key);

/**
 * census_id_del(c, w, key):
 * Worker ${w} holds one connection of ${key} less (after census_id_add).
 */
void census_id_del(struct census *c, unsigned w, uint64_t key);

#endif
