/* base64 for secret values in JSON (RFC 4648 with padding); buffers in secret memory. */
#include <errno.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <string.h>

#include "shared/b64.h"
#include "shared/secret.h"

int b64_decode_secret(const char *s, size_t len, uint8_t **ret, size_t *ret_size)
{
	_cleanup_secret_ uint8_t *out = NULL;
	size_t pad = 0;
	int n;

	if (len == 0 || len % 4 != 0 || len > INT32_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
			  c == '/' || (c == '=' && i >= len - 2);
		if (!ok)
			return -EINVAL;
	}
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	if (pad == 1 && s[len - 2] == '=')
		return -EINVAL;
	out = secret_alloc(len / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	/* EVP_DecodeBlock counts padding as zero bytes; the padding count corrects it. */
	n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad)
		return -EINVAL;
	if ((size_t)n - pad == 0)
		return -EINVAL;
	*ret_size = (size_t)n - pad;
	*ret = TAKE_PTR(out);
	return 0;
}

char *b64_encode(const uint8_t *data, size_t size)
{
	char *out;

	if (size > INT32_MAX / 2)
		return NULL;
	out = secret_alloc((size + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)size);
	return out;
}
