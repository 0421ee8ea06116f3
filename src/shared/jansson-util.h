/* jansson helpers: cleanup, and writing a JSON value as one line or block of text. They live here
 * and not in src/basic: src/basic includes libc only, so that everything above may use it without
 * pulling in a library. Their prefix is jansson_util_, not json_: json_ is jansson's own. */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "basic/macro.h"

DEFINE_CLEANUP_FUNC(jansson_util_decrefp, json_t *, json_decref)

/* Writes j to f as json_dumps(j, flags) text and a newline, then flushes f, so that a reader of a
 * stream of JSON lines sees each line when it is written. The text is freed through jansson's
 * allocator (which wipes it, see secret_setup_json_allocator()). Writes nothing for j NULL.
 * Returns 0, -ENOMEM (j NULL or no memory for the text) or -EIO (the write failed). */
int jansson_util_write(FILE *f, json_t *j, size_t flags);
