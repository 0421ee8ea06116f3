/* The VM-wide encryption state in ADE's model (OsVolumeEncrypted, DataVolumesEncrypted,
 * ProgressMessage) plus a per-volume table, computed from the disks (luks_inspect() on every
 * volume) and the operation journal. The disks are the truth: where the journal disagrees, the
 * state follows the disks and a note says what the journal claimed. */
#pragma once

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/ade.h"
#include "shared/luks/luks.h"
#include "shared/vm/journal.h"
#include "shared/vm/lock.h"
#include "shared/volume/volumes.h"

#define VMSTATUS_NOTES_MAX 16

/* One row of the volume table. */
struct vmstatus_volume {
	char device[PATH_MAX];
	char mountpoint[PATH_MAX];   /* "" when not mounted */
	char fstype[32];
	bool os;
	bool counted;                /* counts as a data volume for DataVolumesEncrypted */
	enum ade_state state;        /* never NotMounted; an interrupted conversion is
				      * Encryption/DecryptionInProgress with interrupted set */
	bool interrupted;            /* in progress, but no vmcrypt process drives it: resume */
	double percent;              /* -1 when nothing is under way */
	double mib_per_s;            /* from the journal, -1 when unknown */
	int64_t eta;                 /* seconds, -1 when unknown */
	char header[PATH_MAX];       /* "on device", a detached header's path, or "-" */
	int error;                   /* luks_inspect()'s -errno, 0 */
};

struct vmstatus {
	enum ade_state os;
	enum ade_state data;
	char progress_message[256];
	struct vmstatus_volume *volumes;
	size_t n_volumes;
	char notes[VMSTATUS_NOTES_MAX][512]; /* disks vs journal disagreements, other remarks */
	size_t n_notes;
	bool busy;                   /* an operation holds the VM lock */
	struct lock_holder holder;   /* valid when busy */
};

/* What vmstatus_build() computes from: one per volume, as discovered (or as named by the
 * journal when discovery does not see it, e.g. an image file) and as luks_inspect() saw it. */
struct vmstatus_input {
	struct volume volume;
	int inspect_error;           /* luks_inspect()'s result, 0 or -errno */
	struct volume_info info;
};

/* Computes the status from the given facts; a pure function (now is the current unix time).
 * holder is NULL when the VM lock is free. Returns 0 or -ENOMEM. Free with vmstatus_done(). */
int vmstatus_build(const struct vmstatus_input *in, size_t n, const struct journal_entry *journal,
		   size_t n_journal, const struct lock_holder *holder, int64_t now,
		   struct vmstatus *ret);

/* Gathers the facts from the live system (volumes_discover(), luks_inspect(), journal_load(),
 * vm_lock_peek()) and builds the status. Returns 0, or -ENOMEM; failures to inspect a volume or
 * to read the journal become Unknown states and notes, not errors. */
int vmstatus_compute(struct vmstatus *ret);

void vmstatus_done(struct vmstatus *s);

/* {"OsVolumeEncrypted","DataVolumesEncrypted","ProgressMessage","volumes":[...],"notes":[...],
 *  "operation":{...}|null}. Returns a new reference or NULL. */
json_t *vmstatus_to_json(const struct vmstatus *s);

/* A row's state word: "Interrupted" when interrupted is set, else ade_state_to_string(). */
const char *vmstatus_volume_state_to_string(const struct vmstatus_volume *r);
