/* The vmcryptd HTTP API model shared by the server, the admin CLI and the fuzz harness: the route
 * table, request parsing (path, JSON body with size, depth and schema checks), names, volume types,
 * status values and the drift rule. Pure functions: no I/O. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/ade.h"

#define API_BODY_MAX (64 * 1024)
#define API_JSON_DEPTH_MAX 16
#define API_NAME_MAX 64
#define API_SECRET_MAX 4096       /* decoded bytes of one volume secret */
/* Bytes of one LUKS2 header backup: `cryptsetup luksHeaderBackup` writes the metadata and the
 * keyslot area, 16 MiB with cryptsetup's defaults; twice that leaves room for a larger keyslot
 * area and nothing more. */
#define API_HEADER_MAX (32 * 1024 * 1024)
/* HTTP fields of the header-backup routes (docs/api.md): the SHA-256 of the bytes (64 lower-case
 * hex digits) in a PUT and in a GET's answer, and the version and creation time in the answer. */
#define API_FIELD_SHA256 "Vmcrypt-SHA256"
#define API_FIELD_VERSION "Vmcrypt-Version"
#define API_FIELD_CREATED "Vmcrypt-Created"
#define API_MESSAGE_MAX 1024      /* ProgressMessage */
#define API_REPORT_VOLUMES_MAX 64

/* The roles of named tokens (`vmcrypt-admin token create NAME --role R`, docs/vmcryptd.md
 * "Roles"). Each holds every right of the roles before it; the admin token holds every right. */
enum api_role {
	API_ROLE_METRICS,  /* scrapes GET /metrics and nothing else (a Prometheus server) */
	API_ROLE_READER,   /* reads everything but secret values, header bytes and private keys */
	API_ROLE_OPERATOR, /* and changes what VMs are told: register, revoke, enable, disable, extension */
	API_ROLE_ADMIN,    /* and everything else: keys, secret values, header bytes, delete, tokens */
	_API_ROLE_MAX,
	_API_ROLE_INVALID = -EINVAL,
};
/* "metrics", "reader", "operator", "admin" both ways; from_string returns _API_ROLE_INVALID for others. */
const char *api_role_to_string(enum api_role r);
enum api_role api_role_from_string(const char *s);

/* Who may call a route: the one authorization decision, made per route in api.c's table. */
enum api_auth {
	API_AUTH_ENROLL,   /* a one-time enrollment token */
	API_AUTH_VM,       /* a VM credential */
	/* The admin token, or a named token whose role is at least this one; in role order. */
	API_AUTH_METRICS,
	API_AUTH_READER,
	API_AUTH_OPERATOR,
	API_AUTH_ADMIN,
	_API_AUTH_MAX,
	_API_AUTH_INVALID = -EINVAL,
};
/* "enroll", "vm", "metrics", "reader", "operator", "admin" both ways. */
const char *api_auth_to_string(enum api_auth a);
enum api_auth api_auth_from_string(const char *s);
/* The least role a route of auth needs, or _API_ROLE_INVALID for API_AUTH_ENROLL and API_AUTH_VM
 * (no named token may call those). */
enum api_role api_auth_role(enum api_auth a);

enum api_route {
	API_ENROLL,
	API_VM_GOAL,
	API_VM_SECRET_PUT,
	API_VM_SECRET_GET,
	API_VM_STATUS,
	API_ADMIN_VM_REGISTER,
	API_ADMIN_VM_LIST,
	API_ADMIN_VM_SHOW,
	API_ADMIN_VM_REVOKE,
	API_ADMIN_VM_DELETE,
	API_ADMIN_ENCRYPTION_ENABLE,
	API_ADMIN_ENCRYPTION_DISABLE,
	API_ADMIN_ENCRYPTION_SHOW,
	API_ADMIN_EXTENSION_REMOVE,
	API_ADMIN_KEY_CREATE,
	API_ADMIN_KEY_LIST,
	API_ADMIN_KEY_SHOW,
	API_ADMIN_KEY_ROTATE,
	API_ADMIN_KEY_DISABLE,
	API_ADMIN_KEY_ENABLE,
	API_ADMIN_SECRET_LIST,
	API_ADMIN_SECRET_SHOW,
	API_ADMIN_AUDIT,
	API_VM_HEADER_PUT,
	API_VM_HEADER_GET,
	API_ADMIN_HEADER_LIST,
	API_ADMIN_HEADER_GET,
	API_ADMIN_TOKEN_CREATE,
	API_ADMIN_TOKEN_LIST,
	API_ADMIN_TOKEN_REVOKE,
	API_METRICS,
	_API_ROUTE_MAX,
};

struct api_route_def {
	enum api_route route;
	const char *method;
	const char *pattern; /* segments; "{vm}", "{volume}", "{key}", "{token}" capture */
	enum api_auth auth;  /* who may call it */
	const struct api_field *body; /* NULL: the route takes no JSON body */
	const char *action;           /* audit action name */
	/* > 0: the body is raw bytes (application/octet-stream), 1 to raw_max of them, which the
	 * handler reads itself; vmcryptd authenticates such a request from its headers, before it
	 * accepts a byte of the body. */
	size_t raw_max;
	/* > 0: a successful answer is raw bytes (application/octet-stream), at most this many, not
	 * JSON; errors are JSON as everywhere. */
	size_t raw_reply_max;
	/* A query argument that, when true (api_flag_true()), makes the route need raise_auth
	 * instead of auth: ?reveal=true of a secret. NULL: none. */
	const char *raise_arg;
	enum api_auth raise_auth;
};

struct api_request {
	const struct api_route_def *def;
	char vm[API_NAME_MAX + 1];
	char volume[API_NAME_MAX + 1];
	char key[API_NAME_MAX + 1];
	char token[API_NAME_MAX + 1];
	json_t *body; /* a validated object, or NULL for routes without a body */
};

/* The LUKS2 binary header that starts every LUKS2 header and every `cryptsetup luksHeaderBackup`
 * file (the LUKS2 On-Disk Format Specification, section 2.1): magic "LUKS\xba\xbe", a big-endian
 * version 2, and a header area (hdr_size: this binary header and the JSON area after it) of
 * 16 KiB to 4 MiB in powers of two, starting at offset 0 (the primary header). */
#define API_LUKS2_BINARY_HEADER_SIZE 4096

/* Whether size bytes look like a LUKS2 header backup: the primary binary header's magic,
 * version, hdr_size and hdr_offset, and the whole header area hdr_size within the bytes. Nothing
 * else is parsed (no JSON, no checksum): this refuses what is plainly no header, so garbage never
 * becomes the newest version of one. Returns 0 or -EINVAL with a reason in err. */
int api_header_check(const void *data, size_t size, char *err, size_t errlen);

/* The route table, for documentation tests and the authorization matrix. */
const struct api_route_def *api_routes(size_t *ret_n);

/* Checks the request target (path and query) as it came on the request line, n bytes before any
 * percent-decoding, so nothing a decoder would cut or split goes unseen. Returns 0 or:
 *   -EINVAL     a raw NUL, control, space or non-ASCII byte, or an encoded NUL (%00) (400)
 *   -ENOENT     an encoded slash (%2F) in the path, or no path at all (404) */
int api_target_check(const char *raw, size_t n, char *err, size_t errlen);

/* Finds the route of method and path (the decoded URL path without the query), with the names it
 * captures, without looking at a body: what api_request_parse() does first. The path has one
 * canonical form (no empty, '.' or '..' segment, no trailing slash), anything else is -ENOENT.
 * On failure writes a human-readable reason to err. Returns 0 or:
 *   -ENOENT     no route has this path (404)
 *   -ENOTSUP    the path exists but not with this method (405)
 *   -EINVAL     a name in the path is not a valid name (400); ret->def is set */
int api_request_route(const char *method, const char *path, struct api_request *ret, char *err, size_t errlen);

/* Parses one request: api_request_route(), then the body. On failure writes a human-readable
 * reason to err (never the body's content beyond a field name). A route with raw_max takes its
 * body as bytes, unparsed (ret->body stays NULL).
 * Returns 0 or:
 *   -ENOENT     no route has this path (404)
 *   -ENOTSUP    the path exists but not with this method (405)
 *   -EFBIG      body larger than API_BODY_MAX, or than the route's raw_max (413)
 *   -EINVAL     malformed JSON, a NUL byte in the body, too deep, wrong type, unknown or missing
 *               field, bad name, text with control or format characters, an empty raw body (400) */
int api_request_parse(const char *method, const char *path, const char *body, size_t size,
		      struct api_request *ret, char *err, size_t errlen);
void api_request_done(struct api_request *r);

/* Whether a query argument's value turns a switch on: "true" or "1" (NULL: off). */
bool api_flag_true(const char *value);

/* Whether s is a valid VM, volume or key name: 1 to 64 of [A-Za-z0-9._-], starting alphanumeric. */
bool api_name_valid(const char *s);

/* Volume types as a bit set: ADE's VolumeType (ade.h), as the store keeps it. */
#define API_VOLUME_OS ((unsigned)ADE_VOLUME_OS)
#define API_VOLUME_DATA ((unsigned)ADE_VOLUME_DATA)
#define API_VOLUME_ALL ((unsigned)ADE_VOLUME_ALL)
/* "OS", "Data", "All" (case-insensitive) → mask, through ade_volume_type_from_string().
 * Returns 0 or -EINVAL. */
int api_volume_type_from_string(const char *s, unsigned *ret);
/* mask → "OS", "Data", "All" or "None" (bits other than OS and Data are ignored). */
const char *api_volume_type_to_string(unsigned mask);

/* Whether s is one of ADE's status words (ade_state_from_string()): Encrypted, NotEncrypted,
 * NotMounted, EncryptionInProgress, DecryptionInProgress, VMRestartPending, Unknown. */
bool api_status_valid(const char *s);

enum api_drift {
	API_DRIFT_NONE,    /* report agrees with the settings */
	API_DRIFT_PENDING, /* the VM has not applied the latest settings yet */
	API_DRIFT_DRIFT,   /* report disagrees with settings it has applied */
	API_DRIFT_STALE,   /* no report for longer than stale_after seconds */
	API_DRIFT_NEVER,   /* the VM never reported */
};

struct api_drift_input {
	unsigned enabled;          /* API_VOLUME_* the settings want encrypted */
	uint64_t sequence;         /* settings sequence number */
	const char *os_state;      /* last report's OsVolumeEncrypted, NULL when never reported */
	const char *data_state;    /* last report's DataVolumesEncrypted */
	uint64_t report_sequence;  /* SequenceVersion the VM said it applied (0: not said) */
	int64_t report_time;       /* seconds since the epoch */
	int64_t now;
	int64_t stale_after;       /* seconds */
};

/* Compares settings and the last report. Writes a one-line explanation ("none", or both values
 * and the report time) to buf. */
enum api_drift api_drift_compute(const struct api_drift_input *in, char *buf, size_t len);
const char *api_drift_to_string(enum api_drift d);

/* The result filter of audit listings. An event's result is "ok", "ok: DETAIL", or a reason it
 * was refused or failed ("denied: ...", "failed", "not found"): API_AUDIT_DENIED is any result
 * that is not ok. */
enum api_audit_result {
	API_AUDIT_ANY,
	API_AUDIT_OK,
	API_AUDIT_DENIED,
	_API_AUDIT_RESULT_MAX,
	_API_AUDIT_RESULT_INVALID = -EINVAL,
};
/* "any", "ok", "denied" both ways; from_string returns _API_AUDIT_RESULT_INVALID for others. */
const char *api_audit_result_to_string(enum api_audit_result r);
enum api_audit_result api_audit_result_from_string(const char *s);
/* Whether an event's result text counts as ok ("ok" or "ok: ..."). */
bool api_audit_result_is_ok(const char *result);

/* UTC "2026-11-29T10:00:00Z" for t into buf (at least 21 bytes). */
char *api_format_time(int64_t t, char *buf, size_t len);
/* Parses that form, or a relative "30m", "2h", "1d", "45s" ago from now. Returns 0 or -EINVAL. */
int api_parse_time(const char *s, int64_t now, int64_t *ret);
