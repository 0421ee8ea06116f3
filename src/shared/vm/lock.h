/* The VM-wide operation lock: one vmcrypt operation that changes a volume at a time.
 *
 * The lock is flock(2) on path_run_dir()/operation.lock: the kernel drops it when its holder dies,
 * so it is the truth about whether an operation runs. Beside it, operation.json (written
 * atomically) records who holds it, for the "busy" message. Administrators can hold vmcrypt off
 * during maintenance with `flock /run/vmcrypt/operation.lock COMMAND`. */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct lock_holder {
	pid_t pid;
	char command[32];      /* "encrypt", "decrypt", "resume" */
	char target[PATH_MAX];
	int64_t started;       /* unix time */
	double percent;        /* last progress the holder published, -1 when unknown */
};

struct vm_lock;

/* Takes the exclusive lock in path_run_dir()/operation.lock. A lock left by a dead process is
 * taken over. Returns 0; -EAGAIN when a live process holds it (*ret_holder filled when not NULL);
 * or another -errno. */
int vm_lock_acquire(const char *command, const char *target, struct vm_lock **ret,
		    struct lock_holder *ret_holder);

/* Publishes progress for a second command's "busy" message. Cheap enough to call every second.
 * Returns 0 or -errno. */
int vm_lock_set_progress(struct vm_lock *l, double percent);

/* Releases and frees; accepts NULL. */
void vm_lock_release(struct vm_lock *l);

/* Reads the current holder without taking the lock. Returns 1 when held by a live process,
 * 0 when free, or -errno. */
int vm_lock_peek(struct lock_holder *ret);

/* The message a command prints when vm_lock_acquire() returned -EAGAIN, naming the running
 * operation: pid, command, target, start time (UTC), progress. A holder without a vmcrypt record
 * (pid 0, or an empty target: another tool such as flock(1)) is described as such.
 * Returns 0, or -ENOBUFS when the message was truncated to fit len (still NUL-terminated). */
int vm_lock_format_busy(const struct lock_holder *h, char *buf, size_t len);

/* After vm_lock_acquire(): the record a killed holder left behind (its operation did not finish,
 * so the caller may suggest `vmcrypt resume`), or NULL when the lock was left cleanly. Valid until
 * vm_lock_release(). */
const struct lock_holder *vm_lock_stale_holder(const struct vm_lock *l);
