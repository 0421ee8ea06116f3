/* Which processes use a file, a filesystem or a device: a scan of /proc. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/paths.h"
#include "shared/volume/proc-users.h"

struct scan {
	proc_users_match_fn match;
	void *userdata;
	struct proc_user *users;
	size_t n, allocated;
	size_t first_of_pid; /* index of the current process's first entry, for de-duplication */
	bool truncated;
	bool fixture;        /* reading a fixture tree: its links point nowhere real, never stat() */
};

static int scan_add(struct scan *s, pid_t pid, const char *comm, const char *path, const char *how)
{
	struct proc_user *u;

	for (size_t i = s->first_of_pid; i < s->n; i++)
		if (s->users[i].how == how && streq(s->users[i].path, path))
			return 0;
	if (s->n >= PROC_USERS_MAX) {
		s->truncated = true;
		return 0;
	}
	if (s->n == s->allocated) {
		size_t a = s->allocated ? s->allocated * 2 : 16;
		struct proc_user *p = reallocarray(s->users, a, sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->users = p;
		s->allocated = a;
	}
	u = &s->users[s->n++];
	memset(u, 0, sizeof(*u));
	u->pid = pid;
	snprintf(u->comm, sizeof(u->comm), "%s", comm);
	snprintf(u->path, sizeof(u->path), "%s", path);
	u->how = how;
	return 0;
}

/* Looks at one /proc link (cwd, root, exe, fd/N): readlink for the name, stat() through the
 * link for the object itself (the magic link reaches the inode even when the name is gone). */
static int scan_link(struct scan *s, pid_t pid, const char *comm, const char *link, const char *how)
{
	char target[PATH_MAX];
	struct stat st;
	ssize_t n;

	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return 0; /* kernel thread, exited process, or no permission: nothing to report */
	target[n] = 0;
	if (!s->fixture && stat(link, &st) == 0) {
		if (!s->match(target, &st, s->userdata))
			return 0;
	} else if (!s->match(target, NULL, s->userdata))
		return 0;
	return scan_add(s, pid, comm, target, how);
}

/* /proc/PID/maps lines: "start-end perms offset major:minor inode   path" (numbers in hex except
 * the inode). Only file mappings (a path starting with '/') are considered. */
static int scan_maps(struct scan *s, pid_t pid, const char *comm, const char *procdir)
{
	char path[PATH_MAX + 64];
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t len = 0;
	int r;

	snprintf(path, sizeof(path), "%s/maps", procdir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (getline(&line, &len, f) > 0) {
		unsigned maj, min;
		unsigned long long ino;
		int off = 0;
		char *p;
		struct stat st;

		if (sscanf(line, "%*s %*s %*s %x:%x %llu %n", &maj, &min, &ino, &off) < 3 || off <= 0)
			continue;
		p = line + off;
		p[strcspn(p, "\n")] = 0;
		if (p[0] != '/' || ino == 0)
			continue;
		memset(&st, 0, sizeof(st));
		st.st_dev = makedev(maj, min);
		st.st_ino = (ino_t)ino;
		if (!s->match(p, s->fixture ? NULL : &st, s->userdata))
			continue;
		r = scan_add(s, pid, comm, p, "map");
		if (r < 0)
			return r;
	}
	return 0;
}

/* Returns 0, 1 when the process could not be inspected for lack of permission, or -ENOMEM. */
static int scan_process(struct scan *s, const char *proc, pid_t pid)
{
	static const char *const links[] = { "cwd", "root", "exe" };
	char procdir[PATH_MAX + 16], path[PATH_MAX + 64], comm[64] = "?";
	_cleanup_(closedirp) DIR *d = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	struct dirent *de;
	int r;

	snprintf(procdir, sizeof(procdir), "%s/%d", proc, (int)pid);
	snprintf(path, sizeof(path), "%s/comm", procdir);
	f = fopen(path, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		else
			snprintf(comm, sizeof(comm), "?");
	}
	s->first_of_pid = s->n;

	for (size_t i = 0; i < ELEMENTSOF(links); i++) {
		snprintf(path, sizeof(path), "%s/%s", procdir, links[i]);
		r = scan_link(s, pid, comm, path, links[i]);
		if (r < 0)
			return r;
	}

	snprintf(path, sizeof(path), "%s/fd", procdir);
	d = opendir(path);
	if (!d)
		return errno == EACCES || errno == EPERM ? 1 : 0;
	while ((de = readdir(d))) {
		char link[PATH_MAX + 16 + 300];

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(link, sizeof(link), "%s/fd/%s", procdir, de->d_name);
		r = scan_link(s, pid, comm, link, "fd");
		if (r < 0)
			return r;
	}
	return scan_maps(s, pid, comm, procdir);
}

int proc_users_find(proc_users_match_fn match, void *userdata, struct proc_user **ret,
		    size_t *ret_n)
{
	struct scan s = { .match = match, .userdata = userdata };
	char proc[PATH_MAX];
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	pid_t self = getpid();
	int denied = 0, r;

	s.fixture = *path_test_root() != 0;
	if (snprintf(proc, sizeof(proc), "%s/proc", path_test_root()) >= (int)sizeof(proc) - 64)
		return -ENAMETOOLONG;
	d = opendir(proc);
	if (!d)
		return negative_errno();
	while ((de = readdir(d))) {
		uint64_t pid;

		if (parse_u64(de->d_name, &pid) < 0 || pid == 0 || pid > INT_MAX || (pid_t)pid == self)
			continue;
		r = scan_process(&s, proc, (pid_t)pid);
		if (r < 0) {
			free(s.users);
			return r;
		}
		denied += r;
	}
	/* readdir order is not pid order; sort so that output is stable. */
	for (size_t i = 1; i < s.n; i++)
		for (size_t j = i; j > 0 && s.users[j - 1].pid > s.users[j].pid; j--) {
			struct proc_user t = s.users[j];
			s.users[j] = s.users[j - 1];
			s.users[j - 1] = t;
		}
	*ret = s.users;
	*ret_n = s.n;
	if (s.truncated)
		return -E2BIG;
	return denied;
}

struct mount_match {
	const char *mountpoint;
	dev_t dev;
};

static bool path_is_under(const char *path, const char *dir)
{
	const char *rest;

	if (streq(dir, "/"))
		return path[0] == '/';
	rest = startswith(path, dir);
	return rest && (*rest == 0 || *rest == '/');
}

static bool match_mount(const char *path, const struct stat *st, void *userdata)
{
	const struct mount_match *m = userdata;

	if (st)
		return st->st_dev == m->dev;
	return path_is_under(path, m->mountpoint);
}

int proc_users_on_mount(const char *mountpoint, dev_t fs_dev, struct proc_user **ret,
			size_t *ret_n)
{
	struct mount_match m = { .mountpoint = mountpoint, .dev = fs_dev };

	return proc_users_find(match_mount, &m, ret, ret_n);
}

static bool match_device(const char *path, const struct stat *st, void *userdata)
{
	const struct stat *t = userdata;

	if (!st)
		return false;
	if (S_ISBLK(t->st_mode))
		return S_ISBLK(st->st_mode) && st->st_rdev == t->st_rdev;
	/* Mappings carry no mode: a regular file is known by its device and inode alone. */
	return st->st_dev == t->st_dev && st->st_ino == t->st_ino;
}

int proc_users_of_device(const struct stat *target, struct proc_user **ret, size_t *ret_n)
{
	if (!S_ISBLK(target->st_mode) && !S_ISREG(target->st_mode))
		return -ENOTBLK;
	return proc_users_find(match_device, (void *)target, ret, ret_n);
}

void proc_users_free(struct proc_user *users)
{
	free(users);
}
