/* Unit tests for the store interface: every object, transactions and their rollback, commits
 * under concurrency, persistence, schema versioning. Each test runs on the SQLite backend and,
 * when VMCRYPT_TEST_PG_URI names a PostgreSQL database (tests/integration/test-server-postgresql.sh
 * starts a server and sets it), again on the PostgreSQL backend, each time on an empty schema. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "basic/macro.h"
#include "shared/vault/store.h"

enum backend { SQLITE, PG };
static const enum backend backend_sqlite = SQLITE, backend_pg = PG;

struct fixture {
	enum backend backend;
	char dir[64];
	char path[512]; /* the store's location: a file, or the PostgreSQL URI */
	struct store *s;
};

/* Runs sql on the store at location, beside the backend: what an operator or damage would do. */
static int sql_exec(enum backend b, const char *location, const char *sql)
{
	if (b == SQLITE) {
		sqlite3 *db;
		int rc;

		if (sqlite3_open(location, &db) != SQLITE_OK)
			return -1;
		sqlite3_busy_timeout(db, 5000);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		sqlite3_close(db);
		return rc == SQLITE_OK ? 0 : -1;
	} else {
		PGconn *pg = PQconnectdb(location);
		PGresult *res = PQexec(pg, sql);
		int r = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : -1;

		if (r < 0)
			fprintf(stderr, "PostgreSQL: %s: %s", sql, PQerrorMessage(pg));
		PQclear(res);
		PQfinish(pg);
		return r;
	}
}

/* The one integer sql returns, or -1. */
static long sql_long(enum backend b, const char *location, const char *sql)
{
	long v = -1;

	if (b == SQLITE) {
		sqlite3 *db;
		sqlite3_stmt *q;

		if (sqlite3_open(location, &db) != SQLITE_OK)
			return -1;
		if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK) {
			if (sqlite3_step(q) == SQLITE_ROW)
				v = sqlite3_column_int(q, 0);
			sqlite3_finalize(q);
		}
		sqlite3_close(db);
	} else {
		PGconn *pg = PQconnectdb(location);
		PGresult *res = PQexec(pg, sql);

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			v = atol(PQgetvalue(res, 0, 0));
		PQclear(res);
		PQfinish(pg);
	}
	return v;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->backend = *state ? *(const enum backend *)*state : SQLITE;
	snprintf(f->dir, sizeof(f->dir), "/tmp/vmcrypt-store.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	if (f->backend == PG) {
		/* An empty schema for each test. */
		snprintf(f->path, sizeof(f->path), "%s", getenv("VMCRYPT_TEST_PG_URI"));
		if (sql_exec(PG, f->path, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public") < 0)
			return -1;
	} else {
		snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
	}
	if (store_open(f->path, &f->s) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static struct store_vm make_vm(const char *name, const char *id)
{
	struct store_vm vm = {};

	snprintf(vm.name, sizeof(vm.name), "%s", name);
	snprintf(vm.id, sizeof(vm.id), "%s", id);
	vm.state = STORE_VM_REGISTERED;
	memset(vm.enroll_hash, 0xee, sizeof(vm.enroll_hash));
	vm.created = 1000;
	return vm;
}

static int count_vm(const struct store_vm *vm, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static void test_vms(void **state)
{
	struct fixture *f = *state;
	struct store_vm a = make_vm("a", "0000000000000000000000000000000a"), got = {};
	int n = 0;

	assert_int_equal(store_vm_insert(f->s, &a), 0);
	assert_int_equal(store_vm_insert(f->s, &a), -EEXIST);
	assert_int_equal(store_vm_get(f->s, "a", &got), 0);
	assert_string_equal(got.id, a.id);
	assert_int_equal(got.state, STORE_VM_REGISTERED);
	assert_memory_equal(got.enroll_hash, a.enroll_hash, TOKEN_HASH_SIZE);
	assert_null(got.last_report);
	store_vm_done(&got);
	assert_int_equal(store_vm_get(f->s, "b", &got), -ENOENT);

	a.state = STORE_VM_ENROLLED;
	memset(a.cred_hash, 0xcc, sizeof(a.cred_hash));
	snprintf(a.hostname, sizeof(a.hostname), "host-a");
	a.last_report = (char *)"{\"OsVolumeEncrypted\":\"Encrypted\"}";
	a.last_report_time = 2000;
	assert_int_equal(store_vm_update(f->s, &a), 0);
	assert_int_equal(store_vm_get_by_id(f->s, "0000000000000000000000000000000a", &got), 0);
	assert_string_equal(got.name, "a");
	assert_int_equal(got.state, STORE_VM_ENROLLED);
	assert_memory_equal(got.cred_hash, a.cred_hash, TOKEN_HASH_SIZE);
	assert_string_equal(got.hostname, "host-a");
	assert_string_equal(got.last_report, a.last_report);
	assert_int_equal(got.last_report_time, 2000);
	store_vm_done(&got);

	struct store_vm b = make_vm("b", "0000000000000000000000000000000b");
	assert_int_equal(store_vm_insert(f->s, &b), 0);
	struct store_vm dup_id = make_vm("c", "0000000000000000000000000000000b");
	assert_int_equal(store_vm_insert(f->s, &dup_id), -EEXIST);
	assert_int_equal(store_vm_list(f->s, count_vm, &n), 0);
	assert_int_equal(n, 2);

	struct store_vm ghost = make_vm("ghost", "000000000000000000000000000000ff");
	assert_int_equal(store_vm_update(f->s, &ghost), -ENOENT);
	assert_int_equal(store_vm_delete(f->s, "ghost"), -ENOENT);
}

static void test_settings_and_delete_cascade(void **state)
{
	struct fixture *f = *state;
	struct store_vm a = make_vm("a", "0000000000000000000000000000000a");
	struct store_settings st = { .vm = "a", .enabled = 3, .last_type = 3, .sequence = 7 }, got;
	struct store_secret sec = { .vm = "a", .volume = "os", .content_type = "BEK" };
	uint8_t blob[4] = { 1, 2, 3, 4 };
	uint32_t v;

	assert_int_equal(store_settings_get(f->s, "a", &got), -ENOENT);
	assert_int_equal(store_vm_insert(f->s, &a), 0);
	snprintf(st.kek, sizeof(st.kek), "k1");
	snprintf(st.kek_algorithm, sizeof(st.kek_algorithm), "RSA-OAEP-256");
	assert_int_equal(store_settings_put(f->s, &st), 0);
	st.sequence = 8;
	assert_int_equal(store_settings_put(f->s, &st), 0);
	assert_int_equal(store_settings_get(f->s, "a", &got), 0);
	assert_int_equal(got.enabled, 3);
	assert_int_equal(got.sequence, 8);
	assert_string_equal(got.kek, "k1");
	sec.sealed = blob;
	sec.sealed_size = 4;
	assert_int_equal(store_secret_insert(f->s, &sec, &v), 0);

	assert_int_equal(store_vm_delete(f->s, "a"), 0);
	assert_int_equal(store_settings_get(f->s, "a", &got), -ENOENT);
	struct store_secret gs;
	assert_int_equal(store_secret_get(f->s, "a", "os", 0, &gs), -ENOENT);
}

static int count_key(const struct store_key *k, void *userdata)
{
	int *n = userdata;
	(*n)++;
	if (strcmp(k->name, "k1") == 0)
		assert_int_equal(k->version, 2);
	return 0;
}

static void test_keys(void **state)
{
	struct fixture *f = *state;
	uint8_t blob[3] = { 9, 8, 7 };
	struct store_key k = { .name = "k1", .version = 1, .kty = "RSA", .size = 2048, .enabled = true }, got;
	int n = 0;

	k.sealed = blob;
	k.sealed_size = 3;
	k.public_pem = (char *)"PEM";
	assert_int_equal(store_key_insert(f->s, &k), 0);
	assert_int_equal(store_key_insert(f->s, &k), -EEXIST);
	k.version = 2;
	assert_int_equal(store_key_insert(f->s, &k), 0);
	struct store_key k2 = { .name = "k2", .version = 1, .kty = "AES", .size = 256, .enabled = true };
	k2.sealed = blob;
	k2.sealed_size = 3;
	assert_int_equal(store_key_insert(f->s, &k2), 0);

	assert_int_equal(store_key_get(f->s, "k1", 0, &got), 0);
	assert_int_equal(got.version, 2);
	assert_int_equal(got.sealed_size, 3);
	assert_memory_equal(got.sealed, blob, 3);
	assert_string_equal(got.public_pem, "PEM");
	store_key_done(&got);
	assert_int_equal(store_key_get(f->s, "k1", 1, &got), 0);
	assert_int_equal(got.version, 1);
	store_key_done(&got);
	assert_int_equal(store_key_get(f->s, "k2", 0, &got), 0);
	assert_null(got.public_pem);
	store_key_done(&got);
	assert_int_equal(store_key_get(f->s, "k1", 3, &got), -ENOENT);

	assert_int_equal(store_key_set_enabled(f->s, "k1", false), 0);
	assert_int_equal(store_key_get(f->s, "k1", 1, &got), 0);
	assert_false(got.enabled);
	store_key_done(&got);
	assert_int_equal(store_key_set_enabled(f->s, "nope", false), -ENOENT);
	assert_int_equal(store_key_list(f->s, count_key, &n), 0);
	assert_int_equal(n, 2);
}

static int count_secret(const struct store_secret *s, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static void test_secrets(void **state)
{
	struct fixture *f = *state;
	struct store_vm a = make_vm("a", "0000000000000000000000000000000a");
	struct store_vm b = make_vm("b", "0000000000000000000000000000000b");
	uint8_t v1[2] = { 1, 1 }, v2[3] = { 2, 2, 2 };
	struct store_secret s = { .vm = "a", .volume = "data0", .content_type = "Wrapped BEK", .kek = "k1",
				  .kek_version = 2, .kek_algorithm = "RSA-OAEP-256" },
			    got;
	uint32_t version;
	int n = 0;

	assert_int_equal(store_vm_insert(f->s, &a), 0);
	assert_int_equal(store_vm_insert(f->s, &b), 0);
	s.sealed = v1;
	s.sealed_size = 2;
	assert_int_equal(store_secret_insert(f->s, &s, &version), 0);
	assert_int_equal(version, 1);
	s.sealed = v2;
	s.sealed_size = 3;
	assert_int_equal(store_secret_insert(f->s, &s, &version), 0);
	assert_int_equal(version, 2);
	snprintf(s.vm, sizeof(s.vm), "b");
	assert_int_equal(store_secret_insert(f->s, &s, &version), 0);
	assert_int_equal(version, 1);

	assert_int_equal(store_secret_get(f->s, "a", "data0", 0, &got), 0);
	assert_int_equal(got.version, 2);
	assert_int_equal(got.sealed_size, 3);
	assert_string_equal(got.kek, "k1");
	assert_int_equal(got.kek_version, 2);
	assert_string_equal(got.content_type, "Wrapped BEK");
	store_secret_done(&got);
	assert_int_equal(store_secret_get(f->s, "a", "data0", 1, &got), 0);
	assert_int_equal(got.sealed_size, 2);
	store_secret_done(&got);
	assert_int_equal(store_secret_get(f->s, "a", "data1", 0, &got), -ENOENT);

	assert_int_equal(store_secret_list(f->s, NULL, count_secret, &n), 0);
	assert_int_equal(n, 2); /* newest version per (vm, volume) */
	n = 0;
	assert_int_equal(store_secret_list(f->s, "b", count_secret, &n), 0);
	assert_int_equal(n, 1);
}

static int collect_audit(const struct store_audit *e, void *userdata)
{
	char *buf = userdata;
	strcat(buf, e->object);
	strcat(buf, ";");
	return 0;
}

static void test_audit(void **state)
{
	struct fixture *f = *state;
	static const char *const objects[] = { "vm/a", "vm/a/secret/os", "vm/ab", "key/k", "vm/a_b" };
	char buf[512] = "";

	for (size_t i = 0; i < 5; i++) {
		struct store_audit e = { .time = 100 + (int64_t)i };
		snprintf(e.actor, sizeof(e.actor), "admin");
		snprintf(e.action, sizeof(e.action), "x");
		snprintf(e.object, sizeof(e.object), "%s", objects[i]);
		snprintf(e.result, sizeof(e.result), "ok");
		assert_int_equal(store_audit_append(f->s, &e), 0);
	}
	assert_int_equal(store_audit_list(f->s, "vm/a", 0, API_AUDIT_ANY, collect_audit, buf), 0);
	/* "vm/ab" and "vm/a_b" are other VMs, not children of vm/a. */
	assert_string_equal(buf, "vm/a;vm/a/secret/os;");
	buf[0] = 0;
	assert_int_equal(store_audit_list(f->s, NULL, 103, API_AUDIT_ANY, collect_audit, buf), 0);
	assert_string_equal(buf, "key/k;vm/a_b;");
}

static struct store_audit make_event(int64_t time, const char *object, const char *result, const char *source)
{
	struct store_audit e = { .time = time };

	snprintf(e.actor, sizeof(e.actor), "anonymous");
	snprintf(e.action, sizeof(e.action), "x");
	snprintf(e.object, sizeof(e.object), "%s", object);
	snprintf(e.result, sizeof(e.result), "%s", result);
	snprintf(e.source, sizeof(e.source), "%s", source);
	return e;
}

static int collect_audit_full(const struct store_audit *e, void *userdata)
{
	char *buf = userdata;
	snprintf(buf + strlen(buf), 1024 - strlen(buf), "%lld %s %s %s;", (long long)e->time, e->object, e->result,
		 e->source[0] ? e->source : "-");
	return 0;
}

static void test_audit_source_and_result(void **state)
{
	struct fixture *f = *state;
	static const char *const results[] = { "ok", "ok: version 2", "denied: invalid credential", "failed",
						"not found", "okay" };
	struct store_audit e;
	char buf[1024] = "";

	for (size_t i = 0; i < ELEMENTSOF(results); i++) {
		e = make_event(10 + (int64_t)i, "vm/a", results[i], i % 2 ? "2001:db8::7" : "192.0.2.7");
		assert_int_equal(store_audit_append(f->s, &e), 0);
	}
	/* The source survives the round trip. */
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, collect_audit_full, buf), 0);
	assert_string_equal(buf, "10 vm/a ok 192.0.2.7;11 vm/a ok: version 2 2001:db8::7;"
				 "12 vm/a denied: invalid credential 192.0.2.7;13 vm/a failed 2001:db8::7;"
				 "14 vm/a not found 192.0.2.7;15 vm/a okay 2001:db8::7;");
	/* ok is "ok" or "ok: ..."; denied is everything else ("okay" is not ok). */
	buf[0] = 0;
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_OK, collect_audit_full, buf), 0);
	assert_string_equal(buf, "10 vm/a ok 192.0.2.7;11 vm/a ok: version 2 2001:db8::7;");
	buf[0] = 0;
	assert_int_equal(store_audit_list(f->s, "vm/a", 13, API_AUDIT_DENIED, collect_audit_full, buf), 0);
	assert_string_equal(buf, "13 vm/a failed 2001:db8::7;14 vm/a not found 192.0.2.7;15 vm/a okay 2001:db8::7;");
	assert_int_equal(store_audit_list(f->s, NULL, 0, _API_AUDIT_RESULT_MAX, collect_audit_full, buf), -EINVAL);
	assert_int_equal(api_audit_result_from_string("denied"), API_AUDIT_DENIED);
	assert_int_equal(api_audit_result_from_string("ok"), API_AUDIT_OK);
	assert_int_equal(api_audit_result_from_string("Denied"), _API_AUDIT_RESULT_INVALID);
	assert_string_equal(api_audit_result_to_string(API_AUDIT_ANY), "any");
}

static int64_t last_id;
static int note_id(const struct store_audit *e, void *userdata)
{
	last_id = e->id;
	(*(unsigned *)userdata)++;
	return 0;
}

static void test_audit_prune(void **state)
{
	struct fixture *f = *state;
	struct store_audit_pruned p;
	struct store_audit e;
	char buf[1024] = "";
	unsigned n = 0;
	int64_t id_before;

	for (int i = 0; i < 10; i++) {
		e = make_event(100 + i, "vm/a", "ok", "192.0.2.7");
		assert_int_equal(store_audit_append(f->s, &e), 0);
	}
	/* Nothing asked, nothing dropped. */
	assert_int_equal(store_audit_prune(f->s, 0, 0, &p), 0);
	assert_int_equal(p.count, 0);
	assert_int_equal(store_audit_prune(f->s, 50, 100, &p), 0);
	assert_int_equal(p.count, 0);

	/* By age: times 100..102 are older than 103. */
	assert_int_equal(store_audit_prune(f->s, 103, 0, &p), 0);
	assert_int_equal(p.count, 3);
	assert_int_equal(p.oldest, 100);
	assert_int_equal(p.newest, 102);

	/* By size: 7 left (103..109), at most 4 wanted: 3 go, and one more to leave room for the
	 * event telling of it. */
	assert_int_equal(store_audit_prune(f->s, 0, 4, &p), 0);
	assert_int_equal(p.count, 4);
	assert_int_equal(p.oldest, 103);
	assert_int_equal(p.newest, 106);
	e = make_event(110, "audit", "ok: dropped 4 events", "");
	assert_int_equal(store_audit_append(f->s, &e), 0);
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, collect_audit_full, buf), 0);
	assert_string_equal(buf, "107 vm/a ok 192.0.2.7;108 vm/a ok 192.0.2.7;109 vm/a ok 192.0.2.7;"
				 "110 audit ok: dropped 4 events -;");
	/* At the cap, another pass drops nothing. */
	assert_int_equal(store_audit_prune(f->s, 0, 4, &p), 0);
	assert_int_equal(p.count, 0);

	/* Both rules at once, and everything too old: the newest event stays, so ids keep
	 * growing and a reader that remembers the last id it saw misses nothing. */
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, note_id, &n), 0);
	id_before = last_id;
	assert_int_equal(store_audit_prune(f->s, 1000, 2, &p), 0);
	assert_int_equal(p.count, 3);
	assert_int_equal(p.newest, 109);
	e = make_event(111, "vm/a", "ok", "");
	assert_int_equal(store_audit_append(f->s, &e), 0);
	n = 0;
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, note_id, &n), 0);
	assert_int_equal(n, 2);
	assert_true(last_id > id_before);
}

static int begin_fn(struct store *s, void *userdata)
{
	int n = *(int *)userdata;

	for (int i = 0; i < n; i++) {
		struct store_audit e = make_event(i, "vm/a", "denied: x", "192.0.2.7");
		int r = store_audit_append_read(s, &e);
		if (r < 0)
			return r;
	}
	return 0;
}

static void test_audit_prune_in_chunks(void **state)
{
	struct fixture *f = *state;
	struct store_audit_pruned p;
	int n = STORE_AUDIT_PRUNE_MAX + 5000;
	unsigned rows = 0;

	assert_int_equal(store_transaction(f->s, begin_fn, &n), 0);
	/* One call drops at most STORE_AUDIT_PRUNE_MAX, the oldest. */
	assert_int_equal(store_audit_prune(f->s, 1000000, 0, &p), 0);
	assert_int_equal(p.count, STORE_AUDIT_PRUNE_MAX);
	assert_int_equal(p.oldest, 0);
	assert_int_equal(p.newest, STORE_AUDIT_PRUNE_MAX - 1);
	assert_int_equal(store_audit_prune(f->s, 1000000, 0, &p), 0);
	assert_int_equal(p.count, 4999); /* the newest stays */
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, note_id, &rows), 0);
	assert_int_equal(rows, 1);
}

static struct store_header make_header(const char *vm, const char *volume, uint8_t fill, uint8_t *data, size_t n)
{
	static uint8_t key[8] = { 7, 7, 7, 7, 7, 7, 7, 7 };
	struct store_header h = { .size = n, .created = 1000 + fill };

	snprintf(h.vm, sizeof(h.vm), "%s", vm);
	snprintf(h.volume, sizeof(h.volume), "%s", volume);
	memset(h.sha256, fill, sizeof(h.sha256));
	memset(data, fill, n);
	h.data = data;
	h.data_size = n;
	h.sealed_key = key;
	h.sealed_key_size = sizeof(key);
	return h;
}

/* Appends "volume:version " per listed header; listings carry no data. */
static int note_header(const struct store_header *h, void *userdata)
{
	char *buf = userdata;

	assert_null(h->data);
	assert_null(h->sealed_key);
	snprintf(buf + strlen(buf), 256 - strlen(buf), "%s/%s:%u ", h->vm, h->volume, h->version);
	return 0;
}

struct header_fail_ctx {
	struct store_header h;
};

/* Inserts a new version, then fails: the transaction rolls back, the insert and its pruning too. */
static int header_fail_txn(struct store *s, void *userdata)
{
	struct header_fail_ctx *c = userdata;
	uint32_t v;
	int r = store_header_insert(s, &c->h, 1, &v);

	return r < 0 ? r : -EIO;
}

static void test_headers(void **state)
{
	struct fixture *f = *state;
	struct store_vm a = make_vm("a", "0000000000000000000000000000000a");
	static uint8_t big[1 << 20];
	uint8_t small[16];
	struct store_header h, got;
	struct header_fail_ctx fail;
	char list[256] = "";
	uint32_t v;

	assert_int_equal(store_vm_insert(f->s, &a), 0);
	h = make_header("a", "os", 1, big, sizeof(big));
	assert_int_equal(store_header_insert(f->s, &h, 3, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(store_header_get(f->s, "a", "os", 0, &got), 0);
	assert_int_equal(got.version, 1);
	assert_int_equal(got.size, sizeof(big));
	assert_int_equal(got.data_size, sizeof(big));
	assert_memory_equal(got.data, big, sizeof(big));
	assert_int_equal(got.sealed_key_size, 8);
	assert_memory_equal(got.sha256, h.sha256, DIGEST_SHA256_SIZE);
	assert_int_equal(got.created, 1001);
	store_header_done(&got);

	/* Versions 2, 3, 4 of os (keep 3): version 1 goes with the commit of 4; data0 is apart. */
	for (uint8_t i = 2; i <= 4; i++) {
		h = make_header("a", "os", i, small, sizeof(small));
		assert_int_equal(store_header_insert(f->s, &h, 3, &v), 0);
		assert_int_equal(v, i);
	}
	h = make_header("a", "data0", 9, small, sizeof(small));
	snprintf(h.kek, sizeof(h.kek), "k1");
	h.kek_version = 2;
	snprintf(h.kek_algorithm, sizeof(h.kek_algorithm), "RSA-OAEP-256");
	assert_int_equal(store_header_insert(f->s, &h, 3, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(store_header_list(f->s, "a", note_header, list), 0);
	assert_string_equal(list, "a/data0:1 a/os:2 a/os:3 a/os:4 ");
	assert_int_equal(store_header_get(f->s, "a", "os", 1, &got), -ENOENT);
	assert_int_equal(store_header_get(f->s, "a", "os", 3, &got), 0);
	assert_int_equal(got.sha256[0], 3);
	store_header_done(&got);
	assert_int_equal(store_header_get(f->s, "a", "data0", 0, &got), 0);
	assert_string_equal(got.kek, "k1");
	assert_int_equal(got.kek_version, 2);
	assert_string_equal(got.kek_algorithm, "RSA-OAEP-256");
	store_header_done(&got);
	assert_int_equal(store_header_get(f->s, "a", "swap", 0, &got), -ENOENT);
	assert_int_equal(store_header_get(f->s, "b", "os", 0, &got), -ENOENT);

	/* A version whose transaction fails takes nothing with it, not even with keep 1. */
	fail.h = make_header("a", "os", 5, small, sizeof(small));
	assert_int_equal(store_transaction(f->s, header_fail_txn, &fail), -EIO);
	list[0] = 0;
	assert_int_equal(store_header_list(f->s, NULL, note_header, list), 0);
	assert_string_equal(list, "a/data0:1 a/os:2 a/os:3 a/os:4 ");
	assert_int_equal(store_header_insert(f->s, &h, 0, &v), -EINVAL);

	/* Deleting the VM deletes its header backups. */
	assert_int_equal(store_vm_delete(f->s, "a"), 0);
	list[0] = 0;
	assert_int_equal(store_header_list(f->s, NULL, note_header, list), 0);
	assert_string_equal(list, "");
}

static int note_token(const struct store_token *t, void *userdata)
{
	char *list = userdata;
	size_t n = strlen(list);

	snprintf(list + n, 256 - n, "%s:%s:%lld:%lld ", t->name, api_role_to_string(t->role), (long long)t->last_used,
		 (long long)t->revoked);
	return 0;
}

static struct store_token make_token(const char *name, const char *id, enum api_role role)
{
	struct store_token t = {};

	snprintf(t.name, sizeof(t.name), "%s", name);
	snprintf(t.id, sizeof(t.id), "%s", id);
	t.role = role;
	memset(t.hash, name[0], sizeof(t.hash));
	t.created = 2000;
	return t;
}

static void test_tokens(void **state)
{
	struct fixture *f = *state;
	struct store_token a = make_token("alice", "000000000000000000000000000000a1", API_ROLE_READER);
	struct store_token b = make_token("bob", "000000000000000000000000000000b2", API_ROLE_OPERATOR);
	struct store_token got, dup;
	char list[256] = "";

	assert_int_equal(store_token_insert(f->s, &a), 0);
	assert_int_equal(store_token_insert(f->s, &b), 0);
	/* A name or an id is one token's. */
	dup = make_token("alice", "000000000000000000000000000000c3", API_ROLE_ADMIN);
	assert_int_equal(store_token_insert(f->s, &dup), -EEXIST);
	dup = make_token("carol", "000000000000000000000000000000a1", API_ROLE_ADMIN);
	assert_int_equal(store_token_insert(f->s, &dup), -EEXIST);
	dup.role = _API_ROLE_INVALID;
	snprintf(dup.id, sizeof(dup.id), "000000000000000000000000000000c3");
	assert_int_equal(store_token_insert(f->s, &dup), -EINVAL);

	assert_int_equal(store_token_get_by_id(f->s, a.id, &got), 0);
	assert_string_equal(got.name, "alice");
	assert_int_equal(got.role, API_ROLE_READER);
	assert_memory_equal(got.hash, a.hash, TOKEN_HASH_SIZE);
	assert_int_equal(got.created, 2000);
	assert_int_equal(got.last_used, 0);
	assert_int_equal(got.revoked, 0);
	assert_int_equal(store_token_get(f->s, "bob", &got), 0);
	assert_int_equal(got.role, API_ROLE_OPERATOR);
	assert_int_equal(store_token_get(f->s, "nobody", &got), -ENOENT);
	assert_int_equal(store_token_get_by_id(f->s, "000000000000000000000000000000ff", &got), -ENOENT);

	assert_int_equal(store_token_touch(f->s, a.id, 2100), 0);
	assert_int_equal(store_token_touch(f->s, "000000000000000000000000000000ff", 2100), -ENOENT);
	assert_int_equal(store_token_revoke(f->s, "bob", 2200), 0);
	assert_int_equal(store_token_revoke(f->s, "bob", 2300), -EALREADY);
	assert_int_equal(store_token_revoke(f->s, "nobody", 2300), -ENOENT);
	assert_int_equal(store_token_list(f->s, note_token, list), 0);
	assert_string_equal(list, "alice:reader:2100:0 bob:operator:0:2200 ");

	/* A role word this program does not know reads as _API_ROLE_INVALID, never as a role. */
	assert_int_equal(sql_exec(f->backend, f->path, "UPDATE tokens SET role = 'root' WHERE name = 'alice'"), 0);
	assert_int_equal(store_token_get(f->s, "alice", &got), 0);
	assert_int_equal(got.role, _API_ROLE_INVALID);
}

/* A store of schema version 3 (header backups, no tokens) takes named tokens after the
 * migration and keeps what it held. */
static void test_schema_v3_migrates(void **state)
{
	struct fixture *f = *state;
	struct store_vm vm = make_vm("old", "000000000000000000000000000000d4"), got_vm;
	struct store_token t = make_token("alice", "000000000000000000000000000000a1", API_ROLE_ADMIN);
	char path[512];
	struct store *s = NULL;

	/* PostgreSQL: the test's own (empty) schema. */
	if (f->backend == PG)
		snprintf(path, sizeof(path), "%s", f->path);
	else
		snprintf(path, sizeof(path), "%s/v3.db", f->dir);
	assert_int_equal(store_open(path, &s), 0);
	assert_int_equal(store_vm_insert(s, &vm), 0);
	store_close(s);
	/* Back to version 3, as vmcryptd before named tokens left it (the same SQL in both). */
	assert_int_equal(sql_exec(f->backend, path, "DROP TABLE tokens; DELETE FROM schema_version WHERE version > 3"), 0);

	assert_int_equal(store_open(path, &s), 0);
	assert_int_equal(store_vm_get(s, "old", &got_vm), 0);
	store_vm_done(&got_vm);
	assert_int_equal(store_token_insert(s, &t), 0);
	store_close(s);
	assert_int_equal(sql_long(f->backend, path, "SELECT MAX(version) FROM schema_version"), 4);
}

static void test_schema_v1_migrates(void **state)
{
	struct fixture *f = *state;
	char path[160], buf[1024] = "";
	struct store *s = NULL;
	struct store_audit e;
	sqlite3 *db;

	/* There never was a PostgreSQL store of version 1: its first one is version 4. */
	if (f->backend == PG)
		skip();
	/* A store written by the first vmcryptd: audit events without a source. */
	snprintf(path, sizeof(path), "%s/v1.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TABLE schema_version(version INTEGER NOT NULL);"
				      "INSERT INTO schema_version(version) VALUES (1);"
				      "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
				      "CREATE TABLE audit(id INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL, "
				      "  action TEXT NOT NULL, object TEXT NOT NULL, result TEXT NOT NULL);"
				      "CREATE INDEX audit_time ON audit(time);"
				      "INSERT INTO audit(time, actor, action, object, result) VALUES (5, 'admin', 'x', 'vm/a', 'ok');",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_open(path, &s), 0);
	e = make_event(6, "vm/a", "denied: invalid credential", "192.0.2.7");
	assert_int_equal(store_audit_append(s, &e), 0);
	assert_int_equal(store_audit_list(s, NULL, 0, API_AUDIT_ANY, collect_audit_full, buf), 0);
	assert_string_equal(buf, "5 vm/a ok -;6 vm/a denied: invalid credential 192.0.2.7;");
	store_close(s);

	/* Migrated once: the schema version is the current one. */
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	{
		sqlite3_stmt *q;
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_version", -1, &q, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(q), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(q, 0), STORE_SCHEMA_VERSION);
		sqlite3_finalize(q);
	}
	sqlite3_close(db);
	assert_int_equal(store_open(path, &s), 0);
	store_close(s);
}

struct txn_ctx {
	int fail;
};

static int txn_fn(struct store *s, void *userdata)
{
	struct txn_ctx *c = userdata;
	struct store_vm v = make_vm("t", "000000000000000000000000000000aa");
	int r = store_vm_insert(s, &v);

	if (r < 0)
		return r;
	r = store_meta_set(s, "k", "v");
	if (r < 0)
		return r;
	return c->fail ? -EALREADY : 0;
}

static void test_transaction_rollback(void **state)
{
	struct fixture *f = *state;
	struct txn_ctx c = { .fail = 1 };
	struct store_vm got;
	char *value = NULL;

	assert_int_equal(store_transaction(f->s, txn_fn, &c), -EALREADY);
	assert_int_equal(store_vm_get(f->s, "t", &got), -ENOENT);
	assert_int_equal(store_meta_get(f->s, "k", &value), -ENOENT);
	c.fail = 0;
	assert_int_equal(store_transaction(f->s, txn_fn, &c), 0);
	assert_int_equal(store_vm_get(f->s, "t", &got), 0);
	store_vm_done(&got);
	assert_int_equal(store_meta_get(f->s, "k", &value), 0);
	assert_string_equal(value, "v");
	free(value);
	/* A failing transaction does not take a good one down with it in the same batch: here, a
	 * duplicate insert fails alone. */
	assert_int_equal(store_transaction(f->s, txn_fn, &c), -EEXIST);
}

struct thread_arg {
	struct store *s;
	int id;
};

static int counter_fn(struct store *s, void *userdata)
{
	struct thread_arg *a = userdata;
	struct store_audit e = { .time = a->id };
	int r;

	snprintf(e.actor, sizeof(e.actor), "t%d", a->id);
	snprintf(e.action, sizeof(e.action), "c");
	snprintf(e.object, sizeof(e.object), "o");
	snprintf(e.result, sizeof(e.result), "ok");
	r = store_audit_append(s, &e);
	if (r < 0)
		return r;
	/* Every fifth transaction fails after writing: its event must not appear. */
	return a->id % 5 == 0 ? -ECANCELED : 0;
}

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	long failures = 0;

	for (int i = 0; i < 100; i++) {
		struct thread_arg local = { a->s, a->id * 1000 + i };
		int r = store_transaction(a->s, counter_fn, &local);
		if (r < 0 && r != -ECANCELED)
			failures++;
	}
	return (void *)failures;
}

static int count_audit(const struct store_audit *e, void *userdata)
{
	(*(int *)userdata)++;
	assert_true(e->time % 5 != 0);
	return 0;
}

static void test_group_commit_concurrency(void **state)
{
	struct fixture *f = *state;
	pthread_t t[8];
	struct thread_arg args[8];
	int n = 0;

	for (int i = 0; i < 8; i++) {
		args[i] = (struct thread_arg){ f->s, i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		assert_int_equal((long)ret, 0);
	}
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, count_audit, &n), 0);
	assert_int_equal(n, 8 * 80);
}

static void *mixed_main(void *p)
{
	struct thread_arg *a = p;
	long failures = 0;

	for (int i = 0; i < 200; i++) {
		struct store_audit e = { .time = a->id * 1000 + i };
		snprintf(e.actor, sizeof(e.actor), "t%d", a->id);
		snprintf(e.action, sizeof(e.action), "%s", i % 2 ? "secret.read" : "secret.write");
		snprintf(e.object, sizeof(e.object), "o");
		snprintf(e.result, sizeof(e.result), "ok");
		if ((i % 2 ? store_audit_append_read(a->s, &e) : store_audit_append(a->s, &e)) < 0)
			failures++;
	}
	return (void *)failures;
}

static int count_any(const struct store_audit *e, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static void test_read_audit_events(void **state)
{
	struct fixture *f = *state;
	struct store *again = NULL;
	pthread_t t[6];
	struct thread_arg args[6];
	int n = 0;

	/* Read-audit events and durable writes from many threads share batches; none is lost and
	 * all survive closing and reopening. */
	for (int i = 0; i < 6; i++) {
		args[i] = (struct thread_arg){ f->s, i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, i < 3 ? mixed_main : thread_main, &args[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		assert_int_equal((long)ret, 0);
	}
	assert_int_equal(store_audit_list(f->s, NULL, 0, API_AUDIT_ANY, count_any, &n), 0);
	assert_int_equal(n, 3 * 200 + 3 * 80);
	store_close(f->s);
	assert_int_equal(store_open(f->path, &again), 0);
	n = 0;
	assert_int_equal(store_audit_list(again, NULL, 0, API_AUDIT_ANY, count_any, &n), 0);
	assert_int_equal(n, 3 * 200 + 3 * 80);
	f->s = again;
}

static void test_persistence_and_schema(void **state)
{
	struct fixture *f = *state;
	struct store_vm a = make_vm("a", "0000000000000000000000000000000a"), got;
	struct store *again = NULL;

	assert_int_equal(store_vm_insert(f->s, &a), 0);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(store_open(f->path, &again), 0);
	assert_int_equal(store_vm_get(again, "a", &got), 0);
	store_vm_done(&got);
	store_close(again);

	/* A store written by a newer vmcryptd is refused, not misread. */
	assert_int_equal(sql_exec(f->backend, f->path, "INSERT INTO schema_version(version) VALUES (99)"), 0);
	assert_int_equal(store_open(f->path, &again), -EPROTONOSUPPORT);
	/* A password in the location would be in vmcryptd's command line: refused before any
	 * connection is tried; so is one in the environment. */
	assert_int_equal(store_open("postgresql://vmcrypt:hunter2@localhost/vmcrypt", &again), -EINVAL);
	assert_int_equal(store_open("postgresql:///vmcrypt?host=/nonexistent&password=hunter2", &again), -EINVAL);
	assert_int_equal(setenv("PGPASSWORD", "hunter2", 1), 0);
	assert_int_equal(store_open("postgresql:///vmcrypt?host=/nonexistent", &again), -EINVAL);
	assert_int_equal(unsetenv("PGPASSWORD"), 0);
	assert_int_equal(store_open("postgresql:///vmcrypt?host=/nonexistent", &again), -ECONNREFUSED);
	assert_int_equal(store_open("sqlite:/nonexistent/dir/x.db", &again), -ENOENT);
	/* teardown closes f->s: give it a fresh store. */
	if (f->backend == PG) {
		assert_int_equal(sql_exec(PG, f->path, "DELETE FROM schema_version WHERE version = 99"), 0);
		assert_int_equal(store_open(f->path, &f->s), 0);
	} else {
		assert_int_equal(store_open("sqlite::memory:", &f->s), 0);
	}
}

static void test_wal_stays_bounded(void **state)
{
	struct fixture *f = *state;
	char wal[sizeof(f->path) + 8];
	struct stat st;

	if (f->backend == PG) /* PostgreSQL's checkpoints are the server's business */
		skip();

	/* 60,000 back-to-back commits of two pages or more each would leave a WAL of 480 MiB or more
	 * without checkpoints; the background checkpointer has it restarted past 128 MiB even under
	 * constant writes. (Read-audit commits: no flush each, so the test is quick.) */
	for (int i = 0; i < 60000; i++) {
		struct store_audit e = { .time = i };
		snprintf(e.actor, sizeof(e.actor), "admin");
		snprintf(e.action, sizeof(e.action), "x");
		snprintf(e.object, sizeof(e.object), "object-%d-%0200d", i, i);
		snprintf(e.result, sizeof(e.result), "ok");
		assert_int_equal(store_audit_append_read(f->s, &e), 0);
	}
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &st), 0);
	assert_true(st.st_size < 256 * 1024 * 1024);
}

/* Read, then write what was read plus one: correct only if transactions behave as if one ran
 * after the other (SQLite: one writer; PostgreSQL: SERIALIZABLE, conflicts run again). */
static int increment_fn(struct store *s, void *userdata)
{
	_cleanup_free_ char *v = NULL;
	char next[32];
	int r = store_meta_get(s, "counter", &v);

	if (r < 0 && r != -ENOENT)
		return r;
	snprintf(next, sizeof(next), "%ld", (v ? atol(v) : 0) + 1);
	return store_meta_set(s, "counter", next);
}

static void *increment_main(void *p)
{
	struct thread_arg *a = p;
	long failures = 0;

	for (int i = 0; i < 25; i++) {
		static uint8_t sealed[4] = { 1, 2, 3, 4 };
		struct store_secret sec = { .created = i, .sealed = sealed, .sealed_size = sizeof(sealed) };
		uint32_t v;

		if (store_transaction(a->s, increment_fn, NULL) < 0)
			failures++;
		/* Versions of one volume from many threads at once: each a number of its own. */
		snprintf(sec.vm, sizeof(sec.vm), "a");
		snprintf(sec.volume, sizeof(sec.volume), "os");
		snprintf(sec.content_type, sizeof(sec.content_type), "BEK");
		if (store_secret_insert(a->s, &sec, &v) < 0)
			failures++;
	}
	return (void *)failures;
}

static void test_serializable_conflicts(void **state)
{
	struct fixture *f = *state;
	struct store_secret got = {};
	struct thread_arg args[8];
	pthread_t t[8];
	char *v = NULL;

	for (int i = 0; i < 8; i++) {
		args[i] = (struct thread_arg){ f->s, i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, increment_main, &args[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		assert_int_equal((long)ret, 0);
	}
	assert_int_equal(store_meta_get(f->s, "counter", &v), 0);
	assert_string_equal(v, "200");
	free(v);
	assert_int_equal(store_secret_get(f->s, "a", "os", 0, &got), 0);
	assert_int_equal(got.version, 200);
	store_secret_done(&got);
}

static void test_pg_unavailable(void **state)
{
	printf("PostgreSQL tests skipped: VMCRYPT_TEST_PG_URI is unset (test-server-postgresql sets it)\n");
	skip();
}

#define TESTS(X)                                  \
	X(test_vms)                               \
	X(test_settings_and_delete_cascade)       \
	X(test_keys)                              \
	X(test_secrets)                           \
	X(test_audit)                             \
	X(test_audit_source_and_result)           \
	X(test_audit_prune)                       \
	X(test_audit_prune_in_chunks)             \
	X(test_headers)                           \
	X(test_schema_v1_migrates)                \
	X(test_tokens)                            \
	X(test_schema_v3_migrates)                \
	X(test_transaction_rollback)              \
	X(test_group_commit_concurrency)          \
	X(test_persistence_and_schema)            \
	X(test_wal_stays_bounded)                 \
	X(test_read_audit_events)                 \
	X(test_serializable_conflicts)

#define SQLITE_TEST(t) { "sqlite:" #t, t, setup, teardown, (void *)&backend_sqlite },
#define PG_TEST(t) { "postgresql:" #t, t, setup, teardown, (void *)&backend_pg },

int main(void)
{
	static const struct CMUnitTest sqlite_tests[] = { TESTS(SQLITE_TEST) };
	static const struct CMUnitTest pg_tests[] = { TESTS(PG_TEST) };
	struct CMUnitTest tests[ELEMENTSOF(sqlite_tests) + ELEMENTSOF(pg_tests)];
	size_t n = 0;

	for (size_t i = 0; i < ELEMENTSOF(sqlite_tests); i++)
		tests[n++] = sqlite_tests[i];
	if (getenv("VMCRYPT_TEST_PG_URI"))
		for (size_t i = 0; i < ELEMENTSOF(pg_tests); i++)
			tests[n++] = pg_tests[i];
	else
		tests[n++] = (struct CMUnitTest){ "postgresql", test_pg_unavailable, NULL, NULL, NULL };
	return _cmocka_run_group_tests("test-store", tests, n, NULL, NULL);
}
