/* A small HTTPS client for vmcryptd's API (libcurl): JSON requests, and raw bytes for header
 * backups; TLS verified against a given CA file, bearer token, an optional HTTPS proxy, bounded
 * time and responses. */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* Largest response body accepted (audit listings are the largest). */
#define HTTP_CLIENT_RESPONSE_MAX (16 * 1024 * 1024)
#define HTTP_CLIENT_CONNECT_TIMEOUT_DEFAULT 10L /* seconds */
#define HTTP_CLIENT_TOTAL_TIMEOUT_DEFAULT 120L
/* proxy value that turns every proxy off, the environment's included. */
#define HTTP_CLIENT_PROXY_NONE "none"

struct http_client;

struct http_client_options {
	const char *ca_file;    /* NULL or "": the system store */
	const char *token;      /* NUL-terminated bearer token, copied into secret memory; NULL: none */
	const char *proxy;      /* "http://host:port"; NULL or "": $https_proxy (then $HTTPS_PROXY,
				 * $all_proxy, $ALL_PROXY) as libcurl reads it, $no_proxy applies;
				 * HTTP_CLIENT_PROXY_NONE: no proxy at all */
	long connect_timeout_s; /* per connection (proxy or server); 0: the default */
	long total_timeout_s;   /* per request, everything included; 0: the default */
};

/* base_url like "https://127.0.0.1:8443". Returns 0, -EINVAL (not an https URL) or -ENOMEM. */
int http_client_new_with(const char *base_url, const struct http_client_options *o, struct http_client **ret);
/* The same with a CA file and a token only (defaults otherwise). */
int http_client_new(const char *base_url, const char *ca_file, const char *token, struct http_client **ret);
void http_client_free(struct http_client *c);

/* The proxy requests go through (from the options or the environment), or "" for none; for
 * messages such as "vault reached through proxy X". A user:password@ part reads ***@. */
const char *http_client_proxy(const struct http_client *c);
const char *http_client_base_url(const struct http_client *c);

/* Sends method path (with query) and an optional JSON body. On a completed exchange returns 0 with
 * the HTTP status and the parsed JSON body (NULL when empty). Transport failures return a negative
 * errno with err naming the hop that failed (libcurl's own text follows):
 *   -EHOSTUNREACH  the proxy's or the server's host name does not resolve
 *   -ECONNREFUSED  "proxy P unreachable", "proxy P refused CONNECT to H:PORT (HTTP N)",
 *                  "server S unreachable"
 *   -ETIMEDOUT     no connection or no answer in time (says which hop)
 *   -EPROTO        TLS handshake or "TLS verification of S failed against CA FILE"
 *   -EFBIG (response too large), -EBADMSG (response not JSON), -ENOMEM or -EIO. */
int http_client_request(struct http_client *c, const char *method, const char *path, json_t *body,
			long *ret_status, json_t **ret_body, char *err, size_t errlen);

/* As http_client_request, with size bytes of raw body (application/octet-stream; body NULL:
 * none) and the extra header lines of fields ("Name: value", NULL-terminated; NULL: none). The
 * answer, whatever its type (a JSON error too), comes back as bytes in secret memory (*ret_data,
 * NUL-terminated after *ret_size bytes, or NULL when empty; secret_free it); one longer than max
 * is -EFBIG. Returns as http_client_request, without -EBADMSG. */
int http_client_request_raw(struct http_client *c, const char *method, const char *path, const void *body,
			    size_t size, const char *const *fields, size_t max, long *ret_status, void **ret_data,
			    size_t *ret_size, char *err, size_t errlen);

/* A header field of the last answer (the first of that name), or NULL; valid until the next
 * request on c. */
const char *http_client_reply_field(struct http_client *c, const char *name);
