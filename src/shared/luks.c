/* In-place LUKS2 conversion through libcryptsetup: placeholder. */
#include <errno.h>
#include <string.h>

#include "luks.h"

int luks_inspect(const char *target, const char *header, struct volume_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	return -ENOSYS;
}

const char *volume_state_to_string(enum volume_state s)
{
	static const char *const names[] = {
		[VOLUME_UNKNOWN] = "unknown",         [VOLUME_PLAIN] = "plain",
		[VOLUME_ENCRYPTED] = "encrypted",     [VOLUME_ENCRYPTING] = "encrypting",
		[VOLUME_DECRYPTING] = "decrypting",   [VOLUME_INTERRUPTED] = "interrupted",
	};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

const char *volume_op_to_string(enum volume_op op)
{
	static const char *const names[] = {
		[VOLUME_OP_NONE] = "none", [VOLUME_OP_ENCRYPT] = "encrypt", [VOLUME_OP_DECRYPT] = "decrypt",
	};
	return (unsigned)op < sizeof(names) / sizeof(names[0]) ? names[op] : "none";
}
