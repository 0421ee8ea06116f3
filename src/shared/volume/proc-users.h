/* Which processes use a file, a filesystem or a device: a scan of /proc (under path_test_root()),
 * for the open-files check and for the "target held open" refusal of encrypt/decrypt. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* At most this many entries are returned; a scan that finds more stops adding (the first ones are
 * enough to name the culprits) and reports it through proc_users_find()'s return value. */
#define PROC_USERS_MAX 4096

struct proc_user {
	pid_t pid;
	char comm[64];       /* /proc/PID/comm, "?" when unreadable */
	char path[PATH_MAX]; /* what the process holds, as the kernel names it */
	const char *how;     /* "fd", "cwd", "root", "exe", "map" (static strings) */
};

/* Decides whether an object a process holds is interesting. path is the kernel's name for it
 * (readlink of the /proc link, or the maps path); st is its stat, or NULL when it could not be
 * stat()ed (a fixture tree, a vanished file): then only path is known. For "map" entries st has
 * only st_dev and st_ino set (from /proc/PID/maps). */
typedef bool (*proc_users_match_fn)(const char *path, const struct stat *st, void *userdata);

/* Scans every process in /proc except our own: its fds, cwd, root, exe and file mappings, and
 * returns the entries match() accepts, in pid order, without exact duplicates (a file mapped
 * many times is listed once per process).
 * Returns 0 when every process was inspected; > 0, the number of processes that could not be
 * inspected (EACCES: not root), so the list may be incomplete; or -ENOENT (no /proc), -ENOMEM,
 * -ENAMETOOLONG (test root too long), -E2BIG (more than PROC_USERS_MAX entries matched; *ret still holds the first ones), or another
 * -errno from opening /proc. Processes that exit during the scan are skipped silently.
 * *ret (free with proc_users_free()) and *ret_n are set unless the return is < 0 and not -E2BIG. */
int proc_users_find(proc_users_match_fn match, void *userdata, struct proc_user **ret,
		    size_t *ret_n);

/* Processes using files on the filesystem mounted at mountpoint whose st_dev is fs_dev: anything
 * that stops it from being unmounted (except submounts, which are filesystems of their own). An
 * object that cannot be stat()ed matches when its path is mountpoint or lies below it.
 * Returns as proc_users_find(). */
int proc_users_on_mount(const char *mountpoint, dev_t fs_dev, struct proc_user **ret,
			size_t *ret_n);

/* Processes holding the target itself open: target is the stat() of a block device node (every
 * open node with the same st_rdev matches, whatever its path) or of a regular image file (same
 * st_dev and st_ino). Returns as proc_users_find(), or -ENOTBLK when target is neither. */
int proc_users_of_device(const struct stat *target, struct proc_user **ret, size_t *ret_n);

/* Frees an array from the functions above; accepts NULL. */
void proc_users_free(struct proc_user *users);

static inline void proc_users_freep(struct proc_user **p)
{
	proc_users_free(*p);
}
#define _cleanup_proc_users_ __attribute__((cleanup(proc_users_freep)))
