/* libFuzzer harness for the operation journal's parser (journal_parse()). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/vm/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal_entry *e = NULL;
	size_t n = 0;
	char *text;

	text = fuzz_text(data, size, 1024 * 1024);
	if (!text)
		return 0;
	if (journal_parse(text, &e, &n) == 0) {
		/* Every parsed string is NUL-terminated within its field. */
		for (size_t i = 0; i < n; i++)
			if (strlen(e[i].target) >= sizeof(e[i].target) || strlen(e[i].header) >= sizeof(e[i].header))
				abort();
		(void)journal_find_last(e, n, "/dev/sdc");
		free(e);
	}
	free(text);
	return 0;
}
