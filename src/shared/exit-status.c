/* The one mapping from library errno values to documented exit codes. */
#include <errno.h>

#include "shared/exit-status.h"

int exit_status_from_errno(int error)
{
	switch (-error) {
	case 0:
		return EXIT_OK;
	case EBUSY:
		return EXIT_BUSY;
	case EALREADY:
	case EMEDIUMTYPE:
		return EXIT_STATE;
	case ENOKEY:
	case EKEYREJECTED:
	case EPERM:
		return EXIT_KEY;
	case ENOSPC:
		return EXIT_NOSPACE;
	case EUCLEAN:
		return EXIT_FSCK;
	case EINTR:
	case ECANCELED:
		return EXIT_INTERRUPTED;
	case EAGAIN:
		return EXIT_LOCKED;
	case EOPNOTSUPP:
		return EXIT_UNSUPPORTED;
	case EEXIST:
		return EXIT_EXISTS;
	default:
		return EXIT_ERROR;
	}
}
