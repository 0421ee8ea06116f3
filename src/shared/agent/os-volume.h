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
	char disk[64];              /* the whole disk of a partitioned root ("vda"), "" otherwise */
	char fs_uuid[64];           /* the root filesystem's UUID */
};

/* Reads the root and /boot from the live system. Returns 0 or -errno (err says why). */
int agent_os_probe(struct agent_os *ret, char *err, size_t errlen);

/* What must hold before the first change: a separate, writable /boot with room for the header,
 * the initramfs hook in every initramfs, GRUB's tools. Returns 0, or -errno with the refusal and
 * its remedy in err. */
int agent_os_check(const struct agent_os *os, char *err, size_t errlen);

/* A /boot of its own for a root whose /boot is a directory in it (Debian's cloud images), made
 * while the VM runs, in the free space after the last partition (the disk grown by 512 MiB): a
 * new partition "vmcrypt-boot", ext4, /boot copied onto it, fstab, mounted in place of the
 * directory (the ESP on /boot/efi again), GRUB installed anew for the firmware the disk has
 * (BIOS boot partition, ESP). Each step sees whether it was done (a cut in the middle repeats
 * it); the old /boot directory stays under the mount, so a GRUB that still reads it boots as
 * before. agent_os_check() has said whether it can. Returns 0 (os probed again) or -errno. */
int agent_os_make_boot(struct agent_os *os, char *err, size_t errlen);

/* The boot directory and the header path in it. */
const char *agent_os_boot_dir(void);
int agent_os_header_path(char *buf, size_t len);

/* Whether the credential's copy for the initramfs is to be sealed to this VM's TPM 2.0, from
 * SealCredential= (auto: when the VM has one) and the TPM. Returns 1 (seal), 0 (a plain copy), or
 * -EINVAL with the refusal and its remedy in err: SealCredential=yes without a TPM, or a TPM that
 * is there but cannot be used (not opened, an owner password, tpm2-tss's module missing). */
int agent_os_seal_decide(const struct agent_conf *conf, char *err, size_t errlen);

/* Copies agent.conf, the credential and the CA file into the boot directory (0700), for the
 * initramfs: the root, where /etc/vmcrypt lies, is locked when it needs them. The credential
 * goes sealed to the TPM (OS_BOOT_SEALED_NAME, and a plain copy left by an earlier preparation
 * is removed) or plain (AGENT_CREDENTIAL_NAME, 0600), as agent_os_seal_decide() says. Returns 0
 * or -errno with err set. */
int agent_os_copy_credentials(const struct agent_conf *conf, char *err, size_t errlen);

/* Writes os.conf: device (a stable path), the mapping and the vault volume. */
int agent_os_write_boot_conf(const char *device, const char *mapping, const char *volume, char *err,
			     size_t errlen);

/* Whether the initramfs is dracut's (else initramfs-tools'): dracut needs the root and its
 * network named on the kernel command line (agent_os_grub_enable()). */
bool agent_os_uses_dracut(void);

/* Puts vmcrypt.boot=UUID=<the /boot filesystem> on the kernel command line (with dracut also
 * root=/dev/mapper/vmcrypt-os and rd.neednet=1) and
 * regenerates grub.cfg, then reads grub.cfg back: the bootloader's configuration is the proof. */
int agent_os_grub_enable(const struct agent_os *os, char *err, size_t errlen);

/* The reverse, for a decrypted OS volume: the drop-in removed, grub.cfg regenerated and read
 * back: no vmcrypt.boot=, and the root named by its filesystem's UUID, never by the mapping
 * that / still runs through until the reboot. */
int agent_os_grub_disable(const struct agent_os *os, char *err, size_t errlen);

/* Removes os.conf, the header and the credential's copies (plain or sealed) from the boot
 * directory, and the directory when nothing else is left. */
int agent_os_remove_boot_files(char *err, size_t errlen);
