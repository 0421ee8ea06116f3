/* The admin routes for named tokens (docs/vmcryptd.md "Roles"): create one with a role, whose
 * text is answered once and stored only as its hash; list them; revoke one, which then fails
 * like a wrong token. Each change commits with its audit event. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "shared/secret.h"
#include "vmcryptd.h"

struct token_txn {
	struct request *rq;
	struct store_token token;
	const char *name;
	char message[256];
};

static int token_audit(struct store *s, struct token_txn *t, const char *action, const char *result)
{
	struct store_audit e;

	audit_fill(&e, t->rq->who, action, t->rq->object, result);
	return store_audit_append(s, &e);
}

static int create_txn(struct store *s, void *userdata)
{
	struct token_txn *t = userdata;
	char result[64];
	int r;

	r = store_token_insert(s, &t->token);
	if (r == -EEXIST) {
		/* A revoked token keeps its name: the audit trail's "token:NAME" means one token. */
		snprintf(t->message, sizeof(t->message),
			 "a token named '%s' exists (revoked ones too keep their names); choose another name, see "
			 "`vmcrypt-admin token list`",
			 t->name);
		return r;
	}
	if (r < 0)
		return r;
	snprintf(result, sizeof(result), "ok: role %s", api_role_to_string(t->token.role));
	return token_audit(s, t, "token.create", result);
}

int handle_admin_token_create(struct request *rq, struct reply *rep)
{
	_cleanup_secret_ char *text = NULL;
	struct token_txn t = { .rq = rq };
	char when[32];
	int r;

	t.name = json_string_value(json_object_get(rq->api->body, "name"));
	snprintf(rq->object, sizeof(rq->object), "token/%s", t.name);
	snprintf(t.token.name, sizeof(t.token.name), "%s", t.name);
	t.token.role = api_role_from_string(json_string_value(json_object_get(rq->api->body, "role")));
	t.token.created = (int64_t)time(NULL);
	r = token_id_generate(t.token.id);
	if (r >= 0)
		r = token_generate(TOKEN_NAMED, t.token.id, &text, t.token.hash);
	if (r < 0)
		return reply_error(rep, r, "could not generate a token");
	r = store_transaction(rq->srv->store, create_txn, &t);
	if (r < 0)
		return reply_error(rep, r, "%s", t.message[0] ? t.message : "the token could not be stored");
	log_info("Token '%s' with role %s created by %s.", t.name, api_role_to_string(t.token.role), rq->who->actor);
	rep->status = MHD_HTTP_CREATED;
	rep->body = json_pack("{s:s,s:s,s:s,s:s}", "name", t.name, "role", api_role_to_string(t.token.role), "created",
			      api_format_time(t.token.created, when, sizeof(when)), "token", text);
	return rep->body ? 0 : -ENOMEM;
}

static int list_token_cb(const struct store_token *t, void *userdata)
{
	return json_array_append_new(userdata, model_token(t)) < 0 ? -ENOMEM : 0;
}

int handle_admin_token_list(struct request *rq, struct reply *rep)
{
	json_t *a = json_array();
	int r;

	if (!a)
		return -ENOMEM;
	r = store_token_list(rq->srv->store, list_token_cb, a);
	if (r < 0) {
		json_decref(a);
		return reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "tokens", a);
	return rep->body ? 0 : -ENOMEM;
}

static int revoke_txn(struct store *s, void *userdata)
{
	struct token_txn *t = userdata;
	int r;

	r = store_token_revoke(s, t->name, t->token.revoked);
	if (r == -ENOENT)
		snprintf(t->message, sizeof(t->message), "no token named '%s'; see `vmcrypt-admin token list`", t->name);
	else if (r == -EALREADY)
		snprintf(t->message, sizeof(t->message), "token '%s' is already revoked", t->name);
	if (r < 0)
		return r;
	return token_audit(s, t, "token.revoke", "ok");
}

int handle_admin_token_revoke(struct request *rq, struct reply *rep)
{
	struct token_txn t = { .rq = rq, .name = rq->api->token };
	char when[32];
	int r;

	t.token.revoked = (int64_t)time(NULL);
	r = store_transaction(rq->srv->store, revoke_txn, &t);
	if (r < 0)
		return reply_error(rep, r, "%s", t.message[0] ? t.message : "the revocation could not be stored");
	log_info("Token '%s' revoked by %s.", t.name, rq->who->actor);
	rep->body = json_pack("{s:s,s:s}", "name", t.name, "revoked",
			      api_format_time(t.token.revoked, when, sizeof(when)));
	return rep->body ? 0 : -ENOMEM;
}
