/* The OS volume's boot side: checks, /boot/vmcrypt and GRUB's command line. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "shared/client/os-boot.h"
#include "shared/secret.h"
#include "shared/volume/volumes.h"

/* The header file (16 MiB of keyslot area and metadata) and a margin for the initramfs images
 * that grow by vmcrypt's programs and libraries at each kernel update. */
#define OS_BOOT_ROOM_MIN (48ULL << 20)
#define OS_HOOK "/usr/share/initramfs-tools/hooks/vmcrypt"
#define OS_GRUB_TIMEOUT_S 300

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

/* Every /boot/initrd.img-* holds the boot script: the newest kernel is the one GRUB boots, and
 * an older one is the fallback an administrator picks after a bad update. */
static int check_initramfs(char *err, size_t errlen)
{
	_cleanup_(closedirp) DIR *d = opendir("/boot");
	struct dirent *de;
	unsigned seen = 0;

	if (access(OS_HOOK, F_OK) < 0)
		return refusal(err, errlen, "the initramfs-tools hook %s is missing: the initramfs could not open "
			       "the OS volume; install vmcrypt's package (dracut is not supported yet)", OS_HOOK);
	if (!d)
		return refusal(err, errlen, "cannot read /boot (%s)", strerror(errno));
	while ((de = readdir(d))) {
		char path[PATH_MAX], cmd[PATH_MAX + 128];
		char *argv[] = { (char *)"sh", (char *)"-c", cmd, NULL };
		int r;

		if (!startswith(de->d_name, "initrd.img-"))
			continue;
		snprintf(path, sizeof(path), "/boot/%s", de->d_name);
		if (strpbrk(path, "'\\"))
			continue;
		snprintf(cmd, sizeof(cmd), "lsinitramfs '%s' | grep -q '^scripts/local-top/vmcrypt$'", path);
		r = process_run_timeout(argv, NULL, 0, 120);
		if (r != 0)
			return refusal(err, errlen, "%s does not hold vmcrypt's boot script: run 'update-initramfs -u -k all'",
				       path);
		seen++;
	}
	if (seen == 0)
		return refusal(err, errlen, "no /boot/initrd.img-*: the OS volume can only be opened by an initramfs");
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

int agent_os_check(const struct agent_os *os, char *err, size_t errlen)
{
	struct statvfs sv;
	const char *tool;

	if (os->on_other_crypt)
		return refusal(err, errlen, "/ is on a dm-crypt volume the agent did not make: it is encrypted already");
	if (os->lvm)
		return refusal(err, errlen, "/ (%s) is an LVM logical volume: the agent encrypts an OS volume on a "
			       "partition or a whole disk only", os->device);
	if (!os->boot_device[0])
		return refusal(err, errlen, "/boot is inside the root filesystem: the kernel, the initramfs and the "
			       "header must stay readable before the root is opened; give /boot a partition of its "
			       "own (docs/os-volume.md)");
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

int agent_os_copy_credentials(const struct agent_conf *conf, char *err, size_t errlen)
{
	const char *dir = agent_os_boot_dir();
	char from[PATH_MAX], to[PATH_MAX];
	int r;

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
	snprintf(to, sizeof(to), "%s/%s", dir, AGENT_CREDENTIAL_NAME);
	r = copy_file(from, to, 0600, true, err, errlen);
	if (r < 0)
		return r;
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
	char text[512], word[128];
	int r;

	snprintf(word, sizeof(word), "vmcrypt.boot=UUID=%s", os->boot_uuid);
	snprintf(text, sizeof(text),
		 "# Written by vmcrypt agent (docs/os-volume.md): the initramfs opens the OS volume\n"
		 "# named by /boot/vmcrypt/os.conf. Removed when the OS volume is decrypted.\n"
		 "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX %s\"\n", word);
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
	if (r <= 0) {
		snprintf(err, errlen, "/boot/grub/grub.cfg has no %s after regenerating it%s%s", word,
			 r < 0 ? ": " : " (does GRUB_CMDLINE_LINUX get overridden?)", r < 0 ? strerror(-r) : "");
		return r < 0 ? r : -EIO;
	}
	return 0;
}

int agent_os_grub_disable(char *err, size_t errlen)
{
	int r;

	if (unlink(AGENT_OS_GRUB_DROPIN) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove %s (%s)", AGENT_OS_GRUB_DROPIN, strerror(errno));
		return -errno;
	}
	r = grub_regenerate(err, errlen);
	if (r < 0)
		return r;
	r = grub_cfg_has("vmcrypt.boot=");
	if (r > 0) {
		snprintf(err, errlen, "/boot/grub/grub.cfg still has vmcrypt.boot= after regenerating it");
		return -EIO;
	}
	return 0;
}

int agent_os_remove_boot_files(char *err, size_t errlen)
{
	static const char *const names[] = { OS_BOOT_CONF_NAME, OS_BOOT_HEADER_NAME, AGENT_CONF_NAME,
					     AGENT_CREDENTIAL_NAME, AGENT_CA_NAME };
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
