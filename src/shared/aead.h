/* AES-256-GCM with a context string as additional data: the one authenticated cipher vmcrypt uses
 * for data at rest (the vault's master-key seal, the VM credential sealed to the TPM). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_SIZE 32
#define AEAD_NONCE_SIZE 12 /* 96 bits: GCM's native IV, no GHASH of the IV (SP 800-38D 8.2.1) */
#define AEAD_TAG_SIZE 16
/* Longest plaintext one call takes: OpenSSL's EVP interface counts in int. */
#define AEAD_SIZE_MAX ((size_t)INT32_MAX)

/* Encrypts size bytes of plain into out (size bytes, may be plain itself) and writes the tag;
 * context (a NUL-terminated string, may be "") is authenticated, not encrypted, so a ciphertext
 * moved to another purpose does not open. A nonce must never repeat under one key.
 * Returns 0, -EINVAL (size above AEAD_SIZE_MAX), -ENOMEM or -EIO. */
int aead_seal(const uint8_t key[AEAD_KEY_SIZE], const uint8_t nonce[AEAD_NONCE_SIZE], const char *context,
	      const void *plain, size_t size, uint8_t *out, uint8_t tag[AEAD_TAG_SIZE]);

/* Decrypts what aead_seal() made into out (size bytes; secret memory when it holds a secret).
 * On -EBADMSG out holds nothing usable and is wiped. Returns 0, -EBADMSG (another key, nonce or
 * context, or an altered ciphertext or tag), -EINVAL, -ENOMEM or -EIO. */
int aead_open(const uint8_t key[AEAD_KEY_SIZE], const uint8_t nonce[AEAD_NONCE_SIZE], const char *context,
	      const uint8_t *ciphertext, size_t size, const uint8_t tag[AEAD_TAG_SIZE], void *out);
