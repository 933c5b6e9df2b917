/*
 * stats: one worker's counters, in memory it shares with the master alone.
 */
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * The layout, in private memory: where the region is, how long, how many
 * blocks.  Nothing here is ever read back from the shared bytes.
 */
struct stats {
	unsigned char *map;
	size_t maplen;
	size_t nblocks;
	size_t blocklen; /* sizeof(struct stats_block), cache-line rounded */
};

const uint64_t stats_bounds_us[STATS_NBOUNDS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

const char *const stats_refusal_names[STATS_NREFUSAL] = {
	"no-client-cert", "unknown-ca", "bad-signature", "cert-expired",
	"cert-not-yet-valid", "cert-usage", "cert-revoked", "cert-weak",
	"cert-invalid", "crl-untrusted", "crl-stale", "chain-too-long",
	"identity-not-allowed", "identity-limit", "protocol-version",
	"no-shared-cipher", "not-tls", "handshake-timeout", "client-alert",
	"peer-closed", "peer-reset", "malformed", "tls-error", "shutdown",
	"other",
};

const char *const stats_backend_names[STATS_NBACKEND] = {
	"backend-refused", "backend-unreachable", "backend-timeout",
	"backend-tls", "backend-error",
};

struct stats *
stats_new(size_t nblocks)
{
	struct stats *s;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *p;

	if (nblocks == 0)
		nblocks = 1;
	if (nblocks > 65536) {
		errno = EINVAL;
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->blocklen = (sizeof(struct stats_block) + 63) & ~(size_t)63;
	s->nblocks = nblocks;
	s->maplen = (nblocks * s->blocklen + page - 1) & ~(page - 1);
	p = mmap(NULL, s->maplen, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		free(s);
		return NULL;
	}
	s->map = p;
	return s;
}

int
stats_sealed(struct stats *s)
{
	return madvise(s->map, s->maplen, MADV_DONTFORK);
}

void
stats_free(struct stats *s)
{
	if (s == NULL)
		return;
	(void)munmap(s->map, s->maplen);
	free(s);
}

void
stats_forget(struct stats *s)
{
	free(s);
}

struct stats_block *
stats_block(struct stats *s, size_t i)
{
	if (s == NULL || i >= s->nblocks)
		return NULL;
	return (struct stats_block *)(void *)(s->map + i * s->blocklen);
}

size_t
stats_nblocks(const struct stats *s)
{
	return s->nblocks;
}

void
stats_read(const struct stats *s, size_t i, uint64_t out[STATS_N])
{
	const struct stats_block *b;
	size_t k;

	if (i >= s->nblocks) {
		memset(out, 0, STATS_N * sizeof(out[0]));
		return;
	}
	b = (const struct stats_block *)(const void *)(s->map +
	    i * s->blocklen);
	for (k = 0; k < STATS_N; k++)
		out[k] = atomic_load_explicit(&b->v[k], memory_order_relaxed);
}

size_t
stats_refusal_index(const char *token)
{
	size_t i;

	for (i = 0; i + 1 < STATS_NREFUSAL; i++)
		if (strcmp(token, stats_refusal_names[i]) == 0)
			return i;
	return STATS_NREFUSAL - 1;
}

int
stats_backend_index(const char *token)
{
	int i;

	for (i = 0; i < STATS_NBACKEND; i++)
		if (strcmp(token, stats_backend_names[i]) == 0)
			return i;
	return -1;
}

size_t
stats_bucket(uint64_t us)
{
	size_t i;

	for (i = 0; i < STATS_NBOUNDS; i++)
		if (us <= stats_bounds_us[i])
			return i;
	return STATS_NBOUNDS;
}
