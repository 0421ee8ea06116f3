/* Targets of a conversion: identity, probing through libblkid, and the in-use checks. */
#include <blkid.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <linux/fs.h>
#include <linux/loop.h>
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
#include "shared/volume/device.h"
#include "shared/volume/mount-util.h"
#include "shared/volume/proc-users.h"

DEFINE_CLEANUP_FUNC(device_probe_freep, blkid_probe, blkid_free_probe)

/* A libblkid probe on fd that looks for superblocks with the given BLKID_SUBLKS_* flags, and for
 * partition tables when partitions is set. Returns 0, -ENOMEM or -EIO. */
static int device_probe_new(int fd, int superblock_flags, bool partitions, blkid_probe *ret)
{
	_cleanup_(device_probe_freep) blkid_probe pr = NULL;

	pr = blkid_new_probe();
	if (!pr)
		return -ENOMEM;
	if (blkid_probe_set_device(pr, fd, 0, 0) < 0)
		return -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, superblock_flags);
	blkid_probe_enable_partitions(pr, partitions);
	*ret = TAKE_PTR(pr);
	return 0;
}

int device_probe(const char *target, struct device_info *ret)
{
	_cleanup_(device_probe_freep) blkid_probe pr = NULL;
	_cleanup_close_ int fd = -1;
	struct device_info d = {};
	struct stat st;
	const char *v;
	int r;

	if (!realpath(target, d.path))
		return negative_errno();
	/* O_NONBLOCK: a FIFO given as the target must be refused, not wait for a writer forever. */
	fd = open(d.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
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

	r = device_probe_new(fd, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID, true, &pr);
	if (r < 0)
		return r;
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

/* Is d the source of a mount? Block devices are matched by device number, twice: mountinfo's
 * major:minor (the filesystem's own device) and the source's node (btrfs reports an anonymous
 * device number there). Regular files are mounted through loop devices, which the loop scan
 * in check_unused() finds; a file that is itself a mount's source (FUSE image mounts) is matched
 * by device and inode. Only absolute sources are stat()ed ("tmpfs", "server:/export" are not
 * paths). */
static int check_mounted(const struct device_info *d, struct device_usage *ret)
{
	_cleanup_(mount_util_table_unrefp) struct libmnt_table *tb = NULL;
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
		bool match;

		if (src && src[0] != '/')
			src = NULL;
		if (d->is_block)
			match = mnt_fs_get_devno(fs) == d->rdev ||
				(src && stat(src, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == d->rdev);
		else
			match = src && stat(src, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == d->dev &&
				st.st_ino == d->ino;
		if (match) {
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
	_cleanup_(closedirp) DIR *dir = NULL;
	struct dirent *de;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(d->rdev), minor(d->rdev));
	dir = opendir(path);
	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(ret->what, sizeof(ret->what), "in use by %s (a device stacked on it)", de->d_name);
		return -EBUSY;
	}
	return 0;
}

/* What a loop device reads and writes, as the loop driver itself reports it: the backing file's
 * filesystem and inode, and its device number when the backing file is a block device. The
 * sysfs backing_file name is no identity: it can hold a newline, end in " (deleted)", or name
 * another file by now. */
struct loop_backing {
	char name[32];  /* "loop3" */
	dev_t rdev;     /* the loop device itself */
	dev_t dev;      /* backing file: its filesystem ... */
	ino_t ino;      /* ... and inode */
	dev_t bdev;     /* backing block device, 0 when the backing file is a regular file */
};

/* The kernel encodes device numbers in loop_info64 as huge_encode_dev(): minor's low byte,
 * major, then minor's high bits. */
static dev_t loop_decode_dev(uint64_t v)
{
	return makedev((unsigned)((v >> 8) & 0xfff), (unsigned)((v & 0xff) | ((v >> 12) & 0xfff00)));
}

/* Returns 1 with *ret filled when /dev/NAME is an attached loop device, 0 when it is not
 * attached, or -errno when it cannot be inspected (the caller then cannot prove anything). */
static int loop_backing_read(const char *name, struct loop_backing *ret)
{
	char path[PATH_MAX];
	struct loop_info64 info = {};
	_cleanup_close_ int fd = -1;
	struct stat st;

	snprintf(path, sizeof(path), "/sys/block/%s/loop", name);
	if (access(path, F_OK) < 0)
		return 0; /* the loop/ attributes exist only while a file is attached */
	snprintf(path, sizeof(path), "/dev/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int r = negative_errno();
		char attached[PATH_MAX];

		/* Another program's loop device going away as we look: nothing to prove then. */
		snprintf(attached, sizeof(attached), "/sys/block/%s/loop", name);
		if (r == -ENXIO || r == -ENODEV || access(attached, F_OK) < 0)
			return 0;
		return r;
	}
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
		return errno == ENXIO ? 0 : negative_errno(); /* detached meanwhile */
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "%s", name);
	ret->rdev = st.st_rdev;
	ret->dev = loop_decode_dev(info.lo_device);
	ret->ino = (ino_t)info.lo_inode;
	ret->bdev = loop_decode_dev(info.lo_rdevice);
	return 1;
}

static bool loop_backed_by(const struct loop_backing *l, const struct device_info *d)
{
	if (d->is_block)
		return l->bdev != 0 && l->bdev == d->rdev;
	return l->bdev == 0 && l->dev == d->dev && l->ino == d->ino;
}

/* Every attached loop device, into *ret (free()). Returns the count or -errno. */
static int loop_devices_list(struct loop_backing **ret)
{
	_cleanup_(closedirp) DIR *dir = NULL;
	_cleanup_free_ struct loop_backing *list = NULL;
	size_t n = 0, allocated = 0;
	struct dirent *de;

	dir = opendir("/sys/block");
	if (!dir) {
		*ret = NULL;
		return errno == ENOENT ? 0 : negative_errno();
	}
	while ((de = readdir(dir))) {
		struct loop_backing l;
		int r;

		if (!startswith(de->d_name, "loop"))
			continue;
		r = loop_backing_read(de->d_name, &l);
		if (r < 0)
			return r;
		if (r == 0)
			continue;
		if (n == allocated) {
			size_t a = allocated ? allocated * 2 : 16;
			struct loop_backing *p = reallocarray(list, a, sizeof(*p));

			if (!p)
				return -ENOMEM;
			list = p;
			allocated = a;
		}
		list[n++] = l;
	}
	*ret = TAKE_PTR(list);
	return (int)n;
}

static int check_open_by_process(const struct device_info *d, struct device_usage *ret)
{
	_cleanup_proc_users_ struct proc_user *users = NULL;
	struct stat st = {};
	size_t n = 0;
	int r;

	/* The identity probed at the start, not a new look-up of the name. */
	if (d->is_block) {
		st.st_mode = S_IFBLK;
		st.st_rdev = d->rdev;
	} else {
		st.st_mode = S_IFREG;
		st.st_dev = d->dev;
		st.st_ino = d->ino;
	}
	r = proc_users_of_device(&st, &users, &n);
	if (r < 0 && r != -E2BIG)
		return r;
	if (n == 0)
		return 0;
	snprintf(ret->what, sizeof(ret->what), "held open by pid %d (%s)%s", (int)users[0].pid,
		 users[0].comm, n > 1 ? " and other processes" : "");
	return -EBUSY;
}

/* The name of what loop device l is backed by (sysfs: for messages only, never to decide). */
static void loop_backing_name(const struct loop_backing *l, char *buf, size_t len)
{
	char path[PATH_MAX];
	_cleanup_free_ char *name = NULL;
	size_t n;

	snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", l->name);
	if (read_full_file(path, PATH_MAX, &name, &n) < 0) {
		snprintf(buf, len, "of /dev/%s", l->name);
		return;
	}
	while (n > 0 && name[n - 1] == '\n')
		name[--n] = 0;
	string_escape_hidden(name, buf, len); /* a newline in a file name shows as \n */
}

/* A node for block device rdev to open: /dev/block/M:m (udev) or /dev/DEVNAME from sysfs, checked
 * to be that very device. */
static int block_node(dev_t rdev, char *buf, size_t len)
{
	char path[128];
	_cleanup_free_ char *uevent = NULL;
	const char *p;
	struct stat st;
	size_t n;

	snprintf(buf, len, "/dev/block/%u:%u", major(rdev), minor(rdev));
	if (stat(buf, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == rdev)
		return 0;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", major(rdev), minor(rdev));
	if (read_full_file(path, 4096, &uevent, &n) < 0)
		return -ENODEV;
	p = strstr(uevent, "DEVNAME=");
	if (!p)
		return -ENODEV;
	p += strlen("DEVNAME=");
	snprintf(buf, len, "/dev/%.*s", (int)strcspn(p, "\n"), p);
	if (stat(buf, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == rdev)
		return 0;
	return -ENODEV;
}

/* Loop devices stacked on loop devices: a chain deeper than this is refused as unprovable. */
#define DEVICE_STACK_MAX 8

/* d is unused when nothing but the loop device `via` (0: none) reads or writes its data. */
static int check_unused(const struct device_info *d, const struct loop_backing *loops, size_t n_loops,
			dev_t via, unsigned depth, struct device_usage *ret)
{
	const struct loop_backing *self = NULL;
	int r;

	if (depth > DEVICE_STACK_MAX)
		return -ELOOP;
	r = check_mounted(d, ret);
	if (r < 0)
		return r;
	if (d->is_block) {
		_cleanup_close_ int fd = -1;

		r = check_holders(d, ret);
		if (r < 0)
			return r;
		/* The kernel's own answer: an exclusive open fails while anything claims it (a
		 * filesystem mounted in any namespace, or lazily unmounted but still alive). */
		fd = open(d->path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			if (errno != EBUSY)
				return negative_errno();
			snprintf(ret->what, sizeof(ret->what), "claimed exclusively by the kernel or another program");
			return -EBUSY;
		}
	}
	/* A loop device on top of d reads and writes d, whoever holds the loop device; loop
	 * devices claim nothing, so only the driver's own record shows them. */
	for (size_t i = 0; i < n_loops; i++)
		if (loops[i].rdev != via && loop_backed_by(&loops[i], d)) {
			snprintf(ret->what, sizeof(ret->what), "attached to /dev/%s (losetup -d /dev/%s)",
				 loops[i].name, loops[i].name);
			return -EBUSY;
		}
	r = check_open_by_process(d, ret);
	if (r < 0)
		return r;

	/* d is itself a loop device: the file or device behind it holds the same data, and must be
	 * unused by everything but d. */
	if (d->is_block)
		for (size_t i = 0; i < n_loops; i++)
			if (loops[i].rdev == d->rdev)
				self = &loops[i];
	if (self) {
		struct device_info b = {
			.is_block = self->bdev != 0,
			.rdev = self->bdev,
			.dev = self->dev,
			.ino = self->ino,
		};
		char name[400], why[sizeof(ret->what)];

		if (b.is_block) {
			r = block_node(b.rdev, b.path, sizeof(b.path));
			if (r < 0)
				return r;
		}
		r = check_unused(&b, loops, n_loops, self->rdev, depth + 1, ret);
		if (r == -EBUSY) {
			loop_backing_name(self, name, sizeof(name));
			snprintf(why, sizeof(why), "%s", ret->what);
			snprintf(ret->what, sizeof(ret->what), "its backing %s %s is %s%.500s",
				 b.is_block ? "device" : "file", name, startswith(why, "attached") ? "also " : "",
				 why);
		}
		return r;
	}
	return 0;
}

int device_check_holders(const struct device_info *d, struct device_usage *ret)
{
	memset(ret, 0, sizeof(*ret));
	return d->is_block ? check_holders(d, ret) : 0;
}

int device_check_unused(const struct device_info *d, struct device_usage *ret)
{
	_cleanup_free_ struct loop_backing *loops = NULL;
	int n;

	memset(ret, 0, sizeof(*ret));
	n = loop_devices_list(&loops);
	if (n < 0)
		return n;
	return check_unused(d, loops, (size_t)n, 0, 0, ret);
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
	_cleanup_(device_probe_freep) blkid_probe pr = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	r = device_probe_new(fd, BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_BADCSUM, false, &pr);
	if (r < 0)
		return r;
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

/* Reads a short sysfs attribute into buf without its newline. Returns 0 or -errno. */
static int read_sysfs_line(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return negative_errno();
	n = read(fd, buf, len - 1);
	if (n < 0)
		return negative_errno();
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

int device_dm_by_name(const char *name, dev_t *ret)
{
	_cleanup_(closedirp) DIR *d = opendir("/sys/block");
	struct dirent *e;

	if (!d)
		return negative_errno();
	while ((e = readdir(d))) {
		char path[PATH_MAX], buf[256];
		unsigned ma, mi;

		if (!startswith(e->d_name, "dm-"))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dm/name", e->d_name);
		if (read_sysfs_line(path, buf, sizeof(buf)) < 0 || !streq(buf, name))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dev", e->d_name);
		if (read_sysfs_line(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%u:%u", &ma, &mi) != 2)
			return -EIO;
		*ret = makedev(ma, mi);
		return 0;
	}
	return -ENOENT;
}
