/* Targets of a conversion: identity, probing through libblkid, and the in-use checks. */
#include <blkid.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "device.h"
#include "proc-users.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(blkid_probe, blkid_free_probe)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct libmnt_table *, mnt_unref_table)

int device_probe(const char *target, struct device_info *ret)
{
	_cleanup_(blkid_free_probep) blkid_probe pr = NULL;
	_cleanup_close_ int fd = -1;
	struct device_info d = {};
	struct stat st;
	const char *v;
	int r;

	if (!realpath(target, d.path))
		return negative_errno();
	fd = open(d.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0)
		return negative_errno();

	if (S_ISBLK(st.st_mode)) {
		int ro = 0;

		d.is_block = true;
		d.rdev = st.st_rdev;
		if (ioctl(fd, BLKGETSIZE64, &d.size) < 0)
			return negative_errno();
		if (ioctl(fd, BLKROGET, &ro) == 0)
			d.read_only = ro;
	} else if (S_ISREG(st.st_mode)) {
		d.dev = st.st_dev;
		d.ino = st.st_ino;
		d.size = (uint64_t)st.st_size;
		d.read_only = access(d.path, W_OK) < 0;
	} else
		return -ENOTBLK;

	pr = blkid_new_probe();
	if (!pr)
		return -ENOMEM;
	if (blkid_probe_set_device(pr, fd, 0, 0) < 0)
		return -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID);
	blkid_probe_enable_partitions(pr, 1);
	r = blkid_do_safeprobe(pr);
	if (r == -2) {
		/* Ambivalent: two signatures (e.g. an old filesystem under a new one). Converting
		 * such a device would be a guess; report it as unknown. */
		snprintf(d.fs_type, sizeof(d.fs_type), "ambivalent");
	} else if (r < 0)
		return -EIO;
	else if (r == 0) {
		if (blkid_probe_lookup_value(pr, "TYPE", &v, NULL) == 0)
			snprintf(d.fs_type, sizeof(d.fs_type), "%s", v);
		else if (blkid_probe_lookup_value(pr, "PTTYPE", &v, NULL) == 0)
			snprintf(d.fs_type, sizeof(d.fs_type), "partition-table-%s", v);
		if (blkid_probe_lookup_value(pr, "UUID", &v, NULL) == 0)
			snprintf(d.fs_uuid, sizeof(d.fs_uuid), "%s", v);
		if (blkid_probe_lookup_value(pr, "BLOCK_SIZE", &v, NULL) == 0) {
			uint64_t bs;
			if (parse_u64(v, &bs) == 0 && bs <= UINT32_MAX)
				d.fs_block_size = (uint32_t)bs;
		}
	}
	*ret = d;
	return 0;
}

char *device_identity(const struct device_info *d, char *buf, size_t len)
{
	if (d->is_block)
		snprintf(buf, len, "blk:%u:%u", major(d->rdev), minor(d->rdev));
	else
		snprintf(buf, len, "file:%llu:%llu", (unsigned long long)d->dev, (unsigned long long)d->ino);
	return buf;
}

/* Is d (or, for a regular file, a loop device backed by it) the source of a mount? */
static int check_mounted(const struct device_info *d, struct device_usage *ret)
{
	_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
	struct libmnt_iter *it;
	struct libmnt_fs *fs;
	int r = 0;

	tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (!tb)
		return 0; /* no /proc: the exclusive open below still catches mounts of devices */
	it = mnt_new_iter(MNT_ITER_FORWARD);
	if (!it)
		return -ENOMEM;
	while (mnt_table_next_fs(tb, it, &fs) == 0) {
		const char *src = mnt_fs_get_srcpath(fs);
		struct stat st;

		if (d->is_block ? mnt_fs_get_devno(fs) == d->rdev
				: (src && stat(src, &st) == 0 && S_ISREG(st.st_mode) &&
				   st.st_dev == d->dev && st.st_ino == d->ino)) {
			snprintf(ret->what, sizeof(ret->what), "mounted on %s", mnt_fs_get_target(fs));
			r = -EBUSY;
			break;
		}
	}
	mnt_free_iter(it);
	return r;
}

/* /sys/dev/block/M:m/holders lists device-mapper, md or other stacked users. */
static int check_holders(const struct device_info *d, struct device_usage *ret)
{
	char path[128];
	DIR *dir;
	struct dirent *de;
	int r = 0;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(d->rdev), minor(d->rdev));
	dir = opendir(path);
	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(ret->what, sizeof(ret->what), "in use by %s (a device stacked on it)", de->d_name);
		r = -EBUSY;
		break;
	}
	closedir(dir);
	return r;
}

/* A regular file attached to a loop device is in use, whoever holds the loop device. */
static int check_loop_backing(const struct device_info *d, struct device_usage *ret)
{
	DIR *dir = opendir("/sys/block");
	struct dirent *de;
	int r = 0;

	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		char path[PATH_MAX], *backing = NULL;
		size_t n;
		struct stat st;

		if (!startswith(de->d_name, "loop"))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		if (read_full_file(path, PATH_MAX, &backing, &n) < 0)
			continue;
		backing[strcspn(backing, "\n")] = 0;
		if (stat(backing, &st) == 0 && st.st_dev == d->dev && st.st_ino == d->ino) {
			snprintf(ret->what, sizeof(ret->what), "attached to /dev/%s (losetup -d /dev/%s)",
				 de->d_name, de->d_name);
			r = -EBUSY;
		}
		free(backing);
		if (r < 0)
			break;
	}
	closedir(dir);
	return r;
}

static int check_open_by_process(const struct device_info *d, struct device_usage *ret)
{
	_cleanup_proc_users_ struct proc_user *users = NULL;
	struct stat st;
	size_t n = 0;
	int r;

	if (stat(d->path, &st) < 0)
		return negative_errno();
	r = proc_users_of_device(&st, &users, &n);
	if (r < 0 && r != -E2BIG)
		return r;
	if (n == 0)
		return 0;
	snprintf(ret->what, sizeof(ret->what), "held open by pid %d (%s)%s", (int)users[0].pid,
		 users[0].comm, n > 1 ? " and other processes" : "");
	return -EBUSY;
}

int device_check_unused(const struct device_info *d, struct device_usage *ret)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	r = check_mounted(d, ret);
	if (r < 0)
		return r;
	if (d->is_block) {
		_cleanup_close_ int fd = -1;

		r = check_holders(d, ret);
		if (r < 0)
			return r;
		/* The kernel's own answer: an exclusive open fails while anything claims it. */
		fd = open(d->path, O_RDONLY | O_EXCL | O_CLOEXEC);
		if (fd < 0) {
			if (errno != EBUSY)
				return negative_errno();
			snprintf(ret->what, sizeof(ret->what), "claimed exclusively by the kernel or another program");
			return -EBUSY;
		}
	} else {
		r = check_loop_backing(d, ret);
		if (r < 0)
			return r;
	}
	return check_open_by_process(d, ret);
}

int device_tail_is_zero(const char *path, uint64_t device_size, uint64_t size)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	const size_t chunk = 1 << 20;
	uint64_t off;

	if (size > device_size)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	for (off = device_size - size; off < device_size;) {
		size_t want = (size_t)MIN((uint64_t)chunk, device_size - off);
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n < 0)
			return negative_errno();
		if (n == 0)
			return -EIO;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i])
				return 0;
		off += (uint64_t)n;
	}
	return 1;
}

int device_wipe_luks_signatures(const char *path)
{
	_cleanup_(blkid_free_probep) blkid_probe pr = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	pr = blkid_new_probe();
	if (!pr)
		return -ENOMEM;
	if (blkid_probe_set_device(pr, fd, 0, 0) < 0)
		return -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_BADCSUM);
	blkid_probe_enable_partitions(pr, 0);
	/* Only LUKS: anything else found here (there should be nothing) is left alone. */
	blkid_probe_filter_superblocks_type(pr, BLKID_FLTR_ONLYIN, (char *[]){ "crypto_LUKS", NULL });
	while ((r = blkid_do_probe(pr)) == 0) {
		if (blkid_do_wipe(pr, 0) < 0)
			return -EIO;
	}
	if (r < 0)
		return -EIO;
	if (fsync(fd) < 0)
		return negative_errno();
	return 0;
}
