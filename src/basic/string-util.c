/* String helpers that libc lacks. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "string-util.h"

struct unit {
	const char *suffix;
	uint64_t factor;
};

/* A decimal number (a digit first: strtoull() would take "-1" and " 1") followed by exactly one
 * of the suffixes in units, times its factor. Returns 0, -EINVAL or -ERANGE. */
static int parse_scaled(const char *s, const struct unit *units, size_t n_units, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	for (size_t i = 0; i < n_units; i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		if (v > UINT64_MAX / units[i].factor)
			return -ERANGE;
		*ret = v * units[i].factor;
		return 0;
	}
	return -EINVAL;
}

char *hex_encode(const void *data, size_t size, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *d = data;

	for (size_t i = 0; i < size; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * size] = 0;
	return out;
}

static int unhex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *hex, void *out, size_t size)
{
	uint8_t *o = out;

	if (strlen(hex) != 2 * size)
		return -EINVAL;
	for (size_t i = 0; i < size; i++) {
		int hi = unhex_digit(hex[2 * i]), lo = unhex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		o[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int parse_u64(const char *s, uint64_t *ret)
{
	static const struct unit none[] = { { "", 1 } };

	return parse_scaled(s, none, 1, ret);
}

int parse_size(const char *s, uint64_t *ret)
{
	static const struct unit units[] = {
		{ "", 1 },
		{ "B", 1 },
		{ "K", UINT64_C(1) << 10 }, { "KiB", UINT64_C(1) << 10 },
		{ "M", UINT64_C(1) << 20 }, { "MiB", UINT64_C(1) << 20 },
		{ "G", UINT64_C(1) << 30 }, { "GiB", UINT64_C(1) << 30 },
		{ "T", UINT64_C(1) << 40 }, { "TiB", UINT64_C(1) << 40 },
	};

	return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), ret);
}

char *format_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

char *format_duration(char *buf, size_t len, uint64_t s)
{
	if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)s);
	return buf;
}

int utf8_decode(const char *s, size_t n, uint32_t *ret)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t c, min;
	int len;

	if (u[0] < 0x80) {
		*ret = u[0];
		return 1;
	}
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		len = 2, c = u[0] & 0x1f, min = 0x80;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		len = 3, c = u[0] & 0x0f, min = 0x800;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		len = 4, c = u[0] & 0x07, min = 0x10000;
	} else {
		return -EILSEQ;
	}
	if (n < (size_t)len)
		return -EILSEQ;
	for (int i = 1; i < len; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return -EILSEQ;
		c = (c << 6) | (u[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return -EILSEQ;
	*ret = c;
	return len;
}

bool unichar_is_hidden(uint32_t c)
{
	/* Cc, Cf (Unicode 15.1) and Zl/Zp, as ranges of code points. */
	static const struct {
		uint32_t first, last;
	} hidden[] = {
		{ 0x0000, 0x001f }, { 0x007f, 0x009f }, { 0x00ad, 0x00ad },   { 0x0600, 0x0605 },
		{ 0x061c, 0x061c }, { 0x06dd, 0x06dd }, { 0x070f, 0x070f },   { 0x0890, 0x0891 },
		{ 0x08e2, 0x08e2 }, { 0x180e, 0x180e }, { 0x200b, 0x200f },   { 0x2028, 0x202e },
		{ 0x2060, 0x2064 }, { 0x2066, 0x206f }, { 0xfeff, 0xfeff },   { 0xfff9, 0xfffb },
		{ 0x110bd, 0x110bd }, { 0x110cd, 0x110cd }, { 0x13430, 0x1343f }, { 0x1bca0, 0x1bca3 },
		{ 0x1d173, 0x1d17a }, { 0xe0001, 0xe0001 }, { 0xe0020, 0xe007f },
	};

	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		if (c >= hidden[i].first && c <= hidden[i].last)
			return true;
	return false;
}

bool string_is_safe_text(const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		uint32_t c;
		int l = utf8_decode(s, n, &c);

		if (l < 0 || unichar_is_hidden(c))
			return false;
		s += l;
		n -= (size_t)l;
	}
	return true;
}

char *string_escape_hidden(const char *s, char *buf, size_t len)
{
	size_t n = strlen(s), o = 0;

	while (n > 0) {
		char esc[16];
		const char *piece = s;
		size_t plen;
		uint32_t c;
		int l = utf8_decode(s, n, &c);

		if (l < 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", (unsigned char)*s);
			piece = esc, plen = strlen(esc), l = 1;
		} else if (c == '\\' || unichar_is_hidden(c)) {
			if (c == '\\' || c == '\n' || c == '\t' || c == '\r')
				snprintf(esc, sizeof(esc), "\\%c", c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : '\\');
			else if (c < 0x80)
				snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)c);
			else if (c <= 0xffff)
				snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)c);
			else
				snprintf(esc, sizeof(esc), "\\U%08x", (unsigned)c);
			piece = esc, plen = strlen(esc);
		} else {
			plen = (size_t)l;
		}
		if (o + plen + 1 > len)
			break;
		memcpy(buf + o, piece, plen);
		o += plen;
		s += l;
		n -= (size_t)l;
	}
	buf[o] = 0;
	return buf;
}
