/* LUKS2 headers through libcryptsetup: loading and describing one, reading its segments, and the
 * words for a volume's state and operation. No LUKS2 structure is written by hand. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum volume_state {
	VOLUME_UNKNOWN = 0,
	VOLUME_PLAIN,       /* no LUKS header (and no in-flight header in the state directory) */
	VOLUME_ENCRYPTED,   /* LUKS, no conversion in progress */
	VOLUME_ENCRYPTING,  /* LUKS2 reencryption metadata in encrypt mode, clean */
	VOLUME_DECRYPTING,  /* LUKS2 reencryption metadata in decrypt mode, clean */
	VOLUME_INTERRUPTED, /* a conversion that crashed (needs recovery): `vmcrypt resume` */
	_VOLUME_STATE_MAX,
	_VOLUME_STATE_INVALID = -EINVAL,
};

enum volume_op {
	VOLUME_OP_NONE = 0,
	VOLUME_OP_ENCRYPT,
	VOLUME_OP_DECRYPT,
	_VOLUME_OP_MAX,
	_VOLUME_OP_INVALID = -EINVAL,
};

/* Two token types. "vmcrypt-convert" (keyslots []) records how a conversion began: its
 * operation, start time and the filesystem's original size, so that status and decrypt know what
 * to give back. "vmcrypt" is the unlock token (docs/agent.md): it names the vault's server, VM
 * and secret, and libcryptsetup hands it to libcryptsetup-token-vmcrypt.so, whose validate
 * refuses anything else; so the conversion record may not carry that type. Volumes converted
 * before the split have their record as a "vmcrypt" token with an "operation" key: still read. */
#define LUKS_TOKEN_TYPE "vmcrypt-convert"
#define LUKS_TOKEN_TYPE_UNLOCK "vmcrypt"
/* LUKS2 token slots: ids 0-31 (the LUKS2 on-disk format; libcryptsetup does not export its own
 * LUKS2_TOKENS_MAX). */
#define LUKS_TOKENS_MAX 32
/* LUKS2 keyslots: ids 0-31, likewise. */
#define LUKS_KEYSLOTS_MAX 32

struct volume_info {
	enum volume_state state;
	enum volume_op op;          /* the conversion in progress or interrupted */
	double percent;             /* 0..100 of the conversion, from the LUKS2 segments; -1 unknown */
	uint64_t device_size;       /* bytes */
	char uuid[40];              /* LUKS UUID, "" when plain */
	char cipher[64];            /* "aes-xts-plain64", "" when plain */
	uint32_t key_bits;
	uint32_t sector_size;       /* encryption sector size in bytes */
	uint64_t data_offset;       /* bytes from the start of the data device to the data */
	bool header_detached;
	char header_path[PATH_MAX]; /* where the header was read: the target or a header file */
	int keyslots;               /* active keyslots */
	int tokens;                 /* tokens of any type */
	/* From the vmcrypt token, when present. */
	bool has_token;
	int64_t started;            /* unix time the conversion began */
	char fs_type[32];           /* filesystem found before encryption ("ext4", "xfs", "") */
	uint64_t fs_size;           /* the filesystem's size before it was shrunk, bytes */
};

struct crypt_device;

/* Routes libcryptsetup's messages into our log (debug level: the caller reports failures once,
 * with context) and remembers the last error line for that report. Idempotent. */
void luks_setup_logging(void);

/* The last error libcryptsetup reported in this process, or "". */
const char *luks_last_error(void);

/* Opens the LUKS header at header (NULL: on data_device) for data_device and loads it.
 * Returns 0, -EINVAL when there is no valid LUKS header, -ENOTBLK when header is neither a
 * regular file nor a block device (a FIFO would block), or -errno. */
int luks_load(const char *header, const char *data_device, struct crypt_device **ret);

/* Opens the LUKS2 volume on data_device (header: its detached header, or NULL) as
 * /dev/mapper/<name> with key, any keyslot. Returns 0, -EPERM (the key opens no keyslot),
 * -EEXIST (a mapping of that name exists) or another -errno (luks_last_error() says why). */
int luks_activate(const char *header, const char *data_device, const char *name, const void *key,
		  size_t key_size);

/* Largest header backup luks_header_backup() returns: LUKS2's metadata and keyslot area (16 MiB
 * with libcryptsetup's defaults, at most 128 MiB by the format; vmcrypt writes the default). */
#define LUKS_HEADER_BACKUP_MAX (32u << 20)

/* A backup of the LUKS2 header at header (NULL: on data_device) for data_device, as `cryptsetup
 * luksHeaderBackup` writes it (crypt_header_backup(), through a file in dir, 0700 and ours, gone
 * on return): *ret malloc()ed, *ret_size bytes. Refused while a reencryption is in flight: such
 * a header records how far the data moved, and restoring it after the data moved further would
 * have libcryptsetup convert sectors twice. Returns 0, -EBUSY (a reencryption in flight),
 * -EFBIG (larger than LUKS_HEADER_BACKUP_MAX), luks_load()'s errors or another -errno. */
int luks_header_backup(const char *header, const char *data_device, const char *dir, void **ret,
		       size_t *ret_size);

/* Fills the header fields of ret (cipher, sizes, keyslots, tokens, reencryption state and
 * progress, the vmcrypt token) from a loaded header. Returns 0 or -errno. */
int luks_describe(struct crypt_device *cd, struct volume_info *ret);

/* A segment's flags in the LUKS2 metadata, as bits. */
enum {
	LUKS_SEGMENT_BACKUP = 1 << 0,       /* any "backup-*" flag: not a live segment */
	LUKS_SEGMENT_BACKUP_FINAL = 1 << 1, /* "backup-final": the layout the conversion ends with */
	LUKS_SEGMENT_MOVED = 1 << 2,        /* "backup-moved-segment" */
	LUKS_SEGMENT_HOT = 1 << 3,          /* "in-reencryption": the hotzone */
};

/* The "segments" object of cd's LUKS2 metadata, read through crypt_dump_json(); free with
 * json_decref(). Returns NULL when it cannot be read. */
json_t *luks_segments(struct crypt_device *cd);
/* The "keyslots" object of the LUKS2 metadata (new reference), or NULL. */
json_t *luks_keyslots(struct crypt_device *cd);

/* The LUKS_SEGMENT_* bits of one segment object. */
unsigned luks_segment_flags(json_t *segment);

/* "unknown", "plain", "encrypted", "encrypting", "decrypting", "interrupted" both ways;
 * to_string gives NULL outside the enum, from_string _VOLUME_STATE_INVALID for other words. */
const char *volume_state_to_string(enum volume_state s);
enum volume_state volume_state_from_string(const char *s);
/* "none", "encrypt", "decrypt" both ways; to_string gives NULL outside the enum, from_string
 * _VOLUME_OP_INVALID for other words. */
const char *volume_op_to_string(enum volume_op op);
enum volume_op volume_op_from_string(const char *s);
