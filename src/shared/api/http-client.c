/* HTTPS client for vmcryptd (libcurl); the only file that reads curl's error codes. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/api/http-client.h"
#include "shared/secret.h"

struct http_client {
	CURL *curl;
	char *base_url;
	char *ca_file;
	char *token; /* secret memory */
	char *proxy; /* NULL: libcurl reads the environment; "none": no proxy */
	char *proxy_shown; /* the proxy in effect, for messages, without user:password@; "" for none */
	long connect_timeout_s, total_timeout_s;
};

struct response {
	char *data; /* secret memory: a revealed secret may pass through */
	size_t size, cap;
	size_t max; /* the most accepted */
	bool too_big;
	CURL *curl; /* for the announced length */
};

static pthread_once_t http_client_once = PTHREAD_ONCE_INIT;
static void http_client_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int errno_from_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return -EPROTO;
	case CURLE_WRITE_ERROR:
		return -EFBIG;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* The proxy libcurl takes from the environment for an https:// URL (lib/url.c: https_proxy, then
 * HTTPS_PROXY, then all_proxy and ALL_PROXY), so that messages can name it. $no_proxy may still
 * exempt the server; libcurl's own error text then names what it really connected to. */
static const char *proxy_from_env(void)
{
	static const char *const names[] = { "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" };

	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		const char *v = getenv(names[i]);
		if (v && *v)
			return v;
	}
	return "";
}

/* A proxy URL for messages: its user:password part before '@' becomes three asterisks, since the
 * proxy's password must not reach a log or `vmcrypt check --json`. Returns a malloc'd string. */
static char *proxy_redact(const char *url)
{
	const char *scheme = strstr(url, "://"), *start = scheme ? scheme + 3 : url;
	const char *end = start + strcspn(start, "/?#"), *at = NULL;
	char *out;

	for (const char *p = start; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return strdup(url);
	if (asprintf(&out, "%.*s***%s", (int)(start - url), url, at) < 0)
		return NULL;
	return out;
}

int http_client_new_with(const char *base_url, const struct http_client_options *o, struct http_client **ret)
{
	const char *token = o->token, *ca_file = o->ca_file && *o->ca_file ? o->ca_file : NULL;
	const char *proxy = o->proxy && *o->proxy ? o->proxy : NULL;
	struct http_client *c;

	if (!startswith(base_url, "https://"))
		return -EINVAL;
	pthread_once(&http_client_once, http_client_init_once);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->curl = curl_easy_init();
	c->base_url = strdup(base_url);
	c->ca_file = ca_file ? strdup(ca_file) : NULL;
	c->proxy = proxy ? strdup(proxy) : NULL;
	c->proxy_shown = proxy_redact(!proxy ? proxy_from_env() : streq(proxy, HTTP_CLIENT_PROXY_NONE) ? "" : proxy);
	c->connect_timeout_s = o->connect_timeout_s > 0 ? o->connect_timeout_s : HTTP_CLIENT_CONNECT_TIMEOUT_DEFAULT;
	c->total_timeout_s = o->total_timeout_s > 0 ? o->total_timeout_s : HTTP_CLIENT_TOTAL_TIMEOUT_DEFAULT;
	if (token) {
		c->token = secret_alloc(strlen(token) + 1);
		if (c->token)
			memcpy(c->token, token, strlen(token));
	}
	if (!c->curl || !c->base_url || (ca_file && !c->ca_file) || (token && !c->token) ||
	    (proxy && !c->proxy) || !c->proxy_shown) {
		http_client_free(c);
		return -ENOMEM;
	}
	/* A trailing slash in the URL would double up with the path. */
	while (strlen(c->base_url) > 8 && c->base_url[strlen(c->base_url) - 1] == '/')
		c->base_url[strlen(c->base_url) - 1] = 0;
	*ret = c;
	return 0;
}

int http_client_new(const char *base_url, const char *ca_file, const char *token, struct http_client **ret)
{
	return http_client_new_with(base_url, &(struct http_client_options){ .ca_file = ca_file, .token = token },
				    ret);
}

const char *http_client_proxy(const struct http_client *c)
{
	return c->proxy_shown;
}

const char *http_client_base_url(const struct http_client *c)
{
	return c->base_url;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->base_url);
	free(c->ca_file);
	free(c->proxy);
	free(c->proxy_shown);
	secret_free(c->token);
	free(c);
}

/* The host:port of the base URL, for "proxy P refused CONNECT to H:PORT". */
static void server_authority(const struct http_client *c, char *buf, size_t len)
{
	const char *a = c->base_url + strlen("https://");

	snprintf(buf, len, "%.*s", (int)strcspn(a, "/"), a);
}

/* Tells the hops apart after a failed transfer: libcurl's code says what failed, the CONNECT
 * status (CURLINFO_HTTP_CONNECTCODE) whether the proxy answered the tunnel request, and the count
 * of new connections (CURLINFO_NUM_CONNECTS; libcurl 7.88 sets the connect time only once the
 * tunnel is up) whether the first hop, the proxy when there is one, was reached at all. */
static int transport_error(struct http_client *c, CURLcode rc, const char *why, char *err, size_t errlen)
{
	const char *proxy = c->proxy_shown, *ca = c->ca_file ? c->ca_file : NULL;
	long connects = 0;
	char server[256];
	long connect_code = 0;
	int r = errno_from_curl(rc);

	server_authority(c, server, sizeof(server));
	curl_easy_getinfo(c->curl, CURLINFO_HTTP_CONNECTCODE, &connect_code);
	curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &connects);

	if (rc == CURLE_COULDNT_RESOLVE_PROXY) {
		snprintf(err, errlen, "proxy %s unreachable: its host name does not resolve (%s)", proxy, why);
		return -EHOSTUNREACH;
	}
	if (*proxy && connect_code >= 300) {
		snprintf(err, errlen, "proxy %s refused CONNECT to %s (HTTP %ld): the proxy could not reach "
			 "the server or does not allow it (%s)", proxy, server, connect_code, why);
		return -ECONNREFUSED;
	}
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		if (*proxy && connect_code == 0)
			snprintf(err, errlen, "proxy %s unreachable (%s)", proxy, why);
		else
			snprintf(err, errlen, "server %s unreachable (%s)", server, why);
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(err, errlen, "server %s unreachable: its host name does not resolve (%s)", server, why);
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		if (*proxy && connects == 0)
			snprintf(err, errlen, "proxy %s unreachable: no connection within %ld s (%s)", proxy,
				 c->connect_timeout_s, why);
		else if (*proxy && connect_code == 0)
			snprintf(err, errlen, "proxy %s did not open a tunnel to %s in time (%s)", proxy, server, why);
		else if (connects == 0)
			snprintf(err, errlen, "server %s unreachable: no connection within %ld s (%s)", server,
				 c->connect_timeout_s, why);
		else
			snprintf(err, errlen, "server %s did not answer within %ld s (%s)", server, c->total_timeout_s,
				 why);
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
		snprintf(err, errlen, "TLS verification of server %s failed against %s%s (%s)", server,
			 ca ? "CA " : "the system CA store", ca ? ca : "", why);
		return r;
	case CURLE_SSL_CACERT_BADFILE:
		snprintf(err, errlen, "TLS: CA file %s cannot be read or holds no certificate (%s)", ca ? ca : "(system)",
			 why);
		return r;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
		snprintf(err, errlen, "TLS handshake with server %s failed (%s)", server, why);
		return r;
	default:
		if (*proxy && connect_code == 0)
			snprintf(err, errlen, "request to %s through proxy %s failed (%s)", server, proxy, why);
		else
			snprintf(err, errlen, "request to server %s failed (%s)", server, why);
		return r;
	}
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct response *r = userdata;
	size_t n = size * nmemb;

	if (r->size + n > r->max) {
		r->too_big = true;
		return 0;
	}
	/* An announced length within the cap sizes the buffer once (a header backup is 16 MiB);
	 * else at least 4 KiB at first: most answers fit in one buffer. */
	if (!r->data) {
		curl_off_t announced = -1;

		if (curl_easy_getinfo(r->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
		    announced > 0 && (uint64_t)announced <= r->max)
			r->cap = (size_t)announced + 1;
	}
	if (secret_grow(&r->data, &r->cap, r->size, MAX(r->size + n + 1, (size_t)4096)) < 0)
		return 0;
	memcpy(r->data + r->size, ptr, n);
	r->size += n;
	r->data[r->size] = 0;
	return n;
}

/* One exchange: method path, with size bytes of body as content_type (body NULL: none) and the
 * extra header lines of fields (NULL-terminated, or NULL); the answer, at most max bytes, into
 * *resp (secret memory). Returns 0 with the HTTP status, or a transport failure's -errno (see
 * http_client_request). */
static int perform(struct http_client *c, const char *method, const char *path, const void *body, size_t size,
		   const char *content_type, const char *accept, const char *const *fields, size_t max,
		   long *ret_status, struct response *resp, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	_cleanup_free_ char *url = NULL;
	struct curl_slist *headers = NULL;
	CURLcode rc;
	int r = 0;

	if (asprintf(&url, "%s%s", c->base_url, path) < 0)
		return -ENOMEM;
	*resp = (struct response){ .max = max, .curl = c->curl };
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->total_timeout_s);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	if (c->ca_file)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
	if (c->proxy && streq(c->proxy, HTTP_CLIENT_PROXY_NONE)) {
		curl_easy_setopt(c->curl, CURLOPT_PROXY, "");
		curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*");
	} else if (c->proxy)
		curl_easy_setopt(c->curl, CURLOPT_PROXY, c->proxy);
	if (c->token) {
		curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(c->curl, CURLOPT_XOAUTH2_BEARER, c->token);
	}
	if (body) {
		char type[96];

		snprintf(type, sizeof(type), "Content-Type: %s", content_type);
		headers = curl_slist_append(headers, type);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
	}
	for (size_t i = 0; fields && fields[i]; i++)
		headers = curl_slist_append(headers, fields[i]);
	{
		char line[96];

		snprintf(line, sizeof(line), "Accept: %s", accept);
		headers = curl_slist_append(headers, line);
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);

	rc = curl_easy_perform(c->curl);
	curl_slist_free_all(headers);
	if (rc != CURLE_OK) {
		r = resp->too_big ? -EFBIG : transport_error(c, rc, errbuf[0] ? errbuf : curl_easy_strerror(rc), err, errlen);
		if (resp->too_big)
			snprintf(err, errlen, "the server's response is larger than %zu MiB", max >> 20);
		secret_free(resp->data);
		resp->data = NULL;
		return r;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, ret_status);
	return 0;
}

int http_client_request(struct http_client *c, const char *method, const char *path, json_t *body,
			long *ret_status, json_t **ret_body, char *err, size_t errlen)
{
	struct response resp = {};
	json_error_t jerr;
	char *text = NULL;
	json_t *j = NULL;
	long status = 0;
	int r;

	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			return -ENOMEM;
	}
	r = perform(c, method, path, text, text ? strlen(text) : 0, "application/json", "application/json", NULL,
		    HTTP_CLIENT_RESPONSE_MAX, &status, &resp, err, errlen);
	if (text) {
		json_malloc_t m;
		json_free_t f;

		json_get_alloc_funcs(&m, &f);
		(f ? f : free)(text);
	}
	if (r < 0)
		return r;
	if (resp.size > 0) {
		j = json_loadb(resp.data, resp.size, 0, &jerr);
		if (!j) {
			snprintf(err, errlen, "the server's response (HTTP %ld) is not JSON: %s", status, jerr.text);
			r = -EBADMSG;
			goto out;
		}
	}
	*ret_status = status;
	*ret_body = j;
out:
	secret_free(resp.data);
	return r;
}

int http_client_request_raw(struct http_client *c, const char *method, const char *path, const void *body,
			    size_t size, const char *const *fields, size_t max, long *ret_status, void **ret_data,
			    size_t *ret_size, char *err, size_t errlen)
{
	struct response resp = {};
	long status = 0;
	int r;

	r = perform(c, method, path, body, size, "application/octet-stream", "application/octet-stream, application/json",
		    fields, max, &status, &resp, err, errlen);
	if (r < 0)
		return r;
	*ret_status = status;
	*ret_data = resp.data;
	*ret_size = resp.size;
	return 0;
}

const char *http_client_reply_field(struct http_client *c, const char *name)
{
	struct curl_header *h = NULL;

	if (curl_easy_header(c->curl, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
		return NULL;
	return h->value;
}
