/* Prerequisite checks run by `vmcrypt check` before anything changes: one table of checks, each
 * with a stable id, looking at the live system (or a fixture tree under path_test_root()) and
 * reporting what it found and what to do. Checks change nothing. docs/check.md lists them. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "shared/ade.h"

enum preflight_status {
	PREFLIGHT_PASS,
	PREFLIGHT_WARN,
	PREFLIGHT_FAIL,
	PREFLIGHT_SKIP,
};

/* Which volumes the operation would touch: ADE's VolumeType (ade.h), never None. */
enum preflight_scope {
	PREFLIGHT_SCOPE_OS = ADE_VOLUME_OS,
	PREFLIGHT_SCOPE_DATA = ADE_VOLUME_DATA,
	PREFLIGHT_SCOPE_ALL = ADE_VOLUME_ALL,
};

struct preflight_result {
	const char *id;                /* static: "open-files", "memory", ... */
	enum preflight_status status;
	json_t *volumes;               /* array of strings: "/dev/sdc (/data)" */
	char *message;                 /* what was found and why it matters */
	char *remedy;                  /* what to do; "" when nothing */
	json_t *details;               /* object with the raw findings */
};

struct preflight_report {
	struct preflight_result *results; /* in table order, one per check id */
	size_t n;
	bool ok;                          /* no check failed */
};

/* Runs every check for scope. Returns 0 (failing checks are results, not errors), or -ENOMEM.
 * Free the report with preflight_report_done(). The vault and agent-version checks are SKIP. */
int preflight_run(enum preflight_scope scope, struct preflight_report *ret);

/* What a probe found, for a check whose probing lives above this layer: the vault client is in
 * src/shared/client, which src/shared/vm may not use (docs/hacking.md), so the program passes
 * the probe in and preflight runs it in its slot of the table. */
struct preflight_finding {
	enum preflight_status status; /* PASS when the probe leaves it */
	char message[2048];
	char remedy[1024];
	json_t *details;              /* an empty object the probe may fill (the report keeps it) */
};

typedef void (*preflight_probe_fn)(void *userdata, struct preflight_finding *f);

struct preflight_probes {
	preflight_probe_fn vault;         /* "vault": reachable, TLS, credential, proxy; NULL: SKIP */
	preflight_probe_fn agent_version; /* "agent-version"; runs after vault; NULL: SKIP */
	void *userdata;
};

/* preflight_run() with probes (NULL: none). */
int preflight_run_with(enum preflight_scope scope, const struct preflight_probes *probes,
		       struct preflight_report *ret);

void preflight_report_done(struct preflight_report *r);

/* The result with this id, or NULL. */
const struct preflight_result *preflight_report_find(const struct preflight_report *r,
						     const char *id);

/* The report as {"checks":[{"id","status","volumes","message","remedy","details"}],"ok":bool}.
 * Returns a new reference, or NULL on allocation failure. */
json_t *preflight_report_to_json(const struct preflight_report *r);

/* The ids of every check, in table order, NULL-terminated. */
extern const char *const preflight_check_ids[];

const char *preflight_status_to_string(enum preflight_status s); /* "PASS", "WARN", ... */

/* Parses "OS", "Data" or "All" (case-insensitive), through ade_volume_type_from_string().
 * Returns 0 or -EINVAL. */
int preflight_scope_from_string(const char *s, enum preflight_scope *ret);
