/* The admin routes for VMs: registry, encryption settings and their lifecycle rules, the
 * extension, the status view with drift (keys: handlers-keys.c; secrets and audit:
 * handlers-secrets.c). Rule checks and changes run in one store transaction; a
 * refusal carries a message naming the VM and the next command to run. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/ade.h"
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
	audit_fill(&e, t->rq->who, action, t->rq->object, result);
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
			return reply_error(rep, r, "%s", t->message);
		return reply_error(rep, r, "the change could not be stored");
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
		return reply_error(rep, r, "could not generate an enrollment token");
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
		return reply_error(rep, r, "store unavailable");
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
	if (r == -ENOENT)
		return reply_error(rep, r, "no VM named '%s'; see `vmcrypt-admin vm list`", rq->api->vm);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	r = load_settings(rq->srv->store, vm.name, &st);
	if (r >= 0) {
		rep->body = model_vm(&vm);
		if (rep->body)
			json_object_set_new(rep->body, "settings", model_settings(&st, vm.extension_removed));
	}
	store_vm_done(&vm);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
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
	switch (ade_state_from_string(s)) {
	case ADE_STATE_ENCRYPTED:
	case ADE_STATE_ENCRYPTION_IN_PROGRESS:
	case ADE_STATE_DECRYPTION_IN_PROGRESS:
	case ADE_STATE_VM_RESTART_PENDING:
		return true;
	default:
		return false;
	}
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
			return reply_error(rep, -EINVAL, "--kek-algorithm %.32s: %s", alg_text, why);
		if (!t.kek)
			return reply_error(rep, -EINVAL, "--kek-algorithm needs --kek KEY");
		t.alg = vault_alg_to_string(alg);
	}
	if (t.kek) {
		struct store_key key = {};
		enum vault_kty kty;
		enum vault_alg alg;

		r = store_key_get(rq->srv->store, t.kek, 0, &key);
		if (r == -ENOENT)
			return reply_error(rep, -ENOENT, "no key named '%s'; create it: vmcrypt-admin key create %s", t.kek,
					   t.kek);
		if (r < 0)
			return reply_error(rep, r, "store unavailable");
		r = vault_kty_from_string(key.kty, &kty);
		store_key_done(&key);
		if (r < 0)
			return reply_error(rep, -EIO, "key '%s' has an unknown type", t.kek);
		if (!key.enabled)
			return reply_error(rep, -EKEYEXPIRED, "key '%s' is disabled; create a new one: vmcrypt-admin key create NAME",
					   t.kek);
		if (!t.alg)
			t.alg = kty == VAULT_KTY_RSA ? "RSA-OAEP-256" : "A256KW";
		(void)vault_alg_from_string(t.alg, &alg, NULL);
		if (!vault_alg_fits(alg, kty))
			return reply_error(rep, -EINVAL, "algorithm %s does not fit the %s key '%s'; use %s", t.alg, key.kty,
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
	if (r == -ENOENT)
		return reply_error(rep, r, "no VM named '%s'; see `vmcrypt-admin vm list`", rq->api->vm);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
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
		      os ? os : ade_state_to_string(ADE_STATE_UNKNOWN), "DataVolumesEncrypted",
		      data ? data : ade_state_to_string(ADE_STATE_UNKNOWN), "OsVolumeEncryptionSettings",
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
		return reply_error(rep, r, "store unavailable");
	return 0;
}
