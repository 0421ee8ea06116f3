/* The status report and its ProgressMessage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "shared/agent/report.h"

enum ade_state agent_report_data_state(const struct agent_report *r)
{
	enum ade_state states[64];
	size_t n = 0;

	for (size_t i = 0; i < r->n_volumes && n < ELEMENTSOF(states); i++)
		if (!r->volumes[i].os)
			states[n++] = r->volumes[i].state;
	return ade_state_aggregate(states, n);
}

static bool in_progress(enum ade_state s)
{
	return s == ADE_STATE_ENCRYPTION_IN_PROGRESS || s == ADE_STATE_DECRYPTION_IN_PROGRESS;
}

/* The percentage shown never says 100 before the volume is done. */
static int shown_percent(double p)
{
	if (p < 0)
		return 0;
	return p >= 99.0 ? 99 : (int)p; /* truncates: 99.9 is 99 */
}

/* "Encrypting OS volume: 37% (52 MiB/s, 3 min left)". */
static void os_progress(const struct agent_report_volume *v, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s OS volume: %d%%",
			 v->state == ADE_STATE_DECRYPTION_IN_PROGRESS ? "Decrypting" : "Encrypting",
			 shown_percent(v->percent));

	if (n < 0 || (size_t)n >= len || v->rate == 0)
		return;
	if (v->eta >= 0)
		snprintf(buf + n, len - (size_t)n, " (%.0f MiB/s, %lld min left)", (double)v->rate / (1 << 20),
			 (long long)((v->eta + 59) / 60));
	else
		snprintf(buf + n, len - (size_t)n, " (%.0f MiB/s)", (double)v->rate / (1 << 20));
}

char *agent_report_progress_message(const struct agent_report *r, char *buf, size_t len)
{
	const struct agent_report_volume *running = NULL, *refused = NULL, *os = NULL;
	size_t done = 0, n = 0;
	enum ade_state target;
	bool decrypt = !r->data_wanted;

	target = decrypt ? ADE_STATE_NOT_ENCRYPTED : ADE_STATE_ENCRYPTED;
	for (size_t i = 0; i < r->n_volumes; i++) {
		const struct agent_report_volume *v = &r->volumes[i];

		if (!refused && v->message && v->message[0])
			refused = v;
		if (v->os) {
			os = v;
			continue;
		}
		n++;
		if (in_progress(v->state)) {
			/* Several run in parallel: the slowest one says how far the set is. */
			if (!running || v->percent < running->percent)
				running = v;
			decrypt = v->state == ADE_STATE_DECRYPTION_IN_PROGRESS;
		} else if (v->state == target)
			done++;
	}
	/* The OS volume first: its conversion is what the administrator waits for. */
	if (os && in_progress(os->state)) {
		os_progress(os, buf, len);
		return buf;
	}
	if (running) {
		if (r->resumed && !decrypt)
			snprintf(buf, len, "Resuming encryption after reboot: %d%%",
				 shown_percent(running->percent));
		else
			snprintf(buf, len, "%s data volume %zu/%zu: %d%%",
				 decrypt ? "Decrypting" : "Encrypting", MIN(done + 1, n), n,
				 shown_percent(running->percent));
		return buf;
	}
	if (refused) {
		snprintf(buf, len, "%s", refused->message);
		return buf;
	}
	if (os && os->state == ADE_STATE_VM_RESTART_PENDING) {
		/* ADE's words, which scripts wait for; only the header exists yet, and the data is
		 * encrypted online after the reboot. */
		snprintf(buf, len, "OS disk successfully encrypted, please reboot the VM");
		return buf;
	}
	if (r->op == AGENT_OP_NONE) {
		snprintf(buf, len, "Encryption is not enabled for this VM");
		return buf;
	}
	if (r->stamped) {
		snprintf(buf, len, r->data_wanted || r->os_wanted ? "Encryption settings stamped"
								  : "Encryption settings cleared");
		return buf;
	}
	if (r->os_wanted && !r->data_wanted) {
		snprintf(buf, len, r->os == ADE_STATE_ENCRYPTED ? "Encryption succeeded for OS volume"
								: "OS volume not encrypted yet");
		return buf;
	}
	if (r->data_wanted) {
		if (r->os_wanted && done == n && r->os == ADE_STATE_ENCRYPTED)
			snprintf(buf, len, "Encryption succeeded for all volumes");
		else if (n == 0)
			snprintf(buf, len, "No data volume to encrypt");
		else if (done == n)
			snprintf(buf, len, "Encryption succeeded for data volumes");
		else
			snprintf(buf, len, "%zu of %zu data volumes encrypted", done, n);
	} else {
		if (done == n)
			snprintf(buf, len, "Decryption succeeded");
		else
			snprintf(buf, len, "%zu of %zu data volumes decrypted", done, n);
	}
	return buf;
}

static json_t *volume_to_json(const struct agent_report_volume *v)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "name", v->name, "volumeType", v->os ? "OS" : "Data", "state",
			      ade_state_to_string(v->state));

	if (!o)
		return NULL;
	if (v->device && v->device[0])
		json_object_set_new(o, "device", json_string(v->device));
	if (v->mountpoint && v->mountpoint[0])
		json_object_set_new(o, "mountPoint", json_string(v->mountpoint));
	if (in_progress(v->state) && v->percent >= 0)
		json_object_set_new(o, "progress", json_integer(shown_percent(v->percent)));
	if (in_progress(v->state) && v->rate > 0)
		json_object_set_new(o, "rate", json_integer((json_int_t)v->rate));
	if (in_progress(v->state) && v->eta >= 0)
		json_object_set_new(o, "eta", json_integer(v->eta));
	if (v->downtime_ms >= 0)
		json_object_set_new(o, "downtimeMs", json_integer(v->downtime_ms));
	if (v->message && v->message[0]) {
		/* The server takes at most 256 bytes; cut at a character boundary. */
		char m[257];
		size_t l = strlen(v->message);

		if (l > 256) {
			l = 256;
			while (l > 0 && ((unsigned char)v->message[l] & 0xc0) == 0x80)
				l--;
		}
		memcpy(m, v->message, l);
		m[l] = '\0';
		json_object_set_new(o, "message", json_string(m));
	}
	return o;
}

json_t *agent_report_build(const struct agent_report *r)
{
	char msg[1024];
	json_t *j, *list;

	list = json_array();
	if (!list)
		return NULL;
	for (size_t i = 0; i < r->n_volumes && i < 64; i++) {
		json_t *v = volume_to_json(&r->volumes[i]);
		if (!v || json_array_append_new(list, v) < 0) {
			json_decref(list);
			return NULL;
		}
	}
	agent_report_progress_message(r, msg, sizeof(msg));
	j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "OsVolumeEncrypted",
		      ade_state_to_string(r->os), "DataVolumesEncrypted",
		      ade_state_to_string(agent_report_data_state(r)), "ProgressMessage", msg,
		      "AgentVersion", r->agent_version ? r->agent_version : "",
		      "SequenceVersion", (json_int_t)r->sequence, "Volumes", list);
	return j;
}
