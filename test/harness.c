/*
 * harness: drive the real tls-echod from Check tests.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define RING 32
#define MAX_LIVE 8
#define MAX_NEEDLES 16
#define TLS_CHUNK 16384 /* one record: retries after WANT_* reuse it */
#define POLL_SLICE_MS 10

static char ring[RING][PATH_MAX];
static unsigned ring_next;

/*
 * Masters started and not yet reaped, for h_teardown and exit.  Pids, not
 * struct pointers: a test's struct h_daemon may live on its stack.
 */
static pid_t live[MAX_LIVE];
static bool atexit_done;

static int reap_pid(pid_t pid, int timeout_ms, int *status);

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

bool
h_env_ok(char *why, size_t len)
{
	const char *bin = env("TLS_ECHOD_BIN"), *pki = env("TEST_PKI");
	const char *tmp = env("TEST_TMPDIR");
	char p[PATH_MAX];

	if (bin == NULL || pki == NULL || tmp == NULL) {
		snprintf(why, len, "TLS_ECHOD_BIN, TEST_PKI and TEST_TMPDIR "
		    "must be set (run through `make check-run`)");
		return false;
	}
	if (bin[0] != '/' || pki[0] != '/' || tmp[0] != '/') {
		snprintf(why, len, "TLS_ECHOD_BIN, TEST_PKI and TEST_TMPDIR "
		    "must be absolute paths");
		return false;
	}
	if (access(bin, X_OK) != 0) {
		snprintf(why, len, "TLS_ECHOD_BIN=%s: %s", bin,
		    strerror(errno));
		return false;
	}
	snprintf(p, sizeof(p), "%s/client.crt", pki);
	if (access(p, R_OK) != 0) {
		snprintf(why, len, "TEST_PKI=%s: no readable client.crt (run "
		    "test/gen-test-pki.sh)", pki);
		return false;
	}
	if (access(tmp, W_OK) != 0) {
		snprintf(why, len, "TEST_TMPDIR=%s: %s", tmp, strerror(errno));
		return false;
	}
	return true;
}

bool
h_skip_under_valgrind(const char *test, const char *why)
{
	const char *v = env("TEST_VALGRIND");

	if (v == NULL || strcmp(v, "1") != 0)
		return false;
	printf("%s: skipped under valgrind: %s\n", test, why);
	fflush(stdout);
	return true;
}

static void
at_exit_cleanup(void)
{
	h_teardown();
}

void
h_setup(void)
{
	struct rlimit rl;

	(void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (!atexit_done) {
		atexit(at_exit_cleanup);
		atexit_done = true;
	}
}

/* SIGKILL master ${pid} and its children, and reap them all. */
static void
kill_tree(pid_t pid)
{
	pid_t kids[64];
	int n, i, st;

	n = h_children_of(pid, kids, 64);
	if (n > 64)
		n = 64;
	for (i = 0; i < n; i++)
		(void)kill(kids[i], SIGKILL);
	(void)kill(pid, SIGKILL);
	(void)reap_pid(pid, 2000, &st);
	/* As subreaper we inherit the workers: reap them too. */
	for (i = 0; i < n; i++)
		(void)reap_pid(kids[i], 500, &st);
}

void
h_teardown(void)
{
	size_t i;

	pid_t kids[64];
	int n, k, st;

	for (i = 0; i < MAX_LIVE; i++)
		if (live[i] > 0) {
			kill_tree(live[i]);
			live[i] = 0;
		}
	/* Orphaned workers of a master that already exited are ours now. */
	n = h_children_of(getpid(), kids, 64);
	for (k = 0; k < n && k < 64; k++) {
		(void)kill(kids[k], SIGKILL);
		(void)reap_pid(kids[k], 500, &st);
	}
}

static const char *
ring_path(const char *dir, const char *name)
{
	char *p = ring[ring_next++ % RING];

	snprintf(p, PATH_MAX, "%s/%s", dir != NULL ? dir : ".", name);
	return p;
}

const char *
h_pki(const char *name)
{
	return ring_path(env("TEST_PKI"), name);
}

const char *
h_tmp(const char *name)
{
	return ring_path(env("TEST_TMPDIR"), name);
}

int64_t
h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
	    .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Milliseconds left until ${deadline}, at least 0. */
static int
left_ms(int64_t deadline)
{
	int64_t now = h_now_ms();

	if (now >= deadline)
		return 0;
	return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

/* Wait up to ${deadline} for ${events} on ${fd}: 0 when ready, -1 if not. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int ms = left_ms(deadline), r;

		if (ms == 0)
			return -1;
		r = poll(&p, 1, ms);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* Reap ${pid} within ${timeout_ms}: 0 with its wait status, or -1. */
static int
reap_pid(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (h_now_ms() >= deadline)
			return -1;
		sleep_ms(2);
	}
}

static int
exit_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 255;
}

int
h_run(const char *const *argv, const char *log, int timeout_ms, char *err,
    size_t errlen)
{
	pid_t pid;
	int st;

	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
		    dup2(out, 2) < 0)
			_exit(126);
		signal(SIGPIPE, SIG_DFL);
		/* execvp's prototype predates const; it does not write. */
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	if (reap_pid(pid, timeout_ms, &st) != 0) {
		(void)kill(pid, SIGKILL);
		(void)reap_pid(pid, 2000, &st);
		snprintf(err, errlen, "%s: still running after %d ms; killed",
		    argv[0], timeout_ms);
		return -1;
	}
	if (!WIFEXITED(st)) {
		snprintf(err, errlen, "%s: killed by signal %d", argv[0],
		    WTERMSIG(st));
		return -1;
	}
	return WEXITSTATUS(st);
}

pid_t
h_spawn(const char *const *argv, int *to_child, int *from_child,
    const char *errlog)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 };
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		int e = open(errlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644);

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (e < 0 || dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(e, 2) < 0)
			_exit(126);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	(void)fcntl(in[1], F_SETFL, O_NONBLOCK);
	(void)fcntl(out[0], F_SETFL, O_NONBLOCK);
	*to_child = in[1];
	*from_child = out[0];
	return pid;

fail:
	if (in[0] >= 0) {
		close(in[0]);
		close(in[1]);
	}
	if (out[0] >= 0) {
		close(out[0]);
		close(out[1]);
	}
	return -1;
}

int
h_wait_pid(pid_t pid, int timeout_ms)
{
	int st;

	if (reap_pid(pid, timeout_ms, &st) != 0) {
		(void)kill(pid, SIGKILL);
		(void)reap_pid(pid, 2000, &st);
		return -1;
	}
	return exit_code(st);
}

/* --- files -------------------------------------------------------------------- */

/* The whole of ${path}, NUL-terminated (free it), or NULL. */
static char *
slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t r;

		if (cap - n < 4097) {
			char *nb = realloc(buf, cap ? cap * 2 : 65536);

			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap = cap ? cap * 2 : 65536;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (ret_len != NULL)
		*ret_len = n;
	return buf;
}

/* Copy ${s} to ${out}, replacing ${from} with ${to} everywhere. */
static void
put_replaced(FILE *out, const char *s, const char *from, const char *to)
{
	const char *p;
	size_t flen = strlen(from);

	while ((p = strstr(s, from)) != NULL) {
		fwrite(s, 1, (size_t)(p - s), out);
		fputs(to, out);
		s = p + flen;
	}
	fputs(s, out);
}

static int
write_config(struct h_daemon *d, const struct h_daemon_opts *o)
{
	const char *pki = env("TEST_PKI");
	char port[16], ca[PATH_MAX];
	FILE *f;
	int bad;

	snprintf(ca, sizeof(ca), "%s/ca.crt", pki);

	f = fopen(d->conf_path, "we");
	if (f == NULL) {
		snprintf(d->err, sizeof(d->err), "%.300s: %s", d->conf_path,
		    strerror(errno));
		return -1;
	}
	snprintf(port, sizeof(port), "%d", d->port);
	if (o->config != NULL) {
		char *mid;
		size_t midlen;
		FILE *m = open_memstream(&mid, &midlen);

		if (m == NULL) {
			fclose(f);
			snprintf(d->err, sizeof(d->err), "open_memstream");
			return -1;
		}
		put_replaced(m, o->config, "@PORT@", port);
		fclose(m);
		put_replaced(f, mid, "@PKI@", pki);
		free(mid);
	} else {
		fprintf(f,
		    "log = \"stderr\";\n"
		    "%s\n"
		    "listeners = (\n"
		    "  {\n"
		    "    name = \"echo\";\n"
		    "    listen = \"127.0.0.1:%d\";\n"
		    "    mode = \"echo\";\n"
		    "    %s\n"
		    "    tls = {\n"
		    "      cert = \"%s/server.crt\";\n"
		    "      key = \"%s/server.key\";\n"
		    "      ca = \"%s\";\n"
		    "    };\n"
		    "  }\n"
		    ");\n",
		    o->globals != NULL ? o->globals : "", d->port,
		    o->listener_extra != NULL ? o->listener_extra : "", pki, pki,
		    o->ca != NULL ? o->ca : ca);
	}
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		snprintf(d->err, sizeof(d->err), "cannot write %.300s",
		    d->conf_path);
		return -1;
	}
	return 0;
}

/* --- the daemon --------------------------------------------------------------- */

/* A listening socket on 127.0.0.1:0 and its port, or -1. */
static int
listen_socket(int *ret_port, int sndbuf, int rcvbuf, char *err,
    size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && sndbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
		    sizeof(sndbuf));
	if (fd >= 0 && rcvbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 1024) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		snprintf(err, errlen, "listening socket: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*ret_port = ntohs(sa.sin_port);
	return fd;
}

int
h_free_port(void)
{
	char err[128];
	int port = -1, fd = listen_socket(&port, 0, 0, err, sizeof(err));

	if (fd >= 0)
		close(fd);
	return port;
}

static int
notify_socket(struct h_daemon *d, unsigned seq)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char name[96];
	int one = 1, n;

	n = snprintf(name, sizeof(name), "tls-echod-test-%ld-%u",
	    (long)getpid(), seq);
	d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0);
	if (d->notify_fd < 0)
		goto fail;
	if (setsockopt(d->notify_fd, SOL_SOCKET, SO_PASSCRED, &one,
	    sizeof(one)) != 0)
		goto fail;
	/* Abstract: sun_path[0] is NUL, the name follows, no file to remove. */
	memcpy(sa.sun_path + 1, name, (size_t)n);
	if (bind(d->notify_fd, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	    (size_t)n)) != 0)
		goto fail;
	snprintf(d->notify_addr, sizeof(d->notify_addr), "@%s", name);
	return 0;

fail:
	snprintf(d->err, sizeof(d->err), "notify socket: %s", strerror(errno));
	return -1;
}

int
h_notify_recv(int fd, char *text, size_t len, pid_t *ret_pid)
{
	for (;;) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(struct ucred)) +
			    CMSG_SPACE(sizeof(int) * 16)];
		} cm;
		struct iovec iov = { .iov_base = text, .iov_len = len - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
		    .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
		struct cmsghdr *c;
		pid_t pid = 0;
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		text[n] = '\0';
		for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET)
				continue;
			if (c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred uc;

				memcpy(&uc, CMSG_DATA(c), sizeof(uc));
				pid = uc.pid;
			} else if (c->cmsg_type == SCM_RIGHTS) {
				size_t k, nfd = (c->cmsg_len - CMSG_LEN(0)) /
				    sizeof(int);

				for (k = 0; k < nfd; k++) {
					int rfd;

					memcpy(&rfd, CMSG_DATA(c) +
					    k * sizeof(int), sizeof(rfd));
					close(rfd);
				}
			}
		}
		*ret_pid = pid;
		return 0;
	}
}

/* Receive every queued notify datagram into d->notify. */
static void
notify_drain(struct h_daemon *d)
{
	char text[512];
	pid_t pid;

	if (d->notify_fd < 0)
		return;
	while (h_notify_recv(d->notify_fd, text, sizeof(text), &pid) == 0) {
		if (d->nnotify < H_NOTIFY_MAX) {
			snprintf(d->notify[d->nnotify].text,
			    sizeof(d->notify[d->nnotify].text), "%s", text);
			d->notify[d->nnotify].pid = pid;
			d->nnotify++;
		}
	}
}

static const struct h_notify_msg *
notify_find(struct h_daemon *d, const char *needle)
{
	int i;

	notify_drain(d);
	for (i = 0; i < d->nnotify; i++)
		if (strstr(d->notify[i].text, needle) != NULL)
			return &d->notify[i];
	return NULL;
}

const struct h_notify_msg *
h_notify_wait(struct h_daemon *d, const char *needle, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	const struct h_notify_msg *m;

	if (d->notify_fd < 0)
		return NULL;
	while ((m = notify_find(d, needle)) == NULL) {
		int ms = left_ms(deadline);

		if (ms == 0)
			return NULL;
		(void)wait_fd(d->notify_fd, POLLIN, h_now_ms() +
		    (ms < 100 ? ms : 100));
	}
	return m;
}

/*
 * Exec "${bin} -c ${conf}", behind the words of $TLS_ECHOD_WRAP if set
 * (split at blanks, found in PATH: "valgrind --leak-check=full ...").  A
 * wrapper that execs in place (valgrind does) keeps the pid, so notify
 * credentials and signals still reach the daemon.  The words of ${pre}
 * (h_daemon_opts.wrap; may be NULL) go first.  Returns only on failure.
 */
static void
exec_wrapped(const char *const *pre, const char *bin, const char *conf)
{
	static char words[4096];
	const char *wrap = env("TLS_ECHOD_WRAP");
	char *argv[64], *p, *save = NULL;
	size_t n = 0;

	if (wrap != NULL && strlen(wrap) >= sizeof(words))
		wrap = NULL;
	if (wrap == NULL && (pre == NULL || pre[0] == NULL)) {
		execl(bin, bin, "-c", conf, (char *)NULL);
		return;
	}
	/* execvp's prototype predates const; it does not write. */
	for (; pre != NULL && *pre != NULL && n < 30; pre++)
		argv[n++] = (char *)(uintptr_t)*pre;
	memcpy(words, wrap != NULL ? wrap : "", wrap != NULL ?
	    strlen(wrap) + 1 : 1);
	for (p = strtok_r(words, " \t", &save); p != NULL && n < 60;
	    p = strtok_r(NULL, " \t", &save))
		argv[n++] = p;
	argv[n++] = (char *)(uintptr_t)bin;
	argv[n++] = (char *)(uintptr_t)"-c";
	argv[n++] = (char *)(uintptr_t)conf;
	argv[n] = NULL;
	execvp(argv[0], argv);
}

/* In the forked child: set up fds and environment, exec the daemon. */
static void __attribute__((noreturn))
exec_daemon(const struct h_daemon *d, const struct h_daemon_opts *o,
    int lfd, pid_t parent)
{
	const char *bin = env("TLS_ECHOD_BIN");
	char num[32];
	sigset_t none;
	int logfd, nullfd;
	size_t i;

	/* Die with the test, even if it dies without cleaning up. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != parent)
		_exit(127);
	logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0644);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0 || dup2(nullfd, 0) < 0 ||
	    dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(126);
	if (lfd >= 0) {
		/* dup2 clears close-on-exec; with lfd == 3 do it by hand. */
		if (lfd == 3) {
			if (fcntl(3, F_SETFD, 0) != 0)
				_exit(126);
		} else if (dup2(lfd, 3) != 3)
			_exit(126);
		snprintf(num, sizeof(num), "%ld", (long)getpid());
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_PID", num, 1);
		setenv("LISTEN_FDNAMES", o->fdname != NULL ? o->fdname : "echo",
		    1);
	} else {
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
	}
	if (d->notify_fd >= 0)
		setenv("NOTIFY_SOCKET", d->notify_addr, 1);
	else
		unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("JOURNAL_STREAM");
	for (i = 0; o->env != NULL && o->env[i] != NULL; i++) {
		char *kv = strdup(o->env[i]);

		if (kv == NULL || putenv(kv) != 0)
			_exit(126);
	}
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	exec_wrapped(o->wrap, bin, d->conf_path);
	dprintf(2, "harness: cannot exec %s: %s\n", bin, strerror(errno));
	_exit(127);
}

static void
live_add(pid_t pid)
{
	size_t i;

	for (i = 0; i < MAX_LIVE; i++)
		if (live[i] <= 0) {
			live[i] = pid;
			return;
		}
}

static void
live_del(pid_t pid)
{
	size_t i;

	for (i = 0; i < MAX_LIVE; i++)
		if (live[i] == pid)
			live[i] = 0;
}

/* Append the log's tail to d->err, after ${what}. */
static void
fail_with_log(struct h_daemon *d, const char *what)
{
	char tail[500];

	snprintf(d->err, sizeof(d->err), "%.200s; daemon log %.200s ends:\n%s",
	    what, d->log_path, h_log_tail(d, tail, sizeof(tail)));
}

static int
wait_ready(struct h_daemon *d, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	char what[200];

	for (;;) {
		int st;

		if (d->notify_fd >= 0) {
			if (notify_find(d, "READY=1") != NULL)
				return 0;
		} else if (h_log_count(d, ": ready: ", NULL) > 0)
			return 0;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->running = false;
			d->exit_status = exit_code(st);
			live_del(d->pid);
			snprintf(what, sizeof(what), "daemon exited (status "
			    "%d) before it was ready", d->exit_status);
			fail_with_log(d, what);
			return -1;
		}
		if (left_ms(deadline) == 0) {
			snprintf(what, sizeof(what), "no %s within %d ms",
			    d->notify_fd >= 0 ? "READY=1 on the notify socket" :
			    "\"ready:\" log line", timeout_ms);
			fail_with_log(d, what);
			return -1;
		}
		if (d->notify_fd >= 0)
			(void)wait_fd(d->notify_fd, POLLIN, h_now_ms() + 20);
		else
			sleep_ms(POLL_SLICE_MS);
	}
}

int
h_daemon_start(struct h_daemon *d, const struct h_daemon_opts *o)
{
	static unsigned seq;
	const char *label = o->label != NULL ? o->label : "daemon";
	unsigned n = seq++;
	int lfd = -1;
	pid_t parent = getpid(), pid;

	memset(d, 0, sizeof(*d));
	d->notify_fd = -1;
	d->exit_status = -1;
	snprintf(d->conf_path, sizeof(d->conf_path), "%s/%s-%ld-%u.conf",
	    env("TEST_TMPDIR"), label, (long)parent, n);
	snprintf(d->log_path, sizeof(d->log_path), "%s/%s-%ld-%u.log",
	    env("TEST_TMPDIR"), label, (long)parent, n);
	if (o->activation) {
		lfd = listen_socket(&d->port, o->listen_sndbuf,
		    o->listen_rcvbuf, d->err, sizeof(d->err));
		if (lfd < 0)
			return -1;
	} else if ((d->port = h_free_port()) < 0) {
		snprintf(d->err, sizeof(d->err), "no free port");
		return -1;
	}
	if (write_config(d, o) != 0 ||
	    (!o->no_notify && notify_socket(d, n) != 0))
		goto fail;
	pid = fork();
	if (pid < 0) {
		snprintf(d->err, sizeof(d->err), "fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		exec_daemon(d, o, lfd, parent);
	d->pid = pid;
	d->running = true;
	live_add(pid);
	/* The daemon has its copy; ours would keep queueing connections. */
	if (lfd >= 0)
		close(lfd);
	lfd = -1;
	if (o->no_wait)
		return 0;
	if (wait_ready(d, o->ready_timeout_ms > 0 ? o->ready_timeout_ms :
	    10000) != 0) {
		char keep[H_ERR_MAX];

		memcpy(keep, d->err, sizeof(keep));
		h_daemon_kill(d);
		memcpy(d->err, keep, sizeof(keep));
		return -1;
	}
	return 0;

fail:
	if (lfd >= 0)
		close(lfd);
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	d->notify_fd = -1;
	return -1;
}

int
h_daemon_signal(struct h_daemon *d, int sig)
{
	if (!d->running)
		return -1;
	return kill(d->pid, sig);
}

int
h_daemon_wait_exit(struct h_daemon *d, int timeout_ms)
{
	int st;

	if (!d->running)
		return d->exit_status;
	if (reap_pid(d->pid, timeout_ms, &st) != 0)
		return -1;
	d->running = false;
	d->exit_status = exit_code(st);
	live_del(d->pid);
	return d->exit_status;
}

int
h_daemon_stop(struct h_daemon *d, int timeout_ms)
{
	int r;

	if (!d->running)
		return d->exit_status;
	if (h_daemon_signal(d, SIGTERM) != 0)
		return -1;
	r = h_daemon_wait_exit(d, timeout_ms);
	if (r < 0) {
		snprintf(d->err, sizeof(d->err), "daemon still running %d ms "
		    "after SIGTERM", timeout_ms);
		h_daemon_kill(d);
	}
	return r;
}

void
h_daemon_kill(struct h_daemon *d)
{
	if (d->running) {
		kill_tree(d->pid);
		d->running = false;
		d->exit_status = 128 + SIGKILL;
	}
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	d->notify_fd = -1;
	live_del(d->pid);
}

/* Parent pid and state of ${pid} from /proc/PID/stat; 0 or -1. */
static int
proc_stat(pid_t pid, pid_t *ppid, char *state)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;
	int pp;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold anything: parse after its last ')'. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %c %d", state, &pp) != 2)
		return -1;
	*ppid = pp;
	return 0;
}

pid_t
h_proc_ppid(pid_t pid, char *state)
{
	pid_t pp;
	char st;

	if (proc_stat(pid, &pp, &st) != 0)
		return -1;
	if (state != NULL)
		*state = st;
	return pp;
}

int
h_children_of(pid_t ppid, pid_t *pids, int max)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (dir == NULL)
		return 0;
	while ((e = readdir(dir)) != NULL) {
		char *end, state;
		long v = strtol(e->d_name, &end, 10);
		pid_t pp;

		if (*end != '\0' || v <= 0)
			continue;
		if (proc_stat((pid_t)v, &pp, &state) != 0 || pp != ppid)
			continue;
		if (n < max)
			pids[n] = (pid_t)v;
		n++;
	}
	closedir(dir);
	return n;
}

int
h_daemon_workers(const struct h_daemon *d, pid_t *pids, int max, int want,
    int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int n;

	for (;;) {
		n = h_children_of(d->pid, pids, max);
		if (n >= want || left_ms(deadline) == 0)
			return n;
		sleep_ms(POLL_SLICE_MS);
	}
}

long
h_proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	FILE *f;
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

bool
h_pid_gone(pid_t pid)
{
	return kill(pid, 0) != 0 && errno == ESRCH;
}

/* --- the daemon's log ---------------------------------------------------------- */

static size_t
collect_needles(va_list ap, const char **needles)
{
	size_t n = 0;
	const char *s;

	while ((s = va_arg(ap, const char *)) != NULL && n < MAX_NEEDLES)
		needles[n++] = s;
	return n;
}

/*
 * Lines of ${text} matching all ${needles}: the count, and the first match
 * copied into ${line} if not NULL.
 */
static int
match_lines(const char *text, const char **needles, size_t nneedles,
    char *line, size_t linelen)
{
	const char *p = text;
	char *buf = NULL;
	size_t cap = 0;
	int count = 0;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p), i;

		if (len + 2 > cap) {
			char *nb = realloc(buf, len + 2);

			if (nb == NULL)
				break;
			buf = nb;
			cap = len + 2;
		}
		memcpy(buf, p, len);
		buf[len] = ' ';
		buf[len + 1] = '\0';
		for (i = 0; i < nneedles; i++)
			if (strstr(buf, needles[i]) == NULL)
				break;
		if (i == nneedles) {
			if (count == 0 && line != NULL && linelen > 0)
				snprintf(line, linelen, "%.*s", (int)len, p);
			count++;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	free(buf);
	return count;
}

int
h_log_wait(const struct h_daemon *d, int timeout_ms, char *line,
    size_t linelen, ...)
{
	const char *needles[MAX_NEEDLES];
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t n;
	va_list ap;

	va_start(ap, linelen);
	n = collect_needles(ap, needles);
	va_end(ap);
	for (;;) {
		char *text = slurp(d->log_path, NULL);
		int c = text != NULL ? match_lines(text, needles, n, line,
		    linelen) : 0;

		free(text);
		if (c > 0)
			return 0;
		if (left_ms(deadline) == 0)
			return -1;
		sleep_ms(POLL_SLICE_MS);
	}
}

int
h_log_count(const struct h_daemon *d, ...)
{
	const char *needles[MAX_NEEDLES];
	char *text;
	size_t n;
	int c;
	va_list ap;

	va_start(ap, d);
	n = collect_needles(ap, needles);
	va_end(ap);
	if ((text = slurp(d->log_path, NULL)) == NULL)
		return 0;
	c = match_lines(text, needles, n, NULL, 0);
	free(text);
	return c;
}

int
h_log_wait_count(const struct h_daemon *d, int want, int timeout_ms, ...)
{
	const char *needles[MAX_NEEDLES];
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t n;
	va_list ap;

	va_start(ap, timeout_ms);
	n = collect_needles(ap, needles);
	va_end(ap);
	for (;;) {
		char *text = slurp(d->log_path, NULL);
		int c = text != NULL ? match_lines(text, needles, n, NULL, 0) :
		    0;

		free(text);
		if (c >= want || left_ms(deadline) == 0)
			return c;
		sleep_ms(POLL_SLICE_MS);
	}
}

char *
h_log_tail(const struct h_daemon *d, char *buf, size_t len)
{
	size_t n = 0;
	char *text = slurp(d->log_path, &n);

	if (len == 0)
		return buf;
	if (text == NULL) {
		snprintf(buf, len, "(no log)");
		return buf;
	}
	snprintf(buf, len, "%s", n >= len ? text + n - (len - 1) : text);
	free(text);
	return buf;
}

pid_t
h_log_line_pid(const char *line)
{
	long pid;

	if (sscanf(line, "tls-echod[%ld]", &pid) != 1 || pid <= 0)
		return -1;
	return (pid_t)pid;
}

/* --- sockets -------------------------------------------------------------------- */

static int
tcp_connect(int port, int timeout_ms, int sndbuf, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd, e = 0;
	socklen_t elen = sizeof(e);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (sndbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
		    sizeof(sndbuf));
	if (rcvbuf > 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	if (wait_fd(fd, POLLOUT, h_now_ms() + timeout_ms) != 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0 || e != 0) {
		errno = e ? e : errno;
		goto fail;
	}
	return fd;

fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

int
h_tcp_connect(int port, int timeout_ms)
{
	return tcp_connect(port, timeout_ms, 0, 0);
}

char *
h_peer_tag(int fd, char *buf, size_t len)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char a[INET_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0 ||
	    sa.sin_family != AF_INET ||
	    inet_ntop(AF_INET, &sa.sin_addr, a, sizeof(a)) == NULL)
		snprintf(buf, len, "PEER_ADDR=unknown ");
	else
		snprintf(buf, len, "PEER_ADDR=%s:%u ", a,
		    (unsigned)ntohs(sa.sin_port));
	return buf;
}

static int
local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
		return -1;
	return ntohs(sa.sin_port);
}

int
h_fd_write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	const unsigned char *p = buf;
	size_t off = 0;

	while (off < len) {
		/* write(), not send(): pipes too (h_setup ignores SIGPIPE). */
		ssize_t n = write(fd, p + off, len - off);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (wait_fd(fd, POLLOUT, deadline) != 0)
			return -1;
	}
	return 0;
}

int
h_fd_wait_closed(int fd, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	char buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0)
			return 0;
		if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
			return 0;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return 0;
		if (n > 0)
			continue;
		if (wait_fd(fd, POLLIN, deadline) != 0)
			return -1;
	}
}

size_t
h_fd_read_until(int fd, char *buf, size_t len, const char *needle,
    int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t off = 0;

	if (len == 0)
		return 0;
	buf[0] = '\0';
	while (off + 1 < len) {
		ssize_t n;

		if (needle != NULL && strstr(buf, needle) != NULL)
			break;
		n = read(fd, buf + off, len - 1 - off);
		if (n > 0) {
			off += (size_t)n;
			buf[off] = '\0';
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
		if (wait_fd(fd, POLLIN, deadline) != 0)
			break;
	}
	return off;
}

bool
h_fd_is_open(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;
	ssize_t n;

	if (poll(&p, 1, 0) < 0)
		return false;
	if (p.revents & (POLLERR | POLLHUP | POLLRDHUP))
		return false;
	if (!(p.revents & POLLIN))
		return true;
	n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return false;
	return n > 0 || errno == EAGAIN || errno == EINTR;
}

/* --- OpenSSL client -------------------------------------------------------------- */

/* "${what}: <OpenSSL's error queue, errno, verify result>" into c->err. */
static void
tls_fail(struct h_tls *c, const char *what, int ret, int sslerr, int err_no)
{
	char q[600] = "";
	size_t off = 0;
	unsigned long e;

	while ((e = ERR_get_error()) != 0 && off + 2 < sizeof(q)) {
		if (off > 0)
			q[off++] = ';';
		ERR_error_string_n(e, q + off, sizeof(q) - off);
		off += strlen(q + off);
	}
	snprintf(c->err, sizeof(c->err), "%s: ret %d, SSL_get_error %d%s%s, "
	    "errno %d (%s)%s%s", what, ret, sslerr, q[0] ? ": " : "", q,
	    err_no, err_no ? strerror(err_no) : "-",
	    c->ssl != NULL && SSL_get_verify_result(c->ssl) != X509_V_OK ?
	    ", server verify: " : "",
	    c->ssl != NULL && SSL_get_verify_result(c->ssl) != X509_V_OK ?
	    X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)) : "");
}

static SSL_CTX *
make_ctx(const struct h_tls_opts *o, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *step = "SSL_CTX_new";
	char ca[PATH_MAX];

	if (ctx == NULL)
		goto fail;
	if (o->set_security_level)
		SSL_CTX_set_security_level(ctx, o->security_level);
	step = "protocol versions";
	if ((o->min_version != 0 &&
	    !SSL_CTX_set_min_proto_version(ctx, o->min_version)) ||
	    (o->max_version != 0 &&
	    !SSL_CTX_set_max_proto_version(ctx, o->max_version)))
		goto fail;
	step = "cipher list";
	if (o->cipher_list != NULL &&
	    !SSL_CTX_set_cipher_list(ctx, o->cipher_list))
		goto fail;
	if (o->set_security_level) /* "@SECLEVEL=" in the list overrides */
		SSL_CTX_set_security_level(ctx, o->security_level);
	step = "TLS 1.3 ciphersuites";
	if (o->ciphersuites != NULL &&
	    !SSL_CTX_set_ciphersuites(ctx, o->ciphersuites))
		goto fail;
	step = "CA file";
	/* Not h_pki(): its ring may hold the caller's ${o} strings. */
	snprintf(ca, sizeof(ca), "%s/ca.crt", env("TEST_PKI"));
	if (!SSL_CTX_load_verify_locations(ctx, o->ca != NULL ? o->ca : ca,
	    NULL))
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (o->ssl_options != 0)
		SSL_CTX_set_options(ctx, o->ssl_options);
	step = "client certificate or key";
	if (o->cert != NULL &&
	    (!SSL_CTX_use_certificate_chain_file(ctx, o->cert) ||
	    !SSL_CTX_use_PrivateKey_file(ctx, o->key != NULL ? o->key :
	    o->cert, SSL_FILETYPE_PEM) || !SSL_CTX_check_private_key(ctx)))
		goto fail;
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;

fail:
	snprintf(err, errlen, "client set-up (%s): %s", step,
	    ERR_error_string(ERR_get_error(), NULL));
	SSL_CTX_free(ctx);
	return NULL;
}

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

int
h_tls_connect(struct h_tls *c, int port, const struct h_tls_opts *o)
{
	int timeout = o->timeout_ms > 0 ? o->timeout_ms : 5000;
	int64_t deadline = h_now_ms() + timeout;
	char sni[] = "localhost"; /* the macro casts away const */

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	ERR_clear_error();
	/*
	 * One thread at a time: OpenSSL 3.0's PEM decoders, loading keys in
	 * several threads at once, now and then fail with "DECODER routines::
	 * unsupported" (seen in check_hostile's soak with 4 client threads).
	 */
	pthread_mutex_lock(&ctx_lock);
	c->ctx = make_ctx(o, c->err, sizeof(c->err));
	pthread_mutex_unlock(&ctx_lock);
	if (c->ctx == NULL)
		return -1;
	c->fd = tcp_connect(port, timeout, o->sndbuf, o->rcvbuf);
	if (c->fd < 0) {
		snprintf(c->err, sizeof(c->err), "TCP connect to 127.0.0.1:%d: "
		    "%s", port, strerror(errno));
		return -1;
	}
	c->local_port = local_port(c->fd);
	h_peer_tag(c->fd, c->peer_tag, sizeof(c->peer_tag));
	if ((c->ssl = SSL_new(c->ctx)) == NULL || !SSL_set_fd(c->ssl, c->fd) ||
	    !SSL_set_tlsext_host_name(c->ssl, sni) ||
	    !SSL_set1_host(c->ssl, "localhost") ||
	    (o->session != NULL && !SSL_set_session(c->ssl, o->session))) {
		tls_fail(c, "SSL set-up", 0, 0, 0);
		return -1;
	}
	SSL_set_connect_state(c->ssl);
	for (;;) {
		int r, e;

		ERR_clear_error();
		errno = 0;
		r = SSL_connect(c->ssl);
		if (r == 1)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, "handshake", r, e, errno);
			return -1;
		}
		if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		    deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "handshake: no "
			    "progress within %d ms", timeout);
			return -1;
		}
	}
}

SSL_SESSION *
h_tls_session(struct h_tls *c)
{
	return c->ssl != NULL ? SSL_get1_session(c->ssl) : NULL;
}

bool
h_tls_reused(const struct h_tls *c)
{
	return c->ssl != NULL && SSL_session_reused(c->ssl) == 1;
}

void
h_tls_close(struct h_tls *c)
{
	if (c->ssl != NULL) {
		/* One non-blocking try: queue close_notify if the socket takes it. */
		ERR_clear_error();
		if (SSL_is_init_finished(c->ssl))
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	ERR_clear_error();
}

/* Wait as SSL error ${e} asks; -1 for other errors or at the deadline. */
static int
tls_wait(struct h_tls *c, int e, int64_t deadline)
{
	if (e == SSL_ERROR_WANT_READ)
		return wait_fd(c->fd, POLLIN, deadline);
	if (e == SSL_ERROR_WANT_WRITE)
		return wait_fd(c->fd, POLLOUT, deadline);
	return -1;
}

static int
chunk(size_t n)
{
	return n > TLS_CHUNK ? TLS_CHUNK : (int)n;
}

int
h_tls_write_all(struct h_tls *c, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	const unsigned char *p = buf;
	size_t off = 0;

	while (off < len) {
		int n, e;

		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, p + off, chunk(len - off));
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, "write", n, e, errno);
			return -1;
		}
		if (tls_wait(c, e, deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "write: timeout after "
			    "%zu of %zu bytes", off, len);
			return -1;
		}
	}
	return 0;
}

int
h_tls_read_exact(struct h_tls *c, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	unsigned char *p = buf;
	size_t off = 0;

	while (off < len) {
		int n, e;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, p + off, chunk(len - off));
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN) {
			snprintf(c->err, sizeof(c->err), "read: close_notify "
			    "after %zu of %zu bytes", off, len);
			return -1;
		}
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, "read", n, e, errno);
			return -1;
		}
		if (tls_wait(c, e, deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "read: timeout after "
			    "%zu of %zu bytes", off, len);
			return -1;
		}
	}
	return 0;
}

int
h_tls_roundtrip(struct h_tls *c, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	unsigned char *back = malloc(len ? len : 1);
	size_t d;
	int ret = -1;

	if (back == NULL) {
		snprintf(c->err, sizeof(c->err), "out of memory");
		return -1;
	}
	if (h_tls_write_all(c, buf, len, timeout_ms) != 0 ||
	    h_tls_read_exact(c, back, len, left_ms(deadline) + 1) != 0)
		goto out;
	d = h_first_diff(buf, back, len);
	if (d != len) {
		snprintf(c->err, sizeof(c->err), "echo differs at byte %zu of "
		    "%zu", d, len);
		goto out;
	}
	ret = 0;
out:
	free(back);
	return ret;
}

int
h_tls_pump(struct h_tls *c, const unsigned char *data, size_t len,
    size_t *woff, unsigned char *out, size_t *roff, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	while (*roff < len) {
		short ev = 0;
		bool moved = false;
		int n, e;

		if (*woff < len) {
			ERR_clear_error();
			errno = 0;
			n = SSL_write(c->ssl, data + *woff, chunk(len - *woff));
			if (n > 0) {
				*woff += (size_t)n;
				moved = true;
			} else {
				e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_READ)
					ev |= POLLIN;
				else if (e == SSL_ERROR_WANT_WRITE)
					ev |= POLLOUT;
				else {
					tls_fail(c, "pump write", n, e, errno);
					return -1;
				}
			}
		}
		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, out + *roff, chunk(len - *roff));
		if (n > 0) {
			*roff += (size_t)n;
			moved = true;
		} else {
			e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ)
				ev |= POLLIN;
			else if (e == SSL_ERROR_WANT_WRITE)
				ev |= POLLOUT;
			else {
				tls_fail(c, e == SSL_ERROR_ZERO_RETURN ?
				    "pump read: close_notify" : "pump read", n,
				    e, errno);
				return -1;
			}
		}
		if (moved)
			continue;
		if (wait_fd(c->fd, ev, deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "pump: timeout after "
			    "%d ms with %zu written, %zu read of %zu",
			    timeout_ms, *woff, *roff, len);
			return -1;
		}
	}
	return 0;
}

int
h_tls_write_until_blocked(struct h_tls *c, const unsigned char *data,
    size_t len, size_t *woff, int stall_ms, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int64_t last = h_now_ms();

	while (*woff < len) {
		int n, e;
		int64_t until;

		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, data + *woff, chunk(len - *woff));
		if (n > 0) {
			*woff += (size_t)n;
			last = h_now_ms();
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, "write", n, e, errno);
			return -1;
		}
		if (h_now_ms() - last >= stall_ms)
			return 0;
		if (left_ms(deadline) == 0) {
			snprintf(c->err, sizeof(c->err), "writes still moving "
			    "after %d ms (%zu bytes)", timeout_ms, *woff);
			return -1;
		}
		until = last + stall_ms < deadline ? last + stall_ms : deadline;
		(void)wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		    until);
	}
	return 1;
}

int
h_tls_refused(struct h_tls *c, int timeout_ms)
{
	static const char probe[] = "refusal probe\n";
	int64_t deadline = h_now_ms() + timeout_ms;
	size_t off = 0;
	char buf[64];

	while (off < sizeof(probe) - 1) {
		int n, e;

		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, probe + off, (int)(sizeof(probe) - 1 -
		    off));
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, "write after handshake", n, e, errno);
			return 1;
		}
		if (tls_wait(c, e, deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "write after "
			    "handshake: timeout");
			return -1;
		}
	}
	for (;;) {
		int n, e;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n > 0) {
			snprintf(c->err, sizeof(c->err), "the server echoed "
			    "%d byte(s)", n);
			return 0;
		}
		e = SSL_get_error(c->ssl, n);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, e == SSL_ERROR_ZERO_RETURN ?
			    "read after handshake: close_notify" :
			    "read after handshake", n, e, errno);
			return 1;
		}
		if (tls_wait(c, e, deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "no echo and no "
			    "refusal within %d ms", timeout_ms);
			return -1;
		}
	}
}

int
h_tls_wait_eof(struct h_tls *c, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	char buf[256];

	for (;;) {
		int n, e;
		unsigned long q;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n > 0) {
			snprintf(c->err, sizeof(c->err), "got %d byte(s) of "
			    "data instead of the end", n);
			return 1;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (e == SSL_ERROR_SYSCALL) {
			snprintf(c->err, sizeof(c->err), "EOF without "
			    "close_notify (errno %d)", errno);
			return 2;
		}
		q = ERR_peek_error();
		if (e == SSL_ERROR_SSL && ERR_GET_REASON(q) ==
		    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			snprintf(c->err, sizeof(c->err), "EOF without "
			    "close_notify");
			return 2;
		}
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, "waiting for the end", n, e, errno);
			return -1;
		}
		if (tls_wait(c, e, deadline) != 0) {
			snprintf(c->err, sizeof(c->err), "session still open "
			    "after %d ms", timeout_ms);
			return -1;
		}
	}
}

const char *
h_tls_version(const struct h_tls *c)
{
	return c->ssl != NULL ? SSL_get_version(c->ssl) : "none";
}

size_t
h_client_hello(unsigned char *buf, size_t len, const struct h_tls_opts *o)
{
	char err[256];
	SSL_CTX *ctx = make_ctx(o, err, sizeof(err));
	char sni[] = "localhost"; /* the macro casts away const */
	SSL *ssl = NULL;
	BIO *rb, *wb;
	int n = 0;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
		goto out;
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	if (rb == NULL || wb == NULL) {
		BIO_free(rb);
		BIO_free(wb);
		goto out;
	}
	SSL_set_bio(ssl, rb, wb); /* ssl owns both BIOs now */
	(void)SSL_set_tlsext_host_name(ssl, sni);
	SSL_set_connect_state(ssl);
	(void)SSL_do_handshake(ssl); /* wants to read the ServerHello */
	n = BIO_read(wb, buf, len > INT_MAX ? INT_MAX : (int)len);
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return n > 0 ? (size_t)n : 0;
}

/* --- data ---------------------------------------------------------------------- */

void
h_fill_pattern(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL | 1;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i % 8 == 0) {
			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
		}
		buf[i] = (unsigned char)((x * 0x2545f4914f6cdd1dULL) >>
		    (8 * (i % 8)));
	}
}

size_t
h_first_diff(const unsigned char *a, const unsigned char *b, size_t len)
{
	size_t i;

	if (memcmp(a, b, len) == 0)
		return len;
	for (i = 0; i < len && a[i] == b[i]; i++)
		;
	return i;
}

/* --- shared by the integration suites ------------------------------------ */

struct h_tls_opts
h_client_opts(const char *name, int version)
{
	struct h_tls_opts o;
	char f[96];

	memset(&o, 0, sizeof(o));
	if (name != NULL) {
		snprintf(f, sizeof(f), "%s.crt", name);
		o.cert = h_pki(f);
		snprintf(f, sizeof(f), "%s.key", name);
		o.key = h_pki(f);
	}
	o.min_version = o.max_version = version;
	return o;
}

int
h_daemon_up(struct h_daemon *d, const char *label, const char *globals,
    const char *listener_extra)
{
	struct h_daemon_opts o = {
		.label = label,
		.globals = globals,
		.listener_extra = listener_extra,
		.activation = true,
	};

	return h_daemon_start(d, &o);
}

int
h_daemon_down(struct h_daemon *d, char *why, size_t len)
{
	char tail[1200];
	int st = h_daemon_stop(d, 10000);

	if (st != 0)
		snprintf(why, len, "daemon exit status %d after SIGTERM (%s); "
		    "log ends:\n%s", st, d->err, h_log_tail(d, tail,
		    sizeof(tail)));
	h_daemon_kill(d);
	return st == 0 ? 0 : -1;
}

int
h_proc_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}
