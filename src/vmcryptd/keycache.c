/* Loaded key-encryption keys, parsed once per (name, version) and kept for the life of the
 * process: parsing an RSA key costs more than the decryption it is for. The store stays the
 * authority: every use re-reads the key's row, so a disabled key is refused at once even though
 * its parsed form stays cached. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/secret.h"
#include "vmcryptd.h"

/* Hard cap on cached versions; past it keys are parsed per use (still correct, just slower). */
#define KEYCACHE_MAX 1024

struct entry {
	char name[API_NAME_MAX + 1];
	uint32_t version;
	struct vault_key *key;
	struct entry *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;
static unsigned n_entries;

static struct vault_key *lookup(const char *name, uint32_t version)
{
	for (struct entry *e = entries; e; e = e->next)
		if (e->version == version && streq(e->name, name))
			return e->key;
	return NULL;
}

int keycache_get(struct server *srv, const char *name, uint32_t version, uint32_t *ret_version,
		 struct vault_key **ret_key, bool *ret_owned)
{
	_cleanup_secret_ void *material = NULL;
	struct store_key row = {};
	struct vault_key *k, *found;
	struct entry *e;
	enum vault_kty kty;
	char context[128];
	size_t size;
	int r;

	r = store_key_get(srv->store, name, version, &row);
	if (r < 0)
		return r;
	if (!row.enabled) {
		store_key_done(&row);
		return -EKEYEXPIRED;
	}
	*ret_version = row.version;

	pthread_mutex_lock(&lock);
	k = lookup(row.name, row.version);
	pthread_mutex_unlock(&lock);
	if (k) {
		store_key_done(&row);
		*ret_key = k;
		*ret_owned = false;
		return 0;
	}

	r = vault_kty_from_string(row.kty, &kty);
	if (r >= 0) {
		snprintf(context, sizeof(context), "key:%s:%u", row.name, row.version);
		r = vault_unseal(srv->vault, context, row.sealed, row.sealed_size, &material, &size);
	}
	if (r >= 0)
		r = vault_key_load(kty, material, size, &k);
	if (r < 0) {
		log_error_errno(r, "Key '%s' version %u does not open with the master key: %m", row.name, row.version);
		store_key_done(&row);
		return -EIO;
	}

	pthread_mutex_lock(&lock);
	found = lookup(row.name, row.version);
	if (found) {
		/* Another request loaded it meanwhile. */
		vault_key_free(k);
		k = found;
		*ret_owned = false;
	} else if (n_entries < KEYCACHE_MAX && (e = calloc(1, sizeof(*e)))) {
		snprintf(e->name, sizeof(e->name), "%s", row.name);
		e->version = row.version;
		e->key = k;
		e->next = entries;
		entries = e;
		n_entries++;
		*ret_owned = false;
	} else {
		*ret_owned = true;
	}
	pthread_mutex_unlock(&lock);
	store_key_done(&row);
	*ret_key = k;
	return 0;
}

void keycache_clear(void)
{
	pthread_mutex_lock(&lock);
	while (entries) {
		struct entry *e = entries;
		entries = e->next;
		vault_key_free(e->key);
		free(e);
	}
	n_entries = 0;
	pthread_mutex_unlock(&lock);
}
