/* The cut-over of a mounted data volume to dm-crypt and back: the only moments its applications
 * are stopped. Encrypt: stop the holding units, unmount, make the header (shrink or detached)
 * and open /dev/mapper/vmcrypt-<name>, mount that at the same place with the same options, start
 * the units again. Decrypt's finish: the same, the other way. The data conversion itself runs
 * afterwards, online, while the volume is in use. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/agent/agent-state.h"
#include "shared/luks/convert.h"

/* How a filesystem is mounted, read from mountinfo, so that it can be mounted again alike. */
struct agent_mount {
	char source[PATH_MAX];
	char fstype[32];
	char options[1024];          /* VFS and filesystem options, as mount(8) takes them */
};

/* Reads the mount at mountpoint (the last one, the one in effect). Returns 0 or -ENOENT. */
int agent_mount_read(const char *mountpoint, struct agent_mount *ret);
/* Mounts source at target with fstype and options through libmount. Returns 0 or -errno with
 * the reason in err. */
int agent_mount_do(const char *source, const char *target, const char *fstype,
		   const char *options, char *err, size_t errlen);
/* Unmounts target (not lazily: a busy filesystem must refuse, never vanish half-used).
 * Returns 0, -EBUSY or -errno. */
int agent_umount(const char *target);

/* Whether this kernel offers device-mapper (the dm-crypt target is loaded on demand). */
bool agent_have_dm(void);

struct agent_cutover {
	struct agent_volume_state *v;     /* the volume: name, device, mountpoint, units to stop */
	const struct convert_request *req; /* key, recovery, token, header, active_name */
	enum volume_op op;
	struct convert_result res;
	int64_t downtime_ms;
	char message[512];                /* on failure: what failed and that it was undone */
};

/* Encrypt: stops v->stopped_units, unmounts, convert_online_start(), mounts the mapper, starts the
 * units. Any failure before the mapper is mounted mounts the plain device again and starts the
 * units: the volume is back as it was (the engine's own refusals guarantee no byte changed).
 * Returns 0 or -errno with c->message. */
int agent_cutover_encrypt(struct agent_cutover *c);

/* Decrypt's finish, once the data is plain again: stops the units, unmounts the mapper,
 * convert_online_finish() (closes the mapping, grows the filesystem back), mounts the plain
 * device, starts the units. Returns 0 or -errno with c->message. */
int agent_cutover_finish(struct agent_cutover *c);
