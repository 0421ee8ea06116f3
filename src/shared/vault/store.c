/* The store's backend-independent part: picking a backend and freeing what it returns. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/string-util.h"
#include "shared/vault/store.h"

int store_open(const char *location, struct store **ret)
{
	const struct store_ops *ops = &store_sqlite_ops;
	const char *where = location, *p;
	struct store *s;
	int r;

	if ((p = startswith(location, "sqlite:")))
		where = p;
	else if (startswith(location, "postgresql:") || startswith(location, "postgres:"))
		ops = &store_pg_ops; /* libpq takes the whole URI */

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ops = ops;
	r = ops->open(where, &s->impl);
	if (r < 0) {
		free(s);
		return r;
	}
	*ret = s;
	return 0;
}

struct set_once {
	const char *key, *value;
	char *stored; /* out: the earlier value */
};

static int set_once_run(struct store *s, void *userdata)
{
	struct set_once *t = userdata;
	int r;

	free(t->stored); /* a transaction may run again */
	t->stored = NULL;
	r = store_meta_get(s, t->key, &t->stored);
	if (r == -ENOENT)
		return store_meta_set(s, t->key, t->value);
	return r;
}

int store_meta_set_once(struct store *s, const char *key, const char *value, char **ret_value)
{
	struct set_once t = { key, value, NULL };
	int r = store_transaction(s, set_once_run, &t);

	if (r < 0) {
		free(t.stored);
		return r;
	}
	if (!t.stored) {
		t.stored = strdup(value);
		if (!t.stored)
			return -ENOMEM;
		*ret_value = t.stored;
		return 0;
	}
	*ret_value = t.stored;
	return 1;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	s->ops->close(s->impl);
	free(s);
}

void store_vm_done(struct store_vm *vm)
{
	free(vm->last_report);
	vm->last_report = NULL;
}

void store_key_done(struct store_key *key)
{
	free(key->sealed);
	free(key->public_pem);
	key->sealed = NULL;
	key->public_pem = NULL;
}

void store_secret_done(struct store_secret *secret)
{
	free(secret->sealed);
	secret->sealed = NULL;
}

void store_header_done(struct store_header *header)
{
	free(header->sealed_key);
	free(header->data);
	header->sealed_key = NULL;
	header->data = NULL;
}
