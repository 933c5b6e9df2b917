/*
 * sandbox: the seccomp filter a worker runs under once it is set up.
 *
 * The list was measured, not guessed: strace -f of every integration suite
 * (echo, relay over TCP, TLS and unix sockets, resumption, limits, hostile
 * peers, reloads, SIGUSR1, malloc_trim, journald), counting the calls a
 * worker makes after its first epoll_wait.  Set-up (privilege drop, epoll,
 * signalfd, listeners, the RNG re-seed) happens before the filter, so it
 * needs none of those calls.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <seccomp.h>

#ifdef TLS_ECHOD_TEST_HOOKS
#include <sys/ptrace.h>
#include <sys/wait.h>
#endif

/* Sanitizer builds: their runtime's calls are allowed too (see below). */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif

#define SOCK_TYPE_MASK 0xf /* socket()'s type without SOCK_NONBLOCK etc. */

/*
 * Every worker, without argument checks.  Each one is either cheap to
 * allow or could not be narrowed by its arguments.
 */
static const char *const common[] = {
	/* the event loop */
	"epoll_wait", "epoll_pwait", "epoll_ctl",
	"read",        /* signalfd */
	"write",       /* log records on stderr */
	"writev",      /* glibc's fatal messages (fortify, stack protector) */
	"accept4", "recvfrom", "close",
	"getsockname", /* the PROXY header's destination address */
	"getsockopt",  /* SO_ERROR of a backend connect */
	/* memory: malloc, malloc_trim, mbedTLS buffers */
	"brk", "munmap", "mremap", "madvise",
	/* time and randomness: mbedTLS re-seeds from getrandom(2) */
	"clock_gettime", "gettimeofday", "time", "getrandom",
	/* log lines name the pid; abort() needs gettid */
	"getpid", "gettid",
	/* signals arrive through signalfd; these are for the kernel's and
	 * libc's own paths */
	"rt_sigprocmask", "rt_sigreturn", "restart_syscall",
	"exit", "exit_group",
	NULL,
};

static int
fail(char *err, size_t errlen, const char *what, int rc)
{
	snprintf(err, errlen, "seccomp: %s: %s", what, strerror(-rc));
	return -1;
}

/* Allow ${name} when ${n} argument checks hold (all of them). */
static int
allow_if(scmp_filter_ctx ctx, const char *name, unsigned n,
    const struct scmp_arg_cmp *cmp, char *err, size_t errlen)
{
	int nr = seccomp_syscall_resolve_name(name), rc;

	if (nr == __NR_SCMP_ERROR) {
		snprintf(err, errlen, "seccomp: no system call \"%s\"", name);
		return -1;
	}
	if (nr < 0)
		return 0; /* not on this architecture (e.g. epoll_wait) */
	rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);
	return rc == 0 ? 0 : fail(err, errlen, name, rc);
}

static int
allow(scmp_filter_ctx ctx, const char *name, char *err, size_t errlen)
{
	return allow_if(ctx, name, 0, NULL, err, errlen);
}

/* socket(${family}, ${type} [| SOCK_NONBLOCK | SOCK_CLOEXEC], 0): the
 * default protocol only (no SCTP or MPTCP streams, no module loading). */
static int
allow_socket(scmp_filter_ctx ctx, int family, int type, char *err,
    size_t errlen)
{
	const struct scmp_arg_cmp c[] = {
		SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)family),
		SCMP_A1(SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK, (scmp_datum_t)type),
		SCMP_A2(SCMP_CMP_EQ, 0),
	};

	return allow_if(ctx, "socket", 3, c, err, errlen);
}

/* setsockopt(any, ${level}, ${name}, ...) */
static int
allow_sockopt(scmp_filter_ctx ctx, int level, int name, char *err,
    size_t errlen)
{
	const struct scmp_arg_cmp c[] = {
		SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)level),
		SCMP_A2(SCMP_CMP_EQ, (scmp_datum_t)name),
	};

	return allow_if(ctx, "setsockopt", 2, c, err, errlen);
}

#ifdef SANDBOX_SANITIZED
/*
 * ASan/UBSan runtime, sanitizer (test) builds only.  Measured like the rest
 * (strace of a worker making a report): the report opens its log_path file
 * (open, O_WRONLY|O_CREAT), libbacktrace opens the binary, the libraries and
 * their debug files to symbolize (openat, O_RDONLY; readlink, newfstatat,
 * fcntl F_SETFD), isatty() on the log (ioctl TCGETS), one futex wake; its
 * SIGABRT handler (abort()) switches stacks with sigaltstack.  Files
 * opened read-write are still refused, and nothing runs a symbolizer
 * program: exec and fork stay forbidden here too.
 */
static int
allow_sanitizer(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	const struct scmp_arg_cmp open_ro[] = {
		SCMP_A1(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY),
	};
	const struct scmp_arg_cmp open_wo[] = {
		SCMP_A1(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_WRONLY),
	};
	const struct scmp_arg_cmp openat_ro[] = {
		SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY),
	};
	const struct scmp_arg_cmp openat_wo[] = {
		SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE, O_WRONLY),
	};
	const struct scmp_arg_cmp setfd[] = { SCMP_A1(SCMP_CMP_EQ, F_SETFD) };
	const struct scmp_arg_cmp tcgets[] = { SCMP_A1(SCMP_CMP_EQ, TCGETS) };

	return allow_if(ctx, "open", 1, open_ro, err, errlen) ||
	    allow_if(ctx, "open", 1, open_wo, err, errlen) ||
	    allow_if(ctx, "openat", 1, openat_ro, err, errlen) ||
	    allow_if(ctx, "openat", 1, openat_wo, err, errlen) ||
	    allow_if(ctx, "fcntl", 1, setfd, err, errlen) ||
	    allow_if(ctx, "ioctl", 1, tcgets, err, errlen) ||
	    allow(ctx, "readlink", err, errlen) ||
	    allow(ctx, "newfstatat", err, errlen) ||
	    allow(ctx, "fstat", err, errlen) ||
	    allow(ctx, "futex", err, errlen) ||
	    allow(ctx, "sigaltstack", err, errlen) ||
	    /* Newer runtimes (Debian 13's GCC 14 and clang 19) and a
	     * runtime under load: stat and readlink by their *at / statx
	     * forms, limits, and the backoff of its internal locks.  One
	     * of these killed a report on a fresh Debian 13, intermittently
	     * (the kernel had rate-limited the audit line). */
	    allow(ctx, "statx", err, errlen) ||
	    allow(ctx, "readlinkat", err, errlen) ||
	    allow(ctx, "prlimit64", err, errlen) ||
	    allow(ctx, "sched_yield", err, errlen) ||
	    allow(ctx, "nanosleep", err, errlen) ||
	    allow(ctx, "clock_nanosleep", err, errlen) ? -1 : 0;
}
#endif

/* Backend connects: socket, connect and what net_connect() sets. */
static int
allow_backends(scmp_filter_ctx ctx, const struct sandbox_policy *p,
    char *err, size_t errlen)
{
	if (!p->tcp4 && !p->tcp6 && !p->unix_stream)
		return 0; /* echo only: no socket() and no connect() at all */
	if ((p->tcp4 && allow_socket(ctx, AF_INET, SOCK_STREAM, err,
	    errlen) != 0) ||
	    (p->tcp6 && allow_socket(ctx, AF_INET6, SOCK_STREAM, err,
	    errlen) != 0) ||
	    (p->unix_stream && allow_socket(ctx, AF_UNIX, SOCK_STREAM, err,
	    errlen) != 0) ||
	    allow(ctx, "connect", err, errlen) != 0)
		return -1;
	/* net_keepalive() tries these on unix sockets too (and fails). */
	return allow_sockopt(ctx, IPPROTO_TCP, TCP_NODELAY, err, errlen) ||
	    allow_sockopt(ctx, SOL_SOCKET, SO_KEEPALIVE, err, errlen) ||
	    allow_sockopt(ctx, IPPROTO_TCP, TCP_KEEPIDLE, err, errlen) ||
	    allow_sockopt(ctx, IPPROTO_TCP, TCP_KEEPINTVL, err, errlen) ||
	    allow_sockopt(ctx, IPPROTO_TCP, TCP_KEEPCNT, err, errlen) ? -1 : 0;
}

int
sandbox_enter(const struct sandbox_policy *p, char *err, size_t errlen)
{
	scmp_filter_ctx ctx;
	/* Sends only on connected sockets: no destination address (TLS
	 * records, the control socket, journald's socket, which log.c
	 * connected before the filter). */
	const struct scmp_arg_cmp sendto_connected[] = {
		SCMP_A4(SCMP_CMP_EQ, 0),
	};
	/*
	 * Half-closes only.  shutdown(SHUT_RD) (or RDWR) on a listening
	 * socket, which the master, every worker and systemd share, would
	 * stop it listening for all of them, after this worker's death too.
	 */
	const struct scmp_arg_cmp half_close[] = {
		SCMP_A1(SCMP_CMP_EQ, SHUT_WR),
	};
	/* No executable memory: code cannot be written, then run. */
	const struct scmp_arg_cmp no_exec[] = {
		SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
	};
	/* abort(): assert(3), _FORTIFY_SOURCE and the stack protector die by
	 * SIGABRT, on ourselves only; not by SIGSYS, which would mislead. */
	const struct scmp_arg_cmp abort_self[] = {
		SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()),
		SCMP_A2(SCMP_CMP_EQ, SIGABRT),
	};
	const struct scmp_arg_cmp abort_action[] = {
		SCMP_A0(SCMP_CMP_EQ, SIGABRT),
	};
	const char *const *name;
	int rc;

	/*
	 * Once and before the filter: glibc reads /etc/localtime the first
	 * time a time is converted (mbedTLS checks certificate dates with
	 * gmtime_r).  The master has done it already; this makes sure.
	 */
	tzset();
	/* Whole process: a forbidden call must not leave a half-worker. */
	if ((ctx = seccomp_init(SCMP_ACT_KILL_PROCESS)) == NULL) {
		snprintf(err, errlen, "seccomp: cannot create a filter");
		return -1;
	}
	for (name = common; *name != NULL; name++)
		if (allow(ctx, *name, err, errlen) != 0)
			goto err;
#ifdef SANDBOX_SANITIZED
	if (allow_sanitizer(ctx, err, errlen) != 0)
		goto err;
#endif
	if (allow_if(ctx, "sendto", 1, sendto_connected, err, errlen) != 0 ||
	    allow_if(ctx, "mmap", 1, no_exec, err, errlen) != 0 ||
	    allow_if(ctx, "mprotect", 1, no_exec, err, errlen) != 0 ||
	    allow_if(ctx, "tgkill", 2, abort_self, err, errlen) != 0 ||
	    allow_if(ctx, "rt_sigaction", 1, abort_action, err, errlen) != 0 ||
	    allow_if(ctx, "shutdown", 1, half_close, err, errlen) != 0 ||
	    allow_backends(ctx, p, err, errlen) != 0)
		goto err;
	/* The busy calls first: every system call runs the filter. */
	(void)seccomp_syscall_priority(ctx, SCMP_SYS(sendto), 255);
	(void)seccomp_syscall_priority(ctx, SCMP_SYS(recvfrom), 254);
	(void)seccomp_syscall_priority(ctx, SCMP_SYS(epoll_ctl), 253);
	(void)seccomp_syscall_priority(ctx, SCMP_SYS(epoll_wait), 252);
	/* No_new_privs is libseccomp's default (SCMP_FLTATR_CTL_NNP). */
	if ((rc = seccomp_load(ctx)) != 0) {
		fail(err, errlen, "cannot load the filter", rc);
		goto err;
	}
	seccomp_release(ctx);
	return 0;

err:
	seccomp_release(ctx);
	return -1;
}

bool
sandbox_env_disabled(void)
{
	const char *e = getenv(SANDBOX_ENV);

	return e != NULL && strcmp(e, "0") == 0;
}

#ifdef TLS_ECHOD_TEST_HOOKS
int
sandbox_test_violate(int what)
{
	int fd, e = 0;
	void *m;
	pid_t pid;

	errno = 0;
	switch (what) {
	case SANDBOX_TEST_EXECVE: {
		char *const argv[] = { NULL };

		(void)execve("/nonexistent/tls-echod-sandbox-test", argv, argv);
		return errno;
	}
	case SANDBOX_TEST_OPENAT:
		/* Read-write: sanitizer builds let their runtime open
		 * files for reading or writing only (see above). */
		if ((fd = openat(AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC)) < 0)
			return errno;
		close(fd);
		return 0;
	case SANDBOX_TEST_PTRACE:
		/* pid 0 is no process: ESRCH when unfiltered. */
		(void)ptrace(PTRACE_PEEKDATA, 0, NULL, NULL);
		return errno;
	case SANDBOX_TEST_PACKET:
	case SANDBOX_TEST_INET:
		fd = what == SANDBOX_TEST_INET ?
		    socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) :
		    socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return errno;
		close(fd);
		return 0;
	case SANDBOX_TEST_MMAP_EXEC:
		m = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return errno;
		munmap(m, 4096);
		return 0;
	case SANDBOX_TEST_FORK:
		if ((pid = fork()) < 0)
			return errno;
		if (pid == 0)
			_exit(0);
		(void)waitpid(pid, NULL, 0);
		return 0;
	case SANDBOX_TEST_ABORT:
		abort();
	case SANDBOX_TEST_SHUT_RD:
		/* What would stop the shared listening sockets for all. */
		for (fd = 0; fd < 64; fd++) {
			int acc = 0;
			socklen_t l = sizeof(acc);

			if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc,
			    &l) == 0 && acc && shutdown(fd, SHUT_RD) != 0)
				return errno;
		}
		return 0;
	case SANDBOX_TEST_SOCKET_SCTP:
		fd = socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP);
		e = fd < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
		return e;
	case SANDBOX_TEST_ASAN: {
		/* Read one byte past a heap block: an ASan report.  (A
		 * volatile size, or the compiler refuses the code; the
		 * address through a volatile integer, or UBSan's object-size
		 * check (GCC 14) reports it first and the report is not
		 * ASan's.) */
		volatile size_t n = 8;
		char *b = calloc(1, n);
		volatile uintptr_t at = (uintptr_t)b + n;

		if (b != NULL) {
			e = *(volatile char *)at;
			free(b);
		}
		return e;
	}
	default:
		return EINVAL;
	}
}
#endif
