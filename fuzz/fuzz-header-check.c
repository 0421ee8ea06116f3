/* libFuzzer harness for api_header_check(), which reads a VM's header-backup upload in vmcryptd:
 * the input is the upload, every byte as given. Whatever it holds, the check reads no byte past
 * the end (the input is its own allocation) and accepts only what starts with a LUKS2 primary
 * binary header whose header area fits in the bytes. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	uint8_t *copy;
	int r;

	if (size > 8 << 20)
		return 0;
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	r = api_header_check(copy, size, err, sizeof(err));
	assert(r == 0 || r == -EINVAL);
	if (r == 0)
		assert(size >= API_LUKS2_BINARY_HEADER_SIZE && memcmp(copy, "LUKS\xba\xbe\x00\x02", 8) == 0);
	else
		assert(err[0]);
	free(copy);
	return 0;
}
