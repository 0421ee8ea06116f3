/* The agent's state file: path_state_dir()/agent.json, replaced atomically at every step. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/agent-state.h"
#include "shared/jansson-util.h"
#include "shared/paths.h"

#define AGENT_STATE_FILE_MAX (1024 * 1024)

static const char *const phase_names[_AGENT_PHASE_MAX] = {
	[AGENT_PHASE_PLAIN] = "plain",
	[AGENT_PHASE_ESCROWED] = "escrowed",
	[AGENT_PHASE_CUTOVER] = "cutover",
	[AGENT_PHASE_CONVERTING] = "converting",
	[AGENT_PHASE_ENCRYPTED] = "encrypted",
	[AGENT_PHASE_DECRYPTING] = "decrypting",
	[AGENT_PHASE_FINISHING] = "finishing",
	[AGENT_PHASE_RESTART_PENDING] = "restart-pending",
};

const char *agent_phase_to_string(enum agent_phase p)
{
	return (unsigned)p < ELEMENTSOF(phase_names) ? phase_names[p] : NULL;
}

enum agent_phase agent_phase_from_string(const char *s)
{
	for (size_t i = 0; s && i < ELEMENTSOF(phase_names); i++)
		if (streq(s, phase_names[i]))
			return (enum agent_phase)i;
	return _AGENT_PHASE_INVALID;
}

static int copy_string(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return -EBADMSG;
	strcpy(dst, src);
	return 0;
}

static int volume_from_json(json_t *o, struct agent_volume_state *v)
{
	const char *name, *device = "", *mountpoint = "", *fstype = "", *fs_options = "",
		   *luks_uuid = "", *header = "", *phase, *message = "", *boot_id = "", *backup_uuid = "";
	json_int_t flags = 0, key_version = 0, recovery_version = 0, downtime = -1, error = 0, backup_version = 0;
	int online = 0, os = 0;
	json_t *units = NULL, *u;
	size_t i;

	memset(v, 0, sizeof(*v));
	if (json_unpack(o, "{s:s, s?s, s?s, s?s, s?s, s?I, s?s, s?s, s:s, s?b, s?b, s?s, s?I, s?I, s?s, s?I, s?o, s?I, s?s, s?I}",
			"name", &name, "device", &device, "mountPoint", &mountpoint, "fsType", &fstype,
			"fsOptions", &fs_options, "mountFlags", &flags, "luksUuid", &luks_uuid,
			"header", &header, "phase", &phase, "online", &online, "os", &os, "preparedBootId", &boot_id, "keyVersion",
			&key_version, "recoveryVersion", &recovery_version, "headerBackupUuid", &backup_uuid,
			"headerBackupVersion", &backup_version, "stoppedUnits", &units,
			"downtimeMs", &downtime, "message", &message, "error", &error) < 0)
		return -EBADMSG;
	if (copy_string(v->name, sizeof(v->name), name) < 0 ||
	    copy_string(v->device, sizeof(v->device), device) < 0 ||
	    copy_string(v->prepared_boot_id, sizeof(v->prepared_boot_id), boot_id) < 0 ||
	    copy_string(v->mountpoint, sizeof(v->mountpoint), mountpoint) < 0 ||
	    copy_string(v->fstype, sizeof(v->fstype), fstype) < 0 ||
	    copy_string(v->fs_options, sizeof(v->fs_options), fs_options) < 0 ||
	    copy_string(v->luks_uuid, sizeof(v->luks_uuid), luks_uuid) < 0 ||
	    copy_string(v->header, sizeof(v->header), header) < 0 ||
	    copy_string(v->header_backup_uuid, sizeof(v->header_backup_uuid), backup_uuid) < 0 ||
	    copy_string(v->message, sizeof(v->message), message) < 0)
		return -EBADMSG;
	v->phase = agent_phase_from_string(phase);
	if (v->phase < 0 || flags < 0 || key_version < 0 || recovery_version < 0 || backup_version < 0 || error > 0 ||
	    error < -4095)
		return -EBADMSG;
	if (units) {
		if (!json_is_array(units) || json_array_size(units) > AGENT_UNITS_MAX)
			return -EBADMSG;
		json_array_foreach(units, i, u) {
			if (!json_is_string(u) ||
			    copy_string(v->stopped_units[i], sizeof(v->stopped_units[i]),
					json_string_value(u)) < 0)
				return -EBADMSG;
		}
		v->n_stopped_units = json_array_size(units);
	}
	v->mount_flags = (unsigned long)flags;
	v->online = online;
	v->os = os;
	v->key_version = (uint64_t)key_version;
	v->recovery_version = (uint64_t)recovery_version;
	v->header_backup_version = (uint64_t)backup_version;
	v->downtime_ms = downtime;
	v->error = (int)error;
	return 0;
}

int agent_state_parse(const char *text, struct agent_state *ret)
{
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	json_int_t applied = 0, seen = 0;
	const char *server = "", *operation = "";
	json_t *list = NULL, *o;
	size_t i;
	int r;

	memset(ret, 0, sizeof(*ret));
	j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return -EBADMSG;
	if (json_unpack(j, "{s?I, s?I, s?s, s?s, s?o}", "appliedSequence", &applied, "seenSequence",
			&seen, "operation", &operation, "server", &server, "volumes", &list) < 0)
		return -EBADMSG;
	if (applied < 0 || seen < 0 || copy_string(ret->server, sizeof(ret->server), server) < 0 ||
	    copy_string(ret->operation, sizeof(ret->operation), operation) < 0)
		return -EBADMSG;
	ret->applied_sequence = (uint64_t)applied;
	ret->seen_sequence = (uint64_t)seen;
	if (list) {
		if (!json_is_array(list) || json_array_size(list) > AGENT_VOLUMES_MAX)
			return -EBADMSG;
		json_array_foreach(list, i, o) {
			r = volume_from_json(o, &ret->volumes[i]);
			if (r < 0)
				return r;
		}
		ret->n_volumes = json_array_size(list);
	}
	return 0;
}

static int state_path(char *buf, size_t len)
{
	if (snprintf(buf, len, "%s/agent.json", path_state_dir()) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int agent_state_load(struct agent_state *ret)
{
	char path[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	int r;

	r = state_path(path, sizeof(path));
	if (r < 0)
		return r;
	r = read_full_file(path, AGENT_STATE_FILE_MAX, &text, NULL);
	if (r == -ENOENT) {
		memset(ret, 0, sizeof(*ret));
		return 0;
	}
	if (r < 0)
		return r;
	return agent_state_parse(text, ret);
}

static json_t *volume_to_json(const struct agent_volume_state *v)
{
	json_t *units = json_array();

	for (size_t i = 0; units && i < v->n_stopped_units; i++)
		json_array_append_new(units, json_string(v->stopped_units[i]));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:b, s:b, s:s, s:I, s:I, s:s, s:I, s:o, s:I, s:s, s:I}",
			 "name", v->name, "device", v->device, "mountPoint", v->mountpoint,
			 "fsType", v->fstype, "fsOptions", v->fs_options, "mountFlags",
			 (json_int_t)v->mount_flags, "luksUuid", v->luks_uuid, "header", v->header,
			 "phase", agent_phase_to_string(v->phase), "online", v->online, "os", v->os,
			 "preparedBootId", v->prepared_boot_id,
			 "keyVersion", (json_int_t)v->key_version, "recoveryVersion",
			 (json_int_t)v->recovery_version, "headerBackupUuid", v->header_backup_uuid,
			 "headerBackupVersion", (json_int_t)v->header_backup_version,
			 "stoppedUnits", units ? units : json_array(),
			 "downtimeMs", (json_int_t)v->downtime_ms, "message", v->message, "error",
			 (json_int_t)v->error);
}

int agent_state_save(const struct agent_state *s)
{
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	_cleanup_free_ char *text = NULL;
	char path[PATH_MAX];
	json_t *list;
	int r;

	r = state_path(path, sizeof(path));
	if (r < 0)
		return r;
	r = mkdir_p(path_state_dir(), 0700);
	if (r < 0)
		return r;
	list = json_array();
	if (!list)
		return -ENOMEM;
	j = json_pack("{s:I, s:I, s:s, s:s, s:o}", "appliedSequence", (json_int_t)s->applied_sequence,
		      "seenSequence", (json_int_t)s->seen_sequence, "operation", s->operation,
		      "server", s->server, "volumes", list);
	if (!j)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_volumes; i++) {
		json_t *v = volume_to_json(&s->volumes[i]);
		if (!v || json_array_append_new(list, v) < 0)
			return -ENOMEM;
	}
	text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600);
}

struct agent_volume_state *agent_state_find(struct agent_state *s, const char *name)
{
	for (size_t i = 0; i < s->n_volumes; i++)
		if (streq(s->volumes[i].name, name))
			return &s->volumes[i];
	return NULL;
}

struct agent_volume_state *agent_state_add(struct agent_state *s, const char *name)
{
	struct agent_volume_state *v;

	if (s->n_volumes >= AGENT_VOLUMES_MAX || strlen(name) >= sizeof(v->name))
		return NULL;
	v = &s->volumes[s->n_volumes++];
	memset(v, 0, sizeof(*v));
	strcpy(v->name, name);
	v->downtime_ms = -1;
	return v;
}
