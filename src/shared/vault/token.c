/* Bearer tokens: generation, parsing, hashing and constant-time comparison. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "basic/string-util.h"
#include "shared/secret.h"
#include "shared/vault/token.h"

static const char *const kind_prefix[] = {
	[TOKEN_ADMIN] = "vmc-admin-",
	[TOKEN_ENROLL] = "vmc-enroll-",
	[TOKEN_VM] = "vmc-vm-",
	[TOKEN_NAMED] = "vmc-named-",
};

void token_hex(const uint8_t *data, size_t size, char *out)
{
	hex_encode(data, size, out);
}

int token_unhex(const char *hex, uint8_t *out, size_t size)
{
	return hex_decode(hex, out, size);
}

static bool is_lower_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int token_id_generate(char ret_id[TOKEN_ID_LEN + 1])
{
	uint8_t raw[TOKEN_ID_BYTES];
	int r;

	r = secret_random(raw, sizeof(raw));
	if (r < 0)
		return r;
	token_hex(raw, sizeof(raw), ret_id);
	return 0;
}

int token_generate(enum token_kind kind, const char *id, char **ret_text, uint8_t ret_hash[TOKEN_HASH_SIZE])
{
	_cleanup_secret_ uint8_t *raw = NULL;
	_cleanup_secret_ char *text = NULL;
	size_t len;
	int r;

	if (kind != TOKEN_ADMIN && (!id || strlen(id) != TOKEN_ID_LEN || !is_lower_hex(id, TOKEN_ID_LEN)))
		return -EINVAL;
	raw = secret_alloc(TOKEN_SECRET_BYTES);
	text = secret_alloc(TOKEN_MAX_LEN + 1);
	if (!raw || !text)
		return -ENOMEM;
	r = secret_random(raw, TOKEN_SECRET_BYTES);
	if (r < 0)
		return r;

	len = (size_t)snprintf(text, TOKEN_MAX_LEN + 1, "%s%s%s", kind_prefix[kind],
			       kind == TOKEN_ADMIN ? "" : id, kind == TOKEN_ADMIN ? "" : "-");
	token_hex(raw, TOKEN_SECRET_BYTES, text + len);
	len += 2 * TOKEN_SECRET_BYTES;
	SHA256((const unsigned char *)text, len, ret_hash);
	*ret_text = TAKE_PTR(text);
	return 0;
}

int token_parse(const char *text, size_t len, enum token_kind *ret_kind, char ret_id[TOKEN_ID_LEN + 1],
		uint8_t ret_hash[TOKEN_HASH_SIZE])
{
	enum token_kind kind;
	const char *p = NULL;
	size_t plen = 0;

	if (len > TOKEN_MAX_LEN || memchr(text, 0, len))
		return -EINVAL;
	for (kind = 0; kind < ELEMENTSOF(kind_prefix); kind++) {
		plen = strlen(kind_prefix[kind]);
		if (len >= plen && memcmp(text, kind_prefix[kind], plen) == 0) {
			p = text + plen;
			break;
		}
	}
	if (!p)
		return -EINVAL;
	len -= plen;

	if (kind == TOKEN_ADMIN) {
		ret_id[0] = 0;
	} else {
		if (len < TOKEN_ID_LEN + 1 || !is_lower_hex(p, TOKEN_ID_LEN) || p[TOKEN_ID_LEN] != '-')
			return -EINVAL;
		memcpy(ret_id, p, TOKEN_ID_LEN);
		ret_id[TOKEN_ID_LEN] = 0;
		p += TOKEN_ID_LEN + 1;
		len -= TOKEN_ID_LEN + 1;
	}
	if (len != 2 * TOKEN_SECRET_BYTES || !is_lower_hex(p, len))
		return -EINVAL;

	SHA256((const unsigned char *)text, (size_t)(p - text) + len, ret_hash);
	*ret_kind = kind;
	return 0;
}

int token_from_authorization(const char *header, enum token_kind *ret_kind, char ret_id[TOKEN_ID_LEN + 1],
			     uint8_t ret_hash[TOKEN_HASH_SIZE])
{
	const char *t;
	size_t len;

	if (!header)
		return -ENOKEY;
	/* RFC 7235: the scheme is case-insensitive. */
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return -ENOKEY;
	t = header + 7;
	while (*t == ' ')
		t++;
	len = strlen(t);
	while (len > 0 && t[len - 1] == ' ')
		len--;
	return token_parse(t, len, ret_kind, ret_id, ret_hash);
}

bool token_hash_equal(const uint8_t a[TOKEN_HASH_SIZE], const uint8_t b[TOKEN_HASH_SIZE])
{
	return CRYPTO_memcmp(a, b, TOKEN_HASH_SIZE) == 0;
}
