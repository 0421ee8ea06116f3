/* HTTPS client for vmcryptd (libcurl); the only file that reads curl's error codes. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
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
};

struct response {
	char *data; /* secret memory: a revealed secret may pass through */
	size_t size, cap;
	bool too_big;
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

int http_client_new(const char *base_url, const char *ca_file, const char *token, struct http_client **ret)
{
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
	if (token) {
		c->token = secret_alloc(strlen(token) + 1);
		if (c->token)
			memcpy(c->token, token, strlen(token));
	}
	if (!c->curl || !c->base_url || (ca_file && !c->ca_file) || (token && !c->token)) {
		http_client_free(c);
		return -ENOMEM;
	}
	/* A trailing slash in the URL would double up with the path. */
	while (strlen(c->base_url) > 8 && c->base_url[strlen(c->base_url) - 1] == '/')
		c->base_url[strlen(c->base_url) - 1] = 0;
	*ret = c;
	return 0;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->base_url);
	free(c->ca_file);
	secret_free(c->token);
	free(c);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct response *r = userdata;
	size_t n = size * nmemb;

	if (r->size + n > HTTP_CLIENT_RESPONSE_MAX) {
		r->too_big = true;
		return 0;
	}
	/* At least 4 KiB at first: most answers fit in one buffer. */
	if (secret_grow(&r->data, &r->cap, r->size, MAX(r->size + n + 1, (size_t)4096)) < 0)
		return 0;
	memcpy(r->data + r->size, ptr, n);
	r->size += n;
	r->data[r->size] = 0;
	return n;
}

int http_client_request(struct http_client *c, const char *method, const char *path, json_t *body,
			long *ret_status, json_t **ret_body, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	_cleanup_free_ char *url = NULL;
	struct response resp = {};
	struct curl_slist *headers = NULL;
	json_error_t jerr;
	char *text = NULL;
	CURLcode rc;
	json_t *j = NULL;
	long status = 0;
	int r = 0;

	if (asprintf(&url, "%s%s", c->base_url, path) < 0)
		return -ENOMEM;
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	if (c->ca_file)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
	if (c->token) {
		curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(c->curl, CURLOPT_XOAUTH2_BEARER, c->token);
	}
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			return -ENOMEM;
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
	}
	headers = curl_slist_append(headers, "Accept: application/json");
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);

	rc = curl_easy_perform(c->curl);
	curl_slist_free_all(headers);
	if (text) {
		json_malloc_t m;
		json_free_t f;

		json_get_alloc_funcs(&m, &f);
		(f ? f : free)(text);
	}
	if (rc != CURLE_OK) {
		r = resp.too_big ? -EFBIG : errno_from_curl(rc);
		snprintf(err, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
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
