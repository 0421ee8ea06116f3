/* ext2/3/4 support for in-place conversion: check, prove room, shrink with an undo file, grow.
 * The work is done by e2fsprogs (e2fsck, dumpe2fs, resize2fs, e2undo), the field's tools. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct extfs_group {
	uint64_t first, last;      /* block range, inclusive */
	uint64_t free_blocks;
	uint64_t free_inodes;
};

struct extfs_layout {
	uint64_t block_size;
	uint64_t block_count;
	uint64_t free_blocks;
	uint64_t inode_count;
	uint64_t free_inodes;
	uint64_t first_block;
	uint64_t blocks_per_group;
	uint64_t inodes_per_group;
	size_t n_groups;
	struct extfs_group *groups;
};

/* Parses `dumpe2fs` output (header and group lines). Returns 0 or -EINVAL when a required field
 * is missing or inconsistent. Free *ret->groups with extfs_layout_done(). */
int extfs_parse_dumpe2fs(const char *text, struct extfs_layout *ret);
void extfs_layout_done(struct extfs_layout *l);

/* What shrinking to new_blocks needs, computed from the filesystem's own per-group counts
 * instead of resize2fs's estimate (which is so conservative that an 80% full ext4 "cannot"
 * shrink by 16 MiB). Worst case: every used block in the cut-off part must move, plus a margin
 * for extent-tree growth; every used inode in a group that goes away needs a free inode in a
 * group that stays. */
struct extfs_room {
	uint64_t blocks_to_move;   /* upper bound of used blocks in the cut-off part */
	uint64_t margin_blocks;
	uint64_t kept_free_blocks; /* lower bound of free blocks that stay */
	uint64_t inodes_to_move;
	uint64_t kept_free_inodes;
};

/* Returns 0 when the filesystem provably has room to shrink to new_blocks, -ENOSPC when it
 * has not (ret filled either way), -EINVAL when new_blocks is not smaller than the block count. */
int extfs_shrink_room(const struct extfs_layout *l, uint64_t new_blocks, struct extfs_room *ret);

/* e2fsck -f -n: a read-only forced check. Returns 0 when clean, -EUCLEAN when e2fsck found
 * problems (its last output lines in msg), or -errno when it could not run. */
int extfs_check(const char *dev, char *msg, size_t msg_len);

/* Reads the layout through dumpe2fs. Returns 0 or -errno (-EINVAL: unparsable). */
int extfs_read_layout(const char *dev, struct extfs_layout *ret);

/* resize2fs -f to new_size bytes (0: grow to fill the device): forced past resize2fs's estimate,
 * which extfs_shrink_room() replaces; call extfs_check() first. With undo_path, resize2fs first
 * writes an undo file there (e2undo restores the filesystem from it). Returns 0, -ENOSPC
 * when resize2fs ran out of room, -EILSEQ when it reported "Resize inode is corrupt" (what
 * e2fsprogs 1.47.0 says with an undo file on a 1 KiB-block filesystem; the filesystem itself
 * is fine after e2undo), or -EIO (its error in msg). */
int extfs_resize(const char *dev, uint64_t new_size, const char *undo_path, char *msg, size_t msg_len);

/* e2undo: puts back every block resize2fs changed. Returns 0 or -EIO. */
int extfs_undo(const char *undo_path, const char *dev, char *msg, size_t msg_len);
