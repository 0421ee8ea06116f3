/* Unit tests for src/shared/vault.c: known-answer tests for sealing and key wrap (vectors from
 * RFC 3394, and from OpenSSL's command line and Python's cryptography for the others), round
 * trips, tampering, RSA1_5 refusal. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "shared/secret.h"
#include "shared/vault/vault.h"

static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
	return n;
}

static void test_seal_known_answer(void **state)
{
	/* AES-256-GCM, key 0x42 * 32, nonce 00..0b, AAD "secret:vm1:data0" (Python cryptography). */
	static const char expect[] = "73b1fda8dc49d27bfc753763b9af3a4857472c394ba71a8233ae1204a1222c64c7";
	uint8_t key[32], nonce[12], want[64];
	struct vault *v = NULL;
	uint8_t *sealed = NULL;
	void *plain = NULL;
	size_t n, size, wn;

	memset(key, 0x42, sizeof(key));
	for (int i = 0; i < 12; i++)
		nonce[i] = (uint8_t)i;
	assert_int_equal(vault_new_from_key(key, &v), 0);
	assert_int_equal(vault_seal_with_nonce(v, nonce, "secret:vm1:data0", "volume passphrase", 17, &sealed, &n), 0);
	wn = unhex(expect, want);
	assert_int_equal(n, 1 + 12 + wn);
	assert_int_equal(sealed[0], 1);
	assert_memory_equal(sealed + 1, nonce, 12);
	assert_memory_equal(sealed + 13, want, wn);

	assert_int_equal(vault_unseal(v, "secret:vm1:data0", sealed, n, &plain, &size), 0);
	assert_int_equal(size, 17);
	assert_memory_equal(plain, "volume passphrase", 17);
	secret_free(plain);

	/* Another context, a flipped bit, a truncated blob: all refused. */
	assert_int_equal(vault_unseal(v, "secret:vm2:data0", sealed, n, &plain, &size), -EBADMSG);
	sealed[20] ^= 1;
	assert_int_equal(vault_unseal(v, "secret:vm1:data0", sealed, n, &plain, &size), -EBADMSG);
	sealed[20] ^= 1;
	assert_int_equal(vault_unseal(v, "secret:vm1:data0", sealed, 10, &plain, &size), -EBADMSG);
	sealed[0] = 9;
	assert_int_equal(vault_unseal(v, "secret:vm1:data0", sealed, n, &plain, &size), -EBADMSG);
	free(sealed);
	vault_free(v);
}

static void test_seal_random_nonce(void **state)
{
	uint8_t key[32] = { 1 };
	struct vault *v = NULL, *other = NULL;
	uint8_t *a = NULL, *b = NULL;
	void *plain = NULL;
	size_t na, nb, size;

	assert_int_equal(vault_new_from_key(key, &v), 0);
	assert_int_equal(vault_seal(v, "c", "x", 1, &a, &na), 0);
	assert_int_equal(vault_seal(v, "c", "x", 1, &b, &nb), 0);
	assert_int_equal(na, nb);
	assert_memory_not_equal(a, b, na);
	key[0] = 2;
	assert_int_equal(vault_new_from_key(key, &other), 0);
	assert_int_equal(vault_unseal(other, "c", a, na, &plain, &size), -EBADMSG);
	free(a);
	free(b);
	vault_free(v);
	vault_free(other);
}

static void test_seal_with_key(void **state)
{
	uint8_t master[32], dek[VAULT_DATA_KEY_SIZE], other[VAULT_DATA_KEY_SIZE], *plain_in, *sealed = NULL, *mine = NULL;
	const size_t n = 1024 * 1024 + 7;
	struct vault *v = NULL;
	void *plain = NULL;
	size_t size, sn, mn;

	memset(master, 0x42, sizeof(master));
	memset(dek, 0x42, sizeof(dek));
	memset(other, 0x43, sizeof(other));
	plain_in = malloc(n);
	assert_non_null(plain_in);
	assert_int_equal(secret_random(plain_in, n), 0);
	/* A data key seals a large object in the master key's layout. */
	assert_int_equal(vault_seal_with_key(dek, "header:vm1:os", plain_in, n, &sealed, &sn), 0);
	assert_int_equal(sn, n + VAULT_SEAL_OVERHEAD);
	assert_int_equal(sealed[0], 1);
	assert_int_equal(vault_unseal_with_key(dek, "header:vm1:os", sealed, sn, &plain, &size), 0);
	assert_int_equal(size, n);
	assert_memory_equal(plain, plain_in, n);
	assert_true(secret_size(plain) >= n);
	secret_free(plain);
	/* The same key as a master key opens the same blob: one format. */
	assert_int_equal(vault_new_from_key(master, &v), 0);
	assert_int_equal(vault_unseal(v, "header:vm1:os", sealed, sn, &plain, &size), 0);
	secret_free(plain);
	assert_int_equal(vault_seal(v, "x", "abc", 3, &mine, &mn), 0);
	assert_int_equal(vault_unseal_with_key(dek, "x", mine, mn, &plain, &size), 0);
	assert_memory_equal(plain, "abc", 3);
	secret_free(plain);
	plain = NULL;
	/* Another key, another context, a flipped bit anywhere: refused. */
	assert_int_equal(vault_unseal_with_key(other, "header:vm1:os", sealed, sn, &plain, &size), -EBADMSG);
	assert_int_equal(vault_unseal_with_key(dek, "header:vm2:os", sealed, sn, &plain, &size), -EBADMSG);
	sealed[sn / 2] ^= 0x80;
	assert_int_equal(vault_unseal_with_key(dek, "header:vm1:os", sealed, sn, &plain, &size), -EBADMSG);
	sealed[sn / 2] ^= 0x80;
	sealed[sn - 1] ^= 1;
	assert_int_equal(vault_unseal_with_key(dek, "header:vm1:os", sealed, sn, &plain, &size), -EBADMSG);
	assert_null(plain);
	free(sealed);
	free(mine);
	free(plain_in);
	vault_free(v);
}

static void test_a256kw_rfc3394(void **state)
{
	/* RFC 3394 section 4.6: 256 bits of key data with a 256-bit KEK. */
	uint8_t kek[32], data[32], want[40];
	uint8_t *wrapped = NULL;
	void *plain = NULL;
	size_t n, size;

	for (int i = 0; i < 32; i++)
		kek[i] = (uint8_t)i;
	unhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F", data);
	unhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21", want);
	assert_int_equal(vault_wrap(VAULT_KTY_AES, kek, 32, VAULT_ALG_A256KW, data, 32, &wrapped, &n), 0);
	assert_int_equal(n, 40);
	assert_memory_equal(wrapped, want, 40);
	assert_int_equal(vault_unwrap(VAULT_KTY_AES, kek, 32, VAULT_ALG_A256KW, want, 40, &plain, &size), 0);
	assert_int_equal(size, 32);
	assert_memory_equal(plain, data, 32);
	secret_free(plain);
	want[5] ^= 0x80;
	assert_int_equal(vault_unwrap(VAULT_KTY_AES, kek, 32, VAULT_ALG_A256KW, want, 40, &plain, &size), -EBADMSG);
	free(wrapped);
}

static void test_a256kw_padded(void **state)
{
	/* RFC 5649 with a 256-bit KEK, 20 bytes: `openssl enc -id-aes256-wrap-pad` and Python agree. */
	uint8_t kek[32], want[32];
	uint8_t *wrapped = NULL;
	void *plain = NULL;
	size_t n, size;

	for (int i = 0; i < 32; i++)
		kek[i] = (uint8_t)i;
	unhex("a8a426e9a038a033feefc432b6f400235629c7ef6ace5dfe9951aadd852eb69f", want);
	assert_int_equal(vault_wrap(VAULT_KTY_AES, kek, 32, VAULT_ALG_A256KW, "0123456789abcdef0123", 20, &wrapped, &n), 0);
	assert_int_equal(n, 32);
	assert_memory_equal(wrapped, want, 32);
	assert_int_equal(vault_unwrap(VAULT_KTY_AES, kek, 32, VAULT_ALG_A256KW, want, 32, &plain, &size), 0);
	assert_int_equal(size, 20);
	assert_memory_equal(plain, "0123456789abcdef0123", 20);
	secret_free(plain);
	free(wrapped);
	/* Wrong key. */
	kek[0] ^= 1;
	assert_int_equal(vault_unwrap(VAULT_KTY_AES, kek, 32, VAULT_ALG_A256KW, want, 32, &plain, &size), -EBADMSG);
}

static void rsa_known_answer(const char *file, enum vault_alg alg, enum vault_alg other)
{
	char *der = NULL, *ct = NULL, *plain_text = NULL;
	size_t dn, cn, pn, size;
	void *plain = NULL;

	assert_int_equal(read_full_file("tests/data/vault/rsa2048.der", 8192, &der, &dn), 0);
	assert_int_equal(read_full_file(file, 8192, &ct, &cn), 0);
	assert_int_equal(read_full_file("tests/data/vault/plain.txt", 8192, &plain_text, &pn), 0);
	assert_int_equal(vault_unwrap(VAULT_KTY_RSA, der, dn, alg, (uint8_t *)ct, cn, &plain, &size), 0);
	assert_int_equal(size, pn);
	assert_memory_equal(plain, plain_text, pn);
	secret_free(plain);
	/* The other OAEP hash does not open it. */
	assert_int_equal(vault_unwrap(VAULT_KTY_RSA, der, dn, other, (uint8_t *)ct, cn, &plain, &size), -EBADMSG);
	ct[100] ^= 1;
	assert_int_equal(vault_unwrap(VAULT_KTY_RSA, der, dn, alg, (uint8_t *)ct, cn, &plain, &size), -EBADMSG);
	free(der);
	free(ct);
	free(plain_text);
}

static void test_rsa_oaep_256_known_answer(void **state)
{
	/* Ciphertext from `openssl pkeyutl -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256`. */
	rsa_known_answer("tests/data/vault/rsa-oaep-256.bin", VAULT_ALG_RSA_OAEP_256, VAULT_ALG_RSA_OAEP);
}

static void test_rsa_oaep_known_answer(void **state)
{
	rsa_known_answer("tests/data/vault/rsa-oaep.bin", VAULT_ALG_RSA_OAEP, VAULT_ALG_RSA_OAEP_256);
}

static void test_generate_and_round_trip(void **state)
{
	static const struct {
		enum vault_kty kty;
		unsigned size;
		enum vault_alg alg;
		size_t max; /* longest plaintext */
	} cases[] = {
		{ VAULT_KTY_RSA, 2048, VAULT_ALG_RSA_OAEP_256, 256 - 66 },
		{ VAULT_KTY_RSA, 2048, VAULT_ALG_RSA_OAEP, 256 - 42 },
		{ VAULT_KTY_RSA, 3072, VAULT_ALG_RSA_OAEP_256, 384 - 66 },
		{ VAULT_KTY_AES, 256, VAULT_ALG_A256KW, VAULT_WRAP_MAX },
	};
	uint8_t msg[VAULT_WRAP_MAX + 1];

	for (size_t i = 0; i < VAULT_WRAP_MAX + 1; i++)
		msg[i] = (uint8_t)(i * 7);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		void *material = NULL, *plain = NULL;
		char *pub = NULL;
		uint8_t *w = NULL;
		size_t mn, wn, pn;

		assert_int_equal(vault_key_generate(cases[c].kty, cases[c].size, &material, &mn, &pub), 0);
		assert_true((pub != NULL) == (cases[c].kty == VAULT_KTY_RSA));
		assert_int_equal(vault_wrap(cases[c].kty, material, mn, cases[c].alg, msg, 172, &w, &wn), 0);
		assert_int_equal(vault_unwrap(cases[c].kty, material, mn, cases[c].alg, w, wn, &plain, &pn), 0);
		assert_int_equal(pn, 172);
		assert_memory_equal(plain, msg, 172);
		secret_free(plain);
		free(w);
		assert_int_equal(vault_wrap(cases[c].kty, material, mn, cases[c].alg, msg, cases[c].max, &w, &wn), 0);
		free(w);
		assert_int_equal(vault_wrap(cases[c].kty, material, mn, cases[c].alg, msg, cases[c].max + 1, &w, &wn),
				 -EMSGSIZE);
		secret_free(material);
		free(pub);
	}
}

static void test_algorithms(void **state)
{
	enum vault_alg alg;
	enum vault_kty kty;
	const char *why = NULL;
	unsigned size;

	assert_int_equal(vault_alg_from_string("RSA-OAEP-256", &alg, &why), 0);
	assert_int_equal(alg, VAULT_ALG_RSA_OAEP_256);
	assert_int_equal(vault_alg_from_string("RSA-OAEP", &alg, &why), 0);
	assert_int_equal(vault_alg_from_string("A256KW", &alg, &why), 0);
	assert_int_equal(vault_alg_from_string("RSA1_5", &alg, &why), -EPROTONOSUPPORT);
	assert_non_null(strstr(why, "padding-oracle"));
	assert_non_null(strstr(why, "RSA-OAEP-256"));
	assert_int_equal(vault_alg_from_string("rsa-oaep", &alg, &why), -EINVAL);
	assert_true(vault_alg_fits(VAULT_ALG_A256KW, VAULT_KTY_AES));
	assert_false(vault_alg_fits(VAULT_ALG_A256KW, VAULT_KTY_RSA));
	assert_false(vault_alg_fits(VAULT_ALG_RSA_OAEP, VAULT_KTY_AES));
	assert_int_equal(vault_kty_from_string("aes", &kty), 0);
	assert_int_equal(kty, VAULT_KTY_AES);
	assert_int_equal(vault_kty_from_string("EC", &kty), -EINVAL);
	size = 0;
	assert_int_equal(vault_key_size_check(VAULT_KTY_RSA, &size), 0);
	assert_int_equal(size, 2048);
	size = 1024;
	assert_int_equal(vault_key_size_check(VAULT_KTY_RSA, &size), -EINVAL);
	size = 128;
	assert_int_equal(vault_key_size_check(VAULT_KTY_AES, &size), -EINVAL);
}

static void test_master_key_file(void **state)
{
	char dir[] = "/tmp/vmcrypt-unit.XXXXXX", path[128];
	struct vault *v = NULL, *again = NULL;
	uint8_t *sealed = NULL;
	void *plain = NULL;
	size_t n, size;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/master.key", dir);
	assert_int_equal(vault_open(path, false, &v), -ENOENT);
	assert_int_equal(vault_open(path, true, &v), 0);
	assert_int_equal(vault_seal(v, "ctx", "abc", 3, &sealed, &n), 0);
	assert_int_equal(vault_open(path, false, &again), 0);
	assert_int_equal(vault_unseal(again, "ctx", sealed, n, &plain, &size), 0);
	assert_memory_equal(plain, "abc", 3);
	secret_free(plain);
	free(sealed);
	vault_free(v);
	vault_free(again);
	assert_int_equal(write_file_atomic(path, "short", 5, 0600), 0);
	assert_int_equal(vault_open(path, false, &v), -EBADMSG);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_known_answer),
		cmocka_unit_test(test_seal_random_nonce),
		cmocka_unit_test(test_seal_with_key),
		cmocka_unit_test(test_a256kw_rfc3394),
		cmocka_unit_test(test_a256kw_padded),
		cmocka_unit_test(test_rsa_oaep_256_known_answer),
		cmocka_unit_test(test_rsa_oaep_known_answer),
		cmocka_unit_test(test_generate_and_round_trip),
		cmocka_unit_test(test_algorithms),
		cmocka_unit_test(test_master_key_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
