/* The VM's volumes, discovered from the live system: the OS volume (the device under /), the data
 * volumes (other mounted block-device filesystems) and unmounted candidates, through libmount
 * (mountinfo), /sys/dev/block and libblkid. All reads of /proc and /sys happen under
 * path_test_root(); libblkid probes only when that is the real root. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Caps on what discovery returns; a system with more is reported truncated, never overrun. */
#define VOLUMES_MAX 256
#define VOLUMES_HOLDERS_MAX 4

enum volume_role {
	VOLUME_ROLE_OS,        /* the filesystem mounted on / */
	VOLUME_ROLE_DATA,      /* another mounted block-device filesystem */
	VOLUME_ROLE_CANDIDATE, /* not mounted: a disk, partition or LV that could hold data */
	VOLUME_ROLE_EXCLUDED,  /* /boot, /boot/efi, swap, key storage, parts of a stack */
};

enum volume_kind {
	VOLUME_KIND_OTHER,
	VOLUME_KIND_DISK,
	VOLUME_KIND_PARTITION,
	VOLUME_KIND_LVM,       /* device-mapper with an LVM- uuid */
	VOLUME_KIND_RAID,      /* md */
	VOLUME_KIND_LOOP,
	VOLUME_KIND_CRYPT,     /* device-mapper with a CRYPT- uuid: an opened dm-crypt mapping */
	VOLUME_KIND_DM,        /* other device-mapper targets */
};

struct volume {
	enum volume_role role;
	enum volume_kind kind;
	char name[64];               /* kernel name: "sda1", "dm-0", "loop3" */
	char device[PATH_MAX];       /* "/dev/sda1", "/dev/mapper/vg-data" */
	dev_t devnum;
	char mountpoint[PATH_MAX];   /* "" when not mounted */
	char mount_options[256];     /* the VFS options from mountinfo */
	char fstype[32];             /* from mountinfo, else libblkid TYPE; "" when none found */
	char label[64];
	char fs_uuid[64];
	uint64_t size;               /* bytes */
	bool read_only;
	char parent[64];             /* the whole disk of a partition, "" otherwise */
	char backing[PATH_MAX];      /* dm-crypt or LVM: the first device below ("/dev/sdc") */
	char dm_name[128];           /* device-mapper name, "" otherwise */
	char holders[VOLUMES_HOLDERS_MAX][64]; /* kernel names of devices stacked on this one */
	size_t n_holders;
	char excluded_why[64];       /* for VOLUME_ROLE_EXCLUDED: "/boot", "swap", ... */
};

/* Discovers every volume. The OS volume, if / is on a block device, comes first; then data
 * volumes in mount order, candidates in /sys order, and excluded ones last. A device mounted
 * twice is listed once (its first mount). Returns 0, or > 0 when more than VOLUMES_MAX were found
 * and the rest left out; -ENOENT (no mountinfo), -ENOMEM, or another -errno.
 * Free with volumes_free(). */
int volumes_discover(struct volume **ret, size_t *ret_n);

void volumes_free(struct volume *v);

static inline void volumes_freep(struct volume **p)
{
	volumes_free(*p);
}
#define _cleanup_volumes_ __attribute__((cleanup(volumes_freep)))

/* The OS volume of a discovered list, or NULL when / is not on a block device. */
const struct volume *volumes_os(const struct volume *v, size_t n);

/* Short human forms: "OS", "data", "candidate", "excluded"; "disk", "partition", "LVM", ... */
const char *volumes_role_to_string(enum volume_role r);
const char *volumes_kind_to_string(enum volume_kind k);

/* Human description of one volume for messages: "/dev/sdc1 (/data)" or "/dev/sdd". Returns buf. */
char *volumes_describe(const struct volume *v, char *buf, size_t len);

/* True when path is dir or lies below it ("/data" and "/data/x", not "/datax"). */
bool volumes_path_is_under(const char *path, const char *dir);
