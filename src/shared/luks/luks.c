/* Inspecting LUKS volumes through libcryptsetup: state, progress of a conversion, the vmcrypt
 * token. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libcryptsetup.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/luks/luks.h"

static char last_error[512];

static void luks_log_callback(int level, const char *msg, void *usrptr)
{
	size_t n = strlen(msg);

	if (level == CRYPT_LOG_ERROR) {
		snprintf(last_error, sizeof(last_error), "%.*s", (int)(n && msg[n - 1] == '\n' ? n - 1 : n), msg);
		log_debug("libcryptsetup: %s", last_error);
	} else if (level == CRYPT_LOG_DEBUG || level == CRYPT_LOG_VERBOSE)
		log_debug("libcryptsetup: %.*s", (int)(n && msg[n - 1] == '\n' ? n - 1 : n), msg);
}

void luks_setup_logging(void)
{
	crypt_set_log_callback(NULL, luks_log_callback, NULL);
	if (log_get_max_level() >= LOG_LEVEL_DEBUG)
		crypt_set_debug_level(CRYPT_DEBUG_ALL);
}

const char *luks_last_error(void)
{
	return last_error;
}

int luks_load(const char *header, const char *data_device, struct crypt_device **ret)
{
	struct crypt_device *cd = NULL;
	int r;

	if (header) {
		/* libcryptsetup would open a FIFO given as the header and wait for a writer forever;
		 * a header is a file or a block device. */
		_cleanup_close_ int fd = open(header, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		struct stat st;

		if (fd < 0)
			return negative_errno();
		if (fstat(fd, &st) < 0)
			return negative_errno();
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			return -ENOTBLK;
	}
	luks_setup_logging();
	r = crypt_init_data_device(&cd, header ? header : data_device, data_device);
	if (r < 0)
		return r;
	r = crypt_load(cd, CRYPT_LUKS, NULL);
	if (r < 0) {
		crypt_free(cd);
		return r;
	}
	*ret = cd;
	return 0;
}

static uint64_t luks_json_u64(json_t *v)
{
	const char *s = json_string_value(v);
	uint64_t x;

	return s && parse_u64(s, &x) == 0 ? x : 0;
}

static json_t *luks_metadata_section(struct crypt_device *cd, const char *section)
{
	const char *text = NULL;
	json_t *root, *part;

	if (crypt_dump_json(cd, &text, 0) < 0 || !text)
		return NULL;
	root = json_loads(text, 0, NULL);
	if (!root)
		return NULL;
	part = json_incref(json_object_get(root, section));
	json_decref(root);
	return part;
}

json_t *luks_segments(struct crypt_device *cd)
{
	return luks_metadata_section(cd, "segments");
}

json_t *luks_keyslots(struct crypt_device *cd)
{
	return luks_metadata_section(cd, "keyslots");
}

unsigned luks_segment_flags(json_t *segment)
{
	unsigned bits = 0;
	size_t i;
	json_t *f;

	json_array_foreach(json_object_get(segment, "flags"), i, f) {
		const char *fs = json_string_value(f);

		if (!fs)
			continue;
		if (startswith(fs, "backup-"))
			bits |= LUKS_SEGMENT_BACKUP;
		if (streq(fs, "backup-final"))
			bits |= LUKS_SEGMENT_BACKUP_FINAL;
		if (streq(fs, "backup-moved-segment"))
			bits |= LUKS_SEGMENT_MOVED;
		if (streq(fs, "in-reencryption"))
			bits |= LUKS_SEGMENT_HOT;
	}
	return bits;
}

/* Progress of a reencryption from the LUKS2 segments: the share of the data area already in
 * its final form (crypt segments while encrypting, linear ones while decrypting), ignoring the
 * backup segments that describe the before/after layouts. */
static double segments_progress(struct crypt_device *cd, bool encrypting, uint64_t data_size)
{
	json_t *segs, *seg;
	const char *key;
	uint64_t done = 0, total = 0;

	segs = luks_segments(cd);
	if (!segs)
		return -1;
	json_object_foreach(segs, key, seg) {
		const char *type = json_string_value(json_object_get(seg, "type"));
		const char *size = json_string_value(json_object_get(seg, "size"));
		unsigned flags = luks_segment_flags(seg);
		uint64_t len;

		if ((flags & LUKS_SEGMENT_BACKUP) || !type || !size)
			continue;
		len = streq(size, "dynamic") ? 0 : luks_json_u64(json_object_get(seg, "size"));
		total += len;
		if (!(flags & LUKS_SEGMENT_HOT) && streq(type, encrypting ? "crypt" : "linear"))
			done += len;
	}
	json_decref(segs);
	/* A "dynamic" segment runs to the end of the device: the data area is the real total. */
	if (data_size > total)
		total = data_size;
	if (total == 0)
		return -1;
	return done >= total ? 100.0 : 100.0 * (double)done / (double)total;
}

static void read_vmcrypt_token(struct crypt_device *cd, struct volume_info *ret)
{
	for (int t = 0; t < LUKS_TOKENS_MAX; t++) {
		const char *json = NULL;
		json_t *o;

		if (crypt_token_json_get(cd, t, &json) < 0)
			continue;
		ret->tokens++;
		o = json_loads(json, 0, NULL);
		if (!o)
			continue;
		const char *type = json_string_value(json_object_get(o, "type"));
		if (streq_ptr(type, LUKS_TOKEN_TYPE) ||
		    (streq_ptr(type, LUKS_TOKEN_TYPE_UNLOCK) && json_object_get(o, "operation"))) {
			const char *fs = json_string_value(json_object_get(o, "fs_type"));
			ret->has_token = true;
			ret->started = json_integer_value(json_object_get(o, "started"));
			ret->fs_size = (uint64_t)json_integer_value(json_object_get(o, "fs_size"));
			snprintf(ret->fs_type, sizeof(ret->fs_type), "%s", fs ? fs : "");
		}
		json_decref(o);
	}
}

int luks_describe(struct crypt_device *cd, struct volume_info *ret)
{
	struct crypt_params_reencrypt params = {};
	crypt_reencrypt_info ri;
	const char *s;
	int max;

	s = crypt_get_uuid(cd);
	snprintf(ret->uuid, sizeof(ret->uuid), "%s", s ? s : "");
	/* A linear (decrypted) segment reports the cipher "cipher_null". */
	if (crypt_get_cipher(cd) && !streq(crypt_get_cipher(cd), "cipher_null"))
		snprintf(ret->cipher, sizeof(ret->cipher), "%s-%s", crypt_get_cipher(cd),
			 crypt_get_cipher_mode(cd) ?: "?");
	ret->key_bits = (uint32_t)crypt_get_volume_key_size(cd) * 8;
	ret->sector_size = (uint32_t)crypt_get_sector_size(cd);
	ret->data_offset = crypt_get_data_offset(cd) * 512;
	ret->header_detached = crypt_header_is_detached(cd) > 0;
	s = crypt_get_metadata_device_name(cd);
	if (s)
		snprintf(ret->header_path, sizeof(ret->header_path), "%s", s);

	ret->keyslots = 0;
	max = crypt_keyslot_max(crypt_get_type(cd));
	for (int k = 0; k < max; k++) {
		crypt_keyslot_info ki = crypt_keyslot_status(cd, k);
		if (ki == CRYPT_SLOT_ACTIVE || ki == CRYPT_SLOT_ACTIVE_LAST || ki == CRYPT_SLOT_UNBOUND)
			ret->keyslots++;
	}
	ret->tokens = 0;
	read_vmcrypt_token(cd, ret);

	ri = crypt_reencrypt_status(cd, &params);
	ret->percent = -1;
	switch (ri) {
	case CRYPT_REENCRYPT_NONE:
		/* A finished decryption leaves a detached header that maps the data linearly, with
		 * no keyslot: the data is plain. */
		ret->state = *ret->cipher || ret->keyslots > 0 ? VOLUME_ENCRYPTED : VOLUME_PLAIN;
		ret->op = VOLUME_OP_NONE;
		break;
	case CRYPT_REENCRYPT_CLEAN:
	case CRYPT_REENCRYPT_CRASH:
		ret->op = params.mode == CRYPT_REENCRYPT_DECRYPT ? VOLUME_OP_DECRYPT : VOLUME_OP_ENCRYPT;
		if (ri == CRYPT_REENCRYPT_CRASH)
			ret->state = VOLUME_INTERRUPTED;
		else
			ret->state = ret->op == VOLUME_OP_DECRYPT ? VOLUME_DECRYPTING : VOLUME_ENCRYPTING;
		ret->percent = segments_progress(cd, ret->op == VOLUME_OP_ENCRYPT,
						 ret->device_size > ret->data_offset ? ret->device_size - ret->data_offset : 0);
		break;
	default:
		ret->state = VOLUME_UNKNOWN;
		break;
	}
	return 0;
}

static const char *const volume_state_table[_VOLUME_STATE_MAX] = {
	[VOLUME_UNKNOWN] = "unknown",         [VOLUME_PLAIN] = "plain",
	[VOLUME_ENCRYPTED] = "encrypted",     [VOLUME_ENCRYPTING] = "encrypting",
	[VOLUME_DECRYPTING] = "decrypting",   [VOLUME_INTERRUPTED] = "interrupted",
};

const char *volume_state_to_string(enum volume_state s)
{
	return s >= 0 && s < _VOLUME_STATE_MAX ? volume_state_table[s] : NULL;
}

enum volume_state volume_state_from_string(const char *s)
{
	if (!s)
		return _VOLUME_STATE_INVALID;
	for (size_t i = 0; i < ELEMENTSOF(volume_state_table); i++)
		if (streq(s, volume_state_table[i]))
			return (enum volume_state)i;
	return _VOLUME_STATE_INVALID;
}

static const char *const volume_op_table[_VOLUME_OP_MAX] = {
	[VOLUME_OP_NONE] = "none", [VOLUME_OP_ENCRYPT] = "encrypt", [VOLUME_OP_DECRYPT] = "decrypt",
};

const char *volume_op_to_string(enum volume_op op)
{
	return op >= 0 && op < _VOLUME_OP_MAX ? volume_op_table[op] : NULL;
}

enum volume_op volume_op_from_string(const char *s)
{
	if (!s)
		return _VOLUME_OP_INVALID;
	for (size_t i = 0; i < ELEMENTSOF(volume_op_table); i++)
		if (streq(s, volume_op_table[i]))
			return (enum volume_op)i;
	return _VOLUME_OP_INVALID;
}

int luks_activate(const char *header, const char *data_device, const char *name, const void *key,
		  size_t key_size)
{
	struct crypt_device *cd = NULL;
	int r;

	r = luks_load(header, data_device, &cd);
	if (r < 0)
		return r;
	/* An interrupted online reencryption is recovered by the activation itself. */
	r = crypt_activate_by_passphrase(cd, name, CRYPT_ANY_SLOT, key, key_size, 0);
	crypt_free(cd);
	return r < 0 ? r : 0;
}

int luks_header_backup(const char *header, const char *data_device, const char *dir, void **ret,
		       size_t *ret_size)
{
	struct crypt_device *cd = NULL;
	char tmp[PATH_MAX], file[PATH_MAX + 16];
	char *data = NULL;
	size_t size = 0;
	int r;

	r = luks_load(header, data_device, &cd);
	if (r < 0)
		return r;
	if (crypt_reencrypt_status(cd, NULL) != CRYPT_REENCRYPT_NONE) {
		crypt_free(cd);
		return -EBUSY;
	}
	/* crypt_header_backup() creates the file and refuses one that exists: a directory of our
	 * own makes the name ours. */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/header-backup.XXXXXX", dir) >= sizeof(tmp)) {
		crypt_free(cd);
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(tmp)) {
		r = negative_errno();
		crypt_free(cd);
		return r;
	}
	snprintf(file, sizeof(file), "%s/h", tmp);
	r = crypt_header_backup(cd, CRYPT_LUKS2, file);
	crypt_free(cd);
	if (r >= 0)
		r = read_full_file(file, LUKS_HEADER_BACKUP_MAX, &data, &size);
	(void)unlink(file);
	(void)rmdir(tmp);
	if (r < 0)
		return r;
	*ret = data;
	*ret_size = size;
	return 0;
}
