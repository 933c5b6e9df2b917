/*
 * check_units: the worker's small data structures on their own.
 *
 * Suite "timerq": the deadline heap against a brute-force model under
 * random set/cancel/later/earlier/pop sequences, plus the edge cases one
 * by one (lazy re-filing of a deadline pushed later, cancel of a popped
 * entry, ties).
 *
 * Suite "census": the shared counts across real processes (fork): per
 * identity sums over workers, a restarted worker's part cleared, slot
 * reuse after counts drop to zero, a full table refusing, rebuilds keeping
 * live counts.
 *
 * Suite "metrics": the HTTP request reader (whole, in parts, refusals and
 * bounds), a worker's stats region (not inherited by later children), the
 * master's totals (monotonic, clamped, folded when a worker goes) and the
 * exposition (escaping, histograms consistent whatever a worker wrote).
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "census.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "stats.h"
#include "timerq.h"

/* --- timerq ------------------------------------------------------------- */

START_TEST(timerq_pops_in_deadline_order_and_only_when_due)
{
	struct timerq q;
	struct timerq_entry e[5];
	uint64_t due[5] = { 50, 10, 40, 20, 30 };
	size_t i;

	memset(e, 0, sizeof(e));
	timerq_init(&q);
	ck_assert_int_eq(timerq_reserve(&q, 5), 0);
	ck_assert_uint_eq(timerq_next(&q), 0);
	for (i = 0; i < 5; i++)
		timerq_set(&q, &e[i], due[i]);
	ck_assert_uint_eq(timerq_next(&q), 10);
	ck_assert_ptr_null(timerq_pop(&q, 9));
	ck_assert_ptr_eq(timerq_pop(&q, 10), &e[1]);
	ck_assert_ptr_null(timerq_pop(&q, 19));
	ck_assert_ptr_eq(timerq_pop(&q, 35), &e[3]);
	ck_assert_ptr_eq(timerq_pop(&q, 35), &e[4]);
	ck_assert_ptr_null(timerq_pop(&q, 35));
	ck_assert_ptr_eq(timerq_pop(&q, 100), &e[2]);
	ck_assert_ptr_eq(timerq_pop(&q, 100), &e[0]);
	ck_assert_ptr_null(timerq_pop(&q, 100));
	ck_assert_uint_eq(timerq_next(&q), 0);
	timerq_free(&q);
}
END_TEST

START_TEST(timerq_deadline_pushed_later_is_not_popped_at_its_old_time)
{
	struct timerq q;
	struct timerq_entry a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	timerq_init(&q);
	ck_assert_int_eq(timerq_reserve(&q, 2), 0);
	timerq_set(&q, &a, 10);
	timerq_set(&q, &b, 20);
	timerq_set(&q, &a, 30); /* lazy: keeps its place */
	ck_assert_uint_le(timerq_next(&q), 10);
	ck_assert_ptr_eq(timerq_pop(&q, 25), &b);
	ck_assert_ptr_null(timerq_pop(&q, 29));
	ck_assert_uint_eq(timerq_next(&q), 30); /* re-filed at its due */
	ck_assert_ptr_eq(timerq_pop(&q, 30), &a);
	ck_assert_uint_eq(a.due, 30);
	timerq_free(&q);
}
END_TEST

START_TEST(timerq_deadline_moved_earlier_pops_at_the_new_time)
{
	struct timerq q;
	struct timerq_entry a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	timerq_init(&q);
	ck_assert_int_eq(timerq_reserve(&q, 2), 0);
	timerq_set(&q, &a, 100);
	timerq_set(&q, &b, 50);
	timerq_set(&q, &a, 5);
	ck_assert_uint_eq(timerq_next(&q), 5);
	ck_assert_ptr_eq(timerq_pop(&q, 5), &a);
	timerq_free(&q);
}
END_TEST

START_TEST(timerq_cancel_removes_and_cancel_twice_is_harmless)
{
	struct timerq q;
	struct timerq_entry a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	timerq_init(&q);
	ck_assert_int_eq(timerq_reserve(&q, 2), 0);
	timerq_set(&q, &a, 10);
	timerq_set(&q, &b, 20);
	timerq_set(&q, &a, 0);
	timerq_set(&q, &a, 0);
	ck_assert_ptr_eq(timerq_pop(&q, 100), &b);
	ck_assert_ptr_null(timerq_pop(&q, 100));
	/* A popped entry can be cancelled (no-op) and set again. */
	timerq_set(&q, &b, 0);
	timerq_set(&q, &b, 7);
	ck_assert_ptr_eq(timerq_pop(&q, 7), &b);
	timerq_free(&q);
}
END_TEST

/* Random operations on 300 entries, checked against a plain array. */
START_TEST(timerq_matches_a_brute_force_model)
{
	enum { N = 300, OPS = 60000 };
	static struct timerq_entry e[N];
	static uint64_t model[N]; /* due, 0: none */
	struct timerq q;
	uint64_t now = 1;
	unsigned seed = 12345u + (unsigned)_i;
	long i;

	memset(e, 0, sizeof(e));
	memset(model, 0, sizeof(model));
	timerq_init(&q);
	ck_assert_int_eq(timerq_reserve(&q, N), 0);
	for (i = 0; i < OPS; i++) {
		unsigned r = (unsigned)rand_r(&seed);
		size_t k = r % N;

		switch ((r >> 10) % 6) {
		case 0: /* cancel */
			timerq_set(&q, &e[k], 0);
			model[k] = 0;
			break;
		case 1: case 2: /* set, maybe later, maybe earlier */
			model[k] = now + 1 + (uint64_t)((r >> 13) % 1000);
			timerq_set(&q, &e[k], model[k]);
			break;
		case 3: { /* time passes, pop everything due */
			struct timerq_entry *p;
			uint64_t earliest = 0;
			size_t j;

			now += (r >> 13) % 50;
			while ((p = timerq_pop(&q, now)) != NULL) {
				size_t idx = (size_t)(p - e);

				ck_assert_uint_ne(model[idx], 0);
				ck_assert_uint_le(model[idx], now);
				ck_assert_uint_eq(p->due, model[idx]);
				model[idx] = 0;
			}
			for (j = 0; j < N; j++) {
				/* (not ck_assert: it is slow in a hot loop) */
				if (model[j] != 0 && model[j] <= now)
					ck_abort_msg("entry %zu due %llu not "
					    "popped at %llu", j,
					    (unsigned long long)model[j],
					    (unsigned long long)now);
				if (model[j] != 0 && (earliest == 0 ||
				    model[j] < earliest))
					earliest = model[j];
			}
			/* next is never later than the earliest deadline */
			if (earliest != 0)
				ck_assert_uint_le(timerq_next(&q), earliest);
			else
				ck_assert_uint_eq(timerq_next(&q), 0);
			break;
		}
		default: /* idle timeouts: push later, the common case */
			if (model[k] != 0) {
				model[k] += 1 + (r >> 13) % 100;
				timerq_set(&q, &e[k], model[k]);
			}
			break;
		}
	}
	timerq_free(&q);
}
END_TEST

/* --- census ------------------------------------------------------------- */

static const unsigned char seed16[16] = "0123456789abcdef";

START_TEST(census_sums_identities_over_worker_processes)
{
	struct census *c = census_new(3, 64, 1000, seed16);
	uint64_t alice, bob;
	unsigned w;
	int st;

	ck_assert_ptr_nonnull(c);
	for (w = 0; w < 3; w++)
		census_worker_start(c, w);
	alice = census_id_key(c, "front", "spiffe://x/alice");
	bob = census_id_key(c, "front", "spiffe://x/bob");
	ck_assert_uint_ne(alice, bob);
	/* The same name on another listener is another key. */
	ck_assert_uint_ne(alice, census_id_key(c, "other", "spiffe://x/alice"));
	for (w = 0; w < 3; w++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			/* worker w: w+1 alices, one bob, then its count */
			for (unsigned k = 0; k <= w; k++)
				if (census_id_add(c, w, alice) != 0)
					_exit(1);
			if (census_id_add(c, w, bob) != 0)
				_exit(1);
			census_conns_set(c, w, w + 2);
			_exit(0);
		}
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	ck_assert_uint_eq(census_id_count(c, alice), 1 + 2 + 3);
	ck_assert_uint_eq(census_id_count(c, bob), 3);
	ck_assert_uint_eq(census_conns_total(c), 2 + 3 + 4);
	/* Worker 1 restarts: what it held went with it. */
	census_worker_start(c, 1);
	ck_assert_uint_eq(census_id_count(c, alice), 1 + 3);
	ck_assert_uint_eq(census_id_count(c, bob), 2);
	ck_assert_uint_eq(census_conns_total(c), 2 + 4);
	census_id_del(c, 0, alice);
	census_id_del(c, 0, alice); /* more dels than adds: stays at 0 */
	ck_assert_uint_eq(census_id_count(c, alice), 3);
	census_free(c);
}
END_TEST

START_TEST(census_table_reuses_freed_slots_and_refuses_when_full)
{
	struct census *c = census_new(1, 16, 1000, seed16);
	uint64_t k[17];
	char name[32];
	unsigned i, round;

	ck_assert_ptr_nonnull(c);
	census_worker_start(c, 0);
	for (i = 0; i < 17; i++) {
		snprintf(name, sizeof(name), "client-%u", i);
		k[i] = census_id_key(c, "l", name);
	}
	/* Many more distinct identities over time than slots: each comes,
	 * goes, and its slot is reused. */
	for (round = 0; round < 50; round++) {
		for (i = 0; i < 16; i++) {
			snprintf(name, sizeof(name), "r%u-c%u", round, i);
			uint64_t key = census_id_key(c, "l", name);

			ck_assert_int_eq(census_id_add(c, 0, key), 0);
			ck_assert_uint_eq(census_id_count(c, key), 1);
			census_id_del(c, 0, key);
			ck_assert_uint_eq(census_id_count(c, key), 0);
		}
	}
	/* 16 live identities fill it; the 17th is refused; one leaving
	 * makes room; the live counts survive the rebuilds. */
	for (i = 0; i < 16; i++)
		ck_assert_int_eq(census_id_add(c, 0, k[i]), 0);
	ck_assert_int_eq(census_id_add(c, 0, k[16]), -1);
	census_id_del(c, 0, k[3]);
	ck_assert_int_eq(census_id_add(c, 0, k[16]), 0);
	for (i = 0; i < 17; i++)
		ck_assert_uint_eq(census_id_count(c, k[i]), i == 3 ? 0 : 1);
	/* An identity already present still counts up when full. */
	ck_assert_int_eq(census_id_add(c, 0, k[0]), 0);
	ck_assert_uint_eq(census_id_count(c, k[0]), 2);
	census_free(c);
}
END_TEST

/*
 * A reader in another process while the owner churns: keys come and go
 * far past the rebuild threshold while one identity holds one connection
 * throughout.  Reads are snapshots (census.h): they may miss the steady
 * identity during a rebuild, but never count anyone above what it holds.
 */
START_TEST(census_concurrent_reader_never_overcounts)
{
	struct census *c = census_new(1, 64, 1000, seed16);
	uint64_t steady, churn[8];
	char name[32];
	pid_t pid;
	int st, round, i;

	ck_assert_ptr_nonnull(c);
	census_worker_start(c, 0);
	steady = census_id_key(c, "l", "steady");
	for (i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "churn-%d", i);
		churn[i] = census_id_key(c, "l", name);
	}
	ck_assert_int_eq(census_id_add(c, 0, steady), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The reader: exit 1 on an over-count. */
		for (round = 0; round < 200000; round++) {
			if (census_id_count(c, steady) > 1)
				_exit(1);
			for (i = 0; i < 8; i++)
				if (census_id_count(c, churn[i]) > 1)
					_exit(1);
		}
		_exit(0);
	}
	/* The owner: fresh identities (forcing slot reuse and rebuilds)
	 * plus the same 8 coming and going, until the reader is done. */
	for (round = 0; waitpid(pid, &st, WNOHANG) == 0; round++) {
		snprintf(name, sizeof(name), "fresh-%d", round);
		uint64_t k = census_id_key(c, "l", name);

		ck_assert_int_eq(census_id_add(c, 0, k), 0);
		ck_assert_int_eq(census_id_add(c, 0, churn[round % 8]), 0);
		census_id_del(c, 0, k);
		census_id_del(c, 0, churn[round % 8]);
	}
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the reader saw "
	    "an identity counted above what it held (after %d rounds)", round);
	ck_assert_uint_eq(census_id_count(c, steady), 1);
	census_free(c);
}
END_TEST

START_TEST(census_without_identity_tables_counts_connections_only)
{
	struct census *c = census_new(2, 0, 1000, seed16);
	uint64_t key;

	ck_assert_ptr_nonnull(c);
	census_worker_start(c, 0);
	census_worker_start(c, 1);
	key = census_id_key(c, "l", "x");
	ck_assert_int_eq(census_id_add(c, 0, key), -1);
	ck_assert_uint_eq(census_id_count(c, key), 0);
	census_conns_set(c, 1, 7);
	ck_assert_uint_eq(census_conns_total(c), 7);
	census_free(c);
	census_free(NULL);
}
END_TEST

/* Fill every shared writable mapping of this process with ${byte}; how
 * many bytes. */
static size_t
scribble_shared(unsigned char byte)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	size_t total = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 ||
		    strcmp(perms, "rw-s") != 0)
			continue;
		memset((void *)lo, byte, hi - lo);
		total += hi - lo;
	}
	fclose(f);
	return total;
}

/*
 * A worker is the untrusted side: one that rewrites the whole shared
 * region (every byte, any value) leaves the master's layout intact; it
 * reads clamped counts, clears a part where the part is, and unmaps what
 * it mapped.
 */
START_TEST(census_garbage_from_a_worker_never_moves_the_master)
{
	static const unsigned char bytes[] = { 0xff, 0x7f, 0x00, 0x80 };
	struct census *c = census_new(4, 64, 100, seed16);
	uint64_t key;
	unsigned w;
	pid_t pid;
	int st;
	size_t b;

	ck_assert_ptr_nonnull(c);
	key = census_id_key(c, "l", "x");
	for (b = 0; b < sizeof(bytes); b++) {
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			_exit(scribble_shared(bytes[b]) > 0 ? 0 : 1);
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "the census region is not a shared writable mapping");
		ck_assert_uint_le(census_conns_total(c), 4 * 100);
		ck_assert_uint_le(census_id_count(c, key), 4 * 100);
		for (w = 0; w < 4; w++)
			census_worker_start(c, w);
		ck_assert_uint_eq(census_conns_total(c), 0);
		ck_assert_uint_eq(census_id_count(c, key), 0);
		census_worker_start(c, 4); /* no such worker: nothing */
		census_conns_set(c, 9, 5);
		ck_assert_uint_eq(census_conns_total(c), 0);
	}
	census_free(c);
}
END_TEST

/* --- metrics ------------------------------------------------------------- */

static int
parse_str(const char *s, struct http_req *req)
{
	return http_parse(s, strlen(s), req);
}

START_TEST(http_reads_a_prometheus_scrape_and_a_curl_probe)
{
	const char *prom = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9180\r\n"
	    "User-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version="
	    "0.0.4;q=0.5,*/*;q=0.1\r\nAccept-Encoding: gzip\r\n"
	    "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
	struct http_req q;

	ck_assert_int_eq(parse_str(prom, &q), 1);
	ck_assert_str_eq(q.path, "/metrics");
	ck_assert_int_eq(q.method, HTTP_GET);
	ck_assert_uint_eq(q.head_len, strlen(prom));
	ck_assert_int_eq(parse_str("HEAD /readyz?verbose=1 HTTP/1.1\r\nhost:"
	    " x\r\n\r\n", &q), 1);
	ck_assert_str_eq(q.path, "/readyz");
	ck_assert_int_eq(q.method, HTTP_HEAD);
	ck_assert_int_eq(parse_str("GET /healthz HTTP/1.0\r\n\r\n", &q), 1);
	ck_assert(q.http10);
	ck_assert_int_eq(parse_str("DELETE /metrics HTTP/1.1\r\nHost: x\r\n"
	    "\r\n", &q), 1);
	ck_assert_int_eq(q.method, HTTP_OTHER);
	/* What follows the head is not read. */
	ck_assert_int_eq(parse_str("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b",
	    &q), 1);
	ck_assert_str_eq(q.path, "/a");
}
END_TEST

START_TEST(http_reads_a_request_arriving_byte_by_byte)
{
	const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"
	    "\r\n";
	struct http_req q;
	size_t n, len = strlen(req);

	for (n = 0; n < len; n++)
		ck_assert_msg(http_parse(req, n, &q) == 0, "prefix %zu", n);
	ck_assert_int_eq(http_parse(req, len, &q), 1);
}
END_TEST

START_TEST(http_refuses_what_is_not_a_strict_request_at_once)
{
	static const struct { const char *in; int status; } v[] = {
		{ "\x16\x03\x01\x00", 400 },             /* a TLS ClientHello */
		{ "GET /metrics HTTP/1.1\n", 400 },      /* bare LF */
		{ "GET  /metrics", 400 },                /* two spaces */
		{ "GET metrics HTTP/1.1\r\n", 400 },     /* not origin-form */
		{ "GET http://x/metrics HTTP/1.1\r\n", 400 },
		{ "GET /metrics HTTP/1.1\r\n\r\n", 400 }, /* no Host */
		{ "GET /m HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
		{ "GET /m HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400 },
		{ "GET /m HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
		{ "GET /m HTTP/1.1\r\nHost: x\x01\r\n\r\n", 400 },
		{ "GET /m HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
		    400 },
		{ "GET /m HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
		    "Content-Length: 0\r\n\r\n", 400 },
		{ "GET /m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
		    "\r\n", 501 },
		{ "GET /m HTTP/2.0\r\n", 505 },
		{ "GET /m HTTP/1.1x", 400 },
		{ "GET /m HTTPS/1.1\r\n", 400 },
		{ "G\0T /m HTTP/1.1\r\n", 400 },
		{ "VERYLONGMETHODNAME /m HTTP/1.1\r\n", 400 },
	};
	struct http_req q;
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len = strlen(v[i].in);

		if (v[i].in[0] == 'G' && v[i].in[1] == '\0')
			len = 17;
		ck_assert_msg(http_parse(v[i].in, len, &q) == v[i].status,
		    "case %zu: %d, want %d", i, http_parse(v[i].in, len, &q),
		    v[i].status);
	}
	ck_assert_int_eq(parse_str("GET /m HTTP/1.1\r\nHost: x\r\nContent-"
	    "Length: 000\r\n\r\n", &q), 1);
}
END_TEST

START_TEST(http_bounds_the_target_the_head_and_the_fields)
{
	static char buf[3 * HTTP_HEAD_MAX];
	struct http_req q;
	size_t n;
	int i;

	n = (size_t)snprintf(buf, sizeof(buf), "GET /");
	memset(buf + n, 'a', HTTP_PATH_MAX - 1);
	n += HTTP_PATH_MAX - 1;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, " HTTP/1.1\r\nHost: "
	    "x\r\n\r\n");
	ck_assert_int_eq(http_parse(buf, n, &q), 1);
	ck_assert_uint_eq(strlen(q.path), HTTP_PATH_MAX);
	n = (size_t)snprintf(buf, sizeof(buf), "GET /");
	memset(buf + n, 'a', HTTP_PATH_MAX);
	ck_assert_int_eq(http_parse(buf, n + HTTP_PATH_MAX, &q), 414);
	/* A head that never ends: refused once it fills the limit. */
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
	memset(buf + n, 'v', sizeof(buf) - n);
	ck_assert_int_eq(http_parse(buf, HTTP_HEAD_MAX - 1, &q), 0);
	ck_assert_int_eq(http_parse(buf, HTTP_HEAD_MAX, &q), 431);
	ck_assert_int_eq(http_parse(buf, sizeof(buf), &q), 431);
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\n");
	for (i = 0; i < HTTP_FIELDS_MAX; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "A: b\r\n");
	ck_assert_int_eq(http_parse(buf, n, &q), 431);
}
END_TEST

START_TEST(http_head_fits_whole_or_not_at_all)
{
	char big[512], small[512];
	size_t full = http_head(big, sizeof(big), 405, "text/plain", 12,
	    "GET, HEAD"), n;

	ck_assert_uint_gt(full, 0);
	ck_assert(strstr(big, "HTTP/1.1 405 Method Not Allowed\r\n") == big);
	ck_assert(strstr(big, "Allow: GET, HEAD\r\n") != NULL);
	ck_assert(strstr(big, "Connection: close\r\n") != NULL);
	ck_assert(strstr(big, "Content-Length: 12\r\n") != NULL);
	for (n = 0; n <= full; n++)
		ck_assert_uint_eq(http_head(small, n, 405, "text/plain", 12,
		    "GET, HEAD"), 0);
	ck_assert_uint_eq(http_head(small, full + 1, 405, "text/plain", 12,
	    "GET, HEAD"), full);
}
END_TEST

/* A line of /proc/self/maps starts at ${addr}. */
static bool
mapped_here(const void *addr)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/maps", "re");
	bool found = false;

	if (f == NULL)
		return false;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)addr);
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strncmp(line, want, strlen(want)) == 0;
	fclose(f);
	return found;
}

START_TEST(stats_region_reaches_its_worker_and_no_later_child)
{
	struct stats *s = stats_new(2);
	struct stats_block *b;
	uint64_t v[STATS_N];
	pid_t pid;
	int st;

	ck_assert_ptr_nonnull(s);
	b = stats_block(s, 1);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_null(stats_block(s, 2));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The worker: counts in its block. */
		stats_add(b, STATS_CONNS, 3);
		stats_add(b, STATS_CONNS, 4);
		stats_set(b, STATS_ACTIVE, 2);
		stats_observe(b, STATS_HS_BUCKET, STATS_HS_SUM_US, 700);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(stats_sealed(s), 0);
	stats_read(s, 1, v);
	ck_assert_uint_eq(v[STATS_CONNS], 7);
	ck_assert_uint_eq(v[STATS_ACTIVE], 2);
	ck_assert_uint_eq(v[STATS_HS_BUCKET + 1], 1); /* 0.5 ms < 700 us <= 1 */
	ck_assert_uint_eq(v[STATS_HS_SUM_US], 700);
	stats_read(s, 0, v);
	ck_assert_uint_eq(v[STATS_CONNS], 0);
	stats_read(s, 5, v); /* no such block: zeros, nothing read */
	ck_assert_uint_eq(v[STATS_CONNS], 0);
	ck_assert(mapped_here(stats_block(s, 0)));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(mapped_here(stats_block(s, 0)) ? 1 : 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a child forked "
	    "after stats_sealed() has the region");
	stats_free(s);
}
END_TEST

START_TEST(stats_names_and_buckets)
{
	ck_assert_uint_eq(stats_refusal_index("unknown-ca"), 1);
	ck_assert_str_eq(stats_refusal_names[stats_refusal_index("no such")],
	    "other");
	ck_assert_str_eq(stats_refusal_names[stats_refusal_index("shutdown")],
	    "shutdown");
	ck_assert_int_eq(stats_backend_index("backend-tls"), 3);
	ck_assert_int_eq(stats_backend_index("backend-closed"), -1);
	ck_assert_uint_eq(stats_bucket(0), 0);
	ck_assert_uint_eq(stats_bucket(500), 0);
	ck_assert_uint_eq(stats_bucket(501), 1);
	ck_assert_uint_eq(stats_bucket(10000000), STATS_NBOUNDS - 1);
	ck_assert_uint_eq(stats_bucket(UINT64_MAX), STATS_NBOUNDS);
}
END_TEST

/* A configuration of one listener ${name}, max_connections 10. */
static void
one_listener(struct cfg *c, struct cfg_listener *li, const char *name)
{
	memset(c, 0, sizeof(*c));
	memset(li, 0, sizeof(*li));
	li->name = (char *)(uintptr_t)name;
	li->max_connections = 10;
	c->listeners = li;
	c->nlisteners = 1;
}

START_TEST(metrics_totals_never_go_backwards_and_survive_their_worker)
{
	struct metrics *m = metrics_new();
	struct metrics_src *a, *b;
	struct stats_block *blk;
	struct cfg c;
	struct cfg_listener li;
	uint64_t t = 1000;

	ck_assert_ptr_nonnull(m);
	one_listener(&c, &li, "echo");
	a = metrics_src_new(m, &c, t);
	ck_assert_ptr_nonnull(a);
	blk = stats_block(metrics_src_stats(a), 0);
	stats_set(blk, STATS_CONNS, 5);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_CONNS, t), 5);
	/* A worker that goes down (or lies) makes no progress. */
	stats_set(blk, STATS_CONNS, 3);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_CONNS, t), 5);
	stats_set(blk, STATS_CONNS, 8);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_CONNS, t), 8);
	/* The gauge is clamped to max_connections. */
	stats_set(blk, STATS_ACTIVE, 1000);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_ACTIVE, t), 10);
	/* Gone: its counts stay, its connections do not. */
	metrics_src_done(m, a, t);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_CONNS, t), 8);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_ACTIVE, t), 0);
	/* Its replacement (or the next generation) adds to them. */
	b = metrics_src_new(m, &c, t);
	ck_assert_ptr_nonnull(b);
	blk = stats_block(metrics_src_stats(b), 0);
	stats_set(blk, STATS_CONNS, 2);
	ck_assert_uint_eq(metrics_total(m, "echo", STATS_CONNS, t), 10);
	/* A lie grows a counter by at most what a second allows. */
	stats_set(blk, STATS_CONNS, UINT64_MAX);
	ck_assert_uint_le(metrics_total(m, "echo", STATS_CONNS, t),
	    10 + 10000000ull);
	ck_assert_uint_gt(metrics_total(m, "echo", STATS_CONNS, t), 10);
	ck_assert_uint_eq(metrics_total(m, "other", STATS_CONNS, t), 0);
	metrics_free(m);
}
END_TEST

START_TEST(metrics_exposition_escapes_labels_and_stays_consistent)
{
	struct metrics *m = metrics_new();
	struct metrics_src *a;
	struct stats_block *blk;
	struct cfg c;
	struct cfg_listener li;
	struct metrics_date d[] = {
		{ "echo", "server", "CN=a \"quoted\" \\ back\nslash \xff", 42 },
		{ "echo", NULL, "CN=crl issuer", 43 },
	};
	struct metrics_facts f = { .reloads_ok = 2, .reloads_failed = 1,
	    .last_reload_ok = 1700000000, .worker_restarts = 3,
	    .generation = 3, .workers = 1, .dates = d, .ndates = 2 };
	char *body = NULL, esc[16];
	size_t len = 0, k;

	ck_assert_ptr_nonnull(m);
	one_listener(&c, &li, "echo");
	a = metrics_src_new(m, &c, 0);
	ck_assert_ptr_nonnull(a);
	blk = stats_block(metrics_src_stats(a), 0);
	/* Whatever a worker writes in the buckets, _count is the +Inf one. */
	for (k = 0; k < STATS_NBUCKETS; k++)
		stats_set(blk, (enum stats_counter)(STATS_HS_BUCKET + k), k + 1);
	stats_set(blk, STATS_REFUSAL + stats_refusal_index("not-tls"), 4);
	ck_assert_int_eq(metrics_render(m, &f, 0, &body, &len), 0);
	ck_assert_uint_eq(strlen(body), len);
	ck_assert_ptr_nonnull(strstr(body, "subject=\"CN=a \\\"quoted\\\" \\\\ "
	    "back\\nslash ?\"} 42\n"));
	ck_assert_ptr_nonnull(strstr(body, "tls_echod_crl_next_update_"
	    "timestamp_seconds{listener=\"echo\",issuer=\"CN=crl issuer\"} "
	    "43\n"));
	ck_assert_ptr_nonnull(strstr(body, "tls_echod_handshake_seconds_"
	    "bucket{listener=\"echo\",le=\"+Inf\"} 120\n"));
	ck_assert_ptr_nonnull(strstr(body, "tls_echod_handshake_seconds_"
	    "count{listener=\"echo\"} 120\n"));
	ck_assert_ptr_nonnull(strstr(body, "tls_echod_refusals_total{listener="
	    "\"echo\",reason=\"not-tls\"} 4\n"));
	ck_assert_ptr_nonnull(strstr(body, "tls_echod_reloads_total{result="
	    "\"failure\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(body, "tls_echod_worker_restarts_total 3"
	    "\n"));
	free(body);
	/* Cut short on a whole character, never mid-escape. */
	ck_assert_str_eq(metrics_escape("ab\"", esc, 4), "ab");
	ck_assert_str_eq(metrics_escape("a\xc3\xa9", esc, 3), "a");
	ck_assert_str_eq(metrics_escape("a\xc3\xa9", esc, 4), "a\xc3\xa9");
	ck_assert_str_eq(metrics_escape("\xed\xa0\x80", esc, 16), "???");
	metrics_free(m);
}
END_TEST

static Suite *
units_suite(void)
{
	Suite *s = suite_create("units");
	TCase *tc = tcase_create("timerq");

	tcase_add_test(tc, timerq_pops_in_deadline_order_and_only_when_due);
	tcase_add_test(tc,
	    timerq_deadline_pushed_later_is_not_popped_at_its_old_time);
	tcase_add_test(tc, timerq_deadline_moved_earlier_pops_at_the_new_time);
	tcase_add_test(tc, timerq_cancel_removes_and_cancel_twice_is_harmless);
	tcase_add_loop_test(tc, timerq_matches_a_brute_force_model, 0, 3);
	suite_add_tcase(s, tc);
	tc = tcase_create("census");
	tcase_add_test(tc, census_sums_identities_over_worker_processes);
	tcase_add_test(tc,
	    census_table_reuses_freed_slots_and_refuses_when_full);
	tcase_add_test(tc,
	    census_without_identity_tables_counts_connections_only);
	tcase_add_test(tc, census_concurrent_reader_never_overcounts);
	tcase_add_test(tc,
	    census_garbage_from_a_worker_never_moves_the_master);
	suite_add_tcase(s, tc);
	tc = tcase_create("metrics");
	tcase_add_test(tc, http_reads_a_prometheus_scrape_and_a_curl_probe);
	tcase_add_test(tc, http_reads_a_request_arriving_byte_by_byte);
	tcase_add_test(tc, http_refuses_what_is_not_a_strict_request_at_once);
	tcase_add_test(tc, http_bounds_the_target_the_head_and_the_fields);
	tcase_add_test(tc, http_head_fits_whole_or_not_at_all);
	tcase_add_test(tc, stats_region_reaches_its_worker_and_no_later_child);
	tcase_add_test(tc, stats_names_and_buckets);
	tcase_add_test(tc,
	    metrics_totals_never_go_backwards_and_survive_their_worker);
	tcase_add_test(tc,
	    metrics_exposition_escapes_labels_and_stays_consistent);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(units_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
