/*
 * check_lograte: which refusals are logged one by one, and the counts of
 * the rest (src/lograte.c), on their own.
 *
 * Window boundaries (an event at 999 ms is in the window, at 1000 ms it
 * starts the next one, unless a summary is pending), late events joining
 * the pending summary, many reasons side by side, a full table sending new
 * reasons to "other", the flush at stop, and a random model run checking
 * that nothing is lost: for every reason, events = logged + summarised.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lograte.h"

#define W LOGRATE_WINDOW_MS

/* Admit ${n} events of ${token} at ${now}; how many were "log in full". */
static unsigned
admit_n(struct lograte *lr, const char *token, uint64_t now, unsigned n)
{
	unsigned full = 0;

	while (n-- > 0)
		full += lograte_admit(lr, token, now) ? 1u : 0u;
	return full;
}

START_TEST(first_n_per_window_logged_rest_counted_and_summarised_once)
{
	struct lograte lr;
	struct lograte_summary s;
	uint64_t t0 = 100000;

	lograte_init(&lr, 10);
	ck_assert_uint_eq(admit_n(&lr, "not-tls", t0, 10), 10);
	ck_assert(!lograte_admit(&lr, "not-tls", t0 + 1));
	ck_assert_uint_eq(admit_n(&lr, "not-tls", t0 + 500, 99), 0);
	/* Not before the window is over. */
	ck_assert(!lograte_due(&lr, t0 + W - 1, false, &s));
	ck_assert(lograte_due(&lr, t0 + W, false, &s));
	ck_assert_str_eq(s.token, "not-tls");
	ck_assert_uint_eq(s.suppressed, 100);
	ck_assert_uint_eq(s.span_ms, W);
	/* Once. */
	ck_assert(!lograte_due(&lr, t0 + W, false, &s));
	ck_assert(!lograte_due(&lr, t0 + 10 * W, true, &s));
	/* The summary started a new window: ten in full again. */
	ck_assert_uint_eq(admit_n(&lr, "not-tls", t0 + W + 1, 12), 10);
	ck_assert(!lograte_due(&lr, t0 + 2 * W - 1, false, &s));
	ck_assert(lograte_due(&lr, t0 + 2 * W, false, &s));
	ck_assert_uint_eq(s.suppressed, 2);
}
END_TEST

START_TEST(window_boundary_999_ms_in_1000_ms_next)
{
	struct lograte lr;
	struct lograte_summary s;
	uint64_t t0 = 5000;

	lograte_init(&lr, 3);
	ck_assert_uint_eq(admit_n(&lr, "peer-closed", t0, 2), 2);
	ck_assert(lograte_admit(&lr, "peer-closed", t0 + W - 1));
	ck_assert(!lograte_admit(&lr, "peer-closed", t0 + W - 1));
	ck_assert(!lograte_due(&lr, t0 + W - 1, false, &s));
	ck_assert(lograte_due(&lr, t0 + W, false, &s));
	ck_assert_uint_eq(s.suppressed, 1);

	/* Nothing counted: at 1000 ms the next window starts by itself. */
	lograte_init(&lr, 3);
	ck_assert_uint_eq(admit_n(&lr, "peer-closed", t0, 3), 3);
	ck_assert(!lograte_due(&lr, t0 + W, false, &s));
	ck_assert_uint_eq(admit_n(&lr, "peer-closed", t0 + W, 3), 3);
	ck_assert(!lograte_admit(&lr, "peer-closed", t0 + W));
	ck_assert(!lograte_due(&lr, t0 + 2 * W - 1, false, &s));
	/* A count is pending: later events join it until it is taken. */
	ck_assert_uint_eq(admit_n(&lr, "peer-closed", t0 + 5 * W, 3), 0);
	ck_assert(lograte_due(&lr, t0 + 5 * W, false, &s));
	ck_assert_uint_eq(s.suppressed, 4);
	ck_assert_uint_eq(s.span_ms, 4 * W);
	ck_assert_uint_eq(admit_n(&lr, "peer-closed", t0 + 5 * W, 4), 3);
}
END_TEST

START_TEST(late_events_join_the_pending_summary_nothing_lost)
{
	struct lograte lr;
	struct lograte_summary s;
	uint64_t t0 = 7000;

	lograte_init(&lr, 2);
	ck_assert_uint_eq(admit_n(&lr, "not-tls", t0, 5), 2);
	/* The window ended, the summary was not taken yet: still counted. */
	ck_assert_uint_eq(admit_n(&lr, "not-tls", t0 + W + 200, 4), 0);
	ck_assert(lograte_due(&lr, t0 + W + 250, false, &s));
	ck_assert_uint_eq(s.suppressed, 7);
	ck_assert_uint_eq(s.span_ms, W + 250);
	ck_assert_uint_eq(admit_n(&lr, "not-tls", t0 + W + 260, 2), 2);
}
END_TEST

START_TEST(burst_zero_counts_everything)
{
	struct lograte lr;
	struct lograte_summary s;

	lograte_init(&lr, 0);
	ck_assert_uint_eq(admit_n(&lr, "not-tls", 1000, 50), 0);
	ck_assert(lograte_due(&lr, 1000 + W, false, &s));
	ck_assert_uint_eq(s.suppressed, 50);
}
END_TEST

START_TEST(many_reasons_counted_apart)
{
	static const char *const tokens[] = { "not-tls", "peer-closed",
	    "unknown-ca", "handshake-timeout", "cert-expired" };
	uint64_t got[5] = { 0 };
	struct lograte lr;
	struct lograte_summary s;
	unsigned i, j, full = 0;

	lograte_init(&lr, 4);
	for (i = 0; i < 100; i++)
		for (j = 0; j <= i % 5; j++)
			full += lograte_admit(&lr, tokens[j], 20000 + i) ? 1 :
			    0;
	/* Token j came 100 - 20 j times; four of each in full. */
	ck_assert_uint_eq(full, 20);
	/* Each window started with its reason's first event (20000 + j). */
	ck_assert(!lograte_due(&lr, 20000 + W - 1, false, &s));
	while (lograte_due(&lr, 20000 + W + 4, false, &s)) {
		for (j = 0; j < 5 && strcmp(tokens[j], s.token) != 0; j++)
			;
		ck_assert_uint_lt(j, 5);
		ck_assert_uint_eq(got[j], 0);
		got[j] = s.suppressed;
	}
	for (j = 0; j < 5; j++)
		ck_assert_uint_eq(got[j], 100 - 20 * j - 4);
}
END_TEST

START_TEST(full_table_sends_new_reasons_to_other)
{
	struct lograte lr;
	struct lograte_summary s;
	char tok[LOGRATE_SLOTS + 8][16], longtok[LOGRATE_TOKEN_MAX + 8];
	uint64_t other = 0, named = 0;
	unsigned i;

	lograte_init(&lr, 1);
	for (i = 0; i < LOGRATE_SLOTS + 8; i++) {
		snprintf(tok[i], sizeof(tok[i]), "reason-%u", i);
		ck_assert_uint_eq(admit_n(&lr, tok[i], 1000, 3),
		    i <= LOGRATE_SLOTS ? 1 : 0);
	}
	/* Known reasons keep their slots once the table is full. */
	ck_assert(!lograte_admit(&lr, tok[0], 1001));
	memset(longtok, 'x', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	ck_assert(!lograte_admit(&lr, longtok, 1002));
	ck_assert(!lograte_admit(&lr, NULL, 1002));
	ck_assert(!lograte_admit(&lr, "", 1002));
	ck_assert(!lograte_admit(&lr, LOGRATE_OTHER, 1002));
	while (lograte_due(&lr, 1000 + W, false, &s)) {
		if (strcmp(s.token, LOGRATE_OTHER) == 0)
			other += s.suppressed;
		else
			named += s.suppressed;
	}
	/* 32 slots: 2 counted each, plus tok[0]'s late one. */
	ck_assert_uint_eq(named, LOGRATE_SLOTS * 2 + 1);
	/* Other: 8 tokens x 3, minus the one logged, plus the 4 odd ones. */
	ck_assert_uint_eq(other, 8 * 3 - 1 + 4);
	ck_assert_uint_eq(sizeof(lr) < 4096, 1); /* bounded, whatever comes */
}
END_TEST

START_TEST(flush_all_takes_pending_counts_before_their_window_ends)
{
	struct lograte lr;
	struct lograte_summary s;

	lograte_init(&lr, 1);
	ck_assert_uint_eq(admit_n(&lr, "shutdown", 3000, 6), 1);
	ck_assert_uint_eq(admit_n(&lr, "not-tls", 3100, 1), 1);
	ck_assert(!lograte_due(&lr, 3200, false, &s));
	ck_assert(lograte_due(&lr, 3200, true, &s));
	ck_assert_str_eq(s.token, "shutdown");
	ck_assert_uint_eq(s.suppressed, 5);
	ck_assert_uint_eq(s.span_ms, 200);
	/* not-tls counted nothing: no summary for it. */
	ck_assert(!lograte_due(&lr, 3200, true, &s));
}
END_TEST

/*
 * A random run against the rules: for each reason, everything admitted is
 * either logged or in exactly one summary; summaries of a reason come at
 * least a window apart (but the final flush); in any window at most burst
 * events of a reason are logged in full.
 */
START_TEST(random_run_loses_nothing_and_keeps_the_bounds)
{
	enum { NT = 6, BURST = 5 };
	static const char *const tokens[NT] = { "a", "b", "c", "d", "e",
	    "f" };
	uint64_t events[NT] = { 0 }, logged[NT] = { 0 }, summed[NT] = { 0 };
	uint64_t last_sum[NT] = { 0 }, win_start[NT] = { 0 };
	uint64_t win_full[NT] = { 0 };
	struct lograte lr;
	struct lograte_summary s;
	uint64_t now = 1000000;
	unsigned seed = 12345u + (unsigned)_i, i, t;

	lograte_init(&lr, BURST);
	for (i = 0; i < 200000; i++) {
		seed = seed * 1103515245u + 12345u;
		now += (seed >> 16) % 7; /* ~3 ms apart: ~300 events/s */
		t = (seed >> 8) % NT;
		if (t == NT - 1 && (seed & 1))
			t = 0; /* uneven rates */
		events[t]++;
		if (lograte_admit(&lr, tokens[t], now)) {
			logged[t]++;
			if (now - win_start[t] >= W) {
				win_start[t] = now;
				win_full[t] = 0;
			}
			ck_assert_uint_le(++win_full[t], 2 * BURST);
		}
		if (i % 50 == 0) {
			while (lograte_due(&lr, now, false, &s)) {
				t = (unsigned)(s.token[0] - 'a');
				ck_assert_uint_lt(t, NT);
				ck_assert_uint_ge(s.span_ms, W);
				ck_assert(last_sum[t] == 0 ||
				    now - last_sum[t] >= W);
				last_sum[t] = now;
				summed[t] += s.suppressed;
			}
		}
	}
	while (lograte_due(&lr, now, true, &s))
		summed[s.token[0] - 'a'] += s.suppressed;
	for (t = 0; t < NT; t++) {
		ck_assert_uint_eq(logged[t] + summed[t], events[t]);
		/* ~600 s of run: about BURST per second in full. */
		ck_assert_uint_le(logged[t], BURST * (now - 1000000) / W +
		    BURST);
		ck_assert_uint_gt(summed[t], 0);
	}
}
END_TEST

static Suite *
lograte_suite(void)
{
	Suite *s = suite_create("lograte");
	TCase *tc = tcase_create("lograte");

	tcase_add_test(tc,
	    first_n_per_window_logged_rest_counted_and_summarised_once);
	tcase_add_test(tc, window_boundary_999_ms_in_1000_ms_next);
	tcase_add_test(tc, late_events_join_the_pending_summary_nothing_lost);
	tcase_add_test(tc, burst_zero_counts_everything);
	tcase_add_test(tc, many_reasons_counted_apart);
	tcase_add_test(tc, full_table_sends_new_reasons_to_other);
	tcase_add_test(tc,
	    flush_all_takes_pending_counts_before_their_window_ends);
	tcase_add_loop_test(tc, random_run_loses_nothing_and_keeps_the_bounds,
	    0, 4);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(lograte_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
