/* String helpers that libc lacks. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Returns a pointer past prefix in s, or NULL when s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix)
{
	size_t l = strlen(prefix);
	return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

/* Parses a decimal unsigned 64-bit integer, the whole string. Returns 0, -EINVAL or -ERANGE. */
int parse_u64(const char *s, uint64_t *ret);

/* Parses a size with an optional binary suffix (K, M, G, T; KiB, MiB, ...). Returns 0 or -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *ret);

/* Formats bytes as "1.5 GiB" into buf. Returns buf. */
char *format_bytes(char *buf, size_t len, uint64_t bytes);

/* Formats seconds as "1h02m", "3m05s" or "12s" into buf. Returns buf. */
char *format_duration(char *buf, size_t len, uint64_t seconds);
