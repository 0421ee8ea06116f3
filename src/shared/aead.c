/* AES-256-GCM through OpenSSL's EVP interface; its error queue is read by openssl-util.c. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

#include "shared/aead.h"
#include "shared/openssl-util.h"

/* A context keyed for one message (enc 1: seal, 0: open) with context already authenticated. */
static int aead_begin(int enc, const uint8_t *key, const uint8_t *nonce, const char *context, size_t size,
		      EVP_CIPHER_CTX **ret)
{
	_cleanup_(openssl_util_cipher_ctx_freep) EVP_CIPHER_CTX *ctx = NULL;
	int n = 0;

	if (size > AEAD_SIZE_MAX || strlen(context) > AEAD_SIZE_MAX)
		return -EINVAL;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)context, (int)strlen(context)) != 1)
		return openssl_util_error(-EIO, "AES-GCM init");
	*ret = TAKE_PTR(ctx);
	return 0;
}

int aead_seal(const uint8_t key[AEAD_KEY_SIZE], const uint8_t nonce[AEAD_NONCE_SIZE], const char *context,
	      const void *plain, size_t size, uint8_t *out, uint8_t tag[AEAD_TAG_SIZE])
{
	_cleanup_(openssl_util_cipher_ctx_freep) EVP_CIPHER_CTX *ctx = NULL;
	int n = 0, fin = 0, r;

	r = aead_begin(1, key, nonce, context, size, &ctx);
	if (r < 0)
		return r;
	if (EVP_CipherUpdate(ctx, out, &n, plain, (int)size) != 1 || EVP_CipherFinal_ex(ctx, out + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_SIZE, tag) != 1)
		return openssl_util_error(-EIO, "AES-GCM seal");
	return 0;
}

int aead_open(const uint8_t key[AEAD_KEY_SIZE], const uint8_t nonce[AEAD_NONCE_SIZE], const char *context,
	      const uint8_t *ciphertext, size_t size, const uint8_t tag[AEAD_TAG_SIZE], void *out)
{
	_cleanup_(openssl_util_cipher_ctx_freep) EVP_CIPHER_CTX *ctx = NULL;
	int n = 0, fin = 0, r;

	r = aead_begin(0, key, nonce, context, size, &ctx);
	if (r < 0)
		return r;
	/* The tag is an input: OpenSSL's ctrl takes it through a non-const pointer and only reads. */
	if (EVP_CipherUpdate(ctx, out, &n, ciphertext, (int)size) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_SIZE, (void *)tag) != 1)
		return openssl_util_error(-EIO, "AES-GCM open");
	if (EVP_CipherFinal_ex(ctx, (unsigned char *)out + n, &fin) != 1) {
		/* GCM releases the plaintext before the tag is checked: what is in out is unproven. */
		OPENSSL_cleanse(out, size);
		ERR_clear_error();
		return -EBADMSG;
	}
	return 0;
}
