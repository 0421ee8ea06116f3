/* libFuzzer harness for the dumpe2fs output parser and the room proof that consumes it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/volume/extfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct extfs_layout l;
	struct extfs_room room;
	char *text;

	text = fuzz_text(data, size, (1 << 20));
	if (!text)
		return 0;
	if (extfs_parse_dumpe2fs(text, &l) == 0) {
		(void)extfs_shrink_room(&l, l.block_count - 1, &room);
		(void)extfs_shrink_room(&l, l.block_count / 2, &room);
		extfs_layout_done(&l);
	}
	free(text);
	return 0;
}
