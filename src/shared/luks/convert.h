/* In-place conversion of a volume to LUKS2 and back, through libcryptsetup's reencryption,
 * surviving kill -9 and power loss at any point: see docs/vmcrypt.md for the design. */
#pragma once

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/luks/luks.h"

/* The header lives in the first CONVERT_DATA_SHIFT bytes of the device. Encrypting with the
 * header on the device needs twice that at the end of the filesystem: libcryptsetup copies the
 * first segment behind the data, then moves everything by the shift. */
#define CONVERT_DATA_SHIFT (UINT64_C(16) << 20)
#define CONVERT_REDUCE (2 * CONVERT_DATA_SHIFT)
/* Smallest data area worth converting. */
#define CONVERT_MIN_DATA (UINT64_C(1) << 20)

enum convert_phase {
	CONVERT_PHASE_CHECK,   /* filesystem check and room proof */
	CONVERT_PHASE_SHRINK,  /* filesystem shrink */
	CONVERT_PHASE_DATA,    /* the data conversion proper */
	CONVERT_PHASE_GROW,    /* filesystem grown back after decrypt */
};

/* Called at every step and many times a second while data moves. done/total are bytes (0/0
 * when a step has no measure). A non-zero return asks the conversion to stop at the next safe
 * point: it then returns -EINTR and `resume` continues. */
typedef int (*convert_progress_fn)(enum convert_phase phase, uint64_t done, uint64_t total,
				   void *userdata);

struct convert_request {
	const char *target;
	const char *header;       /* detached header file, or NULL for the header on the device */
	const void *key;          /* the unlock key (passphrase of keyslot 0) */
	size_t key_size;
	/* encrypt: the recovery passphrase, keyslot 1 (PBKDF2 like keyslot 0), or NULL/0 for none.
	 * Every keyslot must exist before the reencryption is initialised: libcryptsetup refuses
	 * to add one while it runs. decrypt and resume: a second passphrase to try; they take
	 * whichever of key and recovery opens a keyslot (either may be empty, not both). Finishing
	 * an encryption cut short after its last hotzone rebuilds the header and needs the
	 * passphrase of every keyslot (see docs/vmcrypt.md). */
	const void *recovery;
	size_t recovery_size;
	/* encrypt: a LUKS2 token (JSON text) set on the new header at format time, e.g. the agent's
	 * {"type":"vmcrypt","keyslots":["0"],"server":...}; it is kept in the final header. NULL:
	 * none. A token of type "vmcrypt" must not have an "operation" member: that names the
	 * conversion's own token (luks.h). */
	const char *token_json;
	uint32_t sector_size;     /* 512 or 4096; 0 picks the largest the filesystem allows */
	convert_progress_fn progress;
	void *userdata;
};

/* How `vmcrypt resume` takes up a conversion that stopped or failed part way; the program words
 * the remedy from it (the library does not). */
enum convert_resume {
	CONVERT_RESUME_NO,            /* resume is not the remedy: convert_result.remedy says it */
	CONVERT_RESUME_CONTINUE,      /* stopped at a safe point; resume continues */
	CONVERT_RESUME_FAILED_RUN,    /* the data conversion failed part way; resume continues it */
	CONVERT_RESUME_AGAIN,         /* a finishing step failed; resume repeats it, the data is safe */
	CONVERT_RESUME_RETRY,         /* the conversion could not start; resume retries, data intact */
	CONVERT_RESUME_PENDING,       /* an interrupted conversion waits to be resumed */
	CONVERT_RESUME_PENDING_FIRST, /* a conversion is under way: resume it before this one */
	CONVERT_RESUME_UNDO,          /* the shrink and its undo failed; resume retries the undo */
	CONVERT_RESUME_HEADER_SAVED,  /* the header is parked in the state directory for resume */
	CONVERT_RESUME_RESTORE,       /* the safety copy could not be restored; resume tries again */
	_CONVERT_RESUME_MAX,
	_CONVERT_RESUME_INVALID = -EINVAL,
};

struct convert_result {
	enum volume_op op;        /* what was done (resume: what was resumed) */
	char uuid[40];
	uint32_t sector_size;
	uint64_t data_offset;
	bool header_detached;
	char header_path[PATH_MAX];
	char fs_type[32];
	uint64_t shrunk_by;       /* bytes the filesystem gave up for the header */
	bool resumed;             /* resume: there was something to finish */
	/* On failure: what failed and why (naming the target), and what to do: in words in remedy
	 * ("" when nothing), or, when resume is not CONVERT_RESUME_NO, left to the program to say
	 * from resume and resume_header (remedy is then ""). */
	char message[1024];
	char remedy[1024];
	enum convert_resume resume;
	bool resume_header;       /* the resume command needs --header FILE */
};

/* Each returns 0 or a negative errno, with res->message and res->remedy or res->resume set on
 * failure:
 *   -ENOENT target missing; -ENOTBLK not a block device or file; -EROFS read-only;
 *   -EBUSY mounted, held open or has holders; -EALREADY already LUKS (encrypt), a conversion
 *   in flight (run resume), nothing to resume; -EMEDIUMTYPE not LUKS (decrypt);
 *   -ENOKEY/-EPERM empty or wrong key (neither key nor recovery opens it; -ENOKEY also: finishing
 *   needs the passphrase of a keyslot that was not given); -EINVAL a token_json libcryptsetup
 *   refuses; -ENOSPC too small or no room to shrink; -EUCLEAN the
 *   filesystem failed its check; -EOPNOTSUPP the filesystem cannot make room (use --header);
 *   -EEXIST the header file exists; -EINTR stopped at a safe point by the progress callback;
 *   -EIO and others: the operation failed (resume continues it where it can).
 * Every refusal happens before the first byte of the target changes. */
int convert_encrypt(const struct convert_request *req, struct convert_result *res);
int convert_decrypt(const struct convert_request *req, struct convert_result *res);
int convert_resume(const struct convert_request *req, struct convert_result *res);
