/* The key vault's cryptography: master-key sealing (AES-256-GCM, aead.c), KEK generation, RSA-OAEP and
 * AES key wrap. OpenSSL's error queue is read by openssl-util.c. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <string.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/aead.h"
#include "shared/openssl-util.h"
#include "shared/secret.h"
#include "shared/vault/vault.h"

struct vault {
	uint8_t *key; /* secret memory, VAULT_MASTER_KEY_SIZE bytes */
};

#define SEAL_FORMAT 1
_Static_assert(VAULT_SEAL_NONCE_SIZE == AEAD_NONCE_SIZE && VAULT_SEAL_TAG_SIZE == AEAD_TAG_SIZE &&
		       VAULT_MASTER_KEY_SIZE == AEAD_KEY_SIZE && VAULT_DATA_KEY_SIZE == AEAD_KEY_SIZE,
	       "the sealed blob's layout is aead.h's");

int vault_new_from_key(const uint8_t key[VAULT_MASTER_KEY_SIZE], struct vault **ret)
{
	struct vault *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v->key = secret_alloc(VAULT_MASTER_KEY_SIZE);
	if (!v->key) {
		free(v);
		return -ENOMEM;
	}
	memcpy(v->key, key, VAULT_MASTER_KEY_SIZE);
	*ret = v;
	return 0;
}

int vault_open(const char *path, bool create, struct vault **ret)
{
	_cleanup_secret_ void *key = NULL;
	size_t size = 0;
	int r;

	r = secret_read_file(path, &key, &size, NULL);
	if (r == -ENOENT && create) {
		r = secret_generate_file(path, VAULT_MASTER_KEY_SIZE, &key);
		size = VAULT_MASTER_KEY_SIZE;
	}
	if (r < 0)
		return r;
	if (size != VAULT_MASTER_KEY_SIZE)
		return -EBADMSG;
	return vault_new_from_key(key, ret);
}

void vault_free(struct vault *v)
{
	if (!v)
		return;
	secret_free(v->key);
	free(v);
}

/* The sealed blob under any AES-256 key: format byte, nonce, ciphertext, tag. */
static int seal_blob(const uint8_t *key, const uint8_t nonce[VAULT_SEAL_NONCE_SIZE], const char *context,
		     const void *plain, size_t size, uint8_t **ret, size_t *ret_size)
{
	_cleanup_free_ uint8_t *out = NULL;
	int r;

	if (size > INT32_MAX - VAULT_SEAL_OVERHEAD)
		return -EINVAL;
	out = malloc(size + VAULT_SEAL_OVERHEAD);
	if (!out)
		return -ENOMEM;
	out[0] = SEAL_FORMAT;
	memcpy(out + 1, nonce, VAULT_SEAL_NONCE_SIZE);
	r = aead_seal(key, nonce, context, plain, size, out + 1 + VAULT_SEAL_NONCE_SIZE,
		      out + 1 + VAULT_SEAL_NONCE_SIZE + size);
	if (r < 0)
		return r;
	*ret_size = size + VAULT_SEAL_OVERHEAD;
	*ret = TAKE_PTR(out);
	return 0;
}

static int seal_random_nonce(const uint8_t *key, const char *context, const void *plain, size_t size,
			     uint8_t **ret, size_t *ret_size)
{
	uint8_t nonce[VAULT_SEAL_NONCE_SIZE];
	int r;

	/* Random 96-bit nonces: the master key seals far fewer than 2^32 blobs (NIST SP 800-38D 8.3),
	 * and a data key seals one. */
	r = secret_random(nonce, sizeof(nonce));
	if (r < 0)
		return r;
	return seal_blob(key, nonce, context, plain, size, ret, ret_size);
}

static int unseal_blob(const uint8_t *key, const char *context, const uint8_t *sealed, size_t size, void **ret,
		       size_t *ret_size)
{
	_cleanup_secret_ uint8_t *out = NULL;
	size_t clen;
	int r;

	if (size < VAULT_SEAL_OVERHEAD || size > INT32_MAX || sealed[0] != SEAL_FORMAT)
		return -EBADMSG;
	clen = size - VAULT_SEAL_OVERHEAD;
	/* secret_alloc refuses 0 bytes; an empty secret is never stored, but stay total. */
	out = secret_alloc(clen + 1);
	if (!out)
		return -ENOMEM;
	r = aead_open(key, sealed + 1, context, sealed + 1 + VAULT_SEAL_NONCE_SIZE, clen,
		      sealed + size - VAULT_SEAL_TAG_SIZE, out);
	if (r < 0)
		return r;
	*ret_size = clen;
	*ret = TAKE_PTR(out);
	return 0;
}

int vault_seal_with_nonce(struct vault *v, const uint8_t nonce[VAULT_SEAL_NONCE_SIZE], const char *context,
			  const void *plain, size_t size, uint8_t **ret, size_t *ret_size)
{
	return seal_blob(v->key, nonce, context, plain, size, ret, ret_size);
}

int vault_seal(struct vault *v, const char *context, const void *plain, size_t size, uint8_t **ret,
	       size_t *ret_size)
{
	return seal_random_nonce(v->key, context, plain, size, ret, ret_size);
}

int vault_unseal(struct vault *v, const char *context, const uint8_t *sealed, size_t size, void **ret,
		 size_t *ret_size)
{
	return unseal_blob(v->key, context, sealed, size, ret, ret_size);
}

int vault_seal_with_key(const uint8_t key[VAULT_DATA_KEY_SIZE], const char *context, const void *plain, size_t size,
			uint8_t **ret, size_t *ret_size)
{
	return seal_random_nonce(key, context, plain, size, ret, ret_size);
}

int vault_unseal_with_key(const uint8_t key[VAULT_DATA_KEY_SIZE], const char *context, const uint8_t *sealed,
			  size_t size, void **ret, size_t *ret_size)
{
	return unseal_blob(key, context, sealed, size, ret, ret_size);
}

int vault_kty_from_string(const char *s, enum vault_kty *ret)
{
	if (strcasecmp(s, "RSA") == 0)
		*ret = VAULT_KTY_RSA;
	else if (strcasecmp(s, "AES") == 0 || strcasecmp(s, "oct") == 0)
		*ret = VAULT_KTY_AES;
	else
		return -EINVAL;
	return 0;
}

const char *vault_kty_to_string(enum vault_kty kty)
{
	return kty == VAULT_KTY_RSA ? "RSA" : "AES";
}

int vault_key_size_check(enum vault_kty kty, unsigned *size)
{
	if (kty == VAULT_KTY_RSA) {
		if (*size == 0)
			*size = 2048;
		return *size == 2048 || *size == 3072 || *size == 4096 ? 0 : -EINVAL;
	}
	if (*size == 0)
		*size = 256;
	return *size == 256 ? 0 : -EINVAL;
}

int vault_alg_from_string(const char *s, enum vault_alg *ret, const char **ret_message)
{
	if (streq(s, "RSA-OAEP"))
		*ret = VAULT_ALG_RSA_OAEP;
	else if (streq(s, "RSA-OAEP-256"))
		*ret = VAULT_ALG_RSA_OAEP_256;
	else if (streq(s, "A256KW"))
		*ret = VAULT_ALG_A256KW;
	else if (streq(s, "RSA1_5")) {
		if (ret_message)
			*ret_message = "RSA1_5 (RSAES-PKCS1-v1_5) is refused: it is open to padding-oracle attacks "
				       "(Bleichenbacher); use RSA-OAEP-256 (the default) instead";
		return -EPROTONOSUPPORT;
	} else {
		if (ret_message)
			*ret_message = "unknown key-encryption algorithm; use RSA-OAEP-256 (default), RSA-OAEP "
				       "or, for AES keys, A256KW";
		return -EINVAL;
	}
	return 0;
}

const char *vault_alg_to_string(enum vault_alg alg)
{
	switch (alg) {
	case VAULT_ALG_RSA_OAEP:
		return "RSA-OAEP";
	case VAULT_ALG_RSA_OAEP_256:
		return "RSA-OAEP-256";
	case VAULT_ALG_A256KW:
		return "A256KW";
	}
	return "?";
}

bool vault_alg_fits(enum vault_alg alg, enum vault_kty kty)
{
	return (alg == VAULT_ALG_A256KW) == (kty == VAULT_KTY_AES);
}

int vault_key_generate(enum vault_kty kty, unsigned size, void **ret_material, size_t *ret_material_size,
		       char **ret_public)
{
	_cleanup_(openssl_util_pkey_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(openssl_util_bio_freep) BIO *bio = NULL;
	_cleanup_secret_ uint8_t *material = NULL;
	_cleanup_free_ char *pem = NULL;
	unsigned char *p;
	char *data;
	long len;
	int n, r;

	r = vault_key_size_check(kty, &size);
	if (r < 0)
		return r;

	if (kty == VAULT_KTY_AES) {
		material = secret_alloc(VAULT_AES_KEY_SIZE);
		if (!material)
			return -ENOMEM;
		r = secret_random(material, VAULT_AES_KEY_SIZE);
		if (r < 0)
			return r;
		*ret_material_size = VAULT_AES_KEY_SIZE;
		*ret_material = TAKE_PTR(material);
		*ret_public = NULL;
		return 0;
	}

	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)size);
	if (!pkey)
		return openssl_util_error(-EIO, "RSA key generation");
	n = i2d_PrivateKey(pkey, NULL);
	if (n <= 0)
		return openssl_util_error(-EIO, "RSA key export");
	material = secret_alloc((size_t)n);
	if (!material)
		return -ENOMEM;
	p = material;
	if (i2d_PrivateKey(pkey, &p) != n)
		return openssl_util_error(-EIO, "RSA key export");

	bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1)
		return openssl_util_error(-ENOMEM, "public key export");
	len = BIO_get_mem_data(bio, &data);
	pem = strndup(data, (size_t)len);
	if (!pem)
		return -ENOMEM;

	*ret_material_size = (size_t)n;
	*ret_material = TAKE_PTR(material);
	*ret_public = TAKE_PTR(pem);
	return 0;
}

struct vault_key {
	enum vault_kty kty;
	EVP_PKEY *pkey; /* RSA */
	uint8_t *aes;   /* AES, secret memory */
};

int vault_key_load(enum vault_kty kty, const void *material, size_t material_size, struct vault_key **ret)
{
	struct vault_key *k = calloc(1, sizeof(*k));
	const unsigned char *p = material;

	if (!k)
		return -ENOMEM;
	k->kty = kty;
	if (kty == VAULT_KTY_AES) {
		if (material_size != VAULT_AES_KEY_SIZE) {
			free(k);
			return -EBADMSG;
		}
		k->aes = secret_alloc(VAULT_AES_KEY_SIZE);
		if (!k->aes) {
			free(k);
			return -ENOMEM;
		}
		memcpy(k->aes, material, VAULT_AES_KEY_SIZE);
	} else {
		k->pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)material_size);
		if (!k->pkey) {
			free(k);
			return openssl_util_error(-EBADMSG, "RSA key import");
		}
	}
	*ret = k;
	return 0;
}

void vault_key_free(struct vault_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	secret_free(k->aes);
	free(k);
}

enum vault_kty vault_key_type(const struct vault_key *k)
{
	return k->kty;
}

static int rsa_ctx(EVP_PKEY *pkey, enum vault_alg alg, bool encrypt, EVP_PKEY_CTX **ret)
{
	_cleanup_(openssl_util_pkey_ctx_freep) EVP_PKEY_CTX *ctx = NULL;
	const EVP_MD *md = alg == VAULT_ALG_RSA_OAEP ? EVP_sha1() : EVP_sha256();

	ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (!ctx)
		return openssl_util_error(-ENOMEM, "EVP_PKEY_CTX_new");
	if ((encrypt ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1)
		return openssl_util_error(-EIO, "RSA-OAEP setup");
	*ret = TAKE_PTR(ctx);
	return 0;
}
/* RFC 3394 needs at least 16 bytes in multiples of 8; anything else takes the RFC 5649 variant. */
static const EVP_CIPHER *aes_wrap_cipher(size_t plain_size)
{
	return plain_size >= 16 && plain_size % 8 == 0 ? EVP_aes_256_wrap() : EVP_aes_256_wrap_pad();
}

static int aes_wrap(const EVP_CIPHER *cipher, bool encrypt, const void *key, const uint8_t *in, size_t size,
		    uint8_t *out, size_t *ret_size)
{
	_cleanup_(openssl_util_cipher_ctx_freep) EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;

	if (!ctx)
		return -ENOMEM;
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_CipherInit_ex(ctx, cipher, NULL, key, NULL, encrypt) != 1)
		return openssl_util_error(-EIO, "AES key wrap setup");
	if (EVP_CipherUpdate(ctx, out, &n, in, (int)size) != 1 || n < 0 ||
	    EVP_CipherFinal_ex(ctx, out + n, &fin) != 1) {
		ERR_clear_error();
		return encrypt ? -EIO : -EBADMSG;
	}
	*ret_size = (size_t)n + (size_t)fin;
	return 0;
}

int vault_key_wrap(struct vault_key *k, enum vault_alg alg, const void *plain, size_t size, uint8_t **ret,
		   size_t *ret_size)
{
	_cleanup_free_ uint8_t *out = NULL;
	size_t outlen;
	int r;

	if (!vault_alg_fits(alg, k->kty) || size == 0)
		return -EINVAL;
	if (size > VAULT_WRAP_MAX)
		return -EMSGSIZE;

	if (k->kty == VAULT_KTY_AES) {
		out = malloc(size + 16);
		if (!out)
			return -ENOMEM;
		r = aes_wrap(aes_wrap_cipher(size), true, k->aes, plain, size, out, &outlen);
		if (r < 0)
			return r;
	} else {
		_cleanup_(openssl_util_pkey_ctx_freep) EVP_PKEY_CTX *ctx = NULL;
		size_t hlen = alg == VAULT_ALG_RSA_OAEP ? 20 : 32;

		r = rsa_ctx(k->pkey, alg, true, &ctx);
		if (r < 0)
			return r;
		if (EVP_PKEY_encrypt(ctx, NULL, &outlen, plain, size) != 1)
			return openssl_util_error(-EIO, "RSA-OAEP size");
		/* RFC 8017 7.1.1: the message may be at most k - 2hLen - 2 bytes. */
		if (size + 2 * hlen + 2 > outlen)
			return -EMSGSIZE;
		out = malloc(outlen);
		if (!out)
			return -ENOMEM;
		if (EVP_PKEY_encrypt(ctx, out, &outlen, plain, size) != 1)
			return openssl_util_error(-EIO, "RSA-OAEP encrypt");
	}
	*ret_size = outlen;
	*ret = TAKE_PTR(out);
	return 0;
}

int vault_key_unwrap(struct vault_key *k, enum vault_alg alg, const uint8_t *wrapped, size_t size, void **ret,
		     size_t *ret_size)
{
	_cleanup_secret_ uint8_t *out = NULL;
	size_t outlen;
	int r;

	if (!vault_alg_fits(alg, k->kty))
		return -EINVAL;
	if (size == 0 || size > VAULT_WRAP_MAX + 1024)
		return -EBADMSG;
	out = secret_alloc(size);
	if (!out)
		return -ENOMEM;

	if (k->kty == VAULT_KTY_AES) {
		if (size < 16 || size % 8 != 0)
			return -EBADMSG;
		/* The stored length does not say which variant wrapped it; the integrity check of each
		 * (64-bit IV of RFC 3394, length-prefixed IV of RFC 5649) does. */
		r = aes_wrap(EVP_aes_256_wrap(), false, k->aes, wrapped, size, out, &outlen);
		if (r == -EBADMSG)
			r = aes_wrap(EVP_aes_256_wrap_pad(), false, k->aes, wrapped, size, out, &outlen);
		if (r < 0)
			return r;
	} else {
		_cleanup_(openssl_util_pkey_ctx_freep) EVP_PKEY_CTX *ctx = NULL;

		r = rsa_ctx(k->pkey, alg, false, &ctx);
		if (r < 0)
			return r;
		outlen = size;
		if (EVP_PKEY_decrypt(ctx, out, &outlen, wrapped, size) != 1) {
			ERR_clear_error();
			return -EBADMSG;
		}
	}
	if (outlen == 0)
		return -EBADMSG;
	*ret_size = outlen;
	*ret = TAKE_PTR(out);
	return 0;
}

int vault_wrap(enum vault_kty kty, const void *material, size_t material_size, enum vault_alg alg,
	       const void *plain, size_t size, uint8_t **ret, size_t *ret_size)
{
	struct vault_key *k = NULL;
	int r;

	if (!vault_alg_fits(alg, kty) || size == 0)
		return -EINVAL;
	r = vault_key_load(kty, material, material_size, &k);
	if (r < 0)
		return r;
	r = vault_key_wrap(k, alg, plain, size, ret, ret_size);
	vault_key_free(k);
	return r;
}

int vault_unwrap(enum vault_kty kty, const void *material, size_t material_size, enum vault_alg alg,
		 const uint8_t *wrapped, size_t size, void **ret, size_t *ret_size)
{
	struct vault_key *k = NULL;
	int r;

	if (!vault_alg_fits(alg, kty))
		return -EINVAL;
	r = vault_key_load(kty, material, material_size, &k);
	if (r < 0)
		return r;
	r = vault_key_unwrap(k, alg, wrapped, size, ret, ret_size);
	vault_key_free(k);
	return r;
}
