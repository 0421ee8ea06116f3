/* Authentication of vmcryptd requests. Each route names the one kind of
 * credential it accepts (api.c's table); any other kind is refused, so the admin token never
 * works as a VM credential and a VM credential never reaches an admin route. Refusals are
 * audited with the client's address and weighed by the throttle (throttle.c), which also locks
 * out sources that keep failing. */
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
	}
	return "?";
}

/* Every refusal counts toward its source's lockout, whatever its kind: each one costs an audit
 * row, and a source the throttle let refuse forever could flood the audit trail until the
 * retention drops the real events. guessed_id: the existing token id (a VM id, or "admin") whose
 * secret was wrong, counted for the id too; NULL for refusals that guess no secret (no, malformed,
 * wrong-kind or revoked credential, or an id nobody holds). */
static int deny(struct server *srv, const struct client_addr *src, const struct api_route_def *def,
		const char *object, struct caller *who, const char *actor, struct reply *rep, int error,
		const char *guessed_id, const char *why)
{
	char result[STORE_TEXT_MAX];
	unsigned lockout;

	snprintf(who->actor, sizeof(who->actor), "%s", actor);
	lockout = throttle_failure(srv->throttle, src, guessed_id, why);
	if (lockout > 0)
		snprintf(result, sizeof(result), "denied: %.160s; source locked out for %u s", why, lockout);
	else
		snprintf(result, sizeof(result), "denied: %.200s", why);
	/* A refusal changes nothing: recorded like a read, so a flood of bad tokens cannot force a
	 * disk flush per request. */
	(void)audit_read_event(srv, who, def->action, object, result);
	return reply_error(rep, error, "%s", why);
}

int auth_locked_out(struct server *srv, const struct client_addr *src, struct reply *rep)
{
	unsigned wait = throttle_check(srv->throttle, src);

	if (wait == 0)
		return 0;
	rep->retry_after = wait;
	return reply_error(rep, -EUSERS, "too many failed authentications from %s; retry in %u s",
				src->text[0] ? src->text : "this address", wait);
}

int auth_check(struct server *srv, const struct client_addr *src, const char *authorization,
	       const struct api_route_def *def, const char *object, struct caller *ret, struct reply *rep)
{
	static const enum token_kind wanted[] = {
		[API_AUTH_ENROLL] = TOKEN_ENROLL,
		[API_AUTH_VM] = TOKEN_VM,
		[API_AUTH_ADMIN] = TOKEN_ADMIN,
	};
	static const char *const wanted_text[] = {
		[API_AUTH_ENROLL] = "this route needs an enrollment token (from `vmcrypt-admin vm register`)",
		[API_AUTH_VM] = "this route needs a VM credential (from POST /v1/enroll)",
		[API_AUTH_ADMIN] = "this route needs the admin token",
	};
	uint8_t hash[TOKEN_HASH_SIZE];
	char id[TOKEN_ID_LEN + 1];
	enum token_kind kind;
	struct store_vm vm = {};
	char why[256];
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->kind = def->auth;
	snprintf(ret->source, sizeof(ret->source), "%s", src->text);

	r = token_from_authorization(authorization, &kind, id, hash);
	if (r == -ENOKEY)
		return deny(srv, src, def, object, ret, "anonymous", rep, -ENOKEY, NULL,
			    "missing credential: send \"Authorization: Bearer <token>\"");
	if (r < 0)
		return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, NULL,
			    "malformed credential");
	if (kind != wanted[def->auth]) {
		snprintf(why, sizeof(why), "%s; %s was presented", wanted_text[def->auth], kind_name(kind));
		return deny(srv, src, def, object, ret, "anonymous", rep, -EACCES, NULL, why);
	}

	if (kind == TOKEN_ADMIN) {
		if (!token_hash_equal(hash, srv->admin_hash))
			return deny(srv, src, def, object, ret, "anonymous", rep, -EKEYREJECTED, "admin",
				    "invalid admin token");
		snprintf(ret->actor, sizeof(ret->actor), "admin");
		return 0;
	}

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
