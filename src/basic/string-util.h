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

/* Whether s ends with suffix. */
static inline bool endswith(const char *s, const char *suffix)
{
	size_t l = strlen(s), m = strlen(suffix);
	return l >= m && memcmp(s + l - m, suffix, m) == 0;
}

/* Parses a decimal unsigned 64-bit integer, the whole string. Returns 0, -EINVAL or -ERANGE. */
int parse_u64(const char *s, uint64_t *ret);

/* Writes size bytes as 2 * size lower-case hex digits and a NUL into out (2 * size + 1 bytes).
 * Returns out. */
char *hex_encode(const void *data, size_t size, char *out);
/* Decodes exactly 2 * size hex digits (either case), the whole string, into out. Returns 0 or
 * -EINVAL (another length, or a character that is not a hex digit). */
int hex_decode(const char *hex, void *out, size_t size);

/* Parses a size with an optional binary suffix (K, M, G, T; KiB, MiB, ...). Returns 0 or -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *ret);

/* Formats bytes as "1.5 GiB" into buf. Returns buf. */
char *format_bytes(char *buf, size_t len, uint64_t bytes);

/* Formats seconds as "1h02m", "3m05s" or "12s" into buf. Returns buf. */
char *format_duration(char *buf, size_t len, uint64_t seconds);

/* Decodes one UTF-8 sequence from s (at most n bytes, n > 0) into *ret. Returns the sequence's
 * length (1 to 4), or -EILSEQ for an invalid, overlong or surrogate sequence. */
int utf8_decode(const char *s, size_t n, uint32_t *ret);

/* Whether a code point must never appear raw in text shown to a person: C0 and C1 controls,
 * DEL, the Unicode format characters (Cf: bidi overrides and isolates, zero-width characters,
 * the byte order mark, tags ...) and the line and paragraph separators. They can hide or reorder
 * what a terminal or log viewer shows. */
bool unichar_is_hidden(uint32_t c);

/* Whether s holds only valid UTF-8 without hidden characters (see unichar_is_hidden). */
bool string_is_safe_text(const char *s);

/* Copies s into buf (len > 0) with every hidden character and invalid byte escaped: \n \t \r,
 * \xNN for other bytes below 0x80 and for invalid UTF-8, \uNNNN or \UNNNNNNNN for code points,
 * and the backslash itself as \\. Cuts the output at a character boundary when buf is too small.
 * Returns buf. */
char *string_escape_hidden(const char *s, char *buf, size_t len);
