/*
 * fuzz_config: libFuzzer driver for the configuration loader (src/config.c):
 * cfg_load_string on arbitrary text, then cfg_free.
 *
 * Input: the configuration text (up to its first NUL, as libconfig reads
 * it).  It is loaded as "<scratch>/fuzz.conf", where <scratch> is a private
 * folder made once per process that holds empty files with the names the
 * seeds use (server.crt, ca.crt, ...: cfg_load only checks that TLS files
 * are readable, so loads get past those checks), two include files, and a
 * folder "dir.d" (libconfig 1.5 hands an included folder to flex, which
 * calls exit(2): the loader must refuse it first).
 *
 * @include opens files: only plain names inside the scratch folder are let
 * through ([A-Za-z0-9_-] and dots, not starting with a dot); any other
 * @include line is turned into a comment first, so the fuzzer never reads
 * /dev/zero, a FIFO, or anything else outside its folder.  File settings
 * (cert, key, ...) only meet access(2), which reads nothing.
 *
 * FUZZ_VERBOSE=1 in the environment prints each load's result.
 *
 * Beyond memory safety and leaks (ASan, UBSan, LeakSanitizer), the driver
 * checks: a failed load leaves a NUL-terminated message starting with the
 * file name in the caller's buffer (of a fuzzed size) and never writes past
 * it; a successful load has at least one listener, valid names, absolute
 * file paths, timeouts and limits within the documented ranges, and a
 * backend exactly for relay listeners.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char scratch[64];
static bool verbose; /* FUZZ_VERBOSE=1: print each result (corpus work) */
static char conf_path[128];

/* Files the seeds name; all empty. */
static const char *const empty_files[] = {
	"server.crt", "server.key", "ca.crt", "client.crt", "client.key",
	"crl.pem", "ticket.key", "backend-ca.crt", NULL,
};

/* Include files: a global setting and a listener group. */
static const char inc_globals[] = "workers = 2;\nshutdown_timeout = 1.5;\n";
static const char inc_listener[] =
    "{ name = \"inc\"; listen = \"127.0.0.1:9443\"; mode = \"echo\";\n"
    "  tls = { cert = \"server.crt\"; key = \"server.key\"; "
    "ca = \"ca.crt\"; }; }\n";

static void
die(const char *what)
{
	fprintf(stderr, "fuzz_config: %s: %s\n", what, strerror(errno));
	abort();
}

static void
cleanup(void)
{
	const char *const *f;
	char p[256];

	for (f = empty_files; *f != NULL; f++) {
		snprintf(p, sizeof(p), "%s/%s", scratch, *f);
		(void)unlink(p);
	}
	snprintf(p, sizeof(p), "%s/inc.conf", scratch);
	(void)unlink(p);
	snprintf(p, sizeof(p), "%s/listener.conf", scratch);
	(void)unlink(p);
	snprintf(p, sizeof(p), "%s/dir.d", scratch);
	(void)rmdir(p);
	(void)rmdir(scratch);
}

static void
write_file(const char *name, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", scratch, name);
	if ((f = fopen(p, "we")) == NULL)
		die(p);
	fputs(text, f);
	if (fclose(f) != 0)
		die(p);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	const char *const *f;

	(void)argc;
	(void)argv;
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	snprintf(scratch, sizeof(scratch), "%s/fuzz_config.XXXXXX",
	    tmp != NULL && tmp[0] == '/' && strlen(tmp) < 32 ? tmp : "/tmp");
	if (mkdtemp(scratch) == NULL)
		die("mkdtemp");
	/* Messages name the folder as realpath(3) has it. */
	{
		char *real = realpath(scratch, NULL);

		if (real == NULL || strlen(real) >= sizeof(scratch))
			die("realpath");
		memcpy(scratch, real, strlen(real) + 1);
		free(real);
	}
	atexit(cleanup);
	for (f = empty_files; *f != NULL; f++)
		write_file(*f, "");
	write_file("inc.conf", inc_globals);
	write_file("listener.conf", inc_listener);
	{
		char p[256];

		snprintf(p, sizeof(p), "%s/dir.d", scratch);
		if (mkdir(p, 0700) != 0)
			die(p);
	}
	snprintf(conf_path, sizeof(conf_path), "%s/fuzz.conf", scratch);
	return 0;
}

static bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

/*
 * Comment out every "@include" (any case) unless it is followed, after
 * blanks, by a quoted plain name: "name.conf", not starting with a dot.
 */
static void
tame_includes(char *s)
{
	char *p;

	for (p = s; (p = strchr(p, '@')) != NULL; p++) {
		const char *q = p + 1;
		bool ok;
		size_t n = 0;

		if (strncasecmp(q, "include", 7) != 0)
			continue;
		q += 7;
		while (*q == ' ' || *q == '\t')
			q++;
		ok = *q == '"';
		if (ok) {
			q++;
			while (name_char(q[n]))
				n++;
			ok = n > 0 && q[0] != '.' && q[n] == '"';
		}
		if (!ok)
			*p = '#';
	}
}

static void
check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_config: invariant broken: %s\n", what);
		abort();
	}
}

static void
check_file(const struct cfg_file *f, bool required)
{
	if (f->path == NULL) {
		check(!required, "a required file setting has no path");
		return;
	}
	check(f->path[0] == '/', "file path not absolute");
	check(f->setting != NULL && f->setting[0] != '\0',
	    "file setting without its name");
	check(f->file != NULL, "file setting without its config file");
}

static void
check_cfg(const struct cfg *c)
{
	size_t i, j;

	check(c->nlisteners >= 1 && c->nlisteners <= 256,
	    "listener count out of range");
	check(c->workers >= 1 && c->workers <= 256, "workers out of range");
	check(c->shutdown_timeout_ms <= 3600000, "shutdown_timeout range");
	check(c->drain_timeout_ms <= 86400000, "drain_timeout range");
	check(strcmp(c->path, conf_path) == 0, "path not kept");
	check_file(&c->ticket_key_file, false);
	for (i = 0; i < c->nlisteners; i++) {
		const struct cfg_listener *li = &c->listeners[i];

		check(li->name != NULL && li->name[0] != '\0' &&
		    strlen(li->name) <= CFG_NAME_MAX, "listener name");
		for (j = 0; li->name[j] != '\0'; j++)
			check(name_char(li->name[j]), "bad name character");
		for (j = 0; j < i; j++)
			check(strcmp(c->listeners[j].name, li->name) != 0,
			    "duplicate listener name accepted");
		check(li->listen != NULL, "listener without listen");
		check(li->addr.ss_family == AF_INET ||
		    li->addr.ss_family == AF_INET6, "listen family");
		check(li->addrlen > 0 && li->addrlen <= sizeof(li->addr),
		    "listen addrlen");
		check(li->banner == NULL || (strlen(li->banner) ==
		    li->banner_len && li->banner_len <= CFG_BANNER_MAX),
		    "banner length");
		check(li->handshake_timeout_ms >= 100 &&
		    li->handshake_timeout_ms <= 3600000, "handshake_timeout");
		check(li->idle_timeout_ms <= 86400000, "idle_timeout");
		check(li->max_connections >= 1 &&
		    li->max_connections <= 1000000, "max_connections");
		check(li->verify_depth <= 8, "verify_depth");
		check(li->min_version == 12 || li->min_version == 13,
		    "min_version");
		check_file(&li->cert, true);
		check_file(&li->key, true);
		check_file(&li->ca, true);
		for (j = 0; j < li->ncrl; j++)
			check_file(&li->crl[j], true);
		check((li->mode == CFG_MODE_RELAY) ==
		    (li->backend.address != NULL),
		    "backend present exactly for relay");
		if (li->backend.address != NULL) {
			const struct cfg_backend *b = &li->backend;

			check(b->addrlen > 0 && b->addrlen <= sizeof(b->addr),
			    "backend addrlen");
			check(b->connect_timeout_ms >= 100, "connect_timeout");
			if (b->tls) {
				check_file(&b->ca, true);
				check((b->cert.path == NULL) ==
				    (b->key.path == NULL), "cert without key");
				check(b->server_name != NULL,
				    "backend TLS without server_name");
			}
		}
		check(cfg_mode_name(li->mode)[0] != '?', "mode name");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *err;
	size_t errlen;
	struct cfg *c;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	tame_includes(text);
	/* Message buffers from 1 to 512 bytes: truncation must be clean.  The
	 * size depends on the input so that a crash reproduces. */
	errlen = 1 + (size * 31 + (size ? data[0] : 0)) % 512;
	if ((err = malloc(errlen)) == NULL) {
		free(text);
		return 0;
	}
	memset(err, 0x5a, errlen);
	c = cfg_load_string(text, conf_path, err, errlen);
	if (verbose)
		fprintf(stderr, "fuzz_config: %s\n", c != NULL ?
		    "loaded" : err);
	if (c == NULL) {
		check(memchr(err, '\0', errlen) != NULL,
		    "message not terminated");
		check(errlen < 8 || strncmp(err, scratch, errlen - 1 <
		    strlen(scratch) ? errlen - 1 : strlen(scratch)) == 0,
		    "message does not start with the file name");
	} else {
		check_cfg(c);
		cfg_free(c);
	}
	free(err);
	free(text);
	return 0;
}
