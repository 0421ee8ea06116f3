/* vmcrypt status without a target: the VM's state in ADE's three lines, then a volume table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/client/agent-conf.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/paths.h"
#include "shared/vm/vmstatus.h"
#include "vmcrypt.h"

#define AGENT_STATE_NAME "agent.json"
#define AGENT_STATE_MAX (1024 * 1024)

/* The VM's link to vmcryptd: the server from agent.conf, the goal sequence the agent last applied
 * from its state file (path_state_dir()/agent.json, written by the agent). */
struct agent_view {
	bool enrolled;               /* agent.conf loaded */
	char server[AGENT_CONF_URL_MAX];
	char vm[API_NAME_MAX + 1];
	char conf_error[1024];       /* why agent.conf did not load, "" when it did or is absent */
	bool has_sequence;
	json_int_t applied_sequence;
	char state_error[PATH_MAX + 256]; /* why agent.json could not be used, "" when fine or absent */
};

static void agent_view_read(struct agent_view *v)
{
	_cleanup_free_ struct agent_conf *conf = malloc(sizeof(*conf));
	_cleanup_(jansson_util_decrefp) json_t *state = NULL;
	_cleanup_free_ char *text = NULL;
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *seq;
	size_t size = 0;
	int r;

	*v = (struct agent_view){};
	if (!conf)
		return;
	r = agent_conf_load(NULL, conf, v->conf_error, sizeof(v->conf_error));
	if (r == 0) {
		v->enrolled = true;
		v->conf_error[0] = 0;
		snprintf(v->server, sizeof(v->server), "%s", conf->server);
		snprintf(v->vm, sizeof(v->vm), "%s", conf->vm);
	} else if (r == -ENOENT)
		v->conf_error[0] = 0;

	snprintf(path, sizeof(path), "%s/%s", path_state_dir(), AGENT_STATE_NAME);
	r = read_full_file(path, AGENT_STATE_MAX, &text, &size);
	if (r == -ENOENT)
		return;
	if (r < 0) {
		snprintf(v->state_error, sizeof(v->state_error), "%s: %s", path, strerror(-r));
		return;
	}
	state = json_loadb(text, size, 0, &jerr);
	seq = json_object_get(state, "appliedSequence");
	if (!state || (seq && (!json_is_integer(seq) || json_integer_value(seq) < 0))) {
		snprintf(v->state_error, sizeof(v->state_error), "%s: not the agent's state (%s)", path,
			 state ? "appliedSequence is not a number" : jerr.text);
		return;
	}
	if (seq) {
		v->has_sequence = true;
		v->applied_sequence = json_integer_value(seq);
	}
}

static void agent_view_print(const struct agent_view *v)
{
	if (v->enrolled)
		printf("Server               : %s%s%s%s\n", v->server, v->vm[0] ? " (VM " : "", v->vm, v->vm[0] ? ")" : "");
	else if (v->conf_error[0])
		printf("Server               : unknown (%s)\n", v->conf_error);
	else
		printf("Server               : not enrolled (run vmcrypt enroll)\n");
	if (v->has_sequence)
		printf("AppliedSequence      : %" JSON_INTEGER_FORMAT "\n", v->applied_sequence);
	else if (v->state_error[0])
		printf("AppliedSequence      : unknown (%s)\n", v->state_error);
	else
		printf("AppliedSequence      : none (the agent has applied no settings yet)\n");
}

/* {"enrolled", "server", "vm", "appliedSequence", "errors"}: null where unknown. */
static json_t *agent_view_to_json(const struct agent_view *v)
{
	json_t *errors = json_array();
	json_t *o = json_pack("{s:b, s:o, s:o, s:o, s:o}", "enrolled", v->enrolled,
			      "server", v->enrolled ? json_string(v->server) : json_null(),
			      "vm", v->enrolled && v->vm[0] ? json_string(v->vm) : json_null(),
			      "appliedSequence", v->has_sequence ? json_integer(v->applied_sequence) : json_null(),
			      "errors", errors ? errors : json_array());

	if (!o)
		return NULL;
	if (v->conf_error[0])
		json_array_append_new(json_object_get(o, "errors"), json_string(v->conf_error));
	if (v->state_error[0])
		json_array_append_new(json_object_get(o, "errors"), json_string(v->state_error));
	return o;
}

enum { COL_DEVICE, COL_MOUNT, COL_FS, COL_STATE, COL_PERCENT, COL_RATE, COL_ETA, COL_HEADER, COLS };

static void row_cells(const struct vmstatus_volume *r, char cells[COLS][PATH_MAX])
{
	snprintf(cells[COL_DEVICE], PATH_MAX, "%s", r->device);
	snprintf(cells[COL_MOUNT], PATH_MAX, "%s", r->mountpoint[0] ? r->mountpoint : "-");
	snprintf(cells[COL_FS], PATH_MAX, "%s", r->fstype[0] ? r->fstype : "-");
	snprintf(cells[COL_STATE], PATH_MAX, "%s", vmstatus_volume_state_to_string(r));
	if (r->percent >= 0)
		snprintf(cells[COL_PERCENT], PATH_MAX, "%.1f%%", r->percent);
	else
		snprintf(cells[COL_PERCENT], PATH_MAX, "-");
	if (r->mib_per_s >= 0)
		snprintf(cells[COL_RATE], PATH_MAX, "%.1f", r->mib_per_s);
	else
		snprintf(cells[COL_RATE], PATH_MAX, "-");
	if (r->eta >= 0)
		format_duration(cells[COL_ETA], PATH_MAX, (uint64_t)r->eta);
	else
		snprintf(cells[COL_ETA], PATH_MAX, "-");
	snprintf(cells[COL_HEADER], PATH_MAX, "%s", r->header);
}

static void print_text(const struct vmstatus *s, const struct agent_view *agent)
{
	static const char *const titles[COLS] = { "DEVICE", "MOUNT", "FS", "STATE", "PERCENT",
						  "MiB/s", "ETA", "HEADER" };
	size_t width[COLS];
	char (*cells)[COLS][PATH_MAX] = NULL;

	printf("OsVolumeEncrypted    : %s\n", ade_state_to_string(s->os));
	printf("DataVolumesEncrypted : %s\n", ade_state_to_string(s->data));
	printf("ProgressMessage      : %s\n", s->progress_message);
	agent_view_print(agent);

	if (s->n_volumes > 0)
		cells = calloc(s->n_volumes, sizeof(*cells));
	if (cells) {
		for (size_t c = 0; c < COLS; c++)
			width[c] = strlen(titles[c]);
		for (size_t i = 0; i < s->n_volumes; i++) {
			row_cells(&s->volumes[i], cells[i]);
			for (size_t c = 0; c < COLS; c++)
				width[c] = MAX(width[c], strlen(cells[i][c]));
		}
		printf("\n");
		for (size_t c = 0; c < COLS; c++)
			printf("%-*s%s", c + 1 < COLS ? (int)width[c] : 0, titles[c], c + 1 < COLS ? "  " : "\n");
		for (size_t i = 0; i < s->n_volumes; i++)
			for (size_t c = 0; c < COLS; c++)
				printf("%-*s%s", c + 1 < COLS ? (int)width[c] : 0, cells[i][c],
				       c + 1 < COLS ? "  " : "\n");
		free(cells);
	}
	if (s->busy) {
		char msg[PATH_MAX + 512];
		printf("\n");
		vm_lock_format_busy(&s->holder, msg, sizeof(msg));
		printf("Operation: %s\n", msg);
	}
	if (s->n_notes > 0)
		printf("\n");
	for (size_t i = 0; i < s->n_notes; i++)
		printf("Note: %s\n", s->notes[i]);
}

int status_vm(bool json)
{
	struct vmstatus s = {};
	struct agent_view agent;
	int r;

	r = vmstatus_compute(&s);
	if (r < 0) {
		log_error_errno(r, "Failed to compute the VM's encryption status: %m");
		return r;
	}
	agent_view_read(&agent);
	if (json) {
		json_t *j = vmstatus_to_json(&s);

		if (j && json_object_set_new(j, "agent", agent_view_to_json(&agent)) < 0) {
			json_decref(j);
			j = NULL;
		}

		r = jansson_util_write(stdout, j, JSON_INDENT(2));
		json_decref(j);
		vmstatus_done(&s);
		if (r == -ENOMEM) {
			log_error("Out of memory.");
			return EXIT_ERROR;
		}
		return EXIT_OK;
	}
	print_text(&s, &agent);
	vmstatus_done(&s);
	return EXIT_OK;
}
