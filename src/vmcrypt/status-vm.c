/* vmcrypt status without a target: the VM's state in ADE's three lines, then a volume table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/vm/vmstatus.h"
#include "vmcrypt.h"

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

static void print_text(const struct vmstatus *s)
{
	static const char *const titles[COLS] = { "DEVICE", "MOUNT", "FS", "STATE", "PERCENT",
						  "MiB/s", "ETA", "HEADER" };
	size_t width[COLS];
	char (*cells)[COLS][PATH_MAX] = NULL;

	printf("OsVolumeEncrypted    : %s\n", ade_state_to_string(s->os));
	printf("DataVolumesEncrypted : %s\n", ade_state_to_string(s->data));
	printf("ProgressMessage      : %s\n", s->progress_message);

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
	int r;

	r = vmstatus_compute(&s);
	if (r < 0) {
		log_error_errno(r, "Failed to compute the VM's encryption status: %m");
		return r;
	}
	if (json) {
		json_t *j = vmstatus_to_json(&s);

		r = jansson_util_write(stdout, j, JSON_INDENT(2));
		json_decref(j);
		vmstatus_done(&s);
		if (r == -ENOMEM) {
			log_error("Out of memory.");
			return EXIT_ERROR;
		}
		return EXIT_OK;
	}
	print_text(&s);
	vmstatus_done(&s);
	return EXIT_OK;
}
