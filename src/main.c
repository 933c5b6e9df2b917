/*
 * main: command line.  Everything else lives in master (and below).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "master.h"
#include "tlsctx.h"
#include "version.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: tls-echod [-t] [-c FILE]\n"
	    "       tls-echod -V | -h\n"
	    "\n"
	    "A mutual-TLS front door: clients with a certificate from the\n"
	    "configured CA (and allowed by its rules) are relayed to a backend,\n"
	    "or echoed back.  See tls-echod(8) and tls-echod.conf(5).\n"
	    "\n"
	    "  -c FILE  configuration file (default %s)\n"
	    "  -t       check the configuration and all TLS material, then exit\n"
	    "           (0: usable; 1: the first problem as file:line: message)\n"
	    "  -V       print the version and the mbedTLS in use\n"
	    "  -h       print this help\n"
	    "\n"
	    "Runs in the foreground (systemd Type=notify).  SIGTERM or SIGINT:\n"
	    "stop accepting, let live connections finish, exit 0.\n",
	    CFG_DEFAULT_PATH);
}

int
main(int argc, char **argv)
{
	const char *path = CFG_DEFAULT_PATH;
	char err[1024];
	struct cfg *c;
	int opt, check = 0;

	while ((opt = getopt(argc, argv, "c:thV")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("tls-echod %s\nmbedTLS %s (%s)\n"
			    "TLS 1.3 ticket clock: %s\n",
			    TLS_ECHOD_VERSION, tlsctx_library_version(),
			    TLS_ECHOD_MBEDTLS_ORIGIN, tlsctx_ticket_clock());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "tls-echod: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		return 2;
	}
	if ((c = cfg_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "tls-echod: %s\n", err);
		return 1;
	}
	if (check) {
		int ret = master_check(c, stdout, err, sizeof(err));

		if (ret == 0)
			printf("%s: configuration OK (%zu listener(s), %u "
			    "worker(s))\n", path, c->nlisteners, c->workers);
		else
			fprintf(stderr, "tls-echod: %s\n", err);
		cfg_free(c);
		return ret == 0 ? 0 : 1;
	}
	/* Ownership of c moves to the master. */
	return master_run(c);
}
