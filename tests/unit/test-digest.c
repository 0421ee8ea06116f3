/* Unit tests for src/shared/digest.c: SHA-256 known answers (FIPS 180-2 appendix B) and its
 * hex form both ways. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shared/digest.h"

static void test_known_answers(void **state)
{
	uint8_t sha[DIGEST_SHA256_SIZE];
	char hex[DIGEST_SHA256_HEX_SIZE];
	char *million;

	assert_int_equal(digest_sha256("abc", 3, sha), 0);
	assert_string_equal(digest_sha256_to_hex(sha, hex),
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(digest_sha256("", 0, sha), 0);
	assert_string_equal(digest_sha256_to_hex(sha, hex),
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	million = malloc(1000000);
	assert_non_null(million);
	memset(million, 'a', 1000000);
	assert_int_equal(digest_sha256(million, 1000000, sha), 0);
	assert_string_equal(digest_sha256_to_hex(sha, hex),
			    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

static void test_hex(void **state)
{
	uint8_t a[DIGEST_SHA256_SIZE], b[DIGEST_SHA256_SIZE];
	char hex[DIGEST_SHA256_HEX_SIZE];

	assert_int_equal(digest_sha256("abc", 3, a), 0);
	assert_int_equal(digest_sha256_from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", b),
			 0);
	assert_true(digest_sha256_equal(a, b));
	assert_int_equal(digest_sha256_from_hex(digest_sha256_to_hex(a, hex), b), 0);
	assert_true(digest_sha256_equal(a, b));
	b[31] ^= 1;
	assert_false(digest_sha256_equal(a, b));
	/* 63 or 65 digits, a non-digit, a space: refused. */
	assert_int_equal(digest_sha256_from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a", b),
			 -EINVAL);
	assert_int_equal(digest_sha256_from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", b),
			 -EINVAL);
	assert_int_equal(digest_sha256_from_hex("za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", b),
			 -EINVAL);
	assert_int_equal(digest_sha256_from_hex(" a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", b),
			 -EINVAL);
	assert_int_equal(digest_sha256_from_hex("", b), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_hex),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
