/*
 * master: the supervising process.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "net.h"
#include "notify.h"
#include "tlsctx.h"
#include "version.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024
#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 10000
#define STABLE_MS 5000      /* a worker up this long resets the back-off */
#define KILL_GRACE_MS 5000  /* after shutdown_timeout, before SIGKILL */

struct slot {
	pid_t pid;              /* 0: not running */
	uint64_t started_ms;
	uint64_t respawn_at_ms; /* when to start again, 0: not pending */
	unsigned backoff_ms;
};

struct master {
	struct cfg *cfg;                 /* owned */
	struct worker_listener *ls;      /* fds and tls owned */
	size_t nls;
	struct slot *slots;
	unsigned nslots;
	struct worker_creds creds;
	int sigfd;
	int pipe_r, pipe_w; /* workers hold pipe_r; EOF tells them we died */
	bool stopping;
	uint64_t kill_at_ms;
	uint64_t watchdog_ms; /* ping interval, 0: no watchdog */
	uint64_t next_watchdog_ms;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Resolve user/group settings to ids; uid -1 if no user is configured. */
static int
resolve_creds(const struct cfg *c, struct worker_creds *cr, char *err,
    size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	cr->uid = (uid_t)-1;
	cr->gid = (gid_t)-1;
	cr->user = c->user;
	if (c->user == NULL && c->group == NULL)
		return 0;
	if (c->user != NULL) {
		errno = 0;
		if ((pw = getpwnam(c->user)) == NULL) {
			snprintf(err, errlen, "%s:%d: user: no such user "
			    "\"%s\"", c->path, c->user_line, c->user);
			return -1;
		}
		cr->uid = pw->pw_uid;
		cr->gid = pw->pw_gid;
	} else {
		cr->uid = geteuid();
		cr->user = "(current user)";
	}
	if (c->group != NULL) {
		if ((gr = getgrnam(c->group)) == NULL) {
			snprintf(err, errlen, "%s:%d: group: no such group "
			    "\"%s\"", c->path, c->group_line, c->group);
			return -1;
		}
		cr->gid = gr->gr_gid;
	} else if (c->user == NULL)
		cr->gid = getegid();
	if (geteuid() != 0 && (cr->uid != geteuid() || cr->gid != getegid())) {
		snprintf(err, errlen, "%s:%d: %s: switching to %s needs root; "
		    "run as root or remove the setting", c->path,
		    c->user ? c->user_line : c->group_line,
		    c->user ? "user" : "group", c->user ? c->user : c->group);
		return -1;
	}
	if (geteuid() != 0)
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
	if (out != NULL)
		for (i = 0; i < c->nlisteners; i++) {
			tlsctx_cert_summary(tls[i], sum, sizeof(sum));
			fprintf(out, "listener %s: %s, mode %s, certificate %s\n",
			    c->listeners[i].name, c->listeners[i].listen,
			    cfg_mode_name(c->listeners[i].mode), sum);
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
 * Listening sockets: systemd's (socket activation, matched by
 * FileDescriptorName= or by address), else our own.
 */
static int
open_listeners(struct master *m, char *err, size_t errlen)
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
	for (k = 0; k < m->nls; k++) {
		const struct cfg_listener *li = m->ls[k].cfg;
		int fd = -1;

		for (i = 0; i < n && fd < 0; i++)
			if (!used[i] && names != NULL && names[i] != NULL &&
			    strcmp(names[i], li->name) == 0)
				fd = SD_LISTEN_FDS_START + i;
		for (i = 0; i < n && fd < 0; i++)
			if (!used[i] && net_fd_matches(SD_LISTEN_FDS_START + i,
			    &li->addr, li->addrlen))
				fd = SD_LISTEN_FDS_START + i;
		if (fd >= 0) {
			used[fd - SD_LISTEN_FDS_START] = true;
			if (net_set_nonblock(fd, err, errlen) != 0)
				goto out;
		} else {
			char e[200];

			fd = net_listen(&li->addr, li->addrlen, LISTEN_BACKLOG,
			    e, sizeof(e));
			if (fd < 0) {
				snprintf(err, errlen, "%s:%d: %s.listen: %s",
				    li->file, li->line, li->setting, e);
				goto out;
			}
		}
		m->ls[k].fd = fd;
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

static void
master_free(struct master *m)
{
	size_t i;

	for (i = 0; i < m->nls; i++) {
		if (m->ls[i].fd >= 0)
			close(m->ls[i].fd);
		tlsctx_free(m->ls[i].tls);
	}
	free(m->ls);
	free(m->slots);
	if (m->sigfd >= 0)
		close(m->sigfd);
	if (m->pipe_r >= 0)
		close(m->pipe_r);
	if (m->pipe_w >= 0)
		close(m->pipe_w);
	cfg_free(m->cfg);
	tlsctx_global_free();
}

static void
spawn(struct master *m, unsigned idx, uint64_t now)
{
	struct slot *s = &m->slots[idx];
	pid_t pid = fork();

	if (pid < 0) {
		log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0, "cannot fork worker "
		    "%u: %s", idx, strerror(errno));
		s->respawn_at_ms = now + RESPAWN_MAX_MS;
		return;
	}
	if (pid == 0) {
		struct worker_args a = {
			.cfg = m->cfg,
			.listeners = m->ls,
			.nlisteners = m->nls,
			.master_fd = m->pipe_r,
			.index = idx,
			.creds = m->creds,
		};
		int status;

		close(m->sigfd);
		m->sigfd = -1;
		close(m->pipe_w);
		m->pipe_w = -1;
		status = worker_run(&a);
		for (size_t i = 0; i < m->nls; i++)
			m->ls[i].fd = -1; /* closed by worker_run, or by _exit */
		master_free(m);
		_exit(status);
	}
	s->pid = pid;
	s->started_ms = now;
	s->respawn_at_ms = 0;
}

static void
reap(struct master *m, uint64_t now)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		unsigned i;

		for (i = 0; i < m->nslots && m->slots[i].pid != pid; i++)
			;
		if (i == m->nslots)
			continue;
		m->slots[i].pid = 0;
		if (m->stopping) {
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				log_event(LOG_WARNING, LOG_ID_WORKER, NULL, 0,
				    "worker %u (pid %ld) ended with %s %d "
				    "during shutdown", i, (long)pid,
				    WIFEXITED(st) ? "status" : "signal",
				    WIFEXITED(st) ? WEXITSTATUS(st) :
				    WTERMSIG(st));
			continue;
		}
		struct slot *s = &m->slots[i];

		if (now - s->started_ms >= STABLE_MS)
			s->backoff_ms = RESPAWN_MIN_MS;
		else
			s->backoff_ms = s->backoff_ms == 0 ? RESPAWN_MIN_MS :
			    (s->backoff_ms * 2 > RESPAWN_MAX_MS ?
			    RESPAWN_MAX_MS : s->backoff_ms * 2);
		s->respawn_at_ms = now + s->backoff_ms;
		if (WIFSIGNALED(st))
			log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0, "worker %u "
			    "(pid %ld) killed by signal %d (%s)%s; restarting "
			    "in %u ms", i, (long)pid, WTERMSIG(st),
			    strsignal(WTERMSIG(st)),
			    WCOREDUMP(st) ? ", core dumped" : "",
			    s->backoff_ms);
		else
			log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0, "worker %u "
			    "(pid %ld) exited with status %d; restarting in "
			    "%u ms", i, (long)pid, WEXITSTATUS(st),
			    s->backoff_ms);
	}
}

static unsigned
alive(const struct master *m)
{
	unsigned i, n = 0;

	for (i = 0; i < m->nslots; i++)
		n += m->slots[i].pid != 0;
	return n;
}

static void
signal_workers(struct master *m, int sig)
{
	unsigned i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid != 0)
			(void)kill(m->slots[i].pid, sig);
}

static void
begin_stop(struct master *m, int sig, uint64_t now)
{
	if (m->stopping) {
		log_msg(LOG_NOTICE, "second %s: stopping workers now",
		    strsignal(sig));
		signal_workers(m, SIGKILL);
		return;
	}
	m->stopping = true;
	m->kill_at_ms = now + m->cfg->shutdown_timeout_ms + KILL_GRACE_MS;
	notify_stopping("stopping: draining connections");
	log_event(LOG_INFO, LOG_ID_STOP, NULL, 0, "%s: stopping; live "
	    "connections get up to %.1f s", strsignal(sig),
	    m->cfg->shutdown_timeout_ms / 1000.0);
	signal_workers(m, SIGTERM);
	/* Our copies too: new clients get refused now, not reset later. */
	for (size_t i = 0; i < m->nls; i++) {
		if (m->ls[i].fd >= 0)
			close(m->ls[i].fd);
		m->ls[i].fd = -1;
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
			log_msg(LOG_WARNING, "SIGHUP: reloading is not "
			    "supported by this version; restart to apply "
			    "changes");
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
	unsigned i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid == 0 && m->slots[i].respawn_at_ms != 0 &&
		    m->slots[i].respawn_at_ms < next)
			next = m->slots[i].respawn_at_ms;
	if (m->watchdog_ms != 0 && m->next_watchdog_ms < next)
		next = m->next_watchdog_ms;
	if (m->stopping && m->kill_at_ms < next)
		next = m->kill_at_ms;
	return next > now ? (int)(next - now) : 0;
}

static void
loop(struct master *m)
{
	struct pollfd p = { .fd = m->sigfd, .events = POLLIN };

	for (;;) {
		uint64_t now = now_ms();
		unsigned i;

		if (m->stopping && alive(m) == 0)
			return;
		if (poll(&p, 1, poll_timeout(m, now)) < 0 && errno != EINTR) {
			/* Never leave workers behind unsupervised. */
			log_msg(LOG_ERR, "poll: %s; stopping", strerror(errno));
			if (!m->stopping)
				begin_stop(m, SIGTERM, now);
			sleep(1);
			continue;
		}
		now = now_ms();
		if (p.revents & POLLIN)
			on_signals(m, now);
		if (m->watchdog_ms != 0 && now >= m->next_watchdog_ms) {
			notify_watchdog();
			m->next_watchdog_ms = now + m->watchdog_ms;
		}
		if (m->stopping) {
			if (now >= m->kill_at_ms && alive(m) > 0) {
				log_msg(LOG_WARNING, "workers still running "
				    "after the shutdown timeout: killing them");
				signal_workers(m, SIGKILL);
				m->kill_at_ms = now + KILL_GRACE_MS;
			}
			continue;
		}
		for (i = 0; i < m->nslots; i++)
			if (m->slots[i].pid == 0 &&
			    m->slots[i].respawn_at_ms != 0 &&
			    now >= m->slots[i].respawn_at_ms)
				spawn(m, i, now);
	}
}

static int
setup(struct master *m, char *err, size_t errlen)
{
	struct tlsctx **tls = NULL;
	int pfd[2];
	sigset_t set;
	size_t i;
	int ret = -1;

	m->nls = m->cfg->nlisteners;
	m->ls = calloc(m->nls, sizeof(*m->ls));
	m->nslots = m->cfg->workers;
	m->slots = calloc(m->nslots, sizeof(*m->slots));
	tls = calloc(m->nls, sizeof(*tls));
	if (m->ls == NULL || m->slots == NULL || tls == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < m->nls; i++) {
		m->ls[i].fd = -1;
		m->ls[i].cfg = &m->cfg->listeners[i];
	}
	if (tlsctx_global_init(err, errlen) != 0)
		goto out;
	/* Ownership of each context moves to m->ls[i] as it loads. */
	if (load_tls(m->cfg, tls, err, errlen) != 0) {
		for (i = 0; i < m->nls; i++)
			tlsctx_free(tls[i]);
		goto out;
	}
	for (i = 0; i < m->nls; i++)
		m->ls[i].tls = tls[i];
	if (resolve_creds(m->cfg, &m->creds, err, errlen) != 0)
		goto out;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
	    (m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	m->pipe_r = pfd[0];
	m->pipe_w = pfd[1];
	if (open_listeners(m, err, errlen) != 0)
		goto out;
	ret = 0;
out:
	free(tls);
	return ret;
}

int
master_run(struct cfg *c)
{
	struct master m = { .cfg = c, .sigfd = -1, .pipe_r = -1, .pipe_w = -1 };
	char err[600], sum[300], a[NET_ADDRSTRLEN];
	uint64_t now;
	size_t i;
	unsigned k;
	int status = 1;

	/* Private keys live in this process and its workers: no core dumps. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	log_open(c->log == CFG_LOG_JOURNAL ? LOG_TARGET_JOURNAL :
	    LOG_TARGET_STDERR, c->log != CFG_LOG_AUTO);
	log_event(LOG_INFO, LOG_ID_START, NULL, 0, "tls-echod %s starting "
	    "(mbedTLS %s, %s; config %s; log to %s)", TLS_ECHOD_VERSION,
	    tlsctx_library_version(), TLS_ECHOD_MBEDTLS_ORIGIN, c->path,
	    log_target_name());
	if (setup(&m, err, sizeof(err)) != 0) {
		log_event(LOG_ERR, LOG_ID_CONFIG, NULL, 0, "%s", err);
		notify_status("failed to start: %s", err);
		goto out;
	}
	for (i = 0; i < m.nls; i++) {
		tlsctx_cert_summary(m.ls[i].tls, sum, sizeof(sum));
		log_msg(LOG_INFO, "listener %s on %s: mode %s, certificate %s",
		    m.ls[i].cfg->name, net_fd_addr_str(m.ls[i].fd, a,
		    sizeof(a)), cfg_mode_name(m.ls[i].cfg->mode), sum);
	}
	now = now_ms();
	for (k = 0; k < m.nslots; k++)
		spawn(&m, k, now);
	m.watchdog_ms = notify_watchdog_usec() / 2000;
	m.next_watchdog_ms = now + m.watchdog_ms;
	snprintf(sum, sizeof(sum), "serving %zu listener(s) with %u "
	    "worker(s)", m.nls, m.nslots);
	notify_ready(sum);
	log_event(LOG_INFO, LOG_ID_READY, NULL, 0, "ready: %s", sum);
	loop(&m);
	log_event(LOG_INFO, LOG_ID_STOP, NULL, 0, "stopped");
	status = 0;
out:
	master_free(&m);
	return status;
}
