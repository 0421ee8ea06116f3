/* The cut-over of a mounted data volume to dm-crypt and back. */
#include <errno.h>
#include <stdarg.h>
#include <libmount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/cutover.h"
#include "shared/agent/select.h"
#include "shared/agent/units.h"
#include "shared/paths.h"
#include "shared/volume/mount-util.h"

DEFINE_CLEANUP_FUNC(agent_mount_contextp, struct libmnt_context *, mnt_free_context)

int agent_mount_read(const char *mountpoint, struct agent_mount *ret)
{
	_cleanup_(mount_util_table_unrefp) struct libmnt_table *tb = NULL;
	char path[PATH_MAX];
	struct libmnt_fs *fs;
	char *opts;

	snprintf(path, sizeof(path), "%s/proc/self/mountinfo", path_test_root());
	tb = mnt_new_table_from_file(path);
	if (!tb)
		return -ENOENT;
	/* The last mount on the path is the one in effect. */
	fs = mnt_table_find_target(tb, mountpoint, MNT_ITER_BACKWARD);
	if (!fs)
		return -ENOENT;
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->source, sizeof(ret->source), "%s", mnt_fs_get_srcpath(fs) ?: "");
	snprintf(ret->fstype, sizeof(ret->fstype), "%s", mnt_fs_get_fstype(fs) ?: "");
	opts = mnt_fs_strdup_options(fs);
	if (!opts)
		return -ENOMEM;
	snprintf(ret->options, sizeof(ret->options), "%s", opts);
	free(opts);
	return 0;
}

int agent_mount_do(const char *source, const char *target, const char *fstype,
		   const char *options, char *err, size_t errlen)
{
	_cleanup_(agent_mount_contextp) struct libmnt_context *cxt = NULL;
	int r;

	cxt = mnt_new_context();
	if (!cxt)
		return -ENOMEM;
	/* Nothing of fstab or utab: exactly this source, type and options. */
	if (mnt_context_set_source(cxt, source) < 0 || mnt_context_set_target(cxt, target) < 0 ||
	    mnt_context_set_fstype(cxt, fstype) < 0 || mnt_context_set_options(cxt, options) < 0 ||
	    mnt_context_disable_helpers(cxt, 1) < 0)
		return -ENOMEM;
	mnt_context_set_optsmode(cxt, MNT_OMODE_NOTAB | MNT_OMODE_USER);
	r = mnt_context_mount(cxt);
	if (r == 0 && mnt_context_get_status(cxt) == 1)
		return 0;
	r = mnt_context_get_syscall_errno(cxt);
	snprintf(err, errlen, "cannot mount %s on %s (%s, %s): %s", source, target, fstype, options,
		 strerror(r > 0 ? r : EIO));
	return r > 0 ? -r : -EIO;
}

int agent_umount(const char *target)
{
	if (umount2(target, UMOUNT_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

bool agent_have_dm(void)
{
	char path[PATH_MAX];
	_cleanup_free_ char *misc = NULL;

	/* The kernel's list, not /dev/mapper/control: udev or lvm2 leave that node behind on
	 * kernels without the driver (opening it then fails with ENODEV). */
	snprintf(path, sizeof(path), "%s/proc/misc", path_test_root());
	if (read_full_file(path, 65536, &misc, NULL) < 0)
		return false;
	return strstr(misc, " device-mapper\n") != NULL;
}

/* The failure message of a cut-over: paths can be long, the message is cut, never overrun. */
_printf_(2, 3) static void say(struct agent_cutover *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts the units again after a cut-over, whatever happened; a unit that does not start is
 * said in the message but changes nothing about the volume. */
static void restart_units(struct agent_cutover *c)
{
	char err[256] = "";

	if (c->v->n_stopped_units == 0)
		return;
	if (units_start(c->v->stopped_units, c->v->n_stopped_units, err, sizeof(err)) < 0) {
		size_t l = strlen(c->message);
		snprintf(c->message + l, sizeof(c->message) - l, "%s%s", l ? "; " : "", err);
	}
}

int agent_cutover_encrypt(struct agent_cutover *c)
{
	struct agent_volume_state *v = c->v;
	struct agent_mount m;
	char mapper[PATH_MAX], err[512] = "";
	int64_t t0;
	int r, q;

	r = agent_mount_read(v->mountpoint, &m);
	if (r < 0) {
		say(c, "%s: not mounted any more", v->mountpoint);
		return r;
	}
	snprintf(v->fstype, sizeof(v->fstype), "%s", m.fstype);
	snprintf(v->fs_options, sizeof(v->fs_options), "%s", m.options);

	if (v->n_stopped_units > 0) {
		r = units_stop(v->stopped_units, v->n_stopped_units, err, sizeof(err));
		if (r < 0) {
			say(c, "%s: cannot stop the units holding it: %s",
				 v->mountpoint, err);
			restart_units(c);
			return r;
		}
	}
	t0 = now_ms();
	r = agent_umount(v->mountpoint);
	if (r < 0) {
		say(c, "%s: cannot unmount it (%s); nothing changed",
			 v->mountpoint, strerror(-r));
		restart_units(c);
		return r;
	}
	r = convert_online_start(c->req, VOLUME_OP_ENCRYPT, &c->res);
	if (r < 0) {
		say(c, "%s%s%s", c->res.message,
			 c->res.remedy[0] ? "; " : "", c->res.remedy);
		goto undo;
	}
	(void)agent_volume_mapper_path(v->name, mapper, sizeof(mapper));
	r = agent_mount_do(mapper, v->mountpoint, m.fstype, m.options, err, sizeof(err));
	if (r < 0) {
		/* The header is made and the mapping open, but the filesystem does not mount from
		 * it: the data has not moved yet, so the volume stays encrypting and mountable
		 * from the mapper; leave it to the resume, and say so. */
		say(c, "%s: %s", v->mountpoint, err);
		restart_units(c);
		return r;
	}
	c->downtime_ms = now_ms() - t0;
	snprintf(v->luks_uuid, sizeof(v->luks_uuid), "%s", c->res.uuid);
	restart_units(c);
	return 0;

undo:
	q = agent_mount_do(m.source, v->mountpoint, m.fstype, m.options, err, sizeof(err));
	if (q < 0) {
		size_t l = strlen(c->message);
		snprintf(c->message + l, sizeof(c->message) - l, "; and mounting it back failed: %s", err);
	}
	restart_units(c);
	return r;
}

int agent_cutover_finish(struct agent_cutover *c)
{
	struct agent_volume_state *v = c->v;
	struct agent_mount m;
	char err[512] = "";
	int64_t t0;
	int r;

	r = agent_mount_read(v->mountpoint, &m);
	if (r < 0) {
		/* Not mounted (a reboot without the mapper opened): nothing to unmount. */
		snprintf(m.fstype, sizeof(m.fstype), "%s", v->fstype);
		snprintf(m.options, sizeof(m.options), "%s", v->fs_options);
		m.source[0] = '\0';
	}
	if (v->n_stopped_units > 0) {
		r = units_stop(v->stopped_units, v->n_stopped_units, err, sizeof(err));
		if (r < 0) {
			say(c, "%s: cannot stop the units holding it: %s",
				 v->mountpoint, err);
			restart_units(c);
			return r;
		}
	}
	t0 = now_ms();
	if (m.source[0]) {
		r = agent_umount(v->mountpoint);
		if (r < 0) {
			say(c, "%s: cannot unmount it (%s) to go back "
				 "to the plain device; the data is decrypted, the agent retries",
				 v->mountpoint, strerror(-r));
			restart_units(c);
			return r;
		}
	}
	r = convert_online_finish(c->req, &c->res);
	if (r < 0) {
		say(c, "%s%s%s", c->res.message,
			 c->res.remedy[0] ? "; " : "", c->res.remedy);
		/* Mount what there is, so the applications get their data back meanwhile. */
		if (m.source[0])
			(void)agent_mount_do(m.source, v->mountpoint, m.fstype, m.options, err, sizeof(err));
		restart_units(c);
		return r;
	}
	if (v->mountpoint[0]) {
		r = agent_mount_do(v->device, v->mountpoint, m.fstype, m.options, err, sizeof(err));
		if (r < 0) {
			say(c, "%s: %s", v->mountpoint, err);
			restart_units(c);
			return r;
		}
	}
	c->downtime_ms = now_ms() - t0;
	restart_units(c);
	return 0;
}
