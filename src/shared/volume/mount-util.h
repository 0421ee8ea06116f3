/* Cleanup helpers for libmount objects, shared by the device and volume discovery code. */
#pragma once

#include <libmount.h>

#include "basic/macro.h"

DEFINE_CLEANUP_FUNC(mount_util_table_unrefp, struct libmnt_table *, mnt_unref_table)
DEFINE_CLEANUP_FUNC(mount_util_iter_freep, struct libmnt_iter *, mnt_free_iter)
