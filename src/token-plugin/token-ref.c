/* The vmcrypt LUKS2 token's JSON: one strict check for validate, dump and open. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "token-plugin/token-ref.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) _printf_(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* "0".."31" as libcryptsetup writes keyslot ids: decimal, no sign, no leading zero. */
static bool keyslot_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 2 || (n == 2 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return atoi(s) < TOKEN_REF_KEYSLOTS_MAX;
}

/* Returns the number of keyslots, or -EINVAL. */
static int check_keyslots(json_t *a, char *err, size_t errlen)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a))
		return fail(err, errlen, "\"keyslots\" is missing or not an array");
	if (json_array_size(a) > TOKEN_REF_KEYSLOTS_MAX)
		return fail(err, errlen, "\"keyslots\" has more than %d entries", TOKEN_REF_KEYSLOTS_MAX);
	json_array_foreach(a, i, v)
		if (!json_is_string(v) || !keyslot_valid(json_string_value(v)))
			return fail(err, errlen, "\"keyslots\" entry %zu is not a keyslot number", i);
	return (int)json_array_size(a);
}

/* An https URL that names a host and maybe a port, nothing else: the plugin appends the API path
 * itself, and a user name, query or fragment in a header would only hide what is contacted. The
 * URL is parsed by libcurl, the library that will connect to it, so both read it the same way. */
static int check_server(const char *s, char *err, size_t errlen)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *path = NULL, *part = NULL;
	int r = -EINVAL;

	if (strlen(s) > TOKEN_REF_SERVER_MAX)
		return fail(err, errlen, "\"server\" is longer than %d bytes", TOKEN_REF_SERVER_MAX);
	for (const char *p = s; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return fail(err, errlen, "\"server\" has a space, control or non-ASCII character");
	if (!startswith(s, "https://"))
		return fail(err, errlen, "\"server\" is not an https:// URL");
	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK) {
		fail(err, errlen, "\"server\" is not a URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || !streq(scheme, "https")) {
		fail(err, errlen, "\"server\" is not an https:// URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		fail(err, errlen, "\"server\" names no host");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK) {
		fail(err, errlen, "\"server\" has a user name or password");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
		fail(err, errlen, "\"server\" has a query or fragment");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && !streq(path, "") && !streq(path, "/")) {
		fail(err, errlen, "\"server\" has a path (only https://HOST[:PORT])");
		goto out;
	}
	r = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_free(part);
	curl_url_cleanup(u);
	return r;
}

static int check_name(json_t *o, const char *key, char *buf, size_t len, char *err, size_t errlen)
{
	const char *s = json_string_value(json_object_get(o, key));

	if (!s)
		return fail(err, errlen, "\"%s\" is missing or not a string", key);
	if (!api_name_valid(s))
		return fail(err, errlen, "\"%s\" is not a valid name (1 to %d of A-Z a-z 0-9 . _ -, starting with a letter or digit)",
			    key, API_NAME_MAX);
	snprintf(buf, len, "%s", s);
	return 0;
}

static bool key_known(const char *key, const char *const *keys)
{
	for (; *keys; keys++)
		if (streq(key, *keys))
			return true;
	return false;
}

/* The conversion state token convert.c writes: checked for shape only, luks.c reads it. */
static int check_conversion(json_t *o, char *err, size_t errlen)
{
	static const char *const keys[] = { "type", "keyslots", "version", "operation", "started",
					    "fs_type", "fs_size", "data_shift", NULL };
	static const char *const integers[] = { "version", "started", "fs_size", "data_shift" };
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v)
		if (!key_known(key, keys))
			return fail(err, errlen, "unknown key in a conversion state token (only the documented keys)");
	if (!json_is_string(json_object_get(o, "operation")))
		return fail(err, errlen, "\"operation\" is not a string");
	for (size_t i = 0; i < ELEMENTSOF(integers); i++) {
		v = json_object_get(o, integers[i]);
		if (v && !json_is_integer(v))
			return fail(err, errlen, "\"%s\" is not an integer", integers[i]);
	}
	v = json_object_get(o, "fs_type");
	if (v && !json_is_string(v))
		return fail(err, errlen, "\"fs_type\" is not a string");
	return TOKEN_REF_CONVERSION;
}

int token_ref_parse(const char *json, struct token_ref *ret, char *err, size_t errlen)
{
	static const char *const keys[] = { "type", "keyslots", "server", "vm", "volume", "version", NULL };
	struct token_ref t = {};
	json_error_t jerr;
	const char *key, *s;
	json_t *o, *v;
	json_int_t version;
	size_t n;
	int r, slots;

	if (!json)
		return fail(err, errlen, "no token JSON");
	n = strnlen(json, TOKEN_REF_JSON_MAX + 1);
	if (n > TOKEN_REF_JSON_MAX)
		return fail(err, errlen, "token JSON is larger than %d bytes", TOKEN_REF_JSON_MAX);
	o = json_loadb(json, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return fail(err, errlen, "token JSON does not parse (column %d)", jerr.column);
	if (!json_is_object(o)) {
		r = fail(err, errlen, "token JSON is not an object");
		goto out;
	}
	s = json_string_value(json_object_get(o, "type"));
	if (!s || !streq(s, TOKEN_REF_TYPE)) {
		r = fail(err, errlen, "\"type\" is not \"%s\"", TOKEN_REF_TYPE);
		goto out;
	}
	slots = r = check_keyslots(json_object_get(o, "keyslots"), err, errlen);
	if (r < 0)
		goto out;
	if (json_object_get(o, "operation")) {
		r = slots > 0 ? fail(err, errlen, "a conversion state token has no keyslots")
			      : check_conversion(o, err, errlen);
		goto out;
	}
	json_object_foreach(o, key, v)
		if (!key_known(key, keys)) {
			/* A key we do not know may change what the token means: refuse, never ignore. */
			r = fail(err, errlen, "unknown key in the token (only type, keyslots, server, vm, volume, version)");
			goto out;
		}
	if (slots == 0) {
		r = fail(err, errlen, "\"keyslots\" is empty: the token unlocks no keyslot");
		goto out;
	}
	s = json_string_value(json_object_get(o, "server"));
	if (!s) {
		r = fail(err, errlen, "\"server\" is missing or not a string");
		goto out;
	}
	r = check_server(s, err, errlen);
	if (r < 0)
		goto out;
	snprintf(t.server, sizeof(t.server), "%s", s);
	r = check_name(o, "vm", t.vm, sizeof(t.vm), err, errlen);
	if (r < 0)
		goto out;
	r = check_name(o, "volume", t.volume, sizeof(t.volume), err, errlen);
	if (r < 0)
		goto out;
	v = json_object_get(o, "version");
	/* json_is_integer: 1.0, "1" and true are not versions. */
	if (!json_is_integer(v)) {
		r = fail(err, errlen, "\"version\" is missing or not an integer");
		goto out;
	}
	version = json_integer_value(v);
	if (version < 1 || version > UINT32_MAX) {
		r = fail(err, errlen, "\"version\" is not between 1 and %u", UINT32_MAX);
		goto out;
	}
	t.version = (uint32_t)version;
	if (ret)
		*ret = t;
	r = 0;
out:
	json_decref(o);
	return r;
}
