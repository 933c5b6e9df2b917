/*
 * master: the supervising process.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "census.h"
#include "ctl.h"
#include "log.h"
#include "metrics.h"
#include "metricsd.h"
#include "net.h"
#include "notify.h"
#include "sandbox.h"
#include "tlsctx.h"
#include "version.h"
#include "watch.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024
#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 10000
#define STABLE_MS 5000      /* a worker up this long resets the back-off */
#define KILL_GRACE_MS 5000  /* after shutdown_timeout, before SIGKILL */
#define STATUS_MS 2000      /* STATUS= refresh (sent only when it changed) */
#define NOTIFY_RETRY_MS 100 /* state change the manager's queue refused */
#define RETIRE_ACK_MS 2000  /* reload: wait this long at most for the old
                               workers to leave the listening sockets
                               before READY=1 */
#define CTL_READS 8         /* control messages read per worker per wakeup */
#define WATCH_QUIET_MS 500  /* a watched file changed: reload once it has
                               been quiet this long (half-written files) */
#define WATCH_MAX_MS 3000   /* ... or this long after the first change */
#define WATCH_POLL_MS 2000  /* without inotify: look this often */
#define MAX_OLD_GENS 3      /* draining generations kept; older are killed */
#define CAP_GRACE_MS 2000   /* for a worker told to close all at once */

/* One configuration in force: what its workers inherit. */
struct gen {
	unsigned id;                /* 1, 2, ...: one per successful load */
	struct cfg *cfg;            /* owned */
	struct worker_listener *ls; /* fds and tls contexts owned */
	size_t nls;
	struct worker_creds creds;
	int *reused;        /* per listener: index of the fd in the previous
	                       generation it takes over, or -1 */
	size_t kept, opened; /* listener sockets kept from / added to prev */
	struct census *census; /* its workers' shared counts */
	bool sandbox;          /* its workers load the seccomp filter */
};

/* A worker process. */
struct proc {
	pid_t pid;              /* 0: not running */
	int ctl;                /* our end of its control socket pair, -1 */
	bool leaving;           /* told to retire; its CTL_LEFT not yet in */
	bool warned;            /* it sent something else: said so once */
	unsigned gen;
	unsigned idx;
	uint64_t started_ms;
	uint64_t respawn_at_ms; /* current generation: when to restart */
	unsigned backoff_ms;
	uint64_t kill_at_ms;    /* retired generation: when to SIGKILL */
	bool killed;            /* retired and SIGKILLed: no longer counted */
	bool sandboxed;         /* under the seccomp filter (SIGSYS: its kill) */
	bool serving;           /* it said CTL_SERVING */
	struct metrics_src *ms; /* its counters, or NULL */
};

struct master {
	struct gen *cur;
	struct proc *slots; /* the current generation's workers */
	unsigned nslots;
	struct proc *old;   /* draining workers of retired generations */
	size_t nold, capold;
	unsigned next_gen;
	unsigned reloads, failed_reloads;
	uint64_t reload_failures;  /* all failed reloads, for the metrics */
	int64_t last_reload_ok;    /* Unix time of the last successful load */
	uint64_t worker_restarts;
	struct metrics *metrics;   /* every worker's counters */
	struct metricsd *msrv;     /* /metrics, /healthz, /readyz; or NULL */
	char reload_err[200]; /* why the last reload failed, for STATUS= */
	int sigfd;
	bool stopping;
	uint64_t kill_at_ms;
	uint64_t watchdog_ms; /* ping interval, 0: no watchdog */
	uint64_t next_watchdog_ms;
	uint64_t next_status_ms;
	bool notify_pending;    /* a state change waits for the manager */
	char status[512];
	char nearest[200];    /* the nearest certificate expiry, for STATUS= */
	uint32_t next_drain_ms; /* drain_timeout of the generation taking over */
	/* A reload's READY=1 waits until every retired worker has left the
	 * listening sockets (CTL_LEFT, or its exit) or ready_at_ms. */
	bool ready_pending;
	uint64_t ready_at_ms;
	char reloaded[300];     /* the "reloaded" line, logged at READY=1 */
	/* watch: certificate (and config) changes reload by themselves. */
	struct watch *watch;
	uint64_t watch_due_ms;   /* reload then (0: nothing changed) */
	uint64_t watch_first_ms; /* the first change since the last reload */
	uint64_t watch_poll_ms;  /* polling fallback: next look */
	char watch_what[300];    /* what changed, for the log */
	struct sockaddr_storage msrv_addr; /* where msrv listens */
	struct pollfd *pfd;     /* the loop's poll set (sigfd, ctl fds, then
	                           the metrics server's) */
	struct proc **pproc;    /* ... and the worker of each ctl fd */
	size_t npfd_cap;
	size_t nctl_pfd;        /* where the metrics server's entries start */
};

static void maybe_ready(struct master *m, uint64_t now);
static void watch_arm(struct master *m);

/* Where the configuration sends records (auto: log_open decides). */
static enum log_target
cfg_log_target(const struct cfg *c)
{
	return c->log == CFG_LOG_JOURNAL ? LOG_TARGET_JOURNAL :
	    c->log == CFG_LOG_JSON ? LOG_TARGET_JSON : LOG_TARGET_STDERR;
}

/*
 * Who workers run as when root starts us and `user` is unset, first that
 * exists: the user systemd/tls-echod.sysusers creates (`make install`), then
 * the traditional unprivileged one.  Never root by default: a worker parses
 * what any client sends.
 */
static const char *const default_users[] = { "tls-echod", "nobody" };

/* The first of default_users that exists, its name in ${*ret_name}; NULL
 * if none does. */
static struct passwd *
default_user(const char **ret_name)
{
	struct passwd *pw;
	size_t i;

	for (i = 0; i < sizeof(default_users) / sizeof(default_users[0]); i++)
		if ((pw = getpwnam(default_users[i])) != NULL) {
			*ret_name = default_users[i];
			return pw;
		}
	return NULL;
}

/*
 * Resolve the user and group settings to the ids workers switch to; uid -1:
 * they stay who we are.  Started as root, workers never keep root unless
 * `user` says so: without `user` they drop to the first of default_users
 * (with `group` if set, else that user's primary group).  Not started as
 * root, they stay the starting user, and a setting that would switch is an
 * error.
 */
static int
resolve_creds(const struct cfg *c, struct worker_creds *cr, char *err,
    size_t errlen)
{
	const struct passwd *pw = NULL;
	const struct group *gr;
	bool root = geteuid() == 0;

	cr->uid = (uid_t)-1;
	cr->gid = (gid_t)-1;
	cr->user = c->user;
	if (!root && c->user == NULL && c->group == NULL)
		return 0;
	if (c->user != NULL) {
		errno = 0;
		if ((pw = getpwnam(c->user)) == NULL) {
			snprintf(err, errlen, "%s:%d: user: no such user "
			    "\"%s\"", c->path, c->user_line, c->user);
			return -1;
		}
	} else if (root) {
		if ((pw = default_user(&cr->user)) == NULL) {
			snprintf(err, errlen, "%s: user: not set, and neither "
			    "\"%s\" nor \"%s\" exists for the workers to run "
			    "as: create one, or set user (user = \"root\" "
			    "keeps root, not recommended)", c->path,
			    default_users[0], default_users[1]);
			return -1;
		}
	} else {
		cr->uid = geteuid();
		cr->user = "(current user)";
	}
	if (pw != NULL) {
		cr->uid = pw->pw_uid;
		cr->gid = pw->pw_gid;
	}
	if (c->group != NULL) {
		if ((gr = getgrnam(c->group)) == NULL) {
			snprintf(err, errlen, "%s:%d: group: no such group "
			    "\"%s\"", c->path, c->group_line, c->group);
			return -1;
		}
		cr->gid = gr->gr_gid;
	}
	if (!root && (cr->uid != geteuid() || cr->gid != getegid())) {
		snprintf(err, errlen, "%s:%d: %s: switching to %s needs root; "
		    "run as root or remove the setting", c->path,
		    c->user ? c->user_line : c->group_line,
		    c->user ? "user" : "group", c->user ? c->user : c->group);
		return -1;
	}
	if (!root)
		cr->uid = (uid_t)-1; /* already who we should be */
	return 0;
}

/* Load every listener's TLS material into ${tls} (caller frees). */
static int
load_tls(const struct cfg *c, struct tlsctx **tls, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < c->nlisteners; i++)
		if ((tls[i] = tlsctx_new(c, &c->listeners[i], err,
		    errlen)) == NULL)
			return -1;
	return 0;
}

/* One line of a report: printed to ${out} (tls-echod -t; a warning starts
 * with "warning: ") or, with ${out} NULL, logged. */
static void
report_line(FILE *out, int prio, const char *msg)
{
	if (out != NULL)
		fprintf(out, "%s%s\n", prio == LOG_WARNING ? "warning: " : "",
		    msg);
	else
		log_msg(prio, "%s", msg);
}

/*
 * Who the workers of ${c} run as (${cr}, from resolve_creds): printed to
 * ${out} (tls-echod -t) or logged (start, reload), with a warning if that
 * is root.
 */
static void
report_creds(const struct cfg *c, const struct worker_creds *cr, FILE *out)
{
	char msg[600], grp[64];
	const struct passwd *pw;
	const struct group *gr;

	if (cr->uid == (uid_t)-1) {
		/* Not started as root: nothing to switch. */
		pw = getpwuid(geteuid());
		snprintf(msg, sizeof(msg), "workers run as %s (uid %lu, gid %lu): "
		    "not started as root, they keep the user tls-echod runs as",
		    pw != NULL ? pw->pw_name : "?", (unsigned long)geteuid(),
		    (unsigned long)getegid());
		report_line(out, LOG_INFO, msg);
		return;
	}
	gr = getgrgid(cr->gid);
	snprintf(grp, sizeof(grp), "%s", gr != NULL ? gr->gr_name : "?");
	snprintf(msg, sizeof(msg), "workers run as user %s (uid %lu), group %s "
	    "(gid %lu)%s", cr->user, (unsigned long)cr->uid, grp,
	    (unsigned long)cr->gid, c->user == NULL ? ": the default, no "
	    "user set" : "");
	report_line(out, LOG_INFO, msg);
	if (cr->uid == 0) {
		snprintf(msg, sizeof(msg), "workers run as root (%s:%d: user = "
		    "\"%s\"): they parse what every client sends, and one taken "
		    "over would own this host; remove user (default: %s, else "
		    "%s) or name an unprivileged user", c->path, c->user_line,
		    cr->user, default_users[0], default_users[1]);
		report_line(out, LOG_WARNING, msg);
	}
}

/*
 * tls.ca holds several CAs and tls.crl revokes for some of them: each CA
 * without a CRL is warned about (clients it issued are never checked for
 * revocation).  A single CA without a CRL is a choice, not a gap.
 */
static void
report_ca_crls(const struct cfg_listener *li, const struct tlsctx *t,
    FILE *out)
{
	struct tlsctx_ca_crl ca[64];
	size_t n, i, with = 0;
	char msg[600];

	n = tlsctx_ca_crls(t, ca, sizeof(ca) / sizeof(ca[0]));
	if (n > sizeof(ca) / sizeof(ca[0]))
		n = sizeof(ca) / sizeof(ca[0]);
	for (i = 0; i < n; i++)
		with += ca[i].has_crl != 0;
	if (with == 0 || with == n)
		return;
	for (i = 0; i < n; i++)
		if (!ca[i].has_crl) {
			snprintf(msg, sizeof(msg), "listener %s: CA \"%.256s\" "
			    "of tls.ca has no CRL in tls.crl while other CAs "
			    "there have one: the clients it issued are never "
			    "checked for revocation", li->name, ca[i].name);
			report_line(out, LOG_WARNING, msg);
		}
}

/*
 * An allow.uri prefix ("...*") that does not end a path segment also
 * admits its longer siblings: "spiffe://prod*" admits
 * "spiffe://production/...".  A URN's segments end with ':' instead.
 */
static void
report_uri_prefixes(const struct cfg_listener *li, FILE *out)
{
	char msg[900];
	size_t i;

	for (i = 0; i < li->allow.uri.n; i++) {
		const char *p = li->allow.uri.v[i];
		size_t n = strlen(p);
		int plen = (int)n - 1;
		char sep = strncmp(p, "urn:", 4) == 0 ? ':' : '/';

		if (n < 2 || p[n - 1] != '*' || p[n - 2] == sep)
			continue;
		snprintf(msg, sizeof(msg), "listener %s: allow.uri \"%.200s\" "
		    "is a prefix that does not end in \"%c\": it matches across "
		    "path segments (\"%.*sX%c...\" too); write \"%.*s%c*\" if "
		    "only what is under \"%.*s%c\" is meant", li->name, p, sep,
		    plen, p, sep, plen, p, sep, plen, p, sep);
		report_line(out, LOG_WARNING, msg);
	}
}

/*
 * Every date to watch (certificate expiries, CRL next updates), key file
 * permissions and risky listener settings (CAs left without a CRL,
 * allow.uri prefixes across path segments, no idle timeout): printed to
 * ${out} (tls-echod -t) or logged, with a warning below expiry_warn_days.
 * The nearest expiry goes to ${nearest}.
 */
static void
report_dates(const struct cfg *c, struct tlsctx *const *tls, FILE *out,
    char *nearest, size_t nlen)
{
	int64_t now = (int64_t)time(NULL), best = INT64_MAX;
	struct tlsctx_date d[64];
	size_t i, k, n;

	if (nearest != NULL)
		nearest[0] = '\0';
	for (i = 0; i < c->nlisteners; i++) {
		const struct cfg_listener *li = &c->listeners[i];
		unsigned mode = tlsctx_key_mode(tls[i]);

		n = tlsctx_dates(tls[i], d, sizeof(d) / sizeof(d[0]));
		for (k = 0; k < n; k++) {
			bool crl = strcmp(d[k].what, "CRL") == 0;
			int64_t days = (d[k].when - now) / 86400;
			char date[32], msg[600], sdays[24];
			struct tm tm;
			time_t tt = (time_t)d[k].when;
			int prio = LOG_INFO;
			struct log_field f[] = {
				{ "LISTENER", li->name },
				{ "CERT_KIND", d[k].what },
				{ "CERT_SUBJECT", d[k].name },
				{ "DAYS_LEFT", sdays },
			};

			gmtime_r(&tt, &tm);
			strftime(date, sizeof(date), "%Y-%m-%d", &tm);
			snprintf(sdays, sizeof(sdays), "%lld", (long long)days);
			if (crl && d[k].when < now) {
				prio = LOG_WARNING;
				snprintf(msg, sizeof(msg), "listener %s: CRL of "
				    "\"%s\" is stale: its next update was due "
				    "%s (%s)", li->name, d[k].name, date,
				    li->crl_stale == CFG_CRL_STALE_REFUSE ?
				    "clients of that CA are refused" :
				    "admitting anyway: crl_stale = \"warn\"");
			} else if (crl)
				snprintf(msg, sizeof(msg), "listener %s: CRL of "
				    "\"%s\": next update %s, in %lld day(s)",
				    li->name, d[k].name, date, (long long)days);
			else {
				if (days < (int64_t)c->expiry_warn_days)
					prio = LOG_WARNING;
				snprintf(msg, sizeof(msg), "listener %s: %s "
				    "\"%s\" expires %s, in %lld day(s)%s",
				    li->name, d[k].what, d[k].name, date,
				    (long long)days, prio == LOG_WARNING ?
				    " - renew it" : "");
				if (d[k].when < best && nearest != NULL) {
					best = d[k].when;
					snprintf(nearest, nlen, "%s %.100s in "
					    "%lld day(s)", d[k].what, d[k].name,
					    (long long)days);
				}
			}
			if (out != NULL)
				fprintf(out, "%s%s\n", prio == LOG_WARNING ?
				    "warning: " : "", msg);
			else
				log_event(prio, LOG_ID_EXPIRY, f,
				    sizeof(f) / sizeof(f[0]), "%s", msg);
		}
		if (mode & 077u) {
			if (out != NULL)
				fprintf(out, "warning: listener %s: private key "
				    "%s is readable by group or others (mode "
				    "%04o): chmod 600 it\n", li->name,
				    li->key.path, mode);
			else
				log_msg(LOG_WARNING, "listener %s: private key %s "
				    "is readable by group or others (mode %04o): "
				    "chmod 600 it", li->name, li->key.path, mode);
		}
		report_ca_crls(li, tls[i], out);
		report_uri_prefixes(li, out);
		if (li->idle_timeout_ms == 0) {
			/* Only TCP keepalive (~2 min) then ends a silent peer. */
			if (out != NULL)
				fprintf(out, "warning: listener %s: idle_timeout "
				    "= 0: idle clients hold their connection "
				    "(and memory) as long as they like\n",
				    li->name);
			else
				log_msg(LOG_WARNING, "listener %s: idle_timeout "
				    "= 0: idle clients hold their connection "
				    "(and memory) as long as they like",
				    li->name);
		}
	}
}

/* Why workers of ${c} run without the seccomp filter, or NULL if they don't. */
static const char *
sandbox_off_reason(const struct cfg *c)
{
	if (sandbox_env_disabled())
		return SANDBOX_ENV "=0 in the environment";
	if (!c->sandbox)
		return "sandbox = false";
	return NULL;
}

int
master_check(const struct cfg *c, FILE *out, char *err, size_t errlen)
{
	struct tlsctx **tls;
	struct worker_creds cr;
	char sum[300];
	size_t i;
	int ret = -1;

	if ((tls = calloc(c->nlisteners, sizeof(*tls))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (tlsctx_global_init(err, errlen) != 0 ||
	    load_tls(c, tls, err, errlen) != 0 ||
	    resolve_creds(c, &cr, err, errlen) != 0)
		goto out;
	if (out != NULL) {
		for (i = 0; i < c->nlisteners; i++) {
			tlsctx_cert_summary(tls[i], sum, sizeof(sum));
			fprintf(out, "listener %s: %s, mode %s, certificate %s\n",
			    c->listeners[i].name, c->listeners[i].listen,
			    cfg_mode_name(c->listeners[i].mode), sum);
		}
		report_creds(c, &cr, out);
		report_dates(c, tls, out, NULL, 0);
		if (sandbox_off_reason(c) != NULL)
			fprintf(out, "warning: %s: workers run without their "
			    "seccomp filter\n", sandbox_off_reason(c));
		if (c->metrics != NULL)
			fprintf(out, "metrics: /metrics, /healthz and /readyz "
			    "on %s\n", c->metrics);
	}
	ret = 0;
out:
	for (i = 0; i < c->nlisteners; i++)
		tlsctx_free(tls[i]);
	free(tls);
	tlsctx_global_free();
	return ret;
}

/*
 * The first generation's sockets: systemd's (socket activation, matched by
 * FileDescriptorName= or by address), else our own.
 */
static int
open_first(struct gen *g, char *err, size_t errlen)
{
	char **names = NULL;
	int n, i, ret = -1;
	size_t k;
	bool *used = NULL;

	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		snprintf(err, errlen, "socket activation: %s", strerror(-n));
		return -1;
	}
	if (n > 0 && (used = calloc((size_t)n, sizeof(*used))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (k = 0; k < g->nls; k++) {
		const struct cfg_listener *li = g->ls[k].cfg;
		int fd = -1;

		for (i = 0; i < n && fd < 0; i++)
			if (!used[i] && names != NULL && names[i] != NULL &&
			    strcmp(names[i], li->name) == 0)
				fd = SD_LISTEN_FDS_START + i;
		for (i = 0; i < n && fd < 0; i++)
			if (!used[i] && net_fd_matches(SD_LISTEN_FDS_START + i,
			    &li->addr, li->addrlen))
				fd = SD_LISTEN_FDS_START + i;
		if (fd < 0)
			continue; /* bound by open_rest */
		used[fd - SD_LISTEN_FDS_START] = true;
		g->ls[k].fd = fd;
		if (net_set_nonblock(fd, err, errlen) != 0)
			goto out;
		net_tune_listener(fd);
	}
	for (i = 0; i < n; i++)
		if (!used[i]) {
			char a[NET_ADDRSTRLEN];

			log_msg(LOG_WARNING, "socket activation: fd %d (%s, "
			    "name \"%s\") matches no listener; closing it",
			    SD_LISTEN_FDS_START + i,
			    net_fd_addr_str(SD_LISTEN_FDS_START + i, a,
			    sizeof(a)), names && names[i] ? names[i] : "");
			close(SD_LISTEN_FDS_START + i);
		}
	ret = 0;
out:
	if (names != NULL)
		for (i = 0; i < n; i++)
			free(names[i]);
	free(names);
	free(used);
	return ret;
}

/*
 * A reload's sockets: a listener whose address stays keeps its socket (same
 * fd, so no connection is refused); the others are bound now.
 */
static int
open_rest(struct gen *g, const struct gen *prev, char *err, size_t errlen)
{
	size_t k, j;

	for (k = 0; k < g->nls; k++) {
		const struct cfg_listener *li = g->ls[k].cfg;
		char e[200];

		if (g->ls[k].fd >= 0)
			continue;
		for (j = 0; prev != NULL && j < prev->nls; j++)
			if (prev->ls[j].fd >= 0 &&
			    net_addr_same(&prev->ls[j].cfg->addr, &li->addr)) {
				g->ls[k].fd = prev->ls[j].fd; /* not owned yet */
				g->reused[k] = (int)j;
				g->kept++;
				break;
			}
		if (g->ls[k].fd >= 0)
			continue;
		g->ls[k].fd = net_listen(&li->addr, li->addrlen,
		    LISTEN_BACKLOG, e, sizeof(e));
		if (g->ls[k].fd < 0) {
			snprintf(err, errlen, "%s:%d: %s.listen: %s",
			    li->file, li->line, li->setting, e);
			return -1;
		}
		net_tune_listener(g->ls[k].fd);
		g->opened++;
	}
	return 0;
}

/* Free ${g}: its sockets (but those a newer generation took), TLS, config. */
static void
gen_free(struct gen *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; g->ls != NULL && i < g->nls; i++) {
		if (g->ls[i].fd >= 0 && (g->reused == NULL || g->reused[i] < 0))
			close(g->ls[i].fd);
		tlsctx_free(g->ls[i].tls);
	}
	free(g->ls);
	free(g->reused);
	census_free(g->census);
	cfg_free(g->cfg);
	free(g);
}

/*
 * The generation's shared counts: connections per worker for STATUS=, and
 * identity tables if a listener limits connections per identity (room for
 * every connection a worker may hold, twice, so probes stay short).
 */
static int
gen_census(struct gen *g, char *err, size_t errlen)
{
	unsigned char seed[16];
	size_t i, slots = 0;

	for (i = 0; i < g->nls; i++)
		if (g->cfg->listeners[i].max_per_identity > 0)
			slots = 2 * (size_t)g->cfg->worker_connections;
	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		return -1;
	}
	g->census = census_new(g->cfg->workers, slots,
	    g->cfg->worker_connections, seed);
	if (g->census == NULL) {
		snprintf(err, errlen, "shared memory for %u workers: %s",
		    g->cfg->workers, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Load generation ${id} from ${c} (ownership moves to it, even on failure):
 * TLS material, credentials, sockets.  Sockets of ${prev} it takes over are
 * only borrowed until gen_adopt().
 */
static struct gen *
gen_new(struct cfg *c, const struct gen *prev, unsigned id, char *err,
    size_t errlen)
{
	struct gen *g;
	size_t i;

	if ((g = calloc(1, sizeof(*g))) == NULL) {
		cfg_free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->id = id;
	g->cfg = c;
	g->nls = c->nlisteners;
	g->sandbox = sandbox_off_reason(c) == NULL;
	g->ls = calloc(g->nls, sizeof(*g->ls));
	g->reused = calloc(g->nls, sizeof(*g->reused));
	if (g->ls == NULL || g->reused == NULL) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	for (i = 0; i < g->nls; i++) {
		g->ls[i].fd = -1;
		g->ls[i].cfg = &c->listeners[i];
		g->reused[i] = -1;
	}
	for (i = 0; i < g->nls; i++)
		if ((g->ls[i].tls = tlsctx_new(c, &c->listeners[i], err,
		    errlen)) == NULL)
			goto err;
	if (resolve_creds(c, &g->creds, err, errlen) != 0 ||
	    gen_census(g, err, errlen) != 0)
		goto err;
	if ((prev == NULL && open_first(g, err, errlen) != 0) ||
	    open_rest(g, prev, err, errlen) != 0)
		goto err;
	return g;

err:
	gen_free(g);
	return NULL;
}

/* ${g} takes ownership of the sockets it borrowed from ${prev}. */
static void
gen_adopt(struct gen *g, struct gen *prev)
{
	size_t i;

	for (i = 0; i < g->nls; i++)
		if (g->reused[i] >= 0) {
			prev->ls[g->reused[i]].fd = -1;
			g->reused[i] = -1;
		}
}

/* ${n} worker slots, none running. */
static struct proc *
slots_new(unsigned n)
{
	struct proc *p = calloc(n ? n : 1, sizeof(*p));
	unsigned i;

	for (i = 0; p != NULL && i < n; i++)
		p[i].ctl = -1;
	return p;
}

/* Close our end of ${p}'s control socket pair. */
static void
proc_ctl_close(struct proc *p)
{
	if (p->ctl >= 0)
		close(p->ctl);
	p->ctl = -1;
}

/*
 * In a new worker: close what belongs to the master alone, our ends of the
 * other workers' control socket pairs above all (a worker must not talk
 * for, or to, another).
 */
static void
child_close_master_fds(struct master *m)
{
	size_t i;

	close(m->sigfd);
	if (m->watch != NULL && watch_fd(m->watch) >= 0)
		close(watch_fd(m->watch));
	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].ctl >= 0)
			close(m->slots[i].ctl);
	for (i = 0; i < m->nold; i++)
		if (m->old[i].ctl >= 0)
			close(m->old[i].ctl);
	/* Metrics are the master's: no worker may accept or answer there. */
	metricsd_close_fds(m->msrv);
}

static void
spawn(struct master *m, unsigned idx, uint64_t now)
{
	struct proc *p = &m->slots[idx];
	struct gen *g = m->cur;
	int fds[2];
	pid_t pid;

	proc_ctl_close(p);
	if (ctl_pair(fds) != 0) {
		log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0, "cannot start worker "
		    "%u: socketpair: %s", idx, strerror(errno));
		p->respawn_at_ms = now + RESPAWN_MAX_MS;
		return;
	}
	p->ctl = fds[0];
	/* Its counters: mapped now, so that this worker alone inherits them. */
	if ((p->ms = metrics_src_new(m->metrics, g->cfg, now)) == NULL)
		log_msg(LOG_WARNING, "worker %u: no memory for its counters: "
		    "its traffic is missing from the metrics", idx);
	pid = fork();

	if (pid < 0) {
		log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0, "cannot fork worker "
		    "%u: %s", idx, strerror(errno));
		proc_ctl_close(p);
		close(fds[1]);
		metrics_src_done(m->metrics, p->ms, now);
		p->ms = NULL;
		p->respawn_at_ms = now + RESPAWN_MAX_MS;
		return;
	}
	if (pid == 0) {
		struct worker_args a = {
			.cfg = g->cfg,
			.listeners = g->ls,
			.nlisteners = g->nls,
			.master_fd = fds[1],
			.index = idx,
			.generation = g->id,
			.creds = g->creds,
			.census = g->census,
			.sandbox = g->sandbox,
			.stats = p->ms ? metrics_src_stats(p->ms) : NULL,
		};
		int status;

		child_close_master_fds(m);
		status = worker_run(&a);
		close(fds[1]);
		/* Free what the master built, for leak checkers.  The
		 * listening sockets go with _exit (worker_run closed them
		 * when it stopped, or never got that far). */
		for (size_t i = 0; i < g->nls; i++)
			g->ls[i].fd = -1;
		gen_free(g);
		free(m->slots);
		free(m->old);
		free(m->pfd);
		free(m->pproc);
		metrics_free_in_worker(m->metrics);
		metricsd_free_copy(m->msrv);
		tlsctx_global_free();
		_exit(status);
	}
	close(fds[1]);
	if (p->ms != NULL && metrics_src_forked(p->ms) != 0)
		log_msg(LOG_WARNING, "worker %u: madvise(MADV_DONTFORK): %s: "
		    "later workers inherit its counters", idx, strerror(errno));
	p->pid = pid;
	p->gen = g->id;
	p->idx = idx;
	p->started_ms = now;
	p->respawn_at_ms = 0;
	p->leaving = false;
	p->warned = false;
	p->sandboxed = g->sandbox;
	p->serving = false;
}

/*
 * How a worker ended, for the log.  SIGSYS from a sandboxed worker is the
 * seccomp filter's kill: nothing else sends it, and the kernel sends it for
 * no other reason.
 */
/*
 * A listening socket is shared by the master, every worker and systemd: a
 * worker gone bad can make it stop listening for all of them (connect(2)
 * with AF_UNSPEC on it; its seccomp filter cannot see connect's address).
 * The master looks after every exit of a worker and every status refresh,
 * and listens again.
 */
static void
check_listeners(struct master *m)
{
	size_t i;

	for (i = 0; m->cur != NULL && i < m->cur->nls; i++) {
		int fd = m->cur->ls[i].fd, on = 1;
		socklen_t len = sizeof(on);

		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);

		if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on,
		    &len) != 0 || on)
			continue;
		/* A disconnected socket may have lost its port: bind it to
		 * the address it still reports (EINVAL if it kept it). */
		if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0)
			(void)bind(fd, (struct sockaddr *)&sa, salen);
		if (listen(fd, LISTEN_BACKLOG) == 0)
			log_msg(LOG_WARNING, "listener %s: its socket had stopped "
			    "listening (a worker disconnected it?); listening "
			    "again", m->cur->ls[i].cfg->name);
		else
			log_msg(LOG_ERR, "listener %s: its socket stopped "
			    "listening and cannot listen again: %s",
			    m->cur->ls[i].cfg->name, strerror(errno));
	}
}

static void
describe_exit(int st, bool sandboxed, char *buf, size_t len)
{
	if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)%s%s", WTERMSIG(st),
		    strsignal(WTERMSIG(st)), WCOREDUMP(st) ? ", core dumped" :
		    "", sandboxed && WTERMSIG(st) == SIGSYS ? ": its seccomp "
		    "sandbox stopped a system call it does not allow (the "
		    "kernel log names it: audit type=1326)" : "");
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
}

static bool
reap_old(struct master *m, pid_t pid, int st)
{
	size_t i;

	for (i = 0; i < m->nold; i++) {
		char how[256];

		if (m->old[i].pid != pid)
			continue;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			describe_exit(st, m->old[i].sandboxed, how, sizeof(how));
			log_event(LOG_WARNING, LOG_ID_WORKER, NULL, 0, "retired "
			    "worker %u of generation %u (pid %ld) %s",
			    m->old[i].idx, m->old[i].gen, (long)pid, how);
		}
		proc_ctl_close(&m->old[i]);
		/* What it counted stays in the totals. */
		metrics_src_done(m->metrics, m->old[i].ms, worker_now_ms());
		m->old[i] = m->old[--m->nold];
		return true;
	}
	return false;
}

static void
reap(struct master *m, uint64_t now)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		struct proc *p = NULL;
		char how[256];
		unsigned i;

		if (reap_old(m, pid, st))
			continue;
		for (i = 0; i < m->nslots; i++)
			if (m->slots[i].pid == pid)
				p = &m->slots[i];
		if (p == NULL)
			continue;
		p->pid = 0;
		p->serving = false;
		proc_ctl_close(p);
		metrics_src_done(m->metrics, p->ms, now);
		p->ms = NULL;
		/* Its connections died with it: stop counting them (STATUS=,
		 * per-identity limits) until its replacement starts. */
		census_worker_start(m->cur->census, p->idx);
		describe_exit(st, p->sandboxed, how, sizeof(how));
		if (m->stopping) {
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				log_event(LOG_WARNING, LOG_ID_WORKER, NULL, 0,
				    "worker %u (pid %ld) %s during shutdown",
				    p->idx, (long)pid, how);
			continue;
		}
		if (now - p->started_ms >= STABLE_MS || p->backoff_ms == 0)
			p->backoff_ms = RESPAWN_MIN_MS;
		else
			p->backoff_ms = p->backoff_ms * 2 > RESPAWN_MAX_MS ?
			    RESPAWN_MAX_MS : p->backoff_ms * 2;
		p->respawn_at_ms = now + p->backoff_ms;
		m->worker_restarts++;
		log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0, "worker %u (pid "
		    "%ld) %s; restarting in %u ms", p->idx, (long)pid, how,
		    p->backoff_ms);
	}
	if (!m->stopping)
		check_listeners(m);
}

static unsigned
alive(const struct master *m)
{
	unsigned i, n = (unsigned)m->nold;

	for (i = 0; i < m->nslots; i++)
		n += m->slots[i].pid != 0;
	return n;
}

static void
signal_workers(struct master *m, int sig)
{
	size_t i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid != 0)
			(void)kill(m->slots[i].pid, sig);
	for (i = 0; i < m->nold; i++)
		(void)kill(m->old[i].pid, sig);
}

static void
set_status(struct master *m)
{
	char draining[64] = "", failed[240] = "";

	if (m->nold > 0)
		snprintf(draining, sizeof(draining), " (+%zu draining)",
		    m->nold);
	/* The refresh keeps the reason in sight for `systemctl status`. */
	if (m->failed_reloads)
		snprintf(failed, sizeof(failed), "; last reload failed: %.160s",
		    m->reload_err);
	snprintf(m->status, sizeof(m->status), "generation %u: %" PRIu64
	    " connection(s), %zu listener(s), %u worker(s)%.40s%.200s%s%.150s",
	    m->cur->id, census_conns_total(m->cur->census), m->cur->nls,
	    m->nslots, draining, failed, m->nearest[0] ? "; nearest expiry: " :
	    "", m->nearest);
}

/*
 * Log who generation ${g}'s workers run as and its dates, and remember the
 * nearest expiry; warn if its workers run without the seccomp filter.
 */
static void
report_gen(struct master *m, const struct gen *g)
{
	struct tlsctx **tls = calloc(g->nls, sizeof(*tls));
	size_t i;

	report_creds(g->cfg, &g->creds, NULL);
	if (tls == NULL)
		return;
	for (i = 0; i < g->nls; i++)
		tls[i] = g->ls[i].tls;
	report_dates(g->cfg, tls, NULL, m->nearest, sizeof(m->nearest));
	free(tls);
	if (!g->sandbox)
		log_msg(LOG_WARNING, "%s: workers run without their seccomp "
		    "filter", sandbox_off_reason(g->cfg));
}

/* Retire the current generation: its workers drain, its sockets close. */
static int
retire_current(struct master *m, uint64_t now)
{
	struct gen *g = m->cur;
	unsigned i;

	int ret = 0;

	if (m->nold + m->nslots > m->capold) {
		size_t cap = (m->nold + m->nslots) * 2;
		struct proc *o = realloc(m->old, cap * sizeof(*o));

		if (o != NULL) {
			m->old = o;
			m->capold = cap;
		}
	}
	for (i = 0; i < m->nslots; i++) {
		struct proc *p = &m->slots[i];

		if (p->pid == 0)
			continue;
		/* Stop accepting; drain for the new drain_timeout.  The
		 * answer (CTL_LEFT) lets READY=1 go; a worker that cannot be
		 * told is not waited for (its exit closes the sockets). */
		p->leaving = ctl_send(p->ctl, CTL_RETIRE, m->next_drain_ms) == 0;
		if (!p->leaving)
			log_msg(LOG_WARNING, "cannot retire worker %u (pid %ld): "
			    "%s", p->idx, (long)p->pid, strerror(errno));
		if (m->nold == m->capold) {
			ret = -1; /* untracked: still drains, reaped anyway */
			proc_ctl_close(p);
			metrics_src_done(m->metrics, p->ms, now);
			p->ms = NULL;
			continue;
		}
		m->old[m->nold] = *p;
		p->ms = NULL; /* moved */
		m->old[m->nold].kill_at_ms = now + m->next_drain_ms +
		    KILL_GRACE_MS;
		m->nold++;
		p->ctl = -1; /* moved */
	}
	/* Its census goes now: no worker of the next generation inherits
	 * the mapping (the old workers keep theirs until they exit). */
	gen_free(g);
	m->cur = NULL;
	free(m->slots);
	m->slots = NULL;
	m->nslots = 0;
	return ret;
}

/* More than MAX_OLD_GENS draining generations: stop the oldest now. */
static void
cap_old(struct master *m)
{
	for (;;) {
		unsigned gens[MAX_OLD_GENS + 1], ngens = 0, oldest = UINT32_MAX;
		size_t i, j;

		for (i = 0; i < m->nold; i++) {
			if (m->old[i].killed)
				continue; /* on its way out, reaped later */
			for (j = 0; j < ngens && gens[j] != m->old[i].gen; j++)
				;
			if (j == ngens && ngens <= MAX_OLD_GENS)
				gens[ngens++] = m->old[i].gen;
			if (m->old[i].gen < oldest)
				oldest = m->old[i].gen;
		}
		if (ngens <= MAX_OLD_GENS)
			return;
		log_msg(LOG_WARNING, "more than %d generations draining: "
		    "stopping generation %u now", MAX_OLD_GENS, oldest);
		/* SIGUSR2: close every connection properly (close_notify, log
		 * line) and exit; SIGKILL follows if that takes too long. */
		for (i = 0; i < m->nold; i++)
			if (!m->old[i].killed && m->old[i].gen == oldest) {
				(void)kill(m->old[i].pid, SIGUSR2);
				m->old[i].killed = true;
				m->old[i].kill_at_ms = worker_now_ms() + CAP_GRACE_MS;
			}
	}
}

/*
 * The metrics socket configuration ${c} asks for, if it is not the one we
 * have: a new socket in ${*fd} (-1: keep ours, or none wanted).  0, or -1
 * with a "file:line: metrics: ..." message.
 */
static int
metrics_socket(const struct master *m, const struct cfg *c, int *fd, char *err,
    size_t errlen)
{
	char e[200];

	*fd = -1;
	if (c->metrics == NULL || metricsd_same(m->msrv, &c->metrics_addr))
		return 0;
	*fd = metricsd_listen(&c->metrics_addr, c->metrics_addrlen, e,
	    sizeof(e));
	if (*fd < 0) {
		snprintf(err, errlen, "%s:%d: metrics: \"%s\": %s", c->path,
		    c->metrics_line, c->metrics, e);
		return -1;
	}
	return 0;
}

/* Serve metrics on ${fd} (from metrics_socket) as ${c} says. */
static void
metrics_apply(struct master *m, const struct cfg *c, int fd)
{
	if (c->metrics == NULL) {
		if (metricsd_same(m->msrv, &m->msrv_addr))
			log_msg(LOG_INFO, "metrics: off");
		metricsd_set_listener(m->msrv, -1, NULL, 0);
		memset(&m->msrv_addr, 0, sizeof(m->msrv_addr));
		return;
	}
	if (fd < 0)
		return; /* the same address: the same socket */
	metricsd_set_listener(m->msrv, fd, &c->metrics_addr,
	    c->metrics_addrlen);
	m->msrv_addr = c->metrics_addr;
	log_msg(LOG_INFO, "metrics: /metrics, /healthz and /readyz on %s",
	    c->metrics);
}

static void
reload(struct master *m, uint64_t now, const char *why)
{
	struct cfg *c;
	struct gen *g;
	struct proc *slots;
	char err[600];
	unsigned k, prev_id = m->cur->id;
	size_t closed = 0, i;
	int mfd = -1;

	log_event(LOG_INFO, LOG_ID_RELOAD, NULL, 0, "%s: reloading %s", why,
	    m->cur->cfg->path);
	c = cfg_load(m->cur->cfg->path, err, sizeof(err));
	g = c == NULL ? NULL : gen_new(c, m->cur, m->next_gen, err,
	    sizeof(err));
	slots = g == NULL ? NULL : slots_new(g->cfg->workers);
	if (g != NULL && slots == NULL)
		snprintf(err, sizeof(err), "out of memory");
	if (slots != NULL && metrics_socket(m, g->cfg, &mfd, err,
	    sizeof(err)) != 0) {
		free(slots);
		slots = NULL;
	}
	if (slots == NULL) {
		gen_free(g);
		m->failed_reloads++;
		m->reload_failures++;
		snprintf(m->reload_err, sizeof(m->reload_err), "%.*s",
		    (int)sizeof(m->reload_err) - 1, err);
		set_status(m);
		log_event(LOG_ERR, LOG_ID_RELOAD, NULL, 0, "reload failed, "
		    "still serving generation %u: %s", prev_id, err);
		notify_status("reload failed, still serving generation %u: %s",
		    prev_id, err);
		return;
	}
	notify_reloading();
	m->next_gen++;
	m->reloads++;
	m->failed_reloads = 0;
	m->last_reload_ok = (int64_t)time(NULL);
	for (i = 0; i < m->cur->nls; i++)
		closed += m->cur->ls[i].fd >= 0;
	gen_adopt(g, m->cur);
	for (i = 0; i < m->cur->nls; i++)
		closed -= m->cur->ls[i].fd < 0;
	/* Old workers stop accepting before the new ones start: meanwhile new
	 * connections wait in the kept sockets' backlogs, none is refused. */
	m->next_drain_ms = g->cfg->drain_timeout_ms;
	if (retire_current(m, now) != 0) {
		log_msg(LOG_ERR, "out of memory: some workers of generation %u "
		    "drain untracked", prev_id);
	}
	log_open(cfg_log_target(g->cfg), g->cfg->log != CFG_LOG_AUTO);
	m->cur = g;
	metrics_apply(m, g->cfg, mfd);
	m->slots = slots;
	m->nslots = g->cfg->workers;
	for (k = 0; k < m->nslots; k++)
		spawn(m, k, now);
	cap_old(m);
	report_gen(m, g);
	/* READY=1 once the retired workers have left the listening
	 * sockets: the loop hears their CTL_LEFT (or their exit). */
	snprintf(m->reloaded, sizeof(m->reloaded), "reloaded: generation %u "
	    "serving (listener sockets: %zu kept, %zu opened, %zu closed); "
	    "generation %u draining", g->id, g->kept, g->opened, closed,
	    prev_id);
	m->ready_pending = true;
	/* From now: loading the new material may have taken a while. */
	m->ready_at_ms = worker_now_ms() + RETIRE_ACK_MS;
	maybe_ready(m, now);
}

/*
 * Before READY=1 says the new configuration is in force, the retired
 * workers must have left the listening sockets: until then one of them
 * could still take a new connection under the old configuration.  Each
 * says so with CTL_LEFT, normally within a millisecond of CTL_RETIRE; one
 * that exits instead is gone from the sockets too.
 */
static void
maybe_ready(struct master *m, uint64_t now)
{
	unsigned left = 0;
	size_t i;

	if (!m->ready_pending || m->stopping)
		return;
	for (i = 0; i < m->nold; i++)
		left += m->old[i].leaving;
	if (left > 0 && now < m->ready_at_ms)
		return;
	if (left > 0) {
		log_msg(LOG_WARNING, "%u retired worker(s) did not say they "
		    "left the listening sockets within %d ms; ready anyway",
		    left, RETIRE_ACK_MS);
		for (i = 0; i < m->nold; i++)
			m->old[i].leaving = false;
	}
	m->ready_pending = false;
	set_status(m);
	notify_ready(m->status);
	log_event(LOG_INFO, LOG_ID_RELOAD, NULL, 0, "%s", m->reloaded);
}

/* Add ${path} (may be NULL) to ${v}, which has room. */
static void
add_watched(const char **v, size_t *n, size_t max, const char *path)
{
	if (path != NULL && *n < max)
		v[(*n)++] = path;
}

/*
 * Watch what the configuration in force is made of (watch = "tls": every
 * certificate, key, CA, CRL and ticket_key_file; "all": also the file and
 * its @includes), replacing what was watched.  After every reload, good or
 * failed: symlinks may point elsewhere now, and a failed one is retried
 * at the next change.
 */
static void
watch_arm(struct master *m)
{
	const struct cfg *c = m->cur->cfg;
	const char **v;
	char *conf = NULL;
	size_t n = 0, max = 8 + c->includes.n, i, k;

	if (c->watch == CFG_WATCH_OFF) {
		watch_free(m->watch);
		m->watch = NULL;
		m->watch_due_ms = 0;
		return;
	}
	for (i = 0; i < c->nlisteners; i++)
		max += 6 + c->listeners[i].ncrl;
	if (m->watch == NULL) {
		/* TLS_ECHOD_WATCH_POLL=1: poll as where inotify is missing
		 * (for tests, and file systems inotify does not see). */
		const char *e = getenv("TLS_ECHOD_WATCH_POLL");
		bool poll = e != NULL && strcmp(e, "1") == 0;

		if ((m->watch = watch_new(poll)) == NULL) {
			log_msg(LOG_ERR, "watch: out of memory; certificate "
			    "changes need SIGHUP");
			return;
		}
		if (watch_fd(m->watch) < 0)
			log_msg(poll ? LOG_INFO : LOG_WARNING, "watch: %s%s; "
			    "looking for changes every %d s", poll ?
			    "TLS_ECHOD_WATCH_POLL=1" : "inotify unavailable: ",
			    poll ? "" : strerror(errno), WATCH_POLL_MS / 1000);
	}
	if ((v = calloc(max, sizeof(*v))) == NULL)
		return;
	for (i = 0; i < c->nlisteners; i++) {
		const struct cfg_listener *li = &c->listeners[i];

		add_watched(v, &n, max, li->cert.path);
		add_watched(v, &n, max, li->key.path);
		add_watched(v, &n, max, li->ca.path);
		for (k = 0; k < li->ncrl; k++)
			add_watched(v, &n, max, li->crl[k].path);
		add_watched(v, &n, max, li->backend.ca.path);
		add_watched(v, &n, max, li->backend.cert.path);
		add_watched(v, &n, max, li->backend.key.path);
	}
	add_watched(v, &n, max, c->ticket_key_file.path);
	if (c->watch == CFG_WATCH_ALL) {
		conf = realpath(c->path, NULL);
		add_watched(v, &n, max, conf);
		for (k = 0; k < c->includes.n; k++)
			add_watched(v, &n, max, c->includes.v[k]);
	}
	if (watch_set(m->watch, v, n) != 0)
		log_msg(LOG_WARNING, "watch: cannot watch every file of the "
		    "configuration (%s); changes to those need SIGHUP",
		    strerror(errno));
	m->watch_poll_ms = worker_now_ms() + WATCH_POLL_MS;
	free(conf);
	free(v);
}

/* A watched file changed (or, polling, may have): reload once it is quiet. */
static void
on_watch(struct master *m, uint64_t now)
{
	char what[sizeof(m->watch_what)];

	if (m->watch == NULL || !watch_changed(m->watch, what, sizeof(what)))
		return;
	if (m->watch_due_ms == 0) {
		m->watch_first_ms = now;
		snprintf(m->watch_what, sizeof(m->watch_what), "%s", what);
	}
	m->watch_due_ms = now + WATCH_QUIET_MS;
	if (m->watch_due_ms > m->watch_first_ms + WATCH_MAX_MS)
		m->watch_due_ms = m->watch_first_ms + WATCH_MAX_MS;
}

/*
 * What worker ${p} says on its control socket.  A worker is the untrusted
 * side: two message types are expected (CTL_SERVING once, CTL_LEFT after
 * CTL_RETIRE), their argument is ignored, anything else is dropped and
 * reported once.
 */
static void
on_ctl(struct master *m, struct proc *p, short revents, uint64_t now)
{
	struct ctl_msg msg;
	int i, r;

	for (i = 0; i < CTL_READS; i++) {
		r = ctl_recv(p->ctl, &msg);
		if (r == -1)
			return;
		/* 0 is the end of the stream, or an empty message: the hang-up
		 * tells them apart (an empty message is junk like any). */
		if (r == 0 && (revents & POLLHUP)) {
			/* Gone (or it closed its end): reaped by SIGCHLD. */
			proc_ctl_close(p);
			p->leaving = false;
			break;
		}
		if (r == 1 && msg.type == CTL_LEFT && p->leaving) {
			p->leaving = false;
			continue;
		}
		if (r == 1 && msg.type == CTL_SERVING && !p->serving) {
			p->serving = true;
			continue;
		}
		if (!p->warned)
			log_msg(LOG_WARNING, "worker %u of generation %u (pid "
			    "%ld) sent an unexpected control message; "
			    "ignored", p->idx, p->gen, (long)p->pid);
		p->warned = true;
	}
	maybe_ready(m, now);
}

static void
dump_status(struct master *m, uint64_t now)
{
	char buf[512];
	size_t off = 0, i;

	buf[0] = '\0';
	for (i = 0; i < m->nslots && off < sizeof(buf); i++) {
		int n = snprintf(buf + off, sizeof(buf) - off, "%s%ld",
		    i ? " " : "", (long)m->slots[i].pid);

		if (n < 0)
			break;
		off += (size_t)n;
	}
	log_event(LOG_INFO, LOG_ID_STATUS, NULL, 0, "status: generation %u, "
	    "%u reload(s), workers [%s], %zu retired worker(s) draining; "
	    "workers report their connections next", m->cur->id, m->reloads,
	    buf, m->nold);
	for (i = 0; i < m->cur->nls; i++) {
		char sum[300];

		tlsctx_cert_summary(m->cur->ls[i].tls, sum, sizeof(sum));
		log_msg(LOG_INFO, "status: listener %s on %s: certificate %s",
		    m->cur->ls[i].cfg->name, m->cur->ls[i].cfg->listen, sum);
	}
	(void)now;
	signal_workers(m, SIGUSR1);
}

static void
begin_stop(struct master *m, int sig, uint64_t now)
{
	size_t i;

	if (m->stopping) {
		log_msg(LOG_NOTICE, "second %s: stopping workers now",
		    strsignal(sig));
		signal_workers(m, SIGKILL);
		return;
	}
	m->stopping = true;
	m->kill_at_ms = now + m->cur->cfg->shutdown_timeout_ms + KILL_GRACE_MS;
	notify_stopping("stopping: draining connections");
	log_event(LOG_INFO, LOG_ID_STOP, NULL, 0, "%s: stopping; live "
	    "connections get up to %.1f s", strsignal(sig),
	    m->cur->cfg->shutdown_timeout_ms / 1000.0);
	signal_workers(m, SIGTERM);
	/* Our copies too: new clients get refused now, not reset later. */
	for (i = 0; i < m->cur->nls; i++) {
		if (m->cur->ls[i].fd >= 0)
			close(m->cur->ls[i].fd);
		m->cur->ls[i].fd = -1;
	}
}

static void
on_signals(struct master *m, uint64_t now)
{
	struct signalfd_siginfo si;

	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			begin_stop(m, (int)si.ssi_signo, now);
			break;
		case SIGCHLD:
			reap(m, now);
			break;
		case SIGHUP:
			if (!m->stopping) {
				reload(m, now, "SIGHUP");
				watch_arm(m);
			}
			break;
		case SIGUSR1:
			dump_status(m, now);
			break;
		default:
			break;
		}
	}
}

static int
poll_timeout(const struct master *m, uint64_t now)
{
	uint64_t next = now + 1000;
	size_t i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid == 0 && m->slots[i].respawn_at_ms != 0 &&
		    m->slots[i].respawn_at_ms < next)
			next = m->slots[i].respawn_at_ms;
	for (i = 0; i < m->nold; i++)
		if (m->old[i].kill_at_ms < next)
			next = m->old[i].kill_at_ms;
	if (m->watchdog_ms != 0 && m->next_watchdog_ms < next)
		next = m->next_watchdog_ms;
	if (!m->stopping && m->next_status_ms < next)
		next = m->next_status_ms;
	if (m->notify_pending && now + NOTIFY_RETRY_MS < next)
		next = now + NOTIFY_RETRY_MS;
	if (m->stopping && m->kill_at_ms < next)
		next = m->kill_at_ms;
	if (m->ready_pending && m->ready_at_ms < next)
		next = m->ready_at_ms;
	if (m->watch_due_ms != 0 && m->watch_due_ms < next)
		next = m->watch_due_ms;
	if (m->watch != NULL && watch_fd(m->watch) < 0 &&
	    m->watch_poll_ms < next)
		next = m->watch_poll_ms;
	{
		uint64_t d = metricsd_next_deadline(m->msrv);

		if (d != 0 && d < next)
			next = d;
	}
	return next > now ? (int)(next - now) : 0;
}

static void
timers(struct master *m, uint64_t now)
{
	size_t i;

	if (m->watchdog_ms != 0 && now >= m->next_watchdog_ms) {
		notify_watchdog();
		m->next_watchdog_ms = now + m->watchdog_ms;
	}
	for (i = 0; i < m->nold; i++)
		if (now >= m->old[i].kill_at_ms) {
			log_msg(LOG_WARNING, "retired worker %u of generation "
			    "%u (pid %ld) still busy after drain_timeout: "
			    "killing it", m->old[i].idx, m->old[i].gen,
			    (long)m->old[i].pid);
			(void)kill(m->old[i].pid, SIGKILL);
			m->old[i].kill_at_ms = now + KILL_GRACE_MS;
		}
	if (m->stopping) {
		if (now >= m->kill_at_ms && alive(m) > 0) {
			log_msg(LOG_WARNING, "workers still running after the "
			    "shutdown timeout: killing them");
			signal_workers(m, SIGKILL);
			m->kill_at_ms = now + KILL_GRACE_MS;
		}
		return;
	}
	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid == 0 && m->slots[i].respawn_at_ms != 0 &&
		    now >= m->slots[i].respawn_at_ms)
			spawn(m, (unsigned)i, now);
	if (m->watch != NULL && watch_fd(m->watch) < 0 &&
	    now >= m->watch_poll_ms) {
		on_watch(m, now);
		m->watch_poll_ms = now + WATCH_POLL_MS;
	}
	if (m->watch_due_ms != 0 && now >= m->watch_due_ms) {
		char why[sizeof(m->watch_what) + 40];

		m->watch_due_ms = 0;
		snprintf(why, sizeof(why), "%s changed", m->watch_what);
		reload(m, now, why);
		watch_arm(m);
	}
	if (now >= m->next_status_ms) {
		/* Keep `systemctl status` current: connections come and go. */
		char before[sizeof(m->status)];

		memcpy(before, m->status, sizeof(before));
		check_listeners(m);
		set_status(m);
		if (strcmp(before, m->status) != 0)
			notify_status("%s", m->status);
		m->next_status_ms = now + STATUS_MS;
	}
}

/* --- metrics and health ------------------------------------------------- */

#define DATES_MAX 64 /* per listener */

/* The metric's kind label of a tlsctx_date; NULL for a CRL. */
static const char *
date_kind(const char *what)
{
	if (strcmp(what, "server certificate") == 0)
		return "server";
	if (strcmp(what, "CA") == 0)
		return "ca";
	if (strcmp(what, "backend CA") == 0)
		return "backend_ca";
	if (strcmp(what, "CRL") == 0)
		return NULL;
	return "backend_client";
}

/*
 * The dates of the current generation into ${out} (room for nls *
 * DATES_MAX, names in ${td}): one per listener, kind and name (a CA file
 * may hold two certificates of one subject), the earliest.
 */
static size_t
collect_dates(const struct gen *g, struct tlsctx_date *td,
    struct metrics_date *out)
{
	size_t i, k, j, n = 0, nd, first;

	for (i = 0; i < g->nls; i++) {
		nd = tlsctx_dates(g->ls[i].tls, td + i * DATES_MAX, DATES_MAX);
		first = n;
		for (k = 0; k < nd; k++) {
			const struct tlsctx_date *d = &td[i * DATES_MAX + k];
			const char *kind = date_kind(d->what);

			for (j = first; j < n; j++)
				if ((kind == NULL) == (out[j].kind == NULL) &&
				    (kind == NULL || strcmp(kind,
				    out[j].kind) == 0) &&
				    strcmp(d->name, out[j].name) == 0)
					break;
			if (j < n) {
				if (d->when < out[j].when)
					out[j].when = d->when;
				continue;
			}
			out[n].listener = g->ls[i].cfg->name;
			out[n].kind = kind;
			out[n].name = d->name;
			out[n].when = d->when;
			n++;
		}
	}
	return n;
}

/* Why /readyz says no (a message in ${buf}), or NULL: ready. */
static const char *
not_ready(const struct master *m, char *buf, size_t len)
{
	int64_t now = (int64_t)time(NULL);
	struct tlsctx_date d;
	bool serving = false;
	size_t i;

	if (m->stopping)
		return "stopping";
	if (m->ready_pending)
		return "reloading: the retired workers are leaving the "
		    "listening sockets";
	for (i = 0; i < m->nslots; i++)
		serving |= m->slots[i].pid != 0 && m->slots[i].serving;
	if (!serving) {
		snprintf(buf, len, "starting: no worker of generation %u "
		    "serves yet", m->cur->id);
		return buf;
	}
	for (i = 0; i < m->cur->nls; i++) {
		const char *name = m->cur->ls[i].cfg->name;

		if (m->cur->ls[i].fd < 0) {
			snprintf(buf, len, "listener %s is not bound", name);
			return buf;
		}
		if (tlsctx_dates(m->cur->ls[i].tls, &d, 1) == 1 &&
		    strcmp(d.what, "server certificate") == 0 &&
		    d.when < now) {
			snprintf(buf, len, "listener %s: its server "
			    "certificate expired", name);
			return buf;
		}
	}
	return NULL;
}

static void
reply_text(struct metricsd_reply *r, int status, const char *text)
{
	r->status = status;
	r->type = "text/plain; charset=utf-8";
	if ((r->body = strdup(text)) == NULL)
		r->status = 500;
	else
		r->len = strlen(text);
}

static void
reply_metrics(struct master *m, struct metricsd_reply *r)
{
	struct tlsctx_date *td = calloc(m->cur->nls * DATES_MAX, sizeof(*td));
	struct metrics_date *md = calloc(m->cur->nls * DATES_MAX, sizeof(*md));
	struct metrics_facts f = {
		.reloads_ok = m->reloads,
		.reloads_failed = m->reload_failures,
		.last_reload_ok = m->last_reload_ok,
		.worker_restarts = m->worker_restarts,
		.generation = m->cur->id,
		.draining = (unsigned)m->nold,
	};
	size_t i;

	r->status = 500;
	if (td == NULL || md == NULL)
		goto out;
	for (i = 0; i < m->nslots; i++)
		f.workers += m->slots[i].pid != 0;
	f.dates = md;
	f.ndates = collect_dates(m->cur, td, md);
	if (metrics_render(m->metrics, &f, worker_now_ms(), &r->body,
	    &r->len) != 0)
		goto out;
	r->status = 200;
	r->type = "text/plain; version=0.0.4; charset=utf-8";
out:
	free(td);
	free(md);
}

/* What the metrics server answers for GET ${path}. */
static void
serve_http(void *cookie, const char *path, struct metricsd_reply *r)
{
	struct master *m = cookie;
	char why[300], text[340];
	const char *no;

	if (strcmp(path, "/metrics") == 0)
		reply_metrics(m, r);
	else if (strcmp(path, "/healthz") == 0)
		reply_text(r, 200, "ok\n");
	else if (strcmp(path, "/readyz") == 0) {
		if ((no = not_ready(m, why, sizeof(why))) == NULL)
			reply_text(r, 200, "ready\n");
		else {
			snprintf(text, sizeof(text), "not ready: %s\n", no);
			reply_text(r, 503, text);
		}
	} else
		reply_text(r, 404, "404 Not Found: try /metrics, /healthz or "
		    "/readyz\n");
}

/* The poll set: the signalfd, then every worker's control socket. */
static size_t
poll_set(struct master *m)
{
	size_t want = 2 + m->nslots + m->nold + METRICSD_POLLFDS, n = 1, i;

	if (want > m->npfd_cap) {
		struct pollfd *pfd = realloc(m->pfd, want * sizeof(*pfd));
		struct proc **pp;

		if (pfd == NULL) {
			m->nctl_pfd = 1;
			return 1; /* signals still work; retry next round */
		}
		m->pfd = pfd;
		if ((pp = realloc(m->pproc, want * sizeof(*pp))) == NULL) {
			m->nctl_pfd = 1;
			return 1;
		}
		m->pproc = pp;
		m->npfd_cap = want;
	}
	m->pfd[0].fd = m->sigfd;
	m->pfd[0].events = POLLIN;
	m->pfd[0].revents = 0;
	for (i = 0; i < m->nslots + m->nold; i++) {
		struct proc *p = i < m->nslots ? &m->slots[i] :
		    &m->old[i - m->nslots];

		if (p->ctl < 0)
			continue;
		m->pfd[n].fd = p->ctl;
		m->pfd[n].events = POLLIN;
		m->pfd[n].revents = 0;
		m->pproc[n++] = p;
	}
	if (m->watch != NULL && watch_fd(m->watch) >= 0) {
		m->pfd[n].fd = watch_fd(m->watch);
		m->pfd[n].events = POLLIN;
		m->pfd[n].revents = 0;
		m->pproc[n++] = NULL; /* the watcher, not a worker */
	}
	m->nctl_pfd = n;
	return n + metricsd_poll_fill(m->msrv, m->pfd + n, m->npfd_cap - n);
}

static void
loop(struct master *m)
{
	for (;;) {
		uint64_t now = worker_now_ms();
		size_t n, i;

		if (m->stopping && alive(m) == 0)
			return;
		n = poll_set(m);
		if (poll(m->pfd, n, poll_timeout(m, now)) < 0 &&
		    errno != EINTR) {
			/* Never leave workers behind unsupervised. */
			log_msg(LOG_ERR, "poll: %s; stopping", strerror(errno));
			if (!m->stopping)
				begin_stop(m, SIGTERM, now);
			sleep(1);
			continue;
		}
		now = worker_now_ms();
		/* Workers first: the signals may reap them (and move the
		 * arrays the poll set points into). */
		for (i = 1; i < m->nctl_pfd && i < n; i++)
			if (m->pfd[i].revents != 0 && m->pproc[i] != NULL)
				on_ctl(m, m->pproc[i], m->pfd[i].revents, now);
			else if (m->pfd[i].revents != 0)
				on_watch(m, now);
		/* Before the signals: a reload may replace its socket. */
		if (n > m->nctl_pfd)
			metricsd_poll_done(m->msrv, m->pfd + m->nctl_pfd,
			    n - m->nctl_pfd, now);
		if (m->pfd[0].revents & POLLIN)
			on_signals(m, now);
		timers(m, now);
		maybe_ready(m, now);
		m->notify_pending = notify_retry() != 0;
	}
}

/*
 * Whatever started us may have left descriptors open (a shell's, a
 * supervisor's): workers must not inherit them.  Keep stdio and the
 * sockets systemd passes (LISTEN_FDS, checked against our pid).
 */
static void
close_inherited_fds(void)
{
	int n = sd_listen_fds(0);
	unsigned from = 3 + (unsigned)(n > 0 ? n : 0);

	(void)close_range(from, ~0U, 0);
}

static int
block_signals(struct master *m, char *err, size_t errlen)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2); /* workers use it; inherited blocked */
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
	    (m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int
master_run(struct cfg *c)
{
	struct master m = { .sigfd = -1, .next_gen = 1 };
	char err[600], sum[300], a[NET_ADDRSTRLEN];
	uint64_t now;
	size_t i;
	unsigned k;
	int status = 1, mfd = -1;

	/*
	 * Private keys live in this process and its workers: no core dumps,
	 * not even where fs.suid_dumpable = 2 makes undumpable processes
	 * dump for root (systemd-coredump stores nothing at a 0 limit).
	 */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	close_inherited_fds();
	log_open(cfg_log_target(c), c->log != CFG_LOG_AUTO);
	log_event(LOG_INFO, LOG_ID_START, NULL, 0, "tls-echod %s starting "
	    "(mbedTLS %s, %s; config %s; log to %s)", TLS_ECHOD_VERSION,
	    tlsctx_library_version(), TLS_ECHOD_MBEDTLS_ORIGIN, c->path,
	    log_target_name());
	/* Signals first: a SIGHUP during start-up must not kill us. */
	if (block_signals(&m, err, sizeof(err)) != 0 ||
	    tlsctx_global_init(err, sizeof(err)) != 0) {
		cfg_free(c);
		goto fail;
	}
	if ((m.metrics = metrics_new()) == NULL ||
	    (m.msrv = metricsd_new(serve_http, &m)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		cfg_free(c);
		goto fail;
	}
	/* Ownership of c moves to the generation, even on failure. */
	if ((m.cur = gen_new(c, NULL, m.next_gen, err, sizeof(err))) == NULL)
		goto fail;
	m.next_gen++;
	m.last_reload_ok = (int64_t)time(NULL);
	if (metrics_socket(&m, m.cur->cfg, &mfd, err, sizeof(err)) != 0)
		goto fail;
	metrics_apply(&m, m.cur->cfg, mfd);
	m.nslots = m.cur->cfg->workers;
	if ((m.slots = slots_new(m.nslots)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	for (i = 0; i < m.cur->nls; i++) {
		tlsctx_cert_summary(m.cur->ls[i].tls, sum, sizeof(sum));
		log_msg(LOG_INFO, "listener %s on %s: mode %s, certificate %s",
		    m.cur->ls[i].cfg->name, net_fd_addr_str(m.cur->ls[i].fd, a,
		    sizeof(a)), cfg_mode_name(m.cur->ls[i].cfg->mode), sum);
	}
	report_gen(&m, m.cur);
	now = worker_now_ms();
	for (k = 0; k < m.nslots; k++)
		spawn(&m, k, now);
	m.watchdog_ms = notify_watchdog_usec() / 2000;
	m.next_watchdog_ms = now + m.watchdog_ms;
	watch_arm(&m);
	set_status(&m);
	notify_ready(m.status);
	log_event(LOG_INFO, LOG_ID_READY, NULL, 0, "ready: %s", m.status);
	loop(&m);
	log_event(LOG_INFO, LOG_ID_STOP, NULL, 0, "stopped");
	status = 0;
	goto out;

fail:
	log_event(LOG_ERR, LOG_ID_CONFIG, NULL, 0, "%s", err);
	notify_status("failed to start: %s", err);
out:
	for (i = 0; m.slots != NULL && i < m.nslots; i++)
		proc_ctl_close(&m.slots[i]);
	for (i = 0; i < m.nold; i++)
		proc_ctl_close(&m.old[i]);
	metricsd_free(m.msrv);
	metrics_free(m.metrics);
	gen_free(m.cur);
	free(m.slots);
	free(m.old);
	free(m.pfd);
	free(m.pproc);
	watch_free(m.watch);
	if (m.sigfd >= 0)
		close(m.sigfd);
	tlsctx_global_free();
	return status;
}
