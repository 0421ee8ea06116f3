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
	/* Online: the name of the dm-crypt mapping the volume is (or becomes) active as, e.g.
	 * "vmcrypt-data" for /dev/mapper/vmcrypt-data. Ignored offline. */
	const char *active_name;
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

/* Whether the state directory holds a conversion of target that stopped part way (what
 * convert_resume() would take up). Returns 1, 0, or -errno when target cannot be probed. */
int convert_in_flight(const char *target);

/* Online conversion: the data moves while the volume is in use through /dev/mapper/<active_name>
 * (libcryptsetup's online reencryption; the kernel needs dm-crypt). Each call is one step; every
 * step is recorded in the state directory before it starts, as offline (docs/vmcrypt.md,
 * "Online"), and the target must be a block device.
 *
 * convert_online_start(req, VOLUME_OP_ENCRYPT, res): the caller has unmounted the filesystem and
 *   stopped its users; the target must be unused (the same refusals as convert_encrypt()) and no
 *   mapping named active_name may exist (-EEXIST). Shrinks ext2/3/4 and puts the header on the
 *   device (data shift), or with req->header writes a detached header (xfs, no shrink);
 *   initialises the reencryption and activates /dev/mapper/<active_name>. Returns with no data
 *   converted yet: the caller mounts the mapping (the filesystem is the same, 16 MiB smaller
 *   than the mapping with the header on the device), restarts its users, then calls run.
 * convert_online_start(req, VOLUME_OP_DECRYPT, res): the mapping is active (mounted or not).
 *   With the header on the device, the header is first parked in the state directory
 *   (libcryptsetup 2.6 decrypts a header-on-device volume only as a data shift with a detached
 *   header) and the device's LUKS signatures are wiped; then the decryption is initialised.
 *   The mapping stays active and mounted throughout.
 * convert_online_run(): the mapping is active (normally mounted). Moves the data to its end;
 *   a non-zero return of the progress callback stops at the next hotzone boundary with -EINTR
 *   (the mapping stays active and consistent; run again, or resume after a reboot). An
 *   encryption is then complete (the mapping stays, the state is removed); a decryption
 *   needs convert_online_finish().
 * convert_online_resume(): after a crash, kill -9 or reboot. Finishes a start step that was
 *   cut short, and activates the mapping if it is not active (activation makes libcryptsetup
 *   recover an interrupted hotzone). Returns with the mapping active and the data move not
 *   continued yet: the caller mounts it (if it is not mounted) and calls run. An encryption cut
 *   short before its header was placed needs the device unused, as start. A decryption whose
 *   data is all back returns 0 with nothing active: call finish.
 * convert_online_finish(): after a decryption's run; the caller has unmounted the mapping.
 *   Deactivates it (-EBUSY while still mounted or open), grows ext2/3/4 back by what the
 *   encryption took, removes the parked header and the state; the plain device then mounts
 *   as before. Repeating it after a crash is safe (the grow runs with an undo file).
 * The mapping name, once started, is the one recorded in the state (a different active_name
 * given to run/resume/finish is ignored). Errors as above, and -ENXIO: the mapping is not active
 * (run, decrypt start); -EBUSY: the mapping is active on another device, or still in use
 * (finish); -EALREADY: no online conversion in flight, or it stopped at a step that resume
 * must finish first (res->resume says which). */
/* convert_online_prepare(): the OS volume. Encrypts in place a target whose filesystem stays
 *   mounted (the root filesystem of the running system): with req->header (an absolute path;
 *   required) it writes the detached header and initialises the reencryption, and changes no
 *   byte of the target. Nothing may hold the target but its mount (-EBUSY for device-mapper,
 *   md or loop devices on top). It does not activate: the next boot opens
 *   /dev/mapper/<active_name> from the header before the root is mounted (the initramfs), and
 *   convert_online_resume() and run take it from there. Until that boot the filesystem is
 *   written on the target as before, which the conversion will read: no data has moved.
 *   Calling it again after it returned, or after it was cut short, is safe. res->uuid: the
 *   header's UUID. */
int convert_online_prepare(const struct convert_request *req, struct convert_result *res);
int convert_online_start(const struct convert_request *req, enum volume_op op, struct convert_result *res);
int convert_online_run(const struct convert_request *req, struct convert_result *res);
int convert_online_resume(const struct convert_request *req, struct convert_result *res);
int convert_online_finish(const struct convert_request *req, struct convert_result *res);
/* convert_online_finish_in_place(): the OS volume's finish. After a decryption's run with a
 * detached header, while the mapping stays active and mounted (the root filesystem): libcryptsetup
 * has left it mapping the plain data one to one, the next boot mounts the device itself. Checks
 * that no reencryption is left and removes the state. -EALREADY: no such decryption in flight;
 * -EBUSY: not finished yet. */
int convert_online_finish_in_place(const struct convert_request *req, struct convert_result *res);
