/* The state of a conversion in flight, in the state directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/luks/convstate.h"
#include "shared/paths.h"

#define STATE_FILE_MAX 65536

static const char *const phase_names[] = {
	[PHASE_SHRINKING] = "shrinking",   [PHASE_SHRUNK] = "shrunk",
	[PHASE_INIT] = "init",             [PHASE_PLACING_HEADER] = "placing-header",
	[PHASE_BACKUP] = "backup",         [PHASE_WIPING] = "wiping",
	[PHASE_CONVERTING] = "converting", [PHASE_GROWING] = "growing",
	[PHASE_FINALIZING] = "finalizing",
};

const char *convstate_phase_to_string(enum convstate_phase p)
{
	return (unsigned)p < ELEMENTSOF(phase_names) ? phase_names[p] : "unknown";
}

static int phase_from_string(const char *s, enum convstate_phase *ret)
{
	for (size_t i = 0; i < ELEMENTSOF(phase_names); i++)
		if (phase_names[i] && streq(s, phase_names[i])) {
			*ret = (enum convstate_phase)i;
			return 0;
		}
	return -EINVAL;
}

int convstate_path(const char *uuid, const char *name, char *buf, size_t len)
{
	int n;

	if (name)
		n = snprintf(buf, len, "%s/volumes/%s/%s", path_state_dir(), uuid, name);
	else
		n = snprintf(buf, len, "%s/volumes/%s", path_state_dir(), uuid);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int convstate_save(const struct convstate *s)
{
	char dir[PATH_MAX], file[PATH_MAX];
	json_t *o;
	char *text;
	int r;

	if ((r = convstate_path(s->uuid, NULL, dir, sizeof(dir))) < 0 ||
	    (r = convstate_path(s->uuid, "state.json", file, sizeof(file))) < 0)
		return r;
	r = mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:i, s:b, s:s, s:I}",
		      "version", 1, "uuid", s->uuid, "operation", volume_op_to_string(s->op),
		      "phase", convstate_phase_to_string(s->phase), "target", s->target,
		      "identity", s->identity, "device_size", (json_int_t)s->device_size,
		      "fs_type", s->fs_type, "fs_size", (json_int_t)s->fs_size,
		      "data_shift", (json_int_t)s->data_shift, "sector_size", (int)s->sector_size,
		      "detached", s->detached, "header", s->header, "started", (json_int_t)s->started);
	if (!o)
		return -ENOMEM;
	/* Only online conversions have it, so an offline state file reads as before. */
	if (*s->active_name && json_object_set_new(o, "active_name", json_string(s->active_name)) < 0) {
		json_decref(o);
		return -ENOMEM;
	}
	text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(o);
	if (!text)
		return -ENOMEM;
	r = write_file_atomic(file, text, strlen(text), 0600);
	free(text);
	return r;
}

static int copy_str(json_t *o, const char *key, char *buf, size_t len)
{
	const char *v = json_string_value(json_object_get(o, key));

	if (!v || strlen(v) >= len)
		return -EINVAL;
	memcpy(buf, v, strlen(v) + 1);
	return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

int convstate_parse(const char *text, const char *uuid, struct convstate *ret)
{
	char op[16] = "", phase[24] = "";
	struct convstate s = {};
	uint64_t v = 0;
	json_t *o;
	int r;

	o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (!o)
		return -EINVAL;
	r = 0;
	if (copy_str(o, "uuid", s.uuid, sizeof(s.uuid)) < 0 || copy_str(o, "operation", op, sizeof(op)) < 0 ||
	    copy_str(o, "phase", phase, sizeof(phase)) < 0 ||
	    copy_str(o, "target", s.target, sizeof(s.target)) < 0 ||
	    copy_str(o, "identity", s.identity, sizeof(s.identity)) < 0 ||
	    copy_str(o, "fs_type", s.fs_type, sizeof(s.fs_type)) < 0 ||
	    copy_str(o, "header", s.header, sizeof(s.header)) < 0 ||
	    get_u64(o, "device_size", &s.device_size) < 0 || get_u64(o, "fs_size", &s.fs_size) < 0 ||
	    get_u64(o, "data_shift", &s.data_shift) < 0 || get_u64(o, "sector_size", &v) < 0 || v > UINT32_MAX ||
	    phase_from_string(phase, &s.phase) < 0 || !streq(s.uuid, uuid))
		r = -EINVAL;
	s.sector_size = (uint32_t)v;
	s.detached = json_is_true(json_object_get(o, "detached"));
	if (json_object_get(o, "active_name") && copy_str(o, "active_name", s.active_name, sizeof(s.active_name)) < 0)
		r = -EINVAL;
	if (get_u64(o, "started", &v) == 0)
		s.started = (int64_t)v;
	/* A state file exists only for a conversion: "none" is as wrong as any other word. */
	s.op = volume_op_from_string(op);
	if (s.op != VOLUME_OP_ENCRYPT && s.op != VOLUME_OP_DECRYPT)
		r = -EINVAL;
	json_decref(o);
	if (r < 0)
		return r;
	*ret = s;
	return 0;
}

int convstate_load(const char *uuid, struct convstate *ret)
{
	char file[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	int r;

	r = convstate_path(uuid, "state.json", file, sizeof(file));
	if (r < 0)
		return r;
	r = read_full_file(file, STATE_FILE_MAX, &text, NULL);
	if (r < 0)
		return r;
	return convstate_parse(text, uuid, ret);
}

int convstate_find(const struct device_info *d, struct convstate *ret)
{
	char dir[PATH_MAX], id[64];
	struct convstate by_path = {};
	bool have_by_path = false;
	struct dirent *de;
	_cleanup_(closedirp) DIR *dp = NULL;

	device_identity(d, id, sizeof(id));
	snprintf(dir, sizeof(dir), "%s/volumes", path_state_dir());
	dp = opendir(dir);
	if (!dp)
		return errno == ENOENT ? -ENOENT : negative_errno();
	while ((de = readdir(dp))) {
		struct convstate s;

		if (de->d_name[0] == '.' || convstate_load(de->d_name, &s) < 0)
			continue;
		if (s.device_size != d->size)
			continue;
		if (streq(s.identity, id)) {
			*ret = s;
			return 0;
		}
		/* A loop device or disk can come back under another number after a reboot; the
		 * same path and size is the next best evidence. */
		if (streq(s.target, d->path) && !have_by_path) {
			by_path = s;
			have_by_path = true;
		}
	}
	if (!have_by_path)
		return -ENOENT;
	*ret = by_path;
	return 0;
}

int convstate_remove(const char *uuid)
{
	char dir[PATH_MAX];
	struct dirent *de;
	_cleanup_(closedirp) DIR *dp = NULL;
	int r;

	if ((r = convstate_path(uuid, NULL, dir, sizeof(dir))) < 0)
		return r;
	dp = opendir(dir);
	if (!dp)
		return errno == ENOENT ? 0 : negative_errno();
	/* Everything in it is ours: state.json, header.img, undo.e2undo, backup.img, and the
	 * temporary files a kill in the middle of an atomic write leaves behind. */
	while ((de = readdir(dp))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(dp), de->d_name, 0) < 0 && errno != ENOENT)
			return negative_errno();
	}
	closedir(TAKE_PTR(dp));
	if (rmdir(dir) < 0 && errno != ENOENT)
		return negative_errno();
	return fsync_parent_dir(dir);
}
