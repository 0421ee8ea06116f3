/* The OS volume's boot record, /boot/vmcrypt/os.conf (docs/os-volume.md): what the initramfs
 * opens before the root is mounted. The agent writes it when it prepares the root filesystem's
 * encryption; `vmcrypt boot-unlock` reads it at boot. It names no secret: the key comes from the
 * vault with the VM credential kept beside it (or, without the vault, the recovery passphrase
 * typed on the console). */
#pragma once

#include <limits.h>
#include <stddef.h>

#include "shared/api/api.h"

/* The directory on /boot, as the running system sees it. */
#define OS_BOOT_DIR "/boot/vmcrypt"
#define OS_BOOT_CONF_NAME "os.conf"
#define OS_BOOT_HEADER_NAME "os.luks"
/* The VM credential sealed to the VM's TPM 2.0 (shared/tpm/tpm-seal.h); beside it or instead of
 * the plain copy (agent-conf.h's AGENT_CREDENTIAL_NAME), never both after a preparation. */
#define OS_BOOT_SEALED_NAME "credential.tpm"
#define OS_BOOT_CONF_MAX 4096

struct os_boot_conf {
	char device[PATH_MAX];        /* Device=: the plain device, a stable path such as
				       * /dev/disk/by-partuuid/... (udev makes it in the initramfs) */
	char header[PATH_MAX];        /* Header=: the detached header, a file name in the same
				       * directory (the directory is mounted elsewhere at boot) */
	char name[80];                /* Name=: the mapping, "vmcrypt-os" */
	char volume[API_NAME_MAX + 1];/* Volume=: the vault secret's name */
};

/* Parses os.conf's text (Key=value lines, '#' comments). origin names the file in err.
 * Returns 0 or -EINVAL (an unknown key, a missing one, a header that is not a plain file name, a
 * device that is not an absolute path, a name or volume that is not a valid name). */
int os_boot_conf_parse(const char *text, const char *origin, struct os_boot_conf *ret, char *err,
		       size_t errlen);

/* Reads dir/os.conf. Returns 0, -ENOENT (no OS volume to open: a plain boot), -EINVAL or another
 * -errno, with err naming the file. */
int os_boot_conf_load(const char *dir, struct os_boot_conf *ret, char *err, size_t errlen);

/* Writes dir/os.conf atomically, mode 0644. Returns 0, -EINVAL (it would not parse back) or
 * -errno. */
int os_boot_conf_write(const char *dir, const struct os_boot_conf *c);
