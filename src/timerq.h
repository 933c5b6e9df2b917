/*
 * timerq: one worker's deadlines, in a binary min-heap.
 *
 * Every connection has at most one deadline (handshake, idle, linger,
 * connect, close); a worker asks for the nearest one to size its epoll wait
 * and pops the ones that passed.  No syscalls, no allocation per deadline:
 * an entry lives inside its owner and the heap is an array of pointers
 * grown in advance (timerq_reserve) so that setting a deadline never fails.
 *
 * Pushing a deadline later, which an idle timeout does on every read, is
 * lazy: the entry keeps its place and is re-filed when its old time comes.
 * With 10,000 busy connections that is one comparison per I/O, not a
 * sift through the heap.
 */
#ifndef TLS_ECHOD_TIMERQ_H
#define TLS_ECHOD_TIMERQ_H

#include <stddef.h>
#include <stdint.h>

/* Embedded in its owner; zero-initialised means "no deadline". */
struct timerq_entry {
	uint64_t due; /* the deadline (ms); 0: none */
	uint64_t key; /* when the heap looks at it again: <= due */
	size_t pos;   /* index in the heap + 1; 0: not queued */
};

struct timerq {
	struct timerq_entry **heap;
	size_t n, cap;
};

/**
 * timerq_init(q):
 * An empty queue.
 */
void timerq_init(struct timerq *q);

/**
 * timerq_free(q):
 * Free the queue's array (not the entries, which belong to their owners).
 */
void timerq_free(struct timerq *q);

/**
 * timerq_reserve(q, n):
 * Make room for ${n} queued entries.  Returns 0, or -1 (out of memory).
 */
int timerq_reserve(struct timerq *q, size_t n);

/**
 * timerq_set(q, e, due):
 * Give ${e} the deadline ${due} (ms, monotonic), or none if ${due} is 0.
 * The queue must have room (timerq_reserve) for ${e} if it is not queued.
 */
void timerq_set(struct timerq *q, struct timerq_entry *e, uint64_t due);

/**
 * timerq_next(q):
 * A time (ms) at or before the earliest deadline, or 0 if there is none.
 */
uint64_t timerq_next(const struct timerq *q);

/**
 * timerq_pop(q, now):
 * Remove and return an entry whose deadline is at or before ${now}, or NULL
 * if none is.  The entry's due is left as it was, for the caller to read.
 */
struct timerq_entry *timerq_pop(struct timerq *q, uint64_t now);

#endif
