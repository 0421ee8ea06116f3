/* The VM-wide encryption state, computed from the disks and the journal. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/luks/luks-inspect.h"
#include "shared/vm/vmstatus.h"

/* Journal rates older than this are not shown: the operation is not publishing any more. */
#define VMSTATUS_RATE_FRESH 120

const char *vmstatus_volume_state_to_string(const struct vmstatus_volume *r)
{
	/* Not an ADE word: a volume row only, and it counts as in progress for the VM. */
	return r->interrupted ? "Interrupted" : ade_state_to_string(r->state);
}

_printf_(2, 3) static void note(struct vmstatus *s, const char *fmt, ...)
{
	va_list ap;

	if (s->n_notes >= VMSTATUS_NOTES_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(s->notes[s->n_notes++], sizeof(s->notes[0]), fmt, ap);
	va_end(ap);
}

/* A long device path only shortens the message; it never overflows it. */
_printf_(2, 3) static void set_progress(struct vmstatus *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->progress_message, sizeof(s->progress_message), fmt, ap);
	va_end(ap);
}

static const char *format_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "an unknown time");
	return buf;
}

/* The lock holder names its target as typed; compare canonical paths where they exist. */
static bool same_target(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];

	if (!a[0] || !b[0])
		return false;
	if (streq(a, b))
		return true;
	return realpath(a, ra) && realpath(b, rb) && streq(ra, rb);
}

static bool holder_on(const struct lock_holder *h, const struct vmstatus_input *in)
{
	return h && (same_target(h->target, in->volume.device) ||
		     (in->volume.backing[0] && same_target(h->target, in->volume.backing)));
}

static bool is_crypt_mapping(const struct volume *v)
{
	return v->kind == VOLUME_KIND_CRYPT;
}

/* The journal entry that speaks about this volume: by target path, or by LUKS UUID. */
static const struct journal_entry *journal_for(const struct vmstatus_input *in,
					       const struct journal_entry *j, size_t n)
{
	const struct journal_entry *e;

	e = journal_find_last(j, n, in->volume.device);
	if (!e && in->volume.backing[0])
		e = journal_find_last(j, n, in->volume.backing);
	if (e)
		return e;
	if (in->info.uuid[0])
		for (size_t i = n; i > 0; i--)
			if (streq(j[i - 1].uuid, in->info.uuid))
				return &j[i - 1];
	return NULL;
}

/* A filesystem mounted straight from the device (no dm-crypt) starts at its first block, where
 * a LUKS header would be: the device is plain even when its header cannot be read. */
static bool mounted_plain(const struct vmstatus_input *in)
{
	return in->volume.mountpoint[0] && !is_crypt_mapping(&in->volume) && in->volume.fstype[0] &&
	       !streq(in->volume.fstype, "crypto_LUKS");
}

/* The row's state; sets *interrupted for a conversion in progress that nobody drives. */
static enum ade_state row_state(const struct vmstatus_input *in, const struct lock_holder *holder,
				bool *interrupted)
{
	enum ade_state unattended = in->info.op == VOLUME_OP_DECRYPT ? ADE_STATE_DECRYPTION_IN_PROGRESS
								      : ADE_STATE_ENCRYPTION_IN_PROGRESS;

	*interrupted = false;
	if (in->inspect_error < 0)
		return mounted_plain(in) ? ADE_STATE_NOT_ENCRYPTED : ADE_STATE_UNKNOWN;
	switch (in->info.state) {
	case VOLUME_PLAIN:
		return ADE_STATE_NOT_ENCRYPTED;
	case VOLUME_ENCRYPTED:
	case VOLUME_ENCRYPTING:
		/* The running OS still uses the plain device: the header waits for the next boot. */
		if (in->volume.role == VOLUME_ROLE_OS && in->volume.mountpoint[0] &&
		    !is_crypt_mapping(&in->volume))
			return ADE_STATE_VM_RESTART_PENDING;
		if (in->info.state == VOLUME_ENCRYPTED)
			return ADE_STATE_ENCRYPTED;
		/* Reencryption only moves while a vmcrypt process drives it; a clean one that nobody
		 * works on waits for `vmcrypt resume`. */
		if (holder_on(holder, in))
			return ADE_STATE_ENCRYPTION_IN_PROGRESS;
		*interrupted = true;
		return unattended;
	case VOLUME_DECRYPTING:
		if (holder_on(holder, in))
			return ADE_STATE_DECRYPTION_IN_PROGRESS;
		*interrupted = true;
		return unattended;
	case VOLUME_INTERRUPTED:
		*interrupted = true;
		return unattended;
	default:
		return ADE_STATE_UNKNOWN;
	}
}

static bool in_progress(const struct vmstatus_volume *r)
{
	return r->state == ADE_STATE_ENCRYPTION_IN_PROGRESS || r->state == ADE_STATE_DECRYPTION_IN_PROGRESS;
}

/* Compares what the journal says with what the disk shows; the disk wins, the note says so. */
static void reconcile(struct vmstatus *s, const struct vmstatus_volume *r,
		      const struct journal_entry *e, const struct lock_holder *holder)
{
	char when[64];
	bool held = holder && (same_target(holder->target, e->target) ||
			       same_target(holder->target, r->device));

	format_time(e->updated, when, sizeof(when));
	if (e->result == JOURNAL_SUCCEEDED && streq(e->command, "encrypt") &&
	    r->state == ADE_STATE_NOT_ENCRYPTED)
		note(s, "%s: the journal says 'vmcrypt encrypt' succeeded at %s, but the disk has no "
			"LUKS header (decrypted outside vmcrypt?). The disks win: shown as NotEncrypted.",
		     r->device, when);
	else if (e->result == JOURNAL_SUCCEEDED && streq(e->command, "decrypt") &&
		 r->state == ADE_STATE_ENCRYPTED)
		note(s, "%s: the journal says 'vmcrypt decrypt' succeeded at %s, but the disk has a "
			"LUKS header (encrypted outside vmcrypt?). The disks win: shown as Encrypted.",
		     r->device, when);
	else if (e->result == JOURNAL_RUNNING && !held)
		note(s, "%s: the journal says 'vmcrypt %s' (pid %d) is running, but no vmcrypt process "
			"holds the VM lock: it was interrupted. The disks win: shown as %s%s.",
		     r->device, e->command, (int)e->pid, vmstatus_volume_state_to_string(r),
		     in_progress(r) ? "; run 'vmcrypt resume'" : "");
	else if ((e->result == JOURNAL_INTERRUPTED || e->result == JOURNAL_FAILED) &&
		 streq(e->command, "encrypt") && r->state == ADE_STATE_ENCRYPTED)
		note(s, "%s: the journal says 'vmcrypt encrypt' %s at %s, but the disk shows the "
			"conversion complete. The disks win: shown as Encrypted.",
		     r->device, journal_result_to_string(e->result), when);
}

static void fill_row(struct vmstatus_volume *r, const struct vmstatus_input *in,
		     const struct journal_entry *e, const struct lock_holder *holder, int64_t now)
{
	const struct volume_info *info = &in->info;

	snprintf(r->device, sizeof(r->device), "%s", in->volume.device);
	snprintf(r->mountpoint, sizeof(r->mountpoint), "%s", in->volume.mountpoint);
	if (in->volume.fstype[0] && !streq(in->volume.fstype, "crypto_LUKS"))
		snprintf(r->fstype, sizeof(r->fstype), "%s", in->volume.fstype);
	else
		snprintf(r->fstype, sizeof(r->fstype), "%s", info->fs_type);
	r->os = in->volume.role == VOLUME_ROLE_OS;
	r->state = row_state(in, holder, &r->interrupted);
	r->error = in->inspect_error;
	r->percent = -1;
	r->mib_per_s = -1;
	r->eta = -1;
	if (in_progress(r)) {
		r->percent = info->percent;
		if (r->percent < 0 && e && e->result == JOURNAL_RUNNING)
			r->percent = e->percent;
		if (e && e->result == JOURNAL_RUNNING && e->rate > 0 && now - e->updated < VMSTATUS_RATE_FRESH) {
			r->mib_per_s = (double)e->rate / (1024.0 * 1024.0);
			if (r->percent >= 0 && info->device_size > 0)
				r->eta = (int64_t)((100.0 - r->percent) / 100.0 * (double)info->device_size /
						   (double)e->rate);
		}
	}
	if (in->inspect_error < 0 || info->state == VOLUME_PLAIN || info->state == VOLUME_UNKNOWN)
		snprintf(r->header, sizeof(r->header), "-");
	else if (info->header_detached)
		snprintf(r->header, sizeof(r->header), "%s", info->header_path);
	else
		snprintf(r->header, sizeof(r->header), "on device");
	/* Unmounted plain candidates are listed but are not data volumes (ADE counts mounted ones);
	 * anything with a LUKS header or a conversion under way is. */
	r->counted = !r->os && (in->volume.role == VOLUME_ROLE_DATA ||
				(in->inspect_error == 0 && info->state != VOLUME_PLAIN &&
				 info->state != VOLUME_UNKNOWN));
}

static void format_percent(char *buf, size_t len, double p)
{
	if (p >= 0)
		snprintf(buf, len, ": %.0f%%", p);
	else
		buf[0] = 0;
}

static void progress_message(struct vmstatus *s, const struct vmstatus_input *in,
			     const struct journal_entry *journal, size_t n_journal,
			     const struct lock_holder *holder)
{
	size_t counted = 0, idx = 0, encrypted = 0;
	const struct vmstatus_volume *busy = NULL, *os = NULL;
	size_t busy_idx = 0;
	char pct[32];

	for (size_t i = 0; i < s->n_volumes; i++) {
		const struct vmstatus_volume *r = &s->volumes[i];
		if (r->os)
			os = r;
		if (!r->counted)
			continue;
		counted++;
		if (r->state == ADE_STATE_ENCRYPTED)
			encrypted++;
	}
	/* The volume being worked on: the lock holder's target first, else any in progress. */
	for (size_t i = 0; i < s->n_volumes; i++) {
		const struct vmstatus_volume *r = &s->volumes[i];
		if (r->counted)
			idx++;
		if (!in_progress(r) || (!r->counted && !r->os))
			continue;
		if (!busy || (holder && same_target(holder->target, r->device))) {
			busy = r;
			busy_idx = r->counted ? idx : 0;
		}
	}
	if (busy) {
		bool decrypt = busy->state == ADE_STATE_DECRYPTION_IN_PROGRESS;
		format_percent(pct, sizeof(pct), busy->percent);
		if (busy->interrupted && holder && streq(holder->command, "resume"))
			set_progress(s, "Resuming %s after reboot%s", decrypt ? "decryption" : "encryption", pct);
		else if (busy->interrupted && !holder)
			set_progress(s, "%s of %s interrupted%s%s: run 'vmcrypt resume %s'",
				 decrypt ? "Decryption" : "Encryption", busy->device,
				 busy->percent >= 0 ? " at" : "", pct + (busy->percent >= 0 ? 1 : 0),
				 busy->device);
		else if (busy->os)
			set_progress(s, "%s OS volume%s",
				 decrypt ? "Decrypting" : "Encrypting", pct);
		else
			set_progress(s, "%s data volume %zu/%zu%s", decrypt ? "Decrypting" : "Encrypting", busy_idx,
				 counted, pct);
		return;
	}
	if (s->os == ADE_STATE_VM_RESTART_PENDING) {
		set_progress(s, "OS disk successfully encrypted, please reboot the VM");
		return;
	}
	if (s->os == ADE_STATE_UNKNOWN && os) {
		set_progress(s, "Encryption state of the OS volume %s is unknown", os->device);
		return;
	}
	if (s->data == ADE_STATE_UNKNOWN) {
		set_progress(s, "Encryption state of a data volume is unknown");
		return;
	}
	if (s->os == ADE_STATE_ENCRYPTED &&
	    (s->data == ADE_STATE_ENCRYPTED || s->data == ADE_STATE_NOT_MOUNTED)) {
		set_progress(s, "Encryption succeeded for all volumes");
		return;
	}
	if (s->data == ADE_STATE_ENCRYPTED) {
		set_progress(s, "Encryption succeeded for data volumes");
		return;
	}
	if (encrypted > 0) {
		set_progress(s, "%zu of %zu data volumes encrypted%s", encrypted, counted,
			 s->os == ADE_STATE_ENCRYPTED ? "; OS volume encrypted" : "");
		return;
	}
	if (s->os == ADE_STATE_ENCRYPTED) {
		set_progress(s, "Encryption succeeded for the OS volume; data volumes not encrypted");
		return;
	}
	/* Nothing is encrypted: say how we got here when the journal knows. */
	if (n_journal > 0 && journal[n_journal - 1].result == JOURNAL_SUCCEEDED &&
	    streq(journal[n_journal - 1].command, "decrypt"))
		set_progress(s, "Decryption succeeded");
	else
		set_progress(s, "No volume is encrypted");
}

int vmstatus_build(const struct vmstatus_input *in, size_t n, const struct journal_entry *journal,
		   size_t n_journal, const struct lock_holder *holder, int64_t now,
		   struct vmstatus *ret)
{
	_cleanup_free_ struct vmstatus *s = NULL;
	_cleanup_free_ enum ade_state *data = NULL;
	size_t counted = 0;
	bool have_os = false;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->volumes = calloc(n ? n : 1, sizeof(*s->volumes));
	data = calloc(n ? n : 1, sizeof(*data));
	if (!s->volumes || !data) {
		free(s->volumes);
		return -ENOMEM;
	}
	if (holder) {
		s->busy = true;
		s->holder = *holder;
	}
	s->os = ADE_STATE_UNKNOWN;
	for (size_t i = 0; i < n; i++) {
		const struct journal_entry *e = journal_for(&in[i], journal, n_journal);
		struct vmstatus_volume *r = &s->volumes[s->n_volumes++];
		enum ade_state st;

		fill_row(r, &in[i], e, holder, now);
		if (e)
			reconcile(s, r, e, holder);
		if (r->error < 0 && mounted_plain(&in[i]))
			note(s, "%s: its header could not be read (%s), but %s is mounted straight from it "
				"(%s), so it is not encrypted.", r->device, strerror(-r->error),
			     r->mountpoint, r->fstype);
		else if (r->error < 0)
			note(s, "%s: could not be inspected (%s).", r->device, strerror(-r->error));
		st = r->state;
		if (r->os) {
			have_os = true;
			s->os = st;
			continue;
		}
		if (r->counted)
			data[counted++] = st;
	}
	if (!have_os)
		note(s, "/ is not on a block device vmcrypt can see: OsVolumeEncrypted is Unknown.");
	s->data = ade_state_aggregate(data, counted);

	progress_message(s, in, journal, n_journal, holder);
	*ret = *s;
	return 0;
}

void vmstatus_done(struct vmstatus *s)
{
	if (!s)
		return;
	free(s->volumes);
	s->volumes = NULL;
	s->n_volumes = 0;
}

/* Adds the journal's targets that discovery does not see (image files, detached devices), so
 * an operation on them still shows. */
static int add_journal_targets(struct vmstatus_input **in, size_t *n, const struct journal_entry *j,
			       size_t nj)
{
	for (size_t i = nj; i > 0; i--) {
		const struct journal_entry *e = &j[i - 1];
		struct vmstatus_input *p;
		bool seen = false;
		struct stat st;

		for (size_t k = 0; k < *n && !seen; k++)
			seen = streq((*in)[k].volume.device, e->target) ||
			       streq((*in)[k].volume.backing, e->target);
		/* Only the latest entry per target counts; older ones were seen above. */
		for (size_t k = i; k < nj && !seen; k++)
			seen = streq(j[k].target, e->target);
		if (seen || stat(e->target, &st) < 0)
			continue;
		p = reallocarray(*in, *n + 1, sizeof(**in));
		if (!p)
			return -ENOMEM;
		*in = p;
		memset(&p[*n], 0, sizeof(p[*n]));
		p[*n].volume.role = VOLUME_ROLE_CANDIDATE;
		snprintf(p[*n].volume.device, sizeof(p[*n].volume.device), "%s", e->target);
		p[*n].inspect_error = luks_inspect(e->target, e->header[0] ? e->header : NULL, &p[*n].info);
		(*n)++;
	}
	return 0;
}

int vmstatus_compute(struct vmstatus *ret)
{
	_cleanup_free_ struct volume *vols = NULL;
	_cleanup_free_ struct journal_entry *journal = NULL;
	_cleanup_free_ struct vmstatus_input *in = NULL;
	struct lock_holder holder = {};
	size_t nv = 0, nj = 0, n = 0;
	int r, jr, lr;

	r = volumes_discover(&vols, &nv);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		nv = 0;
	jr = journal_load(&journal, &nj);
	if (jr == -ENOMEM)
		return jr;
	if (jr < 0)
		nj = 0;
	lr = vm_lock_peek(&holder);

	in = calloc(nv + 1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	for (size_t i = 0; i < nv; i++) {
		const struct volume *v = &vols[i];
		const char *target;

		if (v->role == VOLUME_ROLE_EXCLUDED)
			continue;
		if (v->role == VOLUME_ROLE_CANDIDATE &&
		    (streq(v->fstype, "LVM2_member") || streq(v->fstype, "linux_raid_member") ||
		     streq(v->fstype, "swap")))
			continue;
		in[n].volume = *v;
		/* An opened dm-crypt mapping: the LUKS header is on the device below it. */
		target = v->kind == VOLUME_KIND_CRYPT && v->backing[0] ? v->backing : v->device;
		{
			const struct journal_entry *e = journal_find_last(journal, nj, target);
			const char *header = e && e->header[0] ? e->header : NULL;
			in[n].inspect_error = luks_inspect(target, header, &in[n].info);
		}
		n++;
	}
	r = add_journal_targets(&in, &n, journal, nj);
	if (r < 0)
		return r;
	r = vmstatus_build(in, n, journal, nj, lr > 0 ? &holder : NULL, (int64_t)time(NULL), ret);
	if (r < 0)
		return r;
	if (jr < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "The journal in the state directory could not be read (%s): "
					   "the state comes from the disks alone.", strerror(-jr));
		if (ret->n_notes < VMSTATUS_NOTES_MAX)
			snprintf(ret->notes[ret->n_notes++], sizeof(ret->notes[0]), "%s", msg);
	}
	if (r == 0 && nv == 0 && n == 0 && ret->n_notes < VMSTATUS_NOTES_MAX)
		snprintf(ret->notes[ret->n_notes++], sizeof(ret->notes[0]),
			 "No volume was discovered.");
	return 0;
}

json_t *vmstatus_to_json(const struct vmstatus *s)
{
	json_t *vols = json_array(), *notes = json_array(), *op = json_null(), *o;

	if (!vols || !notes)
		goto fail;
	for (size_t i = 0; i < s->n_volumes; i++) {
		const struct vmstatus_volume *r = &s->volumes[i];
		json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:s}", "device",
				      r->device, "mountpoint", r->mountpoint, "filesystem", r->fstype,
				      "role", r->os ? ade_volume_type_to_string(ADE_VOLUME_OS)
						    : r->counted ? ade_volume_type_to_string(ADE_VOLUME_DATA) : "Other",
				      "state", vmstatus_volume_state_to_string(r),
				      "data_volume", r->counted,
				      "percent", r->percent >= 0 ? json_real(r->percent) : json_null(),
				      "mib_per_s", r->mib_per_s >= 0 ? json_real(r->mib_per_s) : json_null(),
				      "eta_seconds", r->eta >= 0 ? json_integer(r->eta) : json_null(),
				      "header", r->header);
		if (!e || json_array_append_new(vols, e) < 0)
			goto fail;
	}
	for (size_t i = 0; i < s->n_notes; i++)
		json_array_append_new(notes, json_string(s->notes[i]));
	if (s->busy)
		op = json_pack("{s:i, s:s, s:s, s:I, s:o}", "pid", (int)s->holder.pid, "command",
			       s->holder.command, "target", s->holder.target, "started",
			       (json_int_t)s->holder.started, "percent",
			       s->holder.percent >= 0 ? json_real(s->holder.percent) : json_null());
	o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "OsVolumeEncrypted",
		      ade_state_to_string(s->os), "DataVolumesEncrypted",
		      ade_state_to_string(s->data), "ProgressMessage", s->progress_message,
		      "volumes", vols, "notes", notes, "operation", op);
	return o;
fail:
	json_decref(vols);
	json_decref(notes);
	return NULL;
}
