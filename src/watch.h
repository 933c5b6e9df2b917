/*
 * watch: notice when files change, however they are replaced.
 *
 * Certificates rotate by being rewritten in place, by an atomic rename
 * (certbot), or by a Kubernetes Secret volume's symlink swap (dir/tls.crt ->
 * ..data/tls.crt, ..data -> ..2026_12_07_..., and the swap renames ..data).
 * So a file is watched through its directory (inotify), by name, and so is
 * every symlink on the way to it: a change to any of them counts.  Where
 * inotify is unavailable, the same names are compared by stat(2) when the
 * caller polls.  Leaf module: no logging.
 */
#ifndef TLS_ECHOD_WATCH_H
#define TLS_ECHOD_WATCH_H

#include <stdbool.h>
#include <stddef.h>

struct watch;

/**
 * watch_new(poll):
 * A watcher with nothing watched: inotify, or polling if ${poll} is set or
 * inotify is unavailable (watch_fd() then returns -1).  NULL if out of
 * memory.
 */
struct watch *watch_new(bool poll);

/**
 * watch_free(w):
 * Stop watching.  NULL is a no-op.
 */
void watch_free(struct watch *w);

/**
 * watch_fd(w):
 * The descriptor to poll for readability, or -1 when ${w} polls.
 */
int watch_fd(const struct watch *w);

/**
 * watch_set(w, paths, n):
 * Watch exactly ${paths} (absolute), replacing what was watched.  0, or -1
 * with errno set if nothing could be watched for one of them (its folder
 * is missing, say): the others are watched all the same.
 */
int watch_set(struct watch *w, const char *const *paths, size_t n);

/**
 * watch_changed(w, what, len):
 * Take what happened: with inotify, the events waiting on watch_fd(); when
 * polling, a fresh stat(2) of every watched name.  True if one of the
 * watched files (or a symlink to it) changed; the first name that did in
 * ${what}.  Call watch_set() again afterwards: symlinks may point elsewhere.
 */
bool watch_changed(struct watch *w, char *what, size_t len);

#endif
