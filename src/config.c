/*
 * config: libconfig file -> validated, immutable settings.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_SHUTDOWN_TIMEOUT_MS 30000u
#define DEFAULT_DRAIN_TIMEOUT_MS 300000u
#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_EXPIRY_WARN_DAYS 30u
#define DEFAULT_TICKET_LIFETIME_S 3600u
#define DEFAULT_VERIFY_DEPTH 2u
#define MAX_VERIFY_DEPTH 8u      /* MBEDTLS_X509_MAX_INTERMEDIATE_CA */
#define MAX_CRLS 16u
#define MAX_ALLOW 256u
#define DEFAULT_LINGER_TIMEOUT_MS 30000u
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_MS 300000u
#define DEFAULT_MAX_CONNECTIONS 10000u
#define DEFAULT_RECORD_SIZE 4096u
#define DEFAULT_WORKER_CONNECTIONS 20000u
#define DEFAULT_LOG_REFUSALS_PER_S 10u
#define MAX_WORKERS 256u
#define MAX_LISTENERS 256u

/* State of one load: where messages go and what relative paths hang off. */
struct loader {
	const char *path;
	char *dir; /* folder of the config file, for relative paths */
	struct cfg_strs includes; /* the @include files met, absolute */
	char *err;
	size_t errlen;
};

/* Global defaults a listener inherits. */
struct defaults {
	unsigned handshake_timeout_ms;
	unsigned idle_timeout_ms;
	unsigned max_connections;
	unsigned max_per_identity;
};

static const char *const global_keys[] = {
	"workers", "user", "group", "log", "watch", "shutdown_timeout",
	"drain_timeout",
	"handshake_timeout", "idle_timeout", "max_connections", "listeners",
	"expiry_warn_days", "ticket_lifetime", "ticket_max_age",
	"ticket_key_file",
	"worker_connections", "max_connections_per_identity",
	"log_refusals_per_second", "sandbox", "metrics", NULL,
};
static const char *const listener_keys[] = {
	"name", "listen", "mode", "tls", "banner", "handshake_timeout",
	"idle_timeout", "max_connections", "backend", "linger_timeout",
	"allow", "max_connections_per_identity", NULL,
};
static const char *const tls_keys[] = {
	"cert", "key", "ca", "crl", "crl_stale", "verify_client",
	"verify_depth", "ciphers", "curves", "min_version", "resumption",
	"record_size", NULL,
};
static const char *const allow_keys[] = {
	"cn", "ou", "dns", "uri", "email", "spki_sha256", NULL,
};
static const char *const backend_keys[] = {
	"address", "connect_timeout", "proxy_protocol", "tls", NULL,
};
static const char *const backend_tls_keys[] = {
	"ca", "cert", "key", "server_name", NULL,
};

/*
 * The file ${s} was read from, as a path the operator can open: libconfig
 * keeps @include names as written, relative to the config's folder.
 */
static void
source_file(const struct loader *l, const config_setting_t *s, char *buf,
    size_t len)
{
	const char *f = s ? config_setting_source_file(s) : NULL;

	if (f == NULL || strcmp(f, l->path) == 0)
		snprintf(buf, len, "%s", l->path);
	else if (f[0] == '/' || l->dir == NULL)
		snprintf(buf, len, "%s", f);
	else
		snprintf(buf, len, "%s/%s", l->dir, f);
}

/* Report "file:line: setting: message" for ${s} (NULL: no setting). */
static void __attribute__((format(printf, 3, 4)))
fail(struct loader *l, const config_setting_t *s, const char *fmt, ...)
{
	char msg[512], file[PATH_MAX];
	va_list ap;
	int line = 0;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	source_file(l, s, file, sizeof(file));
	if (s != NULL)
		line = (int)config_setting_source_line(s);
	if (line > 0)
		snprintf(l->err, l->errlen, "%s:%d: %s", file, line, msg);
	else
		snprintf(l->err, l->errlen, "%s: %s", file, msg);
}

/* Dotted name of ${s} for messages: "listeners[1].tls.key". */
static void
setting_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *chain[16];
	size_t n = 0, off = 0;

	buf[0] = '\0';
	for (; s != NULL && config_setting_parent(s) != NULL && n < 16;
	    s = config_setting_parent(s))
		chain[n++] = s;
	while (n-- > 0 && off < len) {
		const char *name = config_setting_name(chain[n]);
		int w;

		if (name != NULL)
			w = snprintf(buf + off, len - off, "%s%s",
			    off ? "." : "", name);
		else
			w = snprintf(buf + off, len - off, "[%d]",
			    config_setting_index(chain[n]));
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

static const char *
type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP: return "a group { ... }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a number";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
	case CONFIG_TYPE_LIST: return "a list ( ... )";
	default: return "an unknown type";
	}
}

/* Refuse members of group ${g} not in ${known}: typos must not pass. */
static int
check_keys(struct loader *l, const config_setting_t *g,
    const char *const *known)
{
	int i, n = config_setting_length(g);

	for (i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(m);
		const char *const *k;
		char where[128];

		for (k = known; *k != NULL; k++)
			if (strcmp(*k, name) == 0)
				break;
		if (*k != NULL)
			continue;
		{
			char allowed[256];
			size_t off = 0;

			allowed[0] = '\0';
			for (k = known; *k != NULL && off < sizeof(allowed); k++) {
				int w = snprintf(allowed + off,
				    sizeof(allowed) - off, "%s%s",
				    k == known ? "" : ", ", *k);

				if (w < 0)
					break;
				off += (size_t)w;
			}
			setting_path(m, where, sizeof(where));
			fail(l, m, "%s: unknown setting (known here: %s)",
			    where, allowed);
		}
		return -1;
	}
	return 0;
}

/* Member ${name} of ${g} if present and of type ${type}; NULL if absent. */
static int
get_typed(struct loader *l, const config_setting_t *g, const char *name,
    int type, config_setting_t **ret)
{
	config_setting_t *s = config_setting_get_member(g, name);
	char where[128];

	*ret = s;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) == type)
		return 0;
	setting_path(s, where, sizeof(where));
	fail(l, s, "%s: must be %s, not %s", where, type_name(type),
	    type_name(config_setting_type(s)));
	return -1;
}

static int
get_string(struct loader *l, const config_setting_t *g, const char *name,
    bool required, const char **ret, config_setting_t **ret_s)
{
	config_setting_t *s;

	if (get_typed(l, g, name, CONFIG_TYPE_STRING, &s) != 0)
		return -1;
	if (s == NULL) {
		if (required) {
			char where[128];

			setting_path(g, where, sizeof(where));
			fail(l, g, "%s%s%s: required setting missing",
			    where, where[0] ? "." : "", name);
			return -1;
		}
		*ret = NULL;
	} else
		*ret = config_setting_get_string(s);
	if (ret_s != NULL)
		*ret_s = s;
	return 0;
}

/* An integer in [min, max]; ${*ret} unchanged when absent. */
static int
get_uint(struct loader *l, const config_setting_t *g, const char *name,
    unsigned min, unsigned max, unsigned *ret)
{
	config_setting_t *s = config_setting_get_member(g, name);
	char where[128];
	long long v;

	if (s == NULL)
		return 0;
	setting_path(s, where, sizeof(where));
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64) {
		fail(l, s, "%s: must be an integer, not %s", where,
		    type_name(config_setting_type(s)));
		return -1;
	}
	v = config_setting_get_int64(s);
	if (v < (long long)min || v > (long long)max) {
		fail(l, s, "%s: %lld is out of range (%u to %u)", where, v,
		    min, max);
		return -1;
	}
	*ret = (unsigned)v;
	return 0;
}

/* A boolean; ${*ret} unchanged when absent. */
static int
get_bool(struct loader *l, const config_setting_t *g, const char *name,
    bool *ret)
{
	config_setting_t *s;

	if (get_typed(l, g, name, CONFIG_TYPE_BOOL, &s) != 0)
		return -1;
	if (s != NULL)
		*ret = config_setting_get_bool(s) != 0;
	return 0;
}

/* Seconds (integer or decimal) in [min_ms, max_ms], stored as milliseconds. */
static int
get_seconds(struct loader *l, const config_setting_t *g, const char *name,
    unsigned min_ms, unsigned max_ms, unsigned *ret_ms)
{
	config_setting_t *s = config_setting_get_member(g, name);
	char where[128];
	double v;

	if (s == NULL)
		return 0;
	setting_path(s, where, sizeof(where));
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		v = (double)config_setting_get_int64(s);
		break;
	case CONFIG_TYPE_FLOAT:
		v = config_setting_get_float(s);
		break;
	default:
		fail(l, s, "%s: must be a number of seconds, not %s", where,
		    type_name(config_setting_type(s)));
		return -1;
	}
	if (!isfinite(v) || v * 1000.0 < (double)min_ms ||
	    v * 1000.0 > (double)max_ms) {
		fail(l, s, "%s: %g seconds is out of range (%g to %g)", where,
		    v, min_ms / 1000.0, max_ms / 1000.0);
		return -1;
	}
	*ret_ms = (unsigned)lround(v * 1000.0);
	return 0;
}

static char *
xstrdup(struct loader *l, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		snprintf(l->err, l->errlen, "%s: out of memory", l->path);
	return d;
}

/* Parse "host:port": IPv4 literal, "[v6]:port", "*:port", "localhost:port". */
static int
parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    const char **why)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *port_s;
	size_t hlen;
	char *end;
	unsigned long port;
	bool bracketed = s[0] == '[';

	memset(ss, 0, sizeof(*ss));
	if (bracketed) {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':') {
			*why = "expected \"[IPv6]:port\"";
			return -1;
		}
		hlen = (size_t)(rb - s - 1);
		colon = rb + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*why = "expected \"address:port\" (port missing)";
			return -1;
		}
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		*why = "bad host part (use an IP address, \"localhost\" or \"*\")";
		return -1;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	port_s = colon + 1;
	errno = 0;
	port = strtoul(port_s, &end, 10);
	if (*port_s == '\0' || *end != '\0' || errno != 0 || port > 65535 ||
	    port_s[0] == '-' || port_s[0] == '+') {
		*why = "port must be a number from 0 to 65535";
		return -1;
	}
	if (strcmp(host, "*") == 0) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		/* Dual-stack wildcard; net binds it with IPV6_V6ONLY off. */
		a6->sin6_family = AF_INET6;
		a6->sin6_addr = in6addr_any;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return 0;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	{
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (!bracketed && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons((uint16_t)port);
			*len = sizeof(*a4);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons((uint16_t)port);
			*len = sizeof(*a6);
			return 0;
		}
	}
	*why = "not an IP address (use an IPv4 address, [IPv6], \"localhost\" or \"*\")";
	return -1;
}

static bool
addr_is_any(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

static uint16_t
addr_port(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)a)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
}

/* True if binding both would clash: same address and port, or a wildcard. */
static bool
addr_clash(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (addr_port(a) == 0 || addr_port(a) != addr_port(b))
		return false;
	if ((addr_is_any(a) && a->ss_family == AF_INET6) ||
	    (addr_is_any(b) && b->ss_family == AF_INET6))
		return true; /* "*" is dual-stack */
	if (a->ss_family != b->ss_family)
		return false;
	if (addr_is_any(a) || addr_is_any(b))
		return true;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr,
	    sizeof(struct in6_addr)) == 0;
}

/* Resolve ${value} (set by ${s}) against the config's folder; readable? */
static int
load_path(struct loader *l, const config_setting_t *s, const char *value,
    struct cfg_file *f)
{
	char where[128];

	setting_path(s, where, sizeof(where));
	if (value[0] == '\0') {
		fail(l, s, "%s: empty file name", where);
		return -1;
	}
	if (value[0] == '/' || l->dir == NULL)
		f->path = xstrdup(l, value);
	else {
		size_t n = strlen(l->dir) + strlen(value) + 2;

		f->path = malloc(n);
		if (f->path != NULL)
			snprintf(f->path, n, "%s/%s", l->dir, value);
		else
			snprintf(l->err, l->errlen, "%s: out of memory", l->path);
	}
	f->setting = xstrdup(l, where);
	f->line = (int)config_setting_source_line(s);
	{
		char file[PATH_MAX];

		source_file(l, s, file, sizeof(file));
		f->file = xstrdup(l, file);
	}
	if (f->path == NULL || f->setting == NULL || f->file == NULL)
		return -1;
	if (access(f->path, R_OK) != 0) {
		fail(l, s, "%s: cannot read \"%s\": %s", where, f->path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * File setting ${name} of ${g}, resolved and checked by load_path.  Absent
 * and not ${required}: f->path stays NULL.
 */
static int
load_file_opt(struct loader *l, const config_setting_t *g, const char *name,
    bool required, struct cfg_file *f)
{
	const char *value;
	config_setting_t *s;

	if (get_string(l, g, name, required, &value, &s) != 0)
		return -1;
	if (s == NULL)
		return 0;
	return load_path(l, s, value, f);
}

static int
load_file(struct loader *l, const config_setting_t *tls, const char *name,
    struct cfg_file *f)
{
	return load_file_opt(l, tls, name, true, f);
}

/* "unix:/path", else an address as for listen (but no wildcard). */
static int
parse_backend_addr(const char *s, struct sockaddr_storage *ss,
    socklen_t *len, const char **why)
{
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		size_t n = strlen(s + 5);

		memset(ss, 0, sizeof(*ss));
		if (n == 0 || s[5] != '/' || n >= sizeof(un->sun_path)) {
			*why = "expected \"unix:/absolute/path\" (at most 107 "
			    "bytes)";
			return -1;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s + 5, n + 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		return 0;
	}
	if (s[0] == '*') {
		*why = "a backend needs a specific address, not \"*\"";
		return -1;
	}
	if (parse_listen(s, ss, len, why) != 0)
		return -1;
	if (addr_port(ss) == 0) {
		*why = "port must be from 1 to 65535";
		return -1;
	}
	return 0;
}

static int
load_backend(struct loader *l, const config_setting_t *g,
    struct cfg_listener *li)
{
	struct cfg_backend *b = &li->backend;
	config_setting_t *bg, *s, *tls;
	const char *addr, *pp, *sn, *why;
	char where[128];

	if (get_typed(l, g, "backend", CONFIG_TYPE_GROUP, &bg) != 0)
		return -1;
	setting_path(g, where, sizeof(where));
	if (li->mode != CFG_MODE_RELAY) {
		if (bg != NULL) {
			fail(l, bg, "%s.backend: only for mode = \"relay\"",
			    where);
			return -1;
		}
		return 0;
	}
	if (bg == NULL) {
		/* Point at the mode line: that is what asks for a backend. */
		const config_setting_t *m = config_setting_get_member(g, "mode");

		fail(l, m, "%s.mode: \"relay\" needs a backend: add "
		    "backend = { address = \"host:port\"; };", where);
		return -1;
	}
	b->line = (int)config_setting_source_line(bg);
	if (check_keys(l, bg, backend_keys) != 0)
		return -1;
	if (get_string(l, bg, "address", true, &addr, &s) != 0)
		return -1;
	if (parse_backend_addr(addr, &b->addr, &b->addrlen, &why) != 0) {
		setting_path(s, where, sizeof(where));
		fail(l, s, "%s: \"%s\": %s", where, addr, why);
		return -1;
	}
	if ((b->address = xstrdup(l, addr)) == NULL)
		return -1;
	b->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	if (get_seconds(l, bg, "connect_timeout", 100, 3600000,
	    &b->connect_timeout_ms) != 0)
		return -1;
	if (get_string(l, bg, "proxy_protocol", false, &pp, &s) != 0)
		return -1;
	b->proxy = CFG_PROXY_OFF;
	if (pp != NULL) {
		if (strcmp(pp, "off") == 0)
			b->proxy = CFG_PROXY_OFF;
		else if (strcmp(pp, "v1") == 0)
			b->proxy = CFG_PROXY_V1;
		else if (strcmp(pp, "v2") == 0)
			b->proxy = CFG_PROXY_V2;
		else {
			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: unknown value \"%s\" (use \"off\", "
			    "\"v1\" or \"v2\")", where, pp);
			return -1;
		}
	}
	if (get_typed(l, bg, "tls", CONFIG_TYPE_GROUP, &tls) != 0)
		return -1;
	if (tls == NULL)
		return 0;
	b->tls = true;
	if (check_keys(l, tls, backend_tls_keys) != 0 ||
	    load_file(l, tls, "ca", &b->ca) != 0 ||
	    load_file_opt(l, tls, "cert", false, &b->cert) != 0 ||
	    load_file_opt(l, tls, "key", false, &b->key) != 0)
		return -1;
	if ((b->cert.path == NULL) != (b->key.path == NULL)) {
		setting_path(tls, where, sizeof(where));
		fail(l, tls, "%s: cert and key go together (a client "
		    "certificate for the backend needs both)", where);
		return -1;
	}
	if (get_string(l, tls, "server_name", false, &sn, &s) != 0)
		return -1;
	if (sn == NULL) {
		if (b->addr.ss_family == AF_UNIX) {
			setting_path(tls, where, sizeof(where));
			fail(l, tls, "%s.server_name: required for a unix "
			    "socket backend (the name its certificate must "
			    "carry)", where);
			return -1;
		}
		/* The host part of the address: an IP the certificate's
		 * SAN must hold, or "localhost". */
		sn = addr;
	}
	if ((b->server_name = xstrdup(l, sn)) == NULL)
		return -1;
	if (sn == addr) {
		char *p = b->server_name, *colon = strrchr(p, ':');

		if (colon != NULL)
			*colon = '\0';
		if (p[0] == '[') {
			memmove(p, p + 1, strlen(p));
			p[strcspn(p, "]")] = '\0';
		}
	}
	return 0;
}

/*
 * A string or a list/array of strings, each checked by ${ok} (NULL: any
 * non-empty string); at most ${max}.
 */
static int
get_strs(struct loader *l, const config_setting_t *g, const char *name,
    size_t max, bool (*ok)(const char *, const char **), struct cfg_strs *out)
{
	config_setting_t *s = config_setting_get_member(g, name);
	char where[160];
	int i, n;

	if (s == NULL)
		return 0;
	setting_path(s, where, sizeof(where));
	out->line = (int)config_setting_source_line(s);
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		n = 1;
	else if (config_setting_type(s) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(s) == CONFIG_TYPE_LIST)
		n = config_setting_length(s);
	else {
		fail(l, s, "%s: must be a string or a list of strings "
		    "[ \"a\", \"b\" ], not %s", where,
		    type_name(config_setting_type(s)));
		return -1;
	}
	if ((size_t)n > max) {
		fail(l, s, "%s: %d entries, at most %zu", where, n, max);
		return -1;
	}
	if (n > 0 && (out->v = calloc((size_t)n, sizeof(*out->v))) == NULL) {
		snprintf(l->err, l->errlen, "%s: out of memory", l->path);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_type(s) ==
		    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s,
		    (unsigned)i);
		const char *v, *why = "empty";

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			fail(l, e, "%s: entry %d must be a string, not %s",
			    where, i + 1, type_name(config_setting_type(e)));
			return -1;
		}
		v = config_setting_get_string(e);
		if (v[0] == '\0' || (ok != NULL && !ok(v, &why))) {
			fail(l, e, "%s: \"%s\": %s", where, v, why);
			return -1;
		}
		if ((out->v[i] = xstrdup(l, v)) == NULL)
			return -1;
		out->n++;
	}
	return 0;
}

static void
strs_free(struct cfg_strs *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* "*.example.com": a star only as the whole leftmost label. */
static bool
dns_pattern_ok(const char *p, const char **why)
{
	const char *star = strchr(p, '*');

	if (star == NULL)
		return true;
	if (star != p || p[1] != '.' || p[2] == '\0' ||
	    strchr(p + 1, '*') != NULL) {
		*why = "a '*' may only be the whole leftmost label, as in "
		    "\"*.svc.example\"";
		return false;
	}
	return true;
}

/* "spiffe://prod/ns/web/" plus a star: a star only at the end. */
static bool
uri_pattern_ok(const char *p, const char **why)
{
	const char *star = strchr(p, '*');

	if (star != NULL && star[1] != '\0') {
		*why = "a '*' may only end the pattern (a prefix match)";
		return false;
	}
	if (strstr(p, "://") == NULL && strncmp(p, "urn:", 4) != 0) {
		*why = "not a URI (expected scheme://..., e.g. spiffe://)";
		return false;
	}
	return true;
}

static bool
email_pattern_ok(const char *p, const char **why)
{
	if (strchr(p, '@') == NULL) {
		*why = "expected user@domain, or @domain for a whole domain";
		return false;
	}
	return true;
}

/* Standard base64 (padding optional) of exactly ${n} bytes. */
static bool
base64_decode(const char *s, uint8_t *out, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t acc = 0;
	size_t bits = 0, k = 0;

	for (; *s != '\0' && *s != '='; s++) {
		const char *p = strchr(tab, *s);

		if (p == NULL)
			return false;
		acc = (acc << 6) | (uint32_t)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (k == n)
				return false;
			out[k++] = (uint8_t)(acc >> bits);
		}
	}
	while (*s == '=')
		s++;
	return *s == '\0' && k == n && (acc & ((1u << bits) - 1)) == 0;
}

static int
load_allow(struct loader *l, const config_setting_t *g,
    struct cfg_listener *li)
{
	struct cfg_allow *a = &li->allow;
	struct cfg_strs spki = { 0 };
	config_setting_t *ag;
	size_t i;

	if (get_typed(l, g, "allow", CONFIG_TYPE_GROUP, &ag) != 0)
		return -1;
	if (ag == NULL)
		return 0;
	if (check_keys(l, ag, allow_keys) != 0 ||
	    get_strs(l, ag, "cn", MAX_ALLOW, NULL, &a->cn) != 0 ||
	    get_strs(l, ag, "ou", MAX_ALLOW, NULL, &a->ou) != 0 ||
	    get_strs(l, ag, "dns", MAX_ALLOW, dns_pattern_ok, &a->dns) != 0 ||
	    get_strs(l, ag, "uri", MAX_ALLOW, uri_pattern_ok, &a->uri) != 0 ||
	    get_strs(l, ag, "email", MAX_ALLOW, email_pattern_ok,
	    &a->email) != 0 ||
	    get_strs(l, ag, "spki_sha256", MAX_ALLOW, NULL, &spki) != 0)
		goto err;
	if (spki.n > 0 &&
	    (a->spki = calloc(spki.n, sizeof(*a->spki))) == NULL) {
		snprintf(l->err, l->errlen, "%s: out of memory", l->path);
		goto err;
	}
	for (i = 0; i < spki.n; i++) {
		if (!base64_decode(spki.v[i], a->spki[i], CFG_SPKI_LEN)) {
			const config_setting_t *s =
			    config_setting_get_member(ag, "spki_sha256");
			char where[160];

			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: \"%s\" is not the base64 of a SHA-256 "
			    "(44 characters; `openssl x509 -pubkey -noout | "
			    "openssl pkey -pubin -outform DER | openssl dgst "
			    "-sha256 -binary | base64`)", where, spki.v[i]);
			goto err;
		}
		a->nspki++;
	}
	strs_free(&spki);
	return 0;
err:
	strs_free(&spki);
	return -1;
}

static bool
cipher_name_ok(const char *p, const char **why)
{
	if (strncmp(p, "TLS_", 4) != 0) {
		*why = "use IANA names, e.g. TLS_AES_128_GCM_SHA256 or "
		    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
		return false;
	}
	return true;
}

/* The TLS settings beyond cert/key/ca, checked as far as config can. */
static int
load_tls_policy(struct loader *l, const config_setting_t *tls,
    struct cfg_listener *li)
{
	const char *v;
	config_setting_t *s;
	char where[160];
	struct cfg_strs crls = { 0 };
	size_t i;

	setting_path(tls, where, sizeof(where));
	if ((li->setting_tls = xstrdup(l, where)) == NULL)
		return -1;
	li->verify_depth = DEFAULT_VERIFY_DEPTH;
	li->min_version = 12;
	li->resumption = CFG_RESUME_PSK_DHE_KE;
	li->record_size = DEFAULT_RECORD_SIZE;
	if (get_uint(l, tls, "verify_depth", 0, MAX_VERIFY_DEPTH,
	    &li->verify_depth) != 0 ||
	    get_uint(l, tls, "record_size", 512, 16384, &li->record_size) != 0)
		return -1;
	if (li->record_size != 512 && li->record_size != 1024 &&
	    li->record_size != 2048 && li->record_size != 4096 &&
	    li->record_size != 16384) {
		s = config_setting_get_member(tls, "record_size");
		setting_path(s, where, sizeof(where));
		fail(l, s, "%s: %u: use 512, 1024, 2048, 4096 or 16384 (the "
		    "sizes TLS can announce)", where, li->record_size);
		return -1;
	}
	if (get_string(l, tls, "verify_client", false, &v, &s) != 0)
		return -1;
	if (v != NULL) {
		if (strcmp(v, "optional") == 0)
			li->verify_optional = true;
		else if (strcmp(v, "required") != 0) {
			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: unknown value \"%s\" (use \"required\" "
			    "or \"optional\")", where, v);
			return -1;
		}
	}
	if (get_string(l, tls, "crl_stale", false, &v, &s) != 0)
		return -1;
	if (v != NULL) {
		if (strcmp(v, "refuse") == 0)
			li->crl_stale = CFG_CRL_STALE_REFUSE;
		else if (strcmp(v, "warn") != 0) {
			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: unknown value \"%s\" (use \"warn\" or "
			    "\"refuse\")", where, v);
			return -1;
		}
	}
	if (get_string(l, tls, "min_version", false, &v, &s) != 0)
		return -1;
	if (v != NULL) {
		li->min_version_line = (int)config_setting_source_line(s);
		if (strcmp(v, "1.3") == 0)
			li->min_version = 13;
		else if (strcmp(v, "1.2") != 0) {
			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: \"%s\": use \"1.2\" or \"1.3\" (older "
			    "versions are not supported)", where, v);
			return -1;
		}
	}
	if (get_string(l, tls, "resumption", false, &v, &s) != 0)
		return -1;
	if (v != NULL) {
		if (strcmp(v, "off") == 0)
			li->resumption = CFG_RESUME_OFF;
		else if (strcmp(v, "psk_ke") == 0)
			li->resumption = CFG_RESUME_PSK_KE;
		else if (strcmp(v, "psk_dhe_ke") != 0) {
			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: unknown value \"%s\" (use \"psk_dhe_ke\" "
			    "(default, forward secret), \"psk_ke\" (faster, no "
			    "forward secrecy) or \"off\")", where, v);
			return -1;
		}
	}
	if (get_strs(l, tls, "ciphers", 32, cipher_name_ok, &li->ciphers) != 0 ||
	    get_strs(l, tls, "curves", 16, NULL, &li->curves) != 0 ||
	    get_strs(l, tls, "crl", MAX_CRLS, NULL, &crls) != 0)
		goto err;
	if (crls.n > 0) {
		if ((li->crl = calloc(crls.n, sizeof(*li->crl))) == NULL) {
			snprintf(l->err, l->errlen, "%s: out of memory",
			    l->path);
			goto err;
		}
		s = config_setting_get_member(tls, "crl");
		for (i = 0; i < crls.n; i++) {
			/* Counted first: cfg_free frees what load_path
			 * filled in even when it fails. */
			li->ncrl++;
			if (load_path(l, s, crls.v[i], &li->crl[i]) != 0)
				goto err;
		}
	}
	strs_free(&crls);
	return 0;
err:
	strs_free(&crls);
	return -1;
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_NAME_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		    *s == '.'))
			return false;
	return true;
}

static int
load_listener(struct loader *l, const config_setting_t *g,
    const struct defaults *d, struct cfg_listener *li)
{
	const char *name, *listen, *mode, *banner, *why;
	config_setting_t *s, *tls;
	char where[128];

	setting_path(g, where, sizeof(where));
	li->line = (int)config_setting_source_line(g);
	if ((li->setting = xstrdup(l, where)) == NULL)
		return -1;
	{
		char file[PATH_MAX];

		source_file(l, g, file, sizeof(file));
		if ((li->file = xstrdup(l, file)) == NULL)
			return -1;
	}
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		fail(l, g, "%s: each listener must be a group { ... }, not %s",
		    where, type_name(config_setting_type(g)));
		return -1;
	}
	if (check_keys(l, g, listener_keys) != 0)
		return -1;

	if (get_string(l, g, "name", true, &name, &s) != 0)
		return -1;
	if (!valid_name(name)) {
		setting_path(s, where, sizeof(where));
		fail(l, s, "%s: \"%s\" is not a valid name (1-%d characters "
		    "from A-Z a-z 0-9 . _ -)", where, name, CFG_NAME_MAX);
		return -1;
	}
	if ((li->name = xstrdup(l, name)) == NULL)
		return -1;

	if (get_string(l, g, "listen", true, &listen, &s) != 0)
		return -1;
	if (parse_listen(listen, &li->addr, &li->addrlen, &why) != 0) {
		setting_path(s, where, sizeof(where));
		fail(l, s, "%s: \"%s\": %s", where, listen, why);
		return -1;
	}
	if ((li->listen = xstrdup(l, listen)) == NULL)
		return -1;

	if (get_string(l, g, "mode", false, &mode, &s) != 0)
		return -1;
	li->mode = CFG_MODE_ECHO;
	if (mode != NULL && strcmp(mode, "relay") == 0)
		li->mode = CFG_MODE_RELAY;
	else if (mode != NULL && strcmp(mode, "whoami") == 0)
		li->mode = CFG_MODE_WHOAMI;
	else if (mode != NULL && strcmp(mode, "echo") != 0) {
		setting_path(s, where, sizeof(where));
		fail(l, s, "%s: unknown mode \"%s\" (use \"echo\", "
		    "\"relay\" or \"whoami\")", where, mode);
		return -1;
	}
	if (load_backend(l, g, li) != 0)
		return -1;

	if (get_string(l, g, "banner", false, &banner, &s) != 0)
		return -1;
	if (banner != NULL) {
		li->banner_len = strlen(banner);
		if (li->banner_len > CFG_BANNER_MAX) {
			setting_path(s, where, sizeof(where));
			fail(l, s, "%s: %zu bytes is too long (at most %d)",
			    where, li->banner_len, CFG_BANNER_MAX);
			return -1;
		}
		if (li->banner_len > 0 &&
		    (li->banner = xstrdup(l, banner)) == NULL)
			return -1;
	}

	li->handshake_timeout_ms = d->handshake_timeout_ms;
	li->idle_timeout_ms = d->idle_timeout_ms;
	li->max_connections = d->max_connections;
	li->max_per_identity = d->max_per_identity;
	li->linger_timeout_ms = DEFAULT_LINGER_TIMEOUT_MS;
	if (get_seconds(l, g, "linger_timeout", 100, 3600000,
	    &li->linger_timeout_ms) != 0 ||
	    get_seconds(l, g, "handshake_timeout", 100, 3600000,
	    &li->handshake_timeout_ms) != 0 ||
	    get_seconds(l, g, "idle_timeout", 0, 86400000,
	    &li->idle_timeout_ms) != 0 ||
	    get_uint(l, g, "max_connections", 1, 1000000,
	    &li->max_connections) != 0 ||
	    get_uint(l, g, "max_connections_per_identity", 0, 1000000,
	    &li->max_per_identity) != 0)
		return -1;

	if (get_typed(l, g, "tls", CONFIG_TYPE_GROUP, &tls) != 0)
		return -1;
	if (tls == NULL) {
		setting_path(g, where, sizeof(where));
		fail(l, g, "%s.tls: required setting missing (a group with "
		    "cert, key and ca)", where);
		return -1;
	}
	if (check_keys(l, tls, tls_keys) != 0 ||
	    load_file(l, tls, "cert", &li->cert) != 0 ||
	    load_file(l, tls, "key", &li->key) != 0 ||
	    load_file(l, tls, "ca", &li->ca) != 0 ||
	    load_tls_policy(l, tls, li) != 0 ||
	    load_allow(l, g, li) != 0)
		return -1;
	return 0;
}

static int
load_listeners(struct loader *l, const config_setting_t *root,
    const struct defaults *d, struct cfg *c)
{
	config_setting_t *ls = config_setting_get_member(root, "listeners");
	int n;
	size_t i, j;

	if (ls == NULL) {
		fail(l, NULL, "listeners: required setting missing (a list "
		    "of listener groups)");
		return -1;
	}
	if (config_setting_type(ls) != CONFIG_TYPE_LIST &&
	    config_setting_type(ls) != CONFIG_TYPE_ARRAY) {
		fail(l, ls, "listeners: must be a list ( { ... }, ... ), not %s",
		    type_name(config_setting_type(ls)));
		return -1;
	}
	n = config_setting_length(ls);
	if (n == 0) {
		fail(l, ls, "listeners: no listener configured");
		return -1;
	}
	if ((unsigned)n > MAX_LISTENERS) {
		fail(l, ls, "listeners: %d listeners, at most %u", n,
		    MAX_LISTENERS);
		return -1;
	}
	c->listeners = calloc((size_t)n, sizeof(*c->listeners));
	if (c->listeners == NULL) {
		snprintf(l->err, l->errlen, "%s: out of memory", l->path);
		return -1;
	}
	c->nlisteners = (size_t)n;
	for (i = 0; i < c->nlisteners; i++) {
		const config_setting_t *g =
		    config_setting_get_elem(ls, (unsigned)i);

		if (load_listener(l, g, d, &c->listeners[i]) != 0)
			return -1;
		for (j = 0; j < i; j++) {
			const struct cfg_listener *a = &c->listeners[j];
			const struct cfg_listener *b = &c->listeners[i];

			if (strcmp(a->name, b->name) == 0) {
				fail(l, config_setting_get_member(g, "name"),
				    "%s.name: duplicate listener name \"%s\" "
				    "(also line %d)", b->setting, b->name,
				    a->line);
				return -1;
			}
			if (addr_clash(&a->addr, &b->addr)) {
				fail(l, config_setting_get_member(g, "listen"),
				    "%s.listen: \"%s\" overlaps listener \"%s\" "
				    "(\"%s\", line %d)", b->setting, b->listen,
				    a->name, a->listen, a->line);
				return -1;
			}
		}
	}
	return 0;
}

static unsigned
default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > (long)MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
}

/* Same IP address and port (a unix path never clashes with a listener). */
static bool
same_inet(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		    &((const struct sockaddr_in *)b)->sin_addr,
		    sizeof(struct in_addr)) == 0 &&
		    ((const struct sockaddr_in *)a)->sin_port ==
		    ((const struct sockaddr_in *)b)->sin_port;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		    &((const struct sockaddr_in6 *)b)->sin6_addr,
		    sizeof(struct in6_addr)) == 0 &&
		    ((const struct sockaddr_in6 *)a)->sin6_port ==
		    ((const struct sockaddr_in6 *)b)->sin6_port;
	return false;
}

/*
 * metrics = "127.0.0.1:9180" | "[::1]:9180" | "*:9180" | "unix:/path":
 * where the master serves /metrics, /healthz and /readyz (plain HTTP).
 */
static int
load_metrics(struct loader *l, const config_setting_t *root, struct cfg *c)
{
	const char *v, *why = NULL;
	config_setting_t *s;
	size_t i;

	if (get_string(l, root, "metrics", false, &v, &s) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (strncmp(v, "unix:", 5) != 0 && v[0] == '*') {
		/* parse_backend_addr refuses the wildcard a server may use. */
		if (parse_listen(v, &c->metrics_addr, &c->metrics_addrlen,
		    &why) == 0 && addr_port(&c->metrics_addr) == 0)
			why = "port must be from 1 to 65535";
	} else
		(void)parse_backend_addr(v, &c->metrics_addr,
		    &c->metrics_addrlen, &why);
	if (why != NULL) {
		fail(l, s, "metrics: \"%s\": %s", v, why);
		return -1;
	}
	for (i = 0; i < c->nlisteners; i++)
		if (same_inet(&c->metrics_addr, &c->listeners[i].addr)) {
			fail(l, s, "metrics: \"%s\": the address of listener "
			    "\"%s\" (metrics are plain HTTP, on an address of "
			    "their own)", v, c->listeners[i].name);
			return -1;
		}
	c->metrics_line = (int)config_setting_source_line(s);
	if ((c->metrics = xstrdup(l, v)) == NULL)
		return -1;
	return 0;
}

static int
load_root(struct loader *l, const config_setting_t *root, struct cfg *c)
{
	struct defaults d = {
		.handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS,
		.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS,
		.max_connections = DEFAULT_MAX_CONNECTIONS,
	};
	const char *user, *group, *log, *watch;
	config_setting_t *s;

	if (check_keys(l, root, global_keys) != 0)
		return -1;
	c->workers = default_workers();
	c->shutdown_timeout_ms = DEFAULT_SHUTDOWN_TIMEOUT_MS;
	c->drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
	c->expiry_warn_days = DEFAULT_EXPIRY_WARN_DAYS;
	c->ticket_lifetime_s = DEFAULT_TICKET_LIFETIME_S;
	c->worker_connections = DEFAULT_WORKER_CONNECTIONS;
	c->log_refusals_per_s = DEFAULT_LOG_REFUSALS_PER_S;
	c->sandbox = true;
	if (get_bool(l, root, "sandbox", &c->sandbox) != 0)
		return -1;
	if (get_uint(l, root, "expiry_warn_days", 0, 3650,
	    &c->expiry_warn_days) != 0 ||
	    get_uint(l, root, "ticket_lifetime", 60, 604800,
	    &c->ticket_lifetime_s) != 0 ||
	    get_uint(l, root, "ticket_max_age", 1, 1209600,
	    &c->ticket_max_age_s) != 0 ||
	    load_file_opt(l, root, "ticket_key_file", false,
	    &c->ticket_key_file) != 0)
		return -1;
	/* Unset: as long as one ticket can live (its period and the next). */
	if (c->ticket_max_age_s == 0)
		c->ticket_max_age_s = 2 * c->ticket_lifetime_s;
	if (get_uint(l, root, "workers", 1, MAX_WORKERS, &c->workers) != 0 ||
	    get_seconds(l, root, "shutdown_timeout", 0, 3600000,
	    &c->shutdown_timeout_ms) != 0 ||
	    get_seconds(l, root, "drain_timeout", 0, 86400000,
	    &c->drain_timeout_ms) != 0 ||
	    get_seconds(l, root, "handshake_timeout", 100, 3600000,
	    &d.handshake_timeout_ms) != 0 ||
	    get_seconds(l, root, "idle_timeout", 0, 86400000,
	    &d.idle_timeout_ms) != 0 ||
	    get_uint(l, root, "max_connections", 1, 1000000,
	    &d.max_connections) != 0 ||
	    get_uint(l, root, "max_connections_per_identity", 0, 1000000,
	    &d.max_per_identity) != 0 ||
	    get_uint(l, root, "worker_connections", 1, 1000000,
	    &c->worker_connections) != 0 ||
	    get_uint(l, root, "log_refusals_per_second", 0, 1000000,
	    &c->log_refusals_per_s) != 0)
		return -1;

	if (get_string(l, root, "user", false, &user, &s) != 0)
		return -1;
	if (user != NULL) {
		if (user[0] == '\0') {
			fail(l, s, "user: empty user name");
			return -1;
		}
		if ((c->user = xstrdup(l, user)) == NULL)
			return -1;
		c->user_line = (int)config_setting_source_line(s);
	}
	if (get_string(l, root, "group", false, &group, &s) != 0)
		return -1;
	if (group != NULL) {
		if (group[0] == '\0') {
			fail(l, s, "group: empty group name");
			return -1;
		}
		if ((c->group = xstrdup(l, group)) == NULL)
			return -1;
		c->group_line = (int)config_setting_source_line(s);
	}

	if (get_string(l, root, "log", false, &log, &s) != 0)
		return -1;
	c->log = CFG_LOG_AUTO;
	if (log != NULL) {
		if (strcmp(log, "auto") == 0)
			c->log = CFG_LOG_AUTO;
		else if (strcmp(log, "journal") == 0)
			c->log = CFG_LOG_JOURNAL;
		else if (strcmp(log, "stderr") == 0)
			c->log = CFG_LOG_STDERR;
		else if (strcmp(log, "json") == 0)
			c->log = CFG_LOG_JSON;
		else {
			fail(l, s, "log: unknown value \"%s\" (use \"auto\", "
			    "\"journal\", \"stderr\" or \"json\")", log);
			return -1;
		}
	}
	if (get_string(l, root, "watch", false, &watch, &s) != 0)
		return -1;
	c->watch = CFG_WATCH_TLS;
	if (watch != NULL) {
		c->watch_line = (int)config_setting_source_line(s);
		if (strcmp(watch, "off") == 0)
			c->watch = CFG_WATCH_OFF;
		else if (strcmp(watch, "tls") == 0)
			c->watch = CFG_WATCH_TLS;
		else if (strcmp(watch, "all") == 0)
			c->watch = CFG_WATCH_ALL;
		else {
			fail(l, s, "watch: unknown value \"%s\" (use \"off\", "
			    "\"tls\" or \"all\")", watch);
			return -1;
		}
	}
	if (load_listeners(l, root, &d, c) != 0)
		return -1;
	return load_metrics(l, root, c);
}

/*
 * libconfig 1.5 opens an @include with fopen(3) and lets its flex scanner
 * read whatever that is: for a directory flex calls exit(2) ("input in flex
 * scanner failed"), which would end a master on reload; a FIFO blocks;
 * /dev/zero never ends.  So before libconfig runs, follow the @include
 * lines (the scanner takes them at the start of a line) and refuse any that
 * names an existing file that is not a regular file.  Lines inside comments
 * or strings are checked too: telling them apart would mean redoing the
 * scanner, and a bypass (fuzz_config found one) costs more than refusing a
 * commented-out include of a directory.  Missing files are left to
 * libconfig's own message.
 */
#define MAX_INCLUDE_DEPTH 10 /* libconfig's own limit */

static int check_includes_in(struct loader *l, const char *file, FILE *f,
    int depth);

/* Check the file ${name}, as libconfig resolves it, and its own includes. */
static int
check_include(struct loader *l, const char *from, int line, const char *name,
    int depth)
{
	char path[PATH_MAX];
	struct stat st;
	FILE *f;
	int r;

	if (name[0] == '/' || l->dir == NULL)
		r = snprintf(path, sizeof(path), "%s", name);
	else
		r = snprintf(path, sizeof(path), "%s/%s", l->dir, name);
	if (r < 0 || (size_t)r >= sizeof(path) || stat(path, &st) != 0)
		return 0;
	if (!S_ISREG(st.st_mode)) {
		snprintf(l->err, l->errlen, "%s:%d: @include \"%s\": not a "
		    "regular file", from, line, name);
		return -1;
	}
	/* For watch = "all": every file the configuration is made of. */
	if (l->includes.n < 64) {
		char **v = realloc(l->includes.v, (l->includes.n + 1) *
		    sizeof(*v));

		if (v != NULL) {
			l->includes.v = v;
			if ((v[l->includes.n] = strdup(path)) != NULL)
				l->includes.n++;
		}
	}
	if (depth >= MAX_INCLUDE_DEPTH || (f = fopen(path, "re")) == NULL)
		return 0;
	r = check_includes_in(l, path, f, depth + 1);
	fclose(f);
	return r;
}

static int
check_includes_in(struct loader *l, const char *file, FILE *f, int depth)
{
	char *buf = NULL;
	size_t cap = 0;
	int line = 0, ret = 0;

	while (ret == 0 && getline(&buf, &cap, f) != -1) {
		const char *p = buf + strspn(buf, " \t");
		char name[PATH_MAX];
		size_t n = 0;

		line++;
		if (strncmp(p, "@include", 8) != 0 ||
		    (p[8] != ' ' && p[8] != '\t'))
			continue;
		p += 8 + strspn(p + 8, " \t");
		if (*p++ != '"')
			continue;
		/* The scanner's escapes here: \\ and \". */
		for (; *p != '\0' && *p != '"' && n + 1 < sizeof(name); p++) {
			if (*p == '\\' && (p[1] == '\\' || p[1] == '"'))
				p++;
			name[n++] = *p;
		}
		name[n] = '\0';
		if (*p == '"' && n > 0)
			ret = check_include(l, file, line, name, depth);
	}
	free(buf);
	return ret;
}

/* The configuration ${path} (or ${text}, read as if it were that file). */
static int
check_includes(struct loader *l, const char *path, const char *text)
{
	struct stat st;
	FILE *f;
	int r;

	if (text == NULL) {
		/* The file itself: fopen(3) opens a directory too.  (A FIFO
		 * or /dev/stdin came as text: see cfg_load.) */
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(l->err, l->errlen, "%s: cannot read: a "
			    "directory", path);
			return -1;
		}
		f = fopen(path, "re");
	} else
		f = fmemopen((void *)(uintptr_t)text, strlen(text), "r");
	if (f == NULL)
		return 0; /* libconfig says why */
	r = check_includes_in(l, path, f, 0);
	fclose(f);
	return r;
}

/*
 * Load a configuration named ${path}: from that file when ${text} is NULL,
 * else from ${text} as if it were that file's contents.
 */
static struct cfg *
load(const char *path, const char *text, char *err, size_t errlen)
{
	struct loader l = { .path = path, .err = err, .errlen = errlen };
	struct cfg *c;
	config_t lc;
	const char *slash;
	int r;

	config_init(&lc);
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto err0;
	}
	if ((c->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto err1;
	}
	/* Relative paths hang off the config's folder, made absolute. */
	slash = strrchr(path, '/');
	{
		char *d = slash == NULL ? strdup(".") :
		    strndup(path, slash == path ? 1 : (size_t)(slash - path));

		if (d == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			goto err1;
		}
		l.dir = realpath(d, NULL);
		free(d);
		if (l.dir == NULL) {
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(errno));
			goto err1;
		}
		config_set_include_dir(&lc, l.dir);
	}
	if (check_includes(&l, path, text) != 0)
		goto err1;
	r = text != NULL ? config_read_string(&lc, text) :
	    config_read_file(&lc, path);
	if (r != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(errno ? errno : EIO));
		else {
			const char *f = config_error_file(&lc);

			/* Included files are named relative to our folder. */
			if (f == NULL || strcmp(f, path) == 0 || f[0] == '/')
				snprintf(err, errlen, "%s:%d: syntax error: %s",
				    f ? f : path,
				    config_error_line(&lc),
				    config_error_text(&lc));
			else
				snprintf(err, errlen, "%s/%s:%d: syntax error: %s",
				    l.dir, f,
				    config_error_line(&lc),
				    config_error_text(&lc));
		}
		goto err1;
	}
	if (load_root(&l, config_root_setting(&lc), c) != 0)
		goto err1;
	c->includes = l.includes; /* ownership moves */
	memset(&l.includes, 0, sizeof(l.includes));

	free(l.dir);
	config_destroy(&lc);
	return c;

err1:
	cfg_free(c);
err0:
	strs_free(&l.includes);
	free(l.dir);
	config_destroy(&lc);
	return NULL;
}

/* The whole of ${path} (a pipe, /dev/stdin) as a string; NULL on error. */
static char *
read_all(const char *path, char *err, size_t errlen)
{
	enum { TEXT_MAX = 1 << 20 };
	FILE *f = fopen(path, "re");
	char *text = NULL, *t;
	size_t len = 0, cap = 0, n;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot read: %s", path,
		    strerror(errno));
		return NULL;
	}
	do {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > TEXT_MAX + 4096 + 1 ||
			    (t = realloc(text, cap)) == NULL) {
				snprintf(err, errlen, "%s: %s", path,
				    cap > TEXT_MAX ? "larger than 1 MiB" :
				    "out of memory");
				goto fail;
			}
			text = t;
		}
		n = fread(text + len, 1, 4096, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: cannot read: %s", path,
		    strerror(errno ? errno : EIO));
		goto fail;
	}
	fclose(f);
	text[len] = '\0';
	return text;
fail:
	fclose(f);
	free(text);
	return NULL;
}

struct cfg *
cfg_load(const char *path, char *err, size_t errlen)
{
	struct stat st;
	struct cfg *c;
	char *text;

	/* A pipe or /dev/stdin can be read only once, and the include
	 * check reads the file before libconfig does: read it here. */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) &&
	    !S_ISDIR(st.st_mode)) {
		if ((text = read_all(path, err, errlen)) == NULL)
			return NULL;
		c = load(path, text, err, errlen);
		free(text);
		return c;
	}
	return load(path, NULL, err, errlen);
}

struct cfg *
cfg_load_string(const char *text, const char *path, char *err, size_t errlen)
{
	return load(path, text, err, errlen);
}

static void
file_free(struct cfg_file *f)
{
	free(f->file);
	free(f->path);
	free(f->setting);
}

void
cfg_free(struct cfg *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nlisteners; i++) {
		struct cfg_listener *li = &c->listeners[i];

		free(li->name);
		free(li->listen);
		free(li->banner);
		free(li->setting);
		free(li->file);
		file_free(&li->cert);
		file_free(&li->key);
		file_free(&li->ca);
		free(li->backend.address);
		free(li->backend.server_name);
		file_free(&li->backend.ca);
		file_free(&li->backend.cert);
		file_free(&li->backend.key);
		for (size_t k = 0; k < li->ncrl; k++)
			file_free(&li->crl[k]);
		free(li->crl);
		strs_free(&li->ciphers);
		strs_free(&li->curves);
		free(li->setting_tls);
		strs_free(&li->allow.cn);
		strs_free(&li->allow.ou);
		strs_free(&li->allow.dns);
		strs_free(&li->allow.uri);
		strs_free(&li->allow.email);
		free(li->allow.spki);
	}
	free(c->listeners);
	file_free(&c->ticket_key_file);
	strs_free(&c->includes);
	free(c->user);
	free(c->metrics);
	free(c->group);
	free(c->path);
	free(c);
}

const char *
cfg_mode_name(enum cfg_mode mode)
{
	switch (mode) {
	case CFG_MODE_ECHO: return "echo";
	case CFG_MODE_RELAY: return "relay";
	case CFG_MODE_WHOAMI: return "whoami";
	}
	return "?";
}
