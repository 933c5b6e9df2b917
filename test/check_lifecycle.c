/*
 * check_lifecycle: the daemon's life cycle, driven from outside.
 *
 * Reloads (SIGHUP) under live traffic, certificate swaps, broken
 * configurations, listener changes, lingering and draining generations,
 * worker supervision, master death, the sd_notify protocol and watchdog,
 * SIGUSR1 status dumps, privilege drop, and the systemd pieces for real:
 * systemd-socket-activate, systemd-analyze on the units, and a private
 * systemd-journald (test/with-journald.sh) read back with journalctl.
 *
 * Each test starts its own daemon with its own log (test/harness.c).  The
 * harness keeps only the first H_NOTIFY_MAX notify datagrams, so a test that
 * reloads reads the notify socket itself (struct nlog below): every datagram
 * with its sender pid and arrival time, without limit.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "harness.h"

#define IO_MS 5000    /* bound for one client operation */
#define LOG_MS 5000   /* bound for a log line to appear */
#define READY_MS 5000 /* bound for READY=1 after a SIGHUP */
#define EXIT_MS 10000 /* bound for the daemon to exit after SIGTERM */
#define DIR_MAX 1024  /* our directories under TEST_TMPDIR */

#define ID_CLOSE "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c06"
#define ID_REFUSED "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c07"

/*
 * Everything a test starts stays in its process group (no setsid/setpgid):
 * Check kills that group after each test, passed, failed or timed out, so a
 * failed test leaves no journald or daemon behind.
 */
static void
fx_setup(void)
{
	h_setup();
}

static void
fx_teardown(void)
{
	h_teardown();
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
	    .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------------- */
/* the notify socket, read without limit                                     */
/* ------------------------------------------------------------------------- */

struct nmsg {
	char text[512];
	pid_t pid;     /* SCM_CREDENTIALS sender */
	int64_t at_ms; /* when we received it (CLOCK_MONOTONIC) */
};

struct nlog {
	const struct h_daemon *d; /* its notify_fd, or NULL: use fd */
	int fd;
	int imported; /* d->notify entries copied so far */
	struct nmsg *v;
	size_t n, cap;
};

static void
nl_add(struct nlog *nl, const char *text, pid_t pid, int64_t at)
{
	if (nl->n == nl->cap) {
		size_t cap = nl->cap ? nl->cap * 2 : 64;
		struct nmsg *v = realloc(nl->v, cap * sizeof(*v));

		ck_assert_msg(v != NULL, "out of memory");
		nl->v = v;
		nl->cap = cap;
	}
	snprintf(nl->v[nl->n].text, sizeof(nl->v[nl->n].text), "%s", text);
	nl->v[nl->n].pid = pid;
	nl->v[nl->n].at_ms = at;
	nl->n++;
}

/* Read from ${d}'s notify socket (what the harness got first included). */
static void
nl_init(struct nlog *nl, const struct h_daemon *d, int fd)
{
	memset(nl, 0, sizeof(*nl));
	nl->d = d;
	nl->fd = fd;
}

static void
nl_free(struct nlog *nl)
{
	free(nl->v);
	memset(nl, 0, sizeof(*nl));
}

/* Take every queued datagram. */
static void
nl_pump(struct nlog *nl)
{
	int fd = nl->d != NULL ? nl->d->notify_fd : nl->fd;

	for (; nl->d != NULL && nl->imported < nl->d->nnotify; nl->imported++)
		nl_add(nl, nl->d->notify[nl->imported].text,
		    nl->d->notify[nl->imported].pid, h_now_ms());
	while (fd >= 0) {
		char text[512];
		pid_t pid;

		if (h_notify_recv(fd, text, sizeof(text), &pid) != 0)
			return;
		nl_add(nl, text, pid, h_now_ms());
	}
}

/* Index of the first message at or after ${from} holding ${a} and ${b}. */
static int
nl_find(const struct nlog *nl, size_t from, const char *a, const char *b)
{
	size_t i;

	for (i = from; i < nl->n; i++)
		if (strstr(nl->v[i].text, a) != NULL &&
		    (b == NULL || strstr(nl->v[i].text, b) != NULL))
			return (int)i;
	return -1;
}

/* nl_find, waiting up to ${timeout_ms} for it; -1 on timeout. */
static int
nl_wait(struct nlog *nl, size_t from, const char *a, const char *b,
    int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int i;

	for (;;) {
		int fd = nl->d != NULL ? nl->d->notify_fd : nl->fd;
		int64_t left;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		nl_pump(nl);
		if ((i = nl_find(nl, from, a, b)) >= 0)
			return i;
		left = deadline - h_now_ms();
		if (left <= 0 || fd < 0)
			return -1;
		(void)poll(&p, 1, left > 50 ? 50 : (int)left);
	}
}

/* All messages from ${from} on, one per line, for failure messages. */
static const char *
nl_dump(const struct nlog *nl, size_t from, char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = from; i < nl->n && off + 1 < len; i++) {
		int w = snprintf(buf + off, len - off, "[%zu pid %ld] %s\n", i,
		    (long)nl->v[i].pid, nl->v[i].text);

		if (w < 0)
			break;
		off += (size_t)w;
	}
	return buf;
}

/* ------------------------------------------------------------------------- */
/* daemon helpers                                                            */
/* ------------------------------------------------------------------------- */

/*
 * The configuration the harness writes by default, as a template: log to
 * stderr, ${globals}, one echo listener "echo" on 127.0.0.1:@PORT@ with
 * certificate ${cert} and key ${key} (NULL: the PKI's server.crt/.key).
 * Line 1 is the log setting, line 2 ${globals}.
 */
static char *
conf_echo(char *buf, size_t len, const char *globals, const char *cert,
    const char *key)
{
	snprintf(buf, len,
	    "log = \"stderr\";\n"
	    "%s\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"echo\";\n"
	    "    listen = \"127.0.0.1:@PORT@\";\n"
	    "    mode = \"echo\";\n"
	    "    tls = {\n"
	    "      cert = \"%s\";\n"
	    "      key = \"%s\";\n"
	    "      ca = \"@PKI@/ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", globals, cert != NULL ? cert : "@PKI@/server.crt",
	    key != NULL ? key : "@PKI@/server.key");
	return buf;
}

/* Line number (1-based) of the first line of ${text} holding ${needle}. */
static int
line_of(const char *text, const char *needle)
{
	const char *p = strstr(text, needle), *q;
	int line = 1;

	ck_assert_msg(p != NULL, "\"%s\" not in the configuration", needle);
	for (q = text; q < p; q++)
		line += *q == '\n';
	return line;
}

/* ${s} with @PORT@ and @PKI@ replaced, into ${out}. */
static void
expand(const struct h_daemon *d, const char *s, char *out, size_t len)
{
	const char *pki = getenv("TEST_PKI");
	size_t off = 0;

	while (*s != '\0' && off + 1 < len) {
		if (strncmp(s, "@PORT@", 6) == 0) {
			off += (size_t)snprintf(out + off, len - off, "%d",
			    d->port);
			s += 6;
		} else if (strncmp(s, "@PKI@", 5) == 0) {
			off += (size_t)snprintf(out + off, len - off, "%s",
			    pki);
			s += 5;
		} else
			out[off++] = *s++;
	}
	ck_assert_msg(off + 1 < len, "configuration too long");
	out[off] = '\0';
}

/* Write ${text} to ${path} through a rename, as an operator's editor would. */
static void
write_file_atomic(const char *path, const char *text, mode_t mode)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "we");
	ck_assert_msg(f != NULL, "%s: %s", tmp, strerror(errno));
	ck_assert(fputs(text, f) >= 0);
	ck_assert(fclose(f) == 0);
	ck_assert(chmod(tmp, mode) == 0);
	ck_assert_msg(rename(tmp, path) == 0, "rename %s: %s", path,
	    strerror(errno));
}

/* Replace the daemon's configuration file with template ${tmpl}. */
static void
conf_rewrite(const struct h_daemon *d, const char *tmpl)
{
	char text[8192];

	expand(d, tmpl, text, sizeof(text));
	write_file_atomic(d->conf_path, text, 0644);
}

/* Start a daemon with ${o}, read its notify socket into ${nl}. */
static void
up(struct h_daemon *d, struct nlog *nl, const struct h_daemon_opts *o)
{
	ck_assert_msg(h_daemon_start(d, o) == 0, "daemon did not start: %s",
	    d->err);
	nl_init(nl, d, -1);
	ck_assert(nl_wait(nl, 0, "READY=1", NULL, 0) >= 0);
}

/* Socket-activated daemon with the default configuration and ${globals}. */
static void
up_simple(struct h_daemon *d, struct nlog *nl, const char *label,
    const char *globals)
{
	struct h_daemon_opts o = {
		.label = label,
		.globals = globals,
		.activation = true,
	};

	up(d, nl, &o);
}

/*
 * SIGHUP, then the READY=1 whose STATUS names generation ${gen}, from the
 * master; returns its index in ${nl}.
 */
static int
reload_ok(struct h_daemon *d, struct nlog *nl, unsigned gen)
{
	char want[64], dump[2000], tail[1500];
	size_t from;
	int i;

	nl_pump(nl);
	from = nl->n;
	ck_assert_msg(h_daemon_signal(d, SIGHUP) == 0, "SIGHUP: %s",
	    strerror(errno));
	snprintf(want, sizeof(want), "STATUS=generation %u:", gen);
	i = nl_wait(nl, from, "READY=1", want, READY_MS);
	ck_assert_msg(i >= 0, "no READY=1 with \"%s\" within %d ms of SIGHUP; "
	    "notify:\n%s\nlog ends:\n%s", want, READY_MS,
	    nl_dump(nl, from, dump, sizeof(dump)),
	    h_log_tail(d, tail, sizeof(tail)));
	ck_assert_msg(nl->v[i].pid == d->pid, "READY=1 from pid %ld, not the "
	    "master %ld", (long)nl->v[i].pid, (long)d->pid);
	return i;
}

/* Wait until ${n} workers of generation ${gen} said they are retired. */
static void
expect_retired(const struct h_daemon *d, unsigned gen, int n)
{
	char needle[80], tail[1500];
	int got;

	snprintf(needle, sizeof(needle), "(generation %u) stopping (retired "
	    "by reload", gen);
	got = h_log_wait_count(d, n, LOG_MS, needle, NULL);
	ck_assert_msg(got >= n, "%d of %d workers logged \"%s\"; log ends:\n%s",
	    got, n, needle, h_log_tail(d, tail, sizeof(tail)));
}

/* Wait until the master has exactly ${want} children; returns the count. */
static int
children_settle(const struct h_daemon *d, int want, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	pid_t kids[256];
	int n;

	for (;;) {
		n = h_children_of(d->pid, kids, 256);
		if (n == want || h_now_ms() >= deadline)
			return n;
		sleep_ms(10);
	}
}

static void
expect_children(const struct h_daemon *d, int want, int timeout_ms,
    const char *when)
{
	char tail[1500];
	int n = children_settle(d, want, timeout_ms);

	ck_assert_msg(n == want, "%s: the master has %d children, want %d "
	    "(waited %d ms); log ends:\n%s", when, n, want, timeout_ms,
	    h_log_tail(d, tail, sizeof(tail)));
}

/* Zombie children of ${pid} right now (stored in ${z}). */
static int
zombies_of(pid_t pid, pid_t *z, int max)
{
	pid_t kids[256];
	int n = h_children_of(pid, kids, 256), i, nz = 0;

	for (i = 0; i < n && i < 256; i++) {
		char st = '?';

		if (h_proc_ppid(kids[i], &st) == pid && st == 'Z') {
			if (nz < max)
				z[nz] = kids[i];
			nz++;
		}
	}
	return nz;
}

/* Entries in /proc/${pid}/fd, or -1; their targets into ${list}. */
static int
fd_count(pid_t pid, char *list, size_t len)
{
	char path[64];
	DIR *dir;
	struct dirent *e;
	int n = 0;
	size_t off = 0;

	if (list != NULL && len > 0)
		list[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL) {
		char lp[PATH_MAX], target[256];
		ssize_t t;

		if (e->d_name[0] == '.')
			continue;
		n++;
		if (list == NULL || off + 1 >= len)
			continue;
		snprintf(lp, sizeof(lp), "%s/%s", path, e->d_name);
		t = readlink(lp, target, sizeof(target) - 1);
		target[t < 0 ? 0 : t] = '\0';
		off += (size_t)snprintf(list + off, len - off, "%s->%s ",
		    e->d_name, target);
		if (off >= len)
			off = len - 1;
	}
	closedir(dir);
	return n;
}

/* The four ids of the "Uid:" or "Gid:" line of /proc/${pid}/status. */
static int
proc_ids(pid_t pid, const char *key, long ids[4])
{
	char path[64], line[256];
	size_t klen = strlen(key);
	FILE *f;
	int ret = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, klen) == 0 && sscanf(line + klen,
		    "%ld %ld %ld %ld", &ids[0], &ids[1], &ids[2], &ids[3]) ==
		    4) {
			ret = 0;
			break;
		}
	fclose(f);
	return ret;
}

/* The "Groups:" line of /proc/${pid}/status, without the key. */
static int
proc_groups(pid_t pid, char *out, size_t len)
{
	char path[64], line[256];
	FILE *f;
	int ret = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Groups:", 7) == 0) {
			char *p = line + 7;

			p += strspn(p, " \t");
			p[strcspn(p, " \t\n")] = '\0';
			snprintf(out, len, "%s", p);
			ret = 0;
			break;
		}
	fclose(f);
	return ret;
}

/* Inode of the socket listening on 127.0.0.1:${port}, or 0. */
static unsigned long
listen_inode(int port)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[512];
	unsigned long ino = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned addr, lport, st;
		unsigned long inode;

		if (sscanf(line, " %*d: %8X:%4X %*8X:%*4X %2X %*s %*s %*s %*d "
		    "%*d %lu", &addr, &lport, &st, &inode) != 4)
			continue;
		if (st == 0x0A && lport == (unsigned)port &&
		    addr == htonl(INADDR_LOOPBACK)) {
			ino = inode;
			break;
		}
	}
	fclose(f);
	return ino;
}

/* Copy file ${from} to ${to} with ${mode}. */
static void
copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[8192];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	ck_assert_msg(in >= 0, "%s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ck_assert_msg(out >= 0, "%s: %s", to, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert(write(out, buf, (size_t)n) == n);
	ck_assert(n == 0);
	close(in);
	ck_assert(fchmod(out, mode) == 0);
	ck_assert(close(out) == 0);
}

/* The whole file (free it), or NULL. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;
	FILE *m;
	char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	if ((m = open_memstream(&buf, &len)) == NULL) {
		fclose(f);
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	return buf;
}

/* A fresh directory ${name} under TEST_TMPDIR (mode 0755); its path. */
static const char *
tmp_dir(const char *name, char *out, size_t len)
{
	char cmd[PATH_MAX + 32];
	char err[256];
	const char *rm[] = { "rm", "-rf", cmd, NULL };

	snprintf(out, len, "%s/%s-%ld", getenv("TEST_TMPDIR"), name,
	    (long)getpid());
	snprintf(cmd, sizeof(cmd), "%s", out);
	(void)h_run(rm, "/dev/null", 5000, err, sizeof(err));
	ck_assert_msg(mkdir(out, 0755) == 0, "mkdir %s: %s", out,
	    strerror(errno));
	ck_assert(chmod(out, 0755) == 0);
	return out;
}

/* The source tree: where test/with-journald.sh and systemd/ are. */
static const char *
src_root(void)
{
	static char root[PATH_MAX];
	char exe[PATH_MAX], probe[PATH_MAX + 64];
	const char *e = getenv("TEST_SRCDIR");
	ssize_t n;
	int up;

	if (root[0] != '\0')
		return root;
	if (e != NULL && e[0] != '\0') {
		snprintf(root, sizeof(root), "%s", e);
		return root;
	}
	/* The test binary lives in <root>/<builddir...>/test/. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		for (up = 0; up < 6; up++) {
			char *slash = strrchr(exe, '/');

			if (slash == NULL || slash == exe)
				break;
			*slash = '\0';
			snprintf(probe, sizeof(probe), "%s/test/with-journald.sh",
			    exe);
			if (access(probe, R_OK) == 0) {
				snprintf(root, sizeof(root), "%s", exe);
				return root;
			}
		}
	}
	if (getcwd(root, sizeof(root)) == NULL)
		snprintf(root, sizeof(root), ".");
	return root;
}

/* ------------------------------------------------------------------------- */
/* clients                                                                   */
/* ------------------------------------------------------------------------- */

/* Client options with the PKI's client certificate (static storage). */
static const struct h_tls_opts *
cli(void)
{
	static char cert[PATH_MAX], key[PATH_MAX];
	static struct h_tls_opts o;

	if (cert[0] == '\0') {
		snprintf(cert, sizeof(cert), "%s", h_pki("client.crt"));
		snprintf(key, sizeof(key), "%s", h_pki("client.key"));
	}
	memset(&o, 0, sizeof(o));
	o.cert = cert;
	o.key = key;
	o.timeout_ms = IO_MS;
	return &o;
}

static void
connect_to(struct h_tls *c, const struct h_daemon *d, int port,
    const char *what)
{
	char tail[1500];

	ck_assert_msg(h_tls_connect(c, port, cli()) == 0, "%s: TLS connect to "
	    "port %d: %s; daemon log ends:\n%s", what, port, c->err,
	    h_log_tail(d, tail, sizeof(tail)));
}

/* One round-trip on ${c}; true if the echo came back intact. */
static bool
roundtrip(struct h_tls *c, const char *what)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "round-trip %s on %s\n", what, c->peer_tag);
	return h_tls_roundtrip(c, msg, strlen(msg), IO_MS) == 0;
}

#define ROUNDTRIP_OK(d, c, ...) do { \
	char what_[96], tail_[1500]; \
	snprintf(what_, sizeof(what_), __VA_ARGS__); \
	ck_assert_msg(roundtrip((c), what_), "echo failed (%s) on %s: %s; " \
	    "log ends:\n%s", what_, (c)->peer_tag, (c)->err, \
	    h_log_tail((d), tail_, sizeof(tail_))); \
} while (0)

/* A TCP connect to ${port} is refused (within ${timeout_ms}, retrying). */
static bool
refused_within(int port, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		int fd = h_tcp_connect(port, 1000), e = errno;

		if (fd >= 0)
			close(fd);
		else if (e == ECONNREFUSED)
			return true;
		if (h_now_ms() >= deadline)
			return false;
		sleep_ms(20);
	}
}

/*
 * Clients that connect, handshake, do one round-trip and close, over and
 * over, each in its own thread, counting successes and failures.
 */
#define HAMMER_THREADS 4

struct hammer {
	int port;
	struct h_tls_opts o;
	char cert[PATH_MAX], key[PATH_MAX];
	atomic_bool stop;
	atomic_int ok, failed;
	char first_err[H_ERR_MAX]; /* by the thread whose failure was first */
	pthread_t th[HAMMER_THREADS];
};

static void *
hammer_run(void *arg)
{
	struct hammer *h = arg;
	int i = 0;

	while (!atomic_load(&h->stop)) {
		struct h_tls c;
		char msg[64];
		int r;

		snprintf(msg, sizeof(msg), "tight loop %d\n", i++);
		r = h_tls_connect(&c, h->port, &h->o);
		if (r == 0)
			r = h_tls_roundtrip(&c, msg, strlen(msg), IO_MS);
		if (r == 0)
			atomic_fetch_add(&h->ok, 1);
		else if (atomic_fetch_add(&h->failed, 1) == 0)
			snprintf(h->first_err, sizeof(h->first_err),
			    "%.900s", c.err);
		h_tls_close(&c);
	}
	return NULL;
}

static void
hammer_start(struct hammer *h, int port)
{
	int i;

	memset(h, 0, sizeof(*h));
	h->port = port;
	snprintf(h->cert, sizeof(h->cert), "%s", cli()->cert);
	snprintf(h->key, sizeof(h->key), "%s", cli()->key);
	h->o.cert = h->cert;
	h->o.key = h->key;
	h->o.timeout_ms = IO_MS;
	atomic_init(&h->stop, false);
	atomic_init(&h->ok, 0);
	atomic_init(&h->failed, 0);
	for (i = 0; i < HAMMER_THREADS; i++)
		ck_assert(pthread_create(&h->th[i], NULL, hammer_run, h) == 0);
}

/* Wait until the hammer has ${n} more successes than ${base}. */
static bool
hammer_progress(struct hammer *h, int base, int n, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	while (atomic_load(&h->ok) < base + n) {
		if (h_now_ms() >= deadline || atomic_load(&h->failed) > 0)
			return false;
		sleep_ms(2);
	}
	return true;
}

static void
hammer_stop(struct hammer *h)
{
	int i;

	atomic_store(&h->stop, true);
	for (i = 0; i < HAMMER_THREADS; i++)
		ck_assert(pthread_join(h->th[i], NULL) == 0);
}

/* SHA-256 fingerprint of ${x} as hex. */
static void
fingerprint(X509 *x, char *hex, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0, i;

	hex[0] = '\0';
	if (x == NULL || !X509_digest(x, EVP_sha256(), md, &n))
		return;
	for (i = 0; i < n && 2 * i + 2 < len; i++)
		snprintf(hex + 2 * i, len - 2 * i, "%02x", md[i]);
}

static void
file_fingerprint(const char *path, char *hex, size_t len)
{
	FILE *f = fopen(path, "re");
	X509 *x;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_msg(x != NULL, "%s: not a PEM certificate", path);
	fingerprint(x, hex, len);
	X509_free(x);
}

static void
peer_fingerprint(const struct h_tls *c, char *hex, size_t len)
{
	fingerprint(SSL_get0_peer_certificate(c->ssl), hex, len);
}

/* ------------------------------------------------------------------------- */
/* reload under traffic                                                      */
/* ------------------------------------------------------------------------- */

START_TEST(test_session_keeps_echoing_across_20_reloads)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls s;
	unsigned gen;
	char line[4096];

	up_simple(&d, &nl, "keep-session",
	    "workers = 2; drain_timeout = 30; shutdown_timeout = 1;");
	connect_to(&s, &d, d.port, "long-lived session");
	ROUNDTRIP_OK(&d, &s, "before any reload");
	for (gen = 2; gen <= 21; gen++) {
		(void)reload_ok(&d, &nl, gen);
		ROUNDTRIP_OK(&d, &s, "after reload to generation %u", gen);
		/* 2 new workers, plus the one retired worker with our session:
		 * idle retired workers exit at once. */
		expect_children(&d, 3, 3000, "after a reload");
	}
	H_LOG_EXPECT(&d, line, "reloaded: generation 21 serving",
	    "1 kept, 0 opened, 0 closed");
	/* Ending the session lets the last generation-1 worker go. */
	h_tls_close(&s);
	expect_children(&d, 2, 3000, "after the session closed");
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_client_in_tight_loop_sees_no_failure_during_20_reloads)
{
	struct h_daemon d;
	struct nlog nl;
	struct hammer h;
	unsigned gen;
	int before, made, failed;

	if (h_skip_under_valgrind(__func__,
	    "needs reloads faster than the client's timeouts"))
		return;
	up_simple(&d, &nl, "hammer", "workers = 2; drain_timeout = 5;");
	hammer_start(&h, d.port);
	ck_assert_msg(hammer_progress(&h, 0, 5, IO_MS), "the loop client "
	    "does not get going: %d ok, %d failed, %s", atomic_load(&h.ok),
	    atomic_load(&h.failed), h.first_err);
	before = atomic_load(&h.ok);
	for (gen = 2; gen <= 21; gen++) {
		int base = atomic_load(&h.ok);

		(void)reload_ok(&d, &nl, gen);
		/* Connections against each new generation before the next
		 * reload: every hand-over happens with connections in flight. */
		if (!hammer_progress(&h, base, 2 * HAMMER_THREADS, IO_MS))
			break;
	}
	hammer_stop(&h);
	made = atomic_load(&h.ok) + atomic_load(&h.failed);
	failed = atomic_load(&h.failed);
	printf("check_lifecycle: tight loop (%d threads): %d connections "
	    "during 20 reloads (%d in all), %d failed\n", HAMMER_THREADS,
	    atomic_load(&h.ok) - before, made, failed);
	fflush(stdout);
	ck_assert_msg(failed == 0, "%d of %d connections failed during "
	    "reloads; first: %s", failed, made, h.first_err);
	ck_assert_msg(gen == 22, "the loop client stalled after reload to "
	    "generation %u", gen);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* Generate a new server certificate for localhost, signed by the test CA. */
static void
new_server_cert(const char *dir, const char *crt, const char *key)
{
	char csr[PATH_MAX], ext[PATH_MAX], log[PATH_MAX], err[512];
	char ca[PATH_MAX], cakey[PATH_MAX], serial[40];
	FILE *f;

	snprintf(csr, sizeof(csr), "%s/new.csr", dir);
	snprintf(ext, sizeof(ext), "%s/new.ext", dir);
	snprintf(log, sizeof(log), "%s/openssl.log", dir);
	snprintf(ca, sizeof(ca), "%s", h_pki("ca.crt"));
	snprintf(cakey, sizeof(cakey), "%s", h_pki("ca.key"));
	snprintf(serial, sizeof(serial), "0x%lx%04x", (long)getpid(),
	    (unsigned)(h_now_ms() & 0xffff));
	f = fopen(ext, "we");
	ck_assert(f != NULL);
	fputs("basicConstraints = critical, CA:FALSE\n"
	    "keyUsage = critical, digitalSignature\n"
	    "extendedKeyUsage = serverAuth\n"
	    "subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1\n", f);
	ck_assert(fclose(f) == 0);
	{
		const char *genkey[] = { "openssl", "genpkey", "-algorithm",
		    "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key,
		    NULL };
		const char *req[] = { "openssl", "req", "-new", "-key", key,
		    "-subj", "/O=renewed/CN=localhost", "-out", csr, NULL };
		const char *sign[] = { "openssl", "x509", "-req", "-in", csr,
		    "-CA", ca, "-CAkey", cakey, "-set_serial", serial,
		    "-sha256", "-days", "2", "-extfile", ext, "-out", crt,
		    NULL };

		ck_assert_msg(h_run(genkey, log, 10000, err, sizeof(err)) == 0,
		    "openssl genpkey failed (%s), see %s", err, log);
		ck_assert_msg(h_run(req, log, 10000, err, sizeof(err)) == 0,
		    "openssl req failed (%s), see %s", err, log);
		ck_assert_msg(h_run(sign, log, 10000, err, sizeof(err)) == 0,
		    "openssl x509 -req failed (%s), see %s", err, log);
	}
}

START_TEST(test_certificate_swapped_on_disk_is_served_after_reload)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls old, fresh;
	char dir[DIR_MAX], crt[PATH_MAX], key[PATH_MAX], ncrt[PATH_MAX];
	char nkey[PATH_MAX], conf[12288], fp_old[80], fp_new[80], fp[80];
	char line[4096];
	struct h_daemon_opts o = { .label = "certswap", .activation = true };

	tmp_dir("certswap", dir, sizeof(dir));
	snprintf(crt, sizeof(crt), "%s/server.crt", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	snprintf(ncrt, sizeof(ncrt), "%s/new.crt", dir);
	snprintf(nkey, sizeof(nkey), "%s/new.key", dir);
	copy_file(h_pki("server.crt"), crt, 0644);
	copy_file(h_pki("server.key"), key, 0600);
	o.config = conf_echo(conf, sizeof(conf), "workers = 2; drain_timeout "
	    "= 30; shutdown_timeout = 1;", crt, key);
	up(&d, &nl, &o);

	connect_to(&old, &d, d.port, "session before the swap");
	ROUNDTRIP_OK(&d, &old, "before the swap");
	file_fingerprint(crt, fp_old, sizeof(fp_old));
	peer_fingerprint(&old, fp, sizeof(fp));
	ck_assert_str_eq(fp, fp_old);

	/* Renew as an operator would: new files, renamed into place. */
	new_server_cert(dir, ncrt, nkey);
	file_fingerprint(ncrt, fp_new, sizeof(fp_new));
	ck_assert_str_ne(fp_new, fp_old);
	ck_assert(rename(nkey, key) == 0);
	ck_assert(rename(ncrt, crt) == 0);

	/* Without a reload the old certificate stays in use. */
	connect_to(&fresh, &d, d.port, "connection before SIGHUP");
	peer_fingerprint(&fresh, fp, sizeof(fp));
	ck_assert_msg(strcmp(fp, fp_old) == 0, "the new certificate is "
	    "served before any reload");
	h_tls_close(&fresh);

	(void)reload_ok(&d, &nl, 2);
	connect_to(&fresh, &d, d.port, "connection after the reload");
	peer_fingerprint(&fresh, fp, sizeof(fp));
	ck_assert_msg(strcmp(fp, fp_new) == 0, "after the reload the server "
	    "presents certificate %s, want the renewed one %s (old %s)", fp,
	    fp_new, fp_old);
	ROUNDTRIP_OK(&d, &fresh, "with the renewed certificate");
	h_tls_close(&fresh);

	/* The session from before keeps its session and its certificate. */
	ROUNDTRIP_OK(&d, &old, "old session after the swap");
	peer_fingerprint(&old, fp, sizeof(fp));
	ck_assert_str_eq(fp, fp_old);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving");
	h_tls_close(&old);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/*
 * Broken configurations, one per stage of a reload: 0 syntax, 1 unknown
 * setting, 2 key that does not match the certificate, 3 a new listener on
 * a port that is taken.  The marker is on the line the error must name.
 */
static const char *const broken_what[] = {
	"syntax error", "unknown setting", "key does not match",
	"port in use",
};

START_TEST(test_broken_config_reload_keeps_serving_and_says_why)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls old, fresh;
	char good[4096], bad[4096], text[8192], globals[256];
	char want_file[PATH_MAX + 32], dump[3000], line[4096], tail[1500];
	const char *marker = NULL;
	int busy_fd = -1, busy_port = 0, fail_i, ready_i;
	size_t from, i;

	conf_echo(good, sizeof(good), "workers = 2; drain_timeout = 5;",
	    NULL, NULL);
	{
		struct h_daemon_opts o = { .label = "broken", .config = good,
		    .activation = true };

		up(&d, &nl, &o);
	}
	connect_to(&old, &d, d.port, "session before the broken reload");
	ROUNDTRIP_OK(&d, &old, "before");

	switch (_i) {
	case 0:
		conf_echo(bad, sizeof(bad), "workers = 2; drain_timeout = ;",
		    NULL, NULL);
		marker = "drain_timeout = ;";
		break;
	case 1:
		conf_echo(bad, sizeof(bad), "workers = 2; drain_timeout = 5; "
		    "bogus_setting = 1;", NULL, NULL);
		marker = "bogus_setting";
		break;
	case 2:
		conf_echo(bad, sizeof(bad), "workers = 2; drain_timeout = 5;",
		    NULL, "@PKI@/mismatch.key");
		marker = "mismatch.key";
		break;
	default: {
		/* The test holds the port: the new listener cannot bind. */
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		busy_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert(busy_fd >= 0);
		ck_assert(bind(busy_fd, (struct sockaddr *)&sa, sizeof(sa)) ==
		    0 && listen(busy_fd, 8) == 0 &&
		    getsockname(busy_fd, (struct sockaddr *)&sa, &sl) == 0);
		busy_port = ntohs(sa.sin_port);
		snprintf(globals, sizeof(globals), "workers = 2; "
		    "drain_timeout = 5;");
		snprintf(bad, sizeof(bad),
		    "log = \"stderr\";\n%s\n"
		    "listeners = (\n"
		    "  { name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
		    "    tls = { cert = \"@PKI@/server.crt\"; key = "
		    "\"@PKI@/server.key\"; ca = \"@PKI@/ca.crt\"; }; },\n"
		    "  { name = \"second\";\n"
		    "    listen = \"127.0.0.1:%d\";\n"
		    "    tls = { cert = \"@PKI@/server.crt\"; key = "
		    "\"@PKI@/server.key\"; ca = \"@PKI@/ca.crt\"; }; }\n"
		    ");\n", globals, busy_port);
		/* Socket errors name the listener's group (cfg_listener.line). */
		marker = "{ name = \"second\";";
		break;
	}
	}
	expand(&d, bad, text, sizeof(text));
	snprintf(want_file, sizeof(want_file), "%s:%d: ", d.conf_path,
	    line_of(text, marker));
	conf_rewrite(&d, bad);

	nl_pump(&nl);
	from = nl.n;
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	fail_i = nl_wait(&nl, from, "STATUS=reload failed, still serving "
	    "generation 1: ", want_file, LOG_MS);
	ck_assert_msg(fail_i >= 0, "%s: no STATUS=reload failed ... %s on "
	    "the notify socket; got:\n%s\nlog ends:\n%s", broken_what[_i],
	    want_file, nl_dump(&nl, from, dump, sizeof(dump)),
	    h_log_tail(&d, tail, sizeof(tail)));
	ck_assert_int_eq(nl.v[fail_i].pid, d.pid);
	H_LOG_EXPECT(&d, line, "reload failed, still serving generation 1: ",
	    want_file);
	/* No RELOADING=1 or READY=1 for a reload that did not happen. */
	sleep_ms(100);
	nl_pump(&nl);
	for (i = from; i < nl.n; i++)
		ck_assert_msg(strstr(nl.v[i].text, "RELOADING=1") == NULL &&
		    strstr(nl.v[i].text, "READY=1") == NULL, "%s: failed reload "
		    "sent \"%s\"", broken_what[_i], nl.v[i].text);

	/* Still serving generation 1: the old session and new ones. */
	ROUNDTRIP_OK(&d, &old, "after the failed reload");
	connect_to(&fresh, &d, d.port, "connection after the failed reload");
	ROUNDTRIP_OK(&d, &fresh, "new connection after the failed reload");
	h_tls_close(&fresh);
	ck_assert_int_eq(h_log_count(&d, "(generation 1) stopping", NULL), 0);
	expect_children(&d, 2, 1000, "after the failed reload");

	/* Fixed: the next reload makes generation 2. */
	conf_rewrite(&d, good);
	ready_i = reload_ok(&d, &nl, 2);
	ck_assert_msg(strstr(nl.v[ready_i].text, "reload failed") == NULL,
	    "status after a good reload still says it failed: %s",
	    nl.v[ready_i].text);
	connect_to(&fresh, &d, d.port, "connection after the fixed reload");
	ROUNDTRIP_OK(&d, &fresh, "generation 2");
	h_tls_close(&fresh);
	ROUNDTRIP_OK(&d, &old, "old session after the good reload");
	h_tls_close(&old);
	if (busy_fd >= 0)
		close(busy_fd);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_reload_adds_and_removes_listeners_and_keeps_unchanged_socket)
{
	struct h_daemon d;
	struct nlog nl;
	struct hammer h;
	struct h_tls c;
	char conf[4096], line[4096];
	int pb = h_free_port(), pc;
	unsigned long ino_before, ino_after;
	struct h_daemon_opts o = { .label = "listeners", .activation = true };

	do
		pc = h_free_port();
	while (pc == pb);
	/* echo (kept, socket-activated) and "gone" (removed by the reload). */
	snprintf(conf, sizeof(conf),
	    "log = \"stderr\"; workers = 2; drain_timeout = 5;\n"
	    "listeners = (\n"
	    "  { name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
	    "    tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; },\n"
	    "  { name = \"gone\"; listen = \"127.0.0.1:%d\";\n"
	    "    tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; }\n"
	    ");\n", pb);
	o.config = conf;
	up(&d, &nl, &o);
	connect_to(&c, &d, pb, "listener to be removed, before");
	ROUNDTRIP_OK(&d, &c, "on port %d before the reload", pb);
	h_tls_close(&c);
	ino_before = listen_inode(d.port);
	ck_assert_msg(ino_before != 0, "no listening socket on port %d",
	    d.port);

	hammer_start(&h, d.port);
	ck_assert_msg(hammer_progress(&h, 0, 5, IO_MS), "loop client: %s",
	    h.first_err);
	/* Now echo and "added"; "gone" is no more. */
	snprintf(conf, sizeof(conf),
	    "log = \"stderr\"; workers = 2; drain_timeout = 5;\n"
	    "listeners = (\n"
	    "  { name = \"echo\"; listen = \"127.0.0.1:@PORT@\";\n"
	    "    tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; },\n"
	    "  { name = \"added\"; listen = \"127.0.0.1:%d\";\n"
	    "    tls = { cert = \"@PKI@/server.crt\"; key = \"@PKI@/server.key\";"
	    " ca = \"@PKI@/ca.crt\"; }; }\n"
	    ");\n", pc);
	conf_rewrite(&d, conf);
	(void)reload_ok(&d, &nl, 2);
	{
		int base = atomic_load(&h.ok);

		(void)hammer_progress(&h, base, 5, IO_MS);
	}
	hammer_stop(&h);
	ck_assert_msg(atomic_load(&h.failed) == 0, "port %d (unchanged "
	    "listener): %d of %d connections failed across the reload; "
	    "first: %s", d.port, atomic_load(&h.failed),
	    atomic_load(&h.failed) + atomic_load(&h.ok), h.first_err);
	ino_after = listen_inode(d.port);
	ck_assert_msg(ino_after == ino_before, "the unchanged listener's "
	    "socket was replaced (inode %lu, now %lu)", ino_before, ino_after);
	H_LOG_EXPECT(&d, line, "reloaded: generation 2 serving",
	    "(listener sockets: 1 kept, 1 opened, 1 closed)");

	connect_to(&c, &d, pc, "added listener");
	ROUNDTRIP_OK(&d, &c, "on the added port %d", pc);
	h_tls_close(&c);
	H_LOG_EXPECT(&d, line, c.peer_tag, "LISTENER=added ");

	/* The old generation goes, and with it the last copy of "gone". */
	expect_retired(&d, 1, 2);
	expect_children(&d, 2, 3000, "after the old generation drained");
	ck_assert_msg(refused_within(pb, 3000), "port %d of the removed "
	    "listener still accepts connections", pb);
	ck_assert_msg(listen_inode(pb) == 0, "something still listens on the "
	    "removed port %d", pb);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* supervision                                                               */
/* ------------------------------------------------------------------------- */

/* A child of the master not in ${old} (within ${timeout_ms}), or -1. */
static pid_t
new_worker(const struct h_daemon *d, const pid_t *old, int nold,
    int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	for (;;) {
		pid_t kids[64];
		int n = h_children_of(d->pid, kids, 64), i, j;

		for (i = 0; i < n && i < 64; i++) {
			char st = '?';

			for (j = 0; j < nold && old[j] != kids[i]; j++)
				;
			if (j == nold && h_proc_ppid(kids[i], &st) == d->pid &&
			    st != 'Z')
				return kids[i];
		}
		if (h_now_ms() >= deadline)
			return -1;
		sleep_ms(5);
	}
}

START_TEST(test_killed_worker_is_logged_and_replaced_with_backoff)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	pid_t w[4], seen[8], repl, repl2;
	char line[4096], needle[96];
	int n;
	int64_t t0;

	up_simple(&d, &nl, "kill-worker", "workers = 2;");
	n = h_daemon_workers(&d, w, 4, 2, 3000);
	ck_assert_int_eq(n, 2);
	memcpy(seen, w, sizeof(pid_t) * 2);

	ck_assert(kill(w[0], SIGKILL) == 0);
	t0 = h_now_ms();
	snprintf(needle, sizeof(needle), "(pid %ld) killed by signal 9 ",
	    (long)w[0]);
	H_LOG_EXPECT(&d, line, needle, "; restarting in 100 ms");
	repl = new_worker(&d, seen, 2, 3000);
	ck_assert_msg(repl > 0, "no new worker within 3 s of killing %ld",
	    (long)w[0]);
	ck_assert_msg(h_now_ms() - t0 >= 90, "replaced after %" PRId64 " ms: "
	    "no back-off", h_now_ms() - t0);
	seen[2] = repl;
	expect_children(&d, 2, 1000, "after the restart");

	/* Service continues, on both workers. */
	for (n = 0; n < 4; n++) {
		connect_to(&c, &d, d.port, "after the worker was killed");
		ROUNDTRIP_OK(&d, &c, "after the restart, connection %d", n);
		h_tls_close(&c);
	}

	/* It dies again young: the back-off doubles. */
	ck_assert(kill(repl, SIGKILL) == 0);
	snprintf(needle, sizeof(needle), "(pid %ld) killed by signal 9 ",
	    (long)repl);
	H_LOG_EXPECT(&d, line, needle, "; restarting in 200 ms");
	repl2 = new_worker(&d, seen, 3, 3000);
	ck_assert_msg(repl2 > 0, "no new worker after the second kill");
	connect_to(&c, &d, d.port, "after the second kill");
	ROUNDTRIP_OK(&d, &c, "after the second restart");
	h_tls_close(&c);
	ck_assert_int_eq(zombies_of(d.pid, w, 4), 0);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* The shared writable mappings of ${pid} (from /proc/PID/maps): how many;
 * their ranges in ${lo}/${hi} (up to ${max}). */
static int
shared_maps(pid_t pid, unsigned long *lo, unsigned long *hi, int max)
{
	char path[64], line[512];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long a, b;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) != 3 ||
		    strcmp(perms, "rw-s") != 0)
			continue;
		if (n < max) {
			lo[n] = a;
			hi[n] = b;
		}
		n++;
	}
	fclose(f);
	return n;
}

/* The master is running: not gone, not a zombie waiting for us. */
static bool
master_alive(const struct h_daemon *d)
{
	char st = '?';

	return h_proc_ppid(d->pid, &st) > 0 && st != 'Z' && st != 'X';
}

/*
 * A compromised worker can write every byte of the memory it shares with
 * the master.  Garbage there (written through /proc/PID/mem, as a worker
 * would) must not move the master: it keeps its status refreshes, answers
 * SIGUSR1, reaps and replaces the worker when it dies, and serves.
 */
START_TEST(test_worker_scribbling_shared_memory_cannot_move_the_master)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_daemon_opts o = {
		.label = "scribble",
		.globals = "workers = 2;",
		.listener_extra = "max_connections_per_identity = 4;",
		.activation = true,
	};
	static const unsigned char fills[] = { 0xff, 0x41 };
	unsigned long lo[16], hi[16];
	pid_t w[4], seen[8], repl;
	struct h_tls c;
	char line[4096], path[64];
	int n, k, fd;
	size_t f;

	up(&d, &nl, &o);
	n = h_daemon_workers(&d, w, 4, 2, 3000);
	ck_assert_int_eq(n, 2);
	memcpy(seen, w, sizeof(pid_t) * 2);
	connect_to(&c, &d, d.port, "before the garbage");
	ROUNDTRIP_OK(&d, &c, "before the garbage");
	h_tls_close(&c);
	n = shared_maps(w[0], lo, hi, 16);
	ck_assert_msg(n >= 1 && n <= 16, "worker %ld has %d shared writable "
	    "mapping(s)", (long)w[0], n);
	snprintf(path, sizeof(path), "/proc/%ld/mem", (long)w[0]);
	ck_assert((fd = open(path, O_RDWR)) >= 0);
	for (f = 0; f < sizeof(fills); f++) {
		for (k = 0; k < n; k++) {
			size_t len = hi[k] - lo[k];
			unsigned char *junk = malloc(len);

			ck_assert_ptr_nonnull(junk);
			memset(junk, fills[f], len);
			/* Some words that look like sizes and counts. */
			for (size_t i = 0; i + 8 <= len; i += 64)
				memcpy(junk + i, &(uint64_t){ 0x7fffffffffffULL },
				    8);
			ck_assert_msg(pwrite(fd, junk, len, (off_t)lo[k]) ==
			    (ssize_t)len, "cannot write the worker's memory "
			    "(%s); master %s", strerror(errno),
			    master_alive(&d) ? "alive" : "dead");
			free(junk);
		}
		/* The master reads the counts every 2 s for STATUS=. */
		sleep_ms(2300);
		ck_assert_msg(master_alive(&d), "the master died of the "
		    "garbage");
	}
	close(fd);
	ck_assert(h_daemon_signal(&d, SIGUSR1) == 0);
	H_LOG_EXPECT(&d, line, "status: generation 1, 0 reload(s), workers [");
	/*
	 * The region held the other worker's counts too: lies about counts
	 * are all a worker can tell through it (its identity table now
	 * refuses at random).  Both go; the master clears their parts with
	 * its own idea of where they are.
	 */
	ck_assert(kill(w[0], SIGKILL) == 0);
	repl = new_worker(&d, seen, 2, 3000);
	ck_assert_msg(repl > 0, "no new worker after the scribbler died");
	seen[2] = repl;
	ck_assert(kill(w[1], SIGKILL) == 0);
	ck_assert_msg(new_worker(&d, seen, 3, 3000) > 0, "no new worker after "
	    "the second one died");
	ck_assert_msg(master_alive(&d), "the master died reaping them");
	expect_children(&d, 2, 1000, "after the restarts");
	for (k = 0; k < 4; k++) {
		connect_to(&c, &d, d.port, "after the scribbler");
		ROUNDTRIP_OK(&d, &c, "after the scribbler, connection %d", k);
		h_tls_close(&c);
	}
	ck_assert(h_daemon_signal(&d, SIGUSR1) == 0);
	n = h_log_wait_count(&d, 2, LOG_MS, "status: generation 1, 0 "
	    "reload(s), workers [", NULL);
	ck_assert_msg(n == 2, "the master answered %d SIGUSR1 of 2", n);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/*
 * A copy of worker ${pid}'s end of its control socket pair (the one
 * SOCK_SEQPACKET socket it holds), taken with pidfd_getfd(2), or -1.
 */
static int
steal_ctl_socket(pid_t pid)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0), fd, got = -1;

	if (pidfd < 0)
		return -1;
	for (fd = 0; fd < 256 && got < 0; fd++) {
		int s = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0), type = 0;
		socklen_t len = sizeof(type);

		if (s < 0)
			continue;
		if (getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		    type == SOCK_SEQPACKET)
			got = s;
		else
			close(s);
	}
	close(pidfd);
	return got;
}

/*
 * The other way a worker can speak to the master: its control socket.
 * Junk there (wrong sizes, unknown types, a CTL_LEFT out of turn, a flood,
 * empty messages) is dropped, said once, and changes nothing: the master
 * still answers SIGUSR1, reloads (READY=1), and serves.
 */
START_TEST(test_worker_sending_junk_control_messages_is_ignored)
{
	struct h_daemon d;
	struct nlog nl;
	pid_t w[4];
	struct h_tls c;
	char line[4096], big[300];
	uint32_t msg[2];
	int fd, i, n;

	up_simple(&d, &nl, "ctl-junk", "workers = 1;");
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 1, 3000), 1);
	/* Served once: the worker is in its loop, so it has closed the
	 * master's end of its pair (a fresh fork still holds both, and the
	 * scan below would take the master's). */
	connect_to(&c, &d, d.port, "before the junk");
	ROUNDTRIP_OK(&d, &c, "before the junk");
	h_tls_close(&c);
	fd = steal_ctl_socket(w[0]);
	ck_assert_msg(fd >= 0, "cannot take worker %ld's control socket: %s",
	    (long)w[0], strerror(errno));
	memset(big, 0x5a, sizeof(big));
	/* An empty message reads as 0 bytes, like the end of the stream:
	 * only a hang-up may mean the worker is gone. */
	(void)send(fd, big, 0, MSG_DONTWAIT);
	(void)send(fd, big, sizeof(big), MSG_DONTWAIT);
	(void)send(fd, big, 3, MSG_DONTWAIT);
	for (i = 0; i < 2000; i++) {
		msg[0] = (uint32_t)(i % 7);  /* 2 is CTL_LEFT, out of turn */
		msg[1] = 0xffffffffu;
		if (send(fd, msg, sizeof(msg), MSG_DONTWAIT) < 0)
			break; /* the master's queue is full: fine */
	}
	H_LOG_EXPECT(&d, line, "sent an unexpected control message; ignored");
	ck_assert(h_daemon_signal(&d, SIGUSR1) == 0);
	H_LOG_EXPECT(&d, line, "status: generation 1, 0 reload(s), workers [");
	connect_to(&c, &d, d.port, "after the junk");
	ROUNDTRIP_OK(&d, &c, "after the junk");
	h_tls_close(&c);
	close(fd);
	reload_ok(&d, &nl, 2);
	connect_to(&c, &d, d.port, "after the reload");
	ROUNDTRIP_OK(&d, &c, "after the reload");
	h_tls_close(&c);
	n = h_log_count(&d, "unexpected control message", NULL);
	ck_assert_msg(n == 1, "%d lines about the junk, want one", n);
	ck_assert_msg(h_log_count(&d, "stopping (the master exited)", NULL) ==
	    0, "an empty control message cut the worker off its master");
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* ${pid}'s descriptor ${fd} is open on ${target} (readlink of /proc). */
static bool
proc_fd_is(pid_t pid, int fd, const char *target)
{
	char path[64], link[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%ld/fd/%d", (long)pid, fd);
	if ((n = readlink(path, link, sizeof(link) - 1)) < 0)
		return false;
	link[n] = '\0';
	return strcmp(link, target) == 0;
}

/*
 * A listening socket is shared by master, workers and systemd: a worker
 * gone bad that disconnects it (connect(AF_UNSPEC), which no seccomp
 * filter can tell from a backend connect) must not stop it for all and
 * for good.  The master listens again after the worker's exit (loop 0) or
 * at its next status refresh (loop 1).
 */
START_TEST(test_listener_disconnected_by_a_worker_listens_again)
{
	struct h_daemon d;
	struct nlog nl;
	struct sockaddr sa = { .sa_family = AF_UNSPEC };
	pid_t w[4], seen[8];
	struct h_tls c;
	char line[4096];
	int pidfd, fd, lfd = -1, on = 0, k;
	socklen_t len = sizeof(on);

	up_simple(&d, &nl, "relisten", "workers = 1;");
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 1, 3000), 1);
	seen[0] = w[0];
	ck_assert((pidfd = (int)syscall(SYS_pidfd_open, w[0], 0)) >= 0);
	for (fd = 0; fd < 64 && lfd < 0; fd++) {
		int s = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0), acc = 0;
		socklen_t l = sizeof(acc);

		if (s >= 0 && getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &acc,
		    &l) == 0 && acc)
			lfd = s;
		else if (s >= 0)
			close(s);
	}
	close(pidfd);
	ck_assert_msg(lfd >= 0, "no listening socket in worker %ld",
	    (long)w[0]);
	ck_assert(connect(lfd, &sa, sizeof(sa)) == 0);
	/* (No check that it stopped: the master's 2 s status refresh may
	 * already have made it listen again; the log line below says it
	 * had stopped.) */
	(void)getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len);
	if (_i == 0) {
		ck_assert(kill(w[0], SIGKILL) == 0);
		ck_assert(new_worker(&d, seen, 1, 3000) > 0);
	}
	H_LOG_EXPECT(&d, line, "listener echo: its socket had stopped "
	    "listening", "listening again");
	for (k = 0; k < 3; k++) {
		connect_to(&c, &d, d.port, "after the disconnect");
		ROUNDTRIP_OK(&d, &c, "after the master listened again");
		h_tls_close(&c);
	}
	close(lfd);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/*
 * Descriptors the daemon's parent left open (a shell's, a supervisor's)
 * reach no worker: the master closes all but stdio and systemd's.
 */
START_TEST(test_inherited_descriptors_reach_no_worker)
{
	static const char *const wrap[] = { "sh", "-c",
	    "exec 7</dev/null 9</dev/null; exec \"$0\" \"$@\"", NULL };
	struct h_daemon_opts o = {
		.label = "inherited",
		.globals = "workers = 1;",
		.activation = true,
		.wrap = wrap,
	};
	struct h_daemon d;
	struct nlog nl;
	pid_t w[4];

	up(&d, &nl, &o);
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 1, 3000), 1);
	/* (The master's own descriptors may take those numbers again.) */
	ck_assert_msg(!proc_fd_is(d.pid, 7, "/dev/null") &&
	    !proc_fd_is(d.pid, 9, "/dev/null"), "the master kept descriptors "
	    "7/9 it inherited");
	ck_assert_msg(!proc_fd_is(w[0], 7, "/dev/null") &&
	    !proc_fd_is(w[0], 9, "/dev/null"), "a worker inherited descriptors "
	    "7/9 of the daemon's parent");
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/*
 * A worker maps its own generation's shared memory and nothing else: one
 * forked at a reload does not inherit the retired generation's.
 */
START_TEST(test_new_generation_worker_maps_only_its_own_census)
{
	struct h_daemon d;
	struct nlog nl;
	unsigned long lo[16], hi[16];
	pid_t w[4], repl;
	int n1, n2;

	up_simple(&d, &nl, "own-census", "workers = 1;");
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 1, 3000), 1);
	n1 = shared_maps(w[0], lo, hi, 16);
	ck_assert_msg(n1 >= 1, "generation 1's worker maps %d shared "
	    "writable region(s)", n1);
	reload_ok(&d, &nl, 2);
	repl = new_worker(&d, w, 1, 3000);
	ck_assert_msg(repl > 0, "no generation 2 worker");
	n2 = shared_maps(repl, lo, hi, 16);
	ck_assert_msg(n2 == n1, "a generation 2 worker maps %d shared "
	    "writable region(s), a generation 1 worker %d: it kept the "
	    "retired generation's", n2, n1);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_master_fds_and_rss_stay_flat_across_100_reloads)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	char fds_before[2048], fds_after[2048], line[4096];
	pid_t z[8];
	int fd0, fd1, nz;
	long rss0, rss1;
	unsigned gen;
	int64_t t0;

	up_simple(&d, &nl, "flat", "workers = 1; drain_timeout = 0.5;");
	connect_to(&c, &d, d.port, "before the reloads");
	ROUNDTRIP_OK(&d, &c, "before the reloads");
	h_tls_close(&c);
	expect_children(&d, 1, 1000, "at start");
	fd0 = fd_count(d.pid, fds_before, sizeof(fds_before));
	rss0 = h_proc_rss_kb(d.pid);
	ck_assert(fd0 > 0 && rss0 > 0);

	t0 = h_now_ms();
	for (gen = 2; gen <= 101; gen++)
		(void)reload_ok(&d, &nl, gen);
	/* Drained generations exit; the master reaps every one of them. */
	expect_children(&d, 1, 5000, "after 100 reloads");
	nz = zombies_of(d.pid, z, 8);
	ck_assert_msg(nz == 0, "%d zombie children of the master (first %ld)",
	    nz, (long)z[0]);
	fd1 = fd_count(d.pid, fds_after, sizeof(fds_after));
	rss1 = h_proc_rss_kb(d.pid);
	printf("check_lifecycle: 100 reloads in %" PRId64 " ms; master fds "
	    "%d -> %d, VmRSS %ld -> %ld KiB (%+ld KiB)\n", h_now_ms() - t0,
	    fd0, fd1, rss0, rss1, rss1 - rss0);
	fflush(stdout);
	ck_assert_msg(fd1 == fd0, "master fds: %d before, %d after 100 "
	    "reloads\nbefore: %s\nafter:  %s", fd0, fd1, fds_before,
	    fds_after);
	/* Under ASan freed memory sits in quarantine, so RSS means nothing
	 * there; LeakSanitizer checks leaks in that build instead. */
	if (getenv("TEST_SANITIZED") != NULL &&
	    strcmp(getenv("TEST_SANITIZED"), "1") == 0)
		printf("check_lifecycle: sanitizer build: master VmRSS not "
		    "checked\n");
	else
		ck_assert_msg(rss1 - rss0 < 2048, "master VmRSS grew %ld KiB "
		    "over 100 reloads (%ld -> %ld)", rss1 - rss0, rss0, rss1);
	H_LOG_EXPECT(&d, line, "reloaded: generation 101 serving");
	connect_to(&c, &d, d.port, "after 100 reloads");
	ROUNDTRIP_OK(&d, &c, "after 100 reloads");
	h_tls_close(&c);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/*
 * One session pinned in each generation; after each reload the newest three
 * retired generations keep theirs, older ones are stopped.
 */
START_TEST(test_at_most_3_retired_generations_linger_oldest_are_killed)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls s[8];
	unsigned k, g;
	char line[4096], needle[96], tail[2000];

	up_simple(&d, &nl, "linger", "workers = 1; drain_timeout = 60; "
	    "shutdown_timeout = 1;");
	connect_to(&s[1], &d, d.port, "session in generation 1");
	ROUNDTRIP_OK(&d, &s[1], "generation 1");
	for (k = 1; k <= 5; k++) {
		unsigned cur = k + 1;

		(void)reload_ok(&d, &nl, cur);
		/* Only generation cur accepts once k's worker let go. */
		expect_retired(&d, k, 1);
		connect_to(&s[cur], &d, d.port, "session in the new generation");
		ROUNDTRIP_OK(&d, &s[cur], "generation %u", cur);
		/* Retired now: 1..k; the newest three keep their sessions. */
		for (g = 1; g <= k; g++) {
			if (g + 3 <= k) {
				int r;

				if (g + 3 < k)
					continue; /* checked after an earlier reload */
				r = h_tls_wait_eof(&s[g], 3000);
				ck_assert_msg(r == 0 || r == 2, "after reload %u "
				    "(retired 1..%u) the session of generation "
				    "%u is still open (%d: %s)", k, k, g, r,
				    s[g].err);
				snprintf(needle, sizeof(needle), "more than 3 "
				    "generations draining: stopping generation "
				    "%u now", g);
				H_LOG_EXPECT(&d, line, needle);
			} else
				ROUNDTRIP_OK(&d, &s[g], "generation %u after "
				    "reload %u (retired 1..%u)", g, k, k);
		}
		ck_assert_msg(h_log_count(&d, "more than 3 generations draining",
		    NULL) == (k > 3 ? (int)k - 3 : 0), "after reload %u: %d "
		    "generations stopped early, want %d; log ends:\n%s", k,
		    h_log_count(&d, "more than 3 generations draining", NULL),
		    k > 3 ? (int)k - 3 : 0, h_log_tail(&d, tail, sizeof(tail)));
	}
	/* Current generation 6 plus retired 3, 4, 5: one worker each. */
	expect_children(&d, 4, 3000, "with three generations draining");
	for (g = 1; g <= 6; g++)
		h_tls_close(&s[g]);
	expect_children(&d, 1, 3000, "after the sessions closed");
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_retired_session_echoes_until_drain_timeout_then_closes)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls s, fresh;
	char line[4096], reason[80];
	int64_t t_reload, elapsed;
	int r;

	up_simple(&d, &nl, "drain", "workers = 1; drain_timeout = 1;");
	connect_to(&s, &d, d.port, "session before the reload");
	ROUNDTRIP_OK(&d, &s, "before the reload");
	t_reload = h_now_ms();
	(void)reload_ok(&d, &nl, 2);
	expect_retired(&d, 1, 1);
	H_LOG_EXPECT(&d, line, "worker 0 (generation 1) stopping (retired by "
	    "reload): 1 connection(s) get up to 1.0 s");
	ROUNDTRIP_OK(&d, &s, "right after the reload");
	sleep_ms(400);
	ROUNDTRIP_OK(&d, &s, "0.4 s into the drain");
	connect_to(&fresh, &d, d.port, "new connection during the drain");
	ROUNDTRIP_OK(&d, &fresh, "generation 2 during the drain");

	r = h_tls_wait_eof(&s, 4000);
	elapsed = h_now_ms() - t_reload;
	ck_assert_msg(r == 0 || r == 2, "old session still open %" PRId64
	    " ms after the reload (drain_timeout 1 s): %s", elapsed, s.err);
	ck_assert_msg(elapsed >= 900, "old session closed after %" PRId64
	    " ms, before drain_timeout", elapsed);
	H_LOG_EXPECT(&d, line, "worker 0: time is up: closing 1 connection(s)");
	snprintf(reason, sizeof(reason), "CLOSE_REASON=shutdown ");
	H_LOG_EXPECT(&d, line, s.peer_tag, "connection closed:", reason);
	h_tls_close(&s);
	/* Generation 2 is not affected. */
	ROUNDTRIP_OK(&d, &fresh, "generation 2 after the drain");
	h_tls_close(&fresh);
	expect_children(&d, 1, 3000, "after the drain");
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* sd_notify, watchdog, status                                               */
/* ------------------------------------------------------------------------- */

static uint64_t
mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

START_TEST(test_notify_ready_reloading_ready_stopping_from_master)
{
	struct h_daemon d;
	struct nlog nl;
	char dump[3000];
	const char *p;
	unsigned long long mono;
	uint64_t t_before, t_after;
	int ready1, reloading, ready2, stopping;
	size_t i;

	up_simple(&d, &nl, "notify", "workers = 2;");
	ready1 = nl_wait(&nl, 0, "READY=1", NULL, 0);
	ck_assert_msg(strstr(nl.v[ready1].text, "STATUS=generation 1: ") !=
	    NULL, "first READY=1 without STATUS: %s", nl.v[ready1].text);

	t_before = mono_usec();
	ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
	reloading = nl_wait(&nl, (size_t)ready1 + 1, "RELOADING=1", NULL,
	    READY_MS);
	t_after = mono_usec();
	ck_assert_msg(reloading >= 0, "no RELOADING=1 after SIGHUP; got:\n%s",
	    nl_dump(&nl, 0, dump, sizeof(dump)));
	p = strstr(nl.v[reloading].text, "MONOTONIC_USEC=");
	ck_assert_msg(p != NULL && sscanf(p, "MONOTONIC_USEC=%llu", &mono) == 1,
	    "RELOADING=1 without MONOTONIC_USEC: %s", nl.v[reloading].text);
	ck_assert_msg(mono >= t_before && mono <= t_after, "MONOTONIC_USEC=%llu"
	    " is not between SIGHUP (%" PRIu64 ") and its receipt (%" PRIu64
	    ")", mono, t_before, t_after);
	ready2 = nl_wait(&nl, (size_t)reloading + 1, "READY=1",
	    "STATUS=generation 2", READY_MS);
	ck_assert_msg(ready2 > reloading, "no READY=1 with STATUS=generation 2 "
	    "after RELOADING=1; got:\n%s", nl_dump(&nl, 0, dump, sizeof(dump)));

	ck_assert(h_daemon_signal(&d, SIGTERM) == 0);
	stopping = nl_wait(&nl, (size_t)ready2 + 1, "STOPPING=1", NULL,
	    EXIT_MS);
	ck_assert_msg(stopping > ready2, "no STOPPING=1 after SIGTERM; got:\n%s",
	    nl_dump(&nl, 0, dump, sizeof(dump)));
	ck_assert_int_eq(h_daemon_wait_exit(&d, EXIT_MS), 0);
	nl_pump(&nl);
	for (i = 0; i < nl.n; i++)
		ck_assert_msg(nl.v[i].pid == d.pid, "notify message %zu (\"%s\") "
		    "from pid %ld, not the master %ld", i, nl.v[i].text,
		    (long)nl.v[i].pid, (long)d.pid);
	/* Exactly these four state changes (STATUS= updates may come too). */
	{
		int changes = 0;

		for (i = 0; i < nl.n; i++)
			changes += strstr(nl.v[i].text, "READY=1") != NULL ||
			    strstr(nl.v[i].text, "RELOADING=1") != NULL ||
			    strstr(nl.v[i].text, "STOPPING=1") != NULL;
		ck_assert_msg(changes == 4, "want READY, RELOADING, READY, "
		    "STOPPING; got:\n%s", nl_dump(&nl, 0, dump, sizeof(dump)));
	}
	h_daemon_kill(&d);
	nl_free(&nl);
}
END_TEST

/*
 * A service manager that does not read its notify socket (its queue holds
 * ~10 datagrams) must not stall the master: 30 reloads send ~60 messages
 * nobody reads; every reload still happens (log), the last state change is
 * delivered when the socket is read again, and SIGTERM still works.
 */
START_TEST(test_unread_notify_socket_never_blocks_the_master)
{
	struct h_daemon d;
	char tail[1500];
	int i, n;

	H_DAEMON_UP(&d, "notify-unread", "workers = 1;", NULL);
	for (i = 0; i < 30; i++) {
		ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
		n = h_log_wait_count(&d, i + 1, LOG_MS, "reloaded: generation ",
		    NULL);
		ck_assert_msg(n >= i + 1, "reload %d not done within %d ms "
		    "(master blocked on sd_notify?); log ends:\n%s", i + 1,
		    LOG_MS, h_log_tail(&d, tail, sizeof(tail)));
	}
	/* The state changes that did not fit were kept: once the manager
	 * reads again, the last one, READY=1 of generation 31, arrives. */
	ck_assert_msg(h_notify_wait(&d, "READY=1\nSTATUS=generation 31:",
	    3000) != NULL, "READY=1 of generation 31 never came once the "
	    "notify socket was read again");
	H_DAEMON_DOWN(&d);
}
END_TEST

START_TEST(test_watchdog_pings_every_half_watchdog_usec_from_master)
{
	static const char *const env[] = { "WATCHDOG_USEC=200000", NULL };
	struct h_daemon d;
	struct nlog nl;
	struct h_daemon_opts o = {
		.label = "watchdog",
		.globals = "workers = 1;",
		.activation = true,
		.env = env,
	};
	int ready, i, pings = 0;
	int64_t prev, gap, max_gap = 0, first;
	char dump[4000];

	up(&d, &nl, &o);
	ready = nl_wait(&nl, 0, "READY=1", NULL, 0);
	/* Read as they come, so each arrival time is right. */
	(void)nl_wait(&nl, 0, "no such message", NULL, 1000);
	prev = nl.v[ready].at_ms;
	first = -1;
	for (i = 0; i < (int)nl.n; i++) {
		if (strcmp(nl.v[i].text, "WATCHDOG=1") != 0)
			continue;
		ck_assert_msg(nl.v[i].pid == d.pid, "WATCHDOG=1 from pid %ld, "
		    "not the master %ld", (long)nl.v[i].pid, (long)d.pid);
		if (i < ready)
			continue;
		gap = nl.v[i].at_ms - prev;
		if (first < 0)
			first = gap;
		if (gap > max_gap)
			max_gap = gap;
		prev = nl.v[i].at_ms;
		pings++;
	}
	ck_assert_msg(first >= 0 && first <= 150, "first WATCHDOG=1 %" PRId64
	    " ms after READY=1 (want <= 150); got:\n%s", first,
	    nl_dump(&nl, 0, dump, sizeof(dump)));
	ck_assert_msg(pings >= 7 && max_gap <= 150, "%d WATCHDOG=1 in 1 s, "
	    "longest gap %" PRId64 " ms (WATCHDOG_USEC=200000: want one per "
	    "100 ms)", pings, max_gap);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_sigusr1_logs_master_and_per_worker_connection_counts)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls s;
	char line[4096], tail[2000];
	int n, total = 0, i;
	char *text, *p;

	up_simple(&d, &nl, "status", "workers = 2;");
	connect_to(&s, &d, d.port, "session for the status dump");
	ROUNDTRIP_OK(&d, &s, "before SIGUSR1");
	ck_assert(h_daemon_signal(&d, SIGUSR1) == 0);
	H_LOG_EXPECT(&d, line, "status: generation 1, 0 reload(s), workers [");
	ck_assert_int_eq(h_log_line_pid(line), d.pid);
	H_LOG_EXPECT(&d, line, "status: listener echo on 127.0.0.1:");
	n = h_log_wait_count(&d, 2, LOG_MS, "status: worker ", NULL);
	ck_assert_msg(n == 2, "%d worker status lines, want 2; log ends:\n%s",
	    n, h_log_tail(&d, tail, sizeof(tail)));
	text = slurp(d.log_path);
	ck_assert(text != NULL);
	for (p = text, i = 0; (p = strstr(p, "status: worker ")) != NULL;
	    p++, i++) {
		unsigned idx, gen;
		int conns;
		char *q = strstr(p, "(generation ");

		ck_assert(sscanf(p, "status: worker %u", &idx) == 1);
		ck_assert(q != NULL && sscanf(q, "(generation %u): %d "
		    "connection(s)", &gen, &conns) == 2);
		ck_assert_uint_eq(gen, 1);
		ck_assert_msg(strncmp(strchr(q, ':'), ": ", 2) == 0,
		    "worker line says draining: %.80s", p);
		total += conns;
	}
	free(text);
	ck_assert_int_eq(i, 2);
	ck_assert_msg(total == 1, "the workers report %d connection(s) in all, "
	    "want 1", total);
	H_LOG_EXPECT(&d, line, "status: worker ", "(echo: 1)");
	h_tls_close(&s);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* master death                                                              */
/* ------------------------------------------------------------------------- */

START_TEST(test_workers_outlive_killed_master_only_to_drain)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls s;
	pid_t w[4];
	char line[4096];
	int n, i;

	up_simple(&d, &nl, "master-death", "workers = 2; drain_timeout = 5;");
	n = h_daemon_workers(&d, w, 4, 2, 3000);
	ck_assert_int_eq(n, 2);
	connect_to(&s, &d, d.port, "session before the master dies");
	ROUNDTRIP_OK(&d, &s, "before the master dies");

	ck_assert(h_daemon_signal(&d, SIGKILL) == 0);
	ck_assert_int_eq(h_daemon_wait_exit(&d, 3000), 128 + SIGKILL);
	/* Orphans are re-parented to us, the subreaper. */
	n = h_log_wait_count(&d, 2, LOG_MS, "stopping (the master exited)",
	    NULL);
	ck_assert_msg(n == 2, "%d of 2 workers noticed the master's death", n);
	ck_assert_msg(refused_within(d.port, 3000), "port %d still accepts "
	    "connections after the master died", d.port);
	ROUNDTRIP_OK(&d, &s, "after the master died");
	sleep_ms(300);
	ROUNDTRIP_OK(&d, &s, "0.3 s after the master died");
	/* The idle worker is gone already; ours leaves when the session ends. */
	h_tls_close(&s);
	for (i = 0; i < 2; i++) {
		int st = h_wait_pid(w[i], 3000);

		ck_assert_msg(st == 0, "worker %ld: exit status %d (-1: still "
		    "running 3 s after its session ended)", (long)w[i], st);
	}
	H_LOG_EXPECT(&d, line, s.peer_tag, "CLOSE_REASON=client-closed ");
	nl_free(&nl);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* privileges                                                                */
/* ------------------------------------------------------------------------- */

/* ${pid} has a writable mapping marked "dd" (MADV_DONTDUMP) in its smaps. */
static bool
has_dontdump_mapping(pid_t pid)
{
	char path[64], line[512];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/smaps", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		/* Writable ones: the kernel's own [vvar] pages are "dd" too. */
		if (strncmp(line, "VmFlags:", 8) == 0 &&
		    strstr(line, " wr") != NULL && strstr(line, " dd") != NULL)
			found = true;
	fclose(f);
	return found;
}

/* ${pid}'s core file size limit is 0, soft and hard (/proc/PID/limits). */
static bool
core_limit_zero(pid_t pid)
{
	char path[64], line[256];
	bool zero = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/limits", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long soft, hard;

		if (sscanf(line, "Max core file size %lu %lu", &soft,
		    &hard) == 2)
			zero = soft == 0 && hard == 0;
	}
	fclose(f);
	return zero;
}

/*
 * Key material stays out of core dumps: the TLS contexts (ticket secret)
 * are on pages marked MADV_DONTDUMP in the master and its workers, and a
 * worker that runs as another user stays undumpable (its /proc files stay
 * root's, so that user cannot ptrace it or read its memory).
 */
START_TEST(test_key_material_is_left_out_of_core_dumps)
{
	struct h_daemon d;
	struct nlog nl;
	struct stat st;
	pid_t w[4];
	char path[64];
	int n, i;

	if (geteuid() != 0) {
		printf("check_lifecycle: skipped: needs root (a worker as "
		    "nobody)\n");
		return;
	}
	up_simple(&d, &nl, "dontdump", "workers = 2; user = \"nobody\";");
	n = h_daemon_workers(&d, w, 4, 2, 3000);
	ck_assert_int_eq(n, 2);
	ck_assert_msg(has_dontdump_mapping(d.pid), "the master has no "
	    "MADV_DONTDUMP mapping");
	ck_assert_msg(core_limit_zero(d.pid), "the master may dump core");
	for (i = 0; i < n; i++) {
		int64_t until = h_now_ms() + 3000;
		long ids[4];

		/* Wait (bounded) for the drop to nobody. */
		while (proc_ids(w[i], "Uid:", ids) == 0 && ids[0] != 65534 &&
		    h_now_ms() < until)
			usleep(10000);
		ck_assert_msg(has_dontdump_mapping(w[i]), "worker %ld has no "
		    "MADV_DONTDUMP mapping", (long)w[i]);
		ck_assert_msg(core_limit_zero(w[i]), "worker %ld may dump "
		    "core (its private key is in its heap)", (long)w[i]);
		snprintf(path, sizeof(path), "/proc/%ld/mem", (long)w[i]);
		ck_assert(stat(path, &st) == 0);
		ck_assert_msg(st.st_uid == 0, "worker %ld (as nobody) is "
		    "dumpable: %s belongs to uid %ld", (long)w[i], path,
		    (long)st.st_uid);
	}
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_workers_drop_to_nobody_while_master_stays_root)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	pid_t w[4];
	long ids[4];
	char groups[64];
	int n, i, k;

	if (geteuid() != 0) {
		printf("check_lifecycle: skipped: privilege drop needs root\n");
		return;
	}
	ck_assert_msg(getpwnam("nobody") != NULL && getgrnam("nogroup") !=
	    NULL, "no user nobody / group nogroup on this system");
	up_simple(&d, &nl, "nobody", "workers = 2; user = \"nobody\"; "
	    "group = \"nogroup\";");
	n = h_daemon_workers(&d, w, 4, 2, 3000);
	ck_assert_int_eq(n, 2);
	/* The drop happens right after fork: give the workers a moment. */
	connect_to(&c, &d, d.port, "worker running as nobody");
	ROUNDTRIP_OK(&d, &c, "as nobody");
	h_tls_close(&c);
	for (i = 0; i < 2; i++) {
		ck_assert(proc_ids(w[i], "Uid:", ids) == 0);
		for (k = 0; k < 4; k++)
			ck_assert_msg(ids[k] == 65534, "worker %ld Uid: %ld %ld "
			    "%ld %ld", (long)w[i], ids[0], ids[1], ids[2],
			    ids[3]);
		ck_assert(proc_ids(w[i], "Gid:", ids) == 0);
		for (k = 0; k < 4; k++)
			ck_assert_msg(ids[k] == 65534, "worker %ld Gid: %ld %ld "
			    "%ld %ld", (long)w[i], ids[0], ids[1], ids[2],
			    ids[3]);
		ck_assert(proc_groups(w[i], groups, sizeof(groups)) == 0);
		ck_assert_msg(strcmp(groups, "65534") == 0, "worker %ld "
		    "supplementary groups \"%s\"", (long)w[i], groups);
	}
	ck_assert(proc_ids(d.pid, "Uid:", ids) == 0);
	for (k = 0; k < 4; k++)
		ck_assert_msg(ids[k] == 0, "master Uid: %ld %ld %ld %ld", ids[0],
		    ids[1], ids[2], ids[3]);
	/* And after a reload the new workers drop too. */
	(void)reload_ok(&d, &nl, 2);
	expect_retired(&d, 1, 2);
	n = children_settle(&d, 2, 3000);
	ck_assert_int_eq(n, 2);
	n = h_children_of(d.pid, w, 4);
	for (i = 0; i < n && i < 4; i++) {
		int64_t until = h_now_ms() + 3000;

		/* A worker just forked drops right away, but not before we
		 * can look: wait (bounded) for the drop, then check it all. */
		while (proc_ids(w[i], "Uid:", ids) == 0 && ids[0] != 65534 &&
		    h_now_ms() < until)
			usleep(10000);
		ck_assert(proc_ids(w[i], "Uid:", ids) == 0);
		ck_assert_msg(ids[0] == 65534 && ids[1] == 65534 &&
		    ids[2] == 65534 && ids[3] == 65534, "generation 2 worker "
		    "%ld Uid: %ld %ld %ld %ld", (long)w[i], ids[0], ids[1],
		    ids[2], ids[3]);
	}
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

START_TEST(test_non_root_daemon_with_user_root_refuses_to_start)
{
	char dir[DIR_MAX], conf[PATH_MAX], log[PATH_MAX], text[16384];
	char tail[2000], *out;
	const char *files[] = { "server.crt", "server.key", "ca.crt" };
	const char *bin = getenv("TLS_ECHOD_BIN");
	size_t i;
	pid_t pid;
	int st;

	if (geteuid() != 0) {
		printf("check_lifecycle: skipped: starting the daemon as nobody "
		    "needs root\n");
		return;
	}
	tmp_dir("nonroot", dir, sizeof(dir));
	/* Readable by nobody, keys included: only for this test. */
	for (i = 0; i < 3; i++) {
		char to[PATH_MAX + 16];

		snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
		copy_file(h_pki(files[i]), to, 0644);
	}
	snprintf(conf, sizeof(conf), "%s/tls-echod.conf", dir);
	snprintf(log, sizeof(log), "%s/daemon.log", dir);
	snprintf(text, sizeof(text),
	    "log = \"stderr\"; workers = 1; user = \"root\";\n"
	    "listeners = ({ name = \"echo\"; listen = \"127.0.0.1:%d\";\n"
	    "  tls = { cert = \"%s/server.crt\"; key = \"%s/server.key\"; "
	    "ca = \"%s/ca.crt\"; }; });\n", h_free_port(), dir, dir, dir);
	write_file_atomic(conf, text, 0644);

	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);
		gid_t g = 65534;

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 ||
		    setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 ||
		    setresuid(65534, 65534, 65534) != 0)
			_exit(126);
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		execl(bin, bin, "-c", conf, (char *)NULL);
		_exit(127);
	}
	st = h_wait_pid(pid, 5000);
	out = slurp(log);
	snprintf(tail, sizeof(tail), "%s", out != NULL ? out : "(no log)");
	free(out);
	ck_assert_msg(st == 1, "non-root daemon with user = \"root\": exit "
	    "status %d, want 1; log:\n%s", st, tail);
	ck_assert_msg(strstr(tail, "needs root") != NULL && strstr(tail,
	    "user") != NULL, "no \"needs root\" in the log:\n%s", tail);
	ck_assert_msg(strstr(tail, conf) != NULL, "the refusal does not name "
	    "the configuration file:\n%s", tail);
}
END_TEST

/* Who workers run as when root starts the daemon without `user`. */
struct who {
	char name[64];
	long uid, gid;
};

/* tls-echod if that user exists, else nobody (src/master.c). */
static struct who
default_worker_user(void)
{
	const char *names[] = { "tls-echod", "nobody" };
	struct who w = { "", -1, -1 };
	const struct passwd *pw;
	size_t i;

	for (i = 0; i < 2; i++)
		if ((pw = getpwnam(names[i])) != NULL) {
			snprintf(w.name, sizeof(w.name), "%s", names[i]);
			w.uid = (long)pw->pw_uid;
			w.gid = (long)pw->pw_gid;
			break;
		}
	ck_assert_msg(w.uid >= 0, "neither user tls-echod nor nobody exists");
	return w;
}

/* Group ${gr} by name, as "name (gid N)". */
static void
group_label(long gid, char *buf, size_t len)
{
	const struct group *gr = getgrgid((gid_t)gid);

	snprintf(buf, len, "group %s (gid %ld)", gr != NULL ? gr->gr_name :
	    "?", gid);
}

/*
 * Every worker ${w} runs with real, effective, saved and filesystem ids
 * ${uid}/${gid} and no supplementary group but ${gid}.  A worker just
 * forked drops right away, but not before we can look: wait (bounded).
 */
static void
assert_worker_ids(pid_t w, long uid, long gid)
{
	int64_t until = h_now_ms() + 3000;
	long ids[4];
	char groups[64], want[32];
	int k;

	while (proc_ids(w, "Uid:", ids) == 0 && ids[0] != uid &&
	    h_now_ms() < until)
		usleep(10000);
	ck_assert(proc_ids(w, "Uid:", ids) == 0);
	for (k = 0; k < 4; k++)
		ck_assert_msg(ids[k] == uid, "worker %ld Uid: %ld %ld %ld %ld, "
		    "want %ld", (long)w, ids[0], ids[1], ids[2], ids[3], uid);
	ck_assert(proc_ids(w, "Gid:", ids) == 0);
	for (k = 0; k < 4; k++)
		ck_assert_msg(ids[k] == gid, "worker %ld Gid: %ld %ld %ld %ld, "
		    "want %ld", (long)w, ids[0], ids[1], ids[2], ids[3], gid);
	ck_assert(proc_groups(w, groups, sizeof(groups)) == 0);
	snprintf(want, sizeof(want), "%ld", gid);
	ck_assert_msg(strcmp(groups, want) == 0, "worker %ld supplementary "
	    "groups \"%s\", want \"%s\"", (long)w, groups, want);
}

/* `tls-echod -t -c ${conf}`: its exit status; stdout+stderr in ${out}. */
static int
check_conf(const char *conf, const char *label, char *out, size_t len)
{
	const char *bin = getenv("TLS_ECHOD_BIN");
	const char *argv[] = { bin, "-t", "-c", conf, NULL };
	char log[PATH_MAX], err[256], *text;
	int st;

	snprintf(log, sizeof(log), "%s", h_tmp(label));
	(void)unlink(log);
	st = h_run(argv, log, 20000, err, sizeof(err));
	ck_assert_msg(st >= 0, "tls-echod -t: %s", err);
	text = slurp(log);
	snprintf(out, len, "%s", text != NULL ? text : "");
	free(text);
	return st;
}

/*
 * Started as root with no `user`, workers never keep root: they run as the
 * dedicated tls-echod user (systemd/tls-echod.sysusers) if it exists, else
 * nobody, with that user's group; the master stays root (it reads the keys
 * on reload).  The start log and -t say so, and neither warns.
 */
START_TEST(test_root_start_without_user_runs_workers_as_default_user)
{
	struct who u;
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	pid_t w[4];
	long ids[4];
	char line[4096], want[256], grp[96], out[8192];
	int n, i;

	if (geteuid() != 0) {
		printf("check_lifecycle: skipped: the default user needs a root "
		    "start\n");
		return;
	}
	u = default_worker_user();
	up_simple(&d, &nl, "defuser", "workers = 2;");
	group_label(u.gid, grp, sizeof(grp));
	snprintf(want, sizeof(want), "workers run as user %s (uid %ld), %s: "
	    "the default, no user set", u.name, u.uid, grp);
	H_LOG_EXPECT(&d, line, want);
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 2, 3000), 2);
	connect_to(&c, &d, d.port, "worker running as the default user");
	ROUNDTRIP_OK(&d, &c, "as %.40s", u.name);
	h_tls_close(&c);
	for (i = 0; i < 2; i++)
		assert_worker_ids(w[i], u.uid, u.gid);
	ck_assert(proc_ids(d.pid, "Uid:", ids) == 0);
	ck_assert_msg(ids[0] == 0 && ids[1] == 0 && ids[2] == 0 && ids[3] == 0,
	    "master Uid: %ld %ld %ld %ld", ids[0], ids[1], ids[2], ids[3]);
	/* A reload forks new workers: they drop the same way. */
	(void)reload_ok(&d, &nl, 2);
	expect_retired(&d, 1, 2);
	ck_assert_int_eq(children_settle(&d, 2, 3000), 2);
	n = h_children_of(d.pid, w, 4);
	for (i = 0; i < n && i < 4; i++)
		assert_worker_ids(w[i], u.uid, u.gid);
	ck_assert_int_eq(h_log_count(&d, "workers run as root", NULL), 0);

	ck_assert_msg(check_conf(d.conf_path, "defuser-t.out", out,
	    sizeof(out)) == 0, "tls-echod -t failed:\n%s", out);
	ck_assert_msg(strstr(out, want) != NULL, "-t output lacks \"%s\":\n%s",
	    want, out);
	ck_assert_msg(strstr(out, "warning: workers run as root") == NULL,
	    "-t warns about root:\n%s", out);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* A group without a user: the default user, in that group. */
START_TEST(test_root_start_with_group_only_runs_workers_as_default_user_in_it)
{
	const char *names[] = { "daemon", "bin", "sys", "users", "adm" };
	struct who u;
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	const struct group *gr = NULL;
	char globals[128], gname[64], line[4096], want[256], grp[96];
	pid_t w[4];
	long gid;
	size_t i;

	if (geteuid() != 0) {
		printf("check_lifecycle: skipped: switching groups needs root\n");
		return;
	}
	u = default_worker_user();
	/* Any existing group but root and the default user's own. */
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((gr = getgrnam(names[i])) != NULL && gr->gr_gid != 0 &&
		    (long)gr->gr_gid != u.gid)
			break;
	ck_assert_msg(i < sizeof(names) / sizeof(names[0]), "no group to try");
	snprintf(gname, sizeof(gname), "%s", gr->gr_name);
	gid = (long)gr->gr_gid;
	snprintf(globals, sizeof(globals), "workers = 2; group = \"%s\";",
	    gname);
	up_simple(&d, &nl, "grouponly", globals);
	group_label(gid, grp, sizeof(grp));
	snprintf(want, sizeof(want), "workers run as user %s (uid %ld), %s: "
	    "the default, no user set", u.name, u.uid, grp);
	H_LOG_EXPECT(&d, line, want);
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 2, 3000), 2);
	connect_to(&c, &d, d.port, "worker in group only");
	ROUNDTRIP_OK(&d, &c, "as the default user in group %.40s", gname);
	h_tls_close(&c);
	for (i = 0; i < 2; i++)
		assert_worker_ids(w[i], u.uid, gid);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/*
 * Keeping root takes `user = "root"`, and is warned about at start (with
 * the setting's file:line) and by -t; another user is not.
 */
START_TEST(test_explicit_user_root_keeps_workers_root_and_warns)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	pid_t w[4];
	char line[4096], want[PATH_MAX + 64], out[8192];
	int i;

	if (geteuid() != 0) {
		printf("check_lifecycle: skipped: keeping root needs root\n");
		return;
	}
	up_simple(&d, &nl, "userroot", "workers = 2;\nuser = \"root\";");
	/* The harness writes "log = ...;" on line 1, our globals next. */
	snprintf(want, sizeof(want), ": warning: workers run as root (%s:3: "
	    "user = \"root\")", d.conf_path);
	H_LOG_EXPECT(&d, line, "workers run as user root (uid 0), group root "
	    "(gid 0)");
	H_LOG_EXPECT(&d, line, want, "would own this host");
	ck_assert_int_eq(h_daemon_workers(&d, w, 4, 2, 3000), 2);
	connect_to(&c, &d, d.port, "worker running as root");
	ROUNDTRIP_OK(&d, &c, "as root");
	h_tls_close(&c);
	for (i = 0; i < 2; i++)
		assert_worker_ids(w[i], 0, 0);
	ck_assert_int_eq(h_log_count(&d, "warning: workers run as root",
	    NULL), 1);

	ck_assert_msg(check_conf(d.conf_path, "userroot-t.out", out,
	    sizeof(out)) == 0, "tls-echod -t failed:\n%s", out);
	snprintf(want, sizeof(want), "\nwarning: workers run as root (%s:3: "
	    "user = \"root\")", d.conf_path);
	ck_assert_msg(strstr(out, want) != NULL, "-t output lacks \"%s\":\n%s",
	    want, out);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);

	/* An unprivileged user by name: no warning. */
	up_simple(&d, &nl, "usernobody", "workers = 1;\nuser = \"nobody\";");
	H_LOG_EXPECT(&d, line, "workers run as user nobody (uid ");
	ck_assert_msg(check_conf(d.conf_path, "usernobody-t.out", out,
	    sizeof(out)) == 0, "tls-echod -t failed:\n%s", out);
	ck_assert_msg(strstr(out, "workers run as user nobody (uid ") != NULL &&
	    strstr(out, "workers run as root") == NULL, "-t output:\n%s", out);
	ck_assert_int_eq(h_log_count(&d, "workers run as root", NULL), 0);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* systemd tools for real                                                    */
/* ------------------------------------------------------------------------- */

/* argv[0] found in PATH (or an absolute path that is executable). */
static bool
have_tool(const char *name)
{
	char p[PATH_MAX];
	const char *path = getenv("PATH"), *s, *e;

	if (name[0] == '/')
		return access(name, X_OK) == 0;
	for (s = path != NULL ? path : "/usr/bin:/bin"; *s != '\0'; s = e) {
		e = strchr(s, ':');
		if (e == NULL)
			e = s + strlen(s);
		snprintf(p, sizeof(p), "%.*s/%s", (int)(e - s), s, name);
		if (access(p, X_OK) == 0)
			return true;
		if (*e == ':')
			e++;
	}
	return false;
}

START_TEST(test_systemd_socket_activate_execs_daemon_on_first_connection)
{
	char dir[DIR_MAX], conf[PATH_MAX], log[PATH_MAX], text[16384];
	char addr[64], tail[2000], *out, tag[128];
	const char *bin = getenv("TLS_ECHOD_BIN");
	struct h_daemon fake; /* for ROUNDTRIP_OK's log tail */
	struct h_tls c;
	int port = h_free_port(), st;
	pid_t pid;
	int64_t deadline;

	if (!have_tool("systemd-socket-activate")) {
		printf("check_lifecycle: skipped: systemd-socket-activate not "
		    "installed\n");
		return;
	}
	tmp_dir("socket-activate", dir, sizeof(dir));
	snprintf(conf, sizeof(conf), "%s/tls-echod.conf", dir);
	snprintf(log, sizeof(log), "%s/daemon.log", dir);
	snprintf(text, sizeof(text),
	    "log = \"stderr\"; workers = 1; shutdown_timeout = 1;\n"
	    "listeners = ({ name = \"echo\"; listen = \"127.0.0.1:%d\";\n"
	    "  tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\"; }; });\n",
	    port, h_pki("server.crt"), h_pki("server.key"), h_pki("ca.crt"));
	write_file_atomic(conf, text, 0644);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
		execlp("systemd-socket-activate", "systemd-socket-activate",
		    "-l", addr, "--fdname=echo", bin, "-c", conf, (char *)NULL);
		_exit(127);
	}
	memset(&fake, 0, sizeof(fake));
	snprintf(fake.log_path, sizeof(fake.log_path), "%s", log);
	/* It binds first and execs the daemon on the first connection. */
	deadline = h_now_ms() + 5000;
	while (listen_inode(port) == 0 && h_now_ms() < deadline)
		sleep_ms(10);
	ck_assert_msg(listen_inode(port) != 0, "systemd-socket-activate does "
	    "not listen on %s; log:\n%s", addr, h_log_tail(&fake, tail,
	    sizeof(tail)));
	ck_assert_msg(h_log_count(&fake, "tls-echod[", NULL) == 0, "the daemon "
	    "started before any connection");
	connect_to(&c, &fake, port, "first connection to the activated socket");
	ROUNDTRIP_OK(&fake, &c, "through systemd-socket-activate");
	snprintf(tag, sizeof(tag), "listener echo on %s: ", addr);
	ck_assert_msg(h_log_wait(&fake, LOG_MS, NULL, 0, tag, NULL) == 0,
	    "no \"%s\" in the log:\n%s", tag, h_log_tail(&fake, tail,
	    sizeof(tail)));
	h_tls_close(&c);
	ck_assert(h_log_wait(&fake, LOG_MS, NULL, 0, "connection closed:",
	    "LISTENER=echo ", NULL) == 0);
	/* The daemon replaced the tool in the same process. */
	ck_assert(h_log_count(&fake, "tls-echod[", NULL) > 0);
	{
		char needle[48];

		snprintf(needle, sizeof(needle), "tls-echod[%ld]: info: ready:",
		    (long)pid);
		ck_assert_msg(h_log_count(&fake, needle, NULL) == 1, "no \"%s\": "
		    "the daemon is not the process the tool started as; log:\n"
		    "%s", needle, h_log_tail(&fake, tail, sizeof(tail)));
	}
	ck_assert(kill(pid, SIGTERM) == 0);
	st = h_wait_pid(pid, EXIT_MS);
	out = slurp(log);
	snprintf(tail, sizeof(tail), "%s", out != NULL ? out : "");
	free(out);
	ck_assert_msg(st == 0, "exit status %d after SIGTERM; log:\n%s", st,
	    tail);
}
END_TEST

/* Run ${argv}, its output (stdout and stderr) into ${out}; exit status. */
static int
run_capture(const char *const *argv, const char *logname, char *out,
    size_t len)
{
	char log[PATH_MAX], err[512], *text;
	int st;

	snprintf(log, sizeof(log), "%s", h_tmp(logname));
	(void)unlink(log);
	st = h_run(argv, log, 30000, err, sizeof(err));
	text = slurp(log);
	snprintf(out, len, "%s%s", text != NULL ? text : "", st < 0 ? err : "");
	free(text);
	return st;
}

/* Copies of the units with ExecStart* pointing at the binary under test. */
static void
units_copy(char *dir, size_t len)
{
	const char *bin = getenv("TLS_ECHOD_BIN");
	const char *units[] = { "tls-echod.service", "tls-echod.socket" };
	size_t i;

	tmp_dir("units", dir, len);
	for (i = 0; i < 2; i++) {
		char src[PATH_MAX + 64], dst[PATH_MAX + 64], expr[PATH_MAX + 64];
		char out[2000];
		const char *sed[] = { "sh", "-c", "sed -e \"$1\" \"$2\" >\"$3\"",
		    "sh", expr, src, dst, NULL };

		snprintf(src, sizeof(src), "%s/systemd/%s", src_root(),
		    units[i]);
		snprintf(dst, sizeof(dst), "%s/%s", dir, units[i]);
		snprintf(expr, sizeof(expr), "s|/usr/local/sbin/tls-echod|%s|g",
		    bin);
		ck_assert_msg(access(src, R_OK) == 0, "%s: %s (set TEST_SRCDIR)",
		    src, strerror(errno));
		ck_assert_msg(run_capture(sed, "units-sed.log", out,
		    sizeof(out)) == 0, "sed %s: %s", src, out);
	}
}

START_TEST(test_units_pass_systemd_analyze_verify)
{
	char dir[DIR_MAX], svc[PATH_MAX + 32], sock[PATH_MAX + 32];
	char out[8192], *text;

	if (!have_tool("systemd-analyze")) {
		printf("check_lifecycle: skipped: systemd-analyze not "
		    "installed\n");
		return;
	}
	ck_assert_msg(access("/bin/kill", X_OK) == 0, "ExecReload= needs "
	    "/bin/kill");
	units_copy(dir, sizeof(dir));
	snprintf(svc, sizeof(svc), "%s/tls-echod.service", dir);
	snprintf(sock, sizeof(sock), "%s/tls-echod.socket", dir);
	text = slurp(svc);
	ck_assert(text != NULL);
	ck_assert_msg(strstr(text, "/usr/local/sbin/tls-echod") == NULL &&
	    strstr(text, getenv("TLS_ECHOD_BIN")) != NULL, "ExecStart= not "
	    "rewritten:\n%s", text);
	free(text);
	{
		const char *argv[] = { "systemd-analyze", "verify", "--man=no",
		    sock, svc, NULL };
		int st = run_capture(argv, "units-verify.log", out, sizeof(out));

		/* Warnings (unknown keys, Type=notfy) still exit 0. */
		ck_assert_msg(st == 0 && out[0] == '\0', "systemd-analyze "
		    "verify: exit %d, output:\n%s", st, out);
	}
}
END_TEST

START_TEST(test_service_passes_systemd_analyze_security_threshold_30)
{
	char dir[DIR_MAX], svc[PATH_MAX + 32], out[16384];
	const char *p;
	int st;

	if (!have_tool("systemd-analyze")) {
		printf("check_lifecycle: skipped: systemd-analyze not "
		    "installed\n");
		return;
	}
	units_copy(dir, sizeof(dir));
	snprintf(svc, sizeof(svc), "%s/tls-echod.service", dir);
	{
		const char *argv[] = { "systemd-analyze", "security",
		    "--offline=yes", "--threshold=30", svc, NULL };

		st = run_capture(argv, "units-security.log", out, sizeof(out));
	}
	p = strstr(out, "Overall exposure level");
	printf("check_lifecycle: systemd-analyze security: %.70s\n",
	    p != NULL ? p : "(no overall exposure line)");
	fflush(stdout);
	ck_assert_msg(p != NULL, "no exposure level in:\n%s", out);
	ck_assert_msg(st == 0, "systemd-analyze security --threshold=30: exit "
	    "%d: %.80s", st, p);
}
END_TEST

/* The line of ${text} holding ${a} and ${b}, copied into ${line}, or -1. */
static int
find_line(const char *text, const char *a, const char *b, char *line,
    size_t len)
{
	const char *p = text;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);

		snprintf(line, len, "%.*s", (int)n, p);
		if (strstr(line, a) != NULL && (b == NULL ||
		    strstr(line, b) != NULL))
			return 0;
		p = nl != NULL ? nl + 1 : NULL;
	}
	line[0] = '\0';
	return -1;
}

/* Bind an abstract notify socket named for this test; its fd. */
static int
notify_bind(char *addr, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char name[80];
	int one = 1, fd, n;

	n = snprintf(name, sizeof(name), "tls-echod-life-%ld-%ld",
	    (long)getpid(), (long)h_now_ms());
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert(fd >= 0);
	ck_assert(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one,
	    sizeof(one)) == 0);
	memcpy(sa.sun_path + 1, name, (size_t)n);
	ck_assert_msg(bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(
	    struct sockaddr_un, sun_path) + 1 + (size_t)n)) == 0,
	    "notify socket: %s", strerror(errno));
	snprintf(addr, len, "@%s", name);
	return fd;
}

/* Runs inside the namespace: the daemon, then journalctl once it stopped. */
static const char inner_script[] =
    "set -u\n"
    "\"$1\" -c \"$2\" &\n"
    "pid=$!\n"
    "rc=0\n"
    "wait \"$pid\" || rc=$?\n"
    "journalctl --sync\n"
    "journalctl -o json --no-pager MESSAGE_ID=" ID_CLOSE " >\"$3\"\n"
    "journalctl -o json --no-pager MESSAGE_ID=" ID_REFUSED " >\"$4\"\n"
    "journalctl -o short --no-pager >\"$5\"\n"
    "echo \"inner: daemon exit status $rc\"\n"
    "exit \"$rc\"\n";

START_TEST(test_journald_gets_structured_fields_read_back_with_journalctl)
{
	char dir[DIR_MAX], conf[PATH_MAX], log[PATH_MAX], script[PATH_MAX];
	char j06[PATH_MAX], j07[PATH_MAX], jall[PATH_MAX], jdlog[PATH_MAX];
	char text[16384], naddr[108], out[4096], line[8192], want[160];
	char tag_ok[48], tag_no[48], peer[64], tail[3000], *json;
	const char *bin = getenv("TLS_ECHOD_BIN");
	struct h_daemon fake;
	struct nlog nl;
	struct h_tls c, nc;
	struct h_tls_opts no_cert = { .timeout_ms = IO_MS };
	int port = h_free_port(), nfd, ready, st, r;
	pid_t pid, master;

	{
		const char *probe[] = { "unshare", "-m", "--propagation",
		    "private", "true", NULL };

		st = run_capture(probe, "unshare-probe.log", out, sizeof(out));
		if (st != 0) {
			printf("check_lifecycle: skipped: unshare -m refused "
			    "(exit %d): %s\n", st, out);
			return;
		}
	}
	snprintf(script, sizeof(script), "%s/test/with-journald.sh",
	    src_root());
	ck_assert_msg(access(script, X_OK) == 0, "%s: %s (set TEST_SRCDIR)",
	    script, strerror(errno));
	tmp_dir("journald", dir, sizeof(dir));
	snprintf(conf, sizeof(conf), "%s/tls-echod.conf", dir);
	snprintf(log, sizeof(log), "%s/run.log", dir);
	snprintf(j06, sizeof(j06), "%s/c06.json", dir);
	snprintf(j07, sizeof(j07), "%s/c07.json", dir);
	snprintf(jall, sizeof(jall), "%s/journal.txt", dir);
	snprintf(jdlog, sizeof(jdlog), "%s/journald.log", dir);
	snprintf(text, sizeof(text),
	    "log = \"journal\"; workers = 1; shutdown_timeout = 2;\n"
	    "listeners = ({ name = \"echo\"; listen = \"127.0.0.1:%d\";\n"
	    "  tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\"; }; });\n",
	    port, h_pki("server.crt"), h_pki("server.key"), h_pki("ca.crt"));
	write_file_atomic(conf, text, 0644);
	nfd = notify_bind(naddr, sizeof(naddr));
	nl_init(&nl, NULL, nfd);

	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0644);

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setenv("NOTIFY_SOCKET", naddr, 1);
		setenv("JOURNALD_LOG", jdlog, 1);
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("WATCHDOG_USEC");
		unsetenv("JOURNAL_STREAM");
		execlp("unshare", "unshare", "-m", "--propagation", "private",
		    script, "bash", "-c", inner_script, "inner", bin, conf, j06,
		    j07, jall, (char *)NULL);
		_exit(127);
	}
	memset(&fake, 0, sizeof(fake));
	snprintf(fake.log_path, sizeof(fake.log_path), "%s", log);

	ready = nl_wait(&nl, 0, "READY=1", "STATUS=generation 1:", 10000);
	if (ready < 0) {
		ck_abort_msg("no READY=1 from the daemon under with-journald.sh;"
		    " output:\n%s", h_log_tail(&fake, tail, sizeof(tail)));
	}
	master = nl.v[ready].pid;

	/* One echo, closed by the client; the server's close_notify tells
	 * us it logged the close. */
	connect_to(&c, &fake, port, "client with a certificate");
	ROUNDTRIP_OK(&fake, &c, "to the journal");
	snprintf(tag_ok, sizeof(tag_ok), "%s", c.peer_tag);
	ck_assert(SSL_shutdown(c.ssl) >= 0);
	r = h_tls_wait_eof(&c, IO_MS);
	ck_assert_msg(r == 0 || r == 2, "the server did not end the session: "
	    "%s", c.err);
	h_tls_close(&c);
	/* One refusal: no client certificate. */
	if (h_tls_connect(&nc, port, &no_cert) == 0)
		ck_assert_msg(h_tls_refused(&nc, IO_MS) == 1, "a client without "
		    "a certificate was not refused");
	snprintf(tag_no, sizeof(tag_no), "%s", nc.peer_tag);
	h_tls_close(&nc);
	ck_assert(tag_no[0] != '\0');

	ck_assert(kill(master, SIGTERM) == 0);
	st = h_wait_pid(pid, EXIT_MS);
	ck_assert_msg(st == 0, "with-journald.sh run: exit status %d; "
	    "output:\n%s", st, h_log_tail(&fake, tail, sizeof(tail)));
	close(nfd);
	nl_free(&nl);

	/* "PEER_ADDR=127.0.0.1:N " -> "\"PEER_ADDR\":\"127.0.0.1:N\"" */
	snprintf(peer, sizeof(peer), "\"PEER_ADDR\":\"%.*s\"",
	    (int)strlen(tag_ok) - 11, tag_ok + 10);
	json = slurp(j06);
	r = json != NULL ? find_line(json, peer, NULL, line, sizeof(line)) :
	    -1;
	free(json);
	if (r != 0) {
		json = slurp(jall);
		snprintf(tail, sizeof(tail), "%s", json != NULL ? json : "");
		free(json);
		ck_abort_msg("no MESSAGE_ID=%s record with %s in %s; the whole "
		    "journal:\n%s", ID_CLOSE, peer, j06, tail);
	}
	{
		static const char *const fields[] = {
			"\"MESSAGE_ID\":\"" ID_CLOSE "\"",
			"\"LISTENER\":\"echo\"",
			"\"CLIENT_SUBJECT\":\"OU=ops, CN=test-client\"",
			"\"TLS_VERSION\":\"TLSv1.3\"",
			"\"TLS_CIPHER\":\"TLS_",
			"\"BYTES_IN\":\"",
			"\"BYTES_OUT\":\"",
			"\"DURATION_MS\":\"",
			"\"CLOSE_REASON\":\"client-closed\"",
			"\"SYSLOG_IDENTIFIER\":\"tls-echod\"",
			"\"_TRANSPORT\":\"journal\"",
			"\"PRIORITY\":\"6\"",
			"\"MESSAGE\":\"connection closed: client closed the "
			    "connection\"",
		};
		size_t i;
		unsigned long in = 0, outb = 0;
		const char *p;

		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			ck_assert_msg(strstr(line, fields[i]) != NULL, "no %s in "
			    "the journal record:\n%s", fields[i], line);
		p = strstr(line, "\"BYTES_IN\":\"");
		ck_assert(p != NULL && sscanf(p, "\"BYTES_IN\":\"%lu", &in) == 1);
		p = strstr(line, "\"BYTES_OUT\":\"");
		ck_assert(p != NULL && sscanf(p, "\"BYTES_OUT\":\"%lu",
		    &outb) == 1);
		ck_assert_msg(in > 0 && in == outb, "BYTES_IN %lu, BYTES_OUT "
		    "%lu", in, outb);
	}
	snprintf(peer, sizeof(peer), "\"PEER_ADDR\":\"%.*s\"",
	    (int)strlen(tag_no) - 11, tag_no + 10);
	json = slurp(j07);
	ck_assert_msg(json != NULL && find_line(json, peer, NULL, line,
	    sizeof(line)) == 0, "no MESSAGE_ID=%s record with %s in %s",
	    ID_REFUSED, peer, j07);
	free(json);
	snprintf(want, sizeof(want), "\"MESSAGE_ID\":\"%s\"", ID_REFUSED);
	ck_assert_msg(strstr(line, want) != NULL && strstr(line,
	    "\"CLOSE_REASON\":\"no-client-cert\"") != NULL && strstr(line,
	    "\"LISTENER\":\"echo\"") != NULL && strstr(line,
	    "\"PRIORITY\":\"4\"") != NULL, "refusal record:\n%s", line);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* regressions: the generation cap, retired workers after READY=1            */
/* ------------------------------------------------------------------------- */

/*
 * One session pinned in each of generations 1..5; the reloads to 5 and 6
 * push the cap of three draining generations, stopping generations 1 and
 * 2.  Stopped means closed properly: every session gets close_notify and
 * its "connection closed:" line (CLOSE_REASON=shutdown), and the worker
 * exits by itself instead of being killed.
 */
START_TEST(test_generation_cap_stops_the_oldest_with_close_notify_and_close_lines)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls s[7];
	unsigned cur, g;
	char line[4096], needle[128], tail[2000];
	int r;

	up_simple(&d, &nl, "cap-graceful", "workers = 1; drain_timeout = 60; "
	    "shutdown_timeout = 1;");
	connect_to(&s[1], &d, d.port, "session in generation 1");
	ROUNDTRIP_OK(&d, &s[1], "generation 1");
	for (cur = 2; cur <= 6; cur++) {
		(void)reload_ok(&d, &nl, cur);
		expect_retired(&d, cur - 1, 1);
		if (cur >= 5) {
			/* Retired now: cur-4 .. cur-1, one too many. */
			g = cur - 4;
			r = h_tls_wait_eof(&s[g], 3000);
			ck_assert_msg(r == 0, "the reload to generation %u stopped "
			    "generation %u: its session ended with %s (%s), not "
			    "close_notify; log ends:\n%s", cur, g, r == 2 ?
			    "a bare EOF or reset" : r == 1 ? "data" : r == -1 ?
			    "nothing" : "?", s[g].err, h_log_tail(&d, tail,
			    sizeof(tail)));
			H_LOG_EXPECT(&d, line, s[g].peer_tag,
			    "connection closed:", "CLOSE_REASON=shutdown ");
			snprintf(needle, sizeof(needle), "more than 3 generations "
			    "draining: stopping generation %u now", g);
			H_LOG_EXPECT(&d, line, needle);
		}
		if (cur <= 5) {
			connect_to(&s[cur], &d, d.port, "session in the new "
			    "generation");
			ROUNDTRIP_OK(&d, &s[cur], "generation %u", cur);
		}
	}
	for (g = 3; g <= 5; g++)
		ROUNDTRIP_OK(&d, &s[g], "generation %u after the cap stopped "
		    "generations 1 and 2", g);
	/* Generation 6 plus draining 3, 4, 5: the stopped ones are reaped. */
	expect_children(&d, 4, 3000, "after the cap stopped two generations");
	for (g = 1; g <= 2; g++) {
		snprintf(needle, sizeof(needle), "of generation %u (pid", g);
		ck_assert_msg(h_log_count(&d, "retired worker ", needle, NULL) ==
		    0, "the worker of generation %u did not exit cleanly when "
		    "the cap stopped it; log ends:\n%s", g, h_log_tail(&d, tail,
		    sizeof(tail)));
	}
	for (g = 1; g <= 5; g++)
		h_tls_close(&s[g]);
	expect_children(&d, 1, 3000, "after the sessions closed");
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* The echo listener with banner "gen${gen}\n", as a template. */
static const char *
conf_banner(char *buf, size_t len, unsigned gen)
{
	snprintf(buf, len,
	    "log = \"stderr\";\n"
	    "workers = 2; drain_timeout = 5; shutdown_timeout = 1;\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"echo\";\n"
	    "    listen = \"127.0.0.1:@PORT@\";\n"
	    "    mode = \"echo\";\n"
	    "    banner = \"gen%u\\n\";\n"
	    "    tls = {\n"
	    "      cert = \"@PKI@/server.crt\";\n"
	    "      key = \"@PKI@/server.key\";\n"
	    "      ca = \"@PKI@/ca.crt\";\n"
	    "    };\n"
	    "  }\n"
	    ");\n", gen);
	return buf;
}

/* SIGSTOP ${pid} and wait until it is stopped. */
static void
stop_pid(pid_t pid)
{
	int64_t deadline = h_now_ms() + 3000;
	char st = '?';

	ck_assert_msg(kill(pid, SIGSTOP) == 0, "SIGSTOP %ld: %s", (long)pid,
	    strerror(errno));
	while (h_proc_ppid(pid, &st) >= 0 && st != 'T' &&
	    h_now_ms() < deadline)
		sleep_ms(1);
	ck_assert_msg(st == 'T', "worker %ld did not stop (state %c)",
	    (long)pid, st);
}

/*
 * A TLS client on connected socket ${fd} (${c} takes it over): handshake
 * with the PKI's client certificate, server verified for localhost.
 */
static void
tls_on_fd(struct h_tls *c, int fd, const struct h_daemon *d)
{
	char sni[] = "localhost", tail[1500];
	int64_t deadline = h_now_ms() + IO_MS;

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	h_peer_tag(fd, c->peer_tag, sizeof(c->peer_tag));
	c->ctx = SSL_CTX_new(TLS_client_method());
	ck_assert(c->ctx != NULL);
	ck_assert(SSL_CTX_use_certificate_chain_file(c->ctx, cli()->cert) ==
	    1);
	ck_assert(SSL_CTX_use_PrivateKey_file(c->ctx, cli()->key,
	    SSL_FILETYPE_PEM) == 1);
	ck_assert(SSL_CTX_load_verify_locations(c->ctx, h_pki("ca.crt"),
	    NULL) == 1);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	c->ssl = SSL_new(c->ctx);
	ck_assert(c->ssl != NULL && SSL_set_fd(c->ssl, fd) == 1 &&
	    SSL_set_tlsext_host_name(c->ssl, sni) == 1 &&
	    SSL_set1_host(c->ssl, "localhost") == 1);
	SSL_set_connect_state(c->ssl);
	for (;;) {
		struct pollfd p = { .fd = fd };
		int r = SSL_connect(c->ssl), e;

		if (r == 1)
			return;
		e = SSL_get_error(c->ssl, r);
		ck_assert_msg(e == SSL_ERROR_WANT_READ ||
		    e == SSL_ERROR_WANT_WRITE, "handshake on %s: SSL error %d; "
		    "log ends:\n%s", c->peer_tag, e, h_log_tail(d, tail,
		    sizeof(tail)));
		p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		ck_assert_msg(h_now_ms() < deadline, "handshake on %s: no "
		    "progress within %d ms; log ends:\n%s", c->peer_tag, IO_MS,
		    h_log_tail(d, tail, sizeof(tail)));
		(void)poll(&p, 1, 50);
	}
}

#define BANNER_RELOADS 10

/*
 * After the READY=1 of generation N, a new connection is served by
 * generation N: its banner, "genN", says so.  Each round makes the race
 * certain: the retired workers are stopped before the SIGHUP, so they
 * cannot leave the listening sockets; the new ones are stopped as soon as
 * they exist, and a connection waits in the backlog.  The master must hold
 * READY=1 back until the retired workers said they stopped accepting (they
 * are resumed 300 ms later, waking with their pipe's EOF and the waiting
 * connection in one epoll batch: that one is served, by either generation,
 * never stranded); every connection after READY=1 gets generation N.
 */
START_TEST(test_after_ready_no_connection_is_served_by_a_retired_generation)
{
	struct h_daemon d;
	struct nlog nl;
	struct h_tls c;
	struct h_daemon_opts o = { .label = "banner-gen", .activation = true };
	char tmpl[2048], got[16], want[16], tail[2000], status[64], dump[2000];
	unsigned gen;
	int64_t t0 = h_now_ms();

	o.config = conf_banner(tmpl, sizeof(tmpl), 1);
	up(&d, &nl, &o);
	for (gen = 2; gen <= BANNER_RELOADS + 1; gen++) {
		pid_t old[4], all[8], fresh[4];
		int nold, nall, nfresh = 0, fd, i, j, ready;
		int64_t until;
		size_t from;

		expect_children(&d, 2, 3000, "before the reload");
		nold = h_children_of(d.pid, old, 4);
		ck_assert_int_eq(nold, 2);
		for (i = 0; i < nold; i++)
			stop_pid(old[i]);
		conf_rewrite(&d, conf_banner(tmpl, sizeof(tmpl), gen));
		nl_pump(&nl);
		from = nl.n;
		ck_assert(h_daemon_signal(&d, SIGHUP) == 0);
		/* The new workers, stopped as soon as they appear. */
		until = h_now_ms() + 3000;
		while (nfresh < 2 && h_now_ms() < until) {
			nall = h_children_of(d.pid, all, 8);
			for (i = 0; i < nall && i < 8; i++) {
				for (j = 0; j < nold && old[j] != all[i]; j++)
					;
				if (j < nold)
					continue;
				for (j = 0; j < nfresh && fresh[j] != all[i];
				    j++)
					;
				if (j == nfresh && nfresh < 4) {
					stop_pid(all[i]);
					fresh[nfresh++] = all[i];
				}
			}
			usleep(1000);
		}
		ck_assert_msg(nfresh == 2, "generation %u: %d new workers",
		    gen, nfresh);
		/* Into the shared backlog, while nobody can accept. */
		fd = h_tcp_connect(d.port, IO_MS);
		ck_assert_msg(fd >= 0, "TCP connect: %s", strerror(errno));
		usleep(300 * 1000);
		snprintf(status, sizeof(status), "STATUS=generation %u:", gen);
		ck_assert_msg(nl_wait(&nl, from, "READY=1", status, 1) < 0,
		    "READY=1 of generation %u while its retired workers were "
		    "stopped (still accepting)", gen);
		for (i = 0; i < nold; i++)
			ck_assert(kill(old[i], SIGCONT) == 0);
		ready = nl_wait(&nl, from, "READY=1", status, READY_MS);
		ck_assert_msg(ready >= 0, "no READY=1 of generation %u after "
		    "its retired workers woke; notify:\n%s\nlog ends:\n%s", gen,
		    nl_dump(&nl, from, dump, sizeof(dump)), h_log_tail(&d, tail,
		    sizeof(tail)));
		expect_retired(&d, gen - 1, 2);
		for (i = 0; i < nfresh; i++)
			ck_assert(kill(fresh[i], SIGCONT) == 0);
		/*
		 * The connection that waited through the reload is served,
		 * by either generation (it came before READY=1; a retired
		 * worker woken for it takes it rather than strand it).
		 */
		tls_on_fd(&c, fd, &d);
		memset(got, 0, sizeof(got));
		ck_assert_msg(h_tls_read_exact(&c, got, 5, IO_MS) == 0,
		    "the connection that waited through reload %u: %s; log "
		    "ends:\n%s", gen, c.err, h_log_tail(&d, tail, sizeof(tail)));
		snprintf(want, sizeof(want), "gen%u", gen - 1);
		if (strncmp(got, want, strlen(want)) != 0) {
			snprintf(want, sizeof(want), "gen%u", gen);
			ck_assert_msg(strncmp(got, want, strlen(want)) == 0,
			    "banner \"%.5s\" during reload %u", got, gen);
		}
		h_tls_close(&c);
		/* Any connection after READY=1 gets the new generation. */
		fd = h_tcp_connect(d.port, IO_MS);
		ck_assert_msg(fd >= 0, "TCP connect: %s", strerror(errno));
		tls_on_fd(&c, fd, &d);
		snprintf(want, sizeof(want), "gen%u\n", gen);
		memset(got, 0, sizeof(got));
		ck_assert_msg(h_tls_read_exact(&c, got, strlen(want), IO_MS) ==
		    0, "banner after READY=1 of generation %u: %s; log ends:\n%s",
		    gen, c.err, h_log_tail(&d, tail, sizeof(tail)));
		ck_assert_msg(strcmp(got, want) == 0, "after READY=1 of "
		    "generation %u a new connection got banner \"%.*s\": served "
		    "by a retired generation; log ends:\n%s", gen,
		    (int)strcspn(got, "\n"), got, h_log_tail(&d, tail,
		    sizeof(tail)));
		ROUNDTRIP_OK(&d, &c, "generation %u", gen);
		h_tls_close(&c);
	}
	printf("check_lifecycle: %d reloads, each with a connection waiting "
	    "for the retired workers, in %" PRId64 " ms\n", BANNER_RELOADS,
	    h_now_ms() - t0);
	fflush(stdout);
	H_DAEMON_DOWN(&d);
	nl_free(&nl);
}
END_TEST

/* ------------------------------------------------------------------------- */

static TCase *
tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *
lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc;

	tc = tcase(s, "reload", 40);
	tcase_add_test(tc, test_session_keeps_echoing_across_20_reloads);
	tcase_add_test(tc, test_client_in_tight_loop_sees_no_failure_during_20_reloads);
	tcase_add_test(tc, test_certificate_swapped_on_disk_is_served_after_reload);
	tcase_add_loop_test(tc, test_broken_config_reload_keeps_serving_and_says_why,
	    0, 4);
	tcase_add_test(tc, test_reload_adds_and_removes_listeners_and_keeps_unchanged_socket);

	tc = tcase(s, "generations", 40);
	tcase_add_test(tc, test_master_fds_and_rss_stay_flat_across_100_reloads);
	tcase_add_test(tc, test_at_most_3_retired_generations_linger_oldest_are_killed);
	tcase_add_test(tc, test_retired_session_echoes_until_drain_timeout_then_closes);

	tc = tcase(s, "regressions", 40);
	tcase_add_test(tc, test_generation_cap_stops_the_oldest_with_close_notify_and_close_lines);
	tcase_add_test(tc, test_after_ready_no_connection_is_served_by_a_retired_generation);

	tc = tcase(s, "supervision", 30);
	tcase_add_test(tc, test_killed_worker_is_logged_and_replaced_with_backoff);
	tcase_add_test(tc,
	    test_worker_scribbling_shared_memory_cannot_move_the_master);
	tcase_add_test(tc, test_new_generation_worker_maps_only_its_own_census);
	tcase_add_test(tc, test_worker_sending_junk_control_messages_is_ignored);
	tcase_add_loop_test(tc,
	    test_listener_disconnected_by_a_worker_listens_again, 0, 2);
	tcase_add_test(tc, test_inherited_descriptors_reach_no_worker);
	tcase_add_test(tc, test_key_material_is_left_out_of_core_dumps);
	tcase_add_test(tc, test_workers_outlive_killed_master_only_to_drain);

	tc = tcase(s, "privileges", 30);
	tcase_add_test(tc, test_workers_drop_to_nobody_while_master_stays_root);
	tcase_add_test(tc, test_non_root_daemon_with_user_root_refuses_to_start);
	tcase_add_test(tc, test_root_start_without_user_runs_workers_as_default_user);
	tcase_add_test(tc,
	    test_root_start_with_group_only_runs_workers_as_default_user_in_it);
	tcase_add_test(tc, test_explicit_user_root_keeps_workers_root_and_warns);

	tc = tcase(s, "notify", 30);
	tcase_add_test(tc, test_notify_ready_reloading_ready_stopping_from_master);
	tcase_add_test(tc, test_watchdog_pings_every_half_watchdog_usec_from_master);
	tcase_add_test(tc, test_unread_notify_socket_never_blocks_the_master);
	tcase_add_test(tc, test_sigusr1_logs_master_and_per_worker_connection_counts);

	tc = tcase(s, "systemd", 30);
	tcase_add_test(tc, test_systemd_socket_activate_execs_daemon_on_first_connection);
	tcase_add_test(tc, test_units_pass_systemd_analyze_verify);
	tcase_add_test(tc, test_service_passes_systemd_analyze_security_threshold_30);
	tcase_add_test(tc, test_journald_gets_structured_fields_read_back_with_journalctl);
	return s;
}

int
main(void)
{
	char why[512];
	SRunner *sr;
	int failed;

	if (!h_env_ok(why, sizeof(why))) {
		fprintf(stderr, "check_lifecycle: skipped: %s\n", why);
		return 77;
	}
	sr = srunner_create(lifecycle_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
