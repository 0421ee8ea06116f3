/* The OS volume's boot side: checks, /boot/vmcrypt and GRUB's command line. */
#include <blkid.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/process.h"
#include "basic/string-util.h"
#include "shared/agent/os-volume.h"
#include "shared/agent/select.h"
#include "shared/agent/tabs.h"
#include "shared/client/os-boot.h"
#include "shared/secret.h"
#include "shared/tpm/tpm-seal.h"
#include "shared/volume/volumes.h"

/* The header file (16 MiB of keyslot area and metadata) and a margin for the initramfs images
 * that grow by vmcrypt's programs and libraries at each kernel update. */
#define OS_BOOT_ROOM_MIN (48ULL << 20)
#define OS_HOOK "/usr/share/initramfs-tools/hooks/vmcrypt"
#define OS_DRACUT_MODULE "/usr/lib/dracut/modules.d/90vmcrypt/module-setup.sh"
#define OS_GRUB_TIMEOUT_S 300
/* The /boot the agent makes: 512 MiB (a few kernels and their initramfs images, the header),
 * aligned to 1 MiB, after the last partition. */
#define OS_BOOT_PART_SECTORS (512ULL * 2048)
#define OS_BOOT_PART_ALIGN 2048ULL
#define OS_BOOT_LABEL "vmcrypt-boot"
/* The backup GPT at the disk's end: 32 sectors of entries and the header. */
#define GPT_BACKUP_SECTORS 34ULL
#define BIOS_BOOT_TYPE "21686148-6449-6e6f-744e-656564454649"
#define OS_NEW_BOOT_MNT "/run/vmcrypt/new-boot"

enum os_initramfs {
	OS_INITRAMFS_NONE,
	OS_INITRAMFS_TOOLS,
	OS_INITRAMFS_DRACUT,
};

_printf_(3, 4) static int refusal(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int agent_os_probe(struct agent_os *ret, char *err, size_t errlen)
{
	_cleanup_volumes_ struct volume *vols = NULL;
	const struct volume *os;
	char mapping[80];
	size_t n = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = volumes_discover(&vols, &n);
	if (r < 0) {
		snprintf(err, errlen, "cannot list the volumes (%s)", strerror(-r));
		return r;
	}
	os = volumes_os(vols, n);
	if (!os) {
		snprintf(err, errlen, "/ is not on a block device");
		return -ENODEV;
	}
	(void)agent_volume_mapper_name(AGENT_OS_NAME, mapping, sizeof(mapping));
	snprintf(ret->fstype, sizeof(ret->fstype), "%s", os->fstype);
	snprintf(ret->disk, sizeof(ret->disk), "%s", os->parent);
	snprintf(ret->fs_uuid, sizeof(ret->fs_uuid), "%s", os->fs_uuid);
	if (os->kind == VOLUME_KIND_CRYPT) {
		ret->on_mapping = streq(os->dm_name, mapping);
		ret->on_other_crypt = !ret->on_mapping;
		snprintf(ret->device, sizeof(ret->device), "%s", os->backing);
	} else {
		ret->lvm = os->kind == VOLUME_KIND_LVM;
		snprintf(ret->device, sizeof(ret->device), "%s", os->device);
	}
	for (size_t i = 0; i < n; i++)
		if (streq(vols[i].mountpoint, "/boot") && vols[i].devnum != os->devnum) {
			snprintf(ret->boot_device, sizeof(ret->boot_device), "%s", vols[i].device);
			snprintf(ret->boot_uuid, sizeof(ret->boot_uuid), "%s", vols[i].fs_uuid);
			snprintf(ret->boot_fstype, sizeof(ret->boot_fstype), "%s", vols[i].fstype);
		}
	return 0;
}

const char *agent_os_boot_dir(void)
{
	return OS_BOOT_DIR;
}

int agent_os_header_path(char *buf, size_t len)
{
	return snprintf(buf, len, "%s/%s", agent_os_boot_dir(), OS_BOOT_HEADER_NAME) >= (int)len ? -ENAMETOOLONG : 0;
}

/* The initramfs builder: initramfs-tools (Debian's default) when update-initramfs is there, else
 * dracut (the RHEL family; installable on Debian, where it replaces initramfs-tools but leaves
 * initramfs-tools-core and its mkinitramfs behind). vmcrypt's package ships both the hook and
 * the module, so the builder, not the hook, decides. */
static enum os_initramfs initramfs_tool(void)
{
	static const char *const itools[] = { "/usr/sbin/update-initramfs", "/sbin/update-initramfs" };
	static const char *const dracut[] = { "/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut" };

	for (size_t i = 0; i < ELEMENTSOF(itools); i++)
		if (access(itools[i], X_OK) == 0)
			return OS_INITRAMFS_TOOLS;
	for (size_t i = 0; i < ELEMENTSOF(dracut); i++)
		if (access(dracut[i], X_OK) == 0)
			return OS_INITRAMFS_DRACUT;
	return OS_INITRAMFS_NONE;
}

bool agent_os_uses_dracut(void)
{
	return initramfs_tool() == OS_INITRAMFS_DRACUT;
}

/* Every initramfs image in /boot holds the boot script: the newest kernel is the one GRUB boots,
 * and an older one is the fallback an administrator picks after a bad update. Debian names them
 * initrd.img-VERSION (dracut too), the RHEL family initramfs-VERSION.img. */
static int check_initramfs(char *err, size_t errlen)
{
	_cleanup_(closedirp) DIR *d = NULL;
	enum os_initramfs tool = initramfs_tool();
	const char *rebuild;
	struct dirent *de;
	unsigned seen = 0;

	switch (tool) {
	case OS_INITRAMFS_TOOLS:
		if (access(OS_HOOK, F_OK) < 0)
			return refusal(err, errlen, "the initramfs-tools hook %s is missing: the initramfs could not "
				       "open the OS volume; reinstall vmcrypt's package", OS_HOOK);
		rebuild = "update-initramfs -u -k all";
		break;
	case OS_INITRAMFS_DRACUT:
		if (access(OS_DRACUT_MODULE, F_OK) < 0)
			return refusal(err, errlen, "dracut's module %s is missing: the initramfs could not open the "
				       "OS volume; reinstall vmcrypt's package", OS_DRACUT_MODULE);
		rebuild = "dracut --force --regenerate-all";
		break;
	default:
		return refusal(err, errlen, "no initramfs builder (initramfs-tools or dracut): the OS volume can only "
			       "be opened by an initramfs; install initramfs-tools");
	}
	d = opendir("/boot");
	if (!d)
		return refusal(err, errlen, "cannot read /boot (%s)", strerror(errno));
	while ((de = readdir(d))) {
		char path[PATH_MAX], cmd[PATH_MAX + 160];
		char *argv[] = { (char *)"sh", (char *)"-c", cmd, NULL };
		int r;

		if (!startswith(de->d_name, "initrd.img-") &&
		    !(startswith(de->d_name, "initramfs-") && endswith(de->d_name, ".img") &&
		      !strstr(de->d_name, "kdump")))
			continue;
		snprintf(path, sizeof(path), "/boot/%s", de->d_name);
		if (strpbrk(path, "'\\"))
			continue;
		if (tool == OS_INITRAMFS_TOOLS)
			snprintf(cmd, sizeof(cmd), "lsinitramfs '%s' | grep -q '^scripts/local-top/vmcrypt$'", path);
		else
			/* lsinitrd lists like ls -l: the path ends the line. */
			snprintf(cmd, sizeof(cmd), "lsinitrd '%s' | grep -q ' usr/lib/vmcrypt/dracut-unlock$'", path);
		r = process_run_timeout(argv, NULL, 0, 120);
		if (r != 0)
			return refusal(err, errlen, "%s does not hold vmcrypt's boot script%s: run '%s'", path,
				       tool == OS_INITRAMFS_DRACUT ? " (is dracut-network installed? vmcrypt's module "
								     "needs dracut's network module)" : "",
				       rebuild);
		seen++;
	}
	if (seen == 0)
		return refusal(err, errlen, "no initramfs image in /boot (initrd.img-*, initramfs-*.img): the OS volume "
			       "can only be opened by an initramfs");
	return 0;
}

static bool grub_tool(const char **ret)
{
	static const char *const tools[] = { "/usr/sbin/update-grub", "/usr/sbin/grub-mkconfig" };

	for (size_t i = 0; i < ELEMENTSOF(tools); i++)
		if (access(tools[i], X_OK) == 0) {
			*ret = tools[i];
			return true;
		}
	return false;
}

static int read_u64_file(const char *path, uint64_t *ret)
{
	_cleanup_free_ char *text = NULL;
	/* sysfs says 4096 bytes for every attribute. */
	int r = read_full_file(path, 4096, &text, NULL);

	if (r < 0)
		return r;
	text[strcspn(text, "\n")] = 0;
	return parse_u64(text, ret);
}

/* The disk's size and the end of its last partition, in 512-byte sectors, and the lowest free
 * partition number, from /sys/class/block/DISK. */
static int disk_layout(const char *disk, uint64_t *ret_size, uint64_t *ret_end, unsigned *ret_free_nr)
{
	_cleanup_(closedirp) DIR *d = NULL;
	char path[PATH_MAX];
	bool used[129] = { false };
	struct dirent *de;
	uint64_t end = 0;
	int r;

	snprintf(path, sizeof(path), "/sys/class/block/%s/size", disk);
	r = read_u64_file(path, ret_size);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "/sys/class/block/%s", disk);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		uint64_t start, size, nr;

		if (!startswith(de->d_name, disk))
			continue;
		snprintf(path, sizeof(path), "/sys/class/block/%s/%s/start", disk, de->d_name);
		if (read_u64_file(path, &start) < 0)
			continue;
		snprintf(path, sizeof(path), "/sys/class/block/%s/%s/size", disk, de->d_name);
		if (read_u64_file(path, &size) < 0)
			continue;
		snprintf(path, sizeof(path), "/sys/class/block/%s/%s/partition", disk, de->d_name);
		if (read_u64_file(path, &nr) == 0 && nr < ELEMENTSOF(used))
			used[nr] = true;
		end = MAX(end, start + size);
	}
	*ret_end = end;
	*ret_free_nr = 0;
	for (unsigned i = 1; i < ELEMENTSOF(used); i++)
		if (!used[i]) {
			*ret_free_nr = i;
			break;
		}
	return 0;
}

/* Where the new partition goes: its first sector, or 0 with the room there is in *ret_room_mib. */
static uint64_t boot_part_start(const char *disk, uint64_t *ret_room_mib, unsigned *ret_nr)
{
	uint64_t size, end, start;

	*ret_room_mib = 0;
	if (disk_layout(disk, &size, &end, ret_nr) < 0 || *ret_nr == 0)
		return 0;
	start = (end + OS_BOOT_PART_ALIGN - 1) / OS_BOOT_PART_ALIGN * OS_BOOT_PART_ALIGN;
	if (size > start + GPT_BACKUP_SECTORS)
		*ret_room_mib = (size - start - GPT_BACKUP_SECTORS) / 2048;
	return start + OS_BOOT_PART_SECTORS + GPT_BACKUP_SECTORS <= size ? start : 0;
}

static int probe_value(const char *dev, const char *name, char *buf, size_t len)
{
	blkid_probe pr = blkid_new_probe_from_filename(dev);
	const char *v = NULL;
	int r = -ENOENT;

	buf[0] = 0;
	if (!pr)
		return -errno ? -errno : -EIO;
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	if (blkid_do_safeprobe(pr) == 0 && blkid_probe_lookup_value(pr, name, &v, NULL) == 0 && v) {
		snprintf(buf, len, "%s", v);
		r = 0;
	}
	blkid_free_probe(pr);
	return r;
}

/* Whether the disk's partition table has a BIOS boot partition (GRUB's core.img for i386-pc):
 * asked of the table, as a partition without a filesystem gives a probe of its own nothing. */
static bool disk_has_bios_boot(const char *disk)
{
	char dev[80];
	blkid_probe pr;
	blkid_partlist ls;
	bool found = false;

	snprintf(dev, sizeof(dev), "/dev/%s", disk);
	pr = blkid_new_probe_from_filename(dev);
	if (!pr)
		return false;
	ls = blkid_probe_get_partitions(pr);
	for (int i = 0; ls && i < blkid_partlist_numof_partitions(ls); i++) {
		const char *t = blkid_partition_get_type_string(blkid_partlist_get_partition(ls, i));

		if (t && strcasecmp(t, BIOS_BOOT_TYPE) == 0)
			found = true;
	}
	blkid_free_probe(pr);
	return found;
}

/* The partition table of the disk is GPT (the new partition needs a free slot and a name). */
static bool disk_is_gpt(const char *disk)
{
	char dev[80], t[16];

	snprintf(dev, sizeof(dev), "/dev/%s", disk);
	return probe_value(dev, "PTTYPE", t, sizeof(t)) == 0 && streq(t, "gpt");
}

static int split_possible(const struct agent_os *os, char *err, size_t errlen)
{
	uint64_t room;
	unsigned nr;

	if (!os->disk[0])
		return refusal(err, errlen, "/boot is inside the root filesystem, which is not on a partition: give "
			       "/boot a filesystem of its own (docs/os-volume.md)");
	if (!disk_is_gpt(os->disk))
		return refusal(err, errlen, "/boot is inside the root filesystem and /dev/%s has no GPT partition "
			       "table for a new /boot partition: give /boot a filesystem of its own", os->disk);
	if (access("/usr/sbin/sfdisk", X_OK) < 0 || access("/usr/bin/partx", X_OK) < 0)
		return refusal(err, errlen, "/boot is inside the root filesystem and sfdisk or partx is missing to "
			       "make it a partition of its own (install fdisk and util-linux)");
	if (access("/usr/sbin/grub-install", X_OK) < 0)
		return refusal(err, errlen, "/boot is inside the root filesystem and grub-install is missing to "
			       "boot from a new /boot partition (install grub2-common)");
	if (!boot_part_start(os->disk, &room, &nr))
		return refusal(err, errlen, "/boot is inside the root filesystem and /dev/%s has %llu MiB free after "
			       "its last partition, %llu MiB are needed for a /boot of its own: grow the disk by "
			       "%llu MiB and run the agent before the next reboot (cloud-init's growpart would "
			       "give the space to /)", os->disk, (unsigned long long)room,
			       (unsigned long long)(OS_BOOT_PART_SECTORS / 2048 + 1),
			       (unsigned long long)(OS_BOOT_PART_SECTORS / 2048 + 1));
	return 0;
}

/* Runs argv; on failure err says which command and what it printed. */
static int run(char *const argv[], unsigned timeout, char *err, size_t errlen)
{
	char out[1024] = "";
	int r = process_run_timeout(argv, out, sizeof(out), timeout);

	if (r != 0) {
		/* Its words, on one line: the tools put the reason last. */
		size_t n = strlen(out);

		while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
			out[--n] = 0;
		for (char *p = out; *p; p++)
			if (*p == '\n')
				*p = ' ';
		snprintf(err, errlen, "%s %s failed (%s %d): %s", argv[0], argv[1] ? argv[1] : "",
			 r < 0 ? strerror(-r) : "exit status", r, n > 300 ? out + n - 300 : (out[0] ? out : "no output"));
		return r < 0 ? r : -EIO;
	}
	return 0;
}

/* The mount's source device (canonical), "" when path is no mount point. */
static void mount_source(const char *path, char *buf, size_t len)
{
	char *argv[] = { (char *)"findmnt", (char *)"-n", (char *)"-o", (char *)"SOURCE", (char *)"--mountpoint",
			 (char *)path, NULL };
	char out[PATH_MAX] = "";

	buf[0] = 0;
	if (process_run_timeout(argv, out, sizeof(out), 30) == 0)
		snprintf(buf, len, "%.*s", (int)strcspn(out, "\n"), out);
}

int agent_os_make_boot(struct agent_os *os, char *err, size_t errlen)
{
	char dev[PATH_MAX], disk[80], uuid[64], type[32], src[PATH_MAX], esp[PATH_MAX] = "", real[PATH_MAX];
	int r;

	snprintf(disk, sizeof(disk), "/dev/%s", os->disk);
	/* 1. The partition, unless an earlier run made it. */
	if (fstab_source_resolve("PARTLABEL=" OS_BOOT_LABEL, dev, sizeof(dev)) < 0) {
		char script[256], cmd[512];
		char *relocate[] = { (char *)"sfdisk", (char *)"--no-reread", (char *)"--no-tell-kernel", (char *)"--relocate",
				     (char *)"gpt-bak-std", disk, NULL };
		char *sh[] = { (char *)"sh", (char *)"-c", cmd, NULL };
		char nrs[16];
		char *partx[] = { (char *)"partx", (char *)"-a", (char *)"--nr", nrs, disk, NULL };
		char *settle[] = { (char *)"udevadm", (char *)"settle", (char *)"--timeout=30", NULL };
		uint64_t start, room;
		unsigned nr;

		/* The backup GPT moves to the disk's new end first: until then the grown space is
		 * outside the table. */
		r = run(relocate, 60, err, errlen);
		if (r < 0)
			return r;
		start = boot_part_start(os->disk, &room, &nr);
		if (!start)
			return refusal(err, errlen, "/dev/%s: no room for /boot after its last partition any more", os->disk);
		snprintf(script, sizeof(script), "start=%llu, size=%llu, type=L, name=%s",
			 (unsigned long long)start, (unsigned long long)OS_BOOT_PART_SECTORS, OS_BOOT_LABEL);
		/* --no-reread: sfdisk would refuse a disk whose partitions are mounted; the kernel
		 * is told of the new one below. --append takes the first free slot, nr. */
		snprintf(cmd, sizeof(cmd), "echo '%s' | sfdisk --no-reread --no-tell-kernel --append %s 2>&1", script, disk);
		r = run(sh, 60, err, errlen);
		if (r < 0)
			return r;
		/* The kernel learns of the one new partition (BLKPG): the others are in use. */
		snprintf(nrs, sizeof(nrs), "%u", nr);
		r = run(partx, 60, err, errlen);
		if (r < 0)
			return r;
		(void)run(settle, 60, err, errlen);
		snprintf(dev, sizeof(dev), "%s%s%u", disk, isdigit((unsigned char)disk[strlen(disk) - 1]) ? "p" : "", nr);
		for (int i = 0; i < 100 && access(dev, F_OK) < 0; i++)
			usleep(100 * 1000);
		log_info("/boot: made partition %s (%llu MiB at sector %llu) for a /boot of its own", dev,
			 (unsigned long long)(OS_BOOT_PART_SECTORS / 2048), (unsigned long long)start);
	}
	/* 2. Its filesystem. */
	if (probe_value(dev, "TYPE", type, sizeof(type)) < 0) {
		char *mkfs[] = { (char *)"mkfs.ext4", (char *)"-q", (char *)"-L", (char *)OS_BOOT_LABEL, dev, NULL };

		r = run(mkfs, 300, err, errlen);
		if (r < 0)
			return r;
	}
	if (probe_value(dev, "UUID", uuid, sizeof(uuid)) < 0)
		return refusal(err, errlen, "%s: no filesystem UUID after mkfs.ext4", dev);
	/* 3. The copy, and the mount in place of the directory. */
	mount_source("/boot", src, sizeof(src));
	if (!src[0] || !realpath(src, real) || !realpath(dev, esp) || !streq(real, esp)) {
		char *mnt_new[] = { (char *)"mount", dev, (char *)OS_NEW_BOOT_MNT, NULL };
		char *copy[] = { (char *)"cp", (char *)"-ax", (char *)"/boot/.", (char *)OS_NEW_BOOT_MNT "/", NULL };
		char *umnt_new[] = { (char *)"umount", (char *)OS_NEW_BOOT_MNT, NULL };
		char *umnt_esp[] = { (char *)"umount", (char *)"/boot/efi", NULL };
		char *mnt_boot[] = { (char *)"mount", dev, (char *)"/boot", NULL };
		char *mnt_esp[] = { (char *)"mount", (char *)"/boot/efi", NULL };
		_cleanup_tab_file_ struct tab_file *ft = NULL;
		char source[128];
		bool had_esp;

		if (src[0])
			return refusal(err, errlen, "/boot is mounted from %s, not the partition the agent made (%s)", src, dev);
		r = mkdir_p(OS_NEW_BOOT_MNT, 0700);
		if (r >= 0)
			r = run(mnt_new, 60, err, errlen);
		if (r < 0)
			return r;
		r = run(copy, 600, err, errlen);
		if (r >= 0 && mkdir_p(OS_NEW_BOOT_MNT "/efi", 0755) < 0)
			r = -EIO;
		sync();
		(void)run(umnt_new, 60, err, errlen);
		if (r < 0)
			return r;
		snprintf(source, sizeof(source), "UUID=%s", uuid);
		r = tab_file_load("/etc/fstab", &ft);
		if (r >= 0)
			r = fstab_add(ft, source, "/boot", "ext4", "defaults", 2, "/boot/efi");
		if (r > 0)
			r = tab_file_save(ft, "/etc/fstab");
		if (r < 0)
			return refusal(err, errlen, "cannot add /boot to /etc/fstab (%s)", strerror(-r));
		mount_source("/boot/efi", esp, sizeof(esp));
		had_esp = esp[0] != 0;
		if (had_esp && (r = run(umnt_esp, 60, err, errlen)) < 0)
			return r;
		r = run(mnt_boot, 60, err, errlen);
		if (r >= 0 && had_esp)
			r = run(mnt_esp, 60, err, errlen);
		if (r < 0)
			return r;
		log_info("/boot: copied to %s and mounted from it (fstab: %s /boot)", dev, source);
	}
	/* 4. GRUB for the firmware the disk boots with, reading the new /boot. */
	{
		if (disk_has_bios_boot(os->disk)) {
			char *gi[] = { (char *)"grub-install", (char *)"--target=i386-pc", disk, NULL };

			r = run(gi, OS_GRUB_TIMEOUT_S, err, errlen);
			if (r < 0)
				return r;
		}
		if (access("/boot/efi/EFI", F_OK) == 0) {
			char *gi[] = { (char *)"grub-install", (char *)"--target=x86_64-efi", (char *)"--efi-directory=/boot/efi",
				       (char *)"--no-nvram", NULL, NULL };

			/* The fallback path only, as the image had it; else the distribution's own. */
			if (access("/boot/efi/EFI/debian", F_OK) < 0)
				gi[4] = (char *)"--removable";
			r = run(gi, OS_GRUB_TIMEOUT_S, err, errlen);
			if (r < 0)
				return r;
		}
	}
	return agent_os_probe(os, err, errlen);
}

int agent_os_check(const struct agent_os *os, char *err, size_t errlen)
{
	struct statvfs sv;
	const char *tool;

	if (os->on_other_crypt)
		return refusal(err, errlen, "/ is on a dm-crypt volume the agent did not make: it is encrypted already");
	if (os->lvm)
		return refusal(err, errlen, "/ (%s) is an LVM logical volume: the agent encrypts an OS volume on a "
			       "partition or a whole disk only", os->device);
	if (!os->boot_device[0]) {
		/* The kernel, the initramfs and the header must stay readable before the root is
		 * opened: a /boot of its own is made first when it can be. */
		int r = split_possible(os, err, errlen);

		if (r < 0)
			return r;
		if (!grub_tool(&tool))
			return refusal(err, errlen, "no update-grub or grub-mkconfig: the kernel command line cannot be set "
				       "(install grub2-common)");
		return check_initramfs(err, errlen);
	}
	if (!os->boot_uuid[0])
		return refusal(err, errlen, "/boot (%s) has no filesystem UUID to name it by on the kernel command line",
			       os->boot_device);
	if (statvfs("/boot", &sv) < 0)
		return refusal(err, errlen, "cannot stat /boot (%s)", strerror(errno));
	if (sv.f_flag & ST_RDONLY)
		return refusal(err, errlen, "/boot is mounted read-only: remount it read-write");
	if ((unsigned long long)sv.f_bavail * sv.f_frsize < OS_BOOT_ROOM_MIN)
		return refusal(err, errlen, "/boot has %llu MiB free, the header and the initramfs images need %llu MiB: "
			       "remove old kernels ('apt autoremove --purge')",
			       (unsigned long long)sv.f_bavail * sv.f_frsize >> 20, OS_BOOT_ROOM_MIN >> 20);
	if (!grub_tool(&tool))
		return refusal(err, errlen, "no update-grub or grub-mkconfig: the kernel command line cannot be set "
			       "(install grub2-common)");
	return check_initramfs(err, errlen);
}

static int copy_file(const char *from, const char *to, mode_t mode, bool secret, char *err, size_t errlen)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_secret_ void *s = NULL;
	size_t size = 0;
	int r;

	if (secret) {
		bool world = false;

		r = secret_read_file(from, &s, &size, &world);
	} else
		r = read_full_file(from, 1 << 20, &text, &size);
	if (r >= 0)
		r = write_file_atomic(to, secret ? s : text, size, mode);
	if (r < 0)
		snprintf(err, errlen, "cannot copy %s to %s (%s)", from, to, strerror(-r));
	return r;
}

int agent_os_seal_decide(const struct agent_conf *conf, char *err, size_t errlen)
{
	static const char plain[] = "or set SealCredential=no in agent.conf for a plain 0600 copy on /boot "
				    "(docs/os-volume.md, the threat model)";
	int r;

	if (conf->seal_credential == AGENT_SEAL_NO)
		return 0;
	r = tpm_seal_present(NULL);
	if (r == 1)
		return 1;
	if (r == 0 && conf->seal_credential == AGENT_SEAL_AUTO)
		return 0;
	if (r == 0)
		return refusal(err, errlen, "SealCredential=yes and this VM has no TPM 2.0 to seal the VM credential to: "
			       "attach a vTPM to the VM, or set SealCredential=auto or no in agent.conf");
	/* A TPM that is there but cannot be used: a plain copy instead would silently give up
	 * what the administrator expects of a VM with a TPM. */
	if (r == -EACCES)
		return refusal(err, errlen, "the TPM 2.0 cannot be opened (/dev/tpmrm0: permission denied) or "
			       "its owner hierarchy has a password the agent does not know: clear the owner "
			       "password (tpm2_changeauth -c owner), %s", plain);
	if (r == -ELIBACC)
		return refusal(err, errlen, "tpm2-tss cannot load its device module (libtss2-tcti-device.so.0): "
			       "install the package libtss2-tcti-device0, %s", plain);
	return refusal(err, errlen, "the TPM 2.0 does not answer (%s): %s", strerror(-r), plain);
}

/* Removes dir/name if it is there, durably (the directory synced). */
static int remove_durably(const char *dir, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (unlink(path) < 0)
		return errno == ENOENT ? 0 : -errno;
	return fsync_parent_dir(path);
}

int agent_os_copy_credentials(const struct agent_conf *conf, char *err, size_t errlen)
{
	const char *dir = agent_os_boot_dir();
	char from[PATH_MAX], to[PATH_MAX];
	int r, seal;

	seal = agent_os_seal_decide(conf, err, errlen);
	if (seal < 0)
		return seal;
	r = mkdir_p(dir, 0700);
	if (r >= 0 && chmod(dir, 0700) < 0)
		r = -errno;
	if (r < 0) {
		snprintf(err, errlen, "cannot make %s (%s)", dir, strerror(-r));
		return r;
	}
	if (!agent_conf_path(AGENT_CONF_NAME, from, sizeof(from)))
		return -ENAMETOOLONG;
	snprintf(to, sizeof(to), "%s/%s", dir, AGENT_CONF_NAME);
	r = copy_file(from, to, 0600, false, err, errlen);
	if (r < 0)
		return r;
	if (!agent_conf_path(AGENT_CREDENTIAL_NAME, from, sizeof(from)))
		return -ENAMETOOLONG;
	if (seal) {
		_cleanup_secret_ void *s = NULL;
		size_t size = 0;
		bool world = false;

		snprintf(to, sizeof(to), "%s/%s", dir, OS_BOOT_SEALED_NAME);
		r = secret_read_file(from, &s, &size, &world);
		if (r >= 0)
			r = tpm_seal_file(NULL, s, size, to);
		if (r < 0) {
			snprintf(err, errlen, "cannot seal %s to the TPM 2.0 into %s (%s)", from, to, strerror(-r));
			return r;
		}
		/* The sealed copy is there before the plain one goes: the initramfs always has one. */
		r = remove_durably(dir, AGENT_CREDENTIAL_NAME);
		if (r < 0) {
			snprintf(err, errlen, "cannot remove the plain copy %s/%s (%s)", dir, AGENT_CREDENTIAL_NAME,
				 strerror(-r));
			return r;
		}
		log_info("the VM credential's copy for the initramfs is sealed to this VM's TPM 2.0 (%s)", to);
	} else {
		snprintf(to, sizeof(to), "%s/%s", dir, AGENT_CREDENTIAL_NAME);
		r = copy_file(from, to, 0600, true, err, errlen);
		if (r >= 0)
			r = remove_durably(dir, OS_BOOT_SEALED_NAME);
		if (r < 0)
			return r;
	}
	if (conf->ca_file[0]) {
		snprintf(to, sizeof(to), "%s/%s", dir, AGENT_CA_NAME);
		r = copy_file(conf->ca_file, to, 0644, false, err, errlen);
	}
	return r;
}

int agent_os_write_boot_conf(const char *device, const char *mapping, const char *volume, char *err,
			     size_t errlen)
{
	struct os_boot_conf c = { 0 };
	int r;

	snprintf(c.device, sizeof(c.device), "%s", device);
	snprintf(c.header, sizeof(c.header), "%s", OS_BOOT_HEADER_NAME);
	snprintf(c.name, sizeof(c.name), "%s", mapping);
	snprintf(c.volume, sizeof(c.volume), "%s", volume);
	r = os_boot_conf_write(agent_os_boot_dir(), &c);
	if (r < 0)
		snprintf(err, errlen, "cannot write %s/%s (%s)", agent_os_boot_dir(), OS_BOOT_CONF_NAME, strerror(-r));
	return r;
}

static int grub_regenerate(char *err, size_t errlen)
{
	char out[2048] = "";
	const char *tool;
	char *argv[4] = { NULL };
	int r;

	if (!grub_tool(&tool))
		return refusal(err, errlen, "no update-grub or grub-mkconfig");
	argv[0] = (char *)tool;
	if (strstr(tool, "grub-mkconfig")) {
		argv[1] = (char *)"-o";
		argv[2] = (char *)"/boot/grub/grub.cfg";
	}
	r = process_run_timeout(argv, out, sizeof(out), OS_GRUB_TIMEOUT_S);
	if (r != 0) {
		char *nl = out + strlen(out);

		while (nl > out && (nl[-1] == '\n' || nl[-1] == ' '))
			*--nl = 0;
		snprintf(err, errlen, "%s failed (%s): %s", tool, r < 0 ? strerror(-r) : "exit status",
			 out[0] ? out : "no output");
		return r < 0 ? r : -EIO;
	}
	return 0;
}

/* Whether grub.cfg's kernel lines carry word. */
static int grub_cfg_has(const char *word)
{
	_cleanup_free_ char *text = NULL;
	int r;

	r = read_full_file("/boot/grub/grub.cfg", 16 << 20, &text, NULL);
	if (r < 0)
		return r;
	return strstr(text, word) != NULL;
}

int agent_os_grub_enable(const struct agent_os *os, char *err, size_t errlen)
{
	char text[PATH_MAX + 512], word[128], words[PATH_MAX + 256], mapper[PATH_MAX], root_word[PATH_MAX + 8] = "";
	int r;

	snprintf(word, sizeof(word), "vmcrypt.boot=UUID=%s", os->boot_uuid);
	snprintf(words, sizeof(words), "%s", word);
	if (agent_os_uses_dracut()) {
		/* dracut's systemd mounts the root= it is given, and before the first conversion the
		 * device under the mapping still holds the plain filesystem with the same UUID: naming
		 * the mapping (after GRUB's own root=UUID=, the last one wins) means the root is never
		 * mounted from the device itself. dracut brings up the network only when asked; not
		 * with ip=dhcp, which the booted system's systemd-network-generator would also obey
		 * (a DHCP .network in /run ahead of the VM's own): vmcrypt's module gives the
		 * initramfs's systemd-networkd a DHCP default of its own. */
		(void)agent_volume_mapper_path(AGENT_OS_NAME, mapper, sizeof(mapper));
		snprintf(root_word, sizeof(root_word), "root=%s", mapper);
		snprintf(words, sizeof(words), "%s %s rd.neednet=1", word, root_word);
	}
	snprintf(text, sizeof(text),
		 "# Written by vmcrypt agent (docs/os-volume.md): the initramfs opens the OS volume\n"
		 "# named by /boot/vmcrypt/os.conf. Removed when the OS volume is decrypted.\n"
		 "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX %s\"\n", words);
	r = mkdir_p("/etc/default/grub.d", 0755);
	if (r >= 0)
		r = write_file_atomic(AGENT_OS_GRUB_DROPIN, text, strlen(text), 0644);
	if (r < 0) {
		snprintf(err, errlen, "cannot write %s (%s)", AGENT_OS_GRUB_DROPIN, strerror(-r));
		return r;
	}
	r = grub_regenerate(err, errlen);
	if (r < 0)
		return r;
	r = grub_cfg_has(word);
	if (r > 0 && root_word[0])
		r = grub_cfg_has(root_word);
	if (r <= 0) {
		snprintf(err, errlen, "/boot/grub/grub.cfg has no %s after regenerating it%s%s", r == 0 && root_word[0] ? words : word,
			 r < 0 ? ": " : " (does GRUB_CMDLINE_LINUX get overridden?)", r < 0 ? strerror(-r) : "");
		return r < 0 ? r : -EIO;
	}
	return 0;
}

int agent_os_grub_disable(const struct agent_os *os, char *err, size_t errlen)
{
	char mapper[PATH_MAX], word[PATH_MAX + 8];
	char *trigger[] = { (char *)"udevadm", (char *)"trigger", (char *)"--action=change", (char *)"--settle",
			    (char *)os->device, NULL };
	int r;

	/* grub-mkconfig names the root by UUID only when /dev/disk/by-uuid has it; udev probed the
	 * device when it held ciphertext, so it is asked to look again, now that it is plain. */
	(void)run(trigger, 60, err, errlen);
	if (unlink(AGENT_OS_GRUB_DROPIN) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove %s (%s)", AGENT_OS_GRUB_DROPIN, strerror(errno));
		return -errno;
	}
	r = grub_regenerate(err, errlen);
	if (r < 0)
		return r;
	if (grub_cfg_has("vmcrypt.boot=") > 0) {
		snprintf(err, errlen, "/boot/grub/grub.cfg still has vmcrypt.boot= after regenerating it");
		return -EIO;
	}
	/* / is still mounted through the mapping (a plain one now) until the reboot: a grub.cfg
	 * that names it as the root would boot into "vmcrypt-os does not exist". */
	(void)agent_volume_mapper_path(AGENT_OS_NAME, mapper, sizeof(mapper));
	snprintf(word, sizeof(word), "root=%s", mapper);
	if (grub_cfg_has(word) > 0) {
		_cleanup_free_ char *text = NULL, *fixed = NULL;
		char uuid_word[96];
		size_t n = 0;
		FILE *f;

		if (!os->fs_uuid[0]) {
			snprintf(err, errlen, "/boot/grub/grub.cfg names %s as the root and / has no UUID to name instead", mapper);
			return -EIO;
		}
		snprintf(uuid_word, sizeof(uuid_word), "root=UUID=%s", os->fs_uuid);
		r = read_full_file("/boot/grub/grub.cfg", 16 << 20, &text, NULL);
		if (r < 0)
			return refusal(err, errlen, "cannot read /boot/grub/grub.cfg (%s)", strerror(-r));
		f = open_memstream(&fixed, &n);
		if (!f)
			return -ENOMEM;
		for (const char *p = text, *q; *p; p = q + strlen(word)) {
			q = strstr(p, word);
			if (!q) {
				fputs(p, f);
				break;
			}
			fwrite(p, 1, (size_t)(q - p), f);
			fputs(uuid_word, f);
		}
		if (fclose(f) != 0)
			return -ENOMEM;
		r = write_file_atomic("/boot/grub/grub.cfg", fixed, n, 0444);
		if (r < 0)
			return refusal(err, errlen, "cannot write /boot/grub/grub.cfg (%s)", strerror(-r));
		if (grub_cfg_has(word) > 0)
			return refusal(err, errlen, "/boot/grub/grub.cfg still names %s as the root", mapper);
		log_info("/boot/grub/grub.cfg: %s replaced by %s (udev had no by-uuid link for the plain /)", word,
			 uuid_word);
	}
	return 0;
}

int agent_os_remove_boot_files(char *err, size_t errlen)
{
	static const char *const names[] = { OS_BOOT_CONF_NAME, OS_BOOT_HEADER_NAME, AGENT_CONF_NAME,
					     AGENT_CREDENTIAL_NAME, OS_BOOT_SEALED_NAME, AGENT_CA_NAME };
	const char *dir = agent_os_boot_dir();
	char path[PATH_MAX];

	/* os.conf first: without it the next boot is plain whatever else is left. */
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (unlink(path) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "cannot remove %s (%s)", path, strerror(errno));
			return -errno;
		}
	}
	(void)rmdir(dir);
	return 0;
}
