/* Unit tests for the parsers of xfs_db, btrfs dump-super and dumpe2fs -h output (src/shared/fssize.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shared/volume/fssize.h"

static void test_xfs(void **state)
{
	uint64_t v;

	assert_int_equal(fs_size_parse_xfs_db("dblocks = 76800\nblocksize = 4096\n", &v), 0);
	assert_int_equal(v, UINT64_C(76800) * 4096);
	assert_int_equal(fs_size_parse_xfs_db("blocksize = 4096\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_xfs_db("dblocks = 10\nblocksize = 0\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_xfs_db("dblocks = 99999999999999999999\nblocksize = 4096\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_xfs_db("dblocks = 18446744073709551615\nblocksize = 4096\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_xfs_db("xdblocks = 1\nblocksize = 4096\n", &v), -EINVAL);
}

static void test_btrfs(void **state)
{
	uint64_t v;

	assert_int_equal(fs_size_parse_btrfs_super("csum_type\t\t0 (crc32c)\n"
						   "dev_item.total_bytes\t385875968\n"
						   "dev_item.bytes_used\t92274688\n", &v), 0);
	assert_int_equal(v, 385875968);
	assert_int_equal(fs_size_parse_btrfs_super("dev_item.bytes_used\t1\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_btrfs_super("", &v), -EINVAL);
	/* Past UINT64_MAX: -EINVAL as documented, not parse_u64()'s -ERANGE. */
	assert_int_equal(fs_size_parse_btrfs_super("dev_item.total_bytes\t123456789012345678901234567890\n", &v),
			 -EINVAL);
}

/* dumpe2fs -h: a count and size whose product overflows was multiplied unchecked. */
static void test_dumpe2fs(void **state)
{
	uint64_t v;

	assert_int_equal(fs_size_parse_dumpe2fs("Block count:              262144\n"
						"Block size:               4096\n", &v), 0);
	assert_int_equal(v, UINT64_C(262144) * 4096);
	assert_int_equal(fs_size_parse_dumpe2fs("Block count:              262144\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_dumpe2fs("Block count:              18446744073709551615\n"
						"Block size:               4096\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_dumpe2fs("Block count:              4503599627370497\n"
						"Block size:               4096\n", &v), -EINVAL);
	assert_int_equal(fs_size_parse_dumpe2fs("Block count:              1\nBlock size:               0\n", &v),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xfs),
		cmocka_unit_test(test_btrfs),
		cmocka_unit_test(test_dumpe2fs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
