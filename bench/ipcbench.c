/*
 * ipcbench: the round trip between two processes over an AF_UNIX
 * SOCK_SEQPACKET socket pair (the master <-> worker control channel's
 * kind), with a 48-byte request and a 72-byte answer: what asking a
 * key-holding process to sign (a hash in, an ECDSA P-256 signature out)
 * would add to a handshake in transport alone.
 *
 * usage: build/bench/ipcbench [ROUNDS]      (default 100000; at most 10^7)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 100000, i;
	unsigned char req[48], rsp[128];
	int sv[2];
	double t0, t;
	pid_t pid;

	if (rounds < 1 || rounds > 10000000) {
		fprintf(stderr, "usage: ipcbench [ROUNDS (1..10000000)]\n");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) {
		perror("socketpair");
		return 1;
	}
	if ((pid = fork()) < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(sv[0]);
		memset(rsp, 0x5a, sizeof(rsp));
		while (recv(sv[1], req, sizeof(req), 0) > 0)
			if (send(sv[1], rsp, 72, 0) != 72)
				break;
		_exit(0);
	}
	close(sv[1]);
	memset(req, 1, sizeof(req));
	t0 = now();
	for (i = 0; i < rounds; i++)
		if (send(sv[0], req, sizeof(req), 0) != (ssize_t)sizeof(req) ||
		    recv(sv[0], rsp, sizeof(rsp), 0) != 72) {
			perror("round trip");
			return 1;
		}
	t = now() - t0;
	close(sv[0]);
	waitpid(pid, NULL, 0);
	printf("ipcbench: %ld round trips, %.2f us each\n", rounds,
	    t / (double)rounds * 1e6);
	return 0;
}
