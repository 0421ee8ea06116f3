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
 * Free the report with preflight_report_done(). */
int preflight_run(enum preflight_scope scope, struct preflight_report *ret);

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
