/* Unit tests for the ext4 layout parser and the shrink room proof (src/shared/extfs.c), on
 * dumpe2fs output captured from real filesystems (tests/data/dumpe2fs/). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "shared/volume/extfs.h"

static char *load(const char *name)
{
	char path[512];
	char *text = NULL;

	snprintf(path, sizeof(path), "%s/tests/data/dumpe2fs/%s", getenv("VMCRYPT_TOP") ?: ".", name);
	assert_int_equal(read_full_file(path, 1 << 20, &text, NULL), 0);
	return text;
}

static void test_parse_good(void **state)
{
	struct extfs_layout l;
	char *t = load("good-1g-89pct.txt");

	assert_int_equal(extfs_parse_dumpe2fs(t, &l), 0);
	assert_int_equal(l.block_size, 4096);
	assert_int_equal(l.block_count, 262144);
	assert_int_equal(l.free_blocks, 44389);
	assert_int_equal(l.n_groups, 8);
	assert_int_equal(l.groups[7].first, 229376);
	assert_int_equal(l.groups[7].last, 262143);
	assert_int_equal(l.groups[7].free_blocks, 11135);
	assert_int_equal(l.groups[7].free_inodes, 8192);
	extfs_layout_done(&l);
	free(t);

	t = load("good-64m-empty-1k.txt");
	assert_int_equal(extfs_parse_dumpe2fs(t, &l), 0);
	assert_int_equal(l.block_size, 1024);
	assert_int_equal(l.first_block, 1);
	assert_int_equal(l.n_groups, 8);
	assert_int_equal(l.groups[0].first, 1);
	extfs_layout_done(&l);
	free(t);
}

static void test_parse_bad(void **state)
{
	static const char *const bad[] = {
		"bad-truncated-header.txt", "bad-missing-group.txt", "bad-block-count.txt", "bad-free-blocks.txt",
	};
	struct extfs_layout l;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *t = load(bad[i]);
		assert_int_equal(extfs_parse_dumpe2fs(t, &l), -EINVAL);
		free(t);
	}
	assert_int_equal(extfs_parse_dumpe2fs("", &l), -EINVAL);
	assert_int_equal(extfs_parse_dumpe2fs("Block size: 4096\n", &l), -EINVAL);
}

/* The 1 GiB filesystem 89% full: resize2fs -P calls it unshrinkable (minimum = full size), but
 * its last group alone has 43 MiB free, so 32 MiB can go. */
static void test_room_89pct(void **state)
{
	struct extfs_layout l;
	struct extfs_room room;
	char *t = load("good-1g-89pct.txt");

	assert_int_equal(extfs_parse_dumpe2fs(t, &l), 0);
	assert_int_equal(extfs_shrink_room(&l, 262144 - 8192, &room), 0);
	/* Group 7 loses 8192 blocks of which at most 32768-11135 are used. */
	assert_int_equal(room.blocks_to_move, 8192);
	assert_true(room.kept_free_blocks >= 44389 - 11135);
	assert_int_equal(room.inodes_to_move, 0);
	/* Shrinking by 900 MiB cannot work. */
	assert_int_equal(extfs_shrink_room(&l, 262144 - 230400, &room), -ENOSPC);
	assert_int_equal(extfs_shrink_room(&l, 262144, &room), -EINVAL);
	assert_int_equal(extfs_shrink_room(&l, 0, &room), -EINVAL);
	extfs_layout_done(&l);
	free(t);
}

/* Synthetic layouts: the proof is exact for whole groups and conservative for a cut one. */
static void test_room_synthetic(void **state)
{
	struct extfs_group g[4] = {
		{ 0, 999, 100, 10 },   /* 900 used */
		{ 1000, 1999, 500, 10 },
		{ 2000, 2999, 900, 10 },
		{ 3000, 3999, 0, 5 },  /* full group, 5 inodes used */
	};
	struct extfs_layout l = {
		.block_size = 4096, .block_count = 4000, .free_blocks = 1500, .inode_count = 40,
		.free_inodes = 35, .first_block = 0, .blocks_per_group = 1000, .inodes_per_group = 10,
		.n_groups = 4, .groups = g,
	};
	struct extfs_room room;

	/* Cut the whole last group: 1000 used blocks, 5 inodes, must fit in 1500 free. */
	assert_int_equal(extfs_shrink_room(&l, 3000, &room), 0);
	assert_int_equal(room.blocks_to_move, 1000);
	assert_int_equal(room.kept_free_blocks, 1500);
	assert_int_equal(room.inodes_to_move, 5);
	assert_int_equal(room.kept_free_inodes, 30);
	/* Cut half of group 2 as well: its 100 used blocks may all sit in the cut half, and only
	 * 400 of its 900 free blocks surely stay: 1100 (+ margin) to move into 1000. */
	assert_int_equal(extfs_shrink_room(&l, 2500, &room), -ENOSPC);
	assert_int_equal(room.blocks_to_move, 1100);
	assert_int_equal(room.kept_free_blocks, 100 + 500 + 400);
	assert_int_equal(room.margin_blocks, 1100 / 32 + 64);
	/* Not enough inodes: no free inode outside the cut groups. */
	g[0].free_inodes = g[1].free_inodes = g[2].free_inodes = 0;
	assert_int_equal(extfs_shrink_room(&l, 3000, &room), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_room_89pct),
		cmocka_unit_test(test_room_synthetic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
