/* PostgreSQL backend of the store (libpq): a bounded pool of connections, each transaction
 * SERIALIZABLE on one of them, the same schema versions and errno values as store-sqlite.c.
 *
 * Why SERIALIZABLE: the SQLite backend runs one writer at a time, so a handler's transaction
 * (read the VM, check its state, write it) sees nothing change under it; handlers rely on that
 * (an enrollment token works once, a rotation never shadows a newer secret). Several vmcryptd
 * replicas on one database write at the same time, and SERIALIZABLE gives the same outcome as
 * running the transactions one after the other. PostgreSQL may abort one of two conflicting
 * transactions (SQLSTATE 40001, or 40P01 for a deadlock); it then rolled back entirely, so its
 * function runs again on a fresh transaction, up to TXN_ATTEMPTS times, then -EBUSY (what SQLite
 * says when its busy timeout ends). Transaction functions must therefore be safe to run again
 * (store.h).
 *
 * Durability: every connection runs with synchronous_commit=on, so COMMIT returns only once the
 * WAL is flushed (and, with synchronous_standby_names, on a standby too): an acknowledged write
 * survives kill -9 of vmcryptd, of PostgreSQL, and a power loss. Read-audit events and token uses
 * (audit_append_read, token_touch) commit with SET LOCAL synchronous_commit=off: committed in the
 * server before the call returns, so vmcryptd dying loses none, but a crash of PostgreSQL itself
 * may lose the last few hundred milliseconds of them, as a power loss may with SQLite.
 *
 * libpq connections are not thread-safe: each is used by one thread at a time, taken from the pool
 * for one statement (reads) or one transaction (writes). A listing fetches its whole result and
 * gives the connection back before the callbacks run, so a callback may use the store without
 * holding two connections (which, with every connection taken, could deadlock). A connection that
 * broke (failover, restart) is dropped and the next use opens a new one; a statement or
 * transaction that had not reached COMMIT is run again on it once. */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/vault/store.h"

enum stmt_id {
	S_META_GET,
	S_META_SET,
	S_VM_INSERT,
	S_VM_GET,
	S_VM_GET_BY_ID,
	S_VM_UPDATE,
	S_VM_DELETE,
	S_VM_DELETE_SETTINGS,
	S_VM_DELETE_SECRETS,
	S_VM_DELETE_HEADERS,
	S_VM_LIST,
	S_SETTINGS_GET,
	S_SETTINGS_PUT,
	S_KEY_INSERT,
	S_KEY_GET,
	S_KEY_GET_LATEST,
	S_KEY_SET_ENABLED,
	S_KEY_LIST,
	S_SECRET_NEXT_VERSION,
	S_SECRET_INSERT,
	S_SECRET_GET,
	S_SECRET_GET_LATEST,
	S_SECRET_LIST,
	S_SECRET_LIST_VM,
	S_HEADER_NEXT_VERSION,
	S_HEADER_INSERT,
	S_HEADER_PRUNE,
	S_HEADER_GET,
	S_HEADER_GET_LATEST,
	S_HEADER_LIST,
	S_HEADER_LIST_VM,
	S_TOKEN_INSERT,
	S_TOKEN_GET,
	S_TOKEN_GET_BY_ID,
	S_TOKEN_REVOKE,
	S_TOKEN_TOUCH,
	S_TOKEN_LIST,
	S_AUDIT_APPEND,
	S_AUDIT_LIST,
	S_AUDIT_SPAN,
	S_AUDIT_CUTOFF,
	S_AUDIT_DROP,
	_S_MAX,
};

/* The columns and statements of store-sqlite.c, in PostgreSQL's spelling ($N parameters, bytea
 * and bigint): keep the two in step. Every integer column is bigint, so a result's integers are
 * all 8 bytes in the binary format. */
#define VM_COLUMNS                                                                                  \
	"name, id, state, enroll_hash, cred_hash, hostname, agent_version, extension_removed, created, " \
	"enrolled, last_report_time, last_report"
#define KEY_COLUMNS "name, version, kty, size, enabled, created, sealed, public_pem"
#define SECRET_COLUMNS \
	"vm, volume, version, content_type, file_name, kek, kek_version, kek_algorithm, created, sealed"
#define HEADER_META_COLUMNS "vm, volume, version, size, sha256, created, kek, kek_version, kek_algorithm"
#define HEADER_COLUMNS HEADER_META_COLUMNS ", sealed_key, data"
#define TOKEN_COLUMNS "name, id, role, hash, created, last_used, revoked"

static const char *const stmt_sql[_S_MAX] = {
	[S_META_GET] = "SELECT value FROM meta WHERE key = $1",
	[S_META_SET] = "INSERT INTO meta(key, value) VALUES ($1, $2) "
		       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	[S_VM_INSERT] = "INSERT INTO vms(" VM_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	[S_VM_GET] = "SELECT " VM_COLUMNS " FROM vms WHERE name = $1",
	[S_VM_GET_BY_ID] = "SELECT " VM_COLUMNS " FROM vms WHERE id = $1",
	[S_VM_UPDATE] = "UPDATE vms SET state = $3, enroll_hash = $4, cred_hash = $5, hostname = $6, "
			"agent_version = $7, extension_removed = $8, created = $9, enrolled = $10, "
			"last_report_time = $11, last_report = $12 WHERE name = $1 AND id = $2",
	[S_VM_DELETE] = "DELETE FROM vms WHERE name = $1",
	[S_VM_DELETE_SETTINGS] = "DELETE FROM settings WHERE vm = $1",
	[S_VM_DELETE_SECRETS] = "DELETE FROM secrets WHERE vm = $1",
	[S_VM_DELETE_HEADERS] = "DELETE FROM headers WHERE vm = $1",
	[S_VM_LIST] = "SELECT " VM_COLUMNS " FROM vms ORDER BY name",
	[S_SETTINGS_GET] = "SELECT vm, enabled, last_type, format_all, kek, kek_algorithm, sequence, updated "
			   "FROM settings WHERE vm = $1",
	[S_SETTINGS_PUT] = "INSERT INTO settings(vm, enabled, last_type, format_all, kek, kek_algorithm, sequence, "
			   "updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT(vm) DO UPDATE SET "
			   "enabled = excluded.enabled, last_type = excluded.last_type, format_all = "
			   "excluded.format_all, kek = excluded.kek, kek_algorithm = excluded.kek_algorithm, "
			   "sequence = excluded.sequence, updated = excluded.updated",
	[S_KEY_INSERT] = "INSERT INTO keys(" KEY_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
	[S_KEY_GET] = "SELECT " KEY_COLUMNS " FROM keys WHERE name = $1 AND version = $2",
	[S_KEY_GET_LATEST] = "SELECT " KEY_COLUMNS " FROM keys WHERE name = $1 ORDER BY version DESC LIMIT 1",
	[S_KEY_SET_ENABLED] = "UPDATE keys SET enabled = $2 WHERE name = $1",
	[S_KEY_LIST] = "SELECT " KEY_COLUMNS " FROM keys k WHERE version = "
		       "(SELECT MAX(version) FROM keys WHERE name = k.name) ORDER BY name",
	[S_SECRET_NEXT_VERSION] = "SELECT COALESCE(MAX(version), 0) + 1 FROM secrets WHERE vm = $1 AND volume = $2",
	[S_SECRET_INSERT] = "INSERT INTO secrets(" SECRET_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	[S_SECRET_GET] = "SELECT " SECRET_COLUMNS " FROM secrets WHERE vm = $1 AND volume = $2 AND version = $3",
	[S_SECRET_GET_LATEST] = "SELECT " SECRET_COLUMNS " FROM secrets WHERE vm = $1 AND volume = $2 "
				"ORDER BY version DESC LIMIT 1",
	[S_SECRET_LIST] = "SELECT " SECRET_COLUMNS " FROM secrets s WHERE version = (SELECT MAX(version) FROM "
			  "secrets WHERE vm = s.vm AND volume = s.volume) ORDER BY vm, volume",
	[S_SECRET_LIST_VM] = "SELECT " SECRET_COLUMNS " FROM secrets s WHERE vm = $1 AND version = (SELECT "
			     "MAX(version) FROM secrets WHERE vm = s.vm AND volume = s.volume) ORDER BY volume",
	[S_HEADER_NEXT_VERSION] = "SELECT COALESCE(MAX(version), 0) + 1 FROM headers WHERE vm = $1 AND volume = $2",
	[S_HEADER_INSERT] = "INSERT INTO headers(" HEADER_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
	[S_HEADER_PRUNE] = "DELETE FROM headers WHERE vm = $1 AND volume = $2 AND version NOT IN (SELECT version FROM "
			   "headers WHERE vm = $1 AND volume = $2 ORDER BY version DESC LIMIT $3)",
	[S_HEADER_GET] = "SELECT " HEADER_COLUMNS " FROM headers WHERE vm = $1 AND volume = $2 AND version = $3",
	[S_HEADER_GET_LATEST] = "SELECT " HEADER_COLUMNS " FROM headers WHERE vm = $1 AND volume = $2 "
				"ORDER BY version DESC LIMIT 1",
	[S_HEADER_LIST] = "SELECT " HEADER_META_COLUMNS " FROM headers ORDER BY vm, volume, version",
	[S_HEADER_LIST_VM] = "SELECT " HEADER_META_COLUMNS " FROM headers WHERE vm = $1 ORDER BY volume, version",
	[S_TOKEN_INSERT] = "INSERT INTO tokens(" TOKEN_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7)",
	[S_TOKEN_GET] = "SELECT " TOKEN_COLUMNS " FROM tokens WHERE name = $1",
	[S_TOKEN_GET_BY_ID] = "SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = $1",
	[S_TOKEN_REVOKE] = "UPDATE tokens SET revoked = $2 WHERE name = $1 AND revoked = 0",
	[S_TOKEN_TOUCH] = "UPDATE tokens SET last_used = $2 WHERE id = $1",
	[S_TOKEN_LIST] = "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY name",
	[S_AUDIT_APPEND] = "INSERT INTO audit(time, actor, action, object, result, source) "
			   "VALUES ($1, $2, $3, $4, $5, $6)",
	/* As in store-sqlite.c: $3 NULL any result, true ok, false anything else. */
	[S_AUDIT_LIST] = "SELECT * FROM (SELECT id, time, actor, action, object, result, source FROM audit WHERE "
			 "time >= $2 AND ($1::text IS NULL OR object = $1 OR substr(object, 1, length($1) + 1) = $1 || '/') "
			 "AND ($3::boolean IS NULL OR (result = 'ok' OR substr(result, 1, 3) = 'ok:') = $3) "
			 "ORDER BY id DESC LIMIT 10000) a ORDER BY id",
	/* Retention. Ids come from a sequence: they grow, but a rolled-back insert (a serialization
	 * retry, a failed request) leaves a gap, so unlike SQLite's rowids the span max - min + 1 is
	 * only an upper bound of the count. It is the cheap test (two index descents); only when it
	 * exceeds the cap does S_AUDIT_CUTOFF find the exact boundary, the id $1 rows below the
	 * newest (an index-only scan of the cap's rows). */
	[S_AUDIT_SPAN] = "SELECT coalesce((SELECT max(id) FROM audit) - (SELECT min(id) FROM audit) + 1, 0)",
	[S_AUDIT_CUTOFF] = "SELECT id FROM audit ORDER BY id DESC OFFSET $1 LIMIT 1",
	/* Among the oldest $3 rows, those older than $1 or at or below the cutoff id $2, never the
	 * newest event; says how many went and their times. */
	[S_AUDIT_DROP] = "WITH d AS (DELETE FROM audit WHERE id IN (SELECT id FROM (SELECT id, time FROM audit "
			 "ORDER BY id LIMIT $3) w WHERE (w.time < $1 OR w.id <= $2) AND w.id < (SELECT max(id) FROM "
			 "audit)) RETURNING time) SELECT count(*), coalesce(min(time), 0), coalesce(max(time), 0) FROM d",
};

/* The versions of store-sqlite.c, step for step, so that a version number means the same tables
 * in both backends. */
static const char schema_v1[] =
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE vms(name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, state BIGINT NOT NULL, "
	"  enroll_hash BYTEA, cred_hash BYTEA, hostname TEXT NOT NULL, agent_version TEXT NOT NULL, "
	"  extension_removed BIGINT NOT NULL, created BIGINT NOT NULL, enrolled BIGINT NOT NULL, "
	"  last_report_time BIGINT NOT NULL, last_report TEXT);"
	"CREATE TABLE settings(vm TEXT PRIMARY KEY, enabled BIGINT NOT NULL, last_type BIGINT NOT NULL, "
	"  format_all BIGINT NOT NULL, kek TEXT NOT NULL, kek_algorithm TEXT NOT NULL, "
	"  sequence BIGINT NOT NULL, updated BIGINT NOT NULL);"
	"CREATE TABLE keys(name TEXT NOT NULL, version BIGINT NOT NULL, kty TEXT NOT NULL, size BIGINT NOT NULL, "
	"  enabled BIGINT NOT NULL, created BIGINT NOT NULL, sealed BYTEA NOT NULL, public_pem TEXT, "
	"  PRIMARY KEY(name, version));"
	"CREATE TABLE secrets(vm TEXT NOT NULL, volume TEXT NOT NULL, version BIGINT NOT NULL, "
	"  content_type TEXT NOT NULL, file_name TEXT NOT NULL, kek TEXT NOT NULL, kek_version BIGINT NOT NULL, "
	"  kek_algorithm TEXT NOT NULL, created BIGINT NOT NULL, sealed BYTEA NOT NULL, "
	"  PRIMARY KEY(vm, volume, version));"
	"CREATE TABLE audit(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time BIGINT NOT NULL, "
	"  actor TEXT NOT NULL, action TEXT NOT NULL, object TEXT NOT NULL, result TEXT NOT NULL);"
	"CREATE INDEX audit_time ON audit(time);";
static const char schema_v2[] = "ALTER TABLE audit ADD COLUMN source TEXT NOT NULL DEFAULT '';";
static const char schema_v3[] =
	"CREATE TABLE headers(vm TEXT NOT NULL, volume TEXT NOT NULL, version BIGINT NOT NULL, "
	"  size BIGINT NOT NULL, sha256 BYTEA NOT NULL, created BIGINT NOT NULL, kek TEXT NOT NULL, "
	"  kek_version BIGINT NOT NULL, kek_algorithm TEXT NOT NULL, sealed_key BYTEA NOT NULL, "
	"  data BYTEA NOT NULL, PRIMARY KEY(vm, volume, version));";
static const char schema_v4[] =
	"CREATE TABLE tokens(name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, role TEXT NOT NULL, "
	"  hash BYTEA NOT NULL, created BIGINT NOT NULL, last_used BIGINT NOT NULL, "
	"  revoked BIGINT NOT NULL);";

static const char *const schema_steps[STORE_SCHEMA_VERSION] = { schema_v1, schema_v2, schema_v3, schema_v4 };

/* Serializes the migrations of replicas that start together (pg_advisory_xact_lock). */
#define MIGRATION_LOCK 0x766d6372797074LL /* "vmcrypt" */
/* Connections one vmcryptd opens at most: two replicas stay far below PostgreSQL's default
 * max_connections of 100. More threads than this wait for one. */
#define POOL_MAX 16
/* Runs of a transaction that PostgreSQL aborted as a serialization failure, before -EBUSY. */
#define TXN_ATTEMPTS 12

struct pg_conn {
	PGconn *pg;
	bool prepared[_S_MAX];
	bool failed;                /* a statement failed in the open transaction: it cannot commit */
	bool serialization_failure; /* ... because of a concurrent transaction: run it again */
	struct pg_conn *next;
};

struct pg_store {
	char *conninfo;
	pthread_mutex_t lock; /* guards pool, open */
	pthread_cond_t freed;
	struct pg_conn *pool;
	unsigned open;
};

/* The connection of the transaction this thread runs: store calls made by its function join it. */
static __thread struct pg_conn *txn_conn;

/* One function maps PostgreSQL's error space (SQLSTATE, appendix A of its manual) to errno, with
 * the values store-sqlite.c gives for the same situations. */
static int errno_from_sqlstate(const char *state)
{
	if (!state || strlen(state) != 5)
		return -EIO;
	if (startswith(state, "23")) /* integrity constraint violation, SQLite's SQLITE_CONSTRAINT */
		return -EEXIST;
	if (streq(state, "40001") || streq(state, "40P01") || streq(state, "55P03") || streq(state, "57014") ||
	    streq(state, "53300"))
		return -EBUSY; /* serialization failure, deadlock, lock_timeout, too many connections */
	if (streq(state, "53200"))
		return -ENOMEM;
	if (startswith(state, "53"))
		return -ENOSPC;
	if (streq(state, "25006")) /* read-only transaction: a standby, or default_transaction_read_only */
		return -EROFS;
	if (streq(state, "42501") || startswith(state, "28"))
		return -EACCES;
	if (streq(state, "3D000")) /* no such database */
		return -ENOENT;
	if (startswith(state, "08") || startswith(state, "57P")) /* connection lost, server shutting down */
		return -ECONNRESET;
	return -EIO;
}

static void notice_to_debug(void *arg, const char *message)
{
	log_debug("PostgreSQL: %s", message);
}

/* Records a failed result on c and returns its errno; res is cleared. */
static int conn_error(struct pg_conn *c, PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	int r;

	if (PQstatus(c->pg) != CONNECTION_OK)
		r = -ECONNRESET;
	else
		r = errno_from_sqlstate(state);
	log_debug("PostgreSQL: %s: %s%s%s", what, state ? state : "", state ? " " : "",
		  res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
	c->failed = true;
	if (state && (streq(state, "40001") || streq(state, "40P01")))
		c->serialization_failure = true;
	PQclear(res);
	return r;
}

/* Runs text that returns nothing (BEGIN, COMMIT, SET). */
static int simple(struct pg_conn *c, const char *sql)
{
	PGresult *res = PQexec(c->pg, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		return conn_error(c, res, sql);
	PQclear(res);
	return 0;
}

#define PARAMS_MAX 12
struct params {
	int n;
	const char *values[PARAMS_MAX];
	int lengths[PARAMS_MAX];
	int formats[PARAMS_MAX];
	char numbers[PARAMS_MAX][24];
};

static void p_text(struct params *p, const char *s)
{
	assert(p->n < PARAMS_MAX);
	p->values[p->n++] = s;
}

static void p_null(struct params *p)
{
	p_text(p, NULL);
}

static void p_i64(struct params *p, int64_t v)
{
	assert(p->n < PARAMS_MAX);
	snprintf(p->numbers[p->n], sizeof(p->numbers[0]), "%lld", (long long)v);
	p->values[p->n] = p->numbers[p->n];
	p->n++;
}

/* Binary, so bytea needs no escaping (and no doubling of a 32 MiB header). */
static void p_blob(struct params *p, const void *b, size_t n)
{
	assert(p->n < PARAMS_MAX && n <= INT32_MAX);
	p->values[p->n] = n ? b : "";
	p->lengths[p->n] = (int)n;
	p->formats[p->n] = 1;
	p->n++;
}

/* Runs statement id (prepared on c the first time) with p; results in binary. Returns 0 with
 * *ret set (PQclear it), or -errno. */
static int pg_exec(struct pg_conn *c, enum stmt_id id, const struct params *p, PGresult **ret)
{
	char name[16];
	PGresult *res;

	snprintf(name, sizeof(name), "s%d", (int)id);
	if (!c->prepared[id]) {
		res = PQprepare(c->pg, name, stmt_sql[id], 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			return conn_error(c, res, stmt_sql[id]);
		PQclear(res);
		c->prepared[id] = true;
	}
	res = PQexecPrepared(c->pg, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
			     p ? p->formats : NULL, 1);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		return conn_error(c, res, stmt_sql[id]);
	*ret = res;
	return 0;
}

/* A statement that returns no rows: 0 or -errno; ret_changes the rows it changed. */
static int exec_changes(struct pg_conn *c, enum stmt_id id, const struct params *p, uint64_t *ret_changes)
{
	PGresult *res;
	int r = pg_exec(c, id, p, &res);

	if (r < 0)
		return r;
	if (ret_changes)
		*ret_changes = strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

/* Column helpers over binary results. */
static int64_t col_i64(const PGresult *res, int row, int col)
{
	const char *v = PQgetvalue(res, row, col);
	uint64_t u64;
	uint32_t u32;

	if (PQgetisnull(res, row, col))
		return 0;
	switch (PQgetlength(res, row, col)) {
	case 8:
		memcpy(&u64, v, 8);
		return (int64_t)be64toh(u64);
	case 4:
		memcpy(&u32, v, 4);
		return (int32_t)be32toh(u32);
	default:
		return 0;
	}
}

static void col_text(char *dest, size_t size, const PGresult *res, int row, int col)
{
	snprintf(dest, size, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

static int col_dup_text(const PGresult *res, int row, int col, char **ret)
{
	*ret = NULL;
	if (PQgetisnull(res, row, col))
		return 0;
	*ret = strdup(PQgetvalue(res, row, col));
	return *ret ? 0 : -ENOMEM;
}

static int col_dup_blob(const PGresult *res, int row, int col, uint8_t **ret, size_t *ret_size)
{
	int n = PQgetlength(res, row, col);

	*ret = NULL;
	*ret_size = 0;
	if (PQgetisnull(res, row, col) || n <= 0)
		return 0;
	*ret = malloc((size_t)n);
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, PQgetvalue(res, row, col), (size_t)n);
	*ret_size = (size_t)n;
	return 0;
}

/* A hash of another length (a damaged row) stays zeros, which no token text hashes to. */
static void col_hash(uint8_t *dest, size_t size, const PGresult *res, int row, int col)
{
	memset(dest, 0, size);
	if (!PQgetisnull(res, row, col) && PQgetlength(res, row, col) == (int)size)
		memcpy(dest, PQgetvalue(res, row, col), size);
}

static void conn_free(struct pg_conn *c)
{
	if (!c)
		return;
	PQfinish(c->pg);
	free(c);
}

/* The session every connection needs, whatever the server's, database's or role's defaults. */
static int conn_setup(struct pg_conn *c)
{
	PGresult *res;
	bool stronger;
	int r;

	PQsetNoticeProcessor(c->pg, notice_to_debug, NULL);
	/* remote_apply waits for more than on does (the standby has applied the commit), so keep it;
	 * off, local or remote_write would acknowledge writes a crash or failover can lose. */
	res = PQexec(c->pg, "SHOW synchronous_commit");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return conn_error(c, res, "SHOW synchronous_commit");
	stronger = PQntuples(res) == 1 && streq(PQgetvalue(res, 0, 0), "remote_apply");
	PQclear(res);
	r = simple(c, stronger ? "SET lock_timeout = '10s'"
			       : "SET synchronous_commit = on; SET lock_timeout = '10s'");
	/* SQLite's busy timeout is 10 s: a lock held longer is -EBUSY there too. */
	if (r < 0)
		return r;
	c->failed = false;
	return 0;
}

static int conn_open(const char *conninfo, struct pg_conn **ret)
{
	static const char *const keys[] = { "dbname", "fallback_application_name", NULL };
	const char *values[] = { conninfo, "vmcryptd", NULL };
	struct pg_conn *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->pg = PQconnectdbParams(keys, values, 1);
	if (!c->pg) {
		free(c);
		return -ENOMEM;
	}
	if (PQstatus(c->pg) != CONNECTION_OK) {
		/* libpq's message names the host and the reason (no password: refused in open). */
		const char *m = PQerrorMessage(c->pg);
		r = strstr(m, "authentication") || strstr(m, "password") ? -EACCES
		    : strstr(m, "does not exist")                         ? -ENOENT
									  : -ECONNREFUSED;
		log_debug("PostgreSQL: connecting: %s", m);
		conn_free(c);
		return r;
	}
	r = conn_setup(c);
	if (r < 0) {
		conn_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

static int conn_acquire(struct pg_store *st, struct pg_conn **ret)
{
	struct pg_conn *c = NULL;
	int r;

	if (txn_conn) {
		*ret = txn_conn;
		return 0;
	}
	pthread_mutex_lock(&st->lock);
	for (;;) {
		c = st->pool;
		if (c) {
			st->pool = c->next;
			break;
		}
		if (st->open < POOL_MAX) {
			st->open++;
			break;
		}
		pthread_cond_wait(&st->freed, &st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	if (!c) {
		r = conn_open(st->conninfo, &c);
		if (r < 0) {
			pthread_mutex_lock(&st->lock);
			st->open--;
			pthread_cond_signal(&st->freed);
			pthread_mutex_unlock(&st->lock);
			return r;
		}
	}
	c->failed = c->serialization_failure = false;
	c->next = NULL;
	*ret = c;
	return 0;
}

/* Returns c to the pool, or drops it when it broke; the next use opens a new one. */
static void conn_release(struct pg_store *st, struct pg_conn *c)
{
	if (c == txn_conn)
		return;
	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		(void)simple(c, "ROLLBACK");
	pthread_mutex_lock(&st->lock);
	if (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		conn_free(c);
		st->open--;
	} else {
		c->next = st->pool;
		st->pool = c;
	}
	pthread_cond_signal(&st->freed);
	pthread_mutex_unlock(&st->lock);
}

static bool conn_broken(struct pg_conn *c)
{
	return PQstatus(c->pg) != CONNECTION_OK;
}

/* Random backoff before running a transaction again: 1 ms doubling up to 64 ms, so that two
 * replicas that conflicted do not meet again at once. */
static void backoff(unsigned attempt)
{
	unsigned cap = 1000u << (attempt < 6 ? attempt : 6);
	struct timespec ts = { 0, (long)(1000u + (unsigned)random() % cap) * 1000L };

	nanosleep(&ts, NULL);
}

static int transaction_run(struct pg_store *st, struct store *s, store_txn_fn fn, void *userdata, bool relaxed)
{
	int r = 0;

	if (txn_conn)
		return fn(s, userdata);

	for (unsigned attempt = 1;; attempt++) {
		struct pg_conn *c;
		bool again, commit_sent = false;

		r = conn_acquire(st, &c);
		if (r < 0)
			return r;
		r = simple(c, relaxed ? "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL synchronous_commit = off"
				      : "BEGIN ISOLATION LEVEL SERIALIZABLE");
		if (r >= 0) {
			txn_conn = c;
			r = fn(s, userdata);
			txn_conn = NULL;
			/* PostgreSQL aborts the whole transaction at a failed statement; its COMMIT
			 * would roll back and still say nothing failed. */
			if (r >= 0 && c->failed)
				r = -EIO;
			if (r >= 0) {
				commit_sent = true;
				r = simple(c, "COMMIT");
			} else if (!conn_broken(c)) {
				(void)simple(c, "ROLLBACK");
			}
		}
		/* A serialization failure rolled everything back, at COMMIT too; a connection lost
		 * before COMMIT was sent took its transaction with it. A connection lost during
		 * COMMIT leaves the outcome unknown: the caller hears -ECONNRESET. */
		again = attempt < TXN_ATTEMPTS && (c->serialization_failure || (conn_broken(c) && !commit_sent));
		if (c->serialization_failure && !again)
			r = -EBUSY;
		conn_release(st, c);
		if (!again)
			return r;
		backoff(attempt);
	}
}

static int store_pg_transaction(void *impl, struct store *s, store_txn_fn fn, void *userdata)
{
	return transaction_run(impl, s, fn, userdata, false);
}

/* Runs fn(c, a, b, out) as its own transaction, or inside the open one. */
typedef int (*write_fn)(struct pg_conn *c, const void *a, const void *b, void *out);
struct write_call {
	write_fn fn;
	const void *a, *b;
	void *out;
};

static int write_call_run(struct store *s, void *userdata)
{
	struct write_call *w = userdata;
	return w->fn(txn_conn, w->a, w->b, w->out);
}

static int run_write(struct pg_store *st, write_fn fn, const void *a, const void *b, void *out, bool relaxed)
{
	struct write_call w = { fn, a, b, out };

	if (txn_conn)
		return fn(txn_conn, a, b, out);
	return transaction_run(st, NULL, write_call_run, &w, relaxed);
}

/* A query on a pooled connection (or the open transaction's): the whole result in *ret. A
 * connection found broken is replaced and the query sent once more: a read changes nothing. */
static int run_query(struct pg_store *st, enum stmt_id id, const struct params *p, PGresult **ret)
{
	int r = 0;

	for (unsigned attempt = 0; attempt < 2; attempt++) {
		struct pg_conn *c;
		bool in_txn = txn_conn != NULL;

		r = conn_acquire(st, &c);
		if (r < 0)
			return r;
		r = pg_exec(c, id, p, ret);
		if (r >= 0 || in_txn || !conn_broken(c)) {
			conn_release(st, c);
			return r;
		}
		conn_release(st, c);
	}
	return r;
}

/* One row of statement id: 0 with *ret holding it (row 0), -ENOENT, or -errno. */
static int query_one(struct pg_store *st, enum stmt_id id, const struct params *p, PGresult **ret)
{
	int r = run_query(st, id, p, ret);

	if (r < 0)
		return r;
	if (PQntuples(*ret) < 1) {
		PQclear(*ret);
		*ret = NULL;
		return -ENOENT;
	}
	return 0;
}

/* Within a write: one row on c. */
static int exec_one(struct pg_conn *c, enum stmt_id id, const struct params *p, PGresult **ret)
{
	int r = pg_exec(c, id, p, ret);

	if (r < 0)
		return r;
	if (PQntuples(*ret) < 1) {
		PQclear(*ret);
		*ret = NULL;
		return -ENOENT;
	}
	return 0;
}

/* Every row of a result through row_cb; stops at the first error. Clears res. */
static int list_rows(PGresult *res, int (*row_cb)(const PGresult *res, int row, void *ud), void *ud)
{
	int r = 0;

	for (int i = 0; i < PQntuples(res) && r >= 0; i++)
		r = row_cb(res, i, ud);
	PQclear(res);
	return r;
}

struct list_ctx {
	void *cb;
	void *userdata;
};

static int migrate(struct pg_conn *c)
{
	PGresult *res;
	char sql[96];
	int r, version;

	/* One transaction for all steps (PostgreSQL's DDL is transactional): a crash leaves the
	 * schema as it was. The lock makes a second replica starting at the same time wait, then
	 * find the schema current. */
	snprintf(sql, sizeof(sql), "BEGIN; SELECT pg_advisory_xact_lock(%lld)", (long long)MIGRATION_LOCK);
	r = simple(c, sql);
	if (r >= 0)
		r = simple(c, "CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL)");
	if (r < 0)
		goto fail;
	res = PQexec(c->pg, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		r = conn_error(c, res, "reading the schema version");
		goto fail;
	}
	version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (version > STORE_SCHEMA_VERSION) {
		log_debug("PostgreSQL: schema version %d is newer than this program's %d", version, STORE_SCHEMA_VERSION);
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	for (; version < STORE_SCHEMA_VERSION; version++) {
		snprintf(sql, sizeof(sql), "INSERT INTO schema_version(version) VALUES (%d)", version + 1);
		r = simple(c, schema_steps[version]);
		if (r >= 0)
			r = simple(c, sql);
		if (r < 0)
			goto fail;
	}
	return simple(c, "COMMIT");
fail:
	if (!conn_broken(c))
		(void)simple(c, "ROLLBACK");
	return r;
}

static void store_pg_close(void *impl)
{
	struct pg_store *st = impl;

	if (!st)
		return;
	while (st->pool) {
		struct pg_conn *c = st->pool;
		st->pool = c->next;
		conn_free(c);
	}
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->freed);
	free(st->conninfo);
	free(st);
}

/* A password in the location would stand in vmcryptd's command line, readable by every local
 * user in /proc, and in the environment it is inherited and dumped by tools: libpq reads it from
 * a password file instead (PGPASSFILE, ~/.pgpass, or passfile= of a service file). */
static int refuse_visible_password(const char *location)
{
	PQconninfoOption *opts;
	char *err = NULL;
	bool has = false;

	if (getenv("PGPASSWORD")) {
		log_error("PGPASSWORD is set: vmcryptd takes no password from the environment; put it in a password "
			  "file (PGPASSFILE=FILE or ~/.pgpass, mode 0600) and unset PGPASSWORD.");
		return -EINVAL;
	}
	opts = PQconninfoParse(location, &err);
	if (!opts) {
		log_error("--store: not a PostgreSQL connection URI: %s", err ? err : "out of memory");
		PQfreemem(err);
		return -EINVAL;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (streq(o->keyword, "password") && o->val && o->val[0])
			has = true;
	PQconninfoFree(opts);
	if (has) {
		log_error("--store holds a password, which every local user can read in the process list; remove it "
			  "and put it in a password file (PGPASSFILE=FILE or ~/.pgpass, mode 0600; see docs/vmcryptd.md).");
		return -EINVAL;
	}
	return 0;
}

static int store_pg_open(const char *location, void **ret_impl)
{
	struct pg_store *st;
	struct pg_conn *c = NULL;
	int r;

	r = refuse_visible_password(location);
	if (r < 0)
		return r;
	if (!PQisthreadsafe())
		return -EPROTONOSUPPORT;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->freed, NULL);
	st->conninfo = strdup(location);
	if (!st->conninfo) {
		store_pg_close(st);
		return -ENOMEM;
	}
	r = conn_acquire(st, &c);
	if (r >= 0) {
		r = migrate(c);
		conn_release(st, c);
	}
	if (r < 0) {
		store_pg_close(st);
		return r;
	}
	*ret_impl = st;
	return 0;
}

static int store_pg_meta_get(void *impl, const char *key, char **ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	p_text(&p, key);
	r = query_one(impl, S_META_GET, &p, &res);
	if (r < 0)
		return r;
	r = col_dup_text(res, 0, 0, ret);
	PQclear(res);
	return r;
}

static int do_meta_set(struct pg_conn *c, const void *a, const void *b, void *out)
{
	struct params p = {};

	p_text(&p, a);
	p_text(&p, b);
	return exec_changes(c, S_META_SET, &p, NULL);
}

static int store_pg_meta_set(void *impl, const char *key, const char *value)
{
	return run_write(impl, do_meta_set, key, value, NULL, false);
}

static int row_vm(const PGresult *res, int i, struct store_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	col_text(vm->name, sizeof(vm->name), res, i, 0);
	col_text(vm->id, sizeof(vm->id), res, i, 1);
	vm->state = (enum store_vm_state)col_i64(res, i, 2);
	col_hash(vm->enroll_hash, TOKEN_HASH_SIZE, res, i, 3);
	col_hash(vm->cred_hash, TOKEN_HASH_SIZE, res, i, 4);
	col_text(vm->hostname, sizeof(vm->hostname), res, i, 5);
	col_text(vm->agent_version, sizeof(vm->agent_version), res, i, 6);
	vm->extension_removed = col_i64(res, i, 7);
	vm->created = col_i64(res, i, 8);
	vm->enrolled = col_i64(res, i, 9);
	vm->last_report_time = col_i64(res, i, 10);
	return col_dup_text(res, i, 11, &vm->last_report);
}

static void bind_vm(struct params *p, const struct store_vm *vm)
{
	p_text(p, vm->name);
	p_text(p, vm->id);
	p_i64(p, vm->state);
	if (vm->state == STORE_VM_REGISTERED)
		p_blob(p, vm->enroll_hash, TOKEN_HASH_SIZE);
	else
		p_null(p);
	if (vm->state != STORE_VM_REGISTERED)
		p_blob(p, vm->cred_hash, TOKEN_HASH_SIZE);
	else
		p_null(p);
	p_text(p, vm->hostname);
	p_text(p, vm->agent_version);
	p_i64(p, vm->extension_removed);
	p_i64(p, vm->created);
	p_i64(p, vm->enrolled);
	p_i64(p, vm->last_report_time);
	p_text(p, vm->last_report); /* NULL stays NULL */
}

static int do_vm_write(struct pg_conn *c, const void *a, const void *b, void *out)
{
	bool insert = b != NULL;
	struct params p = {};
	uint64_t n = 0;
	int r;

	bind_vm(&p, a);
	r = exec_changes(c, insert ? S_VM_INSERT : S_VM_UPDATE, &p, &n);
	if (r >= 0 && !insert && n == 0)
		return -ENOENT;
	return r;
}

static int store_pg_vm_insert(void *impl, const struct store_vm *vm)
{
	return run_write(impl, do_vm_write, vm, "insert", NULL, false);
}

static int store_pg_vm_update(void *impl, const struct store_vm *vm)
{
	return run_write(impl, do_vm_write, vm, NULL, NULL, false);
}

static int vm_get(struct pg_store *st, enum stmt_id id, const char *key, struct store_vm *ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	p_text(&p, key);
	r = query_one(st, id, &p, &res);
	if (r < 0)
		return r;
	r = row_vm(res, 0, ret);
	PQclear(res);
	return r;
}

static int store_pg_vm_get(void *impl, const char *name, struct store_vm *ret)
{
	return vm_get(impl, S_VM_GET, name, ret);
}

static int store_pg_vm_get_by_id(void *impl, const char *id, struct store_vm *ret)
{
	return vm_get(impl, S_VM_GET_BY_ID, id, ret);
}

static int do_vm_delete(struct pg_conn *c, const void *a, const void *b, void *out)
{
	static const enum stmt_id ids[] = { S_VM_DELETE_SECRETS, S_VM_DELETE_HEADERS, S_VM_DELETE_SETTINGS, S_VM_DELETE };

	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		struct params p = {};
		uint64_t n = 0;
		int r;

		p_text(&p, a);
		r = exec_changes(c, ids[i], &p, &n);
		if (r < 0)
			return r;
		if (ids[i] == S_VM_DELETE && n == 0)
			return -ENOENT;
	}
	return 0;
}

static int store_pg_vm_delete(void *impl, const char *name)
{
	return run_write(impl, do_vm_delete, name, NULL, NULL, false);
}

static int vm_row_cb(const PGresult *res, int i, void *ud)
{
	struct list_ctx *l = ud;
	struct store_vm vm;
	int r = row_vm(res, i, &vm);
	if (r >= 0)
		r = ((store_vm_cb)l->cb)(&vm, l->userdata);
	store_vm_done(&vm);
	return r;
}

/* A listing: statement id_all, or id_vm with vm as $1 when vm is set. */
static int list_by(struct pg_store *st, enum stmt_id id_all, enum stmt_id id_vm, const char *vm,
		   int (*row_cb)(const PGresult *res, int row, void *ud), struct list_ctx *l)
{
	struct params p = {};
	PGresult *res;
	int r;

	if (vm)
		p_text(&p, vm);
	r = run_query(st, vm ? id_vm : id_all, &p, &res);
	return r < 0 ? r : list_rows(res, row_cb, l);
}

static int store_pg_vm_list(void *impl, store_vm_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return list_by(impl, S_VM_LIST, S_VM_LIST, NULL, vm_row_cb, &l);
}

static int store_pg_settings_get(void *impl, const char *vm, struct store_settings *s)
{
	struct params p = {};
	PGresult *res;
	int r;

	p_text(&p, vm);
	r = query_one(impl, S_SETTINGS_GET, &p, &res);
	if (r < 0)
		return r;
	memset(s, 0, sizeof(*s));
	col_text(s->vm, sizeof(s->vm), res, 0, 0);
	s->enabled = (unsigned)col_i64(res, 0, 1);
	s->last_type = (unsigned)col_i64(res, 0, 2);
	s->format_all = col_i64(res, 0, 3);
	col_text(s->kek, sizeof(s->kek), res, 0, 4);
	col_text(s->kek_algorithm, sizeof(s->kek_algorithm), res, 0, 5);
	s->sequence = (uint64_t)col_i64(res, 0, 6);
	s->updated = col_i64(res, 0, 7);
	PQclear(res);
	return 0;
}

static int do_settings_put(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const struct store_settings *s = a;
	struct params p = {};

	p_text(&p, s->vm);
	p_i64(&p, s->enabled);
	p_i64(&p, s->last_type);
	p_i64(&p, s->format_all);
	p_text(&p, s->kek);
	p_text(&p, s->kek_algorithm);
	p_i64(&p, (int64_t)s->sequence);
	p_i64(&p, s->updated);
	return exec_changes(c, S_SETTINGS_PUT, &p, NULL);
}

static int store_pg_settings_put(void *impl, const struct store_settings *s)
{
	return run_write(impl, do_settings_put, s, NULL, NULL, false);
}

static int row_key(const PGresult *res, int i, struct store_key *k)
{
	int r;

	memset(k, 0, sizeof(*k));
	col_text(k->name, sizeof(k->name), res, i, 0);
	k->version = (uint32_t)col_i64(res, i, 1);
	col_text(k->kty, sizeof(k->kty), res, i, 2);
	k->size = (unsigned)col_i64(res, i, 3);
	k->enabled = col_i64(res, i, 4);
	k->created = col_i64(res, i, 5);
	r = col_dup_blob(res, i, 6, &k->sealed, &k->sealed_size);
	if (r >= 0)
		r = col_dup_text(res, i, 7, &k->public_pem);
	if (r < 0)
		store_key_done(k);
	return r;
}

static int do_key_insert(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const struct store_key *k = a;
	struct params p = {};

	p_text(&p, k->name);
	p_i64(&p, k->version);
	p_text(&p, k->kty);
	p_i64(&p, k->size);
	p_i64(&p, k->enabled);
	p_i64(&p, k->created);
	p_blob(&p, k->sealed, k->sealed_size);
	p_text(&p, k->public_pem);
	return exec_changes(c, S_KEY_INSERT, &p, NULL);
}

static int store_pg_key_insert(void *impl, const struct store_key *key)
{
	return run_write(impl, do_key_insert, key, NULL, NULL, false);
}

static int store_pg_key_get(void *impl, const char *name, uint32_t version, struct store_key *ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	p_text(&p, name);
	if (version)
		p_i64(&p, version);
	r = query_one(impl, version ? S_KEY_GET : S_KEY_GET_LATEST, &p, &res);
	if (r < 0)
		return r;
	r = row_key(res, 0, ret);
	PQclear(res);
	return r;
}

static int do_key_set_enabled(struct pg_conn *c, const void *a, const void *b, void *out)
{
	struct params p = {};
	uint64_t n = 0;
	int r;

	p_text(&p, a);
	p_i64(&p, *(const bool *)b);
	r = exec_changes(c, S_KEY_SET_ENABLED, &p, &n);
	if (r >= 0 && n == 0)
		return -ENOENT;
	return r;
}

static int store_pg_key_set_enabled(void *impl, const char *name, bool enabled)
{
	return run_write(impl, do_key_set_enabled, name, &enabled, NULL, false);
}

static int key_row_cb(const PGresult *res, int i, void *ud)
{
	struct list_ctx *l = ud;
	struct store_key k;
	int r = row_key(res, i, &k);
	if (r >= 0)
		r = ((store_key_cb)l->cb)(&k, l->userdata);
	store_key_done(&k);
	return r;
}

static int store_pg_key_list(void *impl, store_key_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return list_by(impl, S_KEY_LIST, S_KEY_LIST, NULL, key_row_cb, &l);
}

/* The next version of (vm, volume). Two writers asking at once both read the same maximum; the
 * second insert then conflicts, and SERIALIZABLE reports that as a serialization failure (its
 * read saw the key range), so the transaction runs again and takes the next number. */
static int next_version(struct pg_conn *c, enum stmt_id id, const char *vm, const char *volume, uint32_t *ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	p_text(&p, vm);
	p_text(&p, volume);
	r = exec_one(c, id, &p, &res);
	if (r < 0)
		return r;
	*ret = (uint32_t)col_i64(res, 0, 0);
	PQclear(res);
	return 0;
}

static void bind_version(struct params *p, const char *vm, const char *volume, uint32_t version)
{
	p_text(p, vm);
	p_text(p, volume);
	if (version)
		p_i64(p, version);
}

static int row_secret(const PGresult *res, int i, struct store_secret *s)
{
	memset(s, 0, sizeof(*s));
	col_text(s->vm, sizeof(s->vm), res, i, 0);
	col_text(s->volume, sizeof(s->volume), res, i, 1);
	s->version = (uint32_t)col_i64(res, i, 2);
	col_text(s->content_type, sizeof(s->content_type), res, i, 3);
	col_text(s->file_name, sizeof(s->file_name), res, i, 4);
	col_text(s->kek, sizeof(s->kek), res, i, 5);
	s->kek_version = (uint32_t)col_i64(res, i, 6);
	col_text(s->kek_algorithm, sizeof(s->kek_algorithm), res, i, 7);
	s->created = col_i64(res, i, 8);
	return col_dup_blob(res, i, 9, &s->sealed, &s->sealed_size);
}

static int do_secret_insert(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const struct store_secret *s = a;
	struct params p = {};
	uint32_t version;
	int r;

	r = next_version(c, S_SECRET_NEXT_VERSION, s->vm, s->volume, &version);
	if (r < 0)
		return r;
	p_text(&p, s->vm);
	p_text(&p, s->volume);
	p_i64(&p, version);
	p_text(&p, s->content_type);
	p_text(&p, s->file_name);
	p_text(&p, s->kek);
	p_i64(&p, s->kek_version);
	p_text(&p, s->kek_algorithm);
	p_i64(&p, s->created);
	p_blob(&p, s->sealed, s->sealed_size);
	r = exec_changes(c, S_SECRET_INSERT, &p, NULL);
	if (r >= 0 && out)
		*(uint32_t *)out = version;
	return r;
}

static int store_pg_secret_insert(void *impl, const struct store_secret *secret, uint32_t *ret_version)
{
	return run_write(impl, do_secret_insert, secret, NULL, ret_version, false);
}

static int store_pg_secret_get(void *impl, const char *vm, const char *volume, uint32_t version,
			       struct store_secret *ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	bind_version(&p, vm, volume, version);
	r = query_one(impl, version ? S_SECRET_GET : S_SECRET_GET_LATEST, &p, &res);
	if (r < 0)
		return r;
	r = row_secret(res, 0, ret);
	PQclear(res);
	return r;
}

static int secret_row_cb(const PGresult *res, int i, void *ud)
{
	struct list_ctx *l = ud;
	struct store_secret s;
	int r = row_secret(res, i, &s);
	if (r >= 0)
		r = ((store_secret_cb)l->cb)(&s, l->userdata);
	store_secret_done(&s);
	return r;
}

static int store_pg_secret_list(void *impl, const char *vm, store_secret_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return list_by(impl, S_SECRET_LIST, S_SECRET_LIST_VM, vm, secret_row_cb, &l);
}

static int row_header(const PGresult *res, int i, struct store_header *h, bool with_data)
{
	int r;

	memset(h, 0, sizeof(*h));
	col_text(h->vm, sizeof(h->vm), res, i, 0);
	col_text(h->volume, sizeof(h->volume), res, i, 1);
	h->version = (uint32_t)col_i64(res, i, 2);
	h->size = (uint64_t)col_i64(res, i, 3);
	col_hash(h->sha256, DIGEST_SHA256_SIZE, res, i, 4);
	h->created = col_i64(res, i, 5);
	col_text(h->kek, sizeof(h->kek), res, i, 6);
	h->kek_version = (uint32_t)col_i64(res, i, 7);
	col_text(h->kek_algorithm, sizeof(h->kek_algorithm), res, i, 8);
	if (!with_data)
		return 0;
	r = col_dup_blob(res, i, 9, &h->sealed_key, &h->sealed_key_size);
	if (r >= 0)
		r = col_dup_blob(res, i, 10, &h->data, &h->data_size);
	if (r < 0)
		store_header_done(h);
	return r;
}

static int do_header_insert(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const struct store_header *h = a;
	const unsigned keep = *(const unsigned *)b;
	struct params p = {}, pp = {};
	uint32_t version;
	int r;

	if (keep < 1 || h->size > INT64_MAX || h->data_size > INT32_MAX || h->sealed_key_size > INT32_MAX)
		return -EINVAL;
	r = next_version(c, S_HEADER_NEXT_VERSION, h->vm, h->volume, &version);
	if (r < 0)
		return r;
	p_text(&p, h->vm);
	p_text(&p, h->volume);
	p_i64(&p, version);
	p_i64(&p, (int64_t)h->size);
	p_blob(&p, h->sha256, DIGEST_SHA256_SIZE);
	p_i64(&p, h->created);
	p_text(&p, h->kek);
	p_i64(&p, h->kek_version);
	p_text(&p, h->kek_algorithm);
	p_blob(&p, h->sealed_key, h->sealed_key_size);
	p_blob(&p, h->data, h->data_size);
	r = exec_changes(c, S_HEADER_INSERT, &p, NULL);
	if (r < 0)
		return r;
	/* In the transaction that inserted the new version, as in store-sqlite.c. */
	p_text(&pp, h->vm);
	p_text(&pp, h->volume);
	p_i64(&pp, keep);
	r = exec_changes(c, S_HEADER_PRUNE, &pp, NULL);
	if (r >= 0 && out)
		*(uint32_t *)out = version;
	return r;
}

static int store_pg_header_insert(void *impl, const struct store_header *header, unsigned keep, uint32_t *ret_version)
{
	return run_write(impl, do_header_insert, header, &keep, ret_version, false);
}

static int store_pg_header_get(void *impl, const char *vm, const char *volume, uint32_t version,
			       struct store_header *ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	bind_version(&p, vm, volume, version);
	r = query_one(impl, version ? S_HEADER_GET : S_HEADER_GET_LATEST, &p, &res);
	if (r < 0)
		return r;
	r = row_header(res, 0, ret, true);
	PQclear(res);
	return r;
}

static int header_row_cb(const PGresult *res, int i, void *ud)
{
	struct list_ctx *l = ud;
	struct store_header h;
	int r = row_header(res, i, &h, false);
	if (r >= 0)
		r = ((store_header_cb)l->cb)(&h, l->userdata);
	return r;
}

static int store_pg_header_list(void *impl, const char *vm, store_header_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return list_by(impl, S_HEADER_LIST, S_HEADER_LIST_VM, vm, header_row_cb, &l);
}

static void row_token(const PGresult *res, int i, struct store_token *t)
{
	memset(t, 0, sizeof(*t));
	col_text(t->name, sizeof(t->name), res, i, 0);
	col_text(t->id, sizeof(t->id), res, i, 1);
	t->role = api_role_from_string(PQgetisnull(res, i, 2) ? "" : PQgetvalue(res, i, 2));
	col_hash(t->hash, TOKEN_HASH_SIZE, res, i, 3);
	t->created = col_i64(res, i, 4);
	t->last_used = col_i64(res, i, 5);
	t->revoked = col_i64(res, i, 6);
}

static int do_token_insert(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const struct store_token *t = a;
	const char *role = api_role_to_string(t->role);
	struct params p = {};

	if (!role)
		return -EINVAL;
	p_text(&p, t->name);
	p_text(&p, t->id);
	p_text(&p, role);
	p_blob(&p, t->hash, TOKEN_HASH_SIZE);
	p_i64(&p, t->created);
	p_i64(&p, t->last_used);
	p_i64(&p, t->revoked);
	return exec_changes(c, S_TOKEN_INSERT, &p, NULL);
}

static int store_pg_token_insert(void *impl, const struct store_token *token)
{
	return run_write(impl, do_token_insert, token, NULL, NULL, false);
}

static int token_get(struct pg_store *st, enum stmt_id id, const char *key, struct store_token *ret)
{
	struct params p = {};
	PGresult *res;
	int r;

	p_text(&p, key);
	r = query_one(st, id, &p, &res);
	if (r < 0)
		return r;
	row_token(res, 0, ret);
	PQclear(res);
	return 0;
}

static int store_pg_token_get(void *impl, const char *name, struct store_token *ret)
{
	return token_get(impl, S_TOKEN_GET, name, ret);
}

static int store_pg_token_get_by_id(void *impl, const char *id, struct store_token *ret)
{
	return token_get(impl, S_TOKEN_GET_BY_ID, id, ret);
}

/* a: the name or id, b: the time; out: the statement id (S_TOKEN_REVOKE or S_TOKEN_TOUCH). */
static int do_token_set(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const enum stmt_id id = *(const enum stmt_id *)out;
	struct params p = {}, pg = {};
	PGresult *res;
	uint64_t n = 0;
	int r;

	p_text(&p, a);
	p_i64(&p, *(const int64_t *)b);
	r = exec_changes(c, id, &p, &n);
	if (r < 0 || n > 0)
		return r;
	if (id == S_TOKEN_TOUCH)
		return -ENOENT;
	/* Nothing revoked: no such token, or one revoked before (kept as it was). */
	p_text(&pg, a);
	r = exec_one(c, S_TOKEN_GET, &pg, &res);
	if (r < 0)
		return r;
	PQclear(res);
	return -EALREADY;
}

static int store_pg_token_revoke(void *impl, const char *name, int64_t when)
{
	enum stmt_id id = S_TOKEN_REVOKE;
	return run_write(impl, do_token_set, name, &when, &id, false);
}

static int store_pg_token_touch(void *impl, const char *id, int64_t when)
{
	enum stmt_id sid = S_TOKEN_TOUCH;
	/* Relaxed, as a read-audit event. */
	return run_write(impl, do_token_set, id, &when, &sid, true);
}

static int token_row_cb(const PGresult *res, int i, void *ud)
{
	struct list_ctx *l = ud;
	struct store_token t;

	row_token(res, i, &t);
	return ((store_token_cb)l->cb)(&t, l->userdata);
}

static int store_pg_token_list(void *impl, store_token_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return list_by(impl, S_TOKEN_LIST, S_TOKEN_LIST, NULL, token_row_cb, &l);
}

static int do_audit_append(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const struct store_audit *e = a;
	struct params p = {};

	p_i64(&p, e->time);
	p_text(&p, e->actor);
	p_text(&p, e->action);
	p_text(&p, e->object);
	p_text(&p, e->result);
	p_text(&p, e->source);
	return exec_changes(c, S_AUDIT_APPEND, &p, NULL);
}

static int store_pg_audit_append(void *impl, const struct store_audit *event)
{
	return run_write(impl, do_audit_append, event, NULL, NULL, false);
}

static int store_pg_audit_append_read(void *impl, const struct store_audit *event)
{
	return run_write(impl, do_audit_append, event, NULL, NULL, true);
}

static int audit_row_cb(const PGresult *res, int i, void *ud)
{
	struct list_ctx *l = ud;
	struct store_audit e = {};

	e.id = col_i64(res, i, 0);
	e.time = col_i64(res, i, 1);
	col_text(e.actor, sizeof(e.actor), res, i, 2);
	col_text(e.action, sizeof(e.action), res, i, 3);
	col_text(e.object, sizeof(e.object), res, i, 4);
	col_text(e.result, sizeof(e.result), res, i, 5);
	col_text(e.source, sizeof(e.source), res, i, 6);
	return ((store_audit_cb)l->cb)(&e, l->userdata);
}

static int store_pg_audit_list(void *impl, const char *object_prefix, int64_t since, enum api_audit_result result,
			       store_audit_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	struct params p = {};
	PGresult *res;
	int r;

	if (result < 0 || result >= _API_AUDIT_RESULT_MAX)
		return -EINVAL;
	p_text(&p, object_prefix);
	p_i64(&p, since);
	p_text(&p, result == API_AUDIT_ANY ? NULL : result == API_AUDIT_OK ? "t" : "f");
	r = run_query(impl, S_AUDIT_LIST, &p, &res);
	return r < 0 ? r : list_rows(res, audit_row_cb, &l);
}

static int do_audit_prune(struct pg_conn *c, const void *a, const void *b, void *out)
{
	const int64_t before = *(const int64_t *)a;
	const uint64_t max_rows = *(const uint64_t *)b;
	int64_t keep = max_rows > 0 && max_rows < INT64_MAX ? (int64_t)max_rows : INT64_MAX, cutoff = 0;
	struct store_audit_pruned *ret = out;
	struct params p = {};
	PGresult *res;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (keep != INT64_MAX) {
		r = exec_one(c, S_AUDIT_SPAN, NULL, &res);
		if (r < 0)
			return r;
		if (col_i64(res, 0, 0) > keep) {
			struct params pc = {};

			PQclear(res);
			/* Over the cap (a row keep below the newest exists): drop one more, to leave
			 * room for the event telling of it, as store-sqlite.c does. */
			p_i64(&pc, keep);
			r = pg_exec(c, S_AUDIT_CUTOFF, &pc, &res);
			if (r < 0)
				return r;
			if (PQntuples(res) == 1) {
				PQclear(res);
				pc = (struct params){};
				p_i64(&pc, keep > 1 ? keep - 1 : keep);
				r = exec_one(c, S_AUDIT_CUTOFF, &pc, &res);
				if (r < 0)
					return r;
				cutoff = col_i64(res, 0, 0);
			}
		}
		PQclear(res);
	}
	p_i64(&p, before);
	p_i64(&p, cutoff);
	p_i64(&p, STORE_AUDIT_PRUNE_MAX);
	r = exec_one(c, S_AUDIT_DROP, &p, &res);
	if (r < 0)
		return r;
	ret->count = (uint64_t)col_i64(res, 0, 0);
	ret->oldest = col_i64(res, 0, 1);
	ret->newest = col_i64(res, 0, 2);
	PQclear(res);
	return 0;
}

static int store_pg_audit_prune(void *impl, int64_t before, uint64_t max_rows, struct store_audit_pruned *ret)
{
	return run_write(impl, do_audit_prune, &before, &max_rows, ret, false);
}

const struct store_ops store_pg_ops = {
	.name = "postgresql",
	.open = store_pg_open,
	.close = store_pg_close,
	.transaction = store_pg_transaction,
	.meta_get = store_pg_meta_get,
	.meta_set = store_pg_meta_set,
	.vm_insert = store_pg_vm_insert,
	.vm_get = store_pg_vm_get,
	.vm_get_by_id = store_pg_vm_get_by_id,
	.vm_update = store_pg_vm_update,
	.vm_delete = store_pg_vm_delete,
	.vm_list = store_pg_vm_list,
	.settings_get = store_pg_settings_get,
	.settings_put = store_pg_settings_put,
	.key_insert = store_pg_key_insert,
	.key_get = store_pg_key_get,
	.key_set_enabled = store_pg_key_set_enabled,
	.key_list = store_pg_key_list,
	.secret_insert = store_pg_secret_insert,
	.secret_get = store_pg_secret_get,
	.secret_list = store_pg_secret_list,
	.header_insert = store_pg_header_insert,
	.header_get = store_pg_header_get,
	.header_list = store_pg_header_list,
	.token_insert = store_pg_token_insert,
	.token_get = store_pg_token_get,
	.token_get_by_id = store_pg_token_get_by_id,
	.token_revoke = store_pg_token_revoke,
	.token_touch = store_pg_token_touch,
	.token_list = store_pg_token_list,
	.audit_append = store_pg_audit_append,
	.audit_append_read = store_pg_audit_append_read,
	.audit_list = store_pg_audit_list,
	.audit_prune = store_pg_audit_prune,
};
