/* What every harness does first: the input as a NUL-terminated string, as the parsers read it. */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A malloc()ed copy of data with a NUL after it, or NULL when size is above max (inputs larger
 * than the parser ever sees) or memory runs out. */
static inline char *fuzz_text(const uint8_t *data, size_t size, size_t max)
{
	char *text;

	if (size > max)
		return NULL;
	text = malloc(size + 1);
	if (!text)
		return NULL;
	memcpy(text, data, size);
	text[size] = 0;
	return text;
}
