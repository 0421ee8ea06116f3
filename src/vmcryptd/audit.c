/* The audit trail: one event per secret read or write, key operation, settings change,
 * enrollment and refused authentication. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "vmcryptd.h"

void audit_fill(struct store_audit *e, const char *actor, const char *action, const char *object,
		const char *result)
{
	memset(e, 0, sizeof(*e));
	e->time = (int64_t)time(NULL);
	snprintf(e->actor, sizeof(e->actor), "%s", actor);
	snprintf(e->action, sizeof(e->action), "%s", action);
	snprintf(e->object, sizeof(e->object), "%s", object);
	snprintf(e->result, sizeof(e->result), "%s", result);
}

int audit_event(struct server *srv, const char *actor, const char *action, const char *object, const char *result)
{
	struct store_audit e;
	int r;

	audit_fill(&e, actor, action, object, result);
	r = store_audit_append(srv->store, &e);
	if (r < 0)
		log_error_errno(r, "Could not record audit event %s %s %s: %m", actor, action, object);
	return r;
}

int audit_read_event(struct server *srv, const char *actor, const char *action, const char *object,
		     const char *result)
{
	struct store_audit e;
	int r;

	audit_fill(&e, actor, action, object, result);
	r = srv->durable_read_audit ? store_audit_append(srv->store, &e) : store_audit_append_read(srv->store, &e);
	if (r < 0)
		log_error_errno(r, "Could not record audit event %s %s %s: %m", actor, action, object);
	return r;
}
