/*
 * census: who is connected, counted across the workers of a generation.
 *
 * The master maps one anonymous shared region per generation before it
 * forks that generation's workers.  Each worker writes only its own part
 * (its connection count and a table of connections per client identity)
 * and reads everybody's: no locks, and a worker that dies takes nothing
 * with it, because its replacement clears its part before serving.  The
 * master reads the connection counts for STATUS=.
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
 * census_new(nworkers, id_slots, seed):
 * A shared region for ${nworkers} workers, each with room for ${id_slots}
 * distinct identities at once (0: no identity tables), hashing with the
 * 16 bytes at ${seed}.  Returns NULL (errno set) on failure.  Call it
 * before fork: children share it.
 */
struct census *census_new(unsigned nworkers, size_t id_slots,
    const unsigned char seed[16]);

/**
 * census_free(c):
 * Unmap this process's view of ${c}.  NULL is a no-op.
 */
void census_free(struct census *c);

/**
 * census_worker_start(c, w):
 * Worker ${w} takes its part: clears the counts a previous worker ${w}
 * left (not the accepting flag: see census_set_accepting).
 */
void census_worker_start(struct census *c, unsigned w);

/**
 * census_set_accepting(c, w, on):
 * Worker ${w} may take new connections: the master sets this before it
 * forks the worker (which may take a while to reach its loop); the worker
 * clears it once its listening sockets are closed.
 */
void census_set_accepting(struct census *c, unsigned w, bool on);

/**
 * census_accepting(c, w):
 * Whether worker ${w} may still take new connections.
 */
bool census_accepting(const struct census *c, unsigned w);

/**
 * census_set_drain_ms(c, ms), census_drain_ms(c, dflt):
 * The master's word to a retired generation: how long its connections may
 * still take (the new configuration's drain_timeout); ${dflt} if unset.
 */
void census_set_drain_ms(struct census *c, uint32_t ms);
uint32_t census_drain_ms(const struct census *c, uint32_t dflt);

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
