/*
 * harness: drive the real tls-echod from Check tests.
 *
 * Starts the daemon on loopback with a generated configuration (socket
 * activation done by the test itself, or the daemon's own bind), listens for
 * its sd_notify messages on an abstract socket, reads its stderr log, and
 * offers an OpenSSL client plus raw-socket helpers.  Every wait is bounded:
 * each function that waits takes a timeout in milliseconds and fails when it
 * passes.  Nothing here calls Check: functions return 0/-1 (or NULL) and put
 * a message in an error buffer, and the test decides.  The H_* assertion
 * macros at the end are the exception: they expand in the test file, which
 * includes <check.h>.
 *
 * Environment (set by test/run-tests.sh via the Makefile): TLS_ECHOD_BIN,
 * TEST_PKI, TEST_TMPDIR, all absolute.  Optional: TLS_ECHOD_WRAP, words put
 * before the daemon's command line (the valgrind pass, make check-valgrind).
 */
#ifndef TLS_ECHOD_TEST_HARNESS_H
#define TLS_ECHOD_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define H_ERR_MAX 1024
#define H_NOTIFY_MAX 16

/* --- environment ---------------------------------------------------------- */

/**
 * h_env_ok(why, len):
 * True if TLS_ECHOD_BIN, TEST_PKI and TEST_TMPDIR are set and usable;
 * otherwise false with the reason in ${why}.
 */
bool h_env_ok(char *why, size_t len);

/**
 * h_skip_under_valgrind(test, why):
 * True (after printing "${test}: skipped under valgrind: ${why}") when the
 * daemon runs under valgrind (TEST_VALGRIND=1, make check-valgrind): for the
 * few tests that measure speed, latency or CPU time, which valgrind's
 * 20-50x slowdown makes meaningless.  The test then returns at once.
 */
bool h_skip_under_valgrind(const char *test, const char *why);

/**
 * h_setup():
 * Per-test set-up, for a checked fixture: become a child subreaper (orphaned
 * workers are re-parented to us), ignore SIGPIPE, raise RLIMIT_NOFILE to its
 * hard limit, register the exit-time cleanup.
 */
void h_setup(void);

/**
 * h_teardown():
 * Kill (SIGKILL) every daemon still running and its workers, and reap them.
 */
void h_teardown(void);

/**
 * h_pki(name):
 * Absolute path of PKI file ${name} (e.g. "client.crt").  The string lives in
 * a ring of 32 static buffers: use it before 32 more calls.
 */
const char *h_pki(const char *name);

/**
 * h_tmp(name):
 * Absolute path of ${name} inside TEST_TMPDIR (same ring as h_pki).
 */
const char *h_tmp(const char *name);

/**
 * h_now_ms():
 * CLOCK_MONOTONIC in milliseconds.
 */
int64_t h_now_ms(void);

/**
 * h_run(argv, log, timeout_ms, err, errlen):
 * Run ${argv} (argv[0] found in PATH) with stdout and stderr appended to file
 * ${log}; returns its exit status, or -1 (cannot start, killed, or still
 * running after ${timeout_ms}: killed and reaped) with a message in ${err}.
 */
int h_run(const char *const *argv, const char *log, int timeout_ms,
    char *err, size_t errlen);

/**
 * h_spawn(argv, to_child, from_child, errlog):
 * Start ${argv} (found in PATH) with its stdin and stdout on pipes: the
 * non-blocking, close-on-exec ends we keep go to ${*to_child} and
 * ${*from_child}; its stderr is appended to file ${errlog}.  The pid, or -1.
 */
pid_t h_spawn(const char *const *argv, int *to_child, int *from_child,
    const char *errlog);

/**
 * h_wait_pid(pid, timeout_ms):
 * Reap child ${pid}: its exit status (128+signal if killed), or -1 if it
 * was still running after ${timeout_ms} (then it is killed and reaped).
 */
int h_wait_pid(pid_t pid, int timeout_ms);

/* --- the daemon ------------------------------------------------------------- */

struct h_daemon_opts {
	/* Test name, used in file names under TEST_TMPDIR. */
	const char *label;
	/*
	 * Whole configuration, with "@PORT@" and "@PKI@" replaced by the port
	 * and the PKI folder.  NULL: the harness writes
	 *   log = "stderr"; <globals>
	 *   listeners = ({ name = "echo"; listen = "127.0.0.1:@PORT@";
	 *       mode = "echo"; <listener_extra>
	 *       tls = { cert/key = server.*, ca = <ca or ca.crt> }; });
	 */
	const char *config;
	const char *globals;        /* e.g. "workers = 2; shutdown_timeout = 1;" */
	const char *listener_extra; /* e.g. "banner = \"hello\\n\";" */
	const char *ca;             /* absolute path; NULL: PKI ca.crt */
	/* Pass a listening socket as fd 3 (LISTEN_FDS=1); else the daemon binds. */
	bool activation;
	const char *fdname;         /* LISTEN_FDNAMES; NULL: "echo" */
	/*
	 * With activation: SO_SNDBUF/SO_RCVBUF on the listening socket, which
	 * accepted sockets inherit (systemd's SendBuffer=/ReceiveBuffer=);
	 * 0: kernel default with autotuning.
	 */
	int listen_sndbuf, listen_rcvbuf;
	bool no_notify;             /* leave NOTIFY_SOCKET unset */
	bool no_wait;               /* return right after exec, before READY */
	const char *const *env;     /* extra "KEY=value" strings, NULL-ended */
	/*
	 * Words put before the daemon's command line (and before
	 * $TLS_ECHOD_WRAP's), NULL-ended, argv[0] found in PATH; NULL: none.
	 * The command must exec the rest in place, keeping the pid (signals
	 * and notify credentials), e.g. { "unshare", "--time", "--boottime",
	 * "86400", NULL }.
	 */
	const char *const *wrap;
	int ready_timeout_ms;       /* 0: 10000 */
};

/* One datagram from the daemon's sd_notify. */
struct h_notify_msg {
	char text[512];
	pid_t pid; /* SCM_CREDENTIALS sender, 0 if none came */
};

struct h_daemon {
	pid_t pid;    /* the master (kept after it exits) */
	bool running; /* started and not reaped yet */
	int port;
	int notify_fd; /* -1 when no_notify */
	char notify_addr[108];
	char conf_path[4096];
	char log_path[4096];
	/* Every notify datagram received so far, in order. */
	struct h_notify_msg notify[H_NOTIFY_MAX];
	int nnotify;
	int exit_status; /* after h_daemon_stop/h_daemon_wait_exit */
	char err[H_ERR_MAX];
};

/**
 * h_daemon_start(d, o):
 * Write the configuration, start the daemon with ${o}, and (unless
 * ${o->no_wait}) wait for READY=1 from the master's pid on the notify socket,
 * or for its "ready:" log line with ${o->no_notify}.  0, or -1 with a message
 * (including the log's tail) in ${d->err}; the daemon is killed on failure.
 */
int h_daemon_start(struct h_daemon *d, const struct h_daemon_opts *o);

/**
 * h_notify_recv(fd, text, len, ret_pid):
 * Take one queued datagram from notify socket ${fd} (non-blocking): its text
 * (NUL-terminated) and its sender's pid from SCM_CREDENTIALS (0 if none);
 * passed fds are closed.  0, or -1 when none is queued.
 */
int h_notify_recv(int fd, char *text, size_t len, pid_t *ret_pid);

/**
 * h_notify_wait(d, needle, timeout_ms):
 * The first notify datagram (received before or during this call) whose
 * text contains ${needle}, or NULL after ${timeout_ms}.
 */
const struct h_notify_msg *h_notify_wait(struct h_daemon *d,
    const char *needle, int timeout_ms);

/**
 * h_daemon_signal(d, sig):
 * Send ${sig} to the master; 0 or -1.
 */
int h_daemon_signal(struct h_daemon *d, int sig);

/**
 * h_daemon_wait_exit(d, timeout_ms):
 * Reap the master within ${timeout_ms}: its exit status (128+signal if
 * killed), also in ${d->exit_status}; -1 on timeout (it keeps running).
 */
int h_daemon_wait_exit(struct h_daemon *d, int timeout_ms);

/**
 * h_daemon_stop(d, timeout_ms):
 * SIGTERM, then h_daemon_wait_exit.  On timeout the daemon and its workers
 * are killed with SIGKILL and -1 is returned.
 */
int h_daemon_stop(struct h_daemon *d, int timeout_ms);

/**
 * h_daemon_kill(d):
 * SIGKILL the workers and the master and reap what we can.  Idempotent.
 */
void h_daemon_kill(struct h_daemon *d);

/**
 * h_children_of(ppid, pids, max):
 * The pids of processes whose parent is ${ppid} (from /proc/PID/stat), at
 * most ${max} stored; returns how many exist.
 */
int h_children_of(pid_t ppid, pid_t *pids, int max);

/**
 * h_proc_ppid(pid, state):
 * The parent of ${pid} and its state letter ('Z': zombie) in ${*state}
 * (may be NULL), or -1 if there is no such process.
 */
pid_t h_proc_ppid(pid_t pid, char *state);

/**
 * h_daemon_workers(d, pids, max, want, timeout_ms):
 * Wait until the master has ${want} children and store them; returns the
 * count found (less than ${want} on timeout).
 */
int h_daemon_workers(const struct h_daemon *d, pid_t *pids, int max,
    int want, int timeout_ms);

/**
 * h_proc_rss_kb(pid):
 * VmRSS of ${pid} in KiB, or -1.
 */
long h_proc_rss_kb(pid_t pid);

/**
 * h_pid_gone(pid):
 * True if no process ${pid} exists, not even a zombie: kill(pid, 0) fails
 * with ESRCH.  (An orphan that exited is our zombie until we reap it, so a
 * worker its master did not reap shows up here; h_teardown reaps it.)
 */
bool h_pid_gone(pid_t pid);

/* --- the daemon's log --------------------------------------------------------- */

/**
 * h_log_wait(d, timeout_ms, line, linelen, needle, ...):
 * Wait until a log line contains every NULL-terminated ${needle}.  A line is
 * matched with one space appended, so "KEY=value " matches a whole value
 * even at the end of the line.  0 with the line (no newline) in ${line}
 * (may be NULL), or -1 on timeout.
 */
int h_log_wait(const struct h_daemon *d, int timeout_ms, char *line,
    size_t linelen, ...) __attribute__((sentinel));

/**
 * h_log_count(d, needle, ...):
 * How many log lines contain every NULL-terminated ${needle} right now.
 */
int h_log_count(const struct h_daemon *d, ...) __attribute__((sentinel));

/**
 * h_log_wait_count(d, want, timeout_ms, needle, ...):
 * Wait until at least ${want} log lines contain every needle; returns the
 * count at that point or when ${timeout_ms} passed.
 */
int h_log_wait_count(const struct h_daemon *d, int want, int timeout_ms, ...)
    __attribute__((sentinel));

/**
 * h_log_tail(d, buf, len):
 * The last bytes of the log (for failure messages); returns ${buf}.
 */
char *h_log_tail(const struct h_daemon *d, char *buf, size_t len);

/**
 * h_log_line_pid(line):
 * The pid in a "tls-echod[PID]: ..." line, or -1.
 */
pid_t h_log_line_pid(const char *line);

/* --- sockets ------------------------------------------------------------------ */

/**
 * h_free_port():
 * A loopback TCP port that was free a moment ago (bind to 0, then close).
 */
int h_free_port(void);

/**
 * h_tcp_connect(port, timeout_ms):
 * A non-blocking, close-on-exec TCP socket connected to 127.0.0.1:${port},
 * or -1.
 */
int h_tcp_connect(int port, int timeout_ms);

/**
 * h_peer_tag(fd, buf, len):
 * "PEER_ADDR=127.0.0.1:N " for socket ${fd}'s local address: what the
 * daemon logs for this client, with the space that ends the value.
 */
char *h_peer_tag(int fd, char *buf, size_t len);

/**
 * h_fd_write_all(fd, buf, len, timeout_ms):
 * Write all of ${buf} to non-blocking ${fd} (socket or pipe); 0 or -1.
 */
int h_fd_write_all(int fd, const void *buf, size_t len, int timeout_ms);

/**
 * h_fd_wait_closed(fd, timeout_ms):
 * Read and discard until the peer closes (EOF or reset): 0, or -1 if it is
 * still open after ${timeout_ms}.
 */
int h_fd_wait_closed(int fd, int timeout_ms);

/**
 * h_fd_read_until(fd, buf, len, needle, timeout_ms):
 * Read from non-blocking ${fd} into ${buf} (kept NUL-terminated) until it
 * holds ${needle} (NULL: until EOF), EOF, ${len}-1 bytes or ${timeout_ms};
 * returns the number of bytes in ${buf}.
 */
size_t h_fd_read_until(int fd, char *buf, size_t len, const char *needle,
    int timeout_ms);

/**
 * h_fd_is_open(fd):
 * True if nothing says ${fd}'s peer has closed: no EOF, reset or error is
 * pending (pending data is left unread).
 */
bool h_fd_is_open(int fd);

/* --- OpenSSL client ------------------------------------------------------------- */

struct h_tls_opts {
	const char *cert, *key; /* absolute; NULL: no client certificate */
	const char *ca;         /* to verify the server; NULL: PKI ca.crt */
	int min_version, max_version; /* e.g. TLS1_2_VERSION; 0: default */
	const char *cipher_list;      /* TLS 1.2 and below (SSL_set_cipher_list) */
	const char *ciphersuites;     /* TLS 1.3 */
	bool set_security_level;
	int security_level;
	int sndbuf, rcvbuf; /* socket buffer sizes before connect; 0: default */
	int timeout_ms;     /* for the TCP connect and the handshake; 0: 5000 */
	SSL_SESSION *session; /* offer to resume this session; NULL: none */
	uint64_t ssl_options; /* SSL_CTX_set_options() bits (SSL_OP_NO_TICKET) */
};

struct h_tls {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	int local_port;
	char peer_tag[48]; /* "PEER_ADDR=127.0.0.1:N " once TCP connected */
	char err[H_ERR_MAX];
};

/**
 * h_tls_connect(c, port, o):
 * TCP connect to 127.0.0.1:${port} and run a TLS handshake (the server must
 * verify for "localhost" against ${o->ca}).  0, or -1 with a message in
 * ${c->err}; either way call h_tls_close(c).  With TLS 1.3 a refused client
 * certificate shows up only later: see h_tls_refused().
 */
int h_tls_connect(struct h_tls *c, int port, const struct h_tls_opts *o);

/**
 * h_tls_session(c):
 * The session to resume later (after a round-trip, for TLS 1.3 tickets
 * arrive after the handshake); free with SSL_SESSION_free.  NULL if none.
 */
SSL_SESSION *h_tls_session(struct h_tls *c);

/**
 * h_tls_reused(c):
 * True if the handshake resumed the offered session.
 */
bool h_tls_reused(const struct h_tls *c);

/**
 * h_tls_close(c):
 * Send close_notify (best effort, non-blocking), close and free everything.
 * Safe on a zeroed or failed ${c}, and idempotent.
 */
void h_tls_close(struct h_tls *c);

/**
 * h_tls_write_all(c, buf, len, timeout_ms):
 * 0 when all of ${buf} is written, -1 (message in ${c->err}).
 */
int h_tls_write_all(struct h_tls *c, const void *buf, size_t len,
    int timeout_ms);

/**
 * h_tls_read_exact(c, buf, len, timeout_ms):
 * 0 when exactly ${len} bytes were read, -1 (EOF, error, timeout).
 */
int h_tls_read_exact(struct h_tls *c, void *buf, size_t len, int timeout_ms);

/**
 * h_tls_roundtrip(c, buf, len, timeout_ms):
 * Write ${buf}, read ${len} bytes back and compare: 0 if identical.
 */
int h_tls_roundtrip(struct h_tls *c, const void *buf, size_t len,
    int timeout_ms);

/**
 * h_tls_pump(c, data, len, woff, out, roff, timeout_ms):
 * Write data[*woff..len) and read into out[*roff..len) at the same time (the
 * echo's back-pressure would deadlock write-then-read) until all ${len}
 * bytes came back; ${*woff} and ${*roff} advance.  0 or -1.
 */
int h_tls_pump(struct h_tls *c, const unsigned char *data, size_t len,
    size_t *woff, unsigned char *out, size_t *roff, int timeout_ms);

/**
 * h_tls_write_until_blocked(c, data, len, woff, stall_ms, timeout_ms):
 * Write data[*woff..len) without reading until no byte went out for
 * ${stall_ms} (returns 0) or everything was written (returns 1); -1 on
 * error or after ${timeout_ms}.  Continue later with h_tls_pump.
 */
int h_tls_write_until_blocked(struct h_tls *c, const unsigned char *data,
    size_t len, size_t *woff, int stall_ms, int timeout_ms);

/**
 * h_tls_refused(c, timeout_ms):
 * After a successful h_tls_connect, try one round-trip: 1 if the server
 * ended the session instead of echoing (alert, EOF, reset), 0 if the echo
 * worked, -1 if nothing happened within ${timeout_ms}.
 */
int h_tls_refused(struct h_tls *c, int timeout_ms);

/**
 * h_tls_wait_eof(c, timeout_ms):
 * Wait for the server to end the session: 0 on close_notify, 2 on a TCP
 * EOF or reset without close_notify, 1 if application data came instead,
 * -1 on timeout or another error (message in ${c->err}).
 */
int h_tls_wait_eof(struct h_tls *c, int timeout_ms);

/**
 * h_tls_version(c):
 * "TLSv1.3", "TLSv1.2", ... of an established session.
 */
const char *h_tls_version(const struct h_tls *c);

/**
 * h_client_hello(buf, len, o):
 * A real ClientHello (the first flight as OpenSSL would send it with ${o}),
 * captured through memory BIOs; its length, or 0.
 */
size_t h_client_hello(unsigned char *buf, size_t len,
    const struct h_tls_opts *o);

/* --- data ------------------------------------------------------------------------ */

/**
 * h_fill_pattern(buf, len, seed):
 * Fill ${buf} with a pseudo-random pattern determined by ${seed}.
 */
void h_fill_pattern(unsigned char *buf, size_t len, uint64_t seed);

/**
 * h_first_diff(a, b, len):
 * Offset of the first differing byte, or ${len} if equal.
 */
size_t h_first_diff(const unsigned char *a, const unsigned char *b,
    size_t len);

/* --- shared by the integration suites ------------------------------------ */

#define H_LOG_MS 5000 /* H_LOG_EXPECT's bound for a log line to appear */

/**
 * h_client_opts(name, version):
 * Client options with certificate ${name}.crt and key ${name}.key from the
 * PKI (NULL: no certificate), pinned to ${version} (e.g. TLS1_2_VERSION;
 * 0: whatever both sides prefer).  The paths live in h_pki()'s ring.
 */
struct h_tls_opts h_client_opts(const char *name, int version);

/**
 * h_daemon_up(d, label, globals, listener_extra):
 * h_daemon_start() with the harness's default configuration (one echo
 * listener; ${globals} and ${listener_extra} may be NULL) and socket
 * activation.  0, or -1 with a message in ${d->err}.
 */
int h_daemon_up(struct h_daemon *d, const char *label, const char *globals,
    const char *listener_extra);

/**
 * h_daemon_down(d, why, len):
 * SIGTERM, and require exit status 0 within 10 s.  The daemon is gone
 * afterwards either way (killed if need be).  0, or -1 with the status and
 * the log's tail in ${why}.
 */
int h_daemon_down(struct h_daemon *d, char *why, size_t len);

/**
 * h_proc_fd_count(pid):
 * How many file descriptors ${pid} has open (entries of /proc/PID/fd), or
 * -1 if it cannot be read.
 */
int h_proc_fd_count(pid_t pid);

/* Check assertions (they need <check.h> where they expand). */

/* h_daemon_up() or fail the test with the reason. */
#define H_DAEMON_UP(d, label, globals, extra) \
	ck_assert_msg(h_daemon_up((d), (label), (globals), (extra)) == 0, \
	    "daemon did not start: %s", (d)->err)

/* h_daemon_down() or fail the test with the status and the log's tail. */
#define H_DAEMON_DOWN(d) do { \
	char why_[2048]; \
	ck_assert_msg(h_daemon_down((d), why_, sizeof(why_)) == 0, "%s", \
	    why_); \
} while (0)

/*
 * Wait up to H_LOG_MS for a log line of daemon ${d} holding every needle
 * (at least one), copy it to char array ${line}, or fail the test with the
 * log's tail.
 */
#define H_LOG_EXPECT(d, line, ...) do { \
	char tail_[1500]; \
	ck_assert_msg(h_log_wait((d), H_LOG_MS, (line), sizeof(line), \
	    __VA_ARGS__, NULL) == 0, "no log line with all of [%s] within " \
	    "%d ms; log ends:\n%s", #__VA_ARGS__, H_LOG_MS, \
	    h_log_tail((d), tail_, sizeof(tail_))); \
} while (0)

#endif
