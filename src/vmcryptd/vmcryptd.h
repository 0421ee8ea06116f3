/* vmcryptd internals shared by its files: the server context, the caller, replies, handlers. */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "basic/macro.h"
#include "shared/api/api.h"
#include "shared/b64.h"
#include "shared/vault/store.h"
#include "shared/vault/token.h"
#include "shared/vault/vault.h"

/* A client's address: as text for audit events and logs, and as the key the throttle counts
 * failures under. */
struct client_addr {
	char text[STORE_SOURCE_MAX]; /* "192.0.2.7", "2001:db8::7"; "" when unknown */
	uint8_t key[16];             /* IPv4 as an IPv4-mapped IPv6 address; IPv6 by its /64 */
};

/* The failed-authentication throttle (throttle.c). */
struct throttle_config {
	unsigned free_failures; /* failures a source makes before its first lockout */
	unsigned lockout_max;   /* seconds; the longest lockout */
	unsigned log_interval;  /* seconds; at most one warning line per source per interval */
};
struct throttle;

/* Audit retention (audit.c). */
struct audit_retention {
	unsigned max_age_days; /* 0: keep events of any age */
	uint64_t max_rows;     /* 0: keep any number */
};

struct server {
	char *data_dir;
	struct store *store;
	struct vault *vault;
	uint8_t admin_hash[TOKEN_HASH_SIZE];
	int64_t stale_after; /* seconds without a report before a VM counts as stale */
	unsigned metrics_fleet_interval; /* seconds a count of the fleet serves /metrics; 0: each scrape */
	unsigned threads;    /* 0: one thread per connection */
	bool durable_read_audit; /* flush read-audit events to disk before answering */
	struct throttle *throttle;
	struct audit_retention retention;
	unsigned max_conns;             /* connections at once */
	unsigned max_conns_per_address; /* 0: no per-address limit */
	unsigned header_timeout;        /* seconds from accept (or the previous answer) to complete headers */
	unsigned request_timeout;       /* seconds to receive a request, and to send its answer */
	unsigned idle_timeout;          /* seconds of silence at any point */
	struct MHD_Daemon *daemon;
	struct http_conns *conns;       /* http.c: the deadline table and its reaper */
};

/* Who made the request, after authentication. */
struct caller {
	enum api_auth kind;           /* what the request needed */
	char actor[API_NAME_MAX + 8]; /* "admin", "token:NAME", "vm:NAME" or "anonymous"; for audit events */
	char token[API_NAME_MAX + 1]; /* a named token's name; "" otherwise */
	enum api_role role;           /* the admin token's or a named token's; _API_ROLE_INVALID otherwise */
	char source[STORE_SOURCE_MAX]; /* the client's address, for audit events */
	struct store_vm vm;           /* the caller's VM for API_AUTH_VM and API_AUTH_ENROLL */
};

/* A response field beside the body (the version and hash of a header backup). */
struct reply_field {
	const char *name; /* NULL: unused */
	char value[72];
};
#define REPLY_FIELDS_MAX 4

struct reply {
	unsigned status;    /* on success: 200 or 201 */
	json_t *body;       /* on success */
	/* On success instead of body: bytes sent as application/octet-stream, in secret memory;
	 * the response takes them over and secret_free()s them once sent. */
	void *raw;
	size_t raw_size;
	/* On success instead of body: text (malloc'd, no secret in it: /metrics) of content_type. */
	char *text;
	size_t text_size;
	const char *content_type;
	struct reply_field fields[REPLY_FIELDS_MAX];
	char message[512];  /* on failure: said to the client; never holds secret values */
	unsigned retry_after; /* on -EUSERS (429): seconds, for Retry-After */
};

/* Everything a handler sees. */
struct request {
	struct server *srv;
	struct MHD_Connection *connection; /* for query arguments */
	const struct api_request *api;
	struct caller *who;
	char object[160]; /* the audit object the request is about */
	const uint8_t *raw; /* a raw body (routes with raw_max), in secret memory; NULL otherwise */
	size_t raw_size;
};

typedef int (*handler_fn)(struct request *rq, struct reply *rep);

/* Handlers return 0 or -errno, filling rep->message on failure (see reply_status_from_errno). */
int handle_enroll(struct request *rq, struct reply *rep);
int handle_vm_goal(struct request *rq, struct reply *rep);
int handle_vm_secret_put(struct request *rq, struct reply *rep);
int handle_vm_secret_get(struct request *rq, struct reply *rep);
int handle_vm_status(struct request *rq, struct reply *rep);
int handle_admin_vm_register(struct request *rq, struct reply *rep);
int handle_admin_vm_list(struct request *rq, struct reply *rep);
int handle_admin_vm_show(struct request *rq, struct reply *rep);
int handle_admin_vm_revoke(struct request *rq, struct reply *rep);
int handle_admin_vm_delete(struct request *rq, struct reply *rep);
int handle_admin_encryption_enable(struct request *rq, struct reply *rep);
int handle_admin_encryption_disable(struct request *rq, struct reply *rep);
int handle_admin_encryption_show(struct request *rq, struct reply *rep);
int handle_admin_extension_remove(struct request *rq, struct reply *rep);
int handle_admin_key_create(struct request *rq, struct reply *rep);
int handle_admin_key_list(struct request *rq, struct reply *rep);
int handle_admin_key_show(struct request *rq, struct reply *rep);
int handle_admin_key_rotate(struct request *rq, struct reply *rep);
int handle_admin_key_disable(struct request *rq, struct reply *rep);
int handle_admin_key_enable(struct request *rq, struct reply *rep);
int handle_admin_secret_list(struct request *rq, struct reply *rep);
int handle_admin_secret_show(struct request *rq, struct reply *rep);
int handle_admin_audit(struct request *rq, struct reply *rep);
int handle_vm_header_put(struct request *rq, struct reply *rep);
int handle_vm_header_get(struct request *rq, struct reply *rep);
int handle_admin_header_list(struct request *rq, struct reply *rep);
int handle_admin_header_get(struct request *rq, struct reply *rep);
int handle_admin_token_create(struct request *rq, struct reply *rep);
int handle_admin_token_list(struct request *rq, struct reply *rep);
int handle_admin_token_revoke(struct request *rq, struct reply *rep);
int handle_metrics(struct request *rq, struct reply *rep);

/* reply.c: sets rep->message and returns error. */
int reply_error(struct reply *rep, int error, const char *fmt, ...) _printf_(3, 4);
/* reply.c: the one place where errno values become HTTP statuses. */
unsigned reply_status_from_errno(int error);
/* reply.c: adds a response field (name: a string constant) to a successful reply. */
void reply_field(struct reply *rep, const char *name, const char *fmt, ...) _printf_(3, 4);

/* auth.c: whether src is locked out after failed authentications: 0, or -EUSERS (429) with
 * rep->retry_after and rep->message set. Asked first, so a locked-out source costs a table
 * lookup: nothing of its request is parsed, looked up or audited (the lockout itself was
 * audited; the log counts these refusals). */
int auth_locked_out(struct server *srv, const struct client_addr *src, struct reply *rep);
/* Checks the Authorization header from src against what the route needs: def->auth, or
 * def->raise_auth when raise (the route's raise_arg is true in the query). Returns 0, -ENOKEY (no
 * credential: 401), -EKEYREJECTED (wrong, unknown or revoked named token: 401), -EACCES (the
 * wrong kind of credential, a named token whose role is below the route's, a revoked VM: 403).
 * Failures are audited, counted by the throttle and logged (aggregated) here. */
int auth_check(struct server *srv, const struct client_addr *src, const char *authorization,
	       const struct api_route_def *def, bool raise, const char *object, struct caller *ret,
	       struct reply *rep);

/* throttle.c. The table has a fixed size; all functions are thread-safe. */
int throttle_new(const struct throttle_config *cfg, struct throttle **ret);
/* Logs what is still pending, then frees. */
void throttle_free(struct throttle *t);
/* 0 when src may try to authenticate; otherwise the seconds its lockout has left (the refusal
 * is counted for the log). */
unsigned throttle_check(struct throttle *t, const struct client_addr *src);
/* Records a refused authentication from src. id: the existing token id (VM id, or "admin")
 * whose secret was wrong, or NULL. reason: for the log, never token text. Returns the seconds of
 * the lockout this failure started, or 0. */
unsigned throttle_failure(struct throttle *t, const struct client_addr *src, const char *id, const char *reason);
/* Logs the aggregated lines whose interval has passed. */
void throttle_flush(struct throttle *t, bool all);
/* Fills ret from a socket address (NULL: unknown). */
void client_addr_from_sockaddr(const struct sockaddr *sa, struct client_addr *ret);

/* audit.c: records an event of who (actor and source); result is "ok" or a short reason.
 * Returns 0 or -errno. */
int audit_event(struct server *srv, const struct caller *who, const char *action, const char *object,
		const char *result);
/* For reads of secrets and refused requests: committed before the answer is sent (it survives kill -9), flushed to disk
 * with the next change unless --durable-read-audit asks for a flush of its own. */
int audit_read_event(struct server *srv, const struct caller *who, const char *action, const char *object,
		     const char *result);
/* Fills an event for store_audit_append() inside a transaction. */
void audit_fill(struct store_audit *e, const struct caller *who, const char *action, const char *object,
		const char *result);
/* Applies srv->retention: drops what is too old or too many, and records an "audit.prune" event
 * saying what went. Returns the number dropped or -errno. */
int audit_apply_retention(struct server *srv);
/* Events recorded since the last audit_apply_retention(). */
uint64_t audit_events_since_prune(void);
/* A background thread that applies the retention now and then (every minute, and sooner when
 * many events arrive) and flushes the throttle's log lines. */
int housekeeping_start(struct server *srv);
void housekeeping_stop(void);

/* stats.c: vmcryptd's metrics (docs/vmcryptd.md "Metrics"). Every update is a lock-free atomic
 * add, safe from any thread. */
struct metrics_buckets;
struct metrics_text;
/* The latency buckets of every duration histogram. */
extern const struct metrics_buckets stats_latency_buckets;
/* The version for vmcryptd_build_info, and the start time; called once by main(). */
void stats_init(const char *version);
/* A request answered with status after ns: route is its enum api_route, or -1 when no route
 * matched (then method, which the client chose, is folded into a few fixed words). */
void stats_http_observe(int route, const char *method, unsigned status, uint64_t ns);
/* A refused authentication on def (error: auth_check()'s), and whether it started a lockout. */
void stats_auth_failure(const struct api_route_def *def, int error, bool lockout);
/* A request refused unread because its source is locked out. */
void stats_auth_locked_out(void);
enum stats_secret {
	STATS_SECRET_READ,   /* a VM read its secret */
	STATS_SECRET_REVEAL, /* an admin read one (?reveal=true) */
	STATS_SECRET_WRITE,  /* a VM stored a version */
	STATS_SECRET_REWRAP, /* a key rotation stored a version */
	STATS_HEADER_READ,   /* a header backup went out */
	STATS_HEADER_WRITE,  /* a header backup version was stored */
	_STATS_SECRET_MAX,
};
/* Counted once the value went into the answer or the version committed. */
void stats_secret(enum stats_secret op);

/* timed-store.c: puts a timing layer between vmcryptd and the store's backend, whatever it is:
 * every op's latency goes into a histogram by operation (vmcryptd_store_operation_duration_seconds).
 * store_close() closes both. Returns 0 or -ENOMEM; s works as before either way. */
int timed_store_wrap(struct store *s);
void timed_store_write(struct metrics_text *t);

/* http.c */
int http_start(struct server *srv, const char *listen, const char *cert_pem, const char *key_pem,
	       uint16_t *ret_port);
void http_stop(struct server *srv);

/* tls.c: loads cert and key PEM, generating a self-signed pair at the given paths when both are
 * missing. *ret_key is in secret memory. Returns 0 or -errno. */
int tls_load_or_create(const char *cert_path, const char *key_path, bool create, const char *listen_host,
		       char **ret_cert, char **ret_key);

/* base64 of secret values: shared/b64.h (the VM's client decodes them too). */

/* model.c: JSON views of stored objects (never secret values). */
json_t *model_vm(const struct store_vm *vm);
json_t *model_settings(const struct store_settings *s, bool extension_removed);
json_t *model_key(const struct store_key *k);
json_t *model_secret(const struct store_secret *s);
json_t *model_audit(const struct store_audit *e);
json_t *model_header(const struct store_header *h);
json_t *model_token(const struct store_token *t);
const char *model_operation(const struct store_settings *s);
/* "vmcryptd:keys/NAME" or, with version > 0, "vmcryptd:keys/NAME/VERSION". */
void model_key_url(const char *name, uint32_t version, char *buf, size_t len);
/* Frees text from json_dumps() (allocated by the wiping JSON allocator). */
void model_text_free(void *p);

/* handlers-vm.c, shared with the admin handlers: opens a stored secret into its plain value
 * (secret memory; the KEK must be enabled), and builds a reply carrying a value. On failure
 * rep->message is set. */
int handler_secret_open(struct server *srv, const struct store_secret *sec, struct reply *rep, void **ret, size_t *ret_size);
int handler_secret_reply(struct store_secret *sec, const void *value, size_t size, struct reply *rep);
/* handlers-secrets.c, shared with the header-backup handlers: an admin listing, {"KEY": [...]},
 * of what list() appends to array for the VM of ?vm= (NULL: every VM). */
int handler_list_by_vm(struct request *rq, struct reply *rep, const char *key,
		       int (*list)(struct store *s, const char *vm, json_t *array));

/* envelope.c: how a value rests in the store, wrapped by the VM's KEK (when its settings name
 * one) and sealed by the master key under a context that names the object, so that a sealed
 * blob moved to another row does not open. A secret's value goes in an envelope; a header
 * backup's data key does. noun says what the value is in messages ("secret"). */
struct envelope {
	char kek[API_NAME_MAX + 1]; /* "" when not wrapped */
	uint32_t kek_version;
	char kek_algorithm[16];
	uint8_t *sealed; /* malloc'd */
	size_t sealed_size;
};
/* Wraps plain with the newest version of st's KEK (st NULL or without a KEK: not wrapped), then
 * seals it under context. Returns 0 or, with rep->message set: -EKEYEXPIRED (the KEK is disabled
 * or gone; the message names the command that picks another), -EMSGSIZE (too long for the KEK),
 * -EIO, -ENOMEM. */
int envelope_seal(struct server *srv, const struct store_settings *st, const char *noun, const char *context,
		  const void *plain, size_t size, struct envelope *ret, struct reply *rep);
/* Unseals sealed under context and unwraps it with kek at kek_version (kek "" : not wrapped) into
 * secret memory. label names the object for the log ("vm1/os version 3"). Returns 0 or, with
 * rep->message set: -EIO (damaged: it does not open or unwrap; logged), -EKEYEXPIRED (the KEK
 * version is disabled or gone), -ENOMEM. */
int envelope_open(struct server *srv, const char *noun, const char *label, const char *context,
		  const uint8_t *sealed, size_t size, const char *kek, uint32_t kek_version,
		  const char *kek_algorithm, void **ret, size_t *ret_size, struct reply *rep);
void envelope_done(struct envelope *e);

/* keycache.c: the enabled KEK name at version (0: newest), parsed. Returns 0 with *ret_key
 * (free it with vault_key_free only when *ret_owned), -ENOENT, -EKEYEXPIRED (disabled), -EIO. */
int keycache_get(struct server *srv, const char *name, uint32_t version, uint32_t *ret_version,
		 struct vault_key **ret_key, bool *ret_owned);
void keycache_clear(void);

/* masterkey.c: refuses (logged) a master key that is not the one the store was first used with,
 * which a replica started on an empty data directory would make itself; the first use stores a
 * check value. Returns 0, -EKEYREJECTED, or another -errno (logged). */
int masterkey_check(struct server *srv, const char *master_path);

/* strict.c: refuses, with the file and the chmod or chown that fixes it, a data directory
 * writable by group or others or not owned by the running user, and a master.key, admin.token or
 * TLS key (tls_key, or DIR/tls.key when NULL) that is open to group or others, owned by another
 * user, a symbolic link inside the data directory, or not a regular file. Missing files pass.
 * Returns 0, -EPERM (logged) or another -errno (logged). */
int strict_modes_check(const char *data_dir, const char *tls_key);
