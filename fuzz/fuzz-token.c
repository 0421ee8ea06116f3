/* libFuzzer harness for the bearer-token parser, which reads unauthenticated network input: the
 * input is an Authorization header value for token_from_authorization() and, bytes as given (NULs
 * too), token text for token_parse(). An accepted token must have the form token.h describes. */
#include <assert.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/vault/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(enum token_kind kind, const char *id)
{
	size_t n = strlen(id);

	assert(kind == TOKEN_ADMIN || kind == TOKEN_ENROLL || kind == TOKEN_VM || kind == TOKEN_NAMED);
	assert(kind == TOKEN_ADMIN ? n == 0 : n == TOKEN_ID_LEN);
	for (size_t i = 0; i < n; i++)
		assert((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[TOKEN_ID_LEN + 1], *text;
	uint8_t hash[TOKEN_HASH_SIZE], want[TOKEN_HASH_SIZE];
	enum token_kind kind;
	int r;

	if (size > 4096)
		return 0;
	/* Its own allocation, without a NUL, so ASan sees a read past the end. */
	text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	r = token_parse(text, size, &kind, id, hash);
	assert(r == 0 || r == -EINVAL);
	if (r == 0) {
		check_accepted(kind, id);
		/* The hash is of the whole text, kind prefix included. */
		SHA256((const unsigned char *)text, size, want);
		assert(memcmp(hash, want, sizeof(want)) == 0);
	}
	free(text);

	text = fuzz_text(data, size, size);
	if (!text)
		return 0;
	r = token_from_authorization(text, &kind, id, hash);
	assert(r == 0 || r == -EINVAL || r == -ENOKEY);
	if (r == 0)
		check_accepted(kind, id);
	free(text);
	return 0;
}
