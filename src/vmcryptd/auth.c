/* Authentication and authorization of vmcryptd requests. Each route names who may call it
 * (api.c's table, the one authorization matrix): an enrollment token, a VM credential, or the
 * admin token or a named token whose role is at least the route's. Any other kind is refused, so
 * the admin token never works as a VM credential and a VM credential never reaches an admin
 * route; no route checks a role of its own. Refusals are audited with the client's address and
 * weighed by the throttle (throttle.c), which also locks out sources that keep failing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "vmcryptd.h"

static const char *kind_name(enum token_kind k)
{
	switch (k) {
	case TOKEN_ADMIN:
		return "the admin token";
	case TOKEN_ENROLL:
		return "an enrollment token";
	case TOKEN_VM:
		return "a VM credential";
	case TOKEN_NAMED:
		return "a named token";
	}
	return "?";
}

/* Every refusal counts toward its source's lockout, whatever its kind: each one costs an audit
 * row, and a source the throttle let refuse forever could flood the audit trail until the
 * retention drops the real events. guessed_id: the existing token id (a VM id, or "admin") whose
 * secret was wrong, counted for the id too; NULL for refusals that guess no secret (no, malformed,
 * wrong-kind or revoked credential, or an id nobody holds). */
static int deny_noted(struct server *srv, const struct client_addr *src, const struct api_route_def *def,
		      const char *object, struct caller *who, const char *actor, struct reply *rep, int error,
		      const char *guessed_id, const char *why, const char *note)
{
	char result[STORE_TEXT_MAX];
	unsigned lockout;

	snprintf(who->actor, sizeof(who->actor), "%s", actor);
	lockout = throttle_failure(srv->throttle, src, guessed_id, why);
	stats_auth_failure(def, error, lockout > 0);
	if (lockout > 0)
		snprintf(result, sizeof(result), "denied: %.120s%.60s; source locked out for %u s", why, note, lockout);
	else
		snprintf(result, sizeof(result), "denied: %.160s%.80s", why, note);
	/* A refusal changes nothing: recorded like a read, so a flood of bad tokens cannot force a
	 * disk flush per request. */
	(void)audit_read_event(srv, who, def->action, object, result);
	return reply_error(rep, error, "%s", why);
}

/* note: what the audit event says beyond what the client is told ("" for nothing). */
static int deny(struct server *srv, const struct client_addr *src, const struct api_route_def *def,
		const char *object, struct caller *who, const char *actor, struct reply *rep, int error,
		const char *guessed_id, const char *why)
{
	return deny_noted(srv, src, def, object, who, actor, rep, error, guessed_id, why, "");
}

/* A named token's use is recorded to the minute: a reader polling every few seconds costs no
 * write per request. */
#define TOKEN_TOUCH_INTERVAL 60

/* The named token of id for a route that needs role: 0 with ret->actor "token:NAME", or a
 * refusal. A revoked token fails exactly like a wrong one (401, the same message and throttle
 * weight); only the audit event says it was revoked. */
static int auth_named(struct server *srv, const struct client_addr *src, const struct api_route_def *def,
		      const char *object, const char *id, const uint8_t hash[TOKEN_HASH_SIZE], enum api_role role,
		      const char *raised, struct caller *ret, struct reply *rep)
{
	struct store_token tok = {};
	char why[256], note[96], actor[API_NAME_MAX + 8];
	int64_t now = (int64_t)time(NULL);
	int r;

	r = store_token_get_by_id(srv->store, id, &tok);
	if (r == -ENOENT)
		return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, NULL, "invalid credential");
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	if (!token_hash_equal(hash, tok.hash))
		return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, id, "invalid credential");
	if (tok.revoked) {
		snprintf(note, sizeof(note), " (token '%s', revoked)", tok.name);
		return deny_noted(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, id, "invalid credential",
				  note);
	}
	snprintf(actor, sizeof(actor), "token:%s", tok.name);
	if (tok.role < 0) {
		log_error("Named token '%s' has a role this vmcryptd does not know; revoke it and create another.",
			  tok.name);
		return reply_error(rep, -EIO, "token '%s' has an unknown role in the store", tok.name);
	}
	if (tok.role < role) {
		snprintf(why, sizeof(why), "%s needs the %s role; token '%s' has %s", raised ? raised : "this route",
			 api_role_to_string(role), tok.name, api_role_to_string(tok.role));
		/* A token that exists and was presented whole guessed nothing: its refusal does not
		 * count for its id, only for the source. */
		return deny(srv, src, def, object, ret, actor, rep, -EACCES, NULL, why);
	}
	if (now - tok.last_used >= TOKEN_TOUCH_INTERVAL || now < tok.last_used) {
		r = store_token_touch(srv->store, tok.id, now);
		if (r < 0) /* the request may go on: last_used is information, not a check */
			log_warning_errno(r, "Could not record the use of token '%s': %m", tok.name);
	}
	snprintf(ret->actor, sizeof(ret->actor), "%s", actor);
	snprintf(ret->token, sizeof(ret->token), "%s", tok.name);
	ret->role = tok.role;
	return 0;
}

int auth_locked_out(struct server *srv, const struct client_addr *src, struct reply *rep)
{
	unsigned wait = throttle_check(srv->throttle, src);

	if (wait == 0)
		return 0;
	stats_auth_locked_out();
	rep->retry_after = wait;
	return reply_error(rep, -EUSERS, "too many failed authentications from %s; retry in %u s",
				src->text[0] ? src->text : "this address", wait);
}

int auth_check(struct server *srv, const struct client_addr *src, const char *authorization,
	       const struct api_route_def *def, bool raise, const char *object, struct caller *ret,
	       struct reply *rep)
{
	enum api_auth need = raise && def->raise_arg ? def->raise_auth : def->auth;
	enum api_role role = api_auth_role(need);
	uint8_t hash[TOKEN_HASH_SIZE];
	char id[TOKEN_ID_LEN + 1], raised[64] = "";
	enum token_kind kind;
	struct store_vm vm = {};
	char why[256];
	bool kind_ok;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->kind = need;
	ret->role = _API_ROLE_INVALID;
	snprintf(ret->source, sizeof(ret->source), "%s", src->text);
	if (need != def->auth)
		snprintf(raised, sizeof(raised), "?%s=true", def->raise_arg);

	r = token_from_authorization(authorization, &kind, id, hash);
	if (r == -ENOKEY)
		return deny(srv, src, def, object, ret, "anonymous", rep, -ENOKEY, NULL,
			    "missing credential: send \"Authorization: Bearer <token>\"");
	if (r < 0)
		return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, NULL,
			    "malformed credential");
	switch (need) {
	case API_AUTH_ENROLL:
		kind_ok = kind == TOKEN_ENROLL;
		snprintf(why, sizeof(why), "this route needs an enrollment token (from `vmcrypt-admin vm register`)");
		break;
	case API_AUTH_VM:
		kind_ok = kind == TOKEN_VM;
		snprintf(why, sizeof(why), "this route needs a VM credential (from POST /v1/enroll)");
		break;
	default:
		kind_ok = kind == TOKEN_ADMIN || kind == TOKEN_NAMED;
		snprintf(why, sizeof(why), "%s needs the admin token or a named token with the %s role",
			 raised[0] ? raised : "this route", api_role_to_string(role));
		break;
	}
	if (!kind_ok) {
		size_t n = strlen(why);
		snprintf(why + n, sizeof(why) - n, "; %s was presented", kind_name(kind));
		return deny(srv, src, def, object, ret, "anonymous", rep, -EACCES, NULL, why);
	}

	if (kind == TOKEN_ADMIN) {
		if (!token_hash_equal(hash, srv->admin_hash))
			return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, "admin",
				    "invalid admin token");
		snprintf(ret->actor, sizeof(ret->actor), "admin");
		ret->role = API_ROLE_ADMIN;
		return 0;
	}
	if (kind == TOKEN_NAMED)
		return auth_named(srv, src, def, object, id, hash, role, raised[0] ? raised : NULL, ret, rep);

	r = store_vm_get_by_id(srv->store, id, &vm);
	/* An id nobody holds is counted for the source only: tracking made-up ids would just churn
	 * the id table. */
	if (r == -ENOENT)
		return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, NULL,
			    "invalid credential");
	if (r < 0)
		return reply_error(rep, r, "store unavailable");

	if (kind == TOKEN_ENROLL) {
		/* A used or revoked enrollment token must fail exactly like a wrong one. */
		if (vm.state != STORE_VM_REGISTERED || !token_hash_equal(hash, vm.enroll_hash)) {
			store_vm_done(&vm);
			return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, id,
				    "invalid or already used enrollment token");
		}
	} else {
		char actor[API_NAME_MAX + 8];

		snprintf(actor, sizeof(actor), "vm:%s", vm.name);
		if (vm.state == STORE_VM_REGISTERED || !token_hash_equal(hash, vm.cred_hash)) {
			store_vm_done(&vm);
			return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, id,
				    "invalid credential");
		}
		if (vm.state == STORE_VM_REVOKED) {
			snprintf(why, sizeof(why), "the credential of VM '%s' is revoked", vm.name);
			store_vm_done(&vm);
			return deny(srv, src, def, object, ret, actor, rep, -EKEYREVOKED, NULL, why);
		}
	}
	snprintf(ret->actor, sizeof(ret->actor), "vm:%s", vm.name);
	ret->vm = vm;
	return 0;
}
