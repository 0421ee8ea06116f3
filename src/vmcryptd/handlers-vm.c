/* The VM-facing routes: enroll, goal, volume secrets, status reports. Every change re-reads the
 * VM inside its transaction, so a concurrent revoke or delete is never overwritten. */
#include <errno.h>
#include <stdio.h>
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

struct enroll_txn {
	const char *id;
	const uint8_t *enroll_hash;
	const uint8_t *cred_hash;
	const char *hostname;
	const char *agent_version;
	const struct caller *who;
	const char *object;
};

static int enroll_txn_run(struct store *s, void *userdata)
{
	struct enroll_txn *t = userdata;
	struct store_vm vm = {};
	struct store_audit e;
	int r;

	r = store_vm_get_by_id(s, t->id, &vm);
	if (r < 0)
		return r;
	/* Two enrollments racing with the same token: only the first one wins. */
	if (vm.state != STORE_VM_REGISTERED || !token_hash_equal(vm.enroll_hash, t->enroll_hash)) {
		store_vm_done(&vm);
		return -EKEYREJECTED;
	}
	vm.state = STORE_VM_ENROLLED;
	memset(vm.enroll_hash, 0, sizeof(vm.enroll_hash));
	memcpy(vm.cred_hash, t->cred_hash, TOKEN_HASH_SIZE);
	snprintf(vm.hostname, sizeof(vm.hostname), "%s", t->hostname);
	snprintf(vm.agent_version, sizeof(vm.agent_version), "%s", t->agent_version ? t->agent_version : "");
	vm.enrolled = now();
	r = store_vm_update(s, &vm);
	store_vm_done(&vm);
	if (r < 0)
		return r;
	audit_fill(&e, t->who, "vm.enroll", t->object, "ok");
	return store_audit_append(s, &e);
}

int handle_enroll(struct request *rq, struct reply *rep)
{
	_cleanup_secret_ char *credential = NULL;
	uint8_t cred_hash[TOKEN_HASH_SIZE];
	struct store_vm *vm = &rq->who->vm;
	struct enroll_txn t;
	int r;

	r = token_generate(TOKEN_VM, vm->id, &credential, cred_hash);
	if (r < 0)
		return reply_error(rep, r, "could not generate a credential");
	t = (struct enroll_txn){
		.id = vm->id,
		.enroll_hash = vm->enroll_hash,
		.cred_hash = cred_hash,
		.hostname = json_string_value(json_object_get(rq->api->body, "hostname")),
		.agent_version = json_string_value(json_object_get(rq->api->body, "agentVersion")),
		.who = rq->who,
		.object = rq->object,
	};
	r = store_transaction(rq->srv->store, enroll_txn_run, &t);
	if (r == -EKEYREJECTED || r == -ENOENT)
		return reply_error(rep, -EKEYREJECTED, "invalid or already used enrollment token");
	if (r < 0)
		return reply_error(rep, r, "could not record the enrollment");
	log_info("VM '%s' enrolled from host '%s'.", vm->name, t.hostname);
	rep->body = json_pack("{s:s,s:s,s:s}", "name", vm->name, "id", vm->id, "credential", credential);
	return rep->body ? 0 : -ENOMEM;
}

int handle_vm_goal(struct request *rq, struct reply *rep)
{
	struct store_settings st = {};
	int r;

	r = store_settings_get(rq->srv->store, rq->who->vm.name, &st);
	if (r == -ENOENT)
		return reply_error(rep, r, "no settings for VM '%s'", rq->who->vm.name);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	rep->body = json_pack("{s:s,s:I,s:s,s:o}", "name", rq->who->vm.name, "sequence", (json_int_t)st.sequence,
			      "extension", rq->who->vm.extension_removed ? "removed" : "installed", "settings",
			      model_settings(&st, rq->who->vm.extension_removed));
	return rep->body ? 0 : -ENOMEM;
}

struct secret_txn {
	struct store_secret secret;
	uint32_t version;
	struct store_audit event;
};

static int secret_put_txn_run(struct store *s, void *userdata)
{
	struct secret_txn *t = userdata;
	char result[64];
	int r;

	r = store_secret_insert(s, &t->secret, &t->version);
	if (r < 0)
		return r;
	snprintf(result, sizeof(result), "ok: version %u", t->version);
	snprintf(t->event.result, sizeof(t->event.result), "%s", result);
	return store_audit_append(s, &t->event);
}

int handle_vm_secret_put(struct request *rq, struct reply *rep)
{
	struct server *srv = rq->srv;
	const char *vmname = rq->who->vm.name, *volume = rq->api->volume;
	const char *b64 = json_string_value(json_object_get(rq->api->body, "value"));
	const char *file_name = json_string_value(json_object_get(rq->api->body, "fileName"));
	_cleanup_secret_ uint8_t *value = NULL;
	struct store_settings st = {};
	struct secret_txn t = {};
	struct envelope env = {};
	char context[2 * API_NAME_MAX + 16];
	size_t size;
	int r;

	r = b64_decode_secret(b64, strlen(b64), &value, &size);
	if (r < 0)
		return reply_error(rep, -EINVAL, "body: field \"value\" must be non-empty base64 (RFC 4648, padded)");
	if (size > API_SECRET_MAX)
		return reply_error(rep, -EINVAL, "body: the secret is larger than %d bytes", API_SECRET_MAX);

	r = store_settings_get(srv->store, vmname, &st);
	if (r < 0 && r != -ENOENT)
		return reply_error(rep, r, "store unavailable");

	snprintf(context, sizeof(context), "secret:%s:%s", vmname, volume);
	r = envelope_seal(srv, &st, "secret", context, value, size, &env, rep);
	if (r == -EKEYEXPIRED)
		(void)audit_event(srv, rq->who, "secret.write", rq->object, "denied: KEK disabled or missing");
	if (r < 0)
		return r;

	snprintf(t.secret.vm, sizeof(t.secret.vm), "%s", vmname);
	snprintf(t.secret.volume, sizeof(t.secret.volume), "%s", volume);
	snprintf(t.secret.file_name, sizeof(t.secret.file_name), "%s", file_name ? file_name : "");
	snprintf(t.secret.content_type, sizeof(t.secret.content_type), "%s", env.kek[0] ? "Wrapped BEK" : "BEK");
	snprintf(t.secret.kek, sizeof(t.secret.kek), "%s", env.kek);
	snprintf(t.secret.kek_algorithm, sizeof(t.secret.kek_algorithm), "%s", env.kek_algorithm);
	t.secret.kek_version = env.kek_version;
	t.secret.created = now();
	t.secret.sealed = env.sealed;
	t.secret.sealed_size = env.sealed_size;
	audit_fill(&t.event, rq->who, "secret.write", rq->object, "ok");

	r = store_transaction(srv->store, secret_put_txn_run, &t);
	envelope_done(&env);
	t.secret.sealed = NULL;
	if (r < 0)
		return reply_error(rep, r, "could not store the secret");
	stats_secret(STATS_SECRET_WRITE);
	t.secret.version = t.version;
	rep->status = MHD_HTTP_CREATED;
	rep->body = model_secret(&t.secret);
	return rep->body ? 0 : -ENOMEM;
}

int handler_secret_open(struct server *srv, const struct store_secret *sec, struct reply *rep, void **ret, size_t *ret_size)
{
	char context[2 * API_NAME_MAX + 16], label[2 * API_NAME_MAX + 32];

	snprintf(context, sizeof(context), "secret:%s:%s", sec->vm, sec->volume);
	snprintf(label, sizeof(label), "%s/%s version %u", sec->vm, sec->volume, sec->version);
	return envelope_open(srv, "secret", label, context, sec->sealed, sec->sealed_size, sec->kek, sec->kek_version,
			     sec->kek_algorithm, ret, ret_size, rep);
}

int handler_secret_reply(struct store_secret *sec, const void *value, size_t size, struct reply *rep)
{
	_cleanup_secret_ char *b64 = b64_encode(value, size);

	if (!b64)
		return -ENOMEM;
	rep->body = model_secret(sec);
	if (!rep->body)
		return -ENOMEM;
	json_object_set_new(rep->body, "value", json_string(b64));
	return 0;
}

int handle_vm_secret_get(struct request *rq, struct reply *rep)
{
	struct server *srv = rq->srv;
	_cleanup_secret_ void *value = NULL;
	struct store_secret sec = {};
	size_t size;
	int r;

	r = store_secret_get(srv->store, rq->who->vm.name, rq->api->volume, 0, &sec);
	if (r == -ENOENT) {
		(void)audit_read_event(srv, rq->who, "secret.read", rq->object, "not found");
		return reply_error(rep, r, "VM '%s' has no secret for volume '%s'", rq->who->vm.name, rq->api->volume);
	}
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	r = handler_secret_open(srv, &sec, rep, &value, &size);
	if (r < 0) {
		(void)audit_read_event(srv, rq->who, "secret.read", rq->object, "failed");
		store_secret_done(&sec);
		return r;
	}
	/* The read is on record before the value leaves. */
	r = audit_read_event(srv, rq->who, "secret.read", rq->object, "ok");
	if (r < 0) {
		store_secret_done(&sec);
		return reply_error(rep, r, "could not record the read");
	}
	r = handler_secret_reply(&sec, value, size, rep);
	store_secret_done(&sec);
	if (r >= 0)
		stats_secret(STATS_SECRET_READ);
	return r;
}

struct status_txn {
	const char *id;
	char *report;
	const char *agent_version;
	int64_t time;
	uint64_t sequence;
};

static int status_txn_run(struct store *s, void *userdata)
{
	struct status_txn *t = userdata;
	struct store_settings st = {};
	struct store_vm vm = {};
	char *old;
	int r;

	r = store_vm_get_by_id(s, t->id, &vm);
	if (r < 0)
		return r;
	if (vm.state != STORE_VM_ENROLLED) {
		store_vm_done(&vm);
		return -EKEYREVOKED;
	}
	old = vm.last_report;
	vm.last_report = t->report;
	vm.last_report_time = t->time;
	if (t->agent_version)
		snprintf(vm.agent_version, sizeof(vm.agent_version), "%s", t->agent_version);
	r = store_vm_update(s, &vm);
	vm.last_report = old;
	if (r >= 0 && store_settings_get(s, vm.name, &st) >= 0)
		t->sequence = st.sequence;
	store_vm_done(&vm);
	return r;
}

int handle_vm_status(struct request *rq, struct reply *rep)
{
	struct status_txn t = {
		.id = rq->who->vm.id,
		.agent_version = json_string_value(json_object_get(rq->api->body, "AgentVersion")),
		.time = now(),
	};
	int r;

	t.report = json_dumps(rq->api->body, JSON_COMPACT | JSON_SORT_KEYS);
	if (!t.report)
		return -ENOMEM;
	r = store_transaction(rq->srv->store, status_txn_run, &t);
	model_text_free(t.report);
	if (r == -EKEYREVOKED || r == -ENOENT)
		return reply_error(rep, -EKEYREVOKED, "the credential of VM '%s' is revoked", rq->who->vm.name);
	if (r < 0)
		return reply_error(rep, r, "could not record the report");
	rep->body = json_pack("{s:b,s:I}", "accepted", 1, "sequence", (json_int_t)t.sequence);
	return rep->body ? 0 : -ENOMEM;
}
