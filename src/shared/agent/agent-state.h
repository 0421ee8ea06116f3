/* The agent's state, path_state_dir()/agent.json: the settings sequence last applied and, per
 * data volume the agent manages, how far its conversion got. Written atomically (write, fsync,
 * rename) after every step, so that a kill -9 or a power loss leaves the last finished step on
 * disk and the agent resumes from it on start (docs/agent.md). The disks stay the truth about
 * what is encrypted; this file adds what the disks cannot say: the vault versions of the keys,
 * the units stopped for a cut-over, the original mount, the measured downtime. */
#pragma once

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_VOLUMES_MAX 32
#define AGENT_UNITS_MAX 8

/* The steps of one volume's encryption or decryption, in order. Each is recorded after it is
 * done; on start the agent continues from the recorded one. */
enum agent_phase {
	AGENT_PHASE_PLAIN,      /* not encrypted by the agent (or decrypted again) */
	AGENT_PHASE_ESCROWED,   /* key and recovery passphrase in the vault and read back */
	AGENT_PHASE_CUTOVER,    /* units stopped, unmounted: the header is being made */
	AGENT_PHASE_CONVERTING, /* the data conversion runs (online: mounted from the mapper) */
	AGENT_PHASE_ENCRYPTED,  /* the data is encrypted, crypttab and fstab name the mapper */
	AGENT_PHASE_DECRYPTING, /* the data is being decrypted */
	AGENT_PHASE_FINISHING,  /* decrypted; unmounted to go back to the plain device */
	/* The OS volume only, between ESCROWED (CUTOVER: being prepared) and CONVERTING: the
	 * detached header and the boot configuration are in place, the root is still plain and
	 * mounted from the device; the next boot opens it in the initramfs. */
	AGENT_PHASE_RESTART_PENDING,
	_AGENT_PHASE_MAX,
	_AGENT_PHASE_INVALID = -EINVAL,
};

const char *agent_phase_to_string(enum agent_phase p);
enum agent_phase agent_phase_from_string(const char *s);

struct agent_volume_state {
	char name[65];              /* vault secret name, mapper vmcrypt-<name> */
	char device[PATH_MAX];      /* the plain device */
	char mountpoint[PATH_MAX];  /* "" when not mounted */
	char fstype[32];
	char fs_options[1024];      /* the mount options, VFS and filesystem, as mount(8) takes them */
	unsigned long mount_flags;  /* MS_* of the mount */
	char luks_uuid[40];         /* "" before the header exists */
	char header[PATH_MAX];      /* detached header, "" when on the device */
	enum agent_phase phase;
	bool online;                /* converted while mounted through dm-crypt */
	bool os;                    /* the OS volume (the root filesystem; docs/os-volume.md) */
	char prepared_boot_id[40];  /* OS: the boot (kernel boot_id) in which it was prepared, so
				     * the agent can tell "not rebooted yet" from "rebooted and the
				     * initramfs did not open it" */
	uint64_t key_version;       /* vault versions of {name} and {name}-recovery */
	uint64_t recovery_version;
	char header_backup_uuid[40]; /* the LUKS UUID whose header backup the vault holds, "" none
				      * yet: a new encryption (a new UUID) is backed up again */
	uint64_t header_backup_version; /* its version in the vault */
	char stopped_units[AGENT_UNITS_MAX][256]; /* stopped for the cut-over, started after */
	size_t n_stopped_units;
	int64_t downtime_ms;        /* unmount to remount, -1 when not measured */
	char message[256];          /* the last refusal or failure, "" when none */
	int error;                  /* its -errno, 0 */
};

struct agent_state {
	uint64_t applied_sequence;  /* the goal sequence last applied completely */
	uint64_t seen_sequence;     /* the goal sequence being applied */
	char operation[32];         /* that goal's EncryptionOperation */
	char server[512];
	struct agent_volume_state volumes[AGENT_VOLUMES_MAX];
	size_t n_volumes;
};

/* Reads path_state_dir()/agent.json; a missing file is an empty state (returns 0).
 * Returns 0, -EBADMSG (does not parse or holds impossible values), -EFBIG or another -errno. */
int agent_state_load(struct agent_state *ret);
/* Parses the file's text. Returns 0, -EBADMSG or -ENOMEM. */
int agent_state_parse(const char *text, struct agent_state *ret);
/* Writes it atomically (0600). Returns 0 or -errno. */
int agent_state_save(const struct agent_state *s);

/* The volume named name, or NULL. */
struct agent_volume_state *agent_state_find(struct agent_state *s, const char *name);
/* Adds a zeroed volume named name (phase PLAIN). Returns it, or NULL when the table is full. */
struct agent_volume_state *agent_state_add(struct agent_state *s, const char *name);
