/* Discovery of the VM's volumes through libmount, /sys/dev/block, the udev database and libblkid. */
#include <blkid.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libmount.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/paths.h"
#include "shared/volume/mount-util.h"
#include "shared/volume/volumes.h"

/* Labels and mount points of key storage that must never be encrypted: Azure's BEK disk (which
 * vmcrypt can import from) and vmcrypt's own key disk. */
static const char *const key_labels[] = { "BEK VOLUME", "VMCRYPT-KEYS" };
static const char *const key_mounts[] = { "/mnt/azure_bek_disk", "/mnt/vmcrypt-keys" };

struct discovery {
	struct volume *v;
	size_t n;
	bool truncated;
	bool fixture;
	char root[PATH_MAX];
};

/* snprintf for names that are bounded by construction (kernel names, capped roots), where a
 * truncated result would only shorten a message. Returns true when everything fit. */
_printf_(3, 4) static bool fmt(char *buf, size_t len, const char *format, ...)
{
	va_list ap;
	int n;

	va_start(ap, format);
	n = vsnprintf(buf, len, format, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < len;
}

bool volumes_path_is_under(const char *path, const char *dir)
{
	const char *rest;

	if (streq(dir, "/"))
		return path[0] == '/';
	rest = startswith(path, dir);
	return rest && (*rest == 0 || *rest == '/');
}

/* Reads one line of a sysfs attribute into buf (trailing newline removed). Returns 0 or -errno. */
static int read_attr(const char *dir, const char *attr, char *buf, size_t len)
{
	char path[PATH_MAX + 64];
	_cleanup_fclose_ FILE *f = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, attr);
	f = fopen(path, "re");
	if (!f)
		return negative_errno();
	if (!fgets(buf, (int)len, f))
		return -ENODATA;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static bool attr_exists(const char *dir, const char *attr)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, attr);
	return access(path, F_OK) == 0;
}

/* The first entry of a sysfs directory such as slaves/ or holders/; fills names up to max. */
static size_t list_dir(const char *dir, const char *sub, char (*names)[64], size_t max)
{
	char path[PATH_MAX + 64];
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < max) {
		if (de->d_name[0] == '.')
			continue;
		fmt(names[n++], 64, "%s", de->d_name);
	}
	return n;
}

static void sys_dir(const struct discovery *d, dev_t devnum, char *buf, size_t len)
{
	fmt(buf, len, "%s/sys/dev/block/%u:%u", d->root, major(devnum), minor(devnum));
}

/* Reads the udev database entry for the device ("E:ID_FS_TYPE=ext4" lines). */
static void fill_from_udev(const struct discovery *d, struct volume *v)
{
	char path[PATH_MAX + 64];
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/run/udev/data/b%u:%u", d->root, major(v->devnum),
		 minor(v->devnum));
	f = fopen(path, "re");
	if (!f)
		return;
	while (getline(&line, &len, f) > 0) {
		const char *val;

		line[strcspn(line, "\n")] = 0;
		if ((val = startswith(line, "E:ID_FS_TYPE=")) && !v->fstype[0])
			snprintf(v->fstype, sizeof(v->fstype), "%s", val);
		else if ((val = startswith(line, "E:ID_FS_LABEL=")) && !v->label[0])
			snprintf(v->label, sizeof(v->label), "%s", val);
		else if ((val = startswith(line, "E:ID_FS_UUID=")) && !v->fs_uuid[0])
			snprintf(v->fs_uuid, sizeof(v->fs_uuid), "%s", val);
	}
}

/* Probes the signatures on the device itself (read-only). Only on the real root. */
static void fill_from_blkid(struct volume *v)
{
	blkid_probe pr;
	const char *val;

	pr = blkid_new_probe_from_filename(v->device);
	if (!pr)
		return;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL);
	if (blkid_do_safeprobe(pr) == 0) {
		if (!v->fstype[0] && blkid_probe_lookup_value(pr, "TYPE", &val, NULL) == 0)
			snprintf(v->fstype, sizeof(v->fstype), "%s", val);
		if (!v->label[0] && blkid_probe_lookup_value(pr, "LABEL", &val, NULL) == 0)
			snprintf(v->label, sizeof(v->label), "%s", val);
		if (!v->fs_uuid[0] && blkid_probe_lookup_value(pr, "UUID", &val, NULL) == 0)
			snprintf(v->fs_uuid, sizeof(v->fs_uuid), "%s", val);
	}
	blkid_free_probe(pr);
}

/* Fills kind, name, device, size, parent, stack from /sys/dev/block/MAJ:MIN. Returns 0, or
 * -ENOENT when the number is not a block device. */
static int fill_from_sys(const struct discovery *d, struct volume *v)
{
	char dir[PATH_MAX], buf[256], real[PATH_MAX], slaves[1][64], dmuuid[160] = "";
	uint64_t sectors;
	_cleanup_fclose_ FILE *f = NULL;

	sys_dir(d, v->devnum, dir, sizeof(dir));
	if (access(dir, F_OK) < 0)
		return -ENOENT;
	snprintf(v->name, sizeof(v->name), "?");
	{
		char path[PATH_MAX + 16];
		_cleanup_free_ char *line = NULL;
		size_t len = 0;

		snprintf(path, sizeof(path), "%s/uevent", dir);
		f = fopen(path, "re");
		while (f && getline(&line, &len, f) > 0) {
			const char *val;
			line[strcspn(line, "\n")] = 0;
			if ((val = startswith(line, "DEVNAME=")))
				snprintf(v->name, sizeof(v->name), "%s", val);
		}
	}
	if (streq(v->name, "?") && realpath(dir, real))
		snprintf(v->name, sizeof(v->name), "%s", basename(real));
	snprintf(v->device, sizeof(v->device), "/dev/%s", v->name);

	if (read_attr(dir, "size", buf, sizeof(buf)) == 0 && parse_u64(buf, &sectors) == 0 &&
	    sectors <= UINT64_MAX / 512)
		v->size = sectors * 512;
	if (read_attr(dir, "ro", buf, sizeof(buf)) == 0)
		v->read_only = streq(buf, "1");
	(void)read_attr(dir, "dm/uuid", dmuuid, sizeof(dmuuid));
	(void)read_attr(dir, "dm/name", v->dm_name, sizeof(v->dm_name));
	v->n_holders = list_dir(dir, "holders", v->holders, VOLUMES_HOLDERS_MAX);
	if (list_dir(dir, "slaves", slaves, 1) == 1)
		snprintf(v->backing, sizeof(v->backing), "/dev/%s", slaves[0]);

	if (startswith(dmuuid, "CRYPT-"))
		v->kind = VOLUME_KIND_CRYPT;
	else if (startswith(dmuuid, "LVM-"))
		v->kind = VOLUME_KIND_LVM;
	else if (attr_exists(dir, "dm"))
		v->kind = VOLUME_KIND_DM;
	else if (attr_exists(dir, "md"))
		v->kind = VOLUME_KIND_RAID;
	else if (attr_exists(dir, "loop") || startswith(v->name, "loop"))
		v->kind = VOLUME_KIND_LOOP;
	else if (attr_exists(dir, "partition")) {
		v->kind = VOLUME_KIND_PARTITION;
		/* /sys/dev/block/8:1 -> ../../devices/.../sda/sda1: the parent directory is the disk. */
		if (realpath(dir, real)) {
			char *p = strrchr(real, '/');
			if (p) {
				*p = 0;
				snprintf(v->parent, sizeof(v->parent), "%s", basename(real));
			}
		}
	} else
		v->kind = VOLUME_KIND_DISK;
	if (v->dm_name[0])
		snprintf(v->device, sizeof(v->device), "/dev/mapper/%s", v->dm_name);

	if (!d->fixture)
		fill_from_blkid(v);
	fill_from_udev(d, v);
	return 0;
}

static struct volume *find_devnum(struct discovery *d, dev_t devnum)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].devnum == devnum)
			return &d->v[i];
	return NULL;
}

static struct volume *add_volume(struct discovery *d)
{
	if (d->n >= VOLUMES_MAX) {
		d->truncated = true;
		return NULL;
	}
	memset(&d->v[d->n], 0, sizeof(d->v[d->n]));
	return &d->v[d->n++];
}

static const char *key_storage_reason(const struct volume *v)
{
	for (size_t i = 0; i < ELEMENTSOF(key_labels); i++)
		if (streq(v->label, key_labels[i]))
			return "key storage";
	for (size_t i = 0; i < ELEMENTSOF(key_mounts); i++)
		if (v->mountpoint[0] && streq(v->mountpoint, key_mounts[i]))
			return "key storage";
	if (v->mountpoint[0] && streq(v->mountpoint, path_state_dir()))
		return "vmcrypt state";
	return NULL;
}

static int discover_mounts(struct discovery *d)
{
	char path[PATH_MAX + 32];
	_cleanup_(mount_util_table_unrefp) struct libmnt_table *tb = NULL;
	_cleanup_(mount_util_iter_freep) struct libmnt_iter *itr = NULL;
	struct libmnt_fs *fs;

	snprintf(path, sizeof(path), "%s/proc/self/mountinfo", d->root);
	if (access(path, R_OK) < 0)
		return negative_errno();
	tb = mnt_new_table_from_file(path);
	itr = mnt_new_iter(MNT_ITER_FORWARD);
	if (!tb || !itr)
		return -ENOMEM;
	while (mnt_table_next_fs(tb, itr, &fs) == 0) {
		const char *target = mnt_fs_get_target(fs), *src = mnt_fs_get_srcpath(fs);
		const char *type = mnt_fs_get_fstype(fs), *opts = mnt_fs_get_vfs_options(fs);
		const char *why;
		dev_t devnum = mnt_fs_get_devno(fs);
		struct volume *v, tmp = {};
		struct stat st;

		if (!target)
			continue;
		/* btrfs and others report an anonymous device number; the source names the device. */
		if (major(devnum) == 0) {
			if (d->fixture || !src || !startswith(src, "/dev/") || stat(src, &st) < 0 ||
			    !S_ISBLK(st.st_mode))
				continue;
			devnum = st.st_rdev;
		}
		v = find_devnum(d, devnum);
		if (v) {
			/* Mounted twice (bind mounts): the root mount decides the role. */
			if (streq(target, "/")) {
				v->role = VOLUME_ROLE_OS;
				snprintf(v->mountpoint, sizeof(v->mountpoint), "/");
			}
			continue;
		}
		tmp.devnum = devnum;
		if (fill_from_sys(d, &tmp) < 0)
			continue;
		snprintf(tmp.mountpoint, sizeof(tmp.mountpoint), "%s", target);
		if (type)
			snprintf(tmp.fstype, sizeof(tmp.fstype), "%s", type);
		if (opts)
			snprintf(tmp.mount_options, sizeof(tmp.mount_options), "%s", opts);
		if (streq(target, "/"))
			tmp.role = VOLUME_ROLE_OS;
		else if (volumes_path_is_under(target, "/boot")) {
			tmp.role = VOLUME_ROLE_EXCLUDED;
			snprintf(tmp.excluded_why, sizeof(tmp.excluded_why), "%s", target);
		} else if ((why = key_storage_reason(&tmp))) {
			tmp.role = VOLUME_ROLE_EXCLUDED;
			snprintf(tmp.excluded_why, sizeof(tmp.excluded_why), "%s", why);
		} else
			tmp.role = VOLUME_ROLE_DATA;
		v = add_volume(d);
		if (!v)
			return 0;
		*v = tmp;
	}
	return 0;
}

static bool is_swap(const struct discovery *d, const struct volume *v)
{
	char path[PATH_MAX + 32];
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/proc/swaps", d->root);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (getline(&line, &len, f) > 0) {
		char dev[PATH_MAX];
		struct stat st;

		if (line[0] != '/' || sscanf(line, "%4095s", dev) != 1)
			continue;
		if (streq(dev, v->device) || streq(basename(dev), v->name))
			return true;
		if (!d->fixture && stat(dev, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == v->devnum)
			return true;
	}
	return false;
}

/* A disk that has partitions is not a volume itself; its partitions are. */
static bool has_partitions(const struct discovery *d, const char *classdir, const char *name)
{
	char path[PATH_MAX + 256];
	_cleanup_(closedirp) DIR *dir = NULL;
	struct dirent *de;

	fmt(path, sizeof(path), "%s/%s", classdir, name);
	dir = opendir(path);
	if (!dir)
		return false;
	while ((de = readdir(dir))) {
		char attr[PATH_MAX + 600];

		if (!startswith(de->d_name, name) || streq(de->d_name, name))
			continue;
		snprintf(attr, sizeof(attr), "%s/%s/%s/partition", classdir, name, de->d_name);
		if (access(attr, F_OK) == 0)
			return true;
	}
	return false;
}

static int discover_candidates(struct discovery *d)
{
	char classdir[PATH_MAX + 32];
	_cleanup_(closedirp) DIR *dir = NULL;
	struct dirent *de;

	snprintf(classdir, sizeof(classdir), "%s/sys/class/block", d->root);
	dir = opendir(classdir);
	if (!dir)
		return 0; /* no /sys: nothing beyond the mounts */
	while ((de = readdir(dir))) {
		char sysd[PATH_MAX + 300], buf[64];
		unsigned maj, min;
		struct volume tmp = {}, *v;

		if (de->d_name[0] == '.' || startswith(de->d_name, "ram") ||
		    startswith(de->d_name, "zram") || startswith(de->d_name, "sr") ||
		    startswith(de->d_name, "fd") || startswith(de->d_name, "nbd"))
			continue;
		snprintf(sysd, sizeof(sysd), "%s/%s", classdir, de->d_name);
		if (read_attr(sysd, "dev", buf, sizeof(buf)) < 0 || sscanf(buf, "%u:%u", &maj, &min) != 2)
			continue;
		tmp.devnum = makedev(maj, min);
		if (find_devnum(d, tmp.devnum))
			continue;
		if (has_partitions(d, classdir, de->d_name))
			continue;
		if (fill_from_sys(d, &tmp) < 0 || tmp.size == 0)
			continue; /* unattached loop devices, empty card readers */
		tmp.role = VOLUME_ROLE_CANDIDATE;
		if (is_swap(d, &tmp)) {
			tmp.role = VOLUME_ROLE_EXCLUDED;
			snprintf(tmp.excluded_why, sizeof(tmp.excluded_why), "swap");
		} else if (key_storage_reason(&tmp)) {
			tmp.role = VOLUME_ROLE_EXCLUDED;
			snprintf(tmp.excluded_why, sizeof(tmp.excluded_why), "key storage");
		} else if (tmp.n_holders > 0) {
			/* Part of a stack (PV with active LVs, md member, opened LUKS): the device on top
			 * is the volume. */
			tmp.role = VOLUME_ROLE_EXCLUDED;
			fmt(tmp.excluded_why, sizeof(tmp.excluded_why), "held by %s", tmp.holders[0]);
		}
		v = add_volume(d);
		if (!v)
			return 0;
		*v = tmp;
	}
	return 0;
}

static int role_rank(enum volume_role r)
{
	return r == VOLUME_ROLE_OS ? 0 : r == VOLUME_ROLE_DATA ? 1 : r == VOLUME_ROLE_CANDIDATE ? 2 : 3;
}

int volumes_discover(struct volume **ret, size_t *ret_n)
{
	struct discovery d = {};
	int r;

	d.fixture = *path_test_root() != 0;
	if (snprintf(d.root, sizeof(d.root), "%s", path_test_root()) >= (int)sizeof(d.root) - 64)
		return -ENAMETOOLONG;
	d.v = calloc(VOLUMES_MAX, sizeof(struct volume));
	if (!d.v)
		return -ENOMEM;
	r = discover_mounts(&d);
	if (r >= 0)
		r = discover_candidates(&d);
	if (r < 0) {
		free(d.v);
		return r;
	}
	/* Stable order: OS, data, candidates, excluded; discovery order within each. */
	for (size_t i = 1; i < d.n; i++)
		for (size_t j = i; j > 0 && role_rank(d.v[j - 1].role) > role_rank(d.v[j].role); j--) {
			struct volume t = d.v[j];
			d.v[j] = d.v[j - 1];
			d.v[j - 1] = t;
		}
	*ret = d.v;
	*ret_n = d.n;
	return d.truncated ? 1 : 0;
}

void volumes_free(struct volume *v)
{
	free(v);
}

const struct volume *volumes_os(const struct volume *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].role == VOLUME_ROLE_OS)
			return &v[i];
	return NULL;
}

const char *volumes_role_to_string(enum volume_role r)
{
	static const char *const names[] = { "OS", "data", "candidate", "excluded" };
	return (unsigned)r < ELEMENTSOF(names) ? names[r] : "?";
}

const char *volumes_kind_to_string(enum volume_kind k)
{
	static const char *const names[] = { "other", "disk", "partition", "LVM", "RAID",
					     "loop", "dm-crypt", "device-mapper" };
	return (unsigned)k < ELEMENTSOF(names) ? names[k] : "?";
}

char *volumes_describe(const struct volume *v, char *buf, size_t len)
{
	if (v->mountpoint[0])
		snprintf(buf, len, "%s (%s)", v->device, v->mountpoint);
	else
		snprintf(buf, len, "%s", v->device);
	return buf;
}
