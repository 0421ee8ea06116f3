/* The audit trail: one event per secret read or write, key operation, settings change,
 * enrollment and refused authentication, each with the client's address; and its retention. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "vmcryptd.h"

/* Events filled since the last pruning: lets housekeeping prune early under a flood. */
static uint64_t events_since_prune;

void audit_fill(struct store_audit *e, const struct caller *who, const char *action, const char *object,
		const char *result)
{
	memset(e, 0, sizeof(*e));
	e->time = (int64_t)time(NULL);
	snprintf(e->actor, sizeof(e->actor), "%s", who->actor);
	snprintf(e->source, sizeof(e->source), "%s", who->source);
	snprintf(e->action, sizeof(e->action), "%s", action);
	snprintf(e->object, sizeof(e->object), "%s", object);
	snprintf(e->result, sizeof(e->result), "%s", result);
	__atomic_add_fetch(&events_since_prune, 1, __ATOMIC_RELAXED);
}

int audit_event(struct server *srv, const struct caller *who, const char *action, const char *object,
		const char *result)
{
	struct store_audit e;
	int r;

	audit_fill(&e, who, action, object, result);
	r = store_audit_append(srv->store, &e);
	if (r < 0)
		log_error_errno(r, "Could not record audit event %s %s %s: %m", who->actor, action, object);
	return r;
}

int audit_read_event(struct server *srv, const struct caller *who, const char *action, const char *object,
		     const char *result)
{
	struct store_audit e;
	int r;

	audit_fill(&e, who, action, object, result);
	r = srv->durable_read_audit ? store_audit_append(srv->store, &e) : store_audit_append_read(srv->store, &e);
	if (r < 0)
		log_error_errno(r, "Could not record audit event %s %s %s: %m", who->actor, action, object);
	return r;
}

struct prune_txn {
	const struct audit_retention *retention;
	int64_t now;
	struct store_audit_pruned dropped;
};

/* One chunk of pruning and the event that tells of it commit together: events never vanish
 * untold. */
static int prune_txn_run(struct store *s, void *userdata)
{
	static const struct caller self = { .actor = "vmcryptd" };
	struct prune_txn *t = userdata;
	int64_t before = t->retention->max_age_days ? t->now - 86400LL * t->retention->max_age_days : 0;
	char result[STORE_TEXT_MAX], oldest[32], newest[32];
	struct store_audit e;
	int r;

	r = store_audit_prune(s, before, t->retention->max_rows, &t->dropped);
	if (r < 0 || t->dropped.count == 0)
		return r;
	snprintf(result, sizeof(result), "ok: dropped %llu events from %s to %s (retention: %u days, %llu events)",
		 (unsigned long long)t->dropped.count, api_format_time(t->dropped.oldest, oldest, sizeof(oldest)),
		 api_format_time(t->dropped.newest, newest, sizeof(newest)), t->retention->max_age_days,
		 (unsigned long long)t->retention->max_rows);
	audit_fill(&e, &self, "audit.prune", "audit", result);
	return store_audit_append(s, &e);
}

int audit_apply_retention(struct server *srv)
{
	struct prune_txn t = { .retention = &srv->retention, .now = (int64_t)time(NULL) };
	uint64_t total = 0;
	int r;

	if (!srv->retention.max_age_days && !srv->retention.max_rows)
		return 0;
	__atomic_store_n(&events_since_prune, 0, __ATOMIC_RELAXED);
	/* In chunks, each its own transaction: other writers get their turn in between, even when a
	 * first start after an upgrade finds millions of events to drop. */
	do {
		r = store_transaction(srv->store, prune_txn_run, &t);
		if (r < 0)
			return log_error_errno(r, "Could not apply the audit retention: %m");
		total += t.dropped.count;
	} while (t.dropped.count == STORE_AUDIT_PRUNE_MAX);
	if (total > 0)
		log_info("Audit retention dropped %llu events.", (unsigned long long)total);
	return (int)MIN(total, (uint64_t)INT32_MAX);
}

uint64_t audit_events_since_prune(void)
{
	return __atomic_load_n(&events_since_prune, __ATOMIC_RELAXED);
}
