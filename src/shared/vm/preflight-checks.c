/* The prerequisite checks themselves, one function per check id (docs/check.md). Each states the
 * object, what it found, why it matters and what to do; none of them changes anything. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/string-util.h"
#include "shared/paths.h"
#include "shared/vm/lock.h"
#include "shared/vm/preflight-internal.h"
#include "shared/volume/proc-users.h"

/* How many processes a message names before "and N more"; details carry up to this many too. */
#define PF_LIST_MAX 10

static const char *describe(const struct volume *v, char *buf, size_t len)
{
	return volumes_describe(v, buf, len);
}

static bool is_ext(const char *fs)
{
	return streq(fs, "ext2") || streq(fs, "ext3") || streq(fs, "ext4");
}

static bool is_stack_member(const char *fs)
{
	return streq(fs, "LVM2_member") || streq(fs, "linux_raid_member") || streq(fs, "swap") ||
	       streq(fs, "isw_raid_member") || streq(fs, "ddf_raid_member");
}

static bool is_luks(const struct volume *v)
{
	return streq(v->fstype, "crypto_LUKS") || v->kind == VOLUME_KIND_CRYPT;
}

/* Names the OS volume in a result that concerns the next boot. */
static void add_os_volume(const struct preflight_context *c, struct preflight_builder *b)
{
	const struct volume *os = volumes_os(c->volumes, c->n_volumes);

	if (os && (c->scope & PREFLIGHT_SCOPE_OS))
		pf_volume(b, os);
}

/* ------------------------------------------------------------------ open-files */

static int users_of_volume(const struct preflight_context *c, const struct volume *v,
			   struct proc_user **ret, size_t *ret_n)
{
	struct stat st;
	dev_t fs_dev = v->devnum;
	int r;

	if (v->mountpoint[0]) {
		if (!c->fixture && stat(v->mountpoint, &st) == 0)
			fs_dev = st.st_dev; /* btrfs and overlays report their own st_dev */
		return proc_users_on_mount(v->mountpoint, fs_dev, ret, ret_n);
	}
	if (c->fixture) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (stat(v->device, &st) < 0)
		return negative_errno();
	r = proc_users_of_device(&st, ret, ret_n);
	return r;
}

void pf_check_open_files(struct preflight_context *c, struct preflight_builder *b)
{
	json_t *users = json_array();
	size_t total = 0, scanned = 0;
	int denied = 0;
	char desc[PATH_MAX * 2 + 8];

	json_object_set_new(b->details, "users", users);
	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *v = &c->volumes[i];
		_cleanup_proc_users_ struct proc_user *u = NULL;
		size_t n = 0;
		int r;

		if (!pf_in_scope(c, v))
			continue;
		if (v->role == VOLUME_ROLE_OS) {
			pf_say(b, "OS volume %s: not scanned: the running system always uses its root "
				  "filesystem and vmcrypt does not unmount it (nor kills what uses it, as "
				  "ADE's \"Could not unmount /oldroot\" path did).",
			       describe(v, desc, sizeof(desc)));
			continue;
		}
		if (is_luks(v) || is_stack_member(v->fstype))
			continue; /* nothing to convert, so nothing to unmount */
		r = users_of_volume(c, v, &u, &n);
		if (r < 0 && r != -E2BIG) {
			pf_status(b, PREFLIGHT_WARN);
			pf_say(b, "%s: could not scan /proc for its users (%s).",
			       describe(v, desc, sizeof(desc)), strerror(-r));
			continue;
		}
		if (r > 0)
			denied += r;
		scanned++;
		if (n == 0)
			continue;
		pf_status(b, PREFLIGHT_FAIL);
		pf_volume(b, v);
		pf_say(b, "%s must be unmounted to be converted, but %zu%s object%s on it %s held:",
		       describe(v, desc, sizeof(desc)), n, r == -E2BIG ? "+" : "", n == 1 ? "" : "s",
		       n == 1 ? "is" : "are");
		for (size_t k = 0; k < n; k++, total++) {
			if (k < PF_LIST_MAX)
				pf_say(b, "pid %d (%s) %s %s%s", (int)u[k].pid, u[k].comm, u[k].how, u[k].path,
				       k + 1 < n && k + 1 < PF_LIST_MAX ? ";" : ".");
			if (total < 100)
				json_array_append_new(users, json_pack("{s:i, s:s, s:s, s:s, s:s}", "pid",
								       (int)u[k].pid, "command", u[k].comm,
								       "how", u[k].how, "path", u[k].path,
								       "volume", v->device));
		}
		if (n > PF_LIST_MAX)
			pf_say(b, "... and %zu more.", n - PF_LIST_MAX);
	}
	if (b->status == PREFLIGHT_FAIL)
		pf_remedy(b, "Stop these processes (systemctl stop the service, or close the files) "
			     "and move working directories off the volume, then run 'vmcrypt check' "
			     "again; vmcrypt never kills them. 'fuser -vm MOUNTPOINT' lists them too.");
	if (denied > 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "%d process%s could not be inspected (permission denied), so the list may "
			  "be incomplete.", denied, denied == 1 ? "" : "es");
		pf_remedy(b, "Run 'vmcrypt check' as root.");
	}
	if (b->status == PREFLIGHT_PASS)
		pf_say(b, "No process holds files, a working directory, a root or a mapping on the %zu "
			  "data volume%s in scope.", scanned, scanned == 1 ? "" : "s");
}

/* ------------------------------------------------------------------ concurrent-operation */

/* Tools that must not run while a volume changes. Package managers and initramfs builders
 * matter for the OS volume (they rewrite what the next boot needs). */
static const struct {
	const char *comm;
	bool prefix;
	bool packages;
} conflicting[] = {
	{ "cryptsetup", false, false },  { "mkfs", true, false },         { "mke2fs", false, false },
	{ "resize2fs", false, false },   { "e2fsck", false, false },      { "fsck", true, false },
	{ "xfs_repair", false, false },  { "xfs_growfs", false, false },  { "wipefs", false, false },
	{ "parted", false, false },      { "sfdisk", false, false },      { "sgdisk", false, false },
	{ "growpart", false, false },    { "pvmove", false, false },      { "lvresize", false, false },
	{ "lvextend", false, false },    { "lvreduce", false, false },    { "mdadm", false, false },
	{ "apt", false, true },          { "apt-get", false, true },      { "aptitude", false, true },
	{ "dpkg", false, true },         { "unattended-upgr", false, true },
	{ "yum", false, true },          { "dnf", false, true },          { "rpm", false, true },
	{ "zypper", false, true },       { "update-initramfs", false, true },
	{ "mkinitramfs", false, true },  { "dracut", false, true },       { "mkinitcpio", false, true },
	{ "grub-install", false, true }, { "grub2-install", false, true }, { "update-grub", false, true },
	{ "grub-mkconfig", false, true }, { "grub2-mkconfig", false, true },
};

/* dd only matters when it writes onto a device: "of=/dev/...". */
static bool dd_writes_device(const struct preflight_context *c, const char *pid, char *target,
			     size_t len)
{
	char path[300];
	_cleanup_free_ char *args = NULL;
	char full[PATH_MAX * 2];
	size_t size = 0;

	snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
	if (snprintf(full, sizeof(full), "%s%s", c->root, path) >= (int)sizeof(full))
		return false;
	if (read_full_file(full, PF_SMALL_FILE_MAX, &args, &size) < 0)
		return false;
	for (size_t off = 0; off < size; off += strlen(args + off) + 1) {
		const char *dev = startswith(args + off, "of=/dev/");
		if (dev) {
			snprintf(target, len, "/dev/%s", dev);
			return true;
		}
	}
	return false;
}

void pf_check_concurrent_operation(struct preflight_context *c, struct preflight_builder *b)
{
	struct lock_holder h = {};
	char msg[PATH_MAX + 512], proc[PATH_MAX + 16];
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	json_t *tools = json_array();
	bool packages_running = false;
	int r;

	json_object_set_new(b->details, "tools", tools);
	r = vm_lock_peek(&h);
	if (r > 0) {
		pf_status(b, PREFLIGHT_FAIL);
		vm_lock_format_busy(&h, msg, sizeof(msg));
		pf_say(b, "%s", msg);
		pf_remedy(b, "Wait for the running operation to finish ('vmcrypt status' shows it).");
		json_object_set_new(b->details, "lock_holder",
				    json_pack("{s:i, s:s, s:s, s:I, s:f}", "pid", (int)h.pid, "command",
					      h.command, "target", h.target, "started",
					      (json_int_t)h.started, "percent", h.percent));
	} else if (r < 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "The VM operation lock in %s could not be read (%s).", path_run_dir(),
		       strerror(-r));
	}

	snprintf(proc, sizeof(proc), "%s/proc", c->root);
	d = opendir(proc);
	while (d && (de = readdir(d))) {
		char path[PATH_MAX * 2], comm[64] = "", target[PATH_MAX] = "";
		_cleanup_free_ char *text = NULL;
		uint64_t pid;
		bool hit = false, pkg = false;

		if (parse_u64(de->d_name, &pid) < 0 || pid == (uint64_t)getpid())
			continue;
		snprintf(path, sizeof(path), "%s/%s/comm", proc, de->d_name);
		if (read_full_file(path, 256, &text, NULL) < 0)
			continue;
		snprintf(comm, sizeof(comm), "%s", text);
		comm[strcspn(comm, "\n")] = 0;
		for (size_t i = 0; i < ELEMENTSOF(conflicting) && !hit; i++)
			if (conflicting[i].prefix ? !!startswith(comm, conflicting[i].comm)
						  : streq(comm, conflicting[i].comm)) {
				hit = true;
				pkg = conflicting[i].packages;
			}
		if (!hit && streq(comm, "dd") && dd_writes_device(c, de->d_name, target, sizeof(target)))
			hit = true;
		if (!hit)
			continue;
		if (pkg) {
			packages_running = true;
			pf_status(b, c->scope & PREFLIGHT_SCOPE_OS ? PREFLIGHT_FAIL : PREFLIGHT_WARN);
			pf_say(b, "pid %d (%s) is installing packages or rebuilding the boot files.",
			       (int)pid, comm);
		} else {
			pf_status(b, PREFLIGHT_FAIL);
			if (target[0])
				pf_say(b, "pid %d (%s) is writing onto %s.", (int)pid, comm, target);
			else
				pf_say(b, "pid %d (%s) is changing disks or filesystems.", (int)pid, comm);
		}
		json_array_append_new(tools, json_pack("{s:i, s:s, s:s}", "pid", (int)pid, "command", comm,
						       "target", target));
	}
	if (json_array_size(tools) > 0) {
		pf_say(b, "Running these at the same time as a conversion corrupts data or leaves a "
			  "VM that does not boot.");
		pf_remedy(b, "Let them finish (or stop them) and serialize maintenance: run vmcrypt "
			     "when no other tool changes disks%s.",
			  packages_running ? ", packages or the initramfs" : "");
	}
	if (b->status == PREFLIGHT_PASS)
		pf_say(b, "No other vmcrypt operation holds the VM lock, and no disk, filesystem, "
			  "package or initramfs tool is running.");
}

/* ------------------------------------------------------------------ selinux */

/* Domains in which root may write block devices and /etc/crypttab. */
static bool selinux_domain_unconfined(const char *context)
{
	static const char *const ok[] = { "unconfined_t", "unconfined_service_t", "sysadm_t",
					  "initrc_t", "kernel_t", "init_t", "spc_t" };
	for (size_t i = 0; i < ELEMENTSOF(ok); i++)
		if (strstr(context, ok[i]))
			return true;
	return false;
}

void pf_check_selinux(struct preflight_context *c, struct preflight_builder *b)
{
	_cleanup_free_ char *enforce = NULL, *config = NULL, *context = NULL;
	const char *mode;
	char configured[32] = "";

	if (pf_read_file(c, "/etc/selinux/config", PF_SMALL_FILE_MAX, &config) == 0) {
		for (char *line = strtok(config, "\n"); line; line = strtok(NULL, "\n")) {
			const char *v = startswith(line, "SELINUX=");
			if (v)
				snprintf(configured, sizeof(configured), "%s", v);
		}
	}
	if (pf_read_file(c, "/sys/fs/selinux/enforce", PF_SMALL_FILE_MAX, &enforce) < 0) {
		mode = "disabled";
		pf_say(b, "SELinux is not active (no /sys/fs/selinux).");
		if (streq(configured, "enforcing") || streq(configured, "permissive")) {
			pf_status(b, PREFLIGHT_WARN);
			pf_say(b, "/etc/selinux/config asks for SELINUX=%s at the next boot: files written "
				  "now (/etc/crypttab, the initramfs) carry no label and the next boot "
				  "relabels the whole filesystem, which takes long on a large volume.",
			       configured);
			pf_remedy(b, "After encryption, run 'fixfiles onboot' or 'touch /.autorelabel' "
				     "knowingly, or encrypt after SELinux is enabled.");
		}
		json_object_set_new(b->details, "mode", json_string(mode));
		json_object_set_new(b->details, "configured", json_string(configured));
		return;
	}
	mode = enforce[0] == '1' ? "enforcing" : "permissive";
	json_object_set_new(b->details, "mode", json_string(mode));
	json_object_set_new(b->details, "configured", json_string(configured));
	if (streq(mode, "permissive")) {
		pf_say(b, "SELinux is permissive: it logs but blocks nothing vmcrypt does.");
		return;
	}
	(void)pf_read_file(c, "/proc/self/attr/current", PF_SMALL_FILE_MAX, &context);
	if (context)
		context[strcspn(context, "\n")] = 0;
	json_object_set_new(b->details, "context", json_string(context ? context : ""));
	if (context && context[0] && !selinux_domain_unconfined(context)) {
		pf_status(b, PREFLIGHT_FAIL);
		pf_say(b, "SELinux is enforcing and vmcrypt runs confined as '%s': that domain may not "
			  "write block devices, /etc/crypttab or the initramfs, so the conversion would "
			  "stop half-way.", context);
		pf_remedy(b, "Run vmcrypt from an unconfined root shell (unconfined_t) or a service "
			     "with an unconfined domain; do not disable SELinux.");
		return;
	}
	pf_say(b, "SELinux is enforcing and vmcrypt runs unconfined (%s): it may write the devices, "
		  "/etc/crypttab and the initramfs.", context && context[0] ? context : "no context");
	if (c->scope & PREFLIGHT_SCOPE_OS) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "For the OS volume, ADE had to disable SELinux because its unmount step "
			  "failed; vmcrypt does not unmount the root, but the files it adds must keep "
			  "their labels or the next boot denies access to them.");
		pf_remedy(b, "After encryption run 'restorecon -v /etc/crypttab /boot/*' (vmcrypt does it "
			     "when restorecon exists); keep SELinux enforcing.");
	}
}

/* ------------------------------------------------------------------ lvm */

void pf_check_lvm(struct preflight_context *c, struct preflight_builder *b)
{
	char desc[PATH_MAX * 2 + 8];
	json_t *pvs = json_array(), *lvs = json_array();
	bool any = false;

	json_object_set_new(b->details, "physical_volumes", pvs);
	json_object_set_new(b->details, "logical_volumes", lvs);
	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *v = &c->volumes[i];

		if (v->kind == VOLUME_KIND_LVM && pf_in_scope(c, v)) {
			any = true;
			json_array_append_new(lvs, json_string(v->device));
			pf_volume(b, v);
			if (v->role == VOLUME_ROLE_OS) {
				pf_status(b, PREFLIGHT_FAIL);
				pf_say(b, "The OS volume %s is an LVM logical volume: LVM OS disk layout does "
					  "not satisfy prerequisites. The initramfs would have to activate "
					  "the volume group before it can open LUKS on the logical volume, a "
					  "boot layout vmcrypt does not set up yet.",
				       describe(v, desc, sizeof(desc)));
				pf_remedy(b, "Encrypt the data volumes only (--volume-type Data), or move "
					     "the OS to a plain partition.");
			} else
				pf_say(b, "Data volume %s is an LVM logical volume: supported; vmcrypt "
					  "converts the logical volume itself (LUKS on LVM), so volume group "
					  "and logical volume names stay readable.",
				       describe(v, desc, sizeof(desc)));
		}
		if (streq(v->fstype, "LVM2_member")) {
			any = true;
			json_array_append_new(pvs, json_string(v->device));
			pf_volume(b, v);
			pf_status(b, PREFLIGHT_WARN);
			if (v->n_holders > 0)
				pf_say(b, "%s is an LVM physical volume in use by %s: vmcrypt does not "
					  "encrypt physical volumes; it encrypts each logical volume on top.",
				       v->device, v->holders[0]);
			else
				pf_say(b, "%s is an LVM physical volume whose logical volumes are not active "
					  "(no device-mapper, or the volume group was not activated): "
					  "vmcrypt does not encrypt it and cannot see what it holds.",
				       v->device);
		}
	}
	if (json_array_size(pvs) > 0)
		pf_remedy(b, "Activate the volume group ('vgchange -ay') and encrypt its logical "
			     "volumes (they appear as data volumes), or leave the physical volume out.");
	if (!any)
		pf_say(b, "No LVM: no logical volume in scope and no physical volume signature found.");
}

/* ------------------------------------------------------------------ memory */

static uint64_t meminfo_value(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	unsigned long long kib;

	if (!p || sscanf(p + strlen(key), " %llu", &kib) != 1)
		return 0;
	return kib * 1024;
}

void pf_check_memory(struct preflight_context *c, struct preflight_builder *b)
{
	_cleanup_free_ char *text = NULL;
	uint64_t total, avail;
	int r;

	r = pf_read_file(c, "/proc/meminfo", PF_SMALL_FILE_MAX, &text);
	if (r < 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "/proc/meminfo could not be read (%s).", strerror(-r));
		return;
	}
	total = meminfo_value(text, "MemTotal:");
	avail = meminfo_value(text, "MemAvailable:");
	if (avail == 0)
		avail = meminfo_value(text, "MemFree:");
	json_object_set_new(b->details, "mem_total", json_integer((json_int_t)total));
	json_object_set_new(b->details, "mem_available", json_integer((json_int_t)avail));
	json_object_set_new(b->details, "required_available",
			    json_integer((json_int_t)PF_MEM_AVAILABLE_MIN));
	json_object_set_new(b->details, "recommended_total",
			    json_integer((json_int_t)PF_MEM_TOTAL_RECOMMENDED));

	pf_say(b, "MemTotal %llu MiB, MemAvailable %llu MiB; vmcrypt needs %llu MiB available and "
		  "recommends %llu MiB in total.",
	       (unsigned long long)(total / MIB(1)), (unsigned long long)(avail / MIB(1)),
	       (unsigned long long)(PF_MEM_AVAILABLE_MIN / MIB(1)),
	       (unsigned long long)(PF_MEM_TOTAL_RECOMMENDED / MIB(1)));
	if (avail < PF_MEM_AVAILABLE_MIN) {
		pf_status(b, PREFLIGHT_FAIL);
		pf_say(b, "Too little is available: the conversion buffers up to 64 MiB and the argon2id "
			  "key derivation needs at least 128 MiB to keep keyslots strong.");
		pf_remedy(b, "Stop memory-hungry services or resize the VM so that at least %llu MiB "
			     "are available.", (unsigned long long)(PF_MEM_AVAILABLE_MIN / MIB(1)));
	} else if (total < PF_MEM_TOTAL_RECOMMENDED) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "Below the recommendation: libcryptsetup caps the argon2id memory cost at half "
			  "of the RAM, so keyslots get a weaker cost than the 1 GiB default, and the "
			  "initramfs needs the same memory to unlock the OS volume at boot.");
		pf_remedy(b, "Resize the VM to %llu MiB or more before encrypting if you can.",
			  (unsigned long long)(PF_MEM_TOTAL_RECOMMENDED / MIB(1)));
	}
	pf_say(b, "vmcrypt does not copy the OS into memory, so ADE's \"Not enough memory for "
		  "enabling encryption on OS volume. 8 GB memory is recommended.\" does not apply.");
}

/* ------------------------------------------------------------------ nested-mounts */

void pf_check_nested_mounts(struct preflight_context *c, struct preflight_builder *b)
{
	json_t *pairs = json_array();

	json_object_set_new(b->details, "pairs", pairs);
	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *outer = &c->volumes[i];

		if (outer->role != VOLUME_ROLE_DATA || !outer->mountpoint[0])
			continue;
		for (size_t k = 0; k < c->n_volumes; k++) {
			const struct volume *inner = &c->volumes[k];

			if (k == i || inner->role != VOLUME_ROLE_DATA || !inner->mountpoint[0] ||
			    streq(inner->mountpoint, outer->mountpoint) ||
			    !volumes_path_is_under(inner->mountpoint, outer->mountpoint))
				continue;
			if (!pf_in_scope(c, outer) && !pf_in_scope(c, inner))
				continue;
			pf_status(b, PREFLIGHT_WARN);
			pf_volume(b, outer);
			pf_volume(b, inner);
			json_array_append_new(pairs, json_pack("[s, s]", outer->mountpoint, inner->mountpoint));
			pf_say(b, "%s (%s) is mounted inside %s (%s) (ADE: \"unsupported mount scheme [%s %s]\"): "
				  "converting %s needs it unmounted, which needs %s unmounted first.",
			       inner->mountpoint, inner->device, outer->mountpoint, outer->device,
			       outer->mountpoint, inner->mountpoint, outer->mountpoint, inner->mountpoint);
		}
	}
	if (json_array_size(pairs) > 0)
		pf_remedy(b, "Encrypt the inner volumes first; then unmount them, encrypt the outer one "
			     "and mount them again (outer first, as /etc/fstab lists them). Better: mount "
			     "data volumes side by side (/data1, /data2), not inside one another.");
	else
		pf_say(b, "No data volume is mounted inside another.");
}

/* ------------------------------------------------------------------ filesystem */

void pf_check_filesystem(struct preflight_context *c, struct preflight_builder *b)
{
	char desc[PATH_MAX * 2 + 8];
	bool detached = false;
	size_t n = 0;

	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *v = &c->volumes[i];
		const char *fs = v->fstype;

		if (!pf_in_scope(c, v) || is_stack_member(fs))
			continue;
		n++;
		json_object_set_new(b->details, v->device, json_string(fs));
		describe(v, desc, sizeof(desc));
		if (is_luks(v))
			pf_say(b, "%s: already LUKS, nothing to convert.", desc);
		else if (is_ext(fs))
			pf_say(b, "%s: %s, converted in place: shrunk by %llu MiB with resize2fs, LUKS2 "
				  "header at the start of the device, grown back when opened.",
			       desc, fs, (unsigned long long)(PF_HEADER_SIZE / MIB(1)));
		else if (!fs[0] && v->role == VOLUME_ROLE_CANDIDATE) {
			pf_say(b, "%s: no filesystem or signature found: nothing to preserve; converted "
				  "only if its last %llu MiB are zeros (room for the header).",
			       desc, (unsigned long long)(PF_HEADER_SIZE / MIB(1)));
		} else {
			pf_status(b, PREFLIGHT_WARN);
			pf_volume(b, v);
			detached = true;
			pf_say(b, "%s: %s cannot be shrunk in place (ADE: \"Encrypting %s file system is "
				  "not supported for data-preserving encryption. Consider using the "
				  "encrypt-format-all option.\"); vmcrypt keeps the data with a detached "
				  "LUKS2 header instead%s.",
			       desc, fs[0] ? fs : "an unknown filesystem", fs[0] ? fs : "this",
			       v->role == VOLUME_ROLE_OS ? ", kept in /boot so the initramfs finds it" : "");
		}
	}
	if (detached)
		pf_remedy(b, "Encrypt these with '--header FILE' (a file on another volume, backed up), "
			     "or grow the device by %llu MiB first so the header fits in front.",
			  (unsigned long long)(PF_HEADER_SIZE / MIB(1)));
	if (n == 0)
		pf_say(b, "No volume in scope.");
}

/* ------------------------------------------------------------------ free-space */

/* Free bytes for unprivileged writers on the filesystem holding path, or the nearest existing
 * parent of it. */
static int free_bytes(const char *path, uint64_t *ret)
{
	char buf[PATH_MAX];
	struct statvfs sv;

	snprintf(buf, sizeof(buf), "%s", path);
	for (;;) {
		char *slash;

		if (statvfs(buf, &sv) == 0) {
			*ret = (uint64_t)sv.f_bavail * sv.f_frsize;
			return 0;
		}
		if (errno != ENOENT)
			return negative_errno();
		slash = strrchr(buf, '/');
		if (!slash || slash == buf) {
			snprintf(buf, sizeof(buf), "/");
			continue;
		}
		*slash = 0;
	}
}

void pf_check_free_space(struct preflight_context *c, struct preflight_builder *b)
{
	char desc[PATH_MAX * 2 + 8];
	uint64_t avail;
	bool needs_state = false;
	int r;

	if (c->fixture) {
		pf_status(b, PREFLIGHT_SKIP);
		pf_say(b, "Free space is measured on the live system only, not in a fixture tree.");
		return;
	}
	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *v = &c->volumes[i];

		if (!pf_in_scope(c, v) || is_luks(v) || is_stack_member(v->fstype))
			continue;
		describe(v, desc, sizeof(desc));
		if (!is_ext(v->fstype)) {
			needs_state = true; /* detached header */
			continue;
		}
		if (!v->mountpoint[0]) {
			pf_say(b, "%s: not mounted; 'vmcrypt encrypt' measures the room to shrink it "
				  "(resize2fs) before it changes anything.", desc);
			continue;
		}
		r = free_bytes(v->mountpoint, &avail);
		if (r < 0) {
			pf_status(b, PREFLIGHT_WARN);
			pf_say(b, "%s: free space unknown (%s).", desc, strerror(-r));
			continue;
		}
		json_object_set_new(b->details, v->device, json_integer((json_int_t)avail));
		if (avail < PF_HEADER_SIZE * 2) {
			pf_status(b, PREFLIGHT_FAIL);
			pf_volume(b, v);
			pf_say(b, "%s: %llu MiB free, but shrinking by the %llu MiB header needs at least "
				  "%llu MiB free.", desc, (unsigned long long)(avail / MIB(1)),
			       (unsigned long long)(PF_HEADER_SIZE / MIB(1)),
			       (unsigned long long)(PF_HEADER_SIZE * 2 / MIB(1)));
			pf_remedy(b, "Free space on %s (or grow the device) first.", v->mountpoint);
		} else
			pf_say(b, "%s: %llu MiB free, enough to shrink by %llu MiB.", desc,
			       (unsigned long long)(avail / MIB(1)),
			       (unsigned long long)(PF_HEADER_SIZE / MIB(1)));
	}
	r = free_bytes(path_state_dir(), &avail);
	if (r < 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "State directory %s: free space unknown (%s).", path_state_dir(), strerror(-r));
		return;
	}
	json_object_set_new(b->details, "state_dir", json_integer((json_int_t)avail));
	if (avail < PF_STATE_FREE_MIN) {
		pf_status(b, needs_state ? PREFLIGHT_FAIL : PREFLIGHT_WARN);
		pf_say(b, "State directory %s: %llu MiB free; headers in flight%s and the journal need "
			  "%llu MiB.", path_state_dir(), (unsigned long long)(avail / MIB(1)),
		       needs_state ? " (detached headers here)" : "",
		       (unsigned long long)(PF_STATE_FREE_MIN / MIB(1)));
		pf_remedy(b, "Free space under %s.", path_state_dir());
	} else
		pf_say(b, "State directory %s: %llu MiB free (needs %llu MiB).", path_state_dir(),
		       (unsigned long long)(avail / MIB(1)),
		       (unsigned long long)(PF_STATE_FREE_MIN / MIB(1)));
}

/* ------------------------------------------------------------------ kernel */

static bool dm_crypt_available(const struct preflight_context *c, const char *release,
			       bool *ret_loaded)
{
	_cleanup_free_ char *builtin = NULL;
	char path[PATH_MAX];
	const char *const exts[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };

	*ret_loaded = false;
	if (pf_exists(c, "/sys/module/dm_crypt")) {
		*ret_loaded = true;
		return true;
	}
	snprintf(path, sizeof(path), "/lib/modules/%s/modules.builtin", release);
	if (pf_read_file(c, path, PF_SMALL_FILE_MAX, &builtin) == 0 && strstr(builtin, "dm-crypt.ko"))
		return true;
	for (size_t i = 0; i < ELEMENTSOF(exts); i++) {
		snprintf(path, sizeof(path), "/lib/modules/%s/kernel/drivers/md/dm-crypt%s", release,
			 exts[i]);
		if (pf_exists(c, path))
			return true;
	}
	return false;
}

void pf_check_kernel(struct preflight_context *c, struct preflight_builder *b)
{
	_cleanup_free_ char *release = NULL;
	unsigned maj = 0, min = 0;
	bool loaded;
	int r;

	r = pf_read_file(c, "/proc/sys/kernel/osrelease", PF_SMALL_FILE_MAX, &release);
	if (r < 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "The kernel version could not be read (%s).", strerror(-r));
		return;
	}
	release[strcspn(release, "\n")] = 0;
	json_object_set_new(b->details, "release", json_string(release));
	json_object_set_new(b->details, "minimum", json_sprintf("%d.%d", PF_KERNEL_MIN_MAJOR,
								PF_KERNEL_MIN_MINOR));
	if (sscanf(release, "%u.%u", &maj, &min) != 2) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "Kernel release '%s' does not parse as a version.", release);
	} else if (maj < PF_KERNEL_MIN_MAJOR || (maj == PF_KERNEL_MIN_MAJOR && min < PF_KERNEL_MIN_MINOR)) {
		pf_status(b, PREFLIGHT_FAIL);
		pf_say(b, "Kernel version %s is not supported. Upgrade to kernel version %d.%d: older "
			  "kernels (such as Ubuntu 14.04's 4.4) let the OOM killer end long conversions "
			  "and lack the dm-crypt features LUKS2 reencryption needs.",
		       release, PF_KERNEL_MIN_MAJOR, PF_KERNEL_MIN_MINOR);
		pf_remedy(b, "Install a %d.%d or later kernel (on Ubuntu 14.04: the linux-generic-lts-xenial "
			     "or a newer HWE kernel, better a supported release) and reboot into it.",
			  PF_KERNEL_MIN_MAJOR, PF_KERNEL_MIN_MINOR);
	} else
		pf_say(b, "Kernel %s (%d.%d or later needed).", release, PF_KERNEL_MIN_MAJOR,
		       PF_KERNEL_MIN_MINOR);

	if (dm_crypt_available(c, release, &loaded)) {
		json_object_set_new(b->details, "dm_crypt", json_string(loaded ? "loaded" : "available"));
		pf_say(b, "dm-crypt is %s.", loaded ? "loaded" : "available (loaded on demand)");
		return;
	}
	json_object_set_new(b->details, "dm_crypt", json_string("missing"));
	if (c->scope & PREFLIGHT_SCOPE_OS) {
		pf_status(b, PREFLIGHT_FAIL);
		add_os_volume(c, b);
		pf_say(b, "dm-crypt is neither loaded nor installed as a module for %s: the next boot "
			  "could not open the encrypted OS volume.", release);
	} else {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "dm-crypt is neither loaded nor installed as a module for %s: unmounted data "
			  "volumes can still be converted offline, but this kernel cannot open them "
			  "afterwards.", release);
	}
	pf_remedy(b, "Install the kernel's modules package (linux-modules-%s or kernel-modules) and "
		     "run 'modprobe dm-crypt'.", release);
}

/* ------------------------------------------------------------------ distro */

/* The distributions vmcrypt supports, and the first release of each whose cryptsetup opens
 * LUKS2 at all (cryptsetup 2.0): below it nothing vmcrypt writes could be opened. */
static const struct {
	const char *id;
	const char *name;
	unsigned min_major, min_minor;   /* supported from */
	unsigned luks2_major, luks2_minor;
} distros[] = {
	{ "debian", "Debian", 11, 0, 10, 0 },
	{ "ubuntu", "Ubuntu", 20, 4, 18, 4 },
	{ "rhel", "Red Hat Enterprise Linux", 8, 0, 8, 0 },
	{ "centos", "CentOS Stream", 8, 0, 8, 0 },
	{ "rocky", "Rocky Linux", 8, 0, 8, 0 },
	{ "almalinux", "AlmaLinux", 8, 0, 8, 0 },
	{ "ol", "Oracle Linux", 8, 0, 8, 0 },
	{ "sles", "SUSE Linux Enterprise Server", 15, 0, 15, 0 },
	{ "opensuse-leap", "openSUSE Leap", 15, 0, 15, 0 },
	{ "fedora", "Fedora", 38, 0, 28, 0 },
};

static void os_release_value(char *text, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	buf[0] = 0;
	for (char *line = text; line && *line;) {
		char *next = strchr(line, '\n');
		size_t ll = next ? (size_t)(next - line) : strlen(line);

		if (ll > kl && strncmp(line, key, kl) == 0 && line[kl] == '=') {
			const char *v = line + kl + 1;
			size_t vl = ll - kl - 1;
			if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
				v++;
				vl -= 2;
			}
			snprintf(buf, len, "%.*s", (int)MIN(vl, len - 1), v);
			return;
		}
		line = next ? next + 1 : NULL;
	}
}

void pf_check_distro(struct preflight_context *c, struct preflight_builder *b)
{
	_cleanup_free_ char *text = NULL;
	char id[64], version[64], pretty[128];
	unsigned maj = 0, min = 0;
	int r;

	r = pf_read_file(c, "/etc/os-release", PF_SMALL_FILE_MAX, &text);
	if (r < 0)
		r = pf_read_file(c, "/usr/lib/os-release", PF_SMALL_FILE_MAX, &text);
	if (r < 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "No /etc/os-release: the distribution is unknown, so its boot tooling could "
			  "not be matched against the supported list.");
		pf_remedy(b, "See docs/check.md for the supported distributions.");
		return;
	}
	os_release_value(text, "ID", id, sizeof(id));
	os_release_value(text, "VERSION_ID", version, sizeof(version));
	os_release_value(text, "PRETTY_NAME", pretty, sizeof(pretty));
	json_object_set_new(b->details, "id", json_string(id));
	json_object_set_new(b->details, "version_id", json_string(version));
	(void)sscanf(version, "%u.%u", &maj, &min);

	for (size_t i = 0; i < ELEMENTSOF(distros); i++) {
		if (!streq(id, distros[i].id))
			continue;
		if (maj > distros[i].min_major ||
		    (maj == distros[i].min_major && min >= distros[i].min_minor)) {
			pf_say(b, "%s (%s %s) is supported.", pretty[0] ? pretty : distros[i].name, id,
			       version);
			return;
		}
		if (maj < distros[i].luks2_major ||
		    (maj == distros[i].luks2_major && min < distros[i].luks2_minor)) {
			pf_status(b, PREFLIGHT_FAIL);
			pf_say(b, "Distro %s %s is not supported%s: its cryptsetup is older than 2.0 and "
				  "cannot open LUKS2 volumes, the only format vmcrypt writes.",
			       id, version, c->scope & PREFLIGHT_SCOPE_OS ? " for OS encryption" : "");
		} else {
			pf_status(b, PREFLIGHT_WARN);
			pf_say(b, "%s %s opens LUKS2 but is older than the supported releases: vmcrypt is "
				  "not tested on it.", distros[i].name, version);
		}
		if (distros[i].min_minor)
			pf_remedy(b, "Upgrade to %s %u.%02u or later before encrypting.", distros[i].name,
				  distros[i].min_major, distros[i].min_minor);
		else
			pf_remedy(b, "Upgrade to %s %u or later before encrypting.", distros[i].name,
				  distros[i].min_major);
		return;
	}
	pf_status(b, PREFLIGHT_WARN);
	pf_say(b, "Distribution '%s' %s is not on the supported list: vmcrypt may work, but the "
		  "initramfs and bootloader integration is not tested on it.",
	       pretty[0] ? pretty : id, version);
	pf_remedy(b, "See docs/check.md for the supported distributions; check boot-packages "
		     "carefully before encrypting the OS volume.");
}

/* ------------------------------------------------------------------ boot-packages */

static bool dpkg_installed(const char *status, const char *package)
{
	char needle[128];
	const char *p = status;

	snprintf(needle, sizeof(needle), "Package: %s\n", package);
	while ((p = strstr(p, needle))) {
		const char *end = strstr(p, "\n\n");
		const char *st = strstr(p, "\nStatus: install ok installed");
		if (p == status || p[-1] == '\n') {
			if (st && (!end || st < end))
				return true;
		}
		p += strlen(needle);
	}
	return false;
}

static bool any_exists(const struct preflight_context *c, const char *const *paths)
{
	for (; *paths; paths++)
		if (pf_exists(c, *paths))
			return true;
	return false;
}

void pf_check_boot_packages(struct preflight_context *c, struct preflight_builder *b)
{
	static const char *const cryptsetup_bin[] = { "/usr/sbin/cryptsetup", "/sbin/cryptsetup", NULL };
	static const char *const itools[] = { "/usr/sbin/update-initramfs", "/sbin/update-initramfs", NULL };
	static const char *const dracut[] = { "/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut", NULL };
	static const char *const itools_crypt[] = { "/usr/share/initramfs-tools/hooks/cryptroot", NULL };
	static const char *const dracut_crypt[] = { "/usr/lib/dracut/modules.d/90crypt", NULL };
	/* vmcrypt's dracut module asks the vault over the network: dracut's network module (Debian
	 * and the RHEL family package it apart, as dracut-network). */
	static const char *const dracut_net[] = { "/usr/lib/dracut/modules.d/40network", NULL };
	static const char *const grub_bios[] = { "/usr/lib/grub/i386-pc", NULL };
	static const char *const grub_efi[] = { "/usr/lib/grub/x86_64-efi", "/usr/lib/grub/x86_64-efi-signed",
						"/boot/efi/EFI/debian/grubx64.efi", "/boot/efi/EFI/ubuntu/grubx64.efi",
						"/boot/efi/EFI/redhat/grubx64.efi", "/boot/efi/EFI/centos/grubx64.efi",
						"/boot/efi/EFI/rocky/grubx64.efi", "/boot/efi/EFI/almalinux/grubx64.efi",
						"/boot/efi/EFI/sles/grubx64.efi", "/boot/efi/EFI/BOOT/BOOTX64.EFI",
						"/usr/lib/systemd/boot/efi", NULL };
	_cleanup_free_ char *dpkg = NULL;
	json_t *missing = json_array();
	bool deb, efi, has_itools, has_dracut;
	const char *install;

	json_object_set_new(b->details, "missing", missing);
	if (!(c->scope & PREFLIGHT_SCOPE_OS)) {
		pf_status(b, PREFLIGHT_SKIP);
		pf_say(b, "Only the OS volume needs boot packages; the scope is data volumes.");
		return;
	}
	deb = pf_read_file(c, "/var/lib/dpkg/status", PF_DPKG_STATUS_MAX, &dpkg) == 0;
	install = deb ? "apt-get install" : pf_exists(c, "/usr/bin/zypper") ? "zypper install" : "dnf install";
	efi = pf_exists(c, "/sys/firmware/efi");
	has_itools = any_exists(c, itools);
	has_dracut = any_exists(c, dracut);
	json_object_set_new(b->details, "firmware", json_string(efi ? "uefi" : "bios"));

	if (!any_exists(c, cryptsetup_bin)) {
		pf_status(b, PREFLIGHT_FAIL);
		json_array_append_new(missing, json_string("cryptsetup"));
		pf_say(b, "cryptsetup is not installed: the initramfs cannot open the encrypted OS "
			  "volume without it.");
		pf_remedy(b, "%s cryptsetup.", install);
	}
	if (!has_itools && !has_dracut) {
		pf_status(b, PREFLIGHT_FAIL);
		json_array_append_new(missing, json_string(deb ? "initramfs-tools" : "dracut"));
		pf_say(b, "No initramfs tool (initramfs-tools or dracut): nothing can rebuild the "
			  "initramfs with the unlock step, and the VM would not boot.");
		pf_remedy(b, "%s %s.", install, deb ? "initramfs-tools" : "dracut");
	} else if (has_itools && !any_exists(c, itools_crypt)) {
		pf_status(b, PREFLIGHT_FAIL);
		json_array_append_new(missing, json_string("cryptsetup-initramfs"));
		pf_say(b, "initramfs-tools is installed without its cryptsetup hook "
			  "(/usr/share/initramfs-tools/hooks/cryptroot): the initramfs would not unlock "
			  "the OS volume and the VM would stop at boot.");
		pf_remedy(b, "apt-get install cryptsetup-initramfs.");
	} else if (!has_itools && has_dracut && !any_exists(c, dracut_crypt)) {
		pf_status(b, PREFLIGHT_FAIL);
		json_array_append_new(missing, json_string("dracut crypt module"));
		pf_say(b, "dracut is installed without its crypt module (90crypt): the initramfs would "
			  "not unlock the OS volume.");
		pf_remedy(b, "%s dracut (with its crypt module) cryptsetup.", install);
	} else if (!has_itools && has_dracut && !any_exists(c, dracut_net)) {
		pf_status(b, PREFLIGHT_FAIL);
		json_array_append_new(missing, json_string("dracut-network"));
		pf_say(b, "dracut is installed without its network module (40network): the initramfs "
			  "could not reach the vault for the OS volume's key.");
		pf_remedy(b, "%s dracut-network.", install);
	}
	if (!any_exists(c, efi ? grub_efi : grub_bios)) {
		const char *pkg = efi ? (deb ? "grub-efi-amd64-bin" : "grub2-efi-x64")
				      : (deb ? "grub-pc-bin" : "grub2-pc-modules");
		pf_status(b, PREFLIGHT_FAIL);
		json_array_append_new(missing, json_string(pkg));
		pf_say(b, "The %s bootloader files are missing (%s): after encryption the bootloader "
			  "could not be updated and the VM might not boot.",
		       efi ? "UEFI" : "BIOS", efi ? "/usr/lib/grub/x86_64-efi or an EFI loader" : "/usr/lib/grub/i386-pc");
		pf_remedy(b, "%s %s.", install, pkg);
	}
	if (b->status == PREFLIGHT_FAIL)
		add_os_volume(c, b);
	if (deb && dpkg && has_itools && !dpkg_installed(dpkg, "initramfs-tools"))
		pf_say(b, "(update-initramfs exists but dpkg does not list initramfs-tools as installed.)");
	if (b->status == PREFLIGHT_PASS)
		pf_say(b, "cryptsetup, %s with its cryptsetup support and the %s bootloader files are "
			  "installed.", has_itools ? "initramfs-tools" : "dracut", efi ? "UEFI" : "BIOS");
}

/* ------------------------------------------------------------------ boot-layout */

static const struct volume *mounted_at(const struct preflight_context *c, const char *path)
{
	for (size_t i = 0; i < c->n_volumes; i++)
		if (streq(c->volumes[i].mountpoint, path))
			return &c->volumes[i];
	return NULL;
}

void pf_check_boot_layout(struct preflight_context *c, struct preflight_builder *b)
{
	const struct volume *os, *boot, *esp;
	bool efi;

	if (!(c->scope & PREFLIGHT_SCOPE_OS)) {
		pf_status(b, PREFLIGHT_SKIP);
		pf_say(b, "Only the OS volume needs a /boot outside it; the scope is data volumes.");
		return;
	}
	os = volumes_os(c->volumes, c->n_volumes);
	if (!os) {
		pf_status(b, PREFLIGHT_SKIP);
		pf_say(b, "The root filesystem is not on a block device; there is no OS volume to encrypt.");
		return;
	}
	efi = pf_exists(c, "/sys/firmware/efi");
	boot = mounted_at(c, "/boot");
	esp = mounted_at(c, "/boot/efi") ?: mounted_at(c, "/efi");
	json_object_set_new(b->details, "firmware", json_string(efi ? "uefi" : "bios"));
	json_object_set_new(b->details, "boot", boot ? json_string(boot->device) : json_null());
	json_object_set_new(b->details, "esp", esp ? json_string(esp->device) : json_null());
	pf_volume(b, os);

	if (boot) {
		pf_say(b, "/boot is a filesystem of its own (%s, %s): the bootloader still reads the "
			  "kernel and the initramfs once the root (%s) is encrypted, and the detached "
			  "header can live in /boot/vmcrypt.", boot->device, boot->fstype[0] ? boot->fstype : "?",
		       os->device);
	} else {
		/* Not a failure yet: making a /boot is the first step of the OS encryption
		 * (docs/os-volume.md), which says when it is impossible. */
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "/boot is inside the root filesystem (%s, %s), as in Debian's cloud images: "
			  "once the root is encrypted the bootloader could not read the kernel, so the "
			  "OS volume needs a /boot of its own first (512 MiB, ext4).", os->device,
		       os->fstype[0] ? os->fstype : "?");
		pf_remedy(b, "Give /boot a partition of its own (grow the disk by 512 MiB, make an ext4 "
			     "partition, copy /boot onto it, add it to fstab, run update-grub).");
	}
	if (efi && !esp) {
		pf_status(b, PREFLIGHT_FAIL);
		pf_say(b, "The VM boots through UEFI but no EFI system partition is mounted at /boot/efi: "
			  "GRUB could not be updated for the encrypted root and the VM might not boot.");
		pf_remedy(b, "Mount the EFI system partition at /boot/efi (and list it in /etc/fstab).");
	} else if (esp) {
		pf_say(b, "The EFI system partition is %s; the firmware is %s.", esp->device, efi ? "UEFI" : "BIOS");
	}
}

/* ------------------------------------------------------------------ tpm2 */

void pf_check_tpm2(struct preflight_context *c, struct preflight_builder *b)
{
	_cleanup_free_ char *major = NULL;
	bool present;

	if (!(c->scope & PREFLIGHT_SCOPE_OS)) {
		pf_status(b, PREFLIGHT_SKIP);
		pf_say(b, "Only the OS volume's unlock at boot uses the TPM; the scope is data volumes.");
		return;
	}
	present = pf_exists(c, "/sys/class/tpm/tpm0");
	/* tpm_version_major exists since Linux 5.6; before, only a TPM 2.0 has a resource
	 * manager device (tpmrm0). */
	if (present && pf_read_file(c, "/sys/class/tpm/tpm0/tpm_version_major", 16, &major) == 0)
		present = major[0] == '2';
	else if (present)
		present = pf_exists(c, "/sys/class/tpmrm/tpmrm0");
	json_object_set_new(b->details, "tpm2", json_boolean(present));
	add_os_volume(c, b);
	if (present) {
		pf_say(b, "A TPM 2.0 is there (/dev/tpm0): the agent seals to it the VM credential the "
			  "initramfs uses to fetch the OS volume's key (SealCredential=auto), so that a copy "
			  "of the disk does not unlock in another VM.");
		return;
	}
	pf_status(b, PREFLIGHT_WARN);
	pf_say(b, "No TPM 2.0: the VM credential the initramfs uses to fetch the OS volume's key "
		  "would be stored unsealed on /boot, so anyone holding a copy of the disk could "
		  "present it to the vault (docs/os-volume.md, threat model).");
	pf_remedy(b, "Add a virtual TPM 2.0 to the VM (QEMU: swtpm and -tpmdev emulator), or accept it "
		     "and revoke the VM's credential when a copy of the disk is suspected.");
}

/* ------------------------------------------------------------------ initramfs-network */

/* The network the initramfs brings up to ask the vault for the OS volume's key
 * (dist/initramfs-tools/local-top): DHCP on the first link unless the kernel command line has
 * ip=. What defeats it is known now: no network device with a driver the hook can copy, or an
 * address configured statically (no DHCP server may answer at boot). */

/* Appends to buf each file of dir (under the root) whose text has the static marker and lacks
 * the dhcp one; both are substrings of a line, case-sensitive, as each tool writes them. */
static void find_static(const struct preflight_context *c, const char *dir, const char *suffix,
			const char *static_marker, const char *const *dhcp_markers, char *buf, size_t len)
{
	char full[PATH_MAX * 2];
	struct dirent *de;
	DIR *d;

	snprintf(full, sizeof(full), "%s%s", c->root, dir);
	d = opendir(full);
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *text = NULL;
		char path[PATH_MAX];
		bool dhcp = false;

		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.' ||
		    (suffix && (n < strlen(suffix) || !streq(de->d_name + n - strlen(suffix), suffix))))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (pf_read_file(c, path, PF_SMALL_FILE_MAX, &text) < 0 || !strstr(text, static_marker))
			continue;
		for (size_t i = 0; dhcp_markers && dhcp_markers[i]; i++)
			dhcp = dhcp || strstr(text, dhcp_markers[i]);
		if (!dhcp)
			snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "", path);
	}
	if (d)
		closedir(d);
}

void pf_check_initramfs_network(struct preflight_context *c, struct preflight_builder *b)
{
	static const char *const networkd_dhcp[] = { "DHCP=yes", "DHCP=ipv4", "DHCP=true", "DHCP=both", NULL };
	static const char *const netplan_dhcp[] = { "dhcp4: true", "dhcp4: yes", NULL };
	_cleanup_free_ char *cmdline = NULL, *grub = NULL;
	char nics[512] = "", statics[1024] = "", full[PATH_MAX * 2];
	struct dirent *de;
	bool ip_given;
	DIR *d;

	if (!(c->scope & PREFLIGHT_SCOPE_OS)) {
		pf_status(b, PREFLIGHT_SKIP);
		pf_say(b, "Only the OS volume's unlock at boot needs the network in the initramfs; the scope is "
			  "data volumes.");
		return;
	}
	/* Network devices backed by hardware (virtual ones have no device/): their drivers are what
	 * the hook copies into the initramfs. */
	snprintf(full, sizeof(full), "%s/sys/class/net", c->root);
	d = opendir(full);
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *uevent = NULL;
		char path[PATH_MAX], driver[64] = "";
		const char *p;

		if (de->d_name[0] == '.' || streq(de->d_name, "lo"))
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/device/uevent", de->d_name);
		if (pf_read_file(c, path, PF_SMALL_FILE_MAX, &uevent) < 0)
			continue;
		if ((p = strstr(uevent, "DRIVER=")))
			snprintf(driver, sizeof(driver), "%.*s", (int)strcspn(p + 7, "\n"), p + 7);
		if (!driver[0])
			continue;
		snprintf(nics + strlen(nics), sizeof(nics) - strlen(nics), "%s%s (%s)", nics[0] ? ", " : "",
			 de->d_name, driver);
	}
	if (d)
		closedir(d);
	json_object_set_new(b->details, "interfaces", json_string(nics));
	add_os_volume(c, b);
	if (!nics[0]) {
		pf_status(b, PREFLIGHT_FAIL);
		pf_say(b, "No network device with a driver (/sys/class/net/*/device): the initramfs could not "
			  "reach the vault for the OS volume's key, and every boot would ask for the recovery "
			  "passphrase on the console.");
		pf_remedy(b, "Attach a network interface to the VM.");
		return;
	}
	(void)pf_read_file(c, "/proc/cmdline", PF_SMALL_FILE_MAX, &cmdline);
	(void)pf_read_file(c, "/etc/default/grub", PF_SMALL_FILE_MAX, &grub);
	ip_given = (cmdline && (startswith(cmdline, "ip=") || strstr(cmdline, " ip="))) ||
		   (grub && strstr(grub, " ip=")) || (grub && strstr(grub, "\"ip="));
	find_static(c, "/etc/network", "interfaces", " inet static", NULL, statics, sizeof(statics));
	find_static(c, "/etc/network/interfaces.d", NULL, " inet static", NULL, statics, sizeof(statics));
	find_static(c, "/etc/systemd/network", ".network", "Address=", networkd_dhcp, statics, sizeof(statics));
	find_static(c, "/etc/netplan", ".yaml", "addresses:", netplan_dhcp, statics, sizeof(statics));
	find_static(c, "/etc/NetworkManager/system-connections", NULL, "method=manual", NULL, statics,
		    sizeof(statics));
	json_object_set_new(b->details, "static", json_string(statics));
	json_object_set_new(b->details, "ip_on_cmdline", json_boolean(ip_given));
	if (statics[0] && !ip_given) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "The initramfs brings up %s with DHCP to ask the vault for the OS volume's key, but "
			  "this VM's address is static (%s): without a DHCP server at boot the vault is not "
			  "reached and the console asks for the recovery passphrase.", nics, statics);
		pf_remedy(b, "Give the initramfs the address: add ip=ADDRESS::GATEWAY:NETMASK::INTERFACE:none "
			     "to GRUB_CMDLINE_LINUX in /etc/default/grub and run update-grub.");
		return;
	}
	pf_say(b, "The initramfs brings up %s with %s to ask the vault for the OS volume's key; its hook "
		  "copies the drivers.", nics, ip_given ? "the ip= of the kernel command line" : "DHCP");
}

/* ------------------------------------------------------------------ device */

void pf_check_device(struct preflight_context *c, struct preflight_builder *b)
{
	char desc[PATH_MAX * 2 + 8], size[32];
	json_t *list = json_array();
	size_t n = 0;

	json_object_set_new(b->details, "volumes", list);
	if (c->volumes_error < 0) {
		pf_status(b, PREFLIGHT_FAIL);
		pf_say(b, "The volumes could not be discovered (%s).", strerror(-c->volumes_error));
		return;
	}
	for (size_t i = 0; i < c->n_volumes; i++) {
		const struct volume *v = &c->volumes[i];

		if (!pf_in_scope(c, v))
			continue;
		n++;
		describe(v, desc, sizeof(desc));
		format_bytes(size, sizeof(size), v->size);
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:I, s:s, s:b, s:b, s:s}", "device",
						      v->device, "role", volumes_role_to_string(v->role),
						      "type", volumes_kind_to_string(v->kind), "size",
						      (json_int_t)v->size, "filesystem", v->fstype,
						      "read_only", v->read_only, "encrypted", is_luks(v),
						      "mountpoint", v->mountpoint));
		if (is_stack_member(v->fstype)) {
			pf_say(b, "%s: %s member, not a volume of its own.", desc, v->fstype);
			continue;
		}
		if (v->read_only) {
			pf_status(b, PREFLIGHT_FAIL);
			pf_volume(b, v);
			pf_say(b, "%s: %s %s, read-only: it cannot be converted.", desc, size,
			       volumes_kind_to_string(v->kind));
			pf_remedy(b, "Make %s writable (blockdev --setrw, or the hypervisor's disk setting).",
				  v->device);
			continue;
		}
		if (is_luks(v)) {
			pf_say(b, "%s: %s %s, already encrypted (%s).", desc, size,
			       volumes_kind_to_string(v->kind),
			       v->kind == VOLUME_KIND_CRYPT ? "opened dm-crypt mapping" : "LUKS header");
			continue;
		}
		if (v->size < PF_MIN_DEVICE_SIZE) {
			pf_status(b, PREFLIGHT_FAIL);
			pf_volume(b, v);
			pf_say(b, "%s: %s, too small: vmcrypt needs %llu MiB for the header and the "
				  "conversion's data shift.", desc, size,
			       (unsigned long long)(PF_MIN_DEVICE_SIZE / MIB(1)));
			pf_remedy(b, "Grow %s or leave it unencrypted.", v->device);
			continue;
		}
		pf_say(b, "%s: %s %s, writable, not encrypted%s.", desc, size,
		       volumes_kind_to_string(v->kind),
		       v->kind == VOLUME_KIND_RAID ? " (the array itself is converted, never its members)" : "");
	}
	if (n == 0) {
		pf_status(b, PREFLIGHT_WARN);
		pf_say(b, "No volume in scope: nothing to encrypt.");
	}
}

/* ------------------------------------------------------------------ vault, agent-version */

/* A probe's finding into the builder. */
static void run_probe(preflight_probe_fn probe, void *userdata, struct preflight_builder *b)
{
	struct preflight_finding f = { .status = PREFLIGHT_PASS, .details = b->details };

	probe(userdata, &f);
	pf_status(b, f.status);
	if (f.message[0])
		pf_say(b, "%s", f.message);
	if (f.remedy[0])
		pf_remedy(b, "%s", f.remedy);
}

void pf_check_vault(struct preflight_context *c, struct preflight_builder *b)
{
	if (c->probes && c->probes->vault) {
		run_probe(c->probes->vault, c->probes->userdata, b);
		return;
	}
	pf_status(b, PREFLIGHT_SKIP);
	pf_say(b, "Key vault reachability is checked once the VM is enrolled with vmcryptd.");
}

void pf_check_agent_version(struct preflight_context *c, struct preflight_builder *b)
{
	if (c->probes && c->probes->agent_version) {
		run_probe(c->probes->agent_version, c->probes->userdata, b);
		return;
	}
	pf_status(b, PREFLIGHT_SKIP);
	pf_say(b, "The agent version is checked against vmcryptd once the VM is enrolled.");
}
