/* The operation journal under path_state_dir(): what vmcrypt started, finished or left
 * interrupted, written atomically (write, fsync, rename). The disks stay the source of truth;
 * the journal adds intent and history (see status-vm). */
#pragma once

#include <stdint.h>

enum journal_result {
	JOURNAL_RUNNING,
	JOURNAL_SUCCEEDED,
	JOURNAL_FAILED,
	JOURNAL_INTERRUPTED,
};

/* Records that command ("encrypt", "decrypt", "resume") started on target, whose LUKS UUID is
 * uuid (may be NULL before the header exists). Returns 0 or -errno. */
int journal_begin(const char *command, const char *target, const char *uuid);

/* Records progress (0..100) and the rate in bytes/s for target; cheap to call every few seconds.
 * Returns 0 or -errno. */
int journal_progress(const char *target, const char *uuid, double percent, uint64_t rate);

/* Records how the operation on target ended; error is 0 or the -errno it failed with.
 * Returns 0 or -errno. */
int journal_end(const char *target, enum journal_result result, int error);
