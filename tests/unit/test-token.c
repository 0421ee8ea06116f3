/* Unit tests for src/shared/token.c: token forms, hashing, parsing of hostile input,
 * Authorization headers, constant-time comparison. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shared/secret.h"
#include "shared/vault/token.h"

#define SECRET64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ID32 "00112233445566778899aabbccddeeff"

static void test_known_hash(void **state)
{
	/* sha256sum of the token text. */
	static const char want[] = "830d02641475f4fa4f75c4fbb99dba4984d822a19487d39ebaa62329e40d8cf6";
	const char *text = "vmc-admin-" SECRET64;
	uint8_t hash[TOKEN_HASH_SIZE];
	char hex[2 * TOKEN_HASH_SIZE + 1], id[TOKEN_ID_LEN + 1];
	enum token_kind kind;

	assert_int_equal(token_parse(text, strlen(text), &kind, id, hash), 0);
	assert_int_equal(kind, TOKEN_ADMIN);
	assert_string_equal(id, "");
	token_hex(hash, sizeof(hash), hex);
	assert_string_equal(hex, want);
}

static void test_generate_parse(void **state)
{
	static const enum token_kind kinds[] = { TOKEN_ADMIN, TOKEN_ENROLL, TOKEN_VM, TOKEN_NAMED };
	char gid[TOKEN_ID_LEN + 1];

	assert_int_equal(token_id_generate(gid), 0);
	assert_int_equal(strlen(gid), TOKEN_ID_LEN);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		uint8_t h1[TOKEN_HASH_SIZE], h2[TOKEN_HASH_SIZE], h3[TOKEN_HASH_SIZE];
		char *t1 = NULL, *t2 = NULL, id[TOKEN_ID_LEN + 1];
		enum token_kind kind;

		assert_int_equal(token_generate(kinds[i], gid, &t1, h1), 0);
		assert_int_equal(token_generate(kinds[i], gid, &t2, h2), 0);
		assert_string_not_equal(t1, t2);
		assert_false(token_hash_equal(h1, h2));
		assert_int_equal(token_parse(t1, strlen(t1), &kind, id, h3), 0);
		assert_int_equal(kind, kinds[i]);
		assert_true(token_hash_equal(h1, h3));
		if (kinds[i] != TOKEN_ADMIN)
			assert_string_equal(id, gid);
		/* The hash covers the kind: the same secret under another prefix is another hash. */
		if (kinds[i] == TOKEN_VM) {
			char other[TOKEN_MAX_LEN + 1];
			snprintf(other, sizeof(other), "vmc-enroll-%s", t1 + strlen("vmc-vm-"));
			assert_int_equal(token_parse(other, strlen(other), &kind, id, h2), 0);
			assert_int_equal(kind, TOKEN_ENROLL);
			assert_false(token_hash_equal(h1, h2));
		}
		/* A named token's text starts with its own prefix; as a VM credential it is another hash. */
		if (kinds[i] == TOKEN_NAMED) {
			char other[TOKEN_MAX_LEN + 1];
			assert_true(strncmp(t1, "vmc-named-", 10) == 0);
			snprintf(other, sizeof(other), "vmc-vm-%s", t1 + strlen("vmc-named-"));
			assert_int_equal(token_parse(other, strlen(other), &kind, id, h2), 0);
			assert_int_equal(kind, TOKEN_VM);
			assert_false(token_hash_equal(h1, h2));
		}
		secret_free(t1);
		secret_free(t2);
	}
	assert_int_equal(token_generate(TOKEN_VM, "short", NULL, NULL), -EINVAL);
	assert_int_equal(token_generate(TOKEN_VM, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(token_generate(TOKEN_VM, "00112233445566778899AABBCCDDEEFF", NULL, NULL), -EINVAL);
}

static void test_parse_evil(void **state)
{
	static const char *const bad[] = {
		"",
		"vmc-admin-",
		"vmc-admin-" SECRET64 "0",
		"vmc-admin-" SECRET64 "\n",
		"vmc-admin-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"vmc-admin-" SECRET64 "x",
		"vmc-vm-" SECRET64,
		"vmc-vm-" ID32 SECRET64,
		"vmc-vm-" ID32 "_" SECRET64,
		"vmc-vm-0011223344556677-" SECRET64,
		"vmc-root-" SECRET64,
		"VMC-ADMIN-" SECRET64,
		"Bearer vmc-admin-" SECRET64,
	};
	uint8_t hash[TOKEN_HASH_SIZE];
	char id[TOKEN_ID_LEN + 1];
	enum token_kind kind;
	char with_nul[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(token_parse(bad[i], strlen(bad[i]), &kind, id, hash), -EINVAL);
	snprintf(with_nul, sizeof(with_nul), "vmc-admin-%s", SECRET64);
	with_nul[20] = 0;
	assert_int_equal(token_parse(with_nul, strlen("vmc-admin-" SECRET64), &kind, id, hash), -EINVAL);
	assert_int_equal(token_parse("vmc-vm-" ID32 "-" SECRET64, strlen("vmc-vm-" ID32 "-" SECRET64), &kind, id,
				     hash),
			 0);
	assert_int_equal(kind, TOKEN_VM);
	assert_string_equal(id, ID32);
}

static void test_authorization(void **state)
{
	uint8_t hash[TOKEN_HASH_SIZE];
	char id[TOKEN_ID_LEN + 1];
	enum token_kind kind;

	assert_int_equal(token_from_authorization(NULL, &kind, id, hash), -ENOKEY);
	assert_int_equal(token_from_authorization("Basic dXNlcjpwYXNz", &kind, id, hash), -ENOKEY);
	assert_int_equal(token_from_authorization("Bearer", &kind, id, hash), -ENOKEY);
	assert_int_equal(token_from_authorization("Bearer ", &kind, id, hash), -EINVAL);
	assert_int_equal(token_from_authorization("Bearer garbage", &kind, id, hash), -EINVAL);
	assert_int_equal(token_from_authorization("bearer  vmc-admin-" SECRET64 " ", &kind, id, hash), 0);
	assert_int_equal(kind, TOKEN_ADMIN);
	assert_int_equal(token_from_authorization("Bearer vmc-enroll-" ID32 "-" SECRET64, &kind, id, hash), 0);
	assert_int_equal(kind, TOKEN_ENROLL);
}

static void test_hex(void **state)
{
	uint8_t data[4] = { 0x00, 0xab, 0x10, 0xff }, back[4];
	char hex[9];

	token_hex(data, 4, hex);
	assert_string_equal(hex, "00ab10ff");
	assert_int_equal(token_unhex(hex, back, 4), 0);
	assert_memory_equal(back, data, 4);
	assert_int_equal(token_unhex("00AB10FF", back, 4), 0);
	assert_int_equal(token_unhex("00ab10f", back, 4), -EINVAL);
	assert_int_equal(token_unhex("00ab10fg", back, 4), -EINVAL);
}

static void test_hash_equal(void **state)
{
	uint8_t a[TOKEN_HASH_SIZE] = { 0 }, b[TOKEN_HASH_SIZE] = { 0 };

	assert_true(token_hash_equal(a, b));
	b[TOKEN_HASH_SIZE - 1] = 1;
	assert_false(token_hash_equal(a, b));
	b[TOKEN_HASH_SIZE - 1] = 0;
	b[0] = 0x80;
	assert_false(token_hash_equal(a, b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_hash),      cmocka_unit_test(test_generate_parse),
		cmocka_unit_test(test_parse_evil),      cmocka_unit_test(test_authorization),
		cmocka_unit_test(test_hex),             cmocka_unit_test(test_hash_equal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
