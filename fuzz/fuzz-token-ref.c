/* libFuzzer harness for the vmcrypt LUKS2 token parser (src/token-plugin/token-ref.c), which reads
 * a disk's LUKS2 header inside cryptsetup and systemd-cryptsetup: whoever writes the disk writes
 * the token. An accepted unlock token must hold what token-ref.h promises. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/api/api.h"
#include "token-plugin/token-ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct token_ref t;
	char err[256], *text;
	int r;

	text = fuzz_text(data, size, 2 * TOKEN_REF_JSON_MAX);
	if (!text)
		return 0;
	r = token_ref_parse(text, &t, err, sizeof(err));
	assert(r == 0 || r == TOKEN_REF_CONVERSION || r == -EINVAL);
	if (r == 0) {
		assert(strncmp(t.server, "https://", 8) == 0);
		assert(strlen(t.server) <= TOKEN_REF_SERVER_MAX);
		assert(api_name_valid(t.vm) && api_name_valid(t.volume));
		assert(t.version >= 1);
	}
	if (r < 0)
		assert(memchr(err, 0, sizeof(err)));
	free(text);
	return 0;
}
