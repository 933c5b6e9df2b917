/*
 * watch: notice when files change, however they are replaced.
 */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HOPS 16       /* symlinks followed per path */
#define MAX_NAMES 256     /* names watched in all */

/* Everything that replaces or rewrites a name in a directory. */
#define DIR_EVENTS (IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | \
	IN_CREATE | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

/* A name in a directory, and what stat(2) said of it (for polling). */
struct name {
	int wd;             /* inotify watch of its directory, -1 if none */
	char *dir, *base;
	bool seen;          /* polling: the fields below are set */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	mode_t mode;
};

struct watch {
	int fd;             /* inotify, or -1: poll */
	struct name *v;
	size_t n;
};

struct watch *
watch_new(bool poll)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->fd = poll ? -1 : inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	return w;
}

static void
names_clear(struct watch *w)
{
	size_t i;

	for (i = 0; i < w->n; i++) {
		free(w->v[i].dir);
		free(w->v[i].base);
	}
	free(w->v);
	w->v = NULL;
	w->n = 0;
}

void
watch_free(struct watch *w)
{
	if (w == NULL)
		return;
	names_clear(w);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}

int
watch_fd(const struct watch *w)
{
	return w->fd;
}

/* What lstat(2) says of dir/base now, into ${nm}. */
static void
name_stat(struct name *nm)
{
	char path[PATH_MAX];
	struct stat st;

	nm->seen = false;
	if (snprintf(path, sizeof(path), "%s/%s", nm->dir, nm->base) >=
	    (int)sizeof(path) || lstat(path, &st) != 0)
		return;
	nm->seen = true;
	nm->dev = st.st_dev;
	nm->ino = st.st_ino;
	nm->size = st.st_size;
	nm->mtime = st.st_mtim;
	nm->ctime = st.st_ctim;
	nm->mode = st.st_mode;
}

/* Watch name ${base} in ${dir} (once). */
static int
add_name(struct watch *w, const char *dir, const char *base)
{
	struct name *v, *nm;
	size_t i;

	for (i = 0; i < w->n; i++)
		if (strcmp(w->v[i].dir, dir) == 0 &&
		    strcmp(w->v[i].base, base) == 0)
			return 0;
	if (w->n >= MAX_NAMES) {
		errno = E2BIG;
		return -1;
	}
	if ((v = realloc(w->v, (w->n + 1) * sizeof(*v))) == NULL)
		return -1;
	w->v = v;
	nm = &v[w->n];
	memset(nm, 0, sizeof(*nm));
	nm->wd = -1;
	if ((nm->dir = strdup(dir)) == NULL ||
	    (nm->base = strdup(base)) == NULL) {
		free(nm->dir);
		free(nm->base);
		return -1;
	}
	w->n++;
	if (w->fd >= 0) {
		/* The directory itself (followed if a symlink): a rename or a
		 * rewrite of the name shows there. */
		nm->wd = inotify_add_watch(w->fd, dir, DIR_EVENTS);
		if (nm->wd < 0)
			return -1;
	}
	name_stat(nm);
	return 0;
}

/* Split absolute ${path} into ${dir} and ${base}; -1 if it has no slash. */
static int
split(const char *path, char *dir, char *base)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL || slash[1] == '\0')
		return -1;
	if (slash == path)
		strcpy(dir, "/");
	else {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	strcpy(base, slash + 1);
	return 0;
}

/* Every ancestor folder of ${path} that is a symlink (..data): its name. */
static int
add_symlinked_folders(struct watch *w, const char *path)
{
	char d[PATH_MAX], dir[PATH_MAX], base[PATH_MAX];
	struct stat st;
	int ret = 0;

	snprintf(d, sizeof(d), "%s", path);
	while (split(d, dir, base) == 0 && strcmp(dir, "/") != 0) {
		if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
			char pd[PATH_MAX], pb[PATH_MAX];

			if (split(dir, pd, pb) == 0 && add_name(w, pd, pb) != 0)
				ret = -1;
		}
		snprintf(d, sizeof(d), "%s", dir);
	}
	return ret;
}

/* ${path}, and every symlink that leads from it to the file. */
static int
add_path(struct watch *w, const char *path)
{
	char p[PATH_MAX], dir[PATH_MAX], base[PATH_MAX], t[PATH_MAX];
	struct stat st;
	int hops, ret = 0;

	if (strlen(path) >= sizeof(p) || path[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	snprintf(p, sizeof(p), "%s", path);
	for (hops = 0; hops < MAX_HOPS; hops++) {
		ssize_t n;

		if (split(p, dir, base) != 0)
			return -1;
		if (add_name(w, dir, base) != 0 ||
		    add_symlinked_folders(w, p) != 0)
			ret = -1;
		if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode))
			break;
		if ((n = readlink(p, t, sizeof(t) - 1)) <= 0)
			break;
		t[n] = '\0';
		if (t[0] == '/')
			snprintf(p, sizeof(p), "%s", t);
		else if ((size_t)snprintf(p, sizeof(p), "%s/%s",
		    strcmp(dir, "/") == 0 ? "" : dir, t) >= sizeof(p))
			break;
	}
	return ret;
}

int
watch_set(struct watch *w, const char *const *paths, size_t n)
{
	struct name *old = w->v;
	size_t nold = w->n, i, k;
	int ret = 0, saved = 0;

	/*
	 * The same inotify instance throughout: what changed while the
	 * caller was busy (reloading) still waits in its queue.  Folders
	 * watched before get the same watch again; those no name needs any
	 * more are dropped afterwards.
	 */
	w->v = NULL;
	w->n = 0;
	for (i = 0; i < n; i++)
		if (add_path(w, paths[i]) != 0) {
			ret = -1;
			saved = errno;
		}
	for (i = 0; i < nold; i++) {
		bool kept = old[i].wd < 0;

		for (k = 0; !kept && k < w->n; k++)
			kept = w->v[k].wd == old[i].wd;
		for (k = 0; !kept && k < i; k++)
			kept = old[k].wd == old[i].wd; /* removed already */
		if (!kept && w->fd >= 0)
			(void)inotify_rm_watch(w->fd, old[i].wd);
		free(old[i].dir);
		free(old[i].base);
	}
	free(old);
	errno = saved;
	return ret;
}

static bool
same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Polling: has any name changed since it was last looked at? */
static bool
poll_names(struct watch *w, char *what, size_t len)
{
	bool changed = false;
	size_t i;

	for (i = 0; i < w->n; i++) {
		struct name before = w->v[i], *nm = &w->v[i];

		name_stat(nm);
		if (before.seen == nm->seen && (!nm->seen ||
		    (before.dev == nm->dev && before.ino == nm->ino &&
		    before.size == nm->size && before.mode == nm->mode &&
		    same_time(&before.mtime, &nm->mtime) &&
		    same_time(&before.ctime, &nm->ctime))))
			continue;
		if (!changed)
			snprintf(what, len, "%s/%s", nm->dir, nm->base);
		changed = true;
	}
	return changed;
}

bool
watch_changed(struct watch *w, char *what, size_t len)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	ssize_t n;

	if (len > 0)
		what[0] = '\0';
	if (w->fd < 0)
		return poll_names(w, what, len);
	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		char *p = buf;

		while (p + sizeof(struct inotify_event) <= buf + n) {
			const struct inotify_event *ev = (const void *)p;
			size_t i;

			p += sizeof(*ev) + ev->len;
			if (p > buf + n)
				break;
			/* Lost events, or a watched folder went away: take it
			 * as a change (the caller re-reads and re-watches).
			 * IN_IGNORED alone follows our own inotify_rm_watch. */
			if (ev->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF |
			    IN_MOVE_SELF)) {
				if (!changed)
					snprintf(what, len, "(a watched "
					    "folder)");
				changed = true;
				continue;
			}
			if (ev->len == 0)
				continue;
			for (i = 0; i < w->n; i++)
				if (w->v[i].wd == ev->wd &&
				    strcmp(w->v[i].base, ev->name) == 0) {
					if (!changed)
						snprintf(what, len, "%s/%s",
						    w->v[i].dir, w->v[i].base);
					changed = true;
					break;
				}
		}
	}
	return changed;
}
