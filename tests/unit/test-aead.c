/* Unit tests for src/shared/aead.c: the known answer of the GCM specification's test case 16
 * (McGrew and Viega, AES-256 with additional data), in place, and every kind of alteration. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "shared/aead.h"

static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
	return n;
}

struct vector {
	uint8_t key[AEAD_KEY_SIZE], nonce[AEAD_NONCE_SIZE], plain[60], cipher[60], tag[AEAD_TAG_SIZE];
	char aad[21];
};

static void load(struct vector *v)
{
	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", v->key);
	unhex("cafebabefacedbaddecaf888", v->nonce);
	unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b5"
	      "25b16aedf5aa0de657ba637b39", v->plain);
	unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
	      "c5f61e6393ba7a0abcc9f662", v->cipher);
	unhex("76fc6ece0f4e1768cddf8853bb2d551b", v->tag);
	/* The vector's additional data has no zero byte, so it passes as aead's context string. */
	memset(v->aad, 0, sizeof(v->aad));
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", (uint8_t *)v->aad);
}

static void test_known_answer(void **state)
{
	struct vector v;
	uint8_t out[60], tag[AEAD_TAG_SIZE];
	(void)state;

	load(&v);
	assert_int_equal(aead_seal(v.key, v.nonce, v.aad, v.plain, sizeof(v.plain), out, tag), 0);
	assert_memory_equal(out, v.cipher, sizeof(out));
	assert_memory_equal(tag, v.tag, sizeof(tag));
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher), v.tag, out), 0);
	assert_memory_equal(out, v.plain, sizeof(out));
	/* In place, as the callers may do. */
	memcpy(out, v.plain, sizeof(out));
	assert_int_equal(aead_seal(v.key, v.nonce, v.aad, out, sizeof(out), out, tag), 0);
	assert_memory_equal(out, v.cipher, sizeof(out));
}

static void test_altered(void **state)
{
	struct vector v;
	uint8_t out[60];
	(void)state;

	load(&v);
	v.cipher[7] ^= 0x01;
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher), v.tag, out), -EBADMSG);
	/* What GCM released before the tag check is wiped, not left for a careless caller. */
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(out[i], 0);
	v.cipher[7] ^= 0x01;
	v.tag[15] ^= 0x80;
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher), v.tag, out), -EBADMSG);
	v.tag[15] ^= 0x80;
	v.nonce[0] ^= 0x01;
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher), v.tag, out), -EBADMSG);
	v.nonce[0] ^= 0x01;
	v.key[31] ^= 0x01;
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher), v.tag, out), -EBADMSG);
	v.key[31] ^= 0x01;
	assert_int_equal(aead_open(v.key, v.nonce, "another context", v.cipher, sizeof(v.cipher), v.tag, out),
			 -EBADMSG);
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher) - 1, v.tag, out), -EBADMSG);
	assert_int_equal(aead_open(v.key, v.nonce, v.aad, v.cipher, sizeof(v.cipher), v.tag, out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_altered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
