/*
 * master: the supervising process.
 *
 * Loads all TLS material, opens (or receives from systemd) the listening
 * sockets, forks the workers and watches them; owns signals and sd_notify.
 * It never touches client traffic.
 */
#ifndef TLS_ECHOD_MASTER_H
#define TLS_ECHOD_MASTER_H

#include <stdio.h>

#include "config.h"

/**
 * master_check(c, out, err, errlen):
 * What "tls-echod -t" does beyond parsing: load every listener's TLS material
 * and resolve the user and group.  Prints a summary to ${out} (NULL: quiet);
 * 0, or -1 with a "file:line: setting: problem" message in ${err}.
 */
int master_check(const struct cfg *c, FILE *out, char *err, size_t errlen);

/**
 * master_run(c):
 * Run the daemon with configuration ${c} (ownership moves to the master)
 * until stopped.  Returns the process exit status.
 */
int master_run(struct cfg *c);

#endif
