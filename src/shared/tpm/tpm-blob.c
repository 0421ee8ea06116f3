/* The sealed text (tpm-blob.h): jansson for the JSON, Tss2_MU for the TPM structures, b64.c for
 * the bytes. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "basic/macro.h"
#include "shared/b64.h"
#include "shared/jansson-util.h"
#include "shared/secret.h"
#include "shared/tpm/tpm-blob.h"

/* The fields in the order they are written; tpm_blob_parse() accepts these and no others. */
static const char *const fields[] = {
	"format", "version", "primary", "srk_name", "public", "private", "cipher", "nonce", "ciphertext", "tag",
};

void tpm_blob_sealed_template(TPM2B_PUBLIC *ret)
{
	*ret = (TPM2B_PUBLIC){
		.publicArea = {
			.type = TPM2_ALG_KEYEDHASH,
			.nameAlg = TPM2_ALG_SHA256,
			.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
					    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA,
			.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL,
		},
	};
}

/* The file's public area must be the template's with a SHA-256 unique (the TPM's digest of the
 * sealed data and its seed): else a forged file could make the TPM load an object with a policy
 * or attributes of someone else's choosing under our session. */
static bool public_is_sealed_data(const TPM2B_PUBLIC *p)
{
	TPM2B_PUBLIC t;

	tpm_blob_sealed_template(&t);
	return p->publicArea.type == t.publicArea.type && p->publicArea.nameAlg == t.publicArea.nameAlg &&
	       p->publicArea.objectAttributes == t.publicArea.objectAttributes &&
	       p->publicArea.authPolicy.size == 0 &&
	       p->publicArea.parameters.keyedHashDetail.scheme.scheme == TPM2_ALG_NULL &&
	       p->publicArea.unique.keyedHash.size == TPM2_SHA256_DIGEST_SIZE;
}

static const char *field_string(json_t *root, const char *key)
{
	return json_string_value(json_object_get(root, key));
}

static bool field_is(json_t *root, const char *key, const char *want)
{
	const char *s = field_string(root, key);

	return s && strcmp(s, want) == 0;
}

/* Decodes the base64 field key into secret memory: min to max bytes. */
static int field_bytes(json_t *root, const char *key, size_t min, size_t max, uint8_t **ret, size_t *ret_size)
{
	_cleanup_secret_ uint8_t *bytes = NULL;
	json_t *v = json_object_get(root, key);
	size_t size;
	int r;

	if (!json_is_string(v))
		return -EBADMSG;
	r = b64_decode_secret(json_string_value(v), json_string_length(v), &bytes, &size);
	if (r == -ENOMEM)
		return r;
	if (r < 0 || size < min || size > max)
		return -EBADMSG;
	*ret = TAKE_PTR(bytes);
	*ret_size = size;
	return 0;
}

static int field_fixed(json_t *root, const char *key, uint8_t *out, size_t size)
{
	_cleanup_secret_ uint8_t *bytes = NULL;
	size_t n;
	int r;

	r = field_bytes(root, key, size, size, &bytes, &n);
	if (r < 0)
		return r;
	memcpy(out, bytes, n);
	return 0;
}

/* A TPM2B_NAME is stored as its name bytes: the nameAlg, then the digest. */
static int field_name(json_t *root, const char *key, TPM2B_NAME *ret)
{
	_cleanup_secret_ uint8_t *bytes = NULL;
	size_t n;
	int r;

	r = field_bytes(root, key, 2 + TPM2_SHA256_DIGEST_SIZE, sizeof(ret->name), &bytes, &n);
	if (r < 0)
		return r;
	ret->size = (UINT16)n;
	memcpy(ret->name, bytes, n);
	return 0;
}

/* Tss2_MU unmarshals a prefix; the field must be that structure and nothing more. */
#define DEFINE_FIELD_TPM2B(fn, type, unmarshal)                                                 \
	static int fn(json_t *root, const char *key, type *ret)                                  \
	{                                                                                        \
		_cleanup_secret_ uint8_t *bytes = NULL;                                          \
		size_t n, offset = 0;                                                            \
		int r;                                                                           \
                                                                                                 \
		r = field_bytes(root, key, 2, sizeof(type) + 2, &bytes, &n);                     \
		if (r < 0)                                                                       \
			return r;                                                                \
		if (unmarshal(bytes, n, &offset, ret) != TSS2_RC_SUCCESS || offset != n)         \
			return -EBADMSG;                                                         \
		return 0;                                                                        \
	}
DEFINE_FIELD_TPM2B(field_public, TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Unmarshal)
DEFINE_FIELD_TPM2B(field_private, TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Unmarshal)

int tpm_blob_parse(const char *text, struct tpm_blob *ret)
{
	_cleanup_(jansson_util_decrefp) json_t *root = NULL;
	struct tpm_blob b = { 0 };
	json_t *version;
	size_t len = strnlen(text, TPM_BLOB_TEXT_MAX + 1);
	int r;

	if (len > TPM_BLOB_TEXT_MAX)
		return -EBADMSG;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root) || json_object_size(root) != ELEMENTSOF(fields))
		return -EBADMSG;
	for (size_t i = 0; i < ELEMENTSOF(fields); i++)
		if (!json_object_get(root, fields[i]))
			return -EBADMSG;
	version = json_object_get(root, "version");
	if (!field_is(root, "format", TPM_BLOB_FORMAT) || !json_is_integer(version) ||
	    json_integer_value(version) != TPM_BLOB_VERSION || !field_is(root, "primary", TPM_BLOB_PRIMARY) ||
	    !field_is(root, "cipher", TPM_BLOB_CIPHER))
		return -EBADMSG;

	r = field_name(root, "srk_name", &b.srk_name);
	if (r >= 0)
		r = field_public(root, "public", &b.public);
	if (r >= 0)
		r = field_private(root, "private", &b.private);
	if (r >= 0)
		r = field_fixed(root, "nonce", b.nonce, sizeof(b.nonce));
	if (r >= 0)
		r = field_fixed(root, "tag", b.tag, sizeof(b.tag));
	if (r >= 0)
		r = field_bytes(root, "ciphertext", 1, TPM_BLOB_SECRET_MAX, &b.ciphertext, &b.ciphertext_size);
	if (r >= 0 && !public_is_sealed_data(&b.public))
		r = -EBADMSG;
	if (r < 0) {
		tpm_blob_done(&b);
		return r;
	}
	*ret = b;
	return 0;
}

/* Adds key = base64(data) to root. */
static int add_bytes(json_t *root, const char *key, const uint8_t *data, size_t size)
{
	_cleanup_secret_ char *s = b64_encode(data, size);

	if (!s || json_object_set_new(root, key, json_string(s)) < 0)
		return -ENOMEM;
	return 0;
}

#define DEFINE_ADD_TPM2B(fn, type, marshal)                                                      \
	static int fn(json_t *root, const char *key, const type *v)                              \
	{                                                                                        \
		uint8_t buf[sizeof(type) + 2];                                                   \
		size_t n = 0;                                                                    \
                                                                                                 \
		if (marshal(v, buf, sizeof(buf), &n) != TSS2_RC_SUCCESS)                         \
			return -EINVAL;                                                          \
		return add_bytes(root, key, buf, n);                                             \
	}
DEFINE_ADD_TPM2B(add_public, TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Marshal)
DEFINE_ADD_TPM2B(add_private, TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Marshal)

int tpm_blob_format(const struct tpm_blob *b, char **ret)
{
	_cleanup_(jansson_util_decrefp) json_t *root = NULL;
	_cleanup_free_ char *text = NULL;
	char *out;
	size_t len;
	int r;

	if (b->srk_name.size < 2 + TPM2_SHA256_DIGEST_SIZE || b->srk_name.size > sizeof(b->srk_name.name) ||
	    !b->ciphertext || b->ciphertext_size == 0 || b->ciphertext_size > TPM_BLOB_SECRET_MAX ||
	    !public_is_sealed_data(&b->public))
		return -EINVAL;
	root = json_object();
	if (!root || json_object_set_new(root, "format", json_string(TPM_BLOB_FORMAT)) < 0 ||
	    json_object_set_new(root, "version", json_integer(TPM_BLOB_VERSION)) < 0 ||
	    json_object_set_new(root, "primary", json_string(TPM_BLOB_PRIMARY)) < 0)
		return -ENOMEM;
	r = add_bytes(root, "srk_name", b->srk_name.name, b->srk_name.size);
	if (r >= 0)
		r = add_public(root, "public", &b->public);
	if (r >= 0)
		r = add_private(root, "private", &b->private);
	if (r >= 0 && json_object_set_new(root, "cipher", json_string(TPM_BLOB_CIPHER)) < 0)
		r = -ENOMEM;
	if (r >= 0)
		r = add_bytes(root, "nonce", b->nonce, sizeof(b->nonce));
	if (r >= 0)
		r = add_bytes(root, "ciphertext", b->ciphertext, b->ciphertext_size);
	if (r >= 0)
		r = add_bytes(root, "tag", b->tag, sizeof(b->tag));
	if (r < 0)
		return r;
	text = json_dumps(root, JSON_INDENT(1));
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	out = malloc(len + 2);
	if (!out)
		return -ENOMEM;
	memcpy(out, text, len);
	memcpy(out + len, "\n", 2);
	*ret = out;
	return 0;
}

void tpm_blob_done(struct tpm_blob *b)
{
	secret_free(b->ciphertext);
	*b = (struct tpm_blob){ 0 };
}
