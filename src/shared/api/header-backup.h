/* The client side of the header-backup routes (docs/api.md), shared by the VM's vault client and
 * vmcrypt-admin: an upload that carries the bytes' SHA-256, and a download checked against the
 * SHA-256 vmcryptd recorded at upload, over the HTTPS client. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/api/http-client.h"
#include "shared/digest.h"

struct header_backup {
	void *data; /* secret memory */
	size_t size;
	uint8_t sha256[DIGEST_SHA256_SIZE];
	uint64_t version;
	char created[32]; /* "2026-11-29T10:00:00Z" as vmcryptd said it */
};

/* PUT path with size bytes (1 to API_HEADER_MAX) as the raw body and their SHA-256 in the
 * API_FIELD_SHA256 field. Returns 0 with the HTTP status and the JSON answer (any status; NULL
 * when empty), or -EINVAL (size out of range, nothing sent), -EBADMSG (the answer is not JSON),
 * a transport failure's -errno (http_client_request). */
int header_backup_put(struct http_client *c, const char *path, const void *data, size_t size, long *ret_status,
		      json_t **ret_body, char *err, size_t errlen);

/* GET path. Returns 0 with the HTTP status and, for 2xx, *ret filled once its bytes match the
 * API_FIELD_SHA256 field; for another status *ret_error holds the JSON error answer (NULL when
 * it is not JSON). Or -EBADMSG (a 2xx answer without valid API_FIELD_SHA256 and API_FIELD_VERSION
 * fields, or whose bytes do not match its hash: damaged on the way; err says which), -EFBIG
 * (larger than API_HEADER_MAX), a transport failure's -errno (http_client_request). */
int header_backup_get(struct http_client *c, const char *path, long *ret_status, json_t **ret_error,
		      struct header_backup *ret, char *err, size_t errlen);
void header_backup_done(struct header_backup *h);
