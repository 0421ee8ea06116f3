/* The operation journal under path_state_dir(): what vmcrypt started, finished or left
 * interrupted, written atomically (write, fsync, rename). The disks stay the source of truth;
 * the journal adds intent and history (see status-vm). */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum journal_result {
	JOURNAL_RUNNING,
	JOURNAL_SUCCEEDED,
	JOURNAL_FAILED,
	JOURNAL_INTERRUPTED,
};

/* Records that command ("encrypt", "decrypt", "resume") started on target, whose LUKS UUID is
 * uuid (may be NULL before the header exists). An earlier entry for target still marked running
 * becomes interrupted. Call it while holding the VM lock (lock.h): the journal has one writer.
 * Returns 0, -EINVAL (names too long), or another -errno from writing. */
int journal_begin(const char *command, const char *target, const char *uuid);

/* Records progress (0..100) and the rate in bytes/s for target; cheap to call every few seconds.
 * Returns 0, -ENOENT (no running entry for target), or another -errno. */
int journal_progress(const char *target, const char *uuid, double percent, uint64_t rate);

/* Records how the operation on target ended; error is 0 or the -errno it failed with.
 * Returns 0, -ENOENT (no entry for target), or another -errno. */
int journal_end(const char *target, enum journal_result result, int error);

/* The journal holds the last JOURNAL_MAX_ENTRIES operations, oldest first. */
#define JOURNAL_MAX_ENTRIES 64

struct journal_entry {
	char command[32];
	char target[PATH_MAX];
	char uuid[40];           /* "" when unknown */
	int64_t started;         /* unix time */
	int64_t updated;         /* last begin/progress/end */
	double percent;          /* -1 when unknown */
	uint64_t rate;           /* bytes/s, 0 when unknown */
	enum journal_result result;
	int error;               /* -errno the operation failed with, 0 */
	pid_t pid;               /* the process that ran it */
	char header[PATH_MAX];   /* detached header file, "" when the header is on the device */
};

/* Records that the running operation on target keeps its LUKS2 header in the detached file
 * header, so that `vmcrypt status` can inspect the volume later (a device with a detached header
 * shows no LUKS signature of its own). Returns 0, -ENOENT (no running entry), -EINVAL, or -errno. */
int journal_set_header(const char *target, const char *header);

/* Reads path_state_dir()/journal.json. A missing journal is empty (returns 0, *ret_n = 0).
 * Returns 0, -EBADMSG (does not parse), -EFBIG, -ENOMEM or another -errno. *ret is freed with
 * free(). */
int journal_load(struct journal_entry **ret, size_t *ret_n);

/* Parses the journal's JSON text (NUL-terminated). Returns 0, -EBADMSG or -ENOMEM; *ret is freed
 * with free(). */
int journal_parse(const char *text, struct journal_entry **ret, size_t *ret_n);

/* The latest entry for target, or NULL. */
const struct journal_entry *journal_find_last(const struct journal_entry *entries, size_t n,
					      const char *target);

const char *journal_result_to_string(enum journal_result r);
