/* The vmcryptd HTTP API model: route table, request parsing and validation, drift rule. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/ade.h"
#include "shared/api/api.h"

enum api_type {
	API_STRING,
	API_BOOL,
	API_INT,
	API_VOLUMES, /* array of report volume objects */
};

struct api_field {
	const char *name;
	enum api_type type;
	bool required;
	size_t max;                 /* longest string, largest integer, most array items */
	bool (*check)(const char *); /* extra check for strings */
	const char *expect;          /* says what check wants, for the error message */
};

static bool check_name(const char *s)
{
	return api_name_valid(s);
}

static bool check_volume_type(const char *s)
{
	unsigned m;
	return api_volume_type_from_string(s, &m) == 0;
}

/* Free text (host names, file names, messages) is shown by vmcrypt-admin and the log: no
 * control or format characters that could hide or reorder what an operator reads. */
static bool check_text(const char *s)
{
	return string_is_safe_text(s);
}

#define NAME_EXPECT "1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
#define TEXT_EXPECT "printable text (no control or format characters such as bidi overrides)"
#define STATUS_EXPECT \
	"one of Encrypted, NotEncrypted, NotMounted, EncryptionInProgress, DecryptionInProgress, " \
	"VMRestartPending, Unknown"

static const struct api_field body_enroll[] = {
	{ "hostname", API_STRING, true, 255, check_text, TEXT_EXPECT },
	{ "agentVersion", API_STRING, false, 64, check_text, TEXT_EXPECT },
	{},
};

static const struct api_field body_secret_put[] = {
	/* base64 of at most API_SECRET_MAX bytes */
	{ "value", API_STRING, true, (API_SECRET_MAX + 2) / 3 * 4, NULL, NULL },
	{ "fileName", API_STRING, false, 255, check_text, TEXT_EXPECT },
	{},
};

static const struct api_field body_status[] = {
	{ "OsVolumeEncrypted", API_STRING, true, 32, api_status_valid, STATUS_EXPECT },
	{ "DataVolumesEncrypted", API_STRING, true, 32, api_status_valid, STATUS_EXPECT },
	{ "ProgressMessage", API_STRING, false, API_MESSAGE_MAX, check_text, TEXT_EXPECT },
	{ "AgentVersion", API_STRING, false, 64, check_text, TEXT_EXPECT },
	{ "SequenceVersion", API_INT, false, INT64_MAX, NULL, NULL },
	{ "Volumes", API_VOLUMES, false, API_REPORT_VOLUMES_MAX, NULL, NULL },
	{},
};

static const struct api_field body_report_volume[] = {
	{ "name", API_STRING, true, 64, check_text, TEXT_EXPECT },
	{ "device", API_STRING, false, 255, check_text, TEXT_EXPECT },
	{ "mountPoint", API_STRING, false, 1024, check_text, TEXT_EXPECT },
	{ "volumeType", API_STRING, false, 8, check_volume_type, "OS or Data" },
	{ "state", API_STRING, true, 32, api_status_valid, STATUS_EXPECT },
	{ "progress", API_INT, false, 100, NULL, NULL },
	{ "rate", API_INT, false, INT64_MAX, NULL, NULL },       /* bytes/s of the conversion */
	{ "eta", API_INT, false, INT64_MAX, NULL, NULL },        /* seconds left */
	/* bytes converted so far, of the bytes to convert: what vmcryptd's metrics sum */
	{ "bytesDone", API_INT, false, INT64_MAX, NULL, NULL },
	{ "bytesTotal", API_INT, false, INT64_MAX, NULL, NULL },
	{ "downtimeMs", API_INT, false, INT64_MAX, NULL, NULL }, /* unmount to remount */
	{ "message", API_STRING, false, 256, check_text, TEXT_EXPECT },
	{},
};

static const struct api_field body_register[] = {
	{ "name", API_STRING, true, API_NAME_MAX, check_name, NAME_EXPECT },
	{},
};

static const struct api_field body_enable[] = {
	{ "volumeType", API_STRING, true, 8, check_volume_type, "OS, Data or All" },
	{ "kek", API_STRING, false, API_NAME_MAX, check_name, NAME_EXPECT },
	{ "kekAlgorithm", API_STRING, false, 32, check_text, "an algorithm name" },
	{ "encryptFormatAll", API_BOOL, false, 0, NULL, NULL },
	{},
};

static const struct api_field body_disable[] = {
	{ "volumeType", API_STRING, true, 8, check_volume_type, "OS, Data or All" },
	{},
};

static const struct api_field body_key_create[] = {
	{ "name", API_STRING, true, API_NAME_MAX, check_name, NAME_EXPECT },
	{ "kty", API_STRING, false, 8, check_text, "RSA or AES" },
	{ "size", API_INT, false, 8192, NULL, NULL },
	{},
};

static bool check_role(const char *s)
{
	return api_role_from_string(s) >= 0;
}

static const struct api_field body_token_create[] = {
	{ "name", API_STRING, true, API_NAME_MAX, check_name, NAME_EXPECT },
	{ "role", API_STRING, true, 16, check_role, "metrics, reader, operator or admin" },
	{},
};

/* The authorization matrix (docs/vmcryptd.md "Roles"): each route's auth says who may call it.
 * Readers read what the fleet looks like, never a secret value, a header's bytes (its keyslots)
 * or a private key; operators also change what VMs are told to do; key operations, secret
 * values, header bytes, deleting a VM (which deletes its secrets) and tokens are the admin's. */
static const struct api_route_def routes[] = {
	{ API_ENROLL, "POST", "/v1/enroll", API_AUTH_ENROLL, body_enroll, "vm.enroll" },
	{ API_VM_GOAL, "GET", "/v1/vm/goal", API_AUTH_VM, NULL, "vm.goal" },
	{ API_VM_SECRET_PUT, "PUT", "/v1/vm/secrets/{volume}", API_AUTH_VM, body_secret_put, "secret.write" },
	{ API_VM_SECRET_GET, "GET", "/v1/vm/secrets/{volume}", API_AUTH_VM, NULL, "secret.read" },
	{ API_VM_STATUS, "POST", "/v1/vm/status", API_AUTH_VM, body_status, "vm.status" },
	{ API_ADMIN_VM_REGISTER, "POST", "/v1/admin/vms", API_AUTH_OPERATOR, body_register, "vm.register" },
	{ API_ADMIN_VM_LIST, "GET", "/v1/admin/vms", API_AUTH_READER, NULL, "vm.list" },
	{ API_ADMIN_VM_SHOW, "GET", "/v1/admin/vms/{vm}", API_AUTH_READER, NULL, "vm.show" },
	{ API_ADMIN_VM_REVOKE, "POST", "/v1/admin/vms/{vm}/revoke", API_AUTH_OPERATOR, NULL, "vm.revoke" },
	{ API_ADMIN_VM_DELETE, "DELETE", "/v1/admin/vms/{vm}", API_AUTH_ADMIN, NULL, "vm.delete" },
	{ API_ADMIN_ENCRYPTION_ENABLE, "POST", "/v1/admin/vms/{vm}/encryption/enable", API_AUTH_OPERATOR, body_enable,
	  "encryption.enable" },
	{ API_ADMIN_ENCRYPTION_DISABLE, "POST", "/v1/admin/vms/{vm}/encryption/disable", API_AUTH_OPERATOR,
	  body_disable, "encryption.disable" },
	{ API_ADMIN_ENCRYPTION_SHOW, "GET", "/v1/admin/vms/{vm}/encryption", API_AUTH_READER, NULL,
	  "encryption.show" },
	{ API_ADMIN_EXTENSION_REMOVE, "POST", "/v1/admin/vms/{vm}/extension/remove", API_AUTH_OPERATOR, NULL,
	  "extension.remove" },
	{ API_ADMIN_KEY_CREATE, "POST", "/v1/admin/keys", API_AUTH_ADMIN, body_key_create, "key.create" },
	{ API_ADMIN_KEY_LIST, "GET", "/v1/admin/keys", API_AUTH_READER, NULL, "key.list" },
	{ API_ADMIN_KEY_SHOW, "GET", "/v1/admin/keys/{key}", API_AUTH_READER, NULL, "key.show" },
	{ API_ADMIN_KEY_ROTATE, "POST", "/v1/admin/keys/{key}/rotate", API_AUTH_ADMIN, NULL, "key.rotate" },
	{ API_ADMIN_KEY_DISABLE, "POST", "/v1/admin/keys/{key}/disable", API_AUTH_ADMIN, NULL, "key.disable" },
	{ API_ADMIN_KEY_ENABLE, "POST", "/v1/admin/keys/{key}/enable", API_AUTH_ADMIN, NULL, "key.enable" },
	{ API_ADMIN_SECRET_LIST, "GET", "/v1/admin/secrets", API_AUTH_READER, NULL, "secret.list" },
	/* Metadata for readers; the value (?reveal=true) for the admin alone. */
	{ API_ADMIN_SECRET_SHOW, "GET", "/v1/admin/secrets/{vm}/{volume}", API_AUTH_READER, NULL, "secret.show", 0, 0,
	  "reveal", API_AUTH_ADMIN },
	{ API_ADMIN_AUDIT, "GET", "/v1/admin/audit", API_AUTH_READER, NULL, "audit.list" },
	/* A header backup is written by its VM alone and read by it or the admin: its keyslots
	 * open the volume with a leaked passphrase. */
	{ API_VM_HEADER_PUT, "PUT", "/v1/vm/headers/{volume}", API_AUTH_VM, NULL, "header.write", API_HEADER_MAX },
	{ API_VM_HEADER_GET, "GET", "/v1/vm/headers/{volume}", API_AUTH_VM, NULL, "header.read", 0, API_HEADER_MAX },
	{ API_ADMIN_HEADER_LIST, "GET", "/v1/admin/headers", API_AUTH_READER, NULL, "header.list" },
	{ API_ADMIN_HEADER_GET, "GET", "/v1/admin/headers/{vm}/{volume}", API_AUTH_ADMIN, NULL, "header.read", 0,
	  API_HEADER_MAX },
	{ API_ADMIN_TOKEN_CREATE, "POST", "/v1/admin/tokens", API_AUTH_ADMIN, body_token_create, "token.create" },
	{ API_ADMIN_TOKEN_LIST, "GET", "/v1/admin/tokens", API_AUTH_READER, NULL, "token.list" },
	{ API_ADMIN_TOKEN_REVOKE, "POST", "/v1/admin/tokens/{token}/revoke", API_AUTH_ADMIN, NULL, "token.revoke" },
	/* Counts and latencies for Prometheus (docs/vmcryptd.md "Metrics"): no name, secret or
	 * token, so the least role of all may scrape it, and a scraper's token reads nothing else. */
	{ API_METRICS, "GET", "/metrics", API_AUTH_METRICS, NULL, "metrics.read" },
};

const struct api_route_def *api_routes(size_t *ret_n)
{
	*ret_n = ELEMENTSOF(routes);
	return routes;
}

static const char *const role_names[_API_ROLE_MAX] = {
	[API_ROLE_METRICS] = "metrics",
	[API_ROLE_READER] = "reader",
	[API_ROLE_OPERATOR] = "operator",
	[API_ROLE_ADMIN] = "admin",
};

const char *api_role_to_string(enum api_role r)
{
	return r >= 0 && r < _API_ROLE_MAX ? role_names[r] : NULL;
}

enum api_role api_role_from_string(const char *s)
{
	for (enum api_role r = 0; s && r < _API_ROLE_MAX; r++)
		if (streq(s, role_names[r]))
			return r;
	return _API_ROLE_INVALID;
}

static const char *const auth_names[_API_AUTH_MAX] = {
	[API_AUTH_ENROLL] = "enroll",
	[API_AUTH_VM] = "vm",
	[API_AUTH_METRICS] = "metrics",
	[API_AUTH_READER] = "reader",
	[API_AUTH_OPERATOR] = "operator",
	[API_AUTH_ADMIN] = "admin",
};

const char *api_auth_to_string(enum api_auth a)
{
	return a >= 0 && a < _API_AUTH_MAX ? auth_names[a] : NULL;
}

enum api_auth api_auth_from_string(const char *s)
{
	for (enum api_auth a = 0; s && a < _API_AUTH_MAX; a++)
		if (streq(s, auth_names[a]))
			return a;
	return _API_AUTH_INVALID;
}

enum api_role api_auth_role(enum api_auth a)
{
	/* The role values follow API_AUTH_METRICS in the same order. */
	if (a < API_AUTH_METRICS || a >= _API_AUTH_MAX)
		return _API_ROLE_INVALID;
	return (enum api_role)(a - API_AUTH_METRICS);
}

bool api_flag_true(const char *value)
{
	return value && (streq(value, "true") || streq(value, "1"));
}

bool api_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > API_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

int api_volume_type_from_string(const char *s, unsigned *ret)
{
	enum ade_volume_type t = ade_volume_type_from_string(s);

	if (t < 0)
		return t;
	*ret = (unsigned)t;
	return 0;
}

const char *api_volume_type_to_string(unsigned mask)
{
	return ade_volume_type_to_string((enum ade_volume_type)(mask & API_VOLUME_ALL));
}

bool api_status_valid(const char *s)
{
	return ade_state_from_string(s) >= 0;
}

/* Jansson has no depth limit of its own below 2048; scan brackets outside strings first, so a
 * deeply nested body costs one linear pass and never reaches the recursive parser. */
static bool api_json_depth_ok(const char *s, size_t size, unsigned max)
{
	unsigned depth = 0;
	bool in_string = false;

	for (size_t i = 0; i < size; i++) {
		char c = s[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				return false;
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return true;
}

static const char *type_name(enum api_type t)
{
	switch (t) {
	case API_STRING:
		return "a string";
	case API_BOOL:
		return "true or false";
	case API_INT:
		return "an integer";
	case API_VOLUMES:
		return "an array of volume objects";
	}
	return "?";
}

static int validate_object(json_t *obj, const struct api_field *fields, const char *where, char *err, size_t errlen)
{
	const char *key;
	json_t *value;

	if (!json_is_object(obj)) {
		snprintf(err, errlen, "%s must be a JSON object", where);
		return -EINVAL;
	}
	json_object_foreach(obj, key, value) {
		const struct api_field *f;

		for (f = fields; f->name; f++)
			if (streq(f->name, key))
				break;
		if (!f->name) {
			/* Field names are attacker-chosen: print only printable ones, shortened. */
			snprintf(err, errlen, "%s: unknown field \"%.40s\"", where,
				 check_text(key) ? key : "(unprintable)");
			return -EINVAL;
		}
		switch (f->type) {
		case API_STRING:
			if (!json_is_string(value))
				goto wrong_type;
			if (json_string_length(value) > f->max) {
				snprintf(err, errlen, "%s: field \"%s\" is longer than %zu bytes", where, key, f->max);
				return -EINVAL;
			}
			if (strlen(json_string_value(value)) != json_string_length(value) ||
			    (f->check && !f->check(json_string_value(value)))) {
				snprintf(err, errlen, "%s: field \"%s\" must be %s", where, key,
					 f->expect ? f->expect : "text without NUL bytes");
				return -EINVAL;
			}
			break;
		case API_BOOL:
			if (!json_is_boolean(value))
				goto wrong_type;
			break;
		case API_INT:
			if (!json_is_integer(value))
				goto wrong_type;
			if (json_integer_value(value) < 0 || (uint64_t)json_integer_value(value) > f->max) {
				snprintf(err, errlen, "%s: field \"%s\" must be between 0 and %zu", where, key, f->max);
				return -EINVAL;
			}
			break;
		case API_VOLUMES: {
			size_t i;
			json_t *item;

			if (!json_is_array(value))
				goto wrong_type;
			if (json_array_size(value) > f->max) {
				snprintf(err, errlen, "%s: field \"%s\" has more than %zu items", where, key, f->max);
				return -EINVAL;
			}
			json_array_foreach(value, i, item) {
				char sub[64];
				int r;

				snprintf(sub, sizeof(sub), "%s[%zu]", key, i);
				r = validate_object(item, body_report_volume, sub, err, errlen);
				if (r < 0)
					return r;
			}
			break;
		}
		}
		continue;
	wrong_type:
		snprintf(err, errlen, "%s: field \"%s\" must be %s", where, key, type_name(f->type));
		return -EINVAL;
	}
	for (const struct api_field *f = fields; f->name; f++)
		if (f->required && !json_object_get(obj, f->name)) {
			snprintf(err, errlen, "%s: missing field \"%s\"", where, f->name);
			return -EINVAL;
		}
	return 0;
}

int api_target_check(const char *raw, size_t n, char *err, size_t errlen)
{
	const char *q = memchr(raw, '?', n);
	size_t path_len = q ? (size_t)(q - raw) : n;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)raw[i];

		if (c <= 0x20 || c >= 0x7f) {
			snprintf(err, errlen, "the request target holds a %s byte 0x%02x; only ASCII without controls is accepted",
				 c == 0 ? "NUL" : "control or non-ASCII", c);
			return -EINVAL;
		}
		/* A decoded %00 would cut the path or a query value short of what a proxy in front
		 * saw: vmC%00/ignored would act on vmC. */
		if (c == '%' && i + 2 < n && raw[i + 1] == '0' && raw[i + 2] == '0') {
			snprintf(err, errlen, "the request target holds an encoded NUL (%%00)");
			return -EINVAL;
		}
		/* %2F would decode to a separator that no proxy or ACL in front took for one. */
		if (c == '%' && i + 2 < path_len && raw[i + 1] == '2' && (raw[i + 2] == 'f' || raw[i + 2] == 'F')) {
			snprintf(err, errlen, "no such route: an encoded slash (%%2F) is not a path separator");
			return -ENOENT;
		}
	}
	if (path_len == 0 || raw[0] != '/') {
		snprintf(err, errlen, "no such route: the request target must be a path starting with /");
		return -ENOENT;
	}
	return 0;
}

/* Each path has one spelling: no empty segment (//), no trailing slash, no . or .. segment. */
static bool path_canonical(const char *path)
{
	if (path[0] != '/')
		return false;
	for (const char *s = path; *s; ) {
		size_t n;

		s++; /* past the slash */
		n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n;
	}
	return true;
}

/* Matches path against pattern segment by segment, capturing names. Returns true on a match;
 * *ret_bad_name is set when a capture is not a valid name (the route matches, the request is 400). */
static bool match_path(const char *pattern, const char *path, struct api_request *req, bool *ret_bad_name)
{
	const char *p = pattern, *s = path;

	while (*p && *s) {
		if (*p == '{') {
			const char *pe = strchr(p, '}');
			size_t n = strcspn(s, "/");
			char *dest;

			if (!pe)
				return false;
			if (strncmp(p, "{vm}", 4) == 0)
				dest = req->vm;
			else if (strncmp(p, "{volume}", 8) == 0)
				dest = req->volume;
			else if (strncmp(p, "{token}", 7) == 0)
				dest = req->token;
			else
				dest = req->key;
			if (n == 0)
				return false;
			if (n > API_NAME_MAX) {
				*ret_bad_name = true;
				n = 0;
			}
			memcpy(dest, s, n);
			dest[n] = 0;
			if (n > 0 && !api_name_valid(dest))
				*ret_bad_name = true;
			p = pe + 1;
			s += strcspn(s, "/");
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *p == 0 && *s == 0;
}

int api_request_route(const char *method, const char *path, struct api_request *ret, char *err, size_t errlen)
{
	const struct api_route_def *found = NULL;
	bool path_known = false, bad_name = false;

	memset(ret, 0, sizeof(*ret));
	if (!path_canonical(path)) {
		snprintf(err, errlen, "no such route: a path has no empty, '.' or '..' segment and no trailing slash");
		return -ENOENT;
	}
	for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
		struct api_request tmp = {};
		bool bad = false;

		if (!match_path(routes[i].pattern, path, &tmp, &bad))
			continue;
		path_known = true;
		if (!streq(routes[i].method, method))
			continue;
		found = &routes[i];
		*ret = tmp;
		bad_name = bad;
		break;
	}
	if (!found) {
		if (path_known) {
			snprintf(err, errlen, "method %.10s is not allowed on this path", method);
			return -ENOTSUP;
		}
		snprintf(err, errlen, "no such route");
		return -ENOENT;
	}
	ret->def = found;
	if (bad_name) {
		snprintf(err, errlen, "name in the path must be %s", NAME_EXPECT);
		return -EINVAL;
	}
	return 0;
}

int api_request_parse(const char *method, const char *path, const char *body, size_t size,
		      struct api_request *ret, char *err, size_t errlen)
{
	const struct api_route_def *found;
	json_error_t jerr;
	json_t *j;
	int r;

	r = api_request_route(method, path, ret, err, errlen);
	if (r < 0)
		return r;
	found = ret->def;
	if (found->raw_max) {
		/* Bytes, not JSON: the handler checks them against their SHA-256. */
		if (size > found->raw_max) {
			snprintf(err, errlen, "request body larger than %zu bytes", found->raw_max);
			return -EFBIG;
		}
		if (size == 0) {
			snprintf(err, errlen, "request body missing: the bytes to store are required");
			return -EINVAL;
		}
		return 0;
	}
	if (size > API_BODY_MAX) {
		snprintf(err, errlen, "request body larger than %d bytes", API_BODY_MAX);
		return -EFBIG;
	}
	if (!found->body) {
		if (size > 0) {
			snprintf(err, errlen, "this route takes no request body");
			return -EINVAL;
		}
		return 0;
	}
	if (size == 0) {
		snprintf(err, errlen, "request body missing: a JSON object is required");
		return -EINVAL;
	}
	/* jansson takes a NUL byte for the end of the input and reports "end of file": say what
	 * is wrong instead. JSON text never holds one raw (RFC 8259 7). */
	if (memchr(body, 0, size)) {
		snprintf(err, errlen, "request body holds a NUL byte at offset %zu; JSON text has none",
			 (size_t)((const char *)memchr(body, 0, size) - body));
		return -EINVAL;
	}
	if (!api_json_depth_ok(body, size, API_JSON_DEPTH_MAX)) {
		snprintf(err, errlen, "JSON nested deeper than %d levels", API_JSON_DEPTH_MAX);
		return -EINVAL;
	}
	j = json_loadb(body, size, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		/* jansson's text names the position and the problem, never echoes the input. */
		snprintf(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	r = validate_object(j, found->body, "body", err, errlen);
	if (r < 0) {
		json_decref(j);
		return r;
	}
	ret->body = j;
	return 0;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int api_header_check(const void *data, size_t size, char *err, size_t errlen)
{
	/* Offsets of struct luks2_hdr_disk (the specification's Table 1). */
	enum { OFF_MAGIC = 0, OFF_VERSION = 6, OFF_HDR_SIZE = 8, OFF_HDR_OFFSET = 256 };
	static const uint8_t magic[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };
	static const uint8_t magic_secondary[6] = { 'S', 'K', 'U', 'L', 0xba, 0xbe };
	const uint8_t *p = data;
	uint64_t hdr_size, hdr_offset;
	unsigned version;

	if (size < API_LUKS2_BINARY_HEADER_SIZE) {
		snprintf(err, errlen, "not a LUKS2 header: %zu bytes, fewer than its %d-byte binary header", size,
			 API_LUKS2_BINARY_HEADER_SIZE);
		return -EINVAL;
	}
	if (memcmp(p + OFF_MAGIC, magic, sizeof(magic)) != 0) {
		snprintf(err, errlen, "not a LUKS2 header: it does not start with the LUKS magic%s",
			 memcmp(p + OFF_MAGIC, magic_secondary, sizeof(magic_secondary)) == 0
				 ? " (it starts with a secondary header; send the whole header from offset 0)"
				 : "");
		return -EINVAL;
	}
	version = (unsigned)p[OFF_VERSION] << 8 | p[OFF_VERSION + 1];
	if (version != 2) {
		snprintf(err, errlen, "not a LUKS2 header: LUKS version %u%s", version,
			 version == 1 ? " (LUKS1 headers are not kept; convert with cryptsetup convert --type luks2)" : "");
		return -EINVAL;
	}
	hdr_size = be64(p + OFF_HDR_SIZE);
	if (hdr_size < 16384 || hdr_size > 4194304 || (hdr_size & (hdr_size - 1))) {
		snprintf(err, errlen, "not a LUKS2 header: its header size %llu is not a power of two from 16 KiB to 4 MiB",
			 (unsigned long long)hdr_size);
		return -EINVAL;
	}
	hdr_offset = be64(p + OFF_HDR_OFFSET);
	if (hdr_offset != 0) {
		snprintf(err, errlen, "not a LUKS2 header backup: its primary header says offset %llu, not 0",
			 (unsigned long long)hdr_offset);
		return -EINVAL;
	}
	if (hdr_size > size) {
		snprintf(err, errlen, "a LUKS2 header cut short: %zu bytes, fewer than its header area of %llu", size,
			 (unsigned long long)hdr_size);
		return -EINVAL;
	}
	return 0;
}

void api_request_done(struct api_request *r)
{
	json_decref(r->body);
	r->body = NULL;
}

/* A word outside the vocabulary (from an old report) matches neither way. */
static bool os_state_matches(bool want, enum ade_state s)
{
	if (want)
		return s == ADE_STATE_ENCRYPTED || s == ADE_STATE_ENCRYPTION_IN_PROGRESS ||
		       s == ADE_STATE_VM_RESTART_PENDING;
	return s == ADE_STATE_NOT_ENCRYPTED || s == ADE_STATE_DECRYPTION_IN_PROGRESS;
}

static bool data_state_matches(bool want, enum ade_state s)
{
	/* NotMounted: no data volume is mounted, so nothing disagrees either way. */
	if (s == ADE_STATE_NOT_MOUNTED)
		return true;
	if (want)
		return s == ADE_STATE_ENCRYPTED || s == ADE_STATE_ENCRYPTION_IN_PROGRESS;
	return s == ADE_STATE_NOT_ENCRYPTED || s == ADE_STATE_DECRYPTION_IN_PROGRESS;
}

static const char *const audit_result_table[_API_AUDIT_RESULT_MAX] = {
	[API_AUDIT_ANY] = "any",
	[API_AUDIT_OK] = "ok",
	[API_AUDIT_DENIED] = "denied",
};

const char *api_audit_result_to_string(enum api_audit_result r)
{
	return r >= 0 && r < _API_AUDIT_RESULT_MAX ? audit_result_table[r] : NULL;
}

enum api_audit_result api_audit_result_from_string(const char *s)
{
	for (size_t i = 0; i < ELEMENTSOF(audit_result_table); i++)
		if (streq(s, audit_result_table[i]))
			return (enum api_audit_result)i;
	return _API_AUDIT_RESULT_INVALID;
}

bool api_audit_result_is_ok(const char *result)
{
	return streq(result, "ok") || startswith(result, "ok:");
}

char *api_format_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "@%lld", (long long)t);
	return buf;
}

int api_parse_time(const char *s, int64_t now, int64_t *ret)
{
	struct tm tm = {};
	const char *end;
	char *e;
	long long n;

	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end && *end == 0) {
		*ret = (int64_t)timegm(&tm);
		return 0;
	}
	errno = 0;
	n = strtoll(s, &e, 10);
	if (errno || e == s || n < 0 || n > 100LL * 365 * 86400 || e[0] == 0 || e[1] != 0)
		return -EINVAL;
	switch (*e) {
	case 's':
		break;
	case 'm':
		n *= 60;
		break;
	case 'h':
		n *= 3600;
		break;
	case 'd':
		n *= 86400;
		break;
	default:
		return -EINVAL;
	}
	*ret = now - n;
	return 0;
}

enum api_drift api_drift_compute(const struct api_drift_input *in, char *buf, size_t len)
{
	char when[32];
	bool os_ok, data_ok;

	if (!in->os_state || !in->data_state) {
		snprintf(buf, len, "unknown: the VM never reported");
		return API_DRIFT_NEVER;
	}
	api_format_time(in->report_time, when, sizeof(when));
	if (in->now - in->report_time > in->stale_after) {
		snprintf(buf, len, "stale: no report since %s (%lld s ago)", when,
			 (long long)(in->now - in->report_time));
		return API_DRIFT_STALE;
	}
	os_ok = os_state_matches(in->enabled & API_VOLUME_OS, ade_state_from_string(in->os_state));
	data_ok = data_state_matches(in->enabled & API_VOLUME_DATA, ade_state_from_string(in->data_state));
	if (os_ok && data_ok) {
		snprintf(buf, len, "none");
		return API_DRIFT_NONE;
	}
	if (in->report_sequence < in->sequence) {
		snprintf(buf, len, "pending: settings sequence %llu not yet applied (VM reported sequence %llu at %s)",
			 (unsigned long long)in->sequence, (unsigned long long)in->report_sequence, when);
		return API_DRIFT_PENDING;
	}
	snprintf(buf, len, "settings: encryption enabled for %s; VM reported OsVolumeEncrypted=%s DataVolumesEncrypted=%s at %s",
		 api_volume_type_to_string(in->enabled), in->os_state, in->data_state, when);
	return API_DRIFT_DRIFT;
}

const char *api_drift_to_string(enum api_drift d)
{
	static const char *const names[] = { "none", "pending", "drift", "stale", "never-reported" };
	return names[d];
}
