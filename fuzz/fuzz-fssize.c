/* libFuzzer harness for the parsers of xfs_db, btrfs dump-super and dumpe2fs -h output
 * (src/shared/fssize.c): the text comes from tools reading a filesystem the VM's owner controls. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/volume/fssize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t v;
	char *text;
	int r;

	/* fs_size_bytes() reads at most 16 KiB of a tool's output. */
	text = fuzz_text(data, size, 16384);
	if (!text)
		return 0;
	r = fs_size_parse_xfs_db(text, &v);
	assert(r == 0 || r == -EINVAL);
	r = fs_size_parse_btrfs_super(text, &v);
	assert(r == 0 || r == -EINVAL);
	r = fs_size_parse_dumpe2fs(text, &v);
	assert(r == 0 || r == -EINVAL);
	free(text);
	return 0;
}
