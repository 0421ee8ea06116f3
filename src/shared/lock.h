/* The VM-wide operation lock: one vmcrypt operation that changes a volume at a time. */
#pragma once

#include <limits.h>
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
