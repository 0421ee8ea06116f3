/* The VM's calls to vmcryptd: one request helper that turns HTTP answers into errno values and
 * messages, and one function per VM route. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/api/header-backup.h"
#include "shared/api/http-client.h"
#include "shared/b64.h"
#include "shared/client/vault-client.h"
#include "shared/jansson-util.h"
#include "shared/secret.h"

struct vault_client {
	struct http_client *http; /* with the VM credential, or none */
	struct http_client_options opts;
	char *server, *ca_file, *proxy;
};

int vault_client_errno_from_status(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return -EBUSY;
	case 429:
	case 503:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

int vault_client_new(const struct agent_conf *c, const void *credential, size_t credential_size,
		     long connect_timeout_s, long total_timeout_s, struct vault_client **ret)
{
	_cleanup_secret_ char *token = NULL;
	struct vault_client *vc;
	int r;

	if (!startswith(c->server, "https://"))
		return -EINVAL;
	if (credential && (credential_size == 0 || memchr(credential, 0, credential_size)))
		return -EINVAL;
	vc = calloc(1, sizeof(*vc));
	if (!vc)
		return -ENOMEM;
	vc->server = strdup(c->server);
	vc->ca_file = strdup(c->ca_file);
	vc->proxy = strdup(c->proxy);
	if (!vc->server || !vc->ca_file || !vc->proxy) {
		vault_client_free(vc);
		return -ENOMEM;
	}
	vc->opts = (struct http_client_options){
		.ca_file = vc->ca_file,
		.proxy = vc->proxy,
		.connect_timeout_s = connect_timeout_s > 0 ? connect_timeout_s : VAULT_CLIENT_CONNECT_TIMEOUT,
		.total_timeout_s = total_timeout_s > 0 ? total_timeout_s : VAULT_CLIENT_TOTAL_TIMEOUT,
	};
	if (credential) {
		struct http_client_options o = vc->opts;

		token = secret_alloc(credential_size + 1);
		if (!token) {
			vault_client_free(vc);
			return -ENOMEM;
		}
		memcpy(token, credential, credential_size);
		o.token = token;
		r = http_client_new_with(vc->server, &o, &vc->http);
	} else
		r = http_client_new_with(vc->server, &vc->opts, &vc->http);
	if (r < 0) {
		vault_client_free(vc);
		return r;
	}
	*ret = vc;
	return 0;
}

void vault_client_free(struct vault_client *vc)
{
	if (!vc)
		return;
	http_client_free(vc->http);
	free(vc->server);
	free(vc->ca_file);
	free(vc->proxy);
	free(vc);
}

const char *vault_client_proxy(const struct vault_client *vc)
{
	return http_client_proxy(vc->http);
}

const char *vault_client_server(const struct vault_client *vc)
{
	return vc->server;
}

/* The server's {"error": {"message"}} with hidden characters escaped, or "" */
static void server_message(json_t *body, char *buf, size_t len)
{
	const char *m = json_string_value(json_object_get(json_object_get(body, "error"), "message"));

	string_escape_hidden(m ? m : "", buf, len);
}

/* Takes over resp, vmcryptd's JSON answer with status to method path: returns 0 with it for
 * 2xx, or the status's errno with err saying what vmcryptd said. what names the bearer for
 * 401/403. */
static int answer(struct vault_client *vc, const char *what, const char *method, const char *path, long status,
		  json_t *resp, json_t **ret_body, char *err, size_t errlen)
{
	_cleanup_(jansson_util_decrefp) json_t *j = resp;
	char msg[512];
	int r = vault_client_errno_from_status(status);

	if (r == 0) {
		if (!json_is_object(j)) {
			snprintf(err, errlen, "%s %s: vmcryptd's answer (HTTP %ld) is not a JSON object", method, path,
				 status);
			return -EBADMSG;
		}
		*ret_body = TAKE_PTR(j);
		return 0;
	}
	server_message(j, msg, sizeof(msg));
	if (status == 401 || status == 403)
		snprintf(err, errlen, "vmcryptd %s refused the %s (HTTP %ld%s%s)", vc->server, what, status,
			 msg[0] ? ": " : "", msg);
	else
		snprintf(err, errlen, "vmcryptd %s: %s %s failed (HTTP %ld%s%s)", vc->server, method, path, status,
			 msg[0] ? ": " : "", msg);
	return r;
}

/* One exchange: returns 0 with the body of a 2xx answer, or the errno of the transport failure
 * or the HTTP status, with err saying which. what names the bearer for 401/403 ("VM credential",
 * "enrollment token"). */
static int request(struct vault_client *vc, struct http_client *http, const char *what, const char *method,
		   const char *path, json_t *body, json_t **ret_body, char *err, size_t errlen)
{
	json_t *resp = NULL;
	long status = 0;
	int r;

	r = http_client_request(http, method, path, body, &status, &resp, err, errlen);
	if (r < 0)
		return r;
	return answer(vc, what, method, path, status, resp, ret_body, err, errlen);
}

static int get_u64(json_t *o, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EBADMSG;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

int vault_client_enroll(struct vault_client *vc, const char *enroll_token, const char *hostname,
			const char *agent_version, char *ret_name, size_t name_len, void **ret_credential,
			size_t *ret_size, char *err, size_t errlen)
{
	_cleanup_(jansson_util_decrefp) json_t *body = NULL, *resp = NULL;
	_cleanup_secret_ char *cred = NULL;
	struct http_client_options o = vc->opts;
	struct http_client *http = NULL;
	const char *name, *c;
	int r;

	body = json_pack("{s:s}", "hostname", hostname);
	if (!body || (agent_version && json_object_set_new(body, "agentVersion", json_string(agent_version)) < 0))
		return -ENOMEM;
	o.token = enroll_token;
	r = http_client_new_with(vc->server, &o, &http);
	if (r < 0)
		return r;
	r = request(vc, http, "enrollment token", "POST", "/v1/enroll", body, &resp, err, errlen);
	http_client_free(http);
	if (r < 0)
		return r;
	name = json_string_value(json_object_get(resp, "name"));
	c = json_string_value(json_object_get(resp, "credential"));
	if (!name || !api_name_valid(name) || !c || !*c || strlen(name) >= name_len) {
		snprintf(err, errlen, "vmcryptd %s: the enrollment answer lacks a valid name or credential", vc->server);
		return -EBADMSG;
	}
	cred = secret_alloc(strlen(c) + 1);
	if (!cred)
		return -ENOMEM;
	memcpy(cred, c, strlen(c));
	strcpy(ret_name, name);
	*ret_size = strlen(c);
	*ret_credential = TAKE_PTR(cred);
	return 0;
}

int vault_client_goal(struct vault_client *vc, json_t **ret, char *err, size_t errlen)
{
	json_t *resp = NULL;
	uint64_t seq;
	int r;

	r = request(vc, vc->http, "VM credential", "GET", "/v1/vm/goal", NULL, &resp, err, errlen);
	if (r < 0)
		return r;
	if (get_u64(resp, "sequence", &seq) < 0 || !json_is_object(json_object_get(resp, "settings"))) {
		json_decref(resp);
		snprintf(err, errlen, "vmcryptd %s: the goal lacks \"sequence\" or \"settings\"", vc->server);
		return -EBADMSG;
	}
	*ret = resp;
	return 0;
}

/* "/v1/vm/KIND/VOLUME" for a valid volume name. */
static int volume_path(const char *kind, const char *volume, char *buf, size_t len, char *err, size_t errlen)
{
	if (!api_name_valid(volume)) {
		snprintf(err, errlen, "\"%s\" is not a valid volume name (1 to %d of A-Z a-z 0-9 . _ -)", volume,
			 API_NAME_MAX);
		return -EINVAL;
	}
	snprintf(buf, len, "/v1/vm/%s/%s", kind, volume);
	return 0;
}

int vault_client_secret_put(struct vault_client *vc, const char *volume, const void *value, size_t n,
			    uint64_t *ret_version, char *err, size_t errlen)
{
	_cleanup_(jansson_util_decrefp) json_t *body = NULL, *resp = NULL;
	_cleanup_secret_ char *b64 = NULL;
	char path[128];
	uint64_t version;
	int r;

	r = volume_path("secrets", volume, path, sizeof(path), err, errlen);
	if (r < 0)
		return r;
	if (n == 0 || n > API_SECRET_MAX) {
		snprintf(err, errlen, "a volume secret has 1 to %d bytes, not %zu", API_SECRET_MAX, n);
		return -EINVAL;
	}
	b64 = b64_encode(value, n);
	if (!b64)
		return -ENOMEM;
	body = json_pack("{s:s}", "value", b64);
	if (!body)
		return -ENOMEM;
	r = request(vc, vc->http, "VM credential", "PUT", path, body, &resp, err, errlen);
	if (r < 0)
		return r;
	if (get_u64(resp, "version", &version) < 0) {
		snprintf(err, errlen, "vmcryptd %s: the answer to PUT %s lacks \"version\"", vc->server, path);
		return -EBADMSG;
	}
	*ret_version = version;
	return 0;
}

int vault_client_secret_get(struct vault_client *vc, const char *volume, void **ret_value, size_t *ret_n,
			    uint64_t *ret_version, char *err, size_t errlen)
{
	_cleanup_(jansson_util_decrefp) json_t *resp = NULL;
	_cleanup_secret_ uint8_t *value = NULL;
	char path[128];
	const char *b64;
	uint64_t version;
	size_t n;
	int r;

	r = volume_path("secrets", volume, path, sizeof(path), err, errlen);
	if (r < 0)
		return r;
	r = request(vc, vc->http, "VM credential", "GET", path, NULL, &resp, err, errlen);
	if (r < 0)
		return r;
	b64 = json_string_value(json_object_get(resp, "value"));
	if (!b64 || get_u64(resp, "version", &version) < 0) {
		snprintf(err, errlen, "vmcryptd %s: the answer to GET %s lacks \"value\" or \"version\"", vc->server,
			 path);
		return -EBADMSG;
	}
	r = b64_decode_secret(b64, strlen(b64), &value, &n);
	if (r == -ENOMEM)
		return r;
	if (r < 0 || n > API_SECRET_MAX) {
		snprintf(err, errlen, "vmcryptd %s: the secret in the answer to GET %s is not valid base64 of 1 to "
			 "%d bytes", vc->server, path, API_SECRET_MAX);
		return -EBADMSG;
	}
	*ret_n = n;
	*ret_version = version;
	*ret_value = TAKE_PTR(value);
	return 0;
}

int vault_client_status(struct vault_client *vc, json_t *report, uint64_t *ret_sequence, char *err,
			size_t errlen)
{
	_cleanup_(jansson_util_decrefp) json_t *resp = NULL;
	uint64_t seq;
	int r;

	r = request(vc, vc->http, "VM credential", "POST", "/v1/vm/status", report, &resp, err, errlen);
	if (r < 0)
		return r;
	if (get_u64(resp, "sequence", &seq) < 0) {
		snprintf(err, errlen, "vmcryptd %s: the answer to POST /v1/vm/status lacks \"sequence\"", vc->server);
		return -EBADMSG;
	}
	*ret_sequence = seq;
	return 0;
}

int vault_client_header_put(struct vault_client *vc, const char *volume, const void *data, size_t size,
			    uint64_t *ret_version, bool *ret_unchanged, char *err, size_t errlen)
{
	_cleanup_(jansson_util_decrefp) json_t *resp = NULL;
	json_t *body = NULL;
	char path[128];
	uint64_t version;
	long status = 0;
	int r;

	r = volume_path("headers", volume, path, sizeof(path), err, errlen);
	if (r < 0)
		return r;
	r = header_backup_put(vc->http, path, data, size, &status, &body, err, errlen);
	if (r < 0)
		return r;
	r = answer(vc, "VM credential", "PUT", path, status, body, &resp, err, errlen);
	if (r < 0)
		return r;
	if (get_u64(resp, "version", &version) < 0) {
		snprintf(err, errlen, "vmcryptd %s: the answer to PUT %s lacks \"version\"", vc->server, path);
		return -EBADMSG;
	}
	*ret_version = version;
	if (ret_unchanged)
		*ret_unchanged = json_is_true(json_object_get(resp, "unchanged"));
	return 0;
}

int vault_client_header_get(struct vault_client *vc, const char *volume, uint64_t version, void **ret_data,
			    size_t *ret_size, uint64_t *ret_version, char *err, size_t errlen)
{
	struct header_backup h = {};
	json_t *error = NULL, *ignored = NULL;
	char path[160];
	long status = 0;
	int r;

	r = volume_path("headers", volume, path, sizeof(path), err, errlen);
	if (r < 0)
		return r;
	if (version > 0)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "?version=%llu", (unsigned long long)version);
	r = header_backup_get(vc->http, path, &status, &error, &h, err, errlen);
	if (r < 0)
		return r;
	if (status < 200 || status >= 300) {
		r = answer(vc, "VM credential", "GET", path, status, error, &ignored, err, errlen);
		json_decref(ignored);
		return r < 0 ? r : -EIO;
	}
	*ret_data = TAKE_PTR(h.data);
	*ret_size = h.size;
	*ret_version = h.version;
	return 0;
}
