/* The vault's persistent store: VMs, encryption settings, keys, secrets, header backups, named
 * tokens, audit events.
 *
 * Handlers see only this interface; a backend (store-sqlite.c, store-pg.c) fills a struct
 * store_ops. Contract for every backend:
 *  - every write is durable when it returns 0 (a crash afterwards loses nothing), except
 *    audit_append_read, which survives a crash of the process but may wait for the next durable
 *    write to survive a power loss;
 *  - writes made inside store_transaction() become visible and durable together, or not at all;
 *    outside one, each write is its own transaction;
 *  - the ops are safe to call from many threads at once.
 * All functions return 0 or -errno: -ENOENT (no such object), -EEXIST (name taken),
 * -EBUSY (store busy beyond its timeout, or concurrent transactions kept conflicting), -EROFS
 * (the database is read-only: a PostgreSQL standby), -ECONNREFUSED / -ECONNRESET (PostgreSQL
 * unreachable, or the connection lost while a COMMIT was under way: its outcome is unknown),
 * -EIO (backend error, logged at debug level). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/api/api.h"
#include "shared/digest.h"
#include "shared/vault/token.h"

#define STORE_SCHEMA_VERSION 4
#define STORE_TEXT_MAX 256
#define STORE_AUDIT_PRUNE_MAX 10000 /* most events one store_audit_prune() call drops */
#define STORE_SOURCE_MAX 48 /* an IPv6 address in text (INET6_ADDRSTRLEN) and a NUL */

enum store_vm_state {
	STORE_VM_REGISTERED, /* has an enrollment token, no credential yet */
	STORE_VM_ENROLLED,
	STORE_VM_REVOKED,
};

struct store_vm {
	char name[API_NAME_MAX + 1];
	char id[TOKEN_ID_LEN + 1];
	enum store_vm_state state;
	uint8_t enroll_hash[TOKEN_HASH_SIZE]; /* valid in REGISTERED */
	uint8_t cred_hash[TOKEN_HASH_SIZE];   /* valid in ENROLLED and REVOKED */
	char hostname[STORE_TEXT_MAX];
	char agent_version[STORE_TEXT_MAX];
	bool extension_removed;
	int64_t created;
	int64_t enrolled;
	int64_t last_report_time; /* 0: never */
	char *last_report;        /* JSON text of the last status report, malloc'd, or NULL */
};

struct store_settings {
	char vm[API_NAME_MAX + 1];
	unsigned enabled;    /* API_VOLUME_* currently enabled */
	unsigned last_type;  /* volume type of the last enable or disable */
	bool format_all;
	char kek[API_NAME_MAX + 1]; /* "" when none */
	char kek_algorithm[16];
	uint64_t sequence;
	int64_t updated;
};

struct store_key {
	char name[API_NAME_MAX + 1];
	uint32_t version;
	char kty[8];   /* "RSA" or "AES" */
	unsigned size; /* bits */
	bool enabled;
	int64_t created;
	uint8_t *sealed; /* private material sealed by the master key, malloc'd */
	size_t sealed_size;
	char *public_pem; /* malloc'd, NULL for AES */
};

struct store_secret {
	char vm[API_NAME_MAX + 1];
	char volume[API_NAME_MAX + 1];
	uint32_t version;
	char content_type[16]; /* "BEK" or "Wrapped BEK" */
	char file_name[STORE_TEXT_MAX];
	char kek[API_NAME_MAX + 1];
	uint32_t kek_version;
	char kek_algorithm[16];
	int64_t created;
	uint8_t *sealed; /* the value (wrapped or not) sealed by the master key, malloc'd */
	size_t sealed_size;
};

/* One version of a volume's LUKS2 header backup (docs/vmcryptd.md "Header backups"). The header
 * is encrypted under a random data key of its own (data); the data key is wrapped by the VM's
 * KEK or not and sealed by the master key (sealed_key), as a secret's value is. */
struct store_header {
	char vm[API_NAME_MAX + 1];
	char volume[API_NAME_MAX + 1];
	uint32_t version;
	uint64_t size;                     /* bytes of the header */
	uint8_t sha256[DIGEST_SHA256_SIZE]; /* of the header, as the VM sent it */
	int64_t created;
	char kek[API_NAME_MAX + 1];        /* "" when the data key is not wrapped */
	uint32_t kek_version;
	char kek_algorithm[16];
	uint8_t *sealed_key; /* malloc'd; NULL in listings */
	size_t sealed_key_size;
	uint8_t *data;       /* malloc'd; NULL in listings */
	size_t data_size;
};

/* A named token with a role (docs/vmcryptd.md "Roles"); its text is never stored, only its hash. */
struct store_token {
	char name[API_NAME_MAX + 1];
	char id[TOKEN_ID_LEN + 1];
	enum api_role role; /* _API_ROLE_INVALID for a word this program does not know */
	uint8_t hash[TOKEN_HASH_SIZE];
	int64_t created;
	int64_t last_used; /* 0: never */
	int64_t revoked;   /* when; 0: not revoked */
};

struct store_audit {
	int64_t id;
	int64_t time;
	char actor[STORE_TEXT_MAX];
	char action[64];
	char object[STORE_TEXT_MAX];
	char result[STORE_TEXT_MAX];
	char source[STORE_SOURCE_MAX]; /* the client's address; "" for the server's own events */
};

/* What store_audit_prune() dropped. */
struct store_audit_pruned {
	uint64_t count;
	int64_t oldest, newest; /* times of the oldest and the newest dropped event; 0 when none */
};

/* List callbacks: return < 0 to stop the listing with that error. The object is only valid
 * during the call. */
typedef int (*store_vm_cb)(const struct store_vm *vm, void *userdata);
typedef int (*store_key_cb)(const struct store_key *key, void *userdata);
typedef int (*store_secret_cb)(const struct store_secret *secret, void *userdata);
typedef int (*store_audit_cb)(const struct store_audit *event, void *userdata);
typedef int (*store_header_cb)(const struct store_header *header, void *userdata);
typedef int (*store_token_cb)(const struct store_token *token, void *userdata);

struct store;
typedef int (*store_txn_fn)(struct store *s, void *userdata);

struct store_ops {
	const char *name;
	int (*open)(const char *location, void **ret_impl);
	void (*close)(void *impl);
	/* Runs fn in one write transaction; fn's store calls join it. fn may run on another thread
	 * (backends may commit several callers' transactions together), so it must not rely on
	 * thread-local state. fn may also run more than once (PostgreSQL rolls back a transaction
	 * that conflicted with a concurrent one, and the backend runs it again), so its only effects
	 * are its store calls and out-parameters it sets afresh on each run. fn < 0 rolls back its
	 * own changes and is returned. */
	int (*transaction)(void *impl, struct store *s, store_txn_fn fn, void *userdata);

	int (*meta_get)(void *impl, const char *key, char **ret_value);
	int (*meta_set)(void *impl, const char *key, const char *value);

	int (*vm_insert)(void *impl, const struct store_vm *vm);
	int (*vm_get)(void *impl, const char *name, struct store_vm *ret);
	int (*vm_get_by_id)(void *impl, const char *id, struct store_vm *ret);
	int (*vm_update)(void *impl, const struct store_vm *vm); /* by name; every field but name, id */
	int (*vm_delete)(void *impl, const char *name); /* with its settings, secrets, header backups */
	int (*vm_list)(void *impl, store_vm_cb cb, void *userdata);

	int (*settings_get)(void *impl, const char *vm, struct store_settings *ret);
	int (*settings_put)(void *impl, const struct store_settings *settings);

	int (*key_insert)(void *impl, const struct store_key *key);
	/* version 0: the newest version */
	int (*key_get)(void *impl, const char *name, uint32_t version, struct store_key *ret);
	int (*key_set_enabled)(void *impl, const char *name, bool enabled); /* every version */
	int (*key_list)(void *impl, store_key_cb cb, void *userdata);       /* newest version of each */

	/* Assigns the next version of (vm, volume) into *ret_version. */
	int (*secret_insert)(void *impl, const struct store_secret *secret, uint32_t *ret_version);
	int (*secret_get)(void *impl, const char *vm, const char *volume, uint32_t version,
			  struct store_secret *ret);
	int (*secret_list)(void *impl, const char *vm, store_secret_cb cb, void *userdata); /* vm NULL: all */

	/* Assigns the next version of (vm, volume) into *ret_version, and drops every version of
	 * (vm, volume) but the newest keep (keep >= 1) in the same transaction: an old version goes
	 * only with the commit of the new one, never before it. */
	int (*header_insert)(void *impl, const struct store_header *header, unsigned keep, uint32_t *ret_version);
	/* version 0: the newest. Fills every field, data and sealed_key included. */
	int (*header_get)(void *impl, const char *vm, const char *volume, uint32_t version,
			  struct store_header *ret);
	/* Every stored version, by vm, volume and version; metadata only (no data, no sealed_key).
	 * vm NULL: all VMs. */
	int (*header_list)(void *impl, const char *vm, store_header_cb cb, void *userdata);

	/* -EEXIST when the name or the id is taken (a revoked token keeps its name). */
	int (*token_insert)(void *impl, const struct store_token *token);
	int (*token_get)(void *impl, const char *name, struct store_token *ret);
	int (*token_get_by_id)(void *impl, const char *id, struct store_token *ret);
	/* Sets revoked to when. -ENOENT (no such token), -EALREADY (revoked already: unchanged). */
	int (*token_revoke)(void *impl, const char *name, int64_t when);
	/* Sets last_used to when, durable like audit_append_read: a use is not worth a disk flush
	 * of its own. -ENOENT when no token has the id. */
	int (*token_touch)(void *impl, const char *id, int64_t when);
	int (*token_list)(void *impl, store_token_cb cb, void *userdata); /* by name, revoked ones too */

	int (*audit_append)(void *impl, const struct store_audit *event);
	/* For events that record a read, not a change: committed before it returns, so it survives
	 * the process dying (kill -9), but it need not wait for a disk flush; the next durable write
	 * flushes it. Inside store_transaction() it joins the transaction like any write. */
	int (*audit_append_read)(void *impl, const struct store_audit *event);
	/* The newest 10,000 events matching all of: object is object_prefix or below it (NULL: any),
	 * time >= since, result matches (see enum api_audit_result); oldest first. */
	int (*audit_list)(void *impl, const char *object_prefix, int64_t since, enum api_audit_result result,
			  store_audit_cb cb, void *userdata);
	/* Retention: drops events older than before (0: none by age) and the oldest beyond the newest
	 * max_rows (0: no limit), at most STORE_AUDIT_PRUNE_MAX of them per call, so one call holds
	 * the writer briefly; call again while ret->count is STORE_AUDIT_PRUNE_MAX. Over max_rows it
	 * drops one more, leaving room for the event that tells of it, so a table at max_rows stays
	 * untouched. The newest event always stays, so ids keep growing. Says what it dropped in
	 * *ret. */
	int (*audit_prune)(void *impl, int64_t before, uint64_t max_rows, struct store_audit_pruned *ret);
};

struct store {
	const struct store_ops *ops;
	void *impl;
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;

/* Opens the backend named by location: "sqlite:PATH" or a plain path (SQLite), or a libpq
 * connection URI "postgresql://..." (or "postgres://..."), which must not hold a password.
 * Creates and migrates the schema as needed. Returns 0, -EPROTONOSUPPORT (a schema newer than
 * this program), -EINVAL (a password in the URI or in PGPASSWORD), -ECONNREFUSED, -EACCES,
 * -ENOENT, or -errno. */
int store_open(const char *location, struct store **ret);
void store_close(struct store *s);

/* Sets meta key to value unless it has one; the first of several vmcryptd on one store wins.
 * *ret_value (malloc'd) is the value stored now. Returns 0 (value stored), 1 (an earlier value
 * kept), or -errno. */
int store_meta_set_once(struct store *s, const char *key, const char *value, char **ret_value);

void store_vm_done(struct store_vm *vm);
void store_key_done(struct store_key *key);
void store_secret_done(struct store_secret *secret);
void store_header_done(struct store_header *header);

static inline int store_transaction(struct store *s, store_txn_fn fn, void *userdata)
{
	return s->ops->transaction(s->impl, s, fn, userdata);
}
static inline int store_meta_get(struct store *s, const char *key, char **ret)
{
	return s->ops->meta_get(s->impl, key, ret);
}
static inline int store_meta_set(struct store *s, const char *key, const char *value)
{
	return s->ops->meta_set(s->impl, key, value);
}
static inline int store_vm_insert(struct store *s, const struct store_vm *vm)
{
	return s->ops->vm_insert(s->impl, vm);
}
static inline int store_vm_get(struct store *s, const char *name, struct store_vm *ret)
{
	return s->ops->vm_get(s->impl, name, ret);
}
static inline int store_vm_get_by_id(struct store *s, const char *id, struct store_vm *ret)
{
	return s->ops->vm_get_by_id(s->impl, id, ret);
}
static inline int store_vm_update(struct store *s, const struct store_vm *vm)
{
	return s->ops->vm_update(s->impl, vm);
}
static inline int store_vm_delete(struct store *s, const char *name)
{
	return s->ops->vm_delete(s->impl, name);
}
static inline int store_vm_list(struct store *s, store_vm_cb cb, void *userdata)
{
	return s->ops->vm_list(s->impl, cb, userdata);
}
static inline int store_settings_get(struct store *s, const char *vm, struct store_settings *ret)
{
	return s->ops->settings_get(s->impl, vm, ret);
}
static inline int store_settings_put(struct store *s, const struct store_settings *st)
{
	return s->ops->settings_put(s->impl, st);
}
static inline int store_key_insert(struct store *s, const struct store_key *key)
{
	return s->ops->key_insert(s->impl, key);
}
static inline int store_key_get(struct store *s, const char *name, uint32_t version, struct store_key *ret)
{
	return s->ops->key_get(s->impl, name, version, ret);
}
static inline int store_key_set_enabled(struct store *s, const char *name, bool enabled)
{
	return s->ops->key_set_enabled(s->impl, name, enabled);
}
static inline int store_key_list(struct store *s, store_key_cb cb, void *userdata)
{
	return s->ops->key_list(s->impl, cb, userdata);
}
static inline int store_secret_insert(struct store *s, const struct store_secret *sec, uint32_t *ret_version)
{
	return s->ops->secret_insert(s->impl, sec, ret_version);
}
static inline int store_secret_get(struct store *s, const char *vm, const char *volume, uint32_t version,
				   struct store_secret *ret)
{
	return s->ops->secret_get(s->impl, vm, volume, version, ret);
}
static inline int store_secret_list(struct store *s, const char *vm, store_secret_cb cb, void *userdata)
{
	return s->ops->secret_list(s->impl, vm, cb, userdata);
}
static inline int store_header_insert(struct store *s, const struct store_header *h, unsigned keep,
				      uint32_t *ret_version)
{
	return s->ops->header_insert(s->impl, h, keep, ret_version);
}
static inline int store_header_get(struct store *s, const char *vm, const char *volume, uint32_t version,
				   struct store_header *ret)
{
	return s->ops->header_get(s->impl, vm, volume, version, ret);
}
static inline int store_header_list(struct store *s, const char *vm, store_header_cb cb, void *userdata)
{
	return s->ops->header_list(s->impl, vm, cb, userdata);
}
static inline int store_token_insert(struct store *s, const struct store_token *t)
{
	return s->ops->token_insert(s->impl, t);
}
static inline int store_token_get(struct store *s, const char *name, struct store_token *ret)
{
	return s->ops->token_get(s->impl, name, ret);
}
static inline int store_token_get_by_id(struct store *s, const char *id, struct store_token *ret)
{
	return s->ops->token_get_by_id(s->impl, id, ret);
}
static inline int store_token_revoke(struct store *s, const char *name, int64_t when)
{
	return s->ops->token_revoke(s->impl, name, when);
}
static inline int store_token_touch(struct store *s, const char *id, int64_t when)
{
	return s->ops->token_touch(s->impl, id, when);
}
static inline int store_token_list(struct store *s, store_token_cb cb, void *userdata)
{
	return s->ops->token_list(s->impl, cb, userdata);
}
static inline int store_audit_append(struct store *s, const struct store_audit *e)
{
	return s->ops->audit_append(s->impl, e);
}
static inline int store_audit_append_read(struct store *s, const struct store_audit *e)
{
	return s->ops->audit_append_read(s->impl, e);
}
static inline int store_audit_list(struct store *s, const char *object_prefix, int64_t since,
				   enum api_audit_result result, store_audit_cb cb, void *userdata)
{
	return s->ops->audit_list(s->impl, object_prefix, since, result, cb, userdata);
}
static inline int store_audit_prune(struct store *s, int64_t before, uint64_t max_rows,
				    struct store_audit_pruned *ret)
{
	return s->ops->audit_prune(s->impl, before, max_rows, ret);
}
