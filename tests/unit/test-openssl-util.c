/* Unit tests for src/shared/openssl-util.c: the one reader of OpenSSL's error queue. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "shared/openssl-util.h"

/* Garbage as a DER key leaves errors on the queue. */
static void queue_an_error(void)
{
	static const unsigned char junk[] = { 0x30, 0x03, 0x02, 0x01 };
	const unsigned char *p = junk;

	assert_null(d2i_AutoPrivateKey(NULL, &p, sizeof(junk)));
	assert_int_not_equal(ERR_peek_error(), 0);
}

static void test_drain(void **state)
{
	char buf[256];

	queue_an_error();
	assert_string_not_equal(openssl_util_drain(buf, sizeof(buf)), "");
	/* Emptied: a later failure is not reported with this one's text. */
	assert_int_equal(ERR_peek_error(), 0);
	assert_string_equal(openssl_util_drain(buf, sizeof(buf)), "");
}

static void test_error(void **state)
{
	queue_an_error();
	assert_int_equal(openssl_util_error(-EBADMSG, "test"), -EBADMSG);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_cleanup(void **state)
{
	_cleanup_(openssl_util_pkey_freep) EVP_PKEY *none = NULL;
	_cleanup_(openssl_util_bio_freep) BIO *bio = BIO_new(BIO_s_mem());
	_cleanup_(openssl_util_cipher_ctx_freep) EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	/* Freed at the end of scope (ASan reports a leak otherwise); NULL is left alone. */
	assert_non_null(bio);
	assert_non_null(ctx);
	assert_null(none);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_cleanup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
