/* The admin routes for key-encryption keys: create, list, show, rotate (with re-wrapping of the
 * secrets that used older versions), disable and enable. */
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

static const char *body_string(const struct request *rq, const char *field)
{
	return json_string_value(json_object_get(rq->api->body, field));
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
	audit_fill(&e, t->rq->who, t->action, t->rq->object, result);
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
		return reply_error(rep, r, "could not generate the key");
	snprintf(context, sizeof(context), "key:%s:%u", name, version);
	r = vault_seal(rq->srv->vault, context, material, msize, &sealed, &ssize);
	if (r < 0)
		return reply_error(rep, r, "could not seal the key");
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
		return reply_error(rep, r, "%s", t.message[0] ? t.message : "the key could not be stored");
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
		return reply_error(rep, -EINVAL, "--kty must be RSA or AES");
	if (vault_key_size_check(kty, &size) < 0)
		return reply_error(rep, -EINVAL, "--size must be %s",
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
	audit_fill(&e, t->rq->who, "secret.rewrap", t->object, result);
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
	if (r >= 0)
		stats_secret(STATS_SECRET_REWRAP);
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
	if (r == -ENOENT)
		return reply_error(rep, r, "no key named '%s'; see `vmcrypt-admin key list`", rq->api->key);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	store_key_done(&latest);
	if (!latest.enabled)
		return reply_error(rep, -EKEYEXPIRED, "key '%s' is disabled; create a new key instead", rq->api->key);
	if (vault_kty_from_string(latest.kty, &kty) < 0)
		return reply_error(rep, -EIO, "key '%s' has an unknown type", rq->api->key);
	r = key_make(rq, rep, latest.name, kty, latest.size, latest.version + 1, "key.rotate");
	if (r < 0)
		return r;
	rewrap_all(rq, latest.name, latest.version + 1, rep->body);
	return 0;
}

static int key_set_enabled_txn(struct store *s, void *userdata)
{
	struct key_txn *t = userdata;
	struct store_audit e;
	int r;

	r = store_key_set_enabled(s, t->rq->api->key, t->enabled);
	if (r < 0)
		return r;
	audit_fill(&e, t->rq->who, t->action, t->rq->object, "ok");
	return store_audit_append(s, &e);
}

/* Disabling and enabling act on every version of the key at once; the key cache re-reads the
 * enabled flag on every use, so either takes effect with the next wrap or unwrap. */
static int key_set_enabled(struct request *rq, struct reply *rep, bool enabled)
{
	struct key_txn t = { .rq = rq, .enabled = enabled, .action = enabled ? "key.enable" : "key.disable" };
	int r = store_transaction(rq->srv->store, key_set_enabled_txn, &t);

	if (r == -ENOENT)
		return reply_error(rep, r, "no key named '%s'; see `vmcrypt-admin key list`", rq->api->key);
	if (r < 0)
		return reply_error(rep, r, "the change could not be stored");
	log_info("Key '%s' %s.", rq->api->key, enabled ? "enabled" : "disabled");
	rep->body = json_pack("{s:s,s:b}", "name", rq->api->key, "enabled", enabled);
	return rep->body ? 0 : -ENOMEM;
}

int handle_admin_key_disable(struct request *rq, struct reply *rep)
{
	return key_set_enabled(rq, rep, false);
}

int handle_admin_key_enable(struct request *rq, struct reply *rep)
{
	return key_set_enabled(rq, rep, true);
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
		return reply_error(rep, r, "store unavailable");
	}
	rep->body = json_pack("{s:o}", "keys", a);
	return rep->body ? 0 : -ENOMEM;
}

int handle_admin_key_show(struct request *rq, struct reply *rep)
{
	struct store_key k = {};
	int r;

	r = store_key_get(rq->srv->store, rq->api->key, 0, &k);
	if (r == -ENOENT)
		return reply_error(rep, r, "no key named '%s'; see `vmcrypt-admin key list`", rq->api->key);
	if (r < 0)
		return reply_error(rep, r, "store unavailable");
	rep->body = model_key(&k);
	store_key_done(&k);
	return rep->body ? 0 : -ENOMEM;
}
