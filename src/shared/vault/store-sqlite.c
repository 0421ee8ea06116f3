/* SQLite backend of the store: WAL, synchronous=FULL, one writer connection with group commit,
 * a pool of reader connections, prepared statements cached per connection.
 *
 * Group commit: callers of transaction() queue their function; one of them (the leader) takes
 * the whole queue, runs each function inside its own SAVEPOINT of a single BEGIN IMMEDIATE
 * transaction, commits once (one fsync of the WAL for the batch) and wakes the others. A caller
 * returns only after the commit that contains its changes, so acknowledged writes survive
 * kill -9 and power loss (synchronous=FULL). A batch made only of read-audit events
 * (audit_append_read) and token uses (token_touch) commits with synchronous=NORMAL: the WAL
 * is written before the callers return, so a killed process loses nothing, and the next FULL
 * commit flushes those frames too.
 *
 * Checkpoints run in a background thread on their own connection (PASSIVE, every 100 ms), never
 * inside a commit: an automatic checkpoint would make the unlucky committer copy the WAL into the
 * database and fsync it while every other writer waits behind it. Under constant writes a passive
 * checkpoint never catches up with the end of the WAL, so the WAL would never restart and grow
 * without bound. Past WAL_RESTART_FRAMES the thread asks the next batch leader, the only writer, to
 * run a RESTART checkpoint before its transaction: it copies the few frames the passive ones have
 * not, and the WAL starts over. (The thread cannot do it itself: the writer lock has no fairness,
 * and back-to-back batches would starve it.) */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/vault/store.h"

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S_SYNC_FULL,
	S_SYNC_NORMAL,
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
	S_AUDIT_DROPPED,
	S_AUDIT_DROP,
	_S_MAX,
};

#define VM_COLUMNS                                                                                  \
	"name, id, state, enroll_hash, cred_hash, hostname, agent_version, extension_removed, created, " \
	"enrolled, last_report_time, last_report"
#define KEY_COLUMNS "name, version, kty, size, enabled, created, sealed, public_pem"
#define SECRET_COLUMNS \
	"vm, volume, version, content_type, file_name, kek, kek_version, kek_algorithm, created, sealed"
/* Listings read the metadata only: a header's data is up to 32 MiB. */
#define HEADER_META_COLUMNS "vm, volume, version, size, sha256, created, kek, kek_version, kek_algorithm"
#define HEADER_COLUMNS HEADER_META_COLUMNS ", sealed_key, data"
#define TOKEN_COLUMNS "name, id, role, hash, created, last_used, revoked"

static const char *const stmt_sql[_S_MAX] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SAVEPOINT] = "SAVEPOINT job",
	[S_RELEASE] = "RELEASE job",
	[S_ROLLBACK_TO] = "ROLLBACK TO job",
	[S_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[S_META_SET] = "INSERT INTO meta(key, value) VALUES (?1, ?2) "
		       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	[S_VM_INSERT] = "INSERT INTO vms(" VM_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[S_VM_GET] = "SELECT " VM_COLUMNS " FROM vms WHERE name = ?1",
	[S_VM_GET_BY_ID] = "SELECT " VM_COLUMNS " FROM vms WHERE id = ?1",
	[S_VM_UPDATE] = "UPDATE vms SET state = ?3, enroll_hash = ?4, cred_hash = ?5, hostname = ?6, "
			"agent_version = ?7, extension_removed = ?8, created = ?9, enrolled = ?10, "
			"last_report_time = ?11, last_report = ?12 WHERE name = ?1 AND id = ?2",
	[S_VM_DELETE] = "DELETE FROM vms WHERE name = ?1",
	[S_VM_DELETE_SETTINGS] = "DELETE FROM settings WHERE vm = ?1",
	[S_VM_DELETE_SECRETS] = "DELETE FROM secrets WHERE vm = ?1",
	[S_VM_DELETE_HEADERS] = "DELETE FROM headers WHERE vm = ?1",
	[S_VM_LIST] = "SELECT " VM_COLUMNS " FROM vms ORDER BY name",
	[S_SETTINGS_GET] = "SELECT vm, enabled, last_type, format_all, kek, kek_algorithm, sequence, updated "
			   "FROM settings WHERE vm = ?1",
	[S_SETTINGS_PUT] = "INSERT INTO settings(vm, enabled, last_type, format_all, kek, kek_algorithm, sequence, "
			   "updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(vm) DO UPDATE SET "
			   "enabled = excluded.enabled, last_type = excluded.last_type, format_all = "
			   "excluded.format_all, kek = excluded.kek, kek_algorithm = excluded.kek_algorithm, "
			   "sequence = excluded.sequence, updated = excluded.updated",
	[S_KEY_INSERT] = "INSERT INTO keys(" KEY_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[S_KEY_GET] = "SELECT " KEY_COLUMNS " FROM keys WHERE name = ?1 AND version = ?2",
	[S_KEY_GET_LATEST] = "SELECT " KEY_COLUMNS " FROM keys WHERE name = ?1 ORDER BY version DESC LIMIT 1",
	[S_KEY_SET_ENABLED] = "UPDATE keys SET enabled = ?2 WHERE name = ?1",
	[S_KEY_LIST] = "SELECT " KEY_COLUMNS " FROM keys k WHERE version = "
		       "(SELECT MAX(version) FROM keys WHERE name = k.name) ORDER BY name",
	[S_SECRET_NEXT_VERSION] = "SELECT COALESCE(MAX(version), 0) + 1 FROM secrets WHERE vm = ?1 AND volume = ?2",
	[S_SECRET_INSERT] = "INSERT INTO secrets(" SECRET_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[S_SECRET_GET] = "SELECT " SECRET_COLUMNS " FROM secrets WHERE vm = ?1 AND volume = ?2 AND version = ?3",
	[S_SECRET_GET_LATEST] = "SELECT " SECRET_COLUMNS " FROM secrets WHERE vm = ?1 AND volume = ?2 "
				"ORDER BY version DESC LIMIT 1",
	[S_SECRET_LIST] = "SELECT " SECRET_COLUMNS " FROM secrets s WHERE version = (SELECT MAX(version) FROM "
			  "secrets WHERE vm = s.vm AND volume = s.volume) ORDER BY vm, volume",
	[S_SECRET_LIST_VM] = "SELECT " SECRET_COLUMNS " FROM secrets s WHERE vm = ?1 AND version = (SELECT "
			     "MAX(version) FROM secrets WHERE vm = s.vm AND volume = s.volume) ORDER BY volume",
	[S_HEADER_NEXT_VERSION] = "SELECT COALESCE(MAX(version), 0) + 1 FROM headers WHERE vm = ?1 AND volume = ?2",
	[S_HEADER_INSERT] = "INSERT INTO headers(" HEADER_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_HEADER_PRUNE] = "DELETE FROM headers WHERE vm = ?1 AND volume = ?2 AND version NOT IN (SELECT version FROM "
			   "headers WHERE vm = ?1 AND volume = ?2 ORDER BY version DESC LIMIT ?3)",
	[S_HEADER_GET] = "SELECT " HEADER_COLUMNS " FROM headers WHERE vm = ?1 AND volume = ?2 AND version = ?3",
	[S_HEADER_GET_LATEST] = "SELECT " HEADER_COLUMNS " FROM headers WHERE vm = ?1 AND volume = ?2 "
				"ORDER BY version DESC LIMIT 1",
	[S_HEADER_LIST] = "SELECT " HEADER_META_COLUMNS " FROM headers ORDER BY vm, volume, version",
	[S_HEADER_LIST_VM] = "SELECT " HEADER_META_COLUMNS " FROM headers WHERE vm = ?1 ORDER BY volume, version",
	[S_TOKEN_INSERT] = "INSERT INTO tokens(" TOKEN_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[S_TOKEN_GET] = "SELECT " TOKEN_COLUMNS " FROM tokens WHERE name = ?1",
	[S_TOKEN_GET_BY_ID] = "SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = ?1",
	[S_TOKEN_REVOKE] = "UPDATE tokens SET revoked = ?2 WHERE name = ?1 AND revoked = 0",
	[S_TOKEN_TOUCH] = "UPDATE tokens SET last_used = ?2 WHERE id = ?1",
	[S_TOKEN_LIST] = "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY name",
	[S_AUDIT_APPEND] = "INSERT INTO audit(time, actor, action, object, result, source) "
			   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	/* The newest 10000 matching events, oldest first: the response has a hard cap. ?3: NULL any
	 * result, 1 ok ("ok" or "ok: ..."), 0 anything else (api_audit_result_is_ok()). */
	[S_AUDIT_LIST] = "SELECT * FROM (SELECT id, time, actor, action, object, result, source FROM audit WHERE "
			 "time >= ?2 AND (?1 IS NULL OR object = ?1 OR substr(object, 1, length(?1) + 1) = ?1 || '/') "
			 "AND (?3 IS NULL OR (result = 'ok' OR substr(result, 1, 3) = 'ok:') = ?3) "
			 "ORDER BY id DESC LIMIT 10000) ORDER BY id",
	/* Retention: events older than ?1, or beyond the newest ?2, among the oldest ?3. Events
	 * only ever go from the oldest end, so ids are contiguous and the newest ?2 are those above
	 * max(id) - ?2. The newest event never goes, so a new rowid is always above the old ones.
	 * The id bounds are rowid ranges: a call reads at most ?3 rows, whatever the table's size. */
#define AUDIT_DROP_WHERE                                                                            \
	"WHERE (time < ?1 OR id <= (SELECT max(id) FROM audit) - ?2) AND id < (SELECT max(id) FROM audit) " \
	"AND id < (SELECT min(id) FROM audit) + ?3"
	/* Each of min() and max() alone is one b-tree descent; together in one SELECT a scan. */
	[S_AUDIT_SPAN] = "SELECT coalesce((SELECT max(id) FROM audit) - (SELECT min(id) FROM audit) + 1, 0)",
	[S_AUDIT_DROPPED] = "SELECT count(*), min(time), max(time) FROM audit " AUDIT_DROP_WHERE,
	[S_AUDIT_DROP] = "DELETE FROM audit " AUDIT_DROP_WHERE,
};

static const char schema_v1[] =
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE vms(name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, state INTEGER NOT NULL, "
	"  enroll_hash BLOB, cred_hash BLOB, hostname TEXT NOT NULL, agent_version TEXT NOT NULL, "
	"  extension_removed INTEGER NOT NULL, created INTEGER NOT NULL, enrolled INTEGER NOT NULL, "
	"  last_report_time INTEGER NOT NULL, last_report TEXT);"
	"CREATE TABLE settings(vm TEXT PRIMARY KEY, enabled INTEGER NOT NULL, last_type INTEGER NOT NULL, "
	"  format_all INTEGER NOT NULL, kek TEXT NOT NULL, kek_algorithm TEXT NOT NULL, "
	"  sequence INTEGER NOT NULL, updated INTEGER NOT NULL);"
	"CREATE TABLE keys(name TEXT NOT NULL, version INTEGER NOT NULL, kty TEXT NOT NULL, size INTEGER NOT NULL, "
	"  enabled INTEGER NOT NULL, created INTEGER NOT NULL, sealed BLOB NOT NULL, public_pem TEXT, "
	"  PRIMARY KEY(name, version));"
	"CREATE TABLE secrets(vm TEXT NOT NULL, volume TEXT NOT NULL, version INTEGER NOT NULL, "
	"  content_type TEXT NOT NULL, file_name TEXT NOT NULL, kek TEXT NOT NULL, kek_version INTEGER NOT NULL, "
	"  kek_algorithm TEXT NOT NULL, created INTEGER NOT NULL, sealed BLOB NOT NULL, "
	"  PRIMARY KEY(vm, volume, version));"
	/* No AUTOINCREMENT: retention deletes only the oldest events and never the newest, so rowids
	 * only grow anyway, and every insert would also rewrite the sqlite_sequence page. */
	"CREATE TABLE audit(id INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL, "
	"  action TEXT NOT NULL, object TEXT NOT NULL, result TEXT NOT NULL);"
	"CREATE INDEX audit_time ON audit(time);";

/* Version 2: every audit event records the client's address (older events get ""). */
static const char schema_v2[] = "ALTER TABLE audit ADD COLUMN source TEXT NOT NULL DEFAULT '';";

/* Version 3: LUKS2 header backups, a few versions per volume (store_header in store.h). */
static const char schema_v3[] =
	"CREATE TABLE headers(vm TEXT NOT NULL, volume TEXT NOT NULL, version INTEGER NOT NULL, "
	"  size INTEGER NOT NULL, sha256 BLOB NOT NULL, created INTEGER NOT NULL, kek TEXT NOT NULL, "
	"  kek_version INTEGER NOT NULL, kek_algorithm TEXT NOT NULL, sealed_key BLOB NOT NULL, "
	"  data BLOB NOT NULL, PRIMARY KEY(vm, volume, version));";

/* Version 4: named tokens with a role (store_token in store.h). The role is its word
 * (api_role_to_string()), so the numbering of the enum may change; revoked rows stay, so a name
 * is never given to a second token and `token list` shows what was revoked and when. */
static const char schema_v4[] =
	"CREATE TABLE tokens(name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, role TEXT NOT NULL, "
	"  hash BLOB NOT NULL, created INTEGER NOT NULL, last_used INTEGER NOT NULL, "
	"  revoked INTEGER NOT NULL);";

/* schema_steps[i] takes the schema from version i to i + 1. */
static const char *const schema_steps[STORE_SCHEMA_VERSION] = { schema_v1, schema_v2, schema_v3, schema_v4 };

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[_S_MAX];
	struct conn *next;
};

struct job {
	store_txn_fn fn;
	struct store *s;
	void *userdata;
	int result;
	bool done;
	bool relaxed; /* a read-audit event: needs no flush of its own */
	struct job *next;
};

/* Most jobs one commit carries; bounds the latency a batch adds to its last member. */
#define BATCH_MAX 256

struct sqlite_store {
	char *path;
	struct conn *writer;
	pthread_mutex_t lock; /* guards queue, leader, pool */
	pthread_cond_t done;
	struct job *queue, **queue_tail;
	bool leader;
	struct conn *pool;

	pthread_t checkpointer;
	bool checkpointer_running;
	bool stopping;             /* guarded by lock */
	pthread_cond_t stop;
	bool restart_wanted;       /* atomic: the WAL is long, the next leader restarts it */
	bool sync_normal;          /* the writer is at synchronous=NORMAL (only the leader touches it) */
};

/* The writer connection while this thread runs a batch as leader: store calls made by the
 * batch's functions join the open transaction through it. */
static __thread struct conn *txn_conn;

static int errno_from_sqlite(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	/* A WAL reader that found every read-mark lock taken for its ~10 s of retries: contention,
	 * not damage (sqlite.org/rescode.html#protocol). */
	case SQLITE_PROTOCOL:
		return -EBUSY;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	default:
		return -EIO;
	}
}

static int db_error(sqlite3 *db, int rc, const char *what)
{
	log_debug("SQLite: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	return errno_from_sqlite(rc);
}

static int stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **ret)
{
	if (!c->stmt[id]) {
		int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id], NULL);
		if (rc != SQLITE_OK)
			return db_error(c->db, rc, stmt_sql[id]);
	}
	*ret = c->stmt[id];
	return 0;
}

static void stmt_resetp(sqlite3_stmt **q)
{
	if (*q) {
		sqlite3_reset(*q);
		sqlite3_clear_bindings(*q);
	}
}
#define _cleanup_stmt_ _cleanup_(stmt_resetp)

/* Runs a statement that returns no rows. */
static int exec_stmt(struct conn *c, sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error(c->db, rc, sqlite3_sql(q));
	return 0;
}

static int exec_id(struct conn *c, enum stmt_id id)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, id, &q);
	return r < 0 ? r : exec_stmt(c, q);
}

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < _S_MAX; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close(c->db);
	free(c);
}

static int conn_open(const char *path, bool writer, struct conn **ret)
{
	struct conn *c = calloc(1, sizeof(*c));
	int rc, flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE | (writer ? SQLITE_OPEN_CREATE : 0);
	char *msg = NULL;

	if (!c)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &c->db, flags, NULL);
	if (rc != SQLITE_OK) {
		int r = db_error(c->db, rc, path);
		conn_free(c);
		return r;
	}
	sqlite3_busy_timeout(c->db, 10000);
	rc = sqlite3_exec(c->db,
			  writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
				 : "PRAGMA query_only=ON;",
			  NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		log_debug("SQLite: setting up %s: %s", path, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		conn_free(c);
		return errno_from_sqlite(rc);
	}
	*ret = c;
	return 0;
}

static int migrate(struct conn *c)
{
	sqlite3_stmt *q = NULL;
	char *msg = NULL;
	int rc, version = 0;

	rc = sqlite3_exec(c->db, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)", NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_prepare_v2(c->db, "SELECT MAX(version) FROM schema_version", -1, &q, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	if (sqlite3_step(q) == SQLITE_ROW)
		version = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	if (version > STORE_SCHEMA_VERSION) {
		log_debug("SQLite: schema version %d is newer than this program's %d", version, STORE_SCHEMA_VERSION);
		return -EPROTONOSUPPORT;
	}
	/* Each step commits with its version, so a crash between steps resumes at the next one. */
	for (; version < STORE_SCHEMA_VERSION; version++) {
		char bump[80];

		snprintf(bump, sizeof(bump), "INSERT INTO schema_version(version) VALUES (%d); COMMIT", version + 1);
		rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
		if (rc != SQLITE_OK)
			goto fail;
		rc = sqlite3_exec(c->db, schema_steps[version], NULL, NULL, &msg);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db, bump, NULL, NULL, &msg);
		if (rc != SQLITE_OK) {
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
			goto fail;
		}
	}
	return 0;
fail:
	log_debug("SQLite: schema: %s", msg ? msg : sqlite3_errmsg(c->db));
	sqlite3_free(msg);
	return errno_from_sqlite(rc);
}

#define CHECKPOINT_INTERVAL_MS 100
/* 128 MiB of 4 KiB pages: a restart makes writers wait for a flush of the database file, so it
 * should be rare (about once a minute at 5,000 status reports per second). */
#define WAL_RESTART_FRAMES 32768

static void *checkpointer_main(void *p)
{
	struct sqlite_store *st = p;
	struct conn *c = NULL;

	if (conn_open(st->path, false, &c) < 0)
		return NULL;
	/* A checkpoint writes the database file: query_only would refuse it (SQLITE_READONLY). A
	 * connection learns that the database is in WAL mode only when it first reads it; until then
	 * checkpoints are no-ops. */
	(void)sqlite3_exec(c->db, "PRAGMA query_only=OFF; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
	pthread_mutex_lock(&st->lock);
	while (!st->stopping) {
		struct timespec ts;
		int rc, frames = 0;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += CHECKPOINT_INTERVAL_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&st->stop, &st->lock, &ts);
		if (st->stopping)
			break;
		pthread_mutex_unlock(&st->lock);
		rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, NULL);
		if (rc == SQLITE_OK && frames > WAL_RESTART_FRAMES)
			__atomic_store_n(&st->restart_wanted, true, __ATOMIC_RELAXED);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			log_debug("SQLite: background checkpoint: %s", sqlite3_errmsg(c->db));
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	conn_free(c);
	return NULL;
}

static void store_sqlite_close(void *impl)
{
	struct sqlite_store *st = impl;

	if (!st)
		return;
	if (st->checkpointer_running) {
		pthread_mutex_lock(&st->lock);
		st->stopping = true;
		pthread_cond_broadcast(&st->stop);
		pthread_mutex_unlock(&st->lock);
		pthread_join(st->checkpointer, NULL);
	}
	while (st->pool) {
		struct conn *c = st->pool;
		st->pool = c->next;
		conn_free(c);
	}
	conn_free(st->writer);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->done);
	pthread_cond_destroy(&st->stop);
	free(st->path);
	free(st);
}

static int store_sqlite_open(const char *path, void **ret_impl)
{
	struct sqlite_store *st;
	int r;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->done, NULL);
	pthread_cond_init(&st->stop, NULL);
	st->queue_tail = &st->queue;
	st->path = strdup(path);
	if (!st->path) {
		store_sqlite_close(st);
		return -ENOMEM;
	}
	r = conn_open(path, true, &st->writer);
	if (r >= 0)
		r = migrate(st->writer);
	if (r >= 0 && sqlite3_exec(st->writer->db, "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=134217728",
				   NULL, NULL, NULL) != SQLITE_OK)
		r = -EIO;
	if (r < 0) {
		store_sqlite_close(st);
		return r;
	}
	if (pthread_create(&st->checkpointer, NULL, checkpointer_main, st) == 0)
		st->checkpointer_running = true;
	else /* without the thread, let commits checkpoint, or the WAL would grow without bound */
		(void)sqlite3_exec(st->writer->db, "PRAGMA wal_autocheckpoint=1000", NULL, NULL, NULL);
	*ret_impl = st;
	return 0;
}

static int conn_acquire(struct sqlite_store *st, struct conn **ret)
{
	struct conn *c;

	if (txn_conn) {
		*ret = txn_conn;
		return 0;
	}
	pthread_mutex_lock(&st->lock);
	c = st->pool;
	if (c)
		st->pool = c->next;
	pthread_mutex_unlock(&st->lock);
	if (!c) {
		int r = conn_open(st->path, false, &c);
		if (r < 0)
			return r;
	}
	*ret = c;
	return 0;
}

static void conn_release(struct sqlite_store *st, struct conn *c)
{
	if (c == txn_conn)
		return;
	pthread_mutex_lock(&st->lock);
	c->next = st->pool;
	st->pool = c;
	pthread_mutex_unlock(&st->lock);
}

static void run_batch(struct sqlite_store *st, struct job *batch)
{
	struct conn *c = st->writer;
	int r;

	if (__atomic_exchange_n(&st->restart_wanted, false, __ATOMIC_RELAXED)) {
		int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
		if (rc != SQLITE_OK)
			log_debug("SQLite: WAL restart: %s", sqlite3_errmsg(c->db));
	}
	{
		bool relaxed = true;

		for (struct job *j = batch; j; j = j->next)
			relaxed = relaxed && j->relaxed;
		if (relaxed != st->sync_normal && exec_id(c, relaxed ? S_SYNC_NORMAL : S_SYNC_FULL) >= 0)
			st->sync_normal = relaxed;
		/* If switching back to FULL failed, the batch must not commit at NORMAL. */
		if (!relaxed && st->sync_normal) {
			for (struct job *j = batch; j; j = j->next)
				j->result = -EIO;
			return;
		}
	}
	txn_conn = c;
	r = exec_id(c, S_BEGIN);
	for (struct job *j = batch; j; j = j->next) {
		if (r < 0) {
			j->result = r;
			continue;
		}
		j->result = exec_id(c, S_SAVEPOINT);
		if (j->result < 0)
			continue;
		j->result = j->fn(j->s, j->userdata);
		if (sqlite3_get_autocommit(c->db)) {
			/* SQLite rolled the whole transaction back (I/O error, disk full): nothing of
			 * this batch will commit, so no job of it may report success. */
			r = j->result < 0 ? j->result : -EIO;
			for (struct job *k = batch; k != j->next; k = k->next)
				k->result = r;
			continue;
		}
		if (j->result < 0)
			(void)exec_id(c, S_ROLLBACK_TO);
		(void)exec_id(c, S_RELEASE);
	}
	if (r >= 0) {
		r = exec_id(c, S_COMMIT);
		if (r < 0) {
			(void)exec_id(c, S_ROLLBACK);
			for (struct job *j = batch; j; j = j->next)
				if (j->result >= 0)
					j->result = r;
		}
	}
	txn_conn = NULL;
}

static int transaction_run(struct sqlite_store *st, struct store *s, store_txn_fn fn, void *userdata, bool relaxed)
{
	struct job me = { .fn = fn, .s = s, .userdata = userdata, .relaxed = relaxed };

	/* Called from inside a batch: join the open transaction. */
	if (txn_conn)
		return fn(s, userdata);

	pthread_mutex_lock(&st->lock);
	*st->queue_tail = &me;
	st->queue_tail = &me.next;
	while (!me.done) {
		struct job *batch, *j, **cut;
		unsigned n = 0;

		if (st->leader) {
			pthread_cond_wait(&st->done, &st->lock);
			continue;
		}
		/* Lead: take up to BATCH_MAX jobs from the head of the queue. */
		st->leader = true;
		batch = st->queue;
		for (cut = &st->queue; *cut && n < BATCH_MAX; cut = &(*cut)->next)
			n++;
		st->queue = *cut;
		*cut = NULL;
		if (!st->queue)
			st->queue_tail = &st->queue;
		pthread_mutex_unlock(&st->lock);

		run_batch(st, batch);

		pthread_mutex_lock(&st->lock);
		for (j = batch; j;) {
			struct job *next = j->next;
			/* After done is set the owner may return and its stack frame go away. */
			j->done = true;
			j = next;
		}
		st->leader = false;
		pthread_cond_broadcast(&st->done);
	}
	pthread_mutex_unlock(&st->lock);
	return me.result;
}

static int store_sqlite_transaction(void *impl, struct store *s, store_txn_fn fn, void *userdata)
{
	return transaction_run(impl, s, fn, userdata, false);
}

/* Runs fn(c, a, b, out) as its own transaction, or inside the open one. */
typedef int (*write_fn)(struct conn *c, const void *a, const void *b, void *out);
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

static int run_write(struct sqlite_store *st, write_fn fn, const void *a, const void *b, void *out)
{
	struct write_call w = { fn, a, b, out };

	if (txn_conn)
		return fn(txn_conn, a, b, out);
	return transaction_run(st, NULL, write_call_run, &w, false);
}

/* Column helpers. */
static void copy_text(char *dest, size_t size, sqlite3_stmt *q, int col)
{
	const unsigned char *t = sqlite3_column_text(q, col);
	snprintf(dest, size, "%s", t ? (const char *)t : "");
}

static int dup_blob(sqlite3_stmt *q, int col, uint8_t **ret, size_t *ret_size)
{
	int n = sqlite3_column_bytes(q, col);
	const void *b = sqlite3_column_blob(q, col);

	*ret = NULL;
	*ret_size = 0;
	if (n <= 0 || !b)
		return 0;
	*ret = malloc((size_t)n);
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, b, (size_t)n);
	*ret_size = (size_t)n;
	return 0;
}

static int dup_text(sqlite3_stmt *q, int col, char **ret)
{
	const unsigned char *t = sqlite3_column_text(q, col);

	*ret = NULL;
	if (!t)
		return 0;
	*ret = strdup((const char *)t);
	return *ret ? 0 : -ENOMEM;
}

static void copy_hash(uint8_t *dest, sqlite3_stmt *q, int col)
{
	memset(dest, 0, TOKEN_HASH_SIZE);
	if (sqlite3_column_bytes(q, col) == TOKEN_HASH_SIZE)
		memcpy(dest, sqlite3_column_blob(q, col), TOKEN_HASH_SIZE);
}

static int row_vm(sqlite3_stmt *q, struct store_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	copy_text(vm->name, sizeof(vm->name), q, 0);
	copy_text(vm->id, sizeof(vm->id), q, 1);
	vm->state = (enum store_vm_state)sqlite3_column_int(q, 2);
	copy_hash(vm->enroll_hash, q, 3);
	copy_hash(vm->cred_hash, q, 4);
	copy_text(vm->hostname, sizeof(vm->hostname), q, 5);
	copy_text(vm->agent_version, sizeof(vm->agent_version), q, 6);
	vm->extension_removed = sqlite3_column_int(q, 7);
	vm->created = sqlite3_column_int64(q, 8);
	vm->enrolled = sqlite3_column_int64(q, 9);
	vm->last_report_time = sqlite3_column_int64(q, 10);
	return dup_text(q, 11, &vm->last_report);
}

static int row_key(sqlite3_stmt *q, struct store_key *k)
{
	int r;

	memset(k, 0, sizeof(*k));
	copy_text(k->name, sizeof(k->name), q, 0);
	k->version = (uint32_t)sqlite3_column_int64(q, 1);
	copy_text(k->kty, sizeof(k->kty), q, 2);
	k->size = (unsigned)sqlite3_column_int(q, 3);
	k->enabled = sqlite3_column_int(q, 4);
	k->created = sqlite3_column_int64(q, 5);
	r = dup_blob(q, 6, &k->sealed, &k->sealed_size);
	if (r >= 0)
		r = dup_text(q, 7, &k->public_pem);
	if (r < 0)
		store_key_done(k);
	return r;
}

static int row_secret(sqlite3_stmt *q, struct store_secret *s)
{
	memset(s, 0, sizeof(*s));
	copy_text(s->vm, sizeof(s->vm), q, 0);
	copy_text(s->volume, sizeof(s->volume), q, 1);
	s->version = (uint32_t)sqlite3_column_int64(q, 2);
	copy_text(s->content_type, sizeof(s->content_type), q, 3);
	copy_text(s->file_name, sizeof(s->file_name), q, 4);
	copy_text(s->kek, sizeof(s->kek), q, 5);
	s->kek_version = (uint32_t)sqlite3_column_int64(q, 6);
	copy_text(s->kek_algorithm, sizeof(s->kek_algorithm), q, 7);
	s->created = sqlite3_column_int64(q, 8);
	return dup_blob(q, 9, &s->sealed, &s->sealed_size);
}

/* The metadata columns of a header row; with_data: the sealed key and the data too. */
static int row_header(sqlite3_stmt *q, struct store_header *h, bool with_data)
{
	int r;

	memset(h, 0, sizeof(*h));
	copy_text(h->vm, sizeof(h->vm), q, 0);
	copy_text(h->volume, sizeof(h->volume), q, 1);
	h->version = (uint32_t)sqlite3_column_int64(q, 2);
	h->size = (uint64_t)sqlite3_column_int64(q, 3);
	/* A hash of another length (a damaged row) stays zeros: it matches no header. */
	if (sqlite3_column_bytes(q, 4) == DIGEST_SHA256_SIZE)
		memcpy(h->sha256, sqlite3_column_blob(q, 4), DIGEST_SHA256_SIZE);
	h->created = sqlite3_column_int64(q, 5);
	copy_text(h->kek, sizeof(h->kek), q, 6);
	h->kek_version = (uint32_t)sqlite3_column_int64(q, 7);
	copy_text(h->kek_algorithm, sizeof(h->kek_algorithm), q, 8);
	if (!with_data)
		return 0;
	r = dup_blob(q, 9, &h->sealed_key, &h->sealed_key_size);
	if (r >= 0)
		r = dup_blob(q, 10, &h->data, &h->data_size);
	if (r < 0)
		store_header_done(h);
	return r;
}

/* Steps a single-row query: 0 with the row ready, -ENOENT, or -errno. */
static int step_one(struct conn *c, sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return db_error(c->db, rc, sqlite3_sql(q));
}

/* Read helpers run on a pooled connection (or the open transaction's). */
#define WITH_READ_CONN(st, c, expr)                      \
	({                                               \
		struct conn *c;                          \
		int _r = conn_acquire((st), &c);         \
		if (_r >= 0) {                           \
			_r = (expr);                     \
			conn_release((st), c);           \
		}                                        \
		_r;                                      \
	})

static int do_meta_get(struct conn *c, const char *key, char **ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_META_GET, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	r = step_one(c, q);
	if (r < 0)
		return r;
	return dup_text(q, 0, ret);
}

static int store_sqlite_meta_get(void *impl, const char *key, char **ret)
{
	return WITH_READ_CONN(impl, c, do_meta_get(c, key, ret));
}

static int do_meta_set(struct conn *c, const void *a, const void *b, void *out)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_META_SET, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, b, -1, SQLITE_STATIC);
	return exec_stmt(c, q);
}

static int store_sqlite_meta_set(void *impl, const char *key, const char *value)
{
	return run_write(impl, do_meta_set, key, value, NULL);
}

static void bind_vm(sqlite3_stmt *q, const struct store_vm *vm)
{
	sqlite3_bind_text(q, 1, vm->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, vm->id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 3, (int)vm->state);
	if (vm->state == STORE_VM_REGISTERED)
		sqlite3_bind_blob(q, 4, vm->enroll_hash, TOKEN_HASH_SIZE, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 4);
	if (vm->state != STORE_VM_REGISTERED)
		sqlite3_bind_blob(q, 5, vm->cred_hash, TOKEN_HASH_SIZE, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 5);
	sqlite3_bind_text(q, 6, vm->hostname, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 7, vm->agent_version, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 8, vm->extension_removed);
	sqlite3_bind_int64(q, 9, vm->created);
	sqlite3_bind_int64(q, 10, vm->enrolled);
	sqlite3_bind_int64(q, 11, vm->last_report_time);
	if (vm->last_report)
		sqlite3_bind_text(q, 12, vm->last_report, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 12);
}

static int do_vm_write(struct conn *c, const void *a, const void *b, void *out)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	bool insert = b != NULL;
	int r = stmt_get(c, insert ? S_VM_INSERT : S_VM_UPDATE, &q);
	if (r < 0)
		return r;
	bind_vm(q, a);
	r = exec_stmt(c, q);
	if (r >= 0 && !insert && sqlite3_changes(c->db) == 0)
		return -ENOENT;
	return r;
}

static int store_sqlite_vm_insert(void *impl, const struct store_vm *vm)
{
	return run_write(impl, do_vm_write, vm, "insert", NULL);
}

static int store_sqlite_vm_update(void *impl, const struct store_vm *vm)
{
	return run_write(impl, do_vm_write, vm, NULL, NULL);
}

/* Steps statement id, which takes one text parameter (a name or an id) and returns one row:
 * 0 with the row ready in *q, -ENOENT, or -errno. */
static int step_by_key(struct conn *c, enum stmt_id id, const char *key, sqlite3_stmt **q)
{
	int r = stmt_get(c, id, q);
	if (r < 0)
		return r;
	sqlite3_bind_text(*q, 1, key, -1, SQLITE_STATIC);
	return step_one(c, *q);
}

static int do_vm_get(struct conn *c, enum stmt_id id, const char *key, struct store_vm *ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = step_by_key(c, id, key, &q);
	return r < 0 ? r : row_vm(q, ret);
}

static int store_sqlite_vm_get(void *impl, const char *name, struct store_vm *ret)
{
	return WITH_READ_CONN(impl, c, do_vm_get(c, S_VM_GET, name, ret));
}

static int store_sqlite_vm_get_by_id(void *impl, const char *id, struct store_vm *ret)
{
	return WITH_READ_CONN(impl, c, do_vm_get(c, S_VM_GET_BY_ID, id, ret));
}

static int do_vm_delete(struct conn *c, const void *a, const void *b, void *out)
{
	static const enum stmt_id ids[] = { S_VM_DELETE_SECRETS, S_VM_DELETE_HEADERS, S_VM_DELETE_SETTINGS, S_VM_DELETE };

	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		_cleanup_stmt_ sqlite3_stmt *q = NULL;
		int r = stmt_get(c, ids[i], &q);
		if (r < 0)
			return r;
		sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
		r = exec_stmt(c, q);
		if (r < 0)
			return r;
		if (ids[i] == S_VM_DELETE && sqlite3_changes(c->db) == 0)
			return -ENOENT;
	}
	return 0;
}

static int store_sqlite_vm_delete(void *impl, const char *name)
{
	return run_write(impl, do_vm_delete, name, NULL, NULL);
}

/* Runs a listing query whose parameters are already bound, calling row_cb per row. */
static int list_rows(struct conn *c, sqlite3_stmt *q, int (*row_cb)(sqlite3_stmt *q, void *ud), void *ud)
{
	for (;;) {
		int rc = sqlite3_step(q), r;
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return db_error(c->db, rc, sqlite3_sql(q));
		r = row_cb(q, ud);
		if (r < 0)
			return r;
	}
}

struct list_ctx {
	void *cb;
	void *userdata;
};

/* Every row of statement id (one without parameters) through row_cb. */
static int do_list_all(struct conn *c, enum stmt_id id, int (*row_cb)(sqlite3_stmt *q, void *ud), struct list_ctx *l)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, id, &q);
	return r < 0 ? r : list_rows(c, q, row_cb, l);
}

static int vm_row_cb(sqlite3_stmt *q, void *ud)
{
	struct list_ctx *l = ud;
	struct store_vm vm;
	int r = row_vm(q, &vm);
	if (r >= 0)
		r = ((store_vm_cb)l->cb)(&vm, l->userdata);
	store_vm_done(&vm);
	return r;
}

static int store_sqlite_vm_list(void *impl, store_vm_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return WITH_READ_CONN(impl, c, do_list_all(c, S_VM_LIST, vm_row_cb, &l));
}

static int do_settings_get(struct conn *c, const char *vm, struct store_settings *s)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_SETTINGS_GET, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, vm, -1, SQLITE_STATIC);
	r = step_one(c, q);
	if (r < 0)
		return r;
	memset(s, 0, sizeof(*s));
	copy_text(s->vm, sizeof(s->vm), q, 0);
	s->enabled = (unsigned)sqlite3_column_int(q, 1);
	s->last_type = (unsigned)sqlite3_column_int(q, 2);
	s->format_all = sqlite3_column_int(q, 3);
	copy_text(s->kek, sizeof(s->kek), q, 4);
	copy_text(s->kek_algorithm, sizeof(s->kek_algorithm), q, 5);
	s->sequence = (uint64_t)sqlite3_column_int64(q, 6);
	s->updated = sqlite3_column_int64(q, 7);
	return 0;
}

static int store_sqlite_settings_get(void *impl, const char *vm, struct store_settings *ret)
{
	return WITH_READ_CONN(impl, c, do_settings_get(c, vm, ret));
}

static int do_settings_put(struct conn *c, const void *a, const void *b, void *out)
{
	const struct store_settings *s = a;
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_SETTINGS_PUT, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, s->vm, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, (int)s->enabled);
	sqlite3_bind_int(q, 3, (int)s->last_type);
	sqlite3_bind_int(q, 4, s->format_all);
	sqlite3_bind_text(q, 5, s->kek, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, s->kek_algorithm, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 7, (sqlite3_int64)s->sequence);
	sqlite3_bind_int64(q, 8, s->updated);
	return exec_stmt(c, q);
}

static int store_sqlite_settings_put(void *impl, const struct store_settings *s)
{
	return run_write(impl, do_settings_put, s, NULL, NULL);
}

static int do_key_insert(struct conn *c, const void *a, const void *b, void *out)
{
	const struct store_key *k = a;
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_KEY_INSERT, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, k->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, k->version);
	sqlite3_bind_text(q, 3, k->kty, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 4, (int)k->size);
	sqlite3_bind_int(q, 5, k->enabled);
	sqlite3_bind_int64(q, 6, k->created);
	sqlite3_bind_blob(q, 7, k->sealed, (int)k->sealed_size, SQLITE_STATIC);
	if (k->public_pem)
		sqlite3_bind_text(q, 8, k->public_pem, -1, SQLITE_STATIC);
	return exec_stmt(c, q);
}

static int store_sqlite_key_insert(void *impl, const struct store_key *key)
{
	return run_write(impl, do_key_insert, key, NULL, NULL);
}

static int do_key_get(struct conn *c, const char *name, uint32_t version, struct store_key *ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, version ? S_KEY_GET : S_KEY_GET_LATEST, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if (version)
		sqlite3_bind_int64(q, 2, version);
	r = step_one(c, q);
	if (r < 0)
		return r;
	return row_key(q, ret);
}

static int store_sqlite_key_get(void *impl, const char *name, uint32_t version, struct store_key *ret)
{
	return WITH_READ_CONN(impl, c, do_key_get(c, name, version, ret));
}

static int do_key_set_enabled(struct conn *c, const void *a, const void *b, void *out)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_KEY_SET_ENABLED, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, *(const bool *)b);
	r = exec_stmt(c, q);
	if (r >= 0 && sqlite3_changes(c->db) == 0)
		return -ENOENT;
	return r;
}

static int store_sqlite_key_set_enabled(void *impl, const char *name, bool enabled)
{
	return run_write(impl, do_key_set_enabled, name, &enabled, NULL);
}

static int key_row_cb(sqlite3_stmt *q, void *ud)
{
	struct list_ctx *l = ud;
	struct store_key k;
	int r = row_key(q, &k);
	if (r >= 0)
		r = ((store_key_cb)l->cb)(&k, l->userdata);
	store_key_done(&k);
	return r;
}

static int store_sqlite_key_list(void *impl, store_key_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return WITH_READ_CONN(impl, c, do_list_all(c, S_KEY_LIST, key_row_cb, &l));
}

/* The next version of (vm, volume) by statement id, a "SELECT COALESCE(MAX(version), 0) + 1". */
static int next_version(struct conn *c, enum stmt_id id, const char *vm, const char *volume, uint32_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, id, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, volume, -1, SQLITE_STATIC);
	r = step_one(c, q);
	if (r < 0)
		return r;
	*ret = (uint32_t)sqlite3_column_int64(q, 0);
	return 0;
}

/* Steps the query for one version of (vm, volume): id_version takes ?3, id_latest (version 0)
 * the newest. 0 with the row ready in *q, -ENOENT, or -errno. */
static int step_version(struct conn *c, enum stmt_id id_version, enum stmt_id id_latest, const char *vm,
			const char *volume, uint32_t version, sqlite3_stmt **q)
{
	int r = stmt_get(c, version ? id_version : id_latest, q);
	if (r < 0)
		return r;
	sqlite3_bind_text(*q, 1, vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(*q, 2, volume, -1, SQLITE_STATIC);
	if (version)
		sqlite3_bind_int64(*q, 3, version);
	return step_one(c, *q);
}

/* A listing of every VM's rows (id_all) or one VM's (id_vm, which takes ?1). */
static int do_list_by_vm(struct conn *c, enum stmt_id id_all, enum stmt_id id_vm, const char *vm,
			 int (*row_cb)(sqlite3_stmt *q, void *ud), struct list_ctx *l)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, vm ? id_vm : id_all, &q);
	if (r < 0)
		return r;
	if (vm)
		sqlite3_bind_text(q, 1, vm, -1, SQLITE_STATIC);
	return list_rows(c, q, row_cb, l);
}

static int do_secret_insert(struct conn *c, const void *a, const void *b, void *out)
{
	const struct store_secret *s = a;
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	uint32_t version;
	int r;

	r = next_version(c, S_SECRET_NEXT_VERSION, s->vm, s->volume, &version);
	if (r < 0)
		return r;

	r = stmt_get(c, S_SECRET_INSERT, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, s->vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, s->volume, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, version);
	sqlite3_bind_text(q, 4, s->content_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, s->file_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, s->kek, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 7, s->kek_version);
	sqlite3_bind_text(q, 8, s->kek_algorithm, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 9, s->created);
	sqlite3_bind_blob(q, 10, s->sealed, (int)s->sealed_size, SQLITE_STATIC);
	r = exec_stmt(c, q);
	if (r >= 0 && out)
		*(uint32_t *)out = version;
	return r;
}

static int store_sqlite_secret_insert(void *impl, const struct store_secret *secret, uint32_t *ret_version)
{
	return run_write(impl, do_secret_insert, secret, NULL, ret_version);
}

static int do_secret_get(struct conn *c, const char *vm, const char *volume, uint32_t version,
			 struct store_secret *ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = step_version(c, S_SECRET_GET, S_SECRET_GET_LATEST, vm, volume, version, &q);
	return r < 0 ? r : row_secret(q, ret);
}

static int store_sqlite_secret_get(void *impl, const char *vm, const char *volume, uint32_t version,
				   struct store_secret *ret)
{
	return WITH_READ_CONN(impl, c, do_secret_get(c, vm, volume, version, ret));
}

static int secret_row_cb(sqlite3_stmt *q, void *ud)
{
	struct list_ctx *l = ud;
	struct store_secret s;
	int r = row_secret(q, &s);
	if (r >= 0)
		r = ((store_secret_cb)l->cb)(&s, l->userdata);
	store_secret_done(&s);
	return r;
}

static int store_sqlite_secret_list(void *impl, const char *vm, store_secret_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return WITH_READ_CONN(impl, c, do_list_by_vm(c, S_SECRET_LIST, S_SECRET_LIST_VM, vm, secret_row_cb, &l));
}

static int do_header_insert(struct conn *c, const void *a, const void *b, void *out)
{
	const struct store_header *h = a;
	const unsigned keep = *(const unsigned *)b;
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	_cleanup_stmt_ sqlite3_stmt *qp = NULL;
	uint32_t version;
	int r;

	if (keep < 1 || h->size > INT64_MAX || h->data_size > INT32_MAX || h->sealed_key_size > INT32_MAX)
		return -EINVAL;
	r = next_version(c, S_HEADER_NEXT_VERSION, h->vm, h->volume, &version);
	if (r < 0)
		return r;

	r = stmt_get(c, S_HEADER_INSERT, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, h->vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, h->volume, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, version);
	sqlite3_bind_int64(q, 4, (sqlite3_int64)h->size);
	sqlite3_bind_blob(q, 5, h->sha256, DIGEST_SHA256_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, h->created);
	sqlite3_bind_text(q, 7, h->kek, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 8, h->kek_version);
	sqlite3_bind_text(q, 9, h->kek_algorithm, -1, SQLITE_STATIC);
	sqlite3_bind_blob(q, 10, h->sealed_key, (int)h->sealed_key_size, SQLITE_STATIC);
	sqlite3_bind_blob(q, 11, h->data, (int)h->data_size, SQLITE_STATIC);
	r = exec_stmt(c, q);
	if (r < 0)
		return r;

	/* In the transaction that inserted the new version: the oldest goes when, and only when,
	 * the new one commits. */
	r = stmt_get(c, S_HEADER_PRUNE, &qp);
	if (r < 0)
		return r;
	sqlite3_bind_text(qp, 1, h->vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(qp, 2, h->volume, -1, SQLITE_STATIC);
	sqlite3_bind_int64(qp, 3, keep);
	r = exec_stmt(c, qp);
	if (r >= 0 && out)
		*(uint32_t *)out = version;
	return r;
}

static int store_sqlite_header_insert(void *impl, const struct store_header *header, unsigned keep,
				      uint32_t *ret_version)
{
	return run_write(impl, do_header_insert, header, &keep, ret_version);
}

static int do_header_get(struct conn *c, const char *vm, const char *volume, uint32_t version,
			 struct store_header *ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = step_version(c, S_HEADER_GET, S_HEADER_GET_LATEST, vm, volume, version, &q);
	return r < 0 ? r : row_header(q, ret, true);
}

static int store_sqlite_header_get(void *impl, const char *vm, const char *volume, uint32_t version,
				   struct store_header *ret)
{
	return WITH_READ_CONN(impl, c, do_header_get(c, vm, volume, version, ret));
}

static int header_row_cb(sqlite3_stmt *q, void *ud)
{
	struct list_ctx *l = ud;
	struct store_header h;
	int r = row_header(q, &h, false);
	if (r >= 0)
		r = ((store_header_cb)l->cb)(&h, l->userdata);
	return r;
}

static int store_sqlite_header_list(void *impl, const char *vm, store_header_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return WITH_READ_CONN(impl, c, do_list_by_vm(c, S_HEADER_LIST, S_HEADER_LIST_VM, vm, header_row_cb, &l));
}

static int row_token(sqlite3_stmt *q, struct store_token *t)
{
	const unsigned char *role = sqlite3_column_text(q, 2);

	memset(t, 0, sizeof(*t));
	copy_text(t->name, sizeof(t->name), q, 0);
	copy_text(t->id, sizeof(t->id), q, 1);
	t->role = api_role_from_string(role ? (const char *)role : "");
	/* A hash of another length (a damaged row) stays zeros, which no token text hashes to. */
	copy_hash(t->hash, q, 3);
	t->created = sqlite3_column_int64(q, 4);
	t->last_used = sqlite3_column_int64(q, 5);
	t->revoked = sqlite3_column_int64(q, 6);
	return 0;
}

static int do_token_insert(struct conn *c, const void *a, const void *b, void *out)
{
	const struct store_token *t = a;
	const char *role = api_role_to_string(t->role);
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r;

	if (!role)
		return -EINVAL;
	r = stmt_get(c, S_TOKEN_INSERT, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, t->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, role, -1, SQLITE_STATIC);
	sqlite3_bind_blob(q, 4, t->hash, TOKEN_HASH_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, t->created);
	sqlite3_bind_int64(q, 6, t->last_used);
	sqlite3_bind_int64(q, 7, t->revoked);
	return exec_stmt(c, q);
}

static int store_sqlite_token_insert(void *impl, const struct store_token *token)
{
	return run_write(impl, do_token_insert, token, NULL, NULL);
}

static int do_token_get(struct conn *c, enum stmt_id id, const char *key, struct store_token *ret)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = step_by_key(c, id, key, &q);
	return r < 0 ? r : row_token(q, ret);
}

static int store_sqlite_token_get(void *impl, const char *name, struct store_token *ret)
{
	return WITH_READ_CONN(impl, c, do_token_get(c, S_TOKEN_GET, name, ret));
}

static int store_sqlite_token_get_by_id(void *impl, const char *id, struct store_token *ret)
{
	return WITH_READ_CONN(impl, c, do_token_get(c, S_TOKEN_GET_BY_ID, id, ret));
}

/* a: the name or id, b: the time; out: the statement id (S_TOKEN_REVOKE or S_TOKEN_TOUCH). */
static int do_token_set(struct conn *c, const void *a, const void *b, void *out)
{
	const enum stmt_id id = *(const enum stmt_id *)out;
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	struct store_token t;
	int r = stmt_get(c, id, &q);
	if (r < 0)
		return r;
	sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, *(const int64_t *)b);
	r = exec_stmt(c, q);
	if (r < 0 || sqlite3_changes(c->db) > 0)
		return r;
	if (id == S_TOKEN_TOUCH)
		return -ENOENT;
	/* Nothing revoked: no such token, or one revoked before (kept as it was). */
	r = do_token_get(c, S_TOKEN_GET, a, &t);
	return r < 0 ? r : -EALREADY;
}

static int store_sqlite_token_revoke(void *impl, const char *name, int64_t when)
{
	enum stmt_id id = S_TOKEN_REVOKE;
	return run_write(impl, do_token_set, name, &when, &id);
}

static int store_sqlite_token_touch(void *impl, const char *id, int64_t when)
{
	enum stmt_id sid = S_TOKEN_TOUCH;
	struct write_call w = { do_token_set, id, &when, &sid };

	if (txn_conn)
		return do_token_set(txn_conn, id, &when, &sid);
	/* Relaxed, as a read-audit event: survives kill -9, flushed by the next durable write. */
	return transaction_run(impl, NULL, write_call_run, &w, true);
}

static int token_row_cb(sqlite3_stmt *q, void *ud)
{
	struct list_ctx *l = ud;
	struct store_token t;
	int r = row_token(q, &t);
	return r < 0 ? r : ((store_token_cb)l->cb)(&t, l->userdata);
}

static int store_sqlite_token_list(void *impl, store_token_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };
	return WITH_READ_CONN(impl, c, do_list_all(c, S_TOKEN_LIST, token_row_cb, &l));
}

static int do_audit_append(struct conn *c, const void *a, const void *b, void *out)
{
	const struct store_audit *e = a;
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_AUDIT_APPEND, &q);
	if (r < 0)
		return r;
	sqlite3_bind_int64(q, 1, e->time);
	sqlite3_bind_text(q, 2, e->actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, e->action, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, e->object, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, e->result, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, e->source, -1, SQLITE_STATIC);
	return exec_stmt(c, q);
}

static int store_sqlite_audit_append(void *impl, const struct store_audit *event)
{
	return run_write(impl, do_audit_append, event, NULL, NULL);
}

static int store_sqlite_audit_append_read(void *impl, const struct store_audit *event)
{
	struct write_call w = { do_audit_append, event, NULL, NULL };

	if (txn_conn)
		return do_audit_append(txn_conn, event, NULL, NULL);
	return transaction_run(impl, NULL, write_call_run, &w, true);
}

static int audit_row_cb(sqlite3_stmt *q, void *ud)
{
	struct list_ctx *l = ud;
	struct store_audit e = {};

	e.id = sqlite3_column_int64(q, 0);
	e.time = sqlite3_column_int64(q, 1);
	copy_text(e.actor, sizeof(e.actor), q, 2);
	copy_text(e.action, sizeof(e.action), q, 3);
	copy_text(e.object, sizeof(e.object), q, 4);
	copy_text(e.result, sizeof(e.result), q, 5);
	copy_text(e.source, sizeof(e.source), q, 6);
	return ((store_audit_cb)l->cb)(&e, l->userdata);
}

static int do_audit_list(struct conn *c, const char *prefix, int64_t since, enum api_audit_result result,
			 struct list_ctx *l)
{
	_cleanup_stmt_ sqlite3_stmt *q = NULL;
	int r = stmt_get(c, S_AUDIT_LIST, &q);
	if (r < 0)
		return r;
	if (prefix)
		sqlite3_bind_text(q, 1, prefix, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, since);
	if (result != API_AUDIT_ANY)
		sqlite3_bind_int(q, 3, result == API_AUDIT_OK);
	return list_rows(c, q, audit_row_cb, l);
}

static int store_sqlite_audit_list(void *impl, const char *object_prefix, int64_t since,
				   enum api_audit_result result, store_audit_cb cb, void *userdata)
{
	struct list_ctx l = { (void *)cb, userdata };

	if (result < 0 || result >= _API_AUDIT_RESULT_MAX)
		return -EINVAL;
	return WITH_READ_CONN(impl, c, do_audit_list(c, object_prefix, since, result, &l));
}

static int do_audit_prune(struct conn *c, const void *a, const void *b, void *out)
{
	const int64_t before = *(const int64_t *)a;
	const uint64_t max_rows = *(const uint64_t *)b;
	sqlite3_int64 keep = max_rows > 0 && max_rows < INT64_MAX ? (sqlite3_int64)max_rows : INT64_MAX;
	struct store_audit_pruned *ret = out;
	_cleanup_stmt_ sqlite3_stmt *qs = NULL;
	_cleanup_stmt_ sqlite3_stmt *qd = NULL;
	_cleanup_stmt_ sqlite3_stmt *qx = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	/* Over the cap: drop one more, to leave room for the event telling of it; at the cap, an
	 * idle pass drops nothing. */
	r = stmt_get(c, S_AUDIT_SPAN, &qs);
	if (r < 0)
		return r;
	r = step_one(c, qs);
	if (r < 0)
		return r;
	if (keep > 1 && keep != INT64_MAX && sqlite3_column_int64(qs, 0) > keep)
		keep--;
	r = stmt_get(c, S_AUDIT_DROPPED, &qd);
	if (r < 0)
		return r;
	sqlite3_bind_int64(qd, 1, before);
	sqlite3_bind_int64(qd, 2, keep);
	sqlite3_bind_int64(qd, 3, STORE_AUDIT_PRUNE_MAX);
	r = step_one(c, qd);
	if (r < 0)
		return r;
	ret->count = (uint64_t)sqlite3_column_int64(qd, 0);
	ret->oldest = sqlite3_column_int64(qd, 1);
	ret->newest = sqlite3_column_int64(qd, 2);
	if (ret->count == 0)
		return 0;
	r = stmt_get(c, S_AUDIT_DROP, &qx);
	if (r < 0)
		return r;
	sqlite3_bind_int64(qx, 1, before);
	sqlite3_bind_int64(qx, 2, keep);
	sqlite3_bind_int64(qx, 3, STORE_AUDIT_PRUNE_MAX);
	return exec_stmt(c, qx);
}

static int store_sqlite_audit_prune(void *impl, int64_t before, uint64_t max_rows, struct store_audit_pruned *ret)
{
	return run_write(impl, do_audit_prune, &before, &max_rows, ret);
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.open = store_sqlite_open,
	.close = store_sqlite_close,
	.transaction = store_sqlite_transaction,
	.meta_get = store_sqlite_meta_get,
	.meta_set = store_sqlite_meta_set,
	.vm_insert = store_sqlite_vm_insert,
	.vm_get = store_sqlite_vm_get,
	.vm_get_by_id = store_sqlite_vm_get_by_id,
	.vm_update = store_sqlite_vm_update,
	.vm_delete = store_sqlite_vm_delete,
	.vm_list = store_sqlite_vm_list,
	.settings_get = store_sqlite_settings_get,
	.settings_put = store_sqlite_settings_put,
	.key_insert = store_sqlite_key_insert,
	.key_get = store_sqlite_key_get,
	.key_set_enabled = store_sqlite_key_set_enabled,
	.key_list = store_sqlite_key_list,
	.secret_insert = store_sqlite_secret_insert,
	.secret_get = store_sqlite_secret_get,
	.secret_list = store_sqlite_secret_list,
	.header_insert = store_sqlite_header_insert,
	.header_get = store_sqlite_header_get,
	.header_list = store_sqlite_header_list,
	.token_insert = store_sqlite_token_insert,
	.token_get = store_sqlite_token_get,
	.token_get_by_id = store_sqlite_token_get_by_id,
	.token_revoke = store_sqlite_token_revoke,
	.token_touch = store_sqlite_token_touch,
	.token_list = store_sqlite_token_list,
	.audit_append = store_sqlite_audit_append,
	.audit_append_read = store_sqlite_audit_append_read,
	.audit_list = store_sqlite_audit_list,
	.audit_prune = store_sqlite_audit_prune,
};
