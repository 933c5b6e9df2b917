/*
 * metrics: the master's view of every worker's counters, and the
 * Prometheus text exposition of them (format 0.0.4).
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

#define BODY_MAX (16u << 20) /* an exposition larger than this fails */

/*
 * What one worker can honestly do per second, per counter kind: far above
 * any real figure, low enough that a lying worker takes centuries to wrap
 * a 64-bit total.  A read grows a counter by at most this times the time
 * since the previous read (plus one second).
 */
#define RATE_COUNT 10000000ull      /* connections, handshakes, refusals */
#define RATE_BYTES 100000000000ull  /* 100 GB/s */
#define RATE_US 10000000000000ull   /* summed microseconds */

/* One listener name's totals of the workers that are gone. */
struct series {
	char *name;
	uint64_t base[STATS_N];
};

/* One live worker's counters, as the master last saw them. */
struct metrics_src {
	struct stats *st;
	size_t nls;
	size_t *series;       /* per block: index in m->series */
	uint64_t *max_active; /* per block: the listener's max_connections */
	uint64_t *seen;       /* nls * STATS_N, monotonic, clamped */
	uint64_t last_ms;
	struct metrics_src *next;
};

struct metrics {
	struct series *series;
	size_t nseries, capseries;
	struct metrics_src *live;
};

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
rate(size_t k)
{
	if (k == STATS_BYTES_IN || k == STATS_BYTES_OUT)
		return RATE_BYTES;
	if (k == STATS_HS_SUM_US || k == STATS_BE_SUM_US)
		return RATE_US;
	return RATE_COUNT;
}

struct metrics *
metrics_new(void)
{
	return calloc(1, sizeof(struct metrics));
}

static void
src_free(struct metrics_src *s, bool unmap)
{
	if (s == NULL)
		return;
	if (unmap)
		stats_free(s->st);
	else
		stats_forget(s->st);
	free(s->series);
	free(s->max_active);
	free(s->seen);
	free(s);
}

static void
free_all(struct metrics *m, bool unmap)
{
	struct metrics_src *s, *next;
	size_t i;

	if (m == NULL)
		return;
	for (s = m->live; s != NULL; s = next) {
		next = s->next;
		src_free(s, unmap);
	}
	for (i = 0; i < m->nseries; i++)
		free(m->series[i].name);
	free(m->series);
	free(m);
}

void
metrics_free(struct metrics *m)
{
	free_all(m, true);
}

void
metrics_free_in_worker(struct metrics *m)
{
	free_all(m, false);
}

/* The series of listener ${name}, made if new; -1 if out of memory. */
static long
series_of(struct metrics *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nseries; i++)
		if (strcmp(m->series[i].name, name) == 0)
			return (long)i;
	if (m->nseries == m->capseries) {
		size_t cap = m->capseries ? 2 * m->capseries : 8;
		struct series *s = realloc(m->series, cap * sizeof(*s));

		if (s == NULL)
			return -1;
		m->series = s;
		m->capseries = cap;
	}
	memset(&m->series[m->nseries], 0, sizeof(m->series[0]));
	if ((m->series[m->nseries].name = strdup(name)) == NULL)
		return -1;
	return (long)m->nseries++;
}

struct metrics_src *
metrics_src_new(struct metrics *m, const struct cfg *c, uint64_t now_ms)
{
	struct metrics_src *s;
	size_t i, n = c->nlisteners;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->nls = n;
	s->last_ms = now_ms;
	s->series = calloc(n ? n : 1, sizeof(*s->series));
	s->max_active = calloc(n ? n : 1, sizeof(*s->max_active));
	s->seen = calloc((n ? n : 1) * STATS_N, sizeof(*s->seen));
	if (s->series == NULL || s->max_active == NULL || s->seen == NULL)
		goto err;
	for (i = 0; i < n; i++) {
		long k = series_of(m, c->listeners[i].name);

		if (k < 0)
			goto err;
		s->series[i] = (size_t)k;
		s->max_active[i] = c->listeners[i].max_connections;
	}
	if ((s->st = stats_new(n)) == NULL)
		goto err;
	s->next = m->live;
	m->live = s;
	return s;

err:
	src_free(s, true);
	errno = ENOMEM;
	return NULL;
}

struct stats *
metrics_src_stats(const struct metrics_src *s)
{
	return s->st;
}

int
metrics_src_forked(struct metrics_src *s)
{
	return stats_sealed(s->st);
}

/* Read ${s}'s region once more: monotonic, each step bounded. */
static void
src_update(struct metrics_src *s, uint64_t now_ms)
{
	uint64_t raw[STATS_N];
	uint64_t secs = (now_ms > s->last_ms ? now_ms - s->last_ms : 0) /
	    1000 + 1;
	size_t i, k;

	for (i = 0; i < s->nls; i++) {
		uint64_t *seen = &s->seen[i * STATS_N];

		stats_read(s->st, i, raw);
		for (k = 0; k < STATS_N; k++) {
			uint64_t d, cap;

			if (k == STATS_ACTIVE) {
				seen[k] = raw[k] < s->max_active[i] ? raw[k] :
				    s->max_active[i];
				continue;
			}
			if (raw[k] <= seen[k])
				continue; /* down: no progress, not a reset */
			d = raw[k] - seen[k];
			cap = rate(k) * secs;
			seen[k] = sat_add(seen[k], d < cap ? d : cap);
		}
	}
	s->last_ms = now_ms;
}

void
metrics_src_done(struct metrics *m, struct metrics_src *s, uint64_t now_ms)
{
	struct metrics_src **pp;
	size_t i, k;

	if (s == NULL)
		return;
	for (pp = &m->live; *pp != NULL && *pp != s; pp = &(*pp)->next)
		;
	if (*pp == s)
		*pp = s->next;
	src_update(s, now_ms);
	for (i = 0; i < s->nls; i++)
		for (k = 0; k < STATS_N; k++)
			if (k != STATS_ACTIVE)
				m->series[s->series[i]].base[k] = sat_add(
				    m->series[s->series[i]].base[k],
				    s->seen[i * STATS_N + k]);
	src_free(s, true);
}

/* Every counter of series ${j}: totals plus the live workers' values. */
static void
totals(const struct metrics *m, size_t j, uint64_t out[STATS_N])
{
	const struct metrics_src *s;
	size_t i, k;

	memcpy(out, m->series[j].base, STATS_N * sizeof(out[0]));
	for (s = m->live; s != NULL; s = s->next)
		for (i = 0; i < s->nls; i++)
			if (s->series[i] == j)
				for (k = 0; k < STATS_N; k++)
					out[k] = sat_add(out[k],
					    s->seen[i * STATS_N + k]);
}

static void
update_all(struct metrics *m, uint64_t now_ms)
{
	struct metrics_src *s;

	for (s = m->live; s != NULL; s = s->next)
		src_update(s, now_ms);
}

uint64_t
metrics_total(struct metrics *m, const char *listener, int k,
    uint64_t now_ms)
{
	uint64_t v[STATS_N];
	size_t j;

	if (k < 0 || k >= STATS_N)
		return 0;
	update_all(m, now_ms);
	for (j = 0; j < m->nseries; j++)
		if (strcmp(m->series[j].name, listener) == 0) {
			totals(m, j, v);
			return v[k];
		}
	return 0;
}

/* --- the exposition ------------------------------------------------------ */

/* Length of the UTF-8 character at ${s}, 0 if it is not one. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07u;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	/* Overlong forms, surrogates, beyond U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

char *
metrics_escape(const char *in, char *out, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	if (len == 0)
		return out;
	while (*s != '\0') {
		char esc[2] = { 0, 0 };
		size_t n = utf8_len(s), k;

		if (*s == '\\' || *s == '"')
			esc[0] = '\\', esc[1] = (char)*s;
		else if (*s == '\n')
			esc[0] = '\\', esc[1] = 'n';
		if (esc[0] != '\0') {
			if (o + 2 >= len)
				break;
			out[o++] = esc[0];
			out[o++] = esc[1];
			s++;
		} else if (n == 0) {
			if (o + 1 >= len)
				break;
			out[o++] = '?';
			s++;
		} else {
			if (o + n >= len)
				break;
			for (k = 0; k < n; k++)
				out[o++] = (char)s[k];
			s += n;
		}
	}
	out[o] = '\0';
	return out;
}

/* The text being built; ${oom} once anything failed. */
struct out {
	char *p;
	size_t len, cap;
	bool oom;
};

static void out_printf(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		if (o->cap >= BODY_MAX) {
			o->oom = true;
			return;
		}
		{
			size_t cap = o->cap * 2;
			char *p;

			while (cap - o->len <= (size_t)n)
				cap *= 2;
			if ((p = realloc(o->p, cap)) == NULL) {
				o->oom = true;
				return;
			}
			o->p = p;
			o->cap = cap;
		}
	}
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
histogram(struct out *o, const struct metrics *m, const char *name,
    const char *help, size_t bucket0, size_t sum)
{
	uint64_t v[STATS_N];
	char bn[96];
	size_t j, b;

	family(o, name, "histogram", help);
	for (j = 0; j < m->nseries; j++) {
		uint64_t cum = 0;
		const char *l = m->series[j].name;

		totals(m, j, v);
		snprintf(bn, sizeof(bn), "%s_bucket", name);
		for (b = 0; b < STATS_NBOUNDS; b++) {
			cum = sat_add(cum, v[bucket0 + b]);
			out_printf(o, "%s{listener=\"%s\",le=\"%g\"} %" PRIu64
			    "\n", bn, l, (double)stats_bounds_us[b] / 1e6, cum);
		}
		cum = sat_add(cum, v[bucket0 + STATS_NBOUNDS]);
		out_printf(o, "%s{listener=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
		    bn, l, cum);
		out_printf(o, "%s_sum{listener=\"%s\"} %.6f\n", name, l,
		    (double)v[sum] / 1e6);
		out_printf(o, "%s_count{listener=\"%s\"} %" PRIu64 "\n", name, l,
		    cum);
	}
}

/* Per listener: one line per label value of counters [k0, k0 + n). */
static void
per_listener(struct out *o, const struct metrics *m, const char *name,
    const char *label, const char *const *values, size_t k0, size_t n)
{
	uint64_t v[STATS_N];
	size_t j, i;

	for (j = 0; j < m->nseries; j++) {
		totals(m, j, v);
		for (i = 0; i < n; i++)
			out_printf(o, "%s{listener=\"%s\",%s=\"%s\"} %" PRIu64
			    "\n", name, m->series[j].name, label, values[i],
			    v[k0 + i]);
	}
}

static void
dates(struct out *o, const struct metrics_facts *f)
{
	char name[600], kind[64];
	size_t i;

	family(o, "tls_echod_certificate_expiry_timestamp_seconds", "gauge",
	    "When a certificate the listeners use expires (Unix time).");
	for (i = 0; i < f->ndates; i++)
		if (f->dates[i].kind != NULL)
			out_printf(o, "tls_echod_certificate_expiry_timestamp_"
			    "seconds{listener=\"%s\",kind=\"%s\",subject=\"%s\"}"
			    " %" PRId64 "\n", f->dates[i].listener,
			    metrics_escape(f->dates[i].kind, kind, sizeof(kind)),
			    metrics_escape(f->dates[i].name, name,
			    sizeof(name)), f->dates[i].when);
	family(o, "tls_echod_crl_next_update_timestamp_seconds", "gauge",
	    "When a CRL's next update is due (Unix time).");
	for (i = 0; i < f->ndates; i++)
		if (f->dates[i].kind == NULL)
			out_printf(o, "tls_echod_crl_next_update_timestamp_"
			    "seconds{listener=\"%s\",issuer=\"%s\"} %" PRId64
			    "\n", f->dates[i].listener,
			    metrics_escape(f->dates[i].name, name,
			    sizeof(name)), f->dates[i].when);
}

int
metrics_render(struct metrics *m, const struct metrics_facts *f,
    uint64_t now_ms, char **ret_body, size_t *ret_len)
{
	static const char *const hs_versions[] = { "TLSv1.2", "TLSv1.3" };
	static const char *const dirs[] = { "in", "out" };
	struct out o = { .cap = 16384 };
	uint64_t v[STATS_N];
	size_t j, i;

	if ((o.p = malloc(o.cap)) == NULL)
		return -1;
	o.p[0] = '\0';
	update_all(m, now_ms);

	family(&o, "tls_echod_connections_total", "counter",
	    "Connections accepted.");
	for (j = 0; j < m->nseries; j++) {
		totals(m, j, v);
		out_printf(&o, "tls_echod_connections_total{listener=\"%s\"} %"
		    PRIu64 "\n", m->series[j].name, v[STATS_CONNS]);
	}
	family(&o, "tls_echod_connections_active", "gauge",
	    "Connections open now.");
	for (j = 0; j < m->nseries; j++) {
		totals(m, j, v);
		out_printf(&o, "tls_echod_connections_active{listener=\"%s\"} %"
		    PRIu64 "\n", m->series[j].name, v[STATS_ACTIVE]);
	}
	family(&o, "tls_echod_handshakes_total", "counter",
	    "TLS handshakes completed by admitted clients.");
	for (j = 0; j < m->nseries; j++) {
		totals(m, j, v);
		for (i = 0; i < 4; i++)
			out_printf(&o, "tls_echod_handshakes_total{listener="
			    "\"%s\",version=\"%s\",resumed=\"%s\"} %" PRIu64
			    "\n", m->series[j].name, hs_versions[i / 2],
			    i % 2 ? "yes" : "no", v[STATS_HS + i]);
	}
	family(&o, "tls_echod_refusals_total", "counter",
	    "Connections refused before or at the handshake, by CLOSE_REASON.");
	per_listener(&o, m, "tls_echod_refusals_total", "reason",
	    stats_refusal_names, STATS_REFUSAL, STATS_NREFUSAL);
	family(&o, "tls_echod_bytes_total", "counter",
	    "Bytes read from (in) and written to (out) clients.");
	per_listener(&o, m, "tls_echod_bytes_total", "direction", dirs,
	    STATS_BYTES_IN, 2);
	histogram(&o, m, "tls_echod_handshake_seconds", "Time from accept to "
	    "a completed handshake of an admitted client.", STATS_HS_BUCKET,
	    STATS_HS_SUM_US);
	histogram(&o, m, "tls_echod_backend_connect_seconds", "Time to reach "
	    "the backend (connect, PROXY header, backend TLS).",
	    STATS_BE_BUCKET, STATS_BE_SUM_US);
	family(&o, "tls_echod_backend_failures_total", "counter",
	    "Relayed connections whose backend failed them, by CLOSE_REASON.");
	per_listener(&o, m, "tls_echod_backend_failures_total", "reason",
	    stats_backend_names, STATS_BACKEND, STATS_NBACKEND);
	dates(&o, f);
	family(&o, "tls_echod_reloads_total", "counter",
	    "Reloads (SIGHUP) by result.");
	out_printf(&o, "tls_echod_reloads_total{result=\"success\"} %" PRIu64
	    "\ntls_echod_reloads_total{result=\"failure\"} %" PRIu64 "\n",
	    f->reloads_ok, f->reloads_failed);
	family(&o, "tls_echod_last_reload_success_timestamp_seconds", "gauge",
	    "When the configuration in force was loaded (Unix time).");
	out_printf(&o, "tls_echod_last_reload_success_timestamp_seconds %"
	    PRId64 "\n", f->last_reload_ok);
	family(&o, "tls_echod_worker_restarts_total", "counter",
	    "Workers that died and were restarted.");
	out_printf(&o, "tls_echod_worker_restarts_total %" PRIu64 "\n",
	    f->worker_restarts);
	family(&o, "tls_echod_generation", "gauge",
	    "The configuration generation in force (1, then one more per "
	    "successful reload).");
	out_printf(&o, "tls_echod_generation %u\n", f->generation);
	family(&o, "tls_echod_workers", "gauge",
	    "Worker processes: serving the current generation, or draining.");
	out_printf(&o, "tls_echod_workers{state=\"current\"} %u\n"
	    "tls_echod_workers{state=\"draining\"} %u\n", f->workers,
	    f->draining);
	if (o.oom) {
		free(o.p);
		return -1;
	}
	*ret_body = o.p;
	*ret_len = o.len;
	return 0;
}
