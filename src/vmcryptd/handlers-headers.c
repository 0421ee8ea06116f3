/* The header-backup routes: a VM stores the LUKS2 headers of its volumes (raw bytes, up to
 * API_HEADER_MAX) and reads them back; the admin lists and reads them. Each version is encrypted
 * under a data key of its own, which rests in an envelope as a secret's value does; its SHA-256,
 * sent by the VM and checked on arrival, is bound into the encryption and checked again on
 * every read, so damaged bytes are refused, never sent. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/digest.h"
#include "shared/secret.h"
#include "vmcryptd.h"

/* Versions kept per volume. A new upload never replaces the previous one: the oldest goes in
 * the transaction that commits the newest, so a bad upload leaves the good one before it, and
 * a third upload in a row is needed to push a good one out. */
#define HEADER_KEEP 3

static const char *query(const struct request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->connection, MHD_GET_ARGUMENT_KIND, key);
}

/* The data key's envelope is bound to the volume; the data to the volume, its size and its
 * SHA-256, so a row whose recorded size or hash was changed does not decrypt either. */
static void key_context(const char *vm, const char *volume, char *buf, size_t len)
{
	snprintf(buf, len, "header-key:%s:%s", vm, volume);
}

static void data_context(const char *vm, const char *volume, uint64_t size, const uint8_t *sha, char *buf,
			 size_t len)
{
	char hex[DIGEST_SHA256_HEX_SIZE];

	snprintf(buf, len, "header:%s:%s:%llu:%s", vm, volume, (unsigned long long)size,
		 digest_sha256_to_hex(sha, hex));
}

/* "version 3, 16777216 bytes, sha256 ab12..." for audit results: never the content. */
static void describe(const struct store_header *h, char *buf, size_t len)
{
	char hex[DIGEST_SHA256_HEX_SIZE];

	snprintf(buf, len, "version %u, %llu bytes, sha256 %s", h->version, (unsigned long long)h->size,
		 digest_sha256_to_hex(h->sha256, hex));
}

struct header_txn {
	struct store_header header; /* to insert; version and created filled on success */
	struct store_header newest; /* metadata of the newest stored version, if any */
	bool unchanged;             /* the newest already holds these bytes: nothing inserted */
	struct store_audit event;
};

static int newest_cb(const struct store_header *h, void *userdata)
{
	struct header_txn *t = userdata;

	if (streq(h->volume, t->header.volume) && h->version > t->newest.version)
		t->newest = *h;
	return 0;
}

static int header_put_txn_run(struct store *s, void *userdata)
{
	struct header_txn *t = userdata;
	char what[160];
	int r;

	/* The agent uploads after every change it makes and may repeat itself: the same bytes
	 * again are no new version, and push no older one out. */
	t->newest.version = 0;
	r = store_header_list(s, t->header.vm, newest_cb, t);
	if (r < 0)
		return r;
	t->unchanged = t->newest.version > 0 && t->newest.size == t->header.size &&
		       digest_sha256_equal(t->newest.sha256, t->header.sha256);
	if (t->unchanged) {
		t->header.version = t->newest.version;
		t->header.created = t->newest.created;
	} else {
		r = store_header_insert(s, &t->header, HEADER_KEEP, &t->header.version);
		if (r < 0)
			return r;
	}
	describe(&t->header, what, sizeof(what));
	snprintf(t->event.result, sizeof(t->event.result), "ok: %s%s", t->unchanged ? "unchanged, " : "", what);
	return store_audit_append(s, &t->event);
}

/* Encrypts the body under a fresh data key into t->header, and puts the data key in an
 * envelope. On failure rep->message is set. */
static int header_seal(struct server *srv, const struct store_settings *st, struct header_txn *t,
		       const uint8_t *plain, struct envelope *env, struct reply *rep)
{
	_cleanup_secret_ uint8_t *dek = secret_alloc(VAULT_DATA_KEY_SIZE);
	char context[2 * API_NAME_MAX + 96];
	int r;

	if (!dek)
		return -ENOMEM;
	r = secret_random(dek, VAULT_DATA_KEY_SIZE);
	if (r < 0)
		return reply_error(rep, r, "could not make a data key");
	key_context(t->header.vm, t->header.volume, context, sizeof(context));
	r = envelope_seal(srv, st, "header backup", context, dek, VAULT_DATA_KEY_SIZE, env, rep);
	if (r < 0)
		return r;
	data_context(t->header.vm, t->header.volume, t->header.size, t->header.sha256, context, sizeof(context));
	r = vault_seal_with_key(dek, context, plain, t->header.size, &t->header.data, &t->header.data_size);
	if (r < 0)
		return reply_error(rep, r, "could not encrypt the header backup");
	snprintf(t->header.kek, sizeof(t->header.kek), "%s", env->kek);
	snprintf(t->header.kek_algorithm, sizeof(t->header.kek_algorithm), "%s", env->kek_algorithm);
	t->header.kek_version = env->kek_version;
	t->header.sealed_key = env->sealed;
	t->header.sealed_key_size = env->sealed_size;
	return 0;
}

int handle_vm_header_put(struct request *rq, struct reply *rep)
{
	struct server *srv = rq->srv;
	const char *vmname = rq->who->vm.name, *volume = rq->api->volume;
	const char *claimed = MHD_lookup_connection_value(rq->connection, MHD_HEADER_KIND, API_FIELD_SHA256);
	char want_hex[DIGEST_SHA256_HEX_SIZE], got_hex[DIGEST_SHA256_HEX_SIZE], result[STORE_TEXT_MAX], err[256];
	uint8_t want[DIGEST_SHA256_SIZE];
	struct store_settings st = {};
	struct envelope env = {};
	struct header_txn t = {};
	int r;

	/* The hash comes from the VM, which read the header it sends: a body damaged or cut on the
	 * way is refused here instead of becoming the newest version. */
	if (!claimed || digest_sha256_from_hex(claimed, want) < 0)
		return reply_error(rep, -EINVAL,
				   "a header backup needs the field %s: the SHA-256 of the body, in 64 hex digits",
				   API_FIELD_SHA256);
	snprintf(t.header.vm, sizeof(t.header.vm), "%s", vmname);
	snprintf(t.header.volume, sizeof(t.header.volume), "%s", volume);
	t.header.size = rq->raw_size;
	r = digest_sha256(rq->raw, rq->raw_size, t.header.sha256);
	if (r < 0)
		return reply_error(rep, r, "could not hash the header backup");
	if (!digest_sha256_equal(want, t.header.sha256)) {
		snprintf(result, sizeof(result), "denied: %zu bytes whose SHA-256 is not the one sent with them",
			 rq->raw_size);
		(void)audit_read_event(srv, rq->who, "header.write", rq->object, result);
		return reply_error(rep, -EBADMSG,
				   "the body's SHA-256 is %s, not %s as %s says: the upload was damaged or cut "
				   "short; nothing was stored",
				   digest_sha256_to_hex(t.header.sha256, got_hex), digest_sha256_to_hex(want, want_hex),
				   API_FIELD_SHA256);
	}
	/* Only HEADER_KEEP versions are kept, so a buggy agent sending anything else three times
	 * would push every good copy out. The check reads the binary header's fixed fields
	 * (api_header_check()) rather than letting libcryptsetup load the bytes through a memfd:
	 * the vault holds the master key and parses nothing of the header's JSON, which the VM
	 * wrote; libcryptsetup would bring json-c (whose json_object_get clashes with jansson's)
	 * into this process, want a file and its locks, and log on its own. Garbage is what this
	 * guards against: the agent makes its backups with crypt_header_backup(), from metadata
	 * libcryptsetup has loaded and checked (checksums, JSON) on the VM. */
	r = api_header_check(rq->raw, rq->raw_size, err, sizeof(err));
	if (r < 0) {
		snprintf(result, sizeof(result), "denied: %.200s", err);
		(void)audit_read_event(srv, rq->who, "header.write", rq->object, result);
		return reply_error(rep, r, "%s; nothing was stored", err);
	}

	r = store_settings_get(srv->store, vmname, &st);
	if (r < 0 && r != -ENOENT)
		return reply_error(rep, r, "store unavailable");
	r = header_seal(srv, &st, &t, rq->raw, &env, rep);
	if (r == -EKEYEXPIRED)
		(void)audit_event(srv, rq->who, "header.write", rq->object, "denied: KEK disabled or missing");
	if (r < 0)
		goto out;

	t.header.created = (int64_t)time(NULL);
	audit_fill(&t.event, rq->who, "header.write", rq->object, "ok");
	r = store_transaction(srv->store, header_put_txn_run, &t);
	if (r < 0) {
		reply_error(rep, r, "could not store the header backup");
		goto out;
	}
	log_info("VM '%s' stored header backup %s version %u (%zu bytes)%s.", vmname, volume, t.header.version,
		 rq->raw_size, t.unchanged ? ", unchanged" : "");
	if (!t.unchanged)
		stats_secret(STATS_HEADER_WRITE);
	rep->status = t.unchanged ? MHD_HTTP_OK : MHD_HTTP_CREATED;
	rep->body = model_header(&t.header);
	if (!rep->body || json_object_set_new(rep->body, "unchanged", json_boolean(t.unchanged)) < 0)
		r = -ENOMEM;
out:
	envelope_done(&env);
	t.header.sealed_key = NULL; /* env's */
	store_header_done(&t.header);
	return r;
}

/* Decrypts a stored version into secret memory and proves it is what the VM sent: its size and
 * SHA-256 are the recorded ones. On failure rep->message is set; damage is -EIO. */
static int header_open(struct server *srv, const struct store_header *h, void **ret, struct reply *rep)
{
	_cleanup_secret_ void *dek = NULL;
	_cleanup_secret_ void *plain = NULL;
	char context[2 * API_NAME_MAX + 96], label[2 * API_NAME_MAX + 32];
	uint8_t sha[DIGEST_SHA256_SIZE];
	size_t dek_size, size;
	int r;

	snprintf(label, sizeof(label), "%s/%s version %u", h->vm, h->volume, h->version);
	key_context(h->vm, h->volume, context, sizeof(context));
	r = envelope_open(srv, "header backup", label, context, h->sealed_key, h->sealed_key_size, h->kek,
			  h->kek_version, h->kek_algorithm, &dek, &dek_size, rep);
	if (r < 0)
		return r;
	if (dek_size != VAULT_DATA_KEY_SIZE) {
		log_error("Stored header backup %s has a data key of %zu bytes.", label, dek_size);
		return reply_error(rep, -EIO, "the stored header backup %s is damaged; see the vmcryptd log", label);
	}
	data_context(h->vm, h->volume, h->size, h->sha256, context, sizeof(context));
	r = vault_unseal_with_key(dek, context, h->data, h->data_size, &plain, &size);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		log_error_errno(r, "Stored header backup %s does not decrypt (its data, size or hash was altered): %m",
				label);
		return reply_error(rep, -EIO,
				   "the stored header backup %s is damaged: it does not decrypt, so its data or "
				   "its recorded size or SHA-256 was altered; nothing was sent. An older version may "
				   "be intact: vmcrypt-admin header list --vm %s",
				   label, h->vm);
	}
	r = digest_sha256(plain, size, sha);
	if (r < 0)
		return reply_error(rep, r, "could not hash the header backup");
	if (size != h->size || !digest_sha256_equal(sha, h->sha256)) {
		log_error("Stored header backup %s decrypts to %zu bytes whose SHA-256 is not the recorded one.", label,
			  size);
		return reply_error(rep, -EIO,
				   "the stored header backup %s is damaged: its SHA-256 is not the one recorded at "
				   "upload; nothing was sent",
				   label);
	}
	*ret = TAKE_PTR(plain);
	return 0;
}

/* GET of one version (?version=N, else the newest) of vm's header backup of volume, for the VM
 * itself or the admin: the raw bytes, with the hash, version and time in response fields. The
 * read is on record before a byte leaves. */
static int header_read(struct request *rq, struct reply *rep, const char *vm, const char *volume)
{
	struct server *srv = rq->srv;
	const char *version_text = query(rq, "version");
	char hex[DIGEST_SHA256_HEX_SIZE], t[32], what[160], result[STORE_TEXT_MAX];
	_cleanup_secret_ void *plain = NULL;
	struct store_header h = {};
	uint64_t version = 0;
	int r;

	if (version_text && (parse_u64(version_text, &version) < 0 || version < 1 || version > UINT32_MAX))
		return reply_error(rep, -EINVAL, "?version= must be a version number from `vmcrypt-admin header list`");
	r = store_header_get(srv->store, vm, volume, (uint32_t)version, &h);
	if (r == -ENOENT) {
		(void)audit_read_event(srv, rq->who, "header.read", rq->object, "not found");
		if (version)
			return reply_error(rep, r, "VM '%s' has no version %llu of the header backup of volume '%s'; "
					   "see `vmcrypt-admin header list --vm %s`",
					   vm, (unsigned long long)version, volume, vm);
		return reply_error(rep, r, "VM '%s' has no header backup of volume '%s'", vm, volume);
	}
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	describe(&h, what, sizeof(what));
	r = header_open(srv, &h, &plain, rep);
	if (r < 0) {
		snprintf(result, sizeof(result), "failed: %s does not open or does not match its hash", what);
		(void)audit_read_event(srv, rq->who, "header.read", rq->object, result);
		goto out;
	}
	snprintf(result, sizeof(result), "ok: %s", what);
	r = audit_read_event(srv, rq->who, "header.read", rq->object, result);
	if (r < 0) {
		reply_error(rep, r, "could not record the read");
		goto out;
	}
	rep->raw = TAKE_PTR(plain);
	rep->raw_size = (size_t)h.size;
	stats_secret(STATS_HEADER_READ);
	reply_field(rep, API_FIELD_SHA256, "%s", digest_sha256_to_hex(h.sha256, hex));
	reply_field(rep, API_FIELD_VERSION, "%u", h.version);
	reply_field(rep, API_FIELD_CREATED, "%s", api_format_time(h.created, t, sizeof(t)));
out:
	store_header_done(&h);
	return r;
}

int handle_vm_header_get(struct request *rq, struct reply *rep)
{
	return header_read(rq, rep, rq->who->vm.name, rq->api->volume);
}

int handle_admin_header_get(struct request *rq, struct reply *rep)
{
	return header_read(rq, rep, rq->api->vm, rq->api->volume);
}

static int list_header_cb(const struct store_header *h, void *userdata)
{
	return json_array_append_new(userdata, model_header(h)) < 0 ? -ENOMEM : 0;
}

static int list_headers(struct store *s, const char *vm, json_t *array)
{
	return store_header_list(s, vm, list_header_cb, array);
}

int handle_admin_header_list(struct request *rq, struct reply *rep)
{
	return handler_list_by_vm(rq, rep, "headers", list_headers);
}
