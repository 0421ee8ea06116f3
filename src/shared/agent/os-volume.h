/* The OS volume's side of the agent (docs/os-volume.md): what the running system must offer
 * before the root filesystem can be converted in place, and the boot configuration that makes the
 * initramfs open it: /boot/vmcrypt (os.conf, the header, the VM credential's copy) and the
 * kernel command line (GRUB's /etc/default/grub.d/vmcrypt.cfg). The engine owns the steps and
 * their order; these functions change one thing each and say what failed in err. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "shared/agent/select.h"
#include "shared/client/agent-conf.h"

/* The OS volume's vault name: mapping vmcrypt-os, secrets os and os-recovery. */
#define AGENT_OS_NAME AGENT_OS_VOLUME_NAME
#define AGENT_OS_GRUB_DROPIN "/etc/default/grub.d/vmcrypt.cfg"

struct agent_os {
	char device[PATH_MAX];      /* the root's plain device ("/dev/vda1"), below the mapping once open */
	char fstype[32];
	bool on_mapping;            /* / is mounted from the vmcrypt-os mapping */
	bool on_other_crypt;        /* / is on a dm-crypt mapping that is not ours (installer-made) */
	bool lvm;                   /* / is an LVM logical volume */
	char boot_device[PATH_MAX]; /* the /boot filesystem's device, "" when /boot is inside / */
	char boot_uuid[64];
	char boot_fstype[32];
};

/* Reads the root and /boot from the live system. Returns 0 or -errno (err says why). */
int agent_os_probe(struct agent_os *ret, char *err, size_t errlen);

/* What must hold before the first change: a separate, writable /boot with room for the header,
 * the initramfs hook in every initramfs, GRUB's tools. Returns 0, or -errno with the refusal and
 * its remedy in err. */
int agent_os_check(const struct agent_os *os, char *err, size_t errlen);

/* The boot directory and the header path in it. */
const char *agent_os_boot_dir(void);
int agent_os_header_path(char *buf, size_t len);

/* Copies agent.conf, the credential (0600) and the CA file into the boot directory (0700), for
 * the initramfs: the root, where /etc/vmcrypt lies, is locked when it needs them. */
int agent_os_copy_credentials(const struct agent_conf *conf, char *err, size_t errlen);

/* Writes os.conf: device (a stable path), the mapping and the vault volume. */
int agent_os_write_boot_conf(const char *device, const char *mapping, const char *volume, char *err,
			     size_t errlen);

/* Puts vmcrypt.boot=UUID=<the /boot filesystem> on the kernel command line and regenerates
 * grub.cfg, then reads grub.cfg back: the bootloader's configuration is the proof. */
int agent_os_grub_enable(const struct agent_os *os, char *err, size_t errlen);

/* The reverse, for a decrypted OS volume: the drop-in removed, grub.cfg regenerated. */
int agent_os_grub_disable(char *err, size_t errlen);

/* Removes os.conf, the header and the credential's copy from the boot directory. */
int agent_os_remove_boot_files(char *err, size_t errlen);
