/* SHA-256 through libcrypto's EVP interface, and its hex form. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "basic/string-util.h"
#include "shared/digest.h"
#include "shared/openssl-util.h"

int digest_sha256(const void *data, size_t size, uint8_t ret[DIGEST_SHA256_SIZE])
{
	unsigned len = 0;

	if (EVP_Digest(data, size, ret, &len, EVP_sha256(), NULL) != 1 || len != DIGEST_SHA256_SIZE)
		return openssl_util_error(-EIO, "SHA-256");
	return 0;
}

char *digest_sha256_to_hex(const uint8_t sha[DIGEST_SHA256_SIZE], char buf[DIGEST_SHA256_HEX_SIZE])
{
	return hex_encode(sha, DIGEST_SHA256_SIZE, buf);
}

int digest_sha256_from_hex(const char *hex, uint8_t ret[DIGEST_SHA256_SIZE])
{
	return hex_decode(hex, ret, DIGEST_SHA256_SIZE);
}

bool digest_sha256_equal(const uint8_t a[DIGEST_SHA256_SIZE], const uint8_t b[DIGEST_SHA256_SIZE])
{
	return CRYPTO_memcmp(a, b, DIGEST_SHA256_SIZE) == 0;
}
