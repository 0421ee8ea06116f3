/* The status report the agent posts (POST /v1/vm/status, docs/api.md): ADE's summary values, a
 * ProgressMessage in ADE's sequence, and one row per data volume with its progress. A pure
 * builder, so every message is tested without a VM. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/ade.h"
#include "shared/agent/goal.h"

struct agent_report_volume {
	const char *name;
	const char *device;
	const char *mountpoint;     /* "" when not mounted */
	enum ade_state state;
	double percent;             /* 0..100 while converting, -1 otherwise */
	uint64_t rate;              /* bytes/s, 0 when unknown */
	int64_t eta;                /* seconds, -1 when unknown */
	int64_t downtime_ms;        /* cut-over downtime, -1 when not measured */
	const char *message;        /* a refusal or failure for this volume, "" or NULL */
	bool os;                    /* the OS volume's row: OsVolumeEncrypted, not the data's */
};

struct agent_report {
	enum ade_state os;          /* OsVolumeEncrypted, from the disks */
	enum agent_operation op;    /* the operation being applied */
	bool data_wanted;           /* agent_goal_wants_data() of that goal */
	bool os_wanted;             /* agent_goal_wants_os() */
	bool stamped;               /* the settings were just taken up, no volume touched yet */
	bool resumed;               /* the running conversion was taken up after a restart */
	uint64_t sequence;          /* SequenceVersion: the goal sequence the report describes */
	const char *agent_version;
	const struct agent_report_volume *volumes;
	size_t n_volumes;
};

/* ProgressMessage, in ADE's words: "Encryption settings stamped", "Encrypting data volume 1/2:
 * 37%", "Resuming encryption after reboot: 42%", "Encryption succeeded for data volumes",
 * "OS disk successfully encrypted, please reboot the VM" (VMRestartPending), "Encrypting OS
 * volume: 37%" (vmcrypt's own: ADE shows no percentage), "Encryption succeeded for all volumes",
 * "Encryption settings cleared", "Decrypting data volume 1/2: 10%", "Decryption succeeded"; a
 * volume's refusal when nothing runs. Writes to buf and returns it. */
char *agent_report_progress_message(const struct agent_report *r, char *buf, size_t len);

/* DataVolumesEncrypted of the rows (ade_state_aggregate()). */
enum ade_state agent_report_data_state(const struct agent_report *r);

/* The request body. Returns a new reference, or NULL when out of memory. */
json_t *agent_report_build(const struct agent_report *r);
