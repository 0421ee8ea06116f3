/* The admin routes: VM registry, encryption settings and their lifecycle rules, the extension,
 * keys, secrets and the audit trail. Rule checks and changes run in one store transaction; a
 * refusal carries a message naming the VM and the next command to run. */
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

static const char *body_string(const struct request *rq, const char *field)
{
	return json_string_value(json_object_get(rq->api->body, field));
}

static const char *query(const struct request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->connection, MHD_GET_ARGUMENT_KIND, key);
}

/* Shared by the transactions below: what they were asked, and the refusal they explain. */
struct admin_txn {
	struct request *rq;
	const char *vm;
	unsigned want;
	const char *kek;
	const char *alg;
	bool format_all;
	struct store_vm *new_vm;
	struct store_settings settings; /* out: settings after the change */
	char audit_detail[160];
	char message[512];
};

static int txn_audit(struct store *s, struct admin_txn *t, const char *action)
{
	struct store_audit e;
	char result[STORE_TEXT_MAX];

	snprintf(result, sizeof(result), "ok%s%s", t->audit_detail[0] ? ": " : "", t->audit_detail);
	audit_fill(&e, t->rq->who->actor, action, t->rq->object, result);
	return store_audit_append(s, &e);
}

static int refuse(struct admin_txn *t, int error, const char *fmt, ...) _printf_(3, 4);
static int refuse(struct admin_txn *t, int error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->message, sizeof(t->message), fmt, ap);
	va_end(ap);
	return error;
}

static int load_vm(struct store *s, struct admin_txn *t, struct store_vm *vm)
{
	int r = store_vm_get(s, t->vm, vm);
	if (r == -ENOENT)
		return refuse(t, r, "no VM named '%s'; see `vmcrypt-admin vm list`", t->vm);
	return r;
}

static int load_settings(struct store *s, const char *vm, struct store_settings *st)
{
	int r = store_settings_get(s, vm, st);
	if (r == -ENOENT) {
		memset(st, 0, sizeof(*st));
		snprintf(st->vm, sizeof(st->vm), "%s", vm);
		return 0;
	}
	return r;
}

/* Runs a transaction and turns its result into the reply. */
static int run_admin_txn(struct request *rq, struct reply *rep, store_txn_fn fn, struct admin_txn *t)
{
	int r = store_transaction(rq->srv->store, fn, t);

	if (r < 0) {
		if (t->message[0])
			return http_reply_error(rep, r, "%s", t->message);
		return http_reply_error(rep, r, "the change could not be stored");
	}
	return 0;
}

/* --- VMs --- */

static int register_txn(struct store *s, void *userdata)
{
	struct admin_txn *t = userdata;
	struct store_settings st = {};
	int r;

	r = store_vm_insert(s, t->new_vm);
	if (r == -EEXIST)
		return refuse(t, r,
			      "VM '%s' is already registered; to enroll it again run `vmcrypt-admin vm revoke %s` and "
			      "`vmcrypt-admin vm delete %s` first",
			      t->vm, t->vm, t->vm);
	if (r < 0)
		return r;
	snprintf(st.vm, sizeof(st.vm), "%s", t->vm);
	st.updated = t->new_vm->created;
	r = store_settings_put(s, &st);
	if (r < 0)
		return r;
	return txn_audit(s, t, "vm.register");
}

int handle_admin_vm_register(struct request *rq, struct reply *rep)
{
	_cleanup_secret_ char *token = NULL;
	struct store_vm vm = {};
	struct admin_txn t = { .rq = rq, .new_vm = &vm };
	int r;

	t.vm = body_string(rq, "name");
	snprintf(rq->object, sizeof(rq->object), "vm/%s", t.vm);
	snprintf(vm.name, sizeof(vm.name), "%s", t.vm);
	r = token_id_generate(vm.id);
	if (r >= 0)
		r = token_generate(TOKEN_ENROLL, vm.id, &token, vm.enroll_hash);
	if (r < 0)
		return http_reply_error(rep, r, "could not generate an enrollment token");
	vm.state = STORE_VM_REGISTERED;
	vm.created = now();
	r = run_admin_txn(rq, rep, register_txn, &t);
	if (r < 0)
		return r;
	rep->status = MHD_HTTP_CREATED;
	rep->body = json_pack("{s:s,s:s,s:s}", "name", vm.name, "id", vm.id, "enrollmentToken", token);
	return rep->body ? 0 : -ENOMEM;
}

static int list_vm_cb(const struct store_vm *vm, void *userdata)
{
	return json_array_append_new(userdata, model_vm(vm)) < 0 ? -ENOMEM : 0;
}

int handle_admin_vm_list(struct request *rq, struct reply *rep)
{
	json_t *a = json_array();
	int r;

	if (!a)
		return -ENOMEM;
	r = store_vm_list(rq->srv->store, list_vm_cb, a);
	if (r < 0) {
		json_decref(a);
		return http_reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "vms", a);
	return rep->body ? 0 : -ENOMEM;
}

int handle_admin_vm_show(struct request *rq, struct reply *rep)
{
	struct store_vm vm = {};
	struct store_settings st = {};
	int r;

	r = store_vm_get(rq->srv->store, rq->api->vm, &vm);
	if (r < 0)
		return http_reply_error(rep, r, "no VM named '%s'; see `vmcrypt-admin vm list`", rq->api->vm);
	r = load_settings(rq->srv->store, vm.name, &st);
	if (r >= 0) {
		rep->body = model_vm(&vm);
		if (rep->body)
			json_object_set_new(rep->body, "settings", model_settings(&st, vm.extension_removed));
	}
	store_vm_done(&vm);
	if (r < 0)
		return http_reply_error(rep, r, "store unavailable");
	return rep->body ? 0 : -ENOMEM;
}

static int revoke_txn(struct store *s, void *userdata)
{
	struct admin_txn *t = userdata;
	struct store_vm vm = {};
	int r;

	r = load_vm(s, t, &vm);
	if (r < 0)
		return r;
	if (vm.state == STORE_VM_REVOKED) {
		store_vm_done(&vm);
		return refuse(t, -EALREADY, "VM '%s' is already revoked; `vmcrypt-admin vm delete %s` removes it", t->vm,
			      t->vm);
	}
	vm.state = STORE_VM_REVOKED;
	memset(vm.enroll_hash, 0, sizeof(vm.enroll_hash));
	r = store_vm_update(s, &vm);
	store_vm_done(&vm);
	if (r < 0)
		return r;
	return txn_audit(s, t, "vm.revoke");
}

int handle_admin_vm_revoke(struct request *rq, struct reply *rep)
{
	struct admin_txn t = { .rq = rq, .vm = rq->api->vm };
	int r = run_admin_txn(rq, rep, revoke_txn, &t);

	if (r < 0)
		return r;
	log_info("VM '%s' revoked.", t.vm);
	rep->body = json_pack("{s:s,s:s}", "name", t.vm, "state", "revoked");
	return rep->body ? 0 : -ENOMEM;
}

/* Whether a report value means the volume holds (or is becoming, or leaving) encrypted data. */
static bool state_encrypted(const char *s)
{
	return s && (streq(s, "Encrypted") || streq(s, "EncryptionInProgress") || streq(s, "DecryptionInProgress") ||
		     streq(s, "VMRestartPending"));
}

/* Refuses when settings are enabled or the VM's last report shows encrypted volumes. what is the
 * command being refused, for the message. */
static int check_nothing_encrypted(struct admin_txn *t, const struct store_vm *vm, const struct store_settings *st,
				   const char *what, const char *retry)
{
	json_t *report;
	const char *os, *data;
	char when[32];
	int r = 0;

	if (st->enabled)
		return refuse(t, -EALREADY,
			      "%s refused: encryption is enabled for %s volumes of VM '%s'; disable it first: "
			      "vmcrypt-admin vm encryption disable --vm %s --volume-type %s",
			      what, api_volume_type_to_string(st->enabled), vm->name, vm->name,
			      api_volume_type_to_string(st->enabled));
	if (!vm->last_report)
		return 0;
	report = json_loads(vm->last_report, 0, NULL);
	os = json_string_value(json_object_get(report, "OsVolumeEncrypted"));
	data = json_string_value(json_object_get(report, "DataVolumesEncrypted"));
	if (state_encrypted(os) || state_encrypted(data))
		r = refuse(t, -EALREADY,
			   "%s refused: VM '%s' still reports encrypted volumes (OsVolumeEncrypted=%s, "
			   "DataVolumesEncrypted=%s at %s); wait until `vmcrypt-admin vm encryption show --vm %s` "
			   "shows them NotEncrypted, then run: %s",
			   what, vm->name, os, data, api_format_time(vm->last_report_time, when, sizeof(when)), vm->name,
			   retry);
	json_decref(report);
	return r;
}

static int delete_txn(struct store *s, void *userdata)
{
	struct admin_txn *t = userdata;
	struct store_vm vm = {};
	struct store_settings st;
	char retry[128];
	int r;

	r = load_vm(s, t, &vm);
	if (r >= 0)
		r = load_settings(s, t->vm, &st);
	if (r >= 0) {
		snprintf(retry, sizeof(retry), "vmcrypt-admin vm delete %s", t->vm);
		r = check_nothing_encrypted(t, &vm, &st, "delete", retry);
	}
	store_vm_done(&vm);
	if (r < 0)
		return r;
	r = store_vm_delete(s, t->vm);
	if (r < 0)
		return r;
	return txn_audit(s, t, "vm.delete");
}

int handle_admin_vm_delete(struct request *rq, struct reply *rep)
{
	struct admin_txn t = { .rq = rq, .vm = rq->api->vm };
	int r = run_admin_txn(rq, rep, delete_txn, &t);

	if (r < 0)
		return r;
	log_info("VM '%s' deleted.", t.vm);
	rep->body = json_pack("{s:s,s:b}", "name", t.vm, "deleted", 1);
	return rep->body ? 0 : -ENOMEM;
}

/* --- encryption settings --- */

static int enable_txn(struct store *s, void *userdata)
{
	struct admin_txn *t = userdata;
	struct store_vm vm = {};
	struct store_settings st;
	unsigned shrink;
	int r;

	r = load_vm(s, t, &vm);
	if (r >= 0)
		r = load_settings(s, t->vm, &st);
	if (r < 0)
		goto out;
	if (vm.state == STORE_VM_REVOKED) {
		r = refuse(t, -EALREADY, "VM '%s' is revoked; register it again to encrypt it", t->vm);
		goto out;
	}
	/* The volume type may stay or grow to All, never shrink through enable. */
	shrink = st.enabled & ~t->want;
	if (shrink) {
		r = refuse(t, -EALREADY,
			   "VM '%s' has encryption enabled for %s volumes; through enable the volume type may only "
			   "stay %s or grow to All. Run `vmcrypt-admin vm encryption enable --vm %s --volume-type All`, "
			   "or first `vmcrypt-admin vm encryption disable --vm %s --volume-type %s`",
			   t->vm, api_volume_type_to_string(st.enabled), api_volume_type_to_string(st.enabled), t->vm,
			   t->vm, api_volume_type_to_string(shrink));
		goto out;
	}
	st.enabled = t->want;
	st.last_type = t->want;
	st.format_all = t->format_all;
	snprintf(st.kek, sizeof(st.kek), "%s", t->kek ? t->kek : "");
	snprintf(st.kek_algorithm, sizeof(st.kek_algorithm), "%s", t->kek ? t->alg : "");
	st.sequence++;
	st.updated = now();
	r = store_settings_put(s, &st);
	if (r >= 0 && vm.extension_removed) {
		vm.extension_removed = false;
		r = store_vm_update(s, &vm);
	}
	if (r >= 0) {
		snprintf(t->audit_detail, sizeof(t->audit_detail), "VolumeType=%s KEK=%s %s sequence=%llu",
			 api_volume_type_to_string(st.enabled), st.kek[0] ? st.kek : "(none)", st.kek_algorithm,
			 (unsigned long long)st.sequence);
		r = txn_audit(s, t, "encryption.enable");
	}
	t->settings = st;
out:
	store_vm_done(&vm);
	return r;
}

int handle_admin_encryption_enable(struct request *rq, struct reply *rep)
{
	struct admin_txn t = { .rq = rq, .vm = rq->api->vm };
	json_t *fa = json_object_get(rq->api->body, "encryptFormatAll");
	const char *alg_text = body_string(rq, "kekAlgorithm");
	int r;

	(void)api_volume_type_from_string(body_string(rq, "volumeType"), &t.want);
	t.kek = body_string(rq, "kek");
	t.format_all = fa && json_is_true(fa);

	if (alg_text) {
		enum vault_alg alg;
		const char *why = NULL;

		r = vault_alg_from_string(alg_text, &alg, &why);
		if (r < 0)
			return http_reply_error(rep, -EINVAL, "--kek-algorithm %.32s: %s", alg_text, why);
		if (!t.kek)
			return http_reply_error(rep, -EINVAL, "--kek-algorithm needs --kek KEY");
		t.alg = vault_alg_to_string(alg);
	}
	if (t.kek) {
		struct store_key key = {};
		enum vault_kty kty;
		enum vault_alg alg;

		r = store_key_get(rq->srv->store, t.kek, 0, &key);
		if (r == -ENOENT)
			return http_reply_error(rep, -ENOENT, "no key named '%s'; create it: vmcrypt-admin key create %s", t.kek,
					   t.kek);
		if (r < 0)
			return http_reply_error(rep, r, "store unavailable");
		r = vault_kty_from_string(key.kty, &kty);
		store_key_done(&key);
		if (r < 0)
			return http_reply_error(rep, -EIO, "key '%s' has an unknown type", t.kek);
		if (!key.enabled)
			return http_reply_error(rep, -EKEYEXPIRED, "key '%s' is disabled; create a new one: vmcrypt-admin key create NAME",
					   t.kek);
		if (!t.alg)
			t.alg = kty == VAULT_KTY_RSA ? "RSA-OAEP-256" : "A256KW";
		(void)vault_alg_from_string(t.alg, &alg, NULL);
		if (!vault_alg_fits(alg, kty))
			return http_reply_error(rep, -EINVAL, "algorithm %s does not fit the %s key '%s'; use %s", t.alg, key.kty,
					   t.kek, kty == VAULT_KTY_RSA ? "RSA-OAEP-256 or RSA-OAEP" : "A256KW");
	}

	r = run_admin_txn(rq, rep, enable_txn, &t);
	if (r < 0)
		return r;
	log_info("Encryption of VM '%s' enabled for %s volumes (sequence %llu).", t.vm,
		 api_volume_type_to_string(t.settings.enabled), (unsigned long long)t.settings.sequence);
	rep->body = model_settings(&t.settings, false);
	return rep->body ? 0 : -ENOMEM;
}

static int disable_txn(struct store *s, void *userdata)
{
	struct admin_txn *t = userdata;
	struct store_vm vm = {};
	struct store_settings st;
	int r;

	r = load_vm(s, t, &vm);
	if (r >= 0)
		r = load_settings(s, t->vm, &st);
	if (r < 0)
		goto out;
	if (vm.extension_removed) {
		r = refuse(t, -EALREADY,
			   "the encryption extension of VM '%s' was removed (`vm extension remove`), so there is nothing "
			   "to disable; to encrypt again run `vmcrypt-admin vm encryption enable --vm %s --volume-type %s`",
			   t->vm, t->vm, api_volume_type_to_string(t->want));
		goto out;
	}
	if (!(st.enabled & t->want)) {
		r = refuse(t, -EALREADY,
			   "encryption is not enabled for %s volumes of VM '%s' (enabled for: %s); see "
			   "`vmcrypt-admin vm encryption show --vm %s`",
			   api_volume_type_to_string(t->want), t->vm, api_volume_type_to_string(st.enabled), t->vm);
		goto out;
	}
	st.enabled &= ~t->want;
	st.last_type = t->want;
	st.sequence++;
	st.updated = now();
	r = store_settings_put(s, &st);
	if (r >= 0) {
		snprintf(t->audit_detail, sizeof(t->audit_detail), "VolumeType=%s remaining=%s sequence=%llu",
			 api_volume_type_to_string(t->want), api_volume_type_to_string(st.enabled),
			 (unsigned long long)st.sequence);
		r = txn_audit(s, t, "encryption.disable");
	}
	t->settings = st;
out:
	store_vm_done(&vm);
	return r;
}

int handle_admin_encryption_disable(struct request *rq, struct reply *rep)
{
	struct admin_txn t = { .rq = rq, .vm = rq->api->vm };
	int r;

	(void)api_volume_type_from_string(body_string(rq, "volumeType"), &t.want);
	r = run_admin_txn(rq, rep, disable_txn, &t);
	if (r < 0)
		return r;
	log_info("Encryption of VM '%s' disabled for %s volumes (sequence %llu).", t.vm,
		 api_volume_type_to_string(t.want), (unsigned long long)t.settings.sequence);
	rep->body = model_settings(&t.settings, false);
	return rep->body ? 0 : -ENOMEM;
}

static int extension_remove_txn(struct store *s, void *userdata)
{
	struct admin_txn *t = userdata;
	struct store_vm vm = {};
	struct store_settings st;
	char retry[128];
	int r;

	r = load_vm(s, t, &vm);
	if (r >= 0)
		r = load_settings(s, t->vm, &st);
	if (r < 0)
		goto out;
	if (vm.extension_removed) {
		r = refuse(t, -EALREADY, "the encryption extension of VM '%s' is already removed", t->vm);
		goto out;
	}
	snprintf(retry, sizeof(retry), "vmcrypt-admin vm extension remove --vm %s", t->vm);
	r = check_nothing_encrypted(t, &vm, &st, "extension remove", retry);
	if (r < 0)
		goto out;
	vm.extension_removed = true;
	r = store_vm_update(s, &vm);
	if (r >= 0) {
		st.sequence++;
		st.updated = now();
		r = store_settings_put(s, &st);
	}
	if (r >= 0)
		r = txn_audit(s, t, "extension.remove");
	t->settings = st;
out:
	store_vm_done(&vm);
	return r;
}

int handle_admin_extension_remove(struct request *rq, struct reply *rep)
{
	struct admin_txn t = { .rq = rq, .vm = rq->api->vm };
	int r = run_admin_txn(rq, rep, extension_remove_txn, &t);

	if (r < 0)
		return r;
	log_info("Encryption extension of VM '%s' removed.", t.vm);
	rep->body = json_pack("{s:s,s:s,s:I}", "name", t.vm, "extension", "removed", "sequence",
			      (json_int_t)t.settings.sequence);
	return rep->body ? 0 : -ENOMEM;
}

static int show_secret_cb(const struct store_secret *sec, void *userdata)
{
	json_t *j = model_secret(sec);
	char url[2 * API_NAME_MAX + 64];

	if (!j)
		return -ENOMEM;
	snprintf(url, sizeof(url), "vmcryptd:secrets/%s/%s/%u", sec->vm, sec->volume, sec->version);
	json_object_set_new(j, "url", json_string(url));
	return json_array_append_new(userdata, j) < 0 ? -ENOMEM : 0;
}

int handle_admin_encryption_show(struct request *rq, struct reply *rep)
{
	struct server *srv = rq->srv;
	struct store_vm vm = {};
	struct store_settings st;
	json_t *report = NULL, *secrets = NULL, *refs = NULL, *j = NULL;
	struct api_drift_input in = {};
	enum api_drift drift;
	char message[512], when[32];
	const char *os, *data, *progress;
	int r;

	r = store_vm_get(srv->store, rq->api->vm, &vm);
	if (r < 0)
		return http_reply_error(rep, r, "no VM named '%s'; see `vmcrypt-admin vm list`", rq->api->vm);
	r = load_settings(srv->store, vm.name, &st);
	if (r < 0)
		goto out;
	secrets = json_array();
	if (!secrets) {
		r = -ENOMEM;
		goto out;
	}
	r = store_secret_list(srv->store, vm.name, show_secret_cb, secrets);
	if (r < 0)
		goto out;

	if (vm.last_report)
		report = json_loads(vm.last_report, 0, NULL);
	os = json_string_value(json_object_get(report, "OsVolumeEncrypted"));
	data = json_string_value(json_object_get(report, "DataVolumesEncrypted"));
	progress = json_string_value(json_object_get(report, "ProgressMessage"));
	in = (struct api_drift_input){
		.enabled = vm.extension_removed ? 0 : st.enabled,
		.sequence = st.sequence,
		.os_state = os,
		.data_state = data,
		.report_sequence = (uint64_t)json_integer_value(json_object_get(report, "SequenceVersion")),
		.report_time = vm.last_report_time,
		.now = now(),
		.stale_after = srv->stale_after,
	};
	drift = api_drift_compute(&in, message, sizeof(message));

	refs = json_pack("{s:O}", "secrets", secrets);
	if (refs && st.kek[0]) {
		char url[128];
		model_key_url(st.kek, 0, url, sizeof(url));
		json_object_set_new(refs, "keyEncryptionKeyUrl", json_string(url));
		json_object_set_new(refs, "keyEncryptionAlgorithm", json_string(st.kek_algorithm));
	}
	j = json_pack("{s:s,s:s,s:s,s:o*,s:s,s:o,s:{s:s,s:s},s:o,s:o}", "vm", vm.name, "OsVolumeEncrypted",
		      os ? os : "Unknown", "DataVolumesEncrypted", data ? data : "Unknown", "OsVolumeEncryptionSettings",
		      refs, "ProgressMessage", progress ? progress : "", "LastReport",
		      vm.last_report_time ? json_string(api_format_time(vm.last_report_time, when, sizeof(when)))
					  : json_null(),
		      "Drift", "state", api_drift_to_string(drift), "message", message, "settings",
		      model_settings(&st, vm.extension_removed), "volumes",
		      json_object_get(report, "Volumes") ? json_incref(json_object_get(report, "Volumes")) : json_array());
	if (!j) {
		r = -ENOMEM;
		goto out;
	}
	json_object_set_new(j, "LastReportAge",
			    vm.last_report_time ? json_integer(in.now - vm.last_report_time) : json_null());
	rep->body = j;
out:
	json_decref(report);
	json_decref(secrets);
	store_vm_done(&vm);
	if (r < 0)
		return http_reply_error(rep, r, "store unavailable");
	return 0;
}

/* --- keys --- */

struct key_txn {
	struct request *rq;
	struct store_key *key;
	uint32_t expect_latest; /* rotate: the version the new one follows */
	bool enabled;
	const char *action;
	char message[256];
};

static int key_insert_txn(struct store *s, void *userdata)
{
	struct key_txn *t = userdata;
	struct store_key latest = {};
	struct store_audit e;
	char result[64];
	int r;

	r = store_key_get(s, t->key->name, 0, &latest);
	if (r >= 0) {
		uint32_t v = latest.version;
		store_key_done(&latest);
		if (t->expect_latest == 0) {
			snprintf(t->message, sizeof(t->message), "key '%s' exists; to make a new version run `vmcrypt-admin key rotate %s`",
				 t->key->name, t->key->name);
			return -EEXIST;
		}
		if (v != t->expect_latest) {
			snprintf(t->message, sizeof(t->message), "key '%s' was rotated concurrently; run the rotation again",
				 t->key->name);
			return -EAGAIN;
		}
	} else if (r != -ENOENT) {
		return r;
	}
	r = store_key_insert(s, t->key);
	if (r < 0)
		return r;
	snprintf(result, sizeof(result), "ok: version %u", t->key->version);
	audit_fill(&e, t->rq->who->actor, t->action, t->rq->object, result);
	return store_audit_append(s, &e);
}

static int key_make(struct request *rq, struct reply *rep, const char *name, enum vault_kty kty, unsigned size,
		    uint32_t version, const char *action)
{
	_cleanup_secret_ void *material = NULL;
	_cleanup_free_ char *pem = NULL;
	_cleanup_free_ uint8_t *sealed = NULL;
	struct store_key key = {};
	struct key_txn t = { .rq = rq, .key = &key, .expect_latest = version - 1, .action = action };
	char context[128];
	size_t msize, ssize;
	int r;

	r = vault_key_generate(kty, size, &material, &msize, &pem);
	if (r < 0)
		return http_reply_error(rep, r, "could not generate the key");
	snprintf(context, sizeof(context), "key:%s:%u", name, version);
	r = vault_seal(rq->srv->vault, context, material, msize, &sealed, &ssize);
	if (r < 0)
		return http_reply_error(rep, r, "could not seal the key");
	snprintf(key.name, sizeof(key.name), "%s", name);
	key.version = version;
	snprintf(key.kty, sizeof(key.kty), "%s", vault_kty_to_string(kty));
	key.size = size;
	key.enabled = true;
	key.created = now();
	key.sealed = sealed;
	key.sealed_size = ssize;
	key.public_pem = pem;
	r = store_transaction(rq->srv->store, key_insert_txn, &t);
	if (r < 0)
		return http_reply_error(rep, r, "%s", t.message[0] ? t.message : "the key could not be stored");
	log_info("Key '%s' version %u (%s %u) created.", name, version, key.kty, size);
	rep->status = MHD_HTTP_CREATED;
	rep->body = model_key(&key);
	return rep->body ? 0 : -ENOMEM;
}

int handle_admin_key_create(struct request *rq, struct reply *rep)
{
	const char *name = body_string(rq, "name"), *kty_text = body_string(rq, "kty");
	json_t *size_j = json_object_get(rq->api->body, "size");
	unsigned size = size_j ? (unsigned)json_integer_value(size_j) : 0;
	enum vault_kty kty = VAULT_KTY_RSA;

	snprintf(rq->object, sizeof(rq->object), "key/%s", name);
	if (kty_text && vault_kty_from_string(kty_text, &kty) < 0)
		return http_reply_error(rep, -EINVAL, "--kty must be RSA or AES");
	if (vault_key_size_check(kty, &size) < 0)
		return http_reply_error(rep, -EINVAL, "--size must be %s",
				   kty == VAULT_KTY_RSA ? "2048, 3072 or 4096 for RSA" : "256 for AES");
	return key_make(rq, rep, name, kty, size, 1, "key.create");
}

/* --- re-wrapping on rotation --- */

struct secret_ref {
	char vm[API_NAME_MAX + 1];
	char volume[API_NAME_MAX + 1];
	uint32_t version;
};

struct rewrap_list {
	const char *key;
	uint32_t new_version;
	struct secret_ref *refs;
	size_t n, cap;
};

static int rewrap_collect(const struct store_secret *sec, void *userdata)
{
	struct rewrap_list *l = userdata;

	if (!streq(sec->kek, l->key) || sec->kek_version >= l->new_version)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct secret_ref *n = reallocarray(l->refs, cap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		l->refs = n;
		l->cap = cap;
	}
	snprintf(l->refs[l->n].vm, sizeof(l->refs[l->n].vm), "%s", sec->vm);
	snprintf(l->refs[l->n].volume, sizeof(l->refs[l->n].volume), "%s", sec->volume);
	l->refs[l->n].version = sec->version;
	l->n++;
	return 0;
}

struct rewrap_txn {
	struct request *rq;
	struct store_secret *secret; /* the new version to insert */
	uint32_t expect;             /* the version it replaces, still the newest */
	uint32_t version;            /* out */
	char object[160];
};

static int rewrap_txn_run(struct store *s, void *userdata)
{
	struct rewrap_txn *t = userdata;
	struct store_secret newest = {};
	struct store_audit e;
	char result[STORE_TEXT_MAX];
	int r;

	/* The VM may have stored a new value meanwhile: never shadow it with an older one. */
	r = store_secret_get(s, t->secret->vm, t->secret->volume, 0, &newest);
	if (r < 0)
		return r;
	store_secret_done(&newest);
	if (newest.version != t->expect)
		return -ESTALE;
	r = store_secret_insert(s, t->secret, &t->version);
	if (r < 0)
		return r;
	snprintf(result, sizeof(result), "ok: version %u -> %u, key %s version %u", t->expect, t->version,
		 t->secret->kek, t->secret->kek_version);
	audit_fill(&e, t->rq->who->actor, "secret.rewrap", t->object, result);
	return store_audit_append(s, &e);
}

/* Re-wraps one secret under the new key version as a new secret version. Returns 0, 1 when the
 * VM replaced the secret meanwhile (nothing to do), or -errno. */
static int rewrap_one(struct request *rq, const struct secret_ref *ref, struct vault_key *key, uint32_t version)
{
	struct server *srv = rq->srv;
	_cleanup_secret_ void *value = NULL;
	_cleanup_free_ uint8_t *wrapped = NULL;
	_cleanup_free_ uint8_t *sealed = NULL;
	struct store_secret old = {}, fresh = {};
	struct reply ignored = {};
	struct rewrap_txn t = { .rq = rq, .secret = &fresh, .expect = ref->version };
	enum vault_alg alg;
	char context[2 * API_NAME_MAX + 16];
	size_t size, wsize, ssize;
	int r;

	r = store_secret_get(srv->store, ref->vm, ref->volume, ref->version, &old);
	if (r < 0)
		return r;
	r = vault_alg_from_string(old.kek_algorithm, &alg, NULL);
	if (r >= 0)
		r = handler_secret_open(srv, &old, &ignored, &value, &size);
	if (r >= 0)
		r = vault_key_wrap(key, alg, value, size, &wrapped, &wsize);
	snprintf(context, sizeof(context), "secret:%s:%s", old.vm, old.volume);
	if (r >= 0)
		r = vault_seal(srv->vault, context, wrapped, wsize, &sealed, &ssize);
	if (r < 0) {
		store_secret_done(&old);
		return r;
	}
	fresh = old;
	fresh.sealed = sealed;
	fresh.sealed_size = ssize;
	fresh.kek_version = version;
	fresh.created = (int64_t)time(NULL);
	snprintf(t.object, sizeof(t.object), "vm/%s/secret/%s", old.vm, old.volume);
	r = store_transaction(srv->store, rewrap_txn_run, &t);
	store_secret_done(&old);
	return r == -ESTALE ? 1 : r;
}

/* After a rotation, moves every secret whose newest version is wrapped by an older version of
 * the key onto the new version, so no secret depends on an old version any more. Failures are
 * logged and counted; the rotation itself stands. Adds "rewrapped" and "rewrapFailed" to body. */
static void rewrap_all(struct request *rq, const char *name, uint32_t version, json_t *body)
{
	struct rewrap_list l = { .key = name, .new_version = version };
	struct vault_key *key = NULL;
	bool owned = false;
	uint32_t got;
	size_t done = 0, failed = 0;
	int r;

	r = store_secret_list(rq->srv->store, NULL, rewrap_collect, &l);
	if (r >= 0 && l.n > 0)
		r = keycache_get(rq->srv, name, version, &got, &key, &owned);
	if (r < 0) {
		log_error_errno(r, "Could not re-wrap the secrets of key '%s' after its rotation: %m", name);
		failed = l.n;
	}
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		int q = rewrap_one(rq, &l.refs[i], key, version);
		if (q < 0) {
			log_error_errno(q, "Could not re-wrap secret %s/%s with key '%s' version %u: %m", l.refs[i].vm,
					l.refs[i].volume, name, version);
			failed++;
		} else if (q == 0) {
			done++;
		}
	}
	if (owned)
		vault_key_free(key);
	free(l.refs);
	if (done || failed)
		log_info("Key '%s' version %u: re-wrapped %zu secrets, %zu failed.", name, version, done, failed);
	json_object_set_new(body, "rewrapped", json_integer((json_int_t)done));
	json_object_set_new(body, "rewrapFailed", json_integer((json_int_t)failed));
}

int handle_admin_key_rotate(struct request *rq, struct reply *rep)
{
	struct store_key latest = {};
	enum vault_kty kty;
	int r;

	r = store_key_get(rq->srv->store, rq->api->key, 0, &latest);
	if (r < 0)
		return http_reply_error(rep, r, "no key named '%s'; see `vmcrypt-admin key list`", rq->api->key);
	store_key_done(&latest);
	if (!latest.enabled)
		return http_reply_error(rep, -EKEYEXPIRED, "key '%s' is disabled; create a new key instead", rq->api->key);
	if (vault_kty_from_string(latest.kty, &kty) < 0)
		return http_reply_error(rep, -EIO, "key '%s' has an unknown type", rq->api->key);
	r = key_make(rq, rep, latest.name, kty, latest.size, latest.version + 1, "key.rotate");
	if (r < 0)
		return r;
	rewrap_all(rq, latest.name, latest.version + 1, rep->body);
	return 0;
}

static int key_disable_txn(struct store *s, void *userdata)
{
	struct key_txn *t = userdata;
	struct store_audit e;
	int r;

	r = store_key_set_enabled(s, t->rq->api->key, false);
	if (r < 0)
		return r;
	audit_fill(&e, t->rq->who->actor, "key.disable", t->rq->object, "ok");
	return store_audit_append(s, &e);
}

int handle_admin_key_disable(struct request *rq, struct reply *rep)
{
	struct key_txn t = { .rq = rq };
	int r = store_transaction(rq->srv->store, key_disable_txn, &t);

	if (r == -ENOENT)
		return http_reply_error(rep, r, "no key named '%s'; see `vmcrypt-admin key list`", rq->api->key);
	if (r < 0)
		return http_reply_error(rep, r, "the change could not be stored");
	log_info("Key '%s' disabled.", rq->api->key);
	rep->body = json_pack("{s:s,s:b}", "name", rq->api->key, "enabled", 0);
	return rep->body ? 0 : -ENOMEM;
}

static int list_key_cb(const struct store_key *k, void *userdata)
{
	json_t *j = model_key(k);
	if (j)
		json_object_del(j, "publicKey");
	return json_array_append_new(userdata, j) < 0 ? -ENOMEM : 0;
}

int handle_admin_key_list(struct request *rq, struct reply *rep)
{
	json_t *a = json_array();
	int r;

	if (!a)
		return -ENOMEM;
	r = store_key_list(rq->srv->store, list_key_cb, a);
	if (r < 0) {
		json_decref(a);
		return http_reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "keys", a);
	return rep->body ? 0 : -ENOMEM;
}

int handle_admin_key_show(struct request *rq, struct reply *rep)
{
	struct store_key k = {};
	int r;

	r = store_key_get(rq->srv->store, rq->api->key, 0, &k);
	if (r < 0)
		return http_reply_error(rep, r, "no key named '%s'; see `vmcrypt-admin key list`", rq->api->key);
	rep->body = model_key(&k);
	store_key_done(&k);
	return rep->body ? 0 : -ENOMEM;
}

/* --- secrets and audit --- */

static int list_secret_cb(const struct store_secret *sec, void *userdata)
{
	return json_array_append_new(userdata, model_secret(sec)) < 0 ? -ENOMEM : 0;
}

int handle_admin_secret_list(struct request *rq, struct reply *rep)
{
	const char *vm = query(rq, "vm");
	json_t *a;
	int r;

	if (vm && !api_name_valid(vm))
		return http_reply_error(rep, -EINVAL, "?vm= must be a VM name");
	a = json_array();
	if (!a)
		return -ENOMEM;
	r = store_secret_list(rq->srv->store, vm, list_secret_cb, a);
	if (r < 0) {
		json_decref(a);
		return http_reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "secrets", a);
	return rep->body ? 0 : -ENOMEM;
}

int handle_admin_secret_show(struct request *rq, struct reply *rep)
{
	struct server *srv = rq->srv;
	const char *reveal_text = query(rq, "reveal"), *version_text = query(rq, "version");
	bool reveal = reveal_text && (streq(reveal_text, "true") || streq(reveal_text, "1"));
	_cleanup_secret_ void *value = NULL;
	struct store_secret sec = {};
	uint64_t version = 0;
	size_t size;
	int r;

	if (version_text && (parse_u64(version_text, &version) < 0 || version > UINT32_MAX))
		return http_reply_error(rep, -EINVAL, "?version= must be a number");
	r = store_secret_get(srv->store, rq->api->vm, rq->api->volume, (uint32_t)version, &sec);
	if (r == -ENOENT)
		return http_reply_error(rep, r, "no secret %s/%s; see `vmcrypt-admin secret list`", rq->api->vm, rq->api->volume);
	if (r < 0)
		return http_reply_error(rep, r, "store unavailable");
	if (!reveal) {
		rep->body = model_secret(&sec);
		store_secret_done(&sec);
		return rep->body ? 0 : -ENOMEM;
	}
	r = handler_secret_open(srv, &sec, rep, &value, &size);
	if (r < 0) {
		(void)audit_read_event(srv, rq->who->actor, "secret.reveal", rq->object, "failed");
		store_secret_done(&sec);
		return r;
	}
	r = audit_read_event(srv, rq->who->actor, "secret.reveal", rq->object, "ok");
	if (r >= 0)
		r = handler_secret_reply(&sec, value, size, rep);
	else
		http_reply_error(rep, r, "could not record the reveal");
	store_secret_done(&sec);
	return r;
}

static int list_audit_cb(const struct store_audit *e, void *userdata)
{
	return json_array_append_new(userdata, model_audit(e)) < 0 ? -ENOMEM : 0;
}

int handle_admin_audit(struct request *rq, struct reply *rep)
{
	const char *vm = query(rq, "vm"), *since_text = query(rq, "since");
	char prefix[API_NAME_MAX + 4];
	int64_t since = 0;
	json_t *a;
	int r;

	if (vm && !api_name_valid(vm))
		return http_reply_error(rep, -EINVAL, "?vm= must be a VM name");
	if (since_text && api_parse_time(since_text, now(), &since) < 0)
		return http_reply_error(rep, -EINVAL, "?since= must be a time like 2026-11-29T10:00:00Z or an age like 30m, 2h, 1d");
	if (vm)
		snprintf(prefix, sizeof(prefix), "vm/%s", vm);
	a = json_array();
	if (!a)
		return -ENOMEM;
	r = store_audit_list(rq->srv->store, vm ? prefix : NULL, since, list_audit_cb, a);
	if (r < 0) {
		json_decref(a);
		return http_reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "events", a);
	return rep->body ? 0 : -ENOMEM;
}
