/* libFuzzer harness for the conversion state file's parser (convstate_parse(), what
 * convstate_load() runs on state.json). The file is ours, but it lives on disk across crashes and
 * reboots: a torn or edited one must be refused, never misread. Corpus entries use the uuid below. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/luks/convstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_UUID "0b7c3a52-6f1e-4a8e-9d2c-5e4f3a2b1c0d"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct convstate s;
	char *text;
	int r;

	text = fuzz_text(data, size, 65536);
	if (!text)
		return 0;
	r = convstate_parse(text, FUZZ_UUID, &s);
	assert(r == 0 || r == -EINVAL);
	if (r == 0) {
		/* Every string ends inside its field; the enums hold named values. */
		assert(strcmp(s.uuid, FUZZ_UUID) == 0);
		assert(strnlen(s.target, sizeof(s.target)) < sizeof(s.target));
		assert(strnlen(s.identity, sizeof(s.identity)) < sizeof(s.identity));
		assert(strnlen(s.fs_type, sizeof(s.fs_type)) < sizeof(s.fs_type));
		assert(strnlen(s.header, sizeof(s.header)) < sizeof(s.header));
		assert(s.op == VOLUME_OP_ENCRYPT || s.op == VOLUME_OP_DECRYPT);
		assert(strcmp(convstate_phase_to_string(s.phase), "unknown") != 0);
	}
	free(text);
	return 0;
}
