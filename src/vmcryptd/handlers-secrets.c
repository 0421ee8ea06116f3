/* The admin routes for volume secrets (metadata; values only with reveal, audited) and the
 * audit trail. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/secret.h"
#include "vmcryptd.h"

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

static const char *query(const struct request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->connection, MHD_GET_ARGUMENT_KIND, key);
}

/* --- secrets and audit --- */

int handler_list_by_vm(struct request *rq, struct reply *rep, const char *key,
		       int (*list)(struct store *s, const char *vm, json_t *array))
{
	const char *vm = query(rq, "vm");
	json_t *a;
	int r;

	if (vm && !api_name_valid(vm))
		return reply_error(rep, -EINVAL, "?vm= must be a VM name");
	a = json_array();
	if (!a)
		return -ENOMEM;
	r = list(rq->srv->store, vm, a);
	if (r < 0) {
		json_decref(a);
		return reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", key, a);
	return rep->body ? 0 : -ENOMEM;
}

static int list_secret_cb(const struct store_secret *sec, void *userdata)
{
	return json_array_append_new(userdata, model_secret(sec)) < 0 ? -ENOMEM : 0;
}

static int list_secrets(struct store *s, const char *vm, json_t *array)
{
	return store_secret_list(s, vm, list_secret_cb, array);
}

int handle_admin_secret_list(struct request *rq, struct reply *rep)
{
	return handler_list_by_vm(rq, rep, "secrets", list_secrets);
}

int handle_admin_secret_show(struct request *rq, struct reply *rep)
{
	struct server *srv = rq->srv;
	const char *reveal_text = query(rq, "reveal"), *version_text = query(rq, "version");
	/* The same test as the route table's raise_arg: a caller who gets here with reveal on was
	 * authorized for it (auth_check()). */
	bool reveal = api_flag_true(reveal_text);
	_cleanup_secret_ void *value = NULL;
	struct store_secret sec = {};
	uint64_t version = 0;
	size_t size;
	int r;

	if (version_text && (parse_u64(version_text, &version) < 0 || version > UINT32_MAX))
		return reply_error(rep, -EINVAL, "?version= must be a number");
	r = store_secret_get(srv->store, rq->api->vm, rq->api->volume, (uint32_t)version, &sec);
	if (r == -ENOENT)
		return reply_error(rep, r, "no secret %s/%s; see `vmcrypt-admin secret list`", rq->api->vm, rq->api->volume);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	if (!reveal) {
		rep->body = model_secret(&sec);
		store_secret_done(&sec);
		return rep->body ? 0 : -ENOMEM;
	}
	r = handler_secret_open(srv, &sec, rep, &value, &size);
	if (r < 0) {
		(void)audit_read_event(srv, rq->who, "secret.reveal", rq->object, "failed");
		store_secret_done(&sec);
		return r;
	}
	r = audit_read_event(srv, rq->who, "secret.reveal", rq->object, "ok");
	if (r >= 0)
		r = handler_secret_reply(&sec, value, size, rep);
	else
		reply_error(rep, r, "could not record the reveal");
	if (r >= 0)
		stats_secret(STATS_SECRET_REVEAL);
	store_secret_done(&sec);
	return r;
}

static int list_audit_cb(const struct store_audit *e, void *userdata)
{
	return json_array_append_new(userdata, model_audit(e)) < 0 ? -ENOMEM : 0;
}

int handle_admin_audit(struct request *rq, struct reply *rep)
{
	const char *vm = query(rq, "vm"), *since_text = query(rq, "since"), *result_text = query(rq, "result");
	enum api_audit_result result = API_AUDIT_ANY;
	char prefix[API_NAME_MAX + 4];
	int64_t since = 0;
	json_t *a;
	int r;

	if (vm && !api_name_valid(vm))
		return reply_error(rep, -EINVAL, "?vm= must be a VM name");
	if (since_text && api_parse_time(since_text, now(), &since) < 0)
		return reply_error(rep, -EINVAL, "?since= must be a time like 2026-11-29T10:00:00Z or an age like 30m, 2h, 1d");
	if (result_text && (result = api_audit_result_from_string(result_text)) < 0)
		return reply_error(rep, -EINVAL, "?result= must be ok, denied (any result but ok) or any");
	if (vm)
		snprintf(prefix, sizeof(prefix), "vm/%s", vm);
	a = json_array();
	if (!a)
		return -ENOMEM;
	r = store_audit_list(rq->srv->store, vm ? prefix : NULL, since, result, list_audit_cb, a);
	if (r < 0) {
		json_decref(a);
		return reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "events", a);
	return rep->body ? 0 : -ENOMEM;
}
