/* JSON views of stored objects, shared by the VM and admin handlers. No view carries a secret
 * value or key material; handlers that must return a value add it themselves. */
#include <stdio.h>
#include <stdlib.h>

#include "basic/string-util.h"
#include "shared/digest.h"
#include "vmcryptd.h"

static const char *state_name(enum store_vm_state s)
{
	switch (s) {
	case STORE_VM_REGISTERED:
		return "registered";
	case STORE_VM_ENROLLED:
		return "enrolled";
	case STORE_VM_REVOKED:
		return "revoked";
	}
	return "?";
}

json_t *model_vm(const struct store_vm *vm)
{
	char t[32];
	json_t *j, *report = NULL;

	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "name", vm->name, "id", vm->id, "state", state_name(vm->state),
		      "hostname", vm->hostname, "agentVersion", vm->agent_version, "extension",
		      vm->extension_removed ? "removed" : "installed");
	if (!j)
		return NULL;
	json_object_set_new(j, "registered", json_string(api_format_time(vm->created, t, sizeof(t))));
	json_object_set_new(j, "enrolled", vm->enrolled ? json_string(api_format_time(vm->enrolled, t, sizeof(t)))
							: json_null());
	json_object_set_new(j, "lastReportTime", vm->last_report_time ? json_integer(vm->last_report_time) : json_null());
	if (vm->last_report)
		report = json_loads(vm->last_report, 0, NULL);
	json_object_set_new(j, "lastReport", report ? report : json_null());
	return j;
}

const char *model_operation(const struct store_settings *s)
{
	if (s->enabled)
		return s->format_all ? "EnableEncryptionFormatAll" : "EnableEncryption";
	return s->sequence == 0 ? "None" : "DisableEncryption";
}

void model_key_url(const char *name, uint32_t version, char *buf, size_t len)
{
	if (version)
		snprintf(buf, len, "vmcryptd:keys/%s/%u", name, version);
	else
		snprintf(buf, len, "vmcryptd:keys/%s", name);
}

json_t *model_settings(const struct store_settings *s, bool extension_removed)
{
	char url[128];
	json_t *j;

	j = json_pack("{s:s,s:s,s:I,s:b}", "EncryptionOperation", model_operation(s), "VolumeType",
		      api_volume_type_to_string(s->enabled ? s->enabled : s->last_type), "SequenceVersion",
		      (json_int_t)s->sequence, "ExtensionInstalled", !extension_removed);
	if (!j)
		return NULL;
	if (s->kek[0]) {
		model_key_url(s->kek, 0, url, sizeof(url));
		json_object_set_new(j, "KeyEncryptionKeyURL", json_string(url));
		json_object_set_new(j, "KeyEncryptionAlgorithm", json_string(s->kek_algorithm));
	}
	return j;
}

json_t *model_key(const struct store_key *k)
{
	char t[32], url[128];
	json_t *j;

	model_key_url(k->name, k->version, url, sizeof(url));
	j = json_pack("{s:s,s:I,s:s,s:i,s:b,s:s,s:s}", "name", k->name, "version", (json_int_t)k->version, "kty",
		      k->kty, "size", (int)k->size, "enabled", k->enabled, "created",
		      api_format_time(k->created, t, sizeof(t)), "url", url);
	if (j && k->public_pem)
		json_object_set_new(j, "publicKey", json_string(k->public_pem));
	return j;
}

json_t *model_secret(const struct store_secret *s)
{
	char name[2 * API_NAME_MAX + 2], t[32], url[128];
	json_t *j, *tags;

	snprintf(name, sizeof(name), "%s/%s", s->vm, s->volume);
	tags = json_pack("{s:s,s:s}", "DiskEncryptionKeyFileName", s->file_name, "MachineName", s->vm);
	if (tags && s->kek[0]) {
		model_key_url(s->kek, s->kek_version, url, sizeof(url));
		json_object_set_new(tags, "DiskEncryptionKeyEncryptionKeyURL", json_string(url));
		json_object_set_new(tags, "DiskEncryptionKeyEncryptionAlgorithm", json_string(s->kek_algorithm));
	}
	j = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:o}", "name", name, "vm", s->vm, "volume", s->volume, "version",
		      (json_int_t)s->version, "contentType", s->content_type, "created",
		      api_format_time(s->created, t, sizeof(t)), "tags", tags);
	return j;
}

json_t *model_header(const struct store_header *h)
{
	char name[2 * API_NAME_MAX + 2], t[32], sha[DIGEST_SHA256_HEX_SIZE], url[128];
	json_t *j;

	snprintf(name, sizeof(name), "%s/%s", h->vm, h->volume);
	j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "name", name, "vm", h->vm, "volume", h->volume, "version",
		      (json_int_t)h->version, "size", (json_int_t)h->size, "sha256",
		      digest_sha256_to_hex(h->sha256, sha), "created", api_format_time(h->created, t, sizeof(t)));
	if (j && h->kek[0]) {
		model_key_url(h->kek, h->kek_version, url, sizeof(url));
		json_object_set_new(j, "keyEncryptionKeyUrl", json_string(url));
		json_object_set_new(j, "keyEncryptionAlgorithm", json_string(h->kek_algorithm));
	}
	return j;
}

/* Never the token's text (vmcryptd does not have it) nor its hash. */
json_t *model_token(const struct store_token *t)
{
	const char *role = api_role_to_string(t->role);
	char when[32];
	json_t *j;

	j = json_pack("{s:s,s:s,s:s}", "name", t->name, "role", role ? role : "unknown", "created",
		      api_format_time(t->created, when, sizeof(when)));
	if (!j)
		return NULL;
	json_object_set_new(j, "lastUsed",
			    t->last_used ? json_string(api_format_time(t->last_used, when, sizeof(when))) : json_null());
	json_object_set_new(j, "revoked",
			    t->revoked ? json_string(api_format_time(t->revoked, when, sizeof(when))) : json_null());
	return j;
}

json_t *model_audit(const struct store_audit *e)
{
	char t[32];

	return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)e->id, "time",
			 api_format_time(e->time, t, sizeof(t)), "actor", e->actor, "source", e->source, "action",
			 e->action, "object", e->object, "result", e->result);
}

void model_text_free(void *p)
{
	json_malloc_t m;
	json_free_t f;

	json_get_alloc_funcs(&m, &f);
	if (f)
		f(p);
	else
		free(p);
}
