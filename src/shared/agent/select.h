/* The agent's data volumes (docs/agent.md): which filesystems EnableEncryption with VolumeType
 * Data converts, and the names they go by in the vault, the mapper and the token. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A volume name: 1 to 64 of [A-Za-z0-9._-] starting alphanumeric (api_name_valid()). */
#define AGENT_NAME_MAX 64
#define AGENT_MAPPER_PREFIX "/dev/mapper/vmcrypt-"
/* The OS volume's name (mapping vmcrypt-os): never given to a data volume (/os becomes os-2). */
#define AGENT_OS_VOLUME_NAME "os"

struct agent_volume {
	char name[AGENT_NAME_MAX + 1];
	/* The block device that holds the data: "/dev/sdb1". For a filesystem mounted through a
	 * dm-crypt mapping, the device below the mapping. "" for an fstab entry of a vmcrypt
	 * mapping that is not open (the vault was down at boot): see mapper. */
	char device[PATH_MAX];
	char kernel_name[64];         /* "sdb1", "" when device is "" */
	dev_t devnum;                 /* of device, 0 when unknown (fixtures, "" device) */
	char mountpoint[PATH_MAX];    /* "" for a device named only by Include= */
	char fstype[32];              /* mountinfo's, else fstab's, else libblkid's */
	char fs_uuid[64];
	uint64_t size;                /* bytes, 0 when unknown */
	char fstab_source[PATH_MAX];  /* the fstab entry's source (unescaped), "" when none */
	char fstab_options[1024];     /* the fstab entry's options, "" when none */
	char mount_options[1024];     /* the VFS options of the mount, "" when not mounted */
	char mapper[PATH_MAX];        /* the dm-crypt mapping the filesystem is (to be) mounted from:
				       * "/dev/mapper/vmcrypt-db", "" when none */
	bool mounted;
	bool in_fstab;
	bool already_luks;            /* mounted through dm-crypt, or the device holds LUKS */
	bool ours;                    /* mapper is a vmcrypt- mapping */
	bool included;                /* named by Include= */
};

/* The data volumes. Without include: the mounted block-device filesystems of volumes_discover()
 * (VOLUME_ROLE_DATA) and the fstab entries that name a block device which is not mounted (its
 * source resolved with fstab_source_resolve()), except the OS volume, /boot and below, swap,
 * what discovery excluded (key storage, the state directory, members of a stack), bind mounts,
 * read-only devices, squashfs/iso9660/udf, and loop devices (snaps, images: name them in
 * Include=). An fstab entry with a /dev/mapper/vmcrypt- source whose mapping is not open is
 * listed too (ours, device ""). Mounted volumes come first in mount order, then fstab order.
 *
 * include[0..n_include) (mount points, fstab targets, or devices: /dev/..., /dev/disk/by-*,
 * UUID=, LABEL=, PARTUUID=, PARTLABEL=) replaces discovery: exactly those, in that order, even
 * loop devices and unmounted devices in no fstab entry. An item that is the OS volume, under
 * /boot, swap or excluded by discovery is -EINVAL; one that names nothing is -ENOENT.
 * exclude[] (the same forms) then removes volumes: by mount point, device, fstab source or
 * mapper. Exclude wins over Include.
 *
 * Names follow agent_volume_name(); a name already taken gets -2, -3, ... (the base cut to fit
 * 64). The agent records a name in agent.json when first chosen: a caller with recorded names
 * should use those for the devices it knows (a collision suffix depends on what else is there).
 *
 * fstab_path missing is an empty fstab. *ret (free()) and *ret_n are set on success.
 * Returns 0, -ENOENT, -EINVAL, -ENOMEM, or a -errno from discovery or reading fstab; err then
 * says which item or step failed. */
int agent_select_volumes(const char *fstab_path, char include[][PATH_MAX], size_t n_include,
			 char exclude[][PATH_MAX], size_t n_exclude, struct agent_volume **ret,
			 size_t *ret_n, char *err, size_t errlen);

/* The base name of a volume (docs/agent.md "Volume names"): the mount point without its leading
 * '/', each '/' a '-' ("/srv/www" -> "srv-www"); without a mount point (or "/") the kernel name
 * ("vdb", "loop3"). Bytes outside [A-Za-z0-9._-] become '_', leading characters that are not
 * alphanumeric are dropped, and the result is cut to 64. A name ending in "-recovery" ends in
 * "_recovery" instead: "{volume}-recovery" is the vault name of another volume's recovery
 * passphrase. "volume" when nothing is left. Returns buf (len > AGENT_NAME_MAX). */
char *agent_volume_name(const char *mountpoint, const char *kernel_name, char *buf, size_t len);

/* "/dev/mapper/vmcrypt-<name>" into buf. Returns 0, -EINVAL (name not valid), -ENAMETOOLONG. */
int agent_volume_mapper_path(const char *name, char *buf, size_t len);

/* "vmcrypt-<name>", the device-mapper name (crypttab's first field). Returns as above. */
int agent_volume_mapper_name(const char *name, char *buf, size_t len);
