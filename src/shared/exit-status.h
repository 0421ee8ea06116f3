/* Process exit codes of vmcrypt, vmcryptd and vmcrypt-admin, documented in docs/exit-codes.md. */
#pragma once

enum exit_status {
	EXIT_OK = 0,
	EXIT_ERROR = 1,       /* the operation failed (I/O error, library error, bug) */
	EXIT_USAGE = 2,       /* bad command line */
	EXIT_BUSY = 3,        /* target mounted, held open or has holders (EBUSY) */
	EXIT_STATE = 4,       /* target in the wrong state: already LUKS, not LUKS, nothing to resume */
	EXIT_KEY = 5,         /* key file unreadable/empty, or the key does not open the volume */
	EXIT_NOSPACE = 6,     /* target too small for the header, or no room to shrink */
	EXIT_FSCK = 7,        /* the filesystem failed its check */
	EXIT_INTERRUPTED = 8, /* stopped by a signal at a safe point: run `vmcrypt resume` */
	EXIT_LOCKED = 9,      /* another vmcrypt operation is running on this VM */
	EXIT_CHECK = 10,      /* `vmcrypt check` found a failing prerequisite */
	EXIT_UNSUPPORTED = 11,/* filesystem cannot be converted in place without --header */
	EXIT_EXISTS = 12,     /* a file that must be new (header, key) already exists */
	EXIT_REMOTE = 13,     /* the control plane refused or could not be reached */
};

/* Maps a negative errno from the library to the exit status above; this table is the only place
 * where errno values become exit codes:
 *   EBUSY -> BUSY; EALREADY, EMEDIUMTYPE -> STATE; ENOKEY, EKEYREJECTED, EPERM -> KEY;
 *   ENOSPC -> NOSPACE; EUCLEAN -> FSCK; EINTR, ECANCELED -> INTERRUPTED; EAGAIN -> LOCKED;
 *   EOPNOTSUPP -> UNSUPPORTED; EEXIST -> EXISTS; everything else -> ERROR. */
int exit_status_from_errno(int error);
