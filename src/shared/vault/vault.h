/* The key vault's cryptography: the master key that seals everything at rest, key-encryption
 * keys (KEKs) and the wrap/unwrap of volume secrets with them. OpenSSL libcrypto only; every
 * OpenSSL error is drained in vault.c and returned as -errno. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VAULT_MASTER_KEY_SIZE 32
#define VAULT_AES_KEY_SIZE 32
#define VAULT_DATA_KEY_SIZE 32 /* a data key: encrypts one large object (a header backup) */
/* Sealed blob: format byte, 12-byte nonce, ciphertext, 16-byte GCM tag. */
#define VAULT_SEAL_NONCE_SIZE 12
#define VAULT_SEAL_TAG_SIZE 16
#define VAULT_SEAL_OVERHEAD (1 + VAULT_SEAL_NONCE_SIZE + VAULT_SEAL_TAG_SIZE)
/* Largest secret that can be wrapped (A256KW); RSA keys allow less (see vault_wrap). */
#define VAULT_WRAP_MAX 4096

struct vault;

enum vault_kty {
	VAULT_KTY_RSA,
	VAULT_KTY_AES,
};

enum vault_alg {
	VAULT_ALG_RSA_OAEP,     /* RSAES-OAEP, SHA-1 and MGF1-SHA-1 (JWA "RSA-OAEP") */
	VAULT_ALG_RSA_OAEP_256, /* RSAES-OAEP, SHA-256 and MGF1-SHA-256 (JWA "RSA-OAEP-256"), default */
	VAULT_ALG_A256KW,       /* AES-256 key wrap: RFC 3394, or RFC 5649 padding for lengths not a multiple of 8 */
};

/* Loads the master key at path, or creates it (0600, O_EXCL) when create is true and it does not
 * exist. Returns 0, -ENOENT, -EBADMSG (wrong size), -EEXIST or another -errno. */
int vault_open(const char *path, bool create, struct vault **ret);
void vault_free(struct vault *v);

/* Encrypts plain under the master key with AES-256-GCM; context is bound as additional data, so
 * a blob moved to another row does not open. *ret is malloc'd (ciphertext only).
 * Returns 0, -ENOMEM or -EIO. */
int vault_seal(struct vault *v, const char *context, const void *plain, size_t size, uint8_t **ret,
	       size_t *ret_size);
/* As vault_seal with a caller-chosen nonce: for known-answer tests only. */
int vault_seal_with_nonce(struct vault *v, const uint8_t nonce[VAULT_SEAL_NONCE_SIZE], const char *context,
			  const void *plain, size_t size, uint8_t **ret, size_t *ret_size);
/* Opens a sealed blob into secret memory (secret_free it). Returns 0, -EBADMSG when the blob is
 * malformed, was sealed under another key or context, or was altered; -ENOMEM. */
int vault_unseal(struct vault *v, const char *context, const uint8_t *sealed, size_t size, void **ret,
		 size_t *ret_size);

/* As vault_seal and vault_unseal, under a data key instead of the master key: for objects too
 * large for a KEK to wrap (a header backup), whose own random data key is then sealed (and
 * wrapped) as a secret is. The blob's layout is the same. Returns as they do. */
int vault_seal_with_key(const uint8_t key[VAULT_DATA_KEY_SIZE], const char *context, const void *plain, size_t size,
			uint8_t **ret, size_t *ret_size);
int vault_unseal_with_key(const uint8_t key[VAULT_DATA_KEY_SIZE], const char *context, const uint8_t *sealed,
			  size_t size, void **ret, size_t *ret_size);

/* For tests: a vault over a given master key. Returns 0 or -ENOMEM. */
int vault_new_from_key(const uint8_t key[VAULT_MASTER_KEY_SIZE], struct vault **ret);

/* Parses a key type and size ("RSA" 2048/3072/4096, "AES" 256; size 0 picks 2048 or 256).
 * Returns 0 or -EINVAL. */
int vault_kty_from_string(const char *s, enum vault_kty *ret);
const char *vault_kty_to_string(enum vault_kty kty);
int vault_key_size_check(enum vault_kty kty, unsigned *size);

/* Parses a JWA algorithm name. RSA1_5 returns -EPROTONOSUPPORT, anything else unknown -EINVAL;
 * *ret_message then explains why and what to use. */
int vault_alg_from_string(const char *s, enum vault_alg *ret, const char **ret_message);
const char *vault_alg_to_string(enum vault_alg alg);
/* Whether alg works with a key of type kty. */
bool vault_alg_fits(enum vault_alg alg, enum vault_kty kty);

/* Generates a KEK. *ret_material is the private key (DER for RSA, raw bytes for AES) in secret
 * memory; *ret_public is a malloc'd PEM public key for RSA, NULL for AES. Returns 0, -EINVAL,
 * -ENOMEM or -EIO. */
int vault_key_generate(enum vault_kty kty, unsigned size, void **ret_material, size_t *ret_material_size,
		       char **ret_public);

/* Wraps plain with the KEK material. *ret is malloc'd. Returns 0, -EINVAL (algorithm does not fit
 * the key type), -EMSGSIZE (plain too long for this key: RSA-OAEP carries at most the modulus size
 * minus 2*hash-1-1 bytes), -ENOMEM or -EIO. */
int vault_wrap(enum vault_kty kty, const void *material, size_t material_size, enum vault_alg alg,
	       const void *plain, size_t size, uint8_t **ret, size_t *ret_size);
/* A loaded KEK: parsed once, then used for any number of wraps and unwraps, from any number of
 * threads at once (OpenSSL keys are read-only during encrypt and decrypt). Returns 0, -EBADMSG
 * (material does not parse), -ENOMEM. */
struct vault_key;
int vault_key_load(enum vault_kty kty, const void *material, size_t material_size, struct vault_key **ret);
void vault_key_free(struct vault_key *k);
enum vault_kty vault_key_type(const struct vault_key *k);
/* As vault_wrap and vault_unwrap, with a loaded key. */
int vault_key_wrap(struct vault_key *k, enum vault_alg alg, const void *plain, size_t size, uint8_t **ret,
		   size_t *ret_size);
int vault_key_unwrap(struct vault_key *k, enum vault_alg alg, const uint8_t *wrapped, size_t size, void **ret,
		     size_t *ret_size);

/* Unwraps into secret memory. Returns 0, -EBADMSG (wrong key, algorithm or altered data),
 * -EINVAL, -ENOMEM. */
int vault_unwrap(enum vault_kty kty, const void *material, size_t material_size, enum vault_alg alg,
		 const uint8_t *wrapped, size_t size, void **ret, size_t *ret_size);
