/*
 * sandbox: the seccomp filter a worker runs under once it is set up.
 *
 * A worker parses hostile bytes; if one is ever taken over, the filter
 * limits it to what the event loop needs: the sockets it already holds,
 * connects to the configured backends, log records, memory.  No exec, no
 * open of files, no ptrace, no new processes or threads, no executable
 * memory, no socket family beyond those the backends use.
 * Anything else kills the whole worker at once (SIGSYS); the master logs it
 * and starts a new one.
 *
 * Built with libseccomp.  Never logs: errors come back in the caller's
 * buffer.  TLS_ECHOD_SANDBOX=0 in the environment turns the filter off
 * whatever the configuration says (valgrind's own system calls would not
 * pass it: make check-valgrind sets it).
 */
#ifndef TLS_ECHOD_SANDBOX_H
#define TLS_ECHOD_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#define SANDBOX_ENV "TLS_ECHOD_SANDBOX"

/* What a worker of one configuration needs beyond the common set. */
struct sandbox_policy {
	bool tcp4, tcp6;   /* relay backends it connects to, by family */
	bool unix_stream;  /* ... and unix-socket backends */
};

/**
 * sandbox_env_disabled():
 * True if the environment turns the filter off (TLS_ECHOD_SANDBOX=0).
 */
bool sandbox_env_disabled(void);

/**
 * sandbox_enter(p, err, errlen):
 * Load the filter for policy ${p} into this (single-threaded) process; it
 * holds until the process exits and cannot be lifted.  Also sets
 * no_new_privs.  0, or -1 with a message in ${err} (the process is then
 * unfiltered).
 */
int sandbox_enter(const struct sandbox_policy *p, char *err, size_t errlen);

#ifdef TLS_ECHOD_TEST_HOOKS
/* Test builds only: what sandbox_test_violate() tries. */
enum sandbox_test_call {
	SANDBOX_TEST_EXECVE = 1,  /* execve() of a path that does not exist */
	SANDBOX_TEST_OPENAT,      /* openat() of /dev/null, read-write */
	SANDBOX_TEST_PTRACE,      /* ptrace(PTRACE_PEEKDATA) of no process */
	SANDBOX_TEST_PACKET,      /* an AF_PACKET socket */
	SANDBOX_TEST_INET,        /* an AF_INET stream socket */
	SANDBOX_TEST_MMAP_EXEC,   /* an executable anonymous mapping */
	SANDBOX_TEST_FORK,        /* fork() */
	SANDBOX_TEST_ABORT,       /* abort(): allowed, dies by SIGABRT */
	SANDBOX_TEST_SHUT_RD,     /* shutdown(SHUT_RD) on its listening sockets */
	SANDBOX_TEST_SOCKET_SCTP, /* socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) */
	SANDBOX_TEST_ASAN = 100,  /* a heap overflow, for ASan builds */
};

/**
 * sandbox_test_violate(what):
 * Make system call ${what} (enum sandbox_test_call).  Under the filter the
 * process dies by SIGSYS; without it each call is harmless (it fails, or
 * its result is released at once) and this returns its errno (0: it
 * worked).  Compiled only into test builds (-DTLS_ECHOD_TEST_HOOKS).
 */
int sandbox_test_violate(int what);
#endif

#endif
