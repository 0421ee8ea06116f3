/* Targets of a conversion: block devices, partitions or regular files holding a disk image.
 * Identity, size, filesystem probing and the "is anyone using it" checks. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct device_info {
	char path[PATH_MAX];     /* canonical path */
	bool is_block;           /* false: regular file */
	dev_t rdev;              /* block devices */
	dev_t dev;               /* regular files: the filesystem holding it */
	ino_t ino;               /* regular files */
	uint64_t size;           /* bytes */
	bool read_only;
	char fs_type[32];        /* blkid TYPE ("ext4", "xfs", "crypto_LUKS", ""), "" when none */
	char fs_uuid[64];        /* blkid UUID */
	uint32_t fs_block_size;  /* blkid BLOCK_SIZE, 0 when unknown */
};

/* Resolves and probes target. Returns 0, -ENOENT, -ENOTBLK (neither a block device nor a regular
 * file), -EIO when the signature probe fails, or another -errno. */
int device_probe(const char *target, struct device_info *ret);

/* Why a target cannot be converted now; filled by device_check_unused(). */
struct device_usage {
	char what[1024];          /* "mounted on /mnt/data", "held by dm-0", "open by pid 42 (dd)" */
};

/* Refuses a target that is mounted, has holders (device-mapper, md, ...), is attached to a loop
 * device (regular files), or is held open by any process. Returns 0 when unused, -EBUSY with
 * ret->what describing the first use found, or another -errno. */
int device_check_unused(const struct device_info *d, struct device_usage *ret);

/* Only the stacked users of a block device (device-mapper, md, ... in its holders): for a device
 * that stays mounted on purpose. Returns 0, -EBUSY with ret->what, or another -errno. */
int device_check_holders(const struct device_info *d, struct device_usage *ret);

/* Returns 1 when the size bytes ending at the end of the target read as zeros, 0 when not, or
 * -errno. Proves that a raw target without a filesystem has room for a header. */
int device_tail_is_zero(const char *path, uint64_t device_size, uint64_t size);

/* Erases every LUKS signature (both LUKS2 header copies) through libblkid and fsyncs.
 * Returns 0 or -errno. */
int device_wipe_luks_signatures(const char *path);

/* The device number of the device-mapper device named name, found through sysfs
 * (/sys/block/dm-N/dm/name): the /dev/mapper node may be missing without udev, or lag behind the
 * kernel while libcryptsetup reloads and renames its mappings. Returns 0, -ENOENT, or -errno. */
int device_dm_by_name(const char *name, dev_t *ret);

/* Stable identity of a target for finding its in-flight state after a crash, as a short string
 * ("blk:8:16", "file:2049:1234"). Returns buf. */
char *device_identity(const struct device_info *d, char *buf, size_t len);
