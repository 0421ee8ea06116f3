/* A small HTTPS client for vmcryptd's JSON API (libcurl): TLS verified against a given CA file,
 * bearer token, bounded responses. */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* Largest response body accepted (audit listings are the largest). */
#define HTTP_CLIENT_RESPONSE_MAX (16 * 1024 * 1024)

struct http_client;

/* base_url like "https://127.0.0.1:8443"; ca_file NULL uses the system store; token may be NULL.
 * The token is copied. Returns 0, -EINVAL (not an https URL) or -ENOMEM. */
int http_client_new(const char *base_url, const char *ca_file, const char *token, struct http_client **ret);
void http_client_free(struct http_client *c);

/* Sends method path (with query) and an optional JSON body. On a completed exchange returns 0 with
 * the HTTP status and the parsed JSON body (NULL when empty). Transport failures return
 * -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -EPROTO (TLS handshake or certificate verification),
 * -EFBIG (response too large), -EBADMSG (response not JSON) or -EIO, with a reason in err. */
int http_client_request(struct http_client *c, const char *method, const char *path, json_t *body,
			long *ret_status, json_t **ret_body, char *err, size_t errlen);
