/* How a value rests in the store: wrapped by the VM's key-encryption key when its settings name
 * one, then sealed by the master key under a context naming the object. Volume secrets and the
 * data keys of header backups go through here, so both honour a KEK's disable and enable alike. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "shared/secret.h"
#include "vmcryptd.h"

int envelope_seal(struct server *srv, const struct store_settings *st, const char *noun, const char *context,
		  const void *plain, size_t size, struct envelope *ret, struct reply *rep)
{
	_cleanup_free_ uint8_t *wrapped = NULL;
	struct envelope e = {};
	size_t wsize = 0;
	int r;

	if (st && st->kek[0]) {
		struct vault_key *key = NULL;
		enum vault_alg alg;
		bool owned = false;

		r = vault_alg_from_string(st->kek_algorithm, &alg, NULL);
		if (r < 0)
			return reply_error(rep, -EIO, "settings of VM '%s' name an unknown algorithm", st->vm);
		r = keycache_get(srv, st->kek, 0, &e.kek_version, &key, &owned);
		if (r == -EKEYEXPIRED || r == -ENOENT)
			return reply_error(rep, -EKEYEXPIRED,
					   "the key-encryption key '%s' of VM '%s' is disabled or gone; choose another: "
					   "vmcrypt-admin vm encryption enable --vm %s --volume-type %s --kek NEWKEY",
					   st->kek, st->vm, st->vm,
					   api_volume_type_to_string(st->enabled ? st->enabled : API_VOLUME_ALL));
		if (r < 0)
			return reply_error(rep, r, "could not load the key-encryption key");
		r = vault_key_wrap(key, alg, plain, size, &wrapped, &wsize);
		if (r == -EMSGSIZE)
			(void)reply_error(rep, -EMSGSIZE, "the %s is too long for the %s key '%s' with %s", noun,
					  vault_key_type(key) == VAULT_KTY_RSA ? "RSA" : "AES", st->kek, st->kek_algorithm);
		if (owned)
			vault_key_free(key);
		if (r == -EMSGSIZE)
			return r;
		if (r < 0)
			return reply_error(rep, r, "could not wrap the %s", noun);
		snprintf(e.kek, sizeof(e.kek), "%s", st->kek);
		snprintf(e.kek_algorithm, sizeof(e.kek_algorithm), "%s", st->kek_algorithm);
	}
	r = vault_seal(srv->vault, context, wrapped ? (const void *)wrapped : plain, wrapped ? wsize : size, &e.sealed,
		       &e.sealed_size);
	if (r < 0)
		return reply_error(rep, r, "could not seal the %s", noun);
	*ret = e;
	return 0;
}

int envelope_open(struct server *srv, const char *noun, const char *label, const char *context,
		  const uint8_t *sealed, size_t size, const char *kek, uint32_t kek_version,
		  const char *kek_algorithm, void **ret, size_t *ret_size, struct reply *rep)
{
	_cleanup_secret_ void *inner = NULL;
	struct vault_key *key = NULL;
	enum vault_alg alg;
	uint32_t version;
	bool owned = false;
	size_t isize;
	int r;

	r = vault_unseal(srv->vault, context, sealed, size, &inner, &isize);
	if (r < 0) {
		log_error_errno(r, "Stored %s %s does not open with the master key: %m", noun, label);
		return reply_error(rep, -EIO, "the stored %s is damaged; see the vmcryptd log", noun);
	}
	if (!kek[0]) {
		*ret = TAKE_PTR(inner);
		*ret_size = isize;
		return 0;
	}
	r = vault_alg_from_string(kek_algorithm, &alg, NULL);
	if (r < 0)
		return reply_error(rep, -EIO, "the stored %s names an unknown algorithm", noun);
	r = keycache_get(srv, kek, kek_version, &version, &key, &owned);
	if (r == -EKEYEXPIRED || r == -ENOENT)
		return reply_error(rep, -EKEYEXPIRED,
				   "the %s is wrapped with key '%s' version %u, which is disabled or gone; "
				   "re-enable it or store the %s again",
				   noun, kek, kek_version, noun);
	if (r < 0)
		return reply_error(rep, r, "could not load the key-encryption key");
	r = vault_key_unwrap(key, alg, inner, isize, ret, ret_size);
	if (owned)
		vault_key_free(key);
	if (r < 0) {
		log_error_errno(r, "Stored %s %s does not unwrap with key %s version %u: %m", noun, label, kek,
				kek_version);
		return reply_error(rep, -EIO, "the stored %s does not unwrap; see the vmcryptd log", noun);
	}
	return 0;
}

void envelope_done(struct envelope *e)
{
	free(e->sealed);
	e->sealed = NULL;
}
