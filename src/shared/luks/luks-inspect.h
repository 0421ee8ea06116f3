/* What state a volume is in: plain, encrypted, mid-conversion or interrupted, from its header and
 * vmcrypt's state directory. */
#pragma once

#include "shared/luks/luks.h"

/* Inspects target. header is a detached header file, or NULL: then the header on the target
 * is used, or the one vmcrypt parked in its state directory for this target during a decrypt.
 * Returns 0 (even for a plain target), or -ENOENT, -ENOTBLK (target or header not a block device
 * or regular file), or another -errno. */
int luks_inspect(const char *target, const char *header, struct volume_info *ret);
