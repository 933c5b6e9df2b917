/*
 * metrics: the master's view of every worker's counters, and the
 * Prometheus text exposition of them (format 0.0.4).
 *
 * Each worker process gets its own stats region (stats.h).  The master
 * keeps, in private memory, what it last saw of each live worker's
 * counters and, per listener name, the totals of workers that are gone.
 * A read never trusts the worker: a counter that went down counts as no
 * progress, one that went up grows by at most what a worker could do in
 * the time since the last read (so a lying worker can inflate its own
 * numbers, slowly, and nothing else), and the connections gauge is clamped
 * to the listener's max_connections.  When a worker exits, the last values
 * seen are folded into its listeners' totals: counters never go backwards,
 * across worker restarts and reloads alike.  Histograms keep bucket counts
 * (not cumulative) and derive _count from them, so what is printed is
 * consistent whatever a worker wrote.
 *
 * Depends on stats and config only; never logs.
 */
#ifndef TLS_ECHOD_METRICS_H
#define TLS_ECHOD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct metrics;
struct metrics_src;
struct stats;

/* A date the master knows from the TLS material it loaded. */
struct metrics_date {
	const char *listener;
	const char *kind; /* "server", "ca", "backend_ca", "backend_client";
	                     NULL for a CRL */
	const char *name; /* subject, or the CRL's issuer */
	int64_t when;     /* Unix time: expiry, or the CRL's next update */
};

/* What only the master knows. */
struct metrics_facts {
	uint64_t reloads_ok, reloads_failed;
	int64_t last_reload_ok;   /* Unix time of the last successful load */
	uint64_t worker_restarts; /* workers that died and were restarted */
	unsigned generation;
	unsigned workers, draining;
	const struct metrics_date *dates;
	size_t ndates;
};

/**
 * metrics_new():
 * An empty registry, or NULL (out of memory).
 */
struct metrics *metrics_new(void);

/**
 * metrics_free(m):
 * Free ${m} and every worker's region it still holds.  NULL is a no-op.
 */
void metrics_free(struct metrics *m);

/**
 * metrics_free_in_worker(m):
 * In a worker, at exit: free the master's copy of ${m} without touching
 * any region (the worker's own goes with the process; the others it never
 * had).  NULL is a no-op.
 */
void metrics_free_in_worker(struct metrics *m);

/**
 * metrics_src_new(m, c, now_ms):
 * Counters for one worker of a generation with configuration ${c}, right
 * before its fork; NULL (out of memory, errno set).  ${c} is not kept.
 */
struct metrics_src *metrics_src_new(struct metrics *m, const struct cfg *c,
    uint64_t now_ms);

/**
 * metrics_src_stats(s):
 * The region for the worker (worker_args.stats).
 */
struct stats *metrics_src_stats(const struct metrics_src *s);

/**
 * metrics_src_forked(s):
 * Right after the fork, in the master: later workers do not inherit this
 * region.  0, or -1 with errno set.
 */
int metrics_src_forked(struct metrics_src *s);

/**
 * metrics_src_done(m, s, now_ms):
 * The worker of ${s} is gone (or never started): fold what it counted into
 * the totals and free ${s}.  NULL is a no-op.
 */
void metrics_src_done(struct metrics *m, struct metrics_src *s,
    uint64_t now_ms);

/**
 * metrics_total(m, listener, k, now_ms):
 * Counter ${k} (enum stats_counter) of listener ${listener}: the folded
 * totals plus what the live workers show now.  For tests and STATUS=.
 */
uint64_t metrics_total(struct metrics *m, const char *listener, int k,
    uint64_t now_ms);

/**
 * metrics_render(m, f, now_ms, ret_body, ret_len):
 * The exposition of every metric: a malloc'ed text the caller frees.  0,
 * or -1 (out of memory).
 */
int metrics_render(struct metrics *m, const struct metrics_facts *f,
    uint64_t now_ms, char **ret_body, size_t *ret_len);

/**
 * metrics_escape(in, out, len):
 * ${in} as a label value: backslash, double quote and newline escaped,
 * bytes that are not UTF-8 replaced by '?'.  Cut short (whole characters
 * only) to fit ${len}; returns ${out}.
 */
char *metrics_escape(const char *in, char *out, size_t len);

#endif
