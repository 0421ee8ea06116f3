/* Header backups over the HTTPS client: hashes sent with uploads, hashes checked on downloads. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/api/header-backup.h"
#include "shared/secret.h"

/* A JSON answer in raw bytes, or NULL when there is none or it is not JSON. */
static json_t *json_of(const void *data, size_t size)
{
	return data && size ? json_loadb(data, size, 0, NULL) : NULL;
}

int header_backup_put(struct http_client *c, const char *path, const void *data, size_t size, long *ret_status,
		      json_t **ret_body, char *err, size_t errlen)
{
	char hex[DIGEST_SHA256_HEX_SIZE], field[sizeof(API_FIELD_SHA256) + DIGEST_SHA256_HEX_SIZE + 2];
	const char *fields[] = { field, NULL };
	uint8_t sha[DIGEST_SHA256_SIZE];
	_cleanup_secret_ void *answer = NULL;
	size_t answer_size = 0;
	json_t *j;
	long status = 0;
	int r;

	if (size == 0 || size > API_HEADER_MAX) {
		snprintf(err, errlen, "a header backup has 1 to %d bytes, not %zu", API_HEADER_MAX, size);
		return -EINVAL;
	}
	r = digest_sha256(data, size, sha);
	if (r < 0) {
		snprintf(err, errlen, "could not hash the header backup");
		return r;
	}
	snprintf(field, sizeof(field), "%s: %s", API_FIELD_SHA256, digest_sha256_to_hex(sha, hex));
	r = http_client_request_raw(c, "PUT", path, data, size, fields, HTTP_CLIENT_RESPONSE_MAX, &status, &answer,
				    &answer_size, err, errlen);
	if (r < 0)
		return r;
	j = json_of(answer, answer_size);
	if (!j && answer_size > 0) {
		snprintf(err, errlen, "the server's response (HTTP %ld) is not JSON", status);
		return -EBADMSG;
	}
	*ret_status = status;
	*ret_body = j;
	return 0;
}

int header_backup_get(struct http_client *c, const char *path, long *ret_status, json_t **ret_error,
		      struct header_backup *ret, char *err, size_t errlen)
{
	_cleanup_secret_ void *data = NULL;
	uint8_t sha[DIGEST_SHA256_SIZE];
	struct header_backup h = {};
	const char *v;
	long status = 0;
	size_t size = 0;
	int r;

	r = http_client_request_raw(c, "GET", path, NULL, 0, NULL, API_HEADER_MAX, &status, &data, &size, err,
				    errlen);
	if (r < 0)
		return r;
	*ret_status = status;
	if (status < 200 || status >= 300) {
		*ret_error = json_of(data, size);
		return 0;
	}
	v = http_client_reply_field(c, API_FIELD_SHA256);
	if (!v || digest_sha256_from_hex(v, h.sha256) < 0) {
		snprintf(err, errlen, "the answer (HTTP %ld) has no valid %s field", status, API_FIELD_SHA256);
		return -EBADMSG;
	}
	v = http_client_reply_field(c, API_FIELD_VERSION);
	if (!v || parse_u64(v, &h.version) < 0 || h.version == 0) {
		snprintf(err, errlen, "the answer (HTTP %ld) has no valid %s field", status, API_FIELD_VERSION);
		return -EBADMSG;
	}
	v = http_client_reply_field(c, API_FIELD_CREATED);
	snprintf(h.created, sizeof(h.created), "%s", v && string_is_safe_text(v) ? v : "");
	/* vmcryptd checked its copy before sending; this checks the way here. */
	r = digest_sha256(data ? data : "", size, sha);
	if (r < 0) {
		snprintf(err, errlen, "could not hash the header backup");
		return r;
	}
	if (size == 0 || !digest_sha256_equal(sha, h.sha256)) {
		char want[DIGEST_SHA256_HEX_SIZE], got[DIGEST_SHA256_HEX_SIZE];

		snprintf(err, errlen, "the %zu bytes received have SHA-256 %s, not %s as vmcryptd recorded: "
			 "damaged on the way", size, digest_sha256_to_hex(sha, got), digest_sha256_to_hex(h.sha256, want));
		return -EBADMSG;
	}
	h.data = TAKE_PTR(data);
	h.size = size;
	*ret = h;
	return 0;
}

void header_backup_done(struct header_backup *h)
{
	secret_free(h->data);
	h->data = NULL;
}
