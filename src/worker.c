/*
 * worker: one process's event loop over its share of the connections.
 */
#include "worker.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "census.h"
#include "ctl.h"
#include "conn.h"
#include "log.h"
#include "sandbox.h"
#include "stats.h"
#include "tlsctx.h"

#define TICK_MS 250          /* housekeeping: paused listeners */
#define ACCEPT_BATCH 64      /* accepts per wakeup, so one listener can't hog */
#define ACCEPT_PAUSE_MS 250  /* after EMFILE and friends */
#define MAX_EVENTS 128
#define DRAIN_MAX_MS 86400000u /* config's bound on drain_timeout */

/* epoll cookies of the worker's own (conn.h: a conn starts with CONN_EV_KIND) */
enum { EV_LISTENER = 2, EV_SIGNAL, EV_MASTER };

struct wl {
	int kind; /* EV_LISTENER */
	int fd;
	bool registered;
	uint64_t paused_until;
	struct conn_listener cl;
};

struct cookie {
	int kind;
	int fd;
};

struct worker {
	int epfd;
	struct conn_set conns;
	struct wl *ls;
	size_t nls;
	struct cookie sig, master;
	unsigned index, generation;
	unsigned shutdown_ms, drain_ms;
	bool stopping;
	uint64_t stop_deadline;
	uint64_t last_limit_log;
	unsigned max_conns; /* worker_connections */
	size_t peak_conns;  /* most connections since memory was last trimmed */
	uint64_t last_trim;
};

uint64_t
worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Become ${cr}'s user and group (and no supplementary group but that one),
 * then check that it took, all of it: real, effective and saved ids, the
 * group list, and no way back to root.
 */
static int
drop_privileges(const struct worker_creds *cr, char *err, size_t errlen)
{
	uid_t r, e, s;
	gid_t rg, eg, sg, groups[2];
	int ng;

	if (cr->uid == (uid_t)-1)
		return 0;
	if (setgroups(1, &cr->gid) != 0 ||
	    setresgid(cr->gid, cr->gid, cr->gid) != 0 ||
	    setresuid(cr->uid, cr->uid, cr->uid) != 0) {
		snprintf(err, errlen, "cannot switch to user %s: %s", cr->user,
		    strerror(errno));
		return -1;
	}
	/* Check, don't trust: a worker must never serve as root by mistake. */
	ng = getgroups(2, groups);
	if (getresuid(&r, &e, &s) != 0 || r != cr->uid || e != cr->uid ||
	    s != cr->uid || getresgid(&rg, &eg, &sg) != 0 || rg != cr->gid ||
	    eg != cr->gid || sg != cr->gid || ng != 1 ||
	    groups[0] != cr->gid || (cr->uid != 0 && setuid(0) == 0)) {
		snprintf(err, errlen, "privilege drop to user %s did not "
		    "take effect", cr->user);
		return -1;
	}
	return 0;
}

/*
 * A worker holds the private key and session keys: no core dumps, no
 * ptrace by its (unprivileged) user, whatever the uid change or the
 * system's suid_dumpable did to the flag the master set.
 */
static int
stay_undumpable(char *err, size_t errlen)
{
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
	    prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
		snprintf(err, errlen, "cannot make the worker undumpable: %s",
		    strerror(errno));
		return -1;
	}
	/* No way back up through a setuid program, filter or not (the
	 * seccomp filter sets it too; sandbox = false must not lose it). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(err, errlen, "cannot set no_new_privs: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
listener_register(struct worker *w, struct wl *l)
{
	/* Exclusive: one worker wakes per new connection, not all of them. */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
	    .data.ptr = l };

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ev) != 0)
		return -1;
	l->registered = true;
	return 0;
}

static void
listener_pause(struct worker *w, struct wl *l, uint64_t until)
{
	if (l->registered)
		(void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL);
	l->registered = false;
	l->paused_until = until;
}

static void
accept_some(struct worker *w, struct wl *l, uint64_t now)
{
	int i;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd;

		if (w->conns.n >= w->max_conns) {
			if (now - w->last_limit_log >= 1000) {
				log_event(LOG_WARNING, LOG_ID_LIMIT, NULL, 0,
				    "worker %u is at worker_connections (%u); "
				    "not accepting until one closes", w->index,
				    w->max_conns);
				w->last_limit_log = now;
			}
			listener_pause(w, l, now + ACCEPT_PAUSE_MS);
			return;
		}
		if (l->cl.active >= l->cl.cfg->max_connections) {
			/*
			 * Full: stop taking connections here, so the kernel
			 * hands them to a worker with room (or they wait in
			 * the backlog) instead of being refused.
			 */
			if (now - w->last_limit_log >= 1000) {
				const struct log_field f[] = {
					{ "LISTENER", l->cl.cfg->name },
				};

				log_event(LOG_WARNING, LOG_ID_LIMIT, f, 1,
				    "listener %s: this worker is at "
				    "max_connections (%u); not accepting until "
				    "one closes", l->cl.cfg->name,
				    l->cl.cfg->max_connections);
				w->last_limit_log = now;
			}
			listener_pause(w, l, now + ACCEPT_PAUSE_MS);
			return;
		}
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN ||
			    errno == EINTR || errno == ECONNABORTED)
				return;
			/* EMFILE, ENFILE, ENOBUFS: keep serving, retry soon. */
			if (now - w->last_limit_log >= 1000) {
				log_msg(LOG_WARNING, "listener %s: cannot "
				    "accept: %s; pausing accepts for %d ms",
				    l->cl.cfg->name, strerror(errno),
				    ACCEPT_PAUSE_MS);
				w->last_limit_log = now;
			}
			listener_pause(w, l, now + ACCEPT_PAUSE_MS);
			return;
		}
		/* TCP_NODELAY and keep-alive come from the listening
		 * socket (net_tune_listener). */
		(void)conn_new(&w->conns, &l->cl, fd, (struct sockaddr *)&ss,
		    len, now);
	}
}

static void
begin_stop(struct worker *w, uint64_t now, unsigned timeout_ms,
    const char *why)
{
	size_t i;

	if (w->stopping) {
		/* A shutdown during a drain shortens it, never lengthens it. */
		if (now + timeout_ms < w->stop_deadline)
			w->stop_deadline = now + timeout_ms;
		return;
	}
	w->stopping = true;
	w->stop_deadline = now + timeout_ms;
	for (i = 0; i < w->nls; i++) {
		listener_pause(w, &w->ls[i], UINT64_MAX);
		close(w->ls[i].fd);
		w->ls[i].fd = -1;
	}
	log_event(LOG_INFO, LOG_ID_WORKER, NULL, 0, "worker %u (generation "
	    "%u) stopping (%s): %zu connection(s) get up to %.1f s",
	    w->index, w->generation, why, w->conns.n, timeout_ms / 1000.0);
}

static void
log_status(const struct worker *w)
{
	char buf[512];
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < w->nls && off < sizeof(buf); i++) {
		int n = snprintf(buf + off, sizeof(buf) - off, "%s%s: %u",
		    i ? ", " : "", w->ls[i].cl.cfg->name, w->ls[i].cl.active);

		if (n < 0)
			break;
		off += (size_t)n;
	}
	log_event(LOG_INFO, LOG_ID_STATUS, NULL, 0, "status: worker %u "
	    "(generation %u)%s: %zu connection(s) (%s)", w->index,
	    w->generation, w->stopping ? " draining" : "", w->conns.n, buf);
}

static void
on_signal(struct worker *w, uint64_t now)
{
	struct signalfd_siginfo si;

	while (read(w->sig.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			begin_stop(w, now, w->shutdown_ms, "shutdown");
		else if (si.ssi_signo == SIGUSR2)
			/* The master needs us gone: close everything now, each
			 * connection with close_notify and its log line. */
			begin_stop(w, now, 0, "stopped by the master");
		else if (si.ssi_signo == SIGUSR1) {
#ifdef TLS_ECHOD_TEST_HOOKS
			/* Test builds: sigqueue(SIGUSR1, n) makes forbidden
			 * call n (sandbox.h); the test watches us die. */
			if (si.ssi_code == SI_QUEUE && si.ssi_int != 0) {
				int e = sandbox_test_violate(si.ssi_int);

				log_msg(LOG_NOTICE, "worker %u: test call %d "
				    "returned: %s", w->index, si.ssi_int,
				    e == 0 ? "success" : strerror(e));
				continue;
			}
#endif
			log_status(w);
		}
	}
}

/*
 * Stop taking connections and drain for ${drain_ms}.  With EPOLLEXCLUSIVE
 * a new connection wakes one worker: if it woke us in this batch, nobody
 * else was told, so take what waits before leaving the listeners.
 */
static void
retire(struct worker *w, uint64_t now, unsigned drain_ms, const char *why)
{
	size_t i;

	for (i = 0; i < w->nls; i++)
		if (w->ls[i].registered)
			accept_some(w, &w->ls[i], now);
	begin_stop(w, now, drain_ms, why);
}

/* The master's word: a reload retired us, or the master is gone. */
static void
on_master(struct worker *w, uint64_t now)
{
	struct ctl_msg m;
	int r;

	while ((r = ctl_recv(w->master.fd, &m)) != -1) {
		if (r == 0) {
			/* EOF: the master died.  No new connections; the
			 * live ones get our own drain_timeout. */
			(void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->master.fd,
			    NULL);
			retire(w, now, w->drain_ms, "the master exited");
			return;
		}
		if (r != 1 || m.type != CTL_RETIRE)
			continue; /* not ours: nothing else is ever sent */
		/* The new configuration's drain_timeout (config bounds it;
		 * the clamp keeps a deadline sane whatever arrives). */
		w->drain_ms = m.arg < DRAIN_MAX_MS ? m.arg : DRAIN_MAX_MS;
		retire(w, now, w->drain_ms, "retired by reload");
		/* The master's READY=1 waits for this (or for our exit). */
		if (ctl_send(w->master.fd, CTL_LEFT, 0) != 0)
			log_msg(LOG_WARNING, "worker %u: cannot tell the master "
			    "it left the listening sockets: %s", w->index,
			    strerror(errno));
	}
}

static int
setup(struct worker *w, const struct worker_args *a, char *err, size_t errlen)
{
	struct epoll_event ev;
	sigset_t set;
	size_t i;

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		return -1;
	}
	conn_set_init(&w->conns, w->epfd, a->census, a->index);
	if (a->census != NULL)
		census_worker_start(a->census, a->index);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	w->sig.kind = EV_SIGNAL;
	w->sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->sig.fd < 0) {
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		return -1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = &w->sig;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->sig.fd, &ev) != 0)
		goto epoll_fail;
	w->master.kind = EV_MASTER;
	w->master.fd = a->master_fd;
	ev.events = EPOLLIN;
	ev.data.ptr = &w->master;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->master.fd, &ev) != 0)
		goto epoll_fail;

	w->nls = a->nlisteners;
	w->ls = calloc(w->nls, sizeof(*w->ls));
	if (w->ls == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < w->nls; i++) {
		w->ls[i].kind = EV_LISTENER;
		w->ls[i].fd = a->listeners[i].fd;
		conn_listener_init(&w->ls[i].cl, a->listeners[i].cfg,
		    a->listeners[i].tls, a->cfg->log_refusals_per_s,
		    stats_block(a->stats, i));
		if (listener_register(w, &w->ls[i]) != 0)
			goto epoll_fail;
	}
	return 0;

epoll_fail:
	snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
	return -1;
}

static void
dispatch(struct worker *w, struct epoll_event *ev, uint64_t now)
{
	int kind = *(int *)ev->data.ptr;

	switch (kind) {
	case CONN_EV_KIND:
		conn_event(&w->conns, ev->data.ptr, ev->events, now);
		break;
	case EV_LISTENER:
		if (!w->stopping)
			accept_some(w, ev->data.ptr, now);
		break;
	case EV_SIGNAL:
		on_signal(w, now);
		break;
	case EV_MASTER:
		on_master(w, now);
		break;
	default:
		break;
	}
}

/*
 * After a crowd leaves, give its memory back: glibc keeps freed heap for
 * reuse, and a worker that once held 10,000 connections would keep ~0.5 GB
 * resident for good.  At most every 10 s, once the worker is down to a
 * quarter of its peak.
 */
static void
trim_memory(struct worker *w, uint64_t now)
{
	if (w->conns.n > w->peak_conns)
		w->peak_conns = w->conns.n;
	if (w->peak_conns >= 256 && w->conns.n <= w->peak_conns / 4 &&
	    now - w->last_trim >= 10000) {
		(void)malloc_trim(0);
		w->last_trim = now;
		w->peak_conns = w->conns.n;
	}
}

/* Summaries of the refusals counted instead of logged (conn.c). */
static void
log_suppressed(struct worker *w, uint64_t now, bool all)
{
	size_t i;

	for (i = 0; i < w->nls; i++)
		conn_listener_log_suppressed(&w->ls[i].cl, now, all);
}

static void
tick(struct worker *w, uint64_t now)
{
	size_t i;

	trim_memory(w, now);
	/* The tick runs anyway: summaries add no wakeup to an idle worker. */
	log_suppressed(w, now, false);
	if (w->stopping)
		return;
	for (i = 0; i < w->nls; i++)
		/*
		 * A full worker stays out: with EPOLLEXCLUSIVE the kernel
		 * wakes one waiter per connection, and a full worker taking
		 * that wakeup would leave the connection queued while
		 * another worker has room.
		 */
		if (!w->ls[i].registered && now >= w->ls[i].paused_until &&
		    w->conns.n < w->max_conns &&
		    w->ls[i].cl.active < w->ls[i].cl.cfg->max_connections &&
		    listener_register(w, &w->ls[i]) != 0)
			log_msg(LOG_ERR, "listener %s: epoll_ctl: %s",
			    w->ls[i].cl.cfg->name, strerror(errno));
}

static void
loop(struct worker *w)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t next_tick = worker_now_ms() + TICK_MS;

	for (;;) {
		uint64_t now = worker_now_ms();
		int n, i, timeout;

		if (w->stopping) {
			if (w->conns.n == 0)
				return;
			if (now >= w->stop_deadline) {
				log_msg(LOG_NOTICE, "worker %u: time is up: "
				    "closing %zu connection(s)", w->index,
				    w->conns.n);
				conn_set_close_all(&w->conns, "shutdown", now);
				conn_set_reap(&w->conns);
				return;
			}
		}
		{
			uint64_t wake = next_tick, d;

			/* The nearest connection deadline, to the millisecond. */
			d = conn_set_next_deadline(&w->conns);
			if (d != 0 && d < wake)
				wake = d;
			if (w->stopping && w->stop_deadline < wake)
				wake = w->stop_deadline;
			timeout = wake > now ? (int)(wake - now) : 0;
		}
		n = epoll_wait(w->epfd, evs, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			log_msg(LOG_ERR, "epoll_wait: %s", strerror(errno));
			return;
		}
		now = worker_now_ms();
		/*
		 * The master's word first: a retired worker takes what waits
		 * in the accept queue once (on_master), then leaves the
		 * listeners and says so; the master's READY=1 waits for that.
		 */
		for (i = 0; i < n; i++)
			if (*(int *)evs[i].data.ptr == EV_MASTER ||
			    *(int *)evs[i].data.ptr == EV_SIGNAL)
				dispatch(w, &evs[i], now);
		for (i = 0; i < n; i++)
			if (*(int *)evs[i].data.ptr != EV_MASTER &&
			    *(int *)evs[i].data.ptr != EV_SIGNAL)
				dispatch(w, &evs[i], now);
		conn_set_expire(&w->conns, now);
		if (now >= next_tick) {
			tick(w, now);
			next_tick = now + TICK_MS;
		}
		conn_set_reap(&w->conns);
	}
}

/* What this configuration's workers need beyond the common calls. */
static void
policy_of(const struct worker_args *a, struct sandbox_policy *p)
{
	size_t i;

	memset(p, 0, sizeof(*p));
	for (i = 0; i < a->nlisteners; i++) {
		const struct cfg_listener *li = a->listeners[i].cfg;

		if (li->mode != CFG_MODE_RELAY)
			continue;
		switch (li->backend.addr.ss_family) {
		case AF_INET: p->tcp4 = true; break;
		case AF_INET6: p->tcp6 = true; break;
		case AF_UNIX: p->unix_stream = true; break;
		default: break;
		}
	}
}

int
worker_run(const struct worker_args *a)
{
	struct sandbox_policy sp;
	struct worker w;
	char err[256];
	sigset_t none;
	int status = 1;

	memset(&w, 0, sizeof(w));
	w.epfd = w.sig.fd = -1;
	/* SIGHUP is the master's business. */
	signal(SIGHUP, SIG_IGN);
	w.index = a->index;
	w.generation = a->generation;
	w.shutdown_ms = a->cfg->shutdown_timeout_ms;
	w.drain_ms = a->cfg->drain_timeout_ms;
	w.max_conns = a->cfg->worker_connections;
	sigemptyset(&none);
	sigaddset(&none, SIGCHLD);
	sigprocmask(SIG_UNBLOCK, &none, NULL);

	/*
	 * Privileges go first: nothing below needs them.  The sandbox comes
	 * last, once everything is open, before the first accept.
	 */
	policy_of(a, &sp);
	if (drop_privileges(&a->creds, err, sizeof(err)) != 0 ||
	    stay_undumpable(err, sizeof(err)) != 0 ||
	    tlsctx_worker_init(err, sizeof(err)) != 0 ||
	    setup(&w, a, err, sizeof(err)) != 0 ||
	    (a->sandbox && sandbox_enter(&sp, err, sizeof(err)) != 0)) {
		log_event(LOG_ERR, LOG_ID_WORKER, NULL, 0,
		    "worker %u cannot start: %s", a->index, err);
		goto out;
	}
	/* For /readyz: this generation is served. */
	if (ctl_send(w.master.fd, CTL_SERVING, 0) != 0)
		log_msg(LOG_WARNING, "worker %u: cannot tell the master it "
		    "serves: %s", w.index, strerror(errno));
	loop(&w);
	/* Nothing counted is lost: what the last second held, at exit. */
	log_suppressed(&w, worker_now_ms(), true);
	status = 0;
out:
	if (w.sig.fd >= 0)
		close(w.sig.fd);
	if (w.epfd >= 0)
		close(w.epfd);
	conn_set_free(&w.conns);
	free(w.ls);
	return status;
}
