/*
 * lograte: decide which refusals are logged one by one, and count the rest.
 *
 * One table per listener (in each worker), one slot per reason token: in
 * every window of LOGRATE_WINDOW_MS, the first ${burst} events of a reason
 * are "log in full", the others are counted.  Once the window is over, a
 * reason that counted anything has one summary due: lograte_due() hands it
 * out and starts a new window.  Nothing is lost from the counts: an event
 * that arrives after its window ended, before the summary was taken, goes
 * into that summary (which then covers a little more than a second).
 *
 * A leaf module: no logging, no syscalls, no allocation.  A table is a
 * fixed array that lives inside its owner; tokens are copied into it.  When
 * all LOGRATE_SLOTS are taken, further tokens share the LOGRATE_OTHER slot
 * (the daemon has about 25 refusal tokens, so that does not happen in
 * practice; it bounds memory whatever the caller passes).
 */
#ifndef TLS_ECHOD_LOGRATE_H
#define TLS_ECHOD_LOGRATE_H

#include <stdbool.h>
#include <stdint.h>

#define LOGRATE_WINDOW_MS 1000
#define LOGRATE_SLOTS 32
#define LOGRATE_TOKEN_MAX 32 /* longer tokens go to the "other" slot */
#define LOGRATE_OTHER "other"

struct lograte_slot {
	char token[LOGRATE_TOKEN_MAX]; /* "": unused */
	uint64_t start;      /* the window's start (ms) */
	uint64_t full;       /* logged in full in this window */
	uint64_t suppressed; /* counted since start, not yet summarised */
};

/* Embedded in its owner; set up with lograte_init. */
struct lograte {
	uint64_t burst; /* events per window logged in full */
	unsigned nslots;
	struct lograte_slot slot[LOGRATE_SLOTS];
	struct lograte_slot other;
};

/* One summary: ${suppressed} events of ${token} in the last ${span_ms}. */
struct lograte_summary {
	const char *token; /* in the table: valid while it lives */
	uint64_t suppressed;
	uint64_t span_ms;
};

/**
 * lograte_init(lr, burst):
 * An empty table that lets the first ${burst} events per reason and window
 * through (0: none, every event is counted).
 */
void lograte_init(struct lograte *lr, unsigned burst);

/**
 * lograte_admit(lr, token, now_ms):
 * Record one event of reason ${token} at ${now_ms} (monotonic).  True: log
 * it in full; false: it was counted for the next summary.
 */
bool lograte_admit(struct lograte *lr, const char *token, uint64_t now_ms);

/**
 * lograte_due(lr, now_ms, all, ret):
 * Take one due summary: a reason with counted events whose window is over
 * at ${now_ms} (with ${all}: any reason with counted events, e.g. at stop).
 * Returns true with ${ret} filled and that reason's count reset (its new
 * window starts at ${now_ms}), or false if none is due.  Call it until it
 * returns false.
 */
bool lograte_due(struct lograte *lr, uint64_t now_ms, bool all,
    struct lograte_summary *ret);

#endif
