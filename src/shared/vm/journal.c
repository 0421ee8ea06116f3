/* The operation journal: path_state_dir()/journal.json, replaced atomically on every change. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/jansson-util.h"
#include "shared/paths.h"
#include "shared/vm/journal.h"

#define JOURNAL_FILE_MAX (1024 * 1024)

static const char *const result_names[] = {
	[JOURNAL_RUNNING] = "running",
	[JOURNAL_SUCCEEDED] = "succeeded",
	[JOURNAL_FAILED] = "failed",
	[JOURNAL_INTERRUPTED] = "interrupted",
};

const char *journal_result_to_string(enum journal_result r)
{
	return (unsigned)r < ELEMENTSOF(result_names) ? result_names[r] : "unknown";
}

static int result_from_string(const char *s, enum journal_result *ret)
{
	for (size_t i = 0; i < ELEMENTSOF(result_names); i++)
		if (streq(s, result_names[i])) {
			*ret = (enum journal_result)i;
			return 0;
		}
	return -EBADMSG;
}

static int journal_path(char *buf, size_t len)
{
	if (snprintf(buf, len, "%s/journal.json", path_state_dir()) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

static int entry_from_json(json_t *o, struct journal_entry *e)
{
	const char *command, *target, *uuid = "", *result, *header = "";
	json_int_t started = 0, updated = 0, rate = 0, error = 0, pid = 0;
	double percent = -1;

	memset(e, 0, sizeof(*e));
	if (json_unpack(o, "{s:s, s:s, s?s, s:I, s?I, s?F, s?I, s:s, s?I, s?I, s?s}", "command",
			&command, "target", &target, "uuid", &uuid, "started", &started, "updated",
			&updated, "percent", &percent, "rate", &rate, "result", &result, "error", &error,
			"pid", &pid, "header", &header) < 0)
		return -EBADMSG;
	if (strlen(header) >= sizeof(e->header))
		return -EBADMSG;
	if (strlen(command) >= sizeof(e->command) || strlen(target) >= sizeof(e->target) ||
	    strlen(uuid) >= sizeof(e->uuid) || rate < 0 || error > 0 || error < -4095 || pid < 0 ||
	    pid > INT32_MAX)
		return -EBADMSG;
	if (result_from_string(result, &e->result) < 0)
		return -EBADMSG;
	strcpy(e->command, command);
	strcpy(e->target, target);
	strcpy(e->uuid, uuid);
	strcpy(e->header, header);
	e->started = started;
	e->updated = updated;
	e->percent = percent;
	e->rate = (uint64_t)rate;
	e->error = (int)error;
	e->pid = (pid_t)pid;
	return 0;
}

int journal_parse(const char *text, struct journal_entry **ret, size_t *ret_n)
{
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	_cleanup_free_ struct journal_entry *entries = NULL;
	json_t *list, *o;
	size_t i, n;
	int r;

	j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return -EBADMSG;
	list = json_object_get(j, "entries");
	if (!json_is_array(list))
		return -EBADMSG;
	n = json_array_size(list);
	if (n > JOURNAL_MAX_ENTRIES)
		return -EBADMSG;
	entries = calloc(n ? n : 1, sizeof(*entries));
	if (!entries)
		return -ENOMEM;
	json_array_foreach(list, i, o) {
		r = entry_from_json(o, &entries[i]);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(entries);
	*ret_n = n;
	return 0;
}

int journal_load(struct journal_entry **ret, size_t *ret_n)
{
	char path[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	int r;

	r = journal_path(path, sizeof(path));
	if (r < 0)
		return r;
	r = read_full_file(path, JOURNAL_FILE_MAX, &text, NULL);
	if (r == -ENOENT) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (r < 0)
		return r;
	return journal_parse(text, ret, ret_n);
}

const struct journal_entry *journal_find_last(const struct journal_entry *entries, size_t n,
					      const char *target)
{
	for (size_t i = n; i > 0; i--)
		if (streq(entries[i - 1].target, target))
			return &entries[i - 1];
	return NULL;
}

static int journal_save(const struct journal_entry *entries, size_t n)
{
	char path[PATH_MAX];
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	_cleanup_free_ char *text = NULL;
	json_t *list;
	int r;

	r = journal_path(path, sizeof(path));
	if (r < 0)
		return r;
	r = mkdir_p(path_state_dir(), 0700);
	if (r < 0)
		return r;
	j = json_pack("{s:i, s:[]}", "version", 1, "entries");
	if (!j)
		return -ENOMEM;
	list = json_object_get(j, "entries");
	/* Only the newest entries are kept. */
	for (size_t i = n > JOURNAL_MAX_ENTRIES ? n - JOURNAL_MAX_ENTRIES : 0; i < n; i++) {
		const struct journal_entry *e = &entries[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:I, s:s, s:i, s:s, s:i, s:s}",
				      "command", e->command, "target", e->target, "uuid", e->uuid,
				      "started", (json_int_t)e->started, "updated", (json_int_t)e->updated,
				      "percent", e->percent, "rate", (json_int_t)e->rate, "result",
				      journal_result_to_string(e->result), "error", e->error, "message",
				      e->error ? strerror(-e->error) : "", "pid", (int)e->pid, "header",
				      e->header);
		if (!o || json_array_append_new(list, o) < 0)
			return -ENOMEM;
	}
	text = json_dumps(j, JSON_INDENT(1));
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0600);
}

/* Loads the journal for a change. A journal that does not parse is kept aside as journal.json.bad
 * and a new one started: losing history must never stop an operation. */
static int journal_load_for_update(struct journal_entry **ret, size_t *ret_n)
{
	char path[PATH_MAX], bad[PATH_MAX + 8];
	int r;

	r = journal_load(ret, ret_n);
	if (r != -EBADMSG)
		return r;
	r = journal_path(path, sizeof(path));
	if (r < 0)
		return r;
	snprintf(bad, sizeof(bad), "%s.bad", path);
	if (rename(path, bad) < 0)
		return negative_errno();
	*ret = NULL;
	*ret_n = 0;
	return 0;
}

int journal_begin(const char *command, const char *target, const char *uuid)
{
	_cleanup_free_ struct journal_entry *entries = NULL;
	struct journal_entry *p, *e;
	size_t n = 0;
	int r;

	if (!command || !target || strlen(command) >= sizeof(p->command) ||
	    strlen(target) >= sizeof(p->target) || (uuid && strlen(uuid) >= sizeof(p->uuid)))
		return -EINVAL;
	r = journal_load_for_update(&entries, &n);
	if (r < 0)
		return r;
	/* A running entry for this target whose process is gone was interrupted. */
	for (size_t i = 0; i < n; i++)
		if (entries[i].result == JOURNAL_RUNNING && streq(entries[i].target, target))
			entries[i].result = JOURNAL_INTERRUPTED;
	p = reallocarray(entries, n + 1, sizeof(*entries));
	if (!p)
		return -ENOMEM;
	entries = p;
	e = &entries[n++];
	memset(e, 0, sizeof(*e));
	strcpy(e->command, command);
	strcpy(e->target, target);
	if (uuid)
		strcpy(e->uuid, uuid);
	e->started = e->updated = (int64_t)time(NULL);
	e->percent = -1;
	e->result = JOURNAL_RUNNING;
	e->pid = getpid();
	return journal_save(entries, n);
}

/* Loads the journal for an update and finds target's last entry (only a running one, when running
 * is set). Returns 0 with *ret_entries (to free) and *ret_n, *ret pointing into it; -ENOENT; or
 * journal_load_for_update()'s error. */
static int load_last(const char *target, bool running, struct journal_entry **ret_entries, size_t *ret_n,
		     struct journal_entry **ret)
{
	_cleanup_free_ struct journal_entry *entries = NULL;
	struct journal_entry *e;
	size_t n = 0;
	int r;

	r = journal_load_for_update(&entries, &n);
	if (r < 0)
		return r;
	e = (struct journal_entry *)journal_find_last(entries, n, target);
	if (!e || (running && e->result != JOURNAL_RUNNING))
		return -ENOENT;
	*ret = e;
	*ret_n = n;
	*ret_entries = TAKE_PTR(entries);
	return 0;
}

int journal_progress(const char *target, const char *uuid, double percent, uint64_t rate)
{
	_cleanup_free_ struct journal_entry *entries = NULL;
	struct journal_entry *e;
	size_t n = 0;
	int r;

	r = load_last(target, true, &entries, &n, &e);
	if (r < 0)
		return r;
	if (uuid && *uuid) {
		if (strlen(uuid) >= sizeof(e->uuid))
			return -EINVAL;
		strcpy(e->uuid, uuid);
	}
	e->percent = percent;
	e->rate = rate;
	e->updated = (int64_t)time(NULL);
	return journal_save(entries, n);
}

int journal_set_header(const char *target, const char *header)
{
	_cleanup_free_ struct journal_entry *entries = NULL;
	struct journal_entry *e;
	size_t n = 0;
	int r;

	if (!header || strlen(header) >= sizeof(e->header))
		return -EINVAL;
	r = load_last(target, true, &entries, &n, &e);
	if (r < 0)
		return r;
	strcpy(e->header, header);
	e->updated = (int64_t)time(NULL);
	return journal_save(entries, n);
}

int journal_end(const char *target, enum journal_result result, int error)
{
	_cleanup_free_ struct journal_entry *entries = NULL;
	struct journal_entry *e;
	size_t n = 0;
	int r;

	r = load_last(target, false, &entries, &n, &e);
	if (r < 0)
		return r;
	e->result = result;
	e->error = error;
	if (result == JOURNAL_SUCCEEDED)
		e->percent = 100;
	e->updated = (int64_t)time(NULL);
	return journal_save(entries, n);
}
