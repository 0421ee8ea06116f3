/* A store backend that times another: each op of struct store_ops goes to the backend vmcryptd
 * opened (SQLite, PostgreSQL) and its latency into a histogram by operation, so every backend is
 * measured the same way and none carries metrics code. A transaction's time is the caller's
 * whole wait: its queue for the writer, its function, the commit and the fsync; the ops it
 * makes are timed on their own too. A listing's time includes its callback's work. */
#include <errno.h>
#include <stdlib.h>

#include "shared/metrics.h"
#include "vmcryptd.h"

/* Every op but open and close, in struct store_ops' order. */
#define TIMED_OPS(X)                                                                                       \
	X(transaction) X(meta_get) X(meta_set) X(vm_insert) X(vm_get) X(vm_get_by_id) X(vm_update) X(vm_delete) \
	X(vm_list) X(settings_get) X(settings_put) X(key_insert) X(key_get) X(key_set_enabled) X(key_list)   \
	X(secret_insert) X(secret_get) X(secret_list) X(header_insert) X(header_get) X(header_list)          \
	X(token_insert) X(token_get) X(token_get_by_id) X(token_revoke) X(token_touch) X(token_list)          \
	X(audit_append) X(audit_append_read) X(audit_list) X(audit_prune)

enum timed_op {
#define X(n) OP_##n,
	TIMED_OPS(X)
#undef X
	_OP_MAX,
};

static const char *const op_names[_OP_MAX] = {
#define X(n) [OP_##n] = #n,
	TIMED_OPS(X)
#undef X
};

/* A new op in struct store_ops must be timed here too: without a wrapper its pointer would be
 * NULL in timed_ops, and vmcryptd would crash on its first call. */
_Static_assert(sizeof(struct store_ops) == sizeof(const char *) + (2 + _OP_MAX) * sizeof(void (*)(void)),
	       "struct store_ops has an op that timed-store.c does not time");

static struct metrics_histogram op_latency[_OP_MAX];

struct timed {
	const struct store_ops *ops; /* the backend's */
	void *impl;
};

#define WRAP(n, params, args)                                                              \
	static int timed_##n params                                                        \
	{                                                                                  \
		struct timed *t = impl;                                                    \
		uint64_t t0 = metrics_now_ns();                                            \
		int r = t->ops->n args;                                                    \
		metrics_histogram_observe(&op_latency[OP_##n], &stats_latency_buckets,     \
					  metrics_now_ns() - t0);                          \
		return r;                                                                  \
	}

WRAP(transaction, (void *impl, struct store *s, store_txn_fn fn, void *u), (t->impl, s, fn, u))
WRAP(meta_get, (void *impl, const char *k, char **ret), (t->impl, k, ret))
WRAP(meta_set, (void *impl, const char *k, const char *v), (t->impl, k, v))
WRAP(vm_insert, (void *impl, const struct store_vm *vm), (t->impl, vm))
WRAP(vm_get, (void *impl, const char *name, struct store_vm *ret), (t->impl, name, ret))
WRAP(vm_get_by_id, (void *impl, const char *id, struct store_vm *ret), (t->impl, id, ret))
WRAP(vm_update, (void *impl, const struct store_vm *vm), (t->impl, vm))
WRAP(vm_delete, (void *impl, const char *name), (t->impl, name))
WRAP(vm_list, (void *impl, store_vm_cb cb, void *u), (t->impl, cb, u))
WRAP(settings_get, (void *impl, const char *vm, struct store_settings *ret), (t->impl, vm, ret))
WRAP(settings_put, (void *impl, const struct store_settings *st), (t->impl, st))
WRAP(key_insert, (void *impl, const struct store_key *k), (t->impl, k))
WRAP(key_get, (void *impl, const char *name, uint32_t v, struct store_key *ret), (t->impl, name, v, ret))
WRAP(key_set_enabled, (void *impl, const char *name, bool on), (t->impl, name, on))
WRAP(key_list, (void *impl, store_key_cb cb, void *u), (t->impl, cb, u))
WRAP(secret_insert, (void *impl, const struct store_secret *sec, uint32_t *v), (t->impl, sec, v))
WRAP(secret_get, (void *impl, const char *vm, const char *vol, uint32_t v, struct store_secret *ret),
     (t->impl, vm, vol, v, ret))
WRAP(secret_list, (void *impl, const char *vm, store_secret_cb cb, void *u), (t->impl, vm, cb, u))
WRAP(header_insert, (void *impl, const struct store_header *h, unsigned keep, uint32_t *v), (t->impl, h, keep, v))
WRAP(header_get, (void *impl, const char *vm, const char *vol, uint32_t v, struct store_header *ret),
     (t->impl, vm, vol, v, ret))
WRAP(header_list, (void *impl, const char *vm, store_header_cb cb, void *u), (t->impl, vm, cb, u))
WRAP(token_insert, (void *impl, const struct store_token *tok), (t->impl, tok))
WRAP(token_get, (void *impl, const char *name, struct store_token *ret), (t->impl, name, ret))
WRAP(token_get_by_id, (void *impl, const char *id, struct store_token *ret), (t->impl, id, ret))
WRAP(token_revoke, (void *impl, const char *name, int64_t when), (t->impl, name, when))
WRAP(token_touch, (void *impl, const char *id, int64_t when), (t->impl, id, when))
WRAP(token_list, (void *impl, store_token_cb cb, void *u), (t->impl, cb, u))
WRAP(audit_append, (void *impl, const struct store_audit *e), (t->impl, e))
WRAP(audit_append_read, (void *impl, const struct store_audit *e), (t->impl, e))
WRAP(audit_list, (void *impl, const char *prefix, int64_t since, enum api_audit_result res, store_audit_cb cb, void *u),
     (t->impl, prefix, since, res, cb, u))
WRAP(audit_prune, (void *impl, int64_t before, uint64_t max_rows, struct store_audit_pruned *ret),
     (t->impl, before, max_rows, ret))

static int timed_open(const char *location, void **ret_impl)
{
	return -EOPNOTSUPP; /* only ever made by timed_store_wrap() */
}

static void timed_close(void *impl)
{
	struct timed *t = impl;

	t->ops->close(t->impl);
	free(t);
}

static const struct store_ops timed_ops = {
	.name = "timed",
	.open = timed_open,
	.close = timed_close,
#define X(n) .n = timed_##n,
	TIMED_OPS(X)
#undef X
};

int timed_store_wrap(struct store *s)
{
	struct timed *t = malloc(sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->ops = s->ops;
	t->impl = s->impl;
	s->ops = &timed_ops;
	s->impl = t;
	return 0;
}

void timed_store_write(struct metrics_text *t)
{
	metrics_text_family(t, "vmcryptd_store_operation_duration_seconds", "histogram",
			    "Store calls by operation (a store_ops entry), whatever the backend: a transaction from its "
			    "call to its commit (queue, work, fsync), a listing with its callbacks' work.");
	for (size_t i = 0; i < _OP_MAX; i++) {
		struct metrics_label l = { "operation", op_names[i] };

		if (metrics_histogram_count(&op_latency[i], &stats_latency_buckets) > 0)
			metrics_text_histogram(t, "vmcryptd_store_operation_duration_seconds", &l, 1, &op_latency[i],
					       &stats_latency_buckets);
	}
}
