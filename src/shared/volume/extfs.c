/* ext2/3/4 support for in-place conversion, through e2fsprogs. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/macro.h"
#include "basic/process.h"
#include "basic/string-util.h"
#include "shared/volume/extfs.h"

/* Caps on what a corrupt or hostile filesystem can make us allocate: 2^32 groups is ext4's
 * own limit, and dumpe2fs prints about 400 bytes for each. */
#define EXTFS_MAX_GROUPS (UINT32_C(1) << 22)
#define DUMPE2FS_BYTES_PER_GROUP 1024

static int header_u64(const char *text, const char *key, uint64_t *ret)
{
	const char *p = text;
	size_t klen = strlen(key);

	/* Header lines are "Key:<spaces>value" at the start of a line. */
	while (p && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			char *end;
			unsigned long long v;

			p += klen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			errno = 0;
			v = strtoull(p, &end, 10);
			if (end == p || errno)
				return -EINVAL;
			*ret = v;
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -ENOENT;
}

void extfs_layout_done(struct extfs_layout *l)
{
	free(l->groups);
	l->groups = NULL;
	l->n_groups = 0;
}

int extfs_parse_dumpe2fs(const char *text, struct extfs_layout *ret)
{
	struct extfs_layout l = {};
	struct extfs_group *cur = NULL;
	size_t expected;
	const char *p;

	if (header_u64(text, "Block size", &l.block_size) < 0 ||
	    header_u64(text, "Block count", &l.block_count) < 0 ||
	    header_u64(text, "Free blocks", &l.free_blocks) < 0 ||
	    header_u64(text, "Inode count", &l.inode_count) < 0 ||
	    header_u64(text, "Free inodes", &l.free_inodes) < 0 ||
	    header_u64(text, "First block", &l.first_block) < 0 ||
	    header_u64(text, "Blocks per group", &l.blocks_per_group) < 0 ||
	    header_u64(text, "Inodes per group", &l.inodes_per_group) < 0)
		return -EINVAL;
	if (l.block_size < 1024 || l.block_size > 65536 || l.blocks_per_group == 0 ||
	    l.block_count <= l.first_block || l.free_blocks > l.block_count ||
	    l.free_inodes > l.inode_count)
		return -EINVAL;

	expected = (size_t)((l.block_count - l.first_block + l.blocks_per_group - 1) / l.blocks_per_group);
	if (expected == 0 || expected > EXTFS_MAX_GROUPS)
		return -EINVAL;
	l.groups = calloc(expected, sizeof(*l.groups));
	if (!l.groups)
		return -ENOMEM;

	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		unsigned long long g, a, b, fb, fi;

		if (sscanf(p, "Group %llu: (Blocks %llu-%llu)", &g, &a, &b) == 3) {
			if (g != l.n_groups || l.n_groups >= expected || b < a) {
				free(l.groups);
				return -EINVAL;
			}
			cur = &l.groups[l.n_groups++];
			cur->first = a;
			cur->last = b;
			/* Marker: not yet seen; a group without its counts line is rejected below. */
			cur->free_blocks = UINT64_MAX;
		} else if (cur && sscanf(p, " %llu free blocks, %llu free inodes", &fb, &fi) == 2) {
			cur->free_blocks = fb;
			cur->free_inodes = fi;
		}
	}
	if (l.n_groups != expected) {
		free(l.groups);
		return -EINVAL;
	}
	for (size_t i = 0; i < l.n_groups; i++)
		if (l.groups[i].free_blocks == UINT64_MAX ||
		    l.groups[i].free_blocks > l.groups[i].last - l.groups[i].first + 1) {
			free(l.groups);
			return -EINVAL;
		}
	*ret = l;
	return 0;
}

int extfs_shrink_room(const struct extfs_layout *l, uint64_t new_blocks, struct extfs_room *ret)
{
	struct extfs_room room = {};

	if (new_blocks >= l->block_count || new_blocks <= l->first_block)
		return -EINVAL;

	for (size_t i = 0; i < l->n_groups; i++) {
		const struct extfs_group *g = &l->groups[i];
		uint64_t size = g->last - g->first + 1;
		uint64_t used = size - g->free_blocks;
		uint64_t cut, used_inodes;

		if (g->last < new_blocks) {
			/* Wholly kept. */
			room.kept_free_blocks += g->free_blocks;
			room.kept_free_inodes += g->free_inodes;
			continue;
		}
		/* Cut off wholly or in part: where its used blocks lie is unknown, so assume the
		 * worst for both sides. Its inodes count as moving (resize2fs drops a last group that
		 * becomes too small). */
		cut = g->first >= new_blocks ? size : g->last - new_blocks + 1;
		room.blocks_to_move += MIN(cut, used);
		if (cut < size && g->free_blocks > cut)
			room.kept_free_blocks += g->free_blocks - cut;
		used_inodes = l->inodes_per_group > g->free_inodes ? l->inodes_per_group - g->free_inodes : 0;
		room.inodes_to_move += used_inodes;
	}
	/* Moved extents may split, and each new extent-tree block costs a block: one per 32 moved
	 * blocks is far above what fragmentation produces; 64 more cover the journal's needs. */
	room.margin_blocks = room.blocks_to_move / 32 + 64;
	*ret = room;
	if (room.kept_free_blocks < room.blocks_to_move + room.margin_blocks ||
	    room.kept_free_inodes < room.inodes_to_move)
		return -ENOSPC;
	return 0;
}

/* Keeps the last lines of a tool's output: the part that says what went wrong. */
static void tail_lines(char *msg, size_t len, const char *out, unsigned lines)
{
	const char *p = out + strlen(out);
	unsigned n = 0;

	while (p > out && (p[-1] == '\n' || p[-1] == ' '))
		p--;
	while (p > out) {
		if (p[-1] == '\n' && ++n == lines)
			break;
		p--;
	}
	snprintf(msg, len, "%s", p);
	for (char *c = msg + strlen(msg); c > msg && (c[-1] == '\n' || c[-1] == ' ');)
		*--c = 0;
}

int extfs_check(const char *dev, char *msg, size_t msg_len)
{
	char out[8192];
	int r;

	r = process_run((char *[]){ "e2fsck", "-f", "-n", (char *)dev, NULL }, out, sizeof(out));
	if (r < 0)
		return r;
	if (r == 127) {
		snprintf(msg, msg_len, "e2fsck is not installed (package e2fsprogs)");
		return -ENOENT;
	}
	/* 0: clean. Anything else with -n means problems it was not allowed to fix. */
	if (r != 0) {
		tail_lines(msg, msg_len, out, 4);
		return -EUCLEAN;
	}
	return 0;
}

int extfs_read_layout(const char *dev, struct extfs_layout *ret)
{
	char head[16384];
	_cleanup_free_ char *out = NULL;
	uint64_t count, first, per_group;
	size_t groups, len;
	int r;

	r = process_run((char *[]){ "dumpe2fs", "-h", (char *)dev, NULL }, head, sizeof(head));
	if (r != 0)
		return r < 0 ? r : -EIO;
	if (header_u64(head, "Block count", &count) < 0 || header_u64(head, "First block", &first) < 0 ||
	    header_u64(head, "Blocks per group", &per_group) < 0 || per_group == 0 || count <= first)
		return -EINVAL;
	groups = (size_t)((count - first + per_group - 1) / per_group);
	if (groups > EXTFS_MAX_GROUPS)
		return -EINVAL;
	len = sizeof(head) + groups * DUMPE2FS_BYTES_PER_GROUP;
	out = malloc(len);
	if (!out)
		return -ENOMEM;
	r = process_run((char *[]){ "dumpe2fs", (char *)dev, NULL }, out, len);
	if (r != 0)
		return r < 0 ? r : -EIO;
	return extfs_parse_dumpe2fs(out, ret);
}

int extfs_resize(const char *dev, uint64_t new_size, const char *undo_path, char *msg, size_t msg_len)
{
	char out[8192], size_arg[32];
	char *argv[8];
	int n = 0, r;

	argv[n++] = "resize2fs";
	/* Forced: extfs_shrink_room() replaces resize2fs's minimum-size estimate, and callers run
	 * extfs_check() first, which is what resize2fs's own "run e2fsck -f first" rule asks. */
	argv[n++] = "-f";
	if (undo_path) {
		argv[n++] = "-z";
		argv[n++] = (char *)undo_path;
	}
	argv[n++] = (char *)dev;
	if (new_size) {
		snprintf(size_arg, sizeof(size_arg), "%" PRIu64 "K", new_size / 1024);
		argv[n++] = size_arg;
	}
	argv[n] = NULL;
	r = process_run(argv, out, sizeof(out));
	if (r < 0)
		return r;
	if (r != 0) {
		/* resize2fs prints its error on stderr, which reaches the pipe before its buffered
		 * stdout: pick the "resize2fs: ..." line when there is one. */
		const char *e = strstr(out, "\nresize2fs: ");

		if (e)
			snprintf(msg, msg_len, "%.*s", (int)strcspn(e + 1, "\n"), e + 1);
		else
			tail_lines(msg, msg_len, out, 3);
		if (strstr(out, "No space left"))
			return -ENOSPC;
		if (strstr(out, "Resize inode is corrupt"))
			return -EILSEQ;
		return -EIO;
	}
	return 0;
}

int extfs_undo(const char *undo_path, const char *dev, char *msg, size_t msg_len)
{
	char out[8192];
	int r;

	r = process_run((char *[]){ "e2undo", (char *)undo_path, (char *)dev, NULL }, out, sizeof(out));
	if (r < 0)
		return r;
	if (r != 0) {
		tail_lines(msg, msg_len, out, 3);
		return -EIO;
	}
	return 0;
}
