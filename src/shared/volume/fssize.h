/* How many bytes of a device a filesystem occupies, asked of the filesystem's own tools. */
#pragma once

#include <stdint.h>

/* For xfs (xfs_db), btrfs (btrfs inspect-internal dump-super: this device's share) and
 * ext2/3/4 (dumpe2fs). Returns 0, -EOPNOTSUPP for another type or a missing tool, -EINVAL when
 * the tool's output cannot be read, or -errno. */
int fs_size_bytes(const char *dev, const char *type, uint64_t *ret);

/* The parsers, separate for tests and fuzz/fuzz-fssize.c: "dblocks = N" and "blocksize = N"
 * lines (xfs_db), a "dev_item.total_bytes<spaces>N" line (btrfs), "Block count:" and
 * "Block size:" lines (dumpe2fs -h). Return 0 or -EINVAL. */
int fs_size_parse_xfs_db(const char *text, uint64_t *ret);
int fs_size_parse_btrfs_super(const char *text, uint64_t *ret);
int fs_size_parse_dumpe2fs(const char *text, uint64_t *ret);
