/* jansson helpers: writing JSON text to a stream. */
#include <errno.h>

#include "shared/jansson-util.h"

int jansson_util_write(FILE *f, json_t *j, size_t flags)
{
	json_malloc_t m;
	json_free_t fr;
	char *text;
	int r = 0;

	text = j ? json_dumps(j, flags) : NULL;
	if (!text)
		return -ENOMEM;
	if (fprintf(f, "%s\n", text) < 0)
		r = -EIO;
	if (fflush(f) != 0)
		r = -EIO;
	json_get_alloc_funcs(&m, &fr);
	(fr ? fr : free)(text);
	return r;
}
