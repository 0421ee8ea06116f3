/* In-place conversion of a volume to LUKS2 and back through libcryptsetup's reencryption.
 *
 * libcryptsetup keeps the crash-safe state of the data move in the LUKS2 metadata
 * (online-reencrypt-v2); this file keeps the state of everything around it (the filesystem
 * shrink, the header while it is off the device) in the state directory (convstate.h), writing
 * each step down before it starts. Resume reads both and continues from the step that was cut
 * short. See docs/vmcrypt.md for the sequence and why each step is safe to repeat. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libcryptsetup.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/luks/convert.h"
#include "shared/luks/convstate.h"
#include "shared/luks/luks.h"
#include "shared/secret.h"
#include "shared/volume/device.h"
#include "shared/volume/extfs.h"
#include "shared/volume/fssize.h"

struct ctx {
	const struct convert_request *req;
	struct convert_result *res;
	struct device_info dev;
	struct convstate st;
	/* The passphrase that opens the volume: the key, or the recovery passphrase when only it
	 * does (pick_passphrase()). Points into the request. */
	const void *pass;
	size_t pass_size;
	/* Online: the conversion runs under the active dm-crypt mapping `active`; the start
	 * steps stop once it is active instead of running the data move. */
	bool online;
	const char *active;
	/* In place (convert_online_prepare()): the filesystem stays mounted from the target (the
	 * root filesystem), so the in-use check is only for stacked holders, and the start stops
	 * once the detached header is initialised: the next boot activates the mapping. */
	bool in_place;
};

/* Starts a context: the key is the passphrase to use until pick_passphrase() says otherwise. */
static void ctx_init(struct ctx *c, const struct convert_request *req, struct convert_result *res)
{
	*c = (struct ctx){ .req = req, .res = res };
	c->pass = req->key_size ? req->key : req->recovery;
	c->pass_size = req->key_size ? req->key_size : req->recovery_size;
}

DEFINE_CLEANUP_FUNC(convert_crypt_freep, struct crypt_device *, crypt_free)

/* Records a failure: the message, and the remedy in words (NULL: none). */
_printf_(4, 5) static int fail(struct ctx *c, int error, const char *remedy, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->res->message, sizeof(c->res->message), fmt, ap);
	va_end(ap);
	snprintf(c->res->remedy, sizeof(c->res->remedy), "%s", remedy ? remedy : "");
	c->res->resume = CONVERT_RESUME_NO;
	c->res->resume_header = false;
	return error;
}

/* Records a failure that `vmcrypt resume` takes up; how says in what way, and the program
 * words the remedy (convert_result.resume). */
_printf_(4, 5) static int fail_resumable(struct ctx *c, int error, enum convert_resume how, const char *fmt, ...)
{
	va_list ap;

	assert(how > CONVERT_RESUME_NO && how < _CONVERT_RESUME_MAX);
	va_start(ap, fmt);
	vsnprintf(c->res->message, sizeof(c->res->message), fmt, ap);
	va_end(ap);
	c->res->remedy[0] = 0;
	c->res->resume = how;
	c->res->resume_header = false;
	return error;
}

/* Appends libcryptsetup's own last error to a message, which often holds the real cause. */
static const char *convert_cryptsetup_reason(void)
{
	static char buf[600];
	const char *e = luks_last_error();

	snprintf(buf, sizeof(buf), "%s%s", *e ? ": " : "", e);
	return buf;
}

static int report(struct ctx *c, enum convert_phase phase, uint64_t done, uint64_t total)
{
	if (c->req->progress && c->req->progress(phase, done, total, c->req->userdata))
		return -EINTR;
	return 0;
}

static int stopped(struct ctx *c)
{
	return fail_resumable(c, -EINTR, CONVERT_RESUME_CONTINUE,
		    "%s: stopped at a safe point; the %s is %s and can be resumed", c->dev.path,
		    volume_op_to_string(c->st.op) , "incomplete");
}

/* Crash tests: $VMCRYPT_TEST_KILL_AT names a step ("shrunk", "placing-header", ...); the
 * process kills itself with SIGKILL right after recording that step, the worst moment for
 * a crash. Harmless in production: nobody sets it. */
static void test_kill_point(const char *name)
{
	const char *at = secure_getenv("VMCRYPT_TEST_KILL_AT");

	if (at && streq(at, name))
		raise(SIGKILL);
}

static int save_phase(struct ctx *c, enum convstate_phase phase)
{
	int r;

	c->st.phase = phase;
	r = convstate_save(&c->st);
	if (r < 0)
		return fail(c, r, "Check that the state directory is writable and has free space.",
			    "Cannot record the conversion state of %s (%s)", c->dev.path, strerror(-r));
	test_kill_point(convstate_phase_to_string(phase));
	return 0;
}

static int fsync_path(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0)
		return negative_errno();
	return 0;
}

static void uuid_v4(char buf[37])
{
	unsigned char u[16];

	if (RAND_bytes(u, sizeof(u)) != 1) /* cannot fail on Linux with getrandom(); be safe */
		for (size_t i = 0; i < sizeof(u); i++)
			u[i] = (unsigned char)(rand() ^ time(NULL));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
		 u[14], u[15]);
}

static bool is_extfs(const char *type)
{
	return streq(type, "ext2") || streq(type, "ext3") || streq(type, "ext4");
}

/* Minimal-cost PBKDF2: the key file holds 512 random bits, so key stretching adds nothing and
 * would cost tens of seconds per boot under emulation (as clevis and systemd-cryptenroll do). */
static const struct crypt_pbkdf_type pbkdf_min = {
	.type = CRYPT_KDF_PBKDF2,
	.hash = "sha256",
	.iterations = 1000,
	.flags = CRYPT_PBKDF_NO_BENCHMARK,
};

/* The vmcrypt token: when and how the conversion began, and the filesystem's original size,
 * so that status and decrypt know what to give back. */
static int set_token(struct ctx *c, struct crypt_device *cd)
{
	json_t *o;
	char *text;
	int r;

	o = json_pack("{s:s, s:[], s:i, s:s, s:I, s:s, s:I, s:I}", "type", LUKS_TOKEN_TYPE, "keyslots",
		      "version", 1, "operation", volume_op_to_string(c->st.op), "started",
		      (json_int_t)c->st.started, "fs_type", c->st.fs_type, "fs_size",
		      (json_int_t)c->st.fs_size, "data_shift", (json_int_t)c->st.data_shift);
	if (!o)
		return -ENOMEM;
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		return -ENOMEM;
	r = crypt_token_json_set(cd, CRYPT_ANY_TOKEN, text);
	free(text);
	return r < 0 ? r : 0;
}

/* Sets c->pass to whichever of the request's key and recovery passphrase opens a keyslot of cd
 * (a check only: no device is activated). Returns 0, -EPERM when neither does, or -errno. */
static int pick_passphrase(struct ctx *c, struct crypt_device *cd)
{
	const struct { const void *p; size_t n; } cand[] = {
		{ c->req->key, c->req->key_size },
		{ c->req->recovery, c->req->recovery_size },
	};
	int r = -EPERM;

	for (size_t i = 0; i < ELEMENTSOF(cand); i++) {
		if (!cand[i].n)
			continue;
		r = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT, cand[i].p, cand[i].n, 0);
		if (r >= 0) {
			c->pass = cand[i].p;
			c->pass_size = cand[i].n;
			return 0;
		}
		if (r != -EPERM && r != -ENOENT)
			return r;
	}
	return -EPERM;
}

static int reencrypt_progress(uint64_t size, uint64_t offset, void *usrptr)
{
	struct ctx *c = usrptr;
	const char *at = secure_getenv("VMCRYPT_TEST_KILL_AT");
	uint64_t pct;

	/* Crash tests: "convert-N" kills the process once N% of the data has moved. */
	if (at && startswith(at, "convert-") && parse_u64(at + 8, &pct) == 0 && size &&
	    offset * 100 >= pct * size && offset > 0)
		raise(SIGKILL);

	return report(c, CONVERT_PHASE_DATA, offset, size) < 0 ? 1 : 0;
}

/* libcryptsetup 2.6.1 cannot finish a conversion killed after its last hotzone but before it
 * cleaned up its metadata (the last hotzone can be the whole device with a detached header).
 * Resuming then recomputes a hotzone from segments that are all final already: an encryption
 * with a moved segment fails ("Failed to set device segments for next reencryption hotzone"),
 * every other kind processes the data a second time and destroys it (stock `cryptsetup
 * reencrypt --resume-only` does the same). vmcrypt recognises that state in the segments and
 * finishes the job itself, through the public API.
 *
 * The state: the live (non-backup) segments are exactly one, of the final type (crypt when
 * encrypting, linear when decrypting), not in reencryption. At the start and in the middle of a
 * conversion there are always live segments of both types, or one of the old type. Returns 1 in
 * that state (with the moved segment's offset and size, 0/0 when there is none), 0 otherwise,
 * or -errno. */
static int conversion_complete(struct crypt_device *cd, bool encrypting, uint64_t *ret_offset,
			       uint64_t *ret_size)
{
	json_t *segs, *seg;
	const char *key;
	unsigned live = 0, live_final = 0;
	bool hot = false;

	*ret_offset = *ret_size = 0;
	segs = luks_segments(cd);
	if (!segs)
		return -EINVAL;
	json_object_foreach(segs, key, seg) {
		const char *type = json_string_value(json_object_get(seg, "type"));
		unsigned flags = luks_segment_flags(seg);

		if (flags & LUKS_SEGMENT_HOT)
			hot = true; /* a hotzone in flight is never complete */
		if (flags & LUKS_SEGMENT_MOVED) {
			(void)parse_u64(json_string_value(json_object_get(seg, "offset")) ?: "", ret_offset);
			(void)parse_u64(json_string_value(json_object_get(seg, "size")) ?: "", ret_size);
		}
		if (flags & LUKS_SEGMENT_BACKUP)
			continue;
		live++;
		if (type && streq(type, encrypting ? "crypt" : "linear"))
			live_final++;
	}
	json_decref(segs);
	return !hot && live == 1 && live_final == 1;
}

/* The cipher ("aes" + "xts-plain64"), sector size and offset of the segment a conversion ends
 * with (flag "backup-final"). Returns 0 or -EINVAL. */
static int final_segment(struct crypt_device *cd, char *cipher, size_t cipher_len, char *mode,
			 size_t mode_len, uint32_t *ret_sector, uint64_t *ret_offset)
{
	json_t *segs, *seg, *pick = NULL, *live = NULL;
	const char *key;
	int r = -EINVAL;

	segs = luks_segments(cd);
	if (!segs)
		return -EINVAL;
	/* The "backup-final" segment, or, when libcryptsetup's cleanup already erased the backup
	 * segments, the one live crypt segment (conversion_complete() made sure there is one). */
	json_object_foreach(segs, key, seg) {
		unsigned flags = luks_segment_flags(seg);

		if (flags & LUKS_SEGMENT_BACKUP_FINAL)
			pick = seg;
		else if (!(flags & LUKS_SEGMENT_BACKUP) &&
			 streq_ptr(json_string_value(json_object_get(seg, "type")), "crypt"))
			live = seg;
	}
	if (!pick)
		pick = live;
	if (pick) {
		const char *enc = json_string_value(json_object_get(pick, "encryption"));
		const char *dash = enc ? strchr(enc, '-') : NULL;

		if (dash && (size_t)(dash - enc) < cipher_len && strlen(dash + 1) < mode_len) {
			snprintf(cipher, cipher_len, "%.*s", (int)(dash - enc), enc);
			snprintf(mode, mode_len, "%s", dash + 1);
			*ret_sector = (uint32_t)json_integer_value(json_object_get(pick, "sector_size"));
			if (parse_u64(json_string_value(json_object_get(pick, "offset")) ?: "", ret_offset) == 0 &&
			    (*ret_sector == 512 || *ret_sector == 4096))
				r = 0;
		}
	}
	json_decref(segs);
	return r;
}

/* For each passphrase keyslot (type "luks2") of cd: 0 when the key opens it, 1 when the
 * recovery passphrase does; -1 for the slots that are free or not passphrase keyslots (the
 * reencryption's own). Returns 0, or -ENOKEY when a keyslot opens with neither. */
static int old_keyslot_passphrases(struct ctx *c, struct crypt_device *cd, int ret[LUKS_KEYSLOTS_MAX])
{
	json_t *slots = luks_keyslots(cd), *slot;
	const char *id;
	int r = 0;

	for (int k = 0; k < LUKS_KEYSLOTS_MAX; k++)
		ret[k] = -1;
	if (!slots)
		return -EINVAL;
	json_object_foreach(slots, id, slot) {
		uint64_t k;

		if (!streq_ptr(json_string_value(json_object_get(slot, "type")), "luks2") ||
		    parse_u64(id, &k) < 0 || k >= LUKS_KEYSLOTS_MAX)
			continue;
		if (c->req->key_size &&
		    crypt_activate_by_passphrase(cd, NULL, (int)k, c->req->key, c->req->key_size, 0) >= 0)
			ret[k] = 0;
		else if (c->req->recovery_size &&
			 crypt_activate_by_passphrase(cd, NULL, (int)k, c->req->recovery, c->req->recovery_size, 0) >= 0)
			ret[k] = 1;
		else
			r = -ENOKEY;
	}
	json_decref(slots);
	return r;
}

/* Writes a clean header with the volume's own volume key, UUID, cipher, sector size, keyslots
 * and tokens to the state directory (header.img), for finalize_encrypt_moved(). */
static int make_final_header(struct ctx *c, struct crypt_device *cd, const char *header_file)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *nd = NULL;
	_cleanup_secret_ char *vk = NULL;
	char *tokens[LUKS_TOKENS_MAX] = {};
	int slot_pass[LUKS_KEYSLOTS_MAX];
	size_t vk_size = 64;
	struct crypt_params_luks2 luks2 = {
		.data_device = c->dev.path,
		.pbkdf = &pbkdf_min,
	};
	_cleanup_close_ int fd = -1;
	int r;

	char cipher[32], mode[64];
	uint64_t offset;

	/* The final layout is the "backup-final" segment's: the live header still describes the
	 * old one in places (crypt_get_cipher() and friends). */
	r = final_segment(cd, cipher, sizeof(cipher), mode, sizeof(mode), &luks2.sector_size, &offset);
	if (r < 0)
		return r;
	vk = secret_alloc(vk_size);
	if (!vk)
		return -ENOMEM;
	(void)pick_passphrase(c, cd);
	r = crypt_volume_key_get(cd, CRYPT_ANY_SLOT, vk, &vk_size, c->pass, c->pass_size);
	if (r < 0)
		return r == -ENOENT ? -EPERM : r;
	/* Every passphrase keyslot comes back under its own number (a token names keyslots by
	 * number); libcryptsetup has no way to copy a keyslot, so each needs its passphrase. */
	r = old_keyslot_passphrases(c, cd, slot_pass);
	if (r < 0)
		return r;
	/* A token lost here would be the vmcrypt token, which carries the filesystem size
	 * decrypt needs: fail instead, the live header is untouched and the step is redone. */
	for (int t = 0; t < LUKS_TOKENS_MAX; t++) {
		const char *json;
		if (crypt_token_json_get(cd, t, &json) >= 0 && !(tokens[t] = strdup(json))) {
			r = -ENOMEM;
			goto out;
		}
	}

	(void)unlink(header_file);
	fd = open(header_file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || posix_fallocate(fd, 0, 4096) != 0) {
		r = fd < 0 ? negative_errno() : -EIO;
		goto out;
	}
	fd = safe_close(fd);
	r = crypt_init(&nd, header_file);
	if (r >= 0)
		r = crypt_set_data_offset(nd, offset / 512);
	if (r >= 0)
		r = crypt_set_pbkdf_type(nd, &pbkdf_min);
	if (r >= 0)
		r = crypt_format(nd, CRYPT_LUKS2, cipher, mode, crypt_get_uuid(cd), vk, vk_size, &luks2);
	if (r < 0)
		goto out;
	for (int k = 0; k < LUKS_KEYSLOTS_MAX; k++) {
		if (slot_pass[k] < 0)
			continue;
		r = slot_pass[k] == 0 ? crypt_keyslot_add_by_volume_key(nd, k, vk, vk_size, c->req->key, c->req->key_size)
				      : crypt_keyslot_add_by_volume_key(nd, k, vk, vk_size, c->req->recovery, c->req->recovery_size);
		if (r < 0)
			goto out;
	}
	for (int t = 0; t < LUKS_TOKENS_MAX; t++)
		if (tokens[t] && (r = crypt_token_json_set(nd, t, tokens[t])) < 0)
			goto out;
	crypt_free(TAKE_PTR(nd));
	r = fsync_path(header_file);
	if (r >= 0)
		r = fsync_parent_dir(header_file);
out:
	for (int t = 0; t < LUKS_TOKENS_MAX; t++)
		free(tokens[t]);
	return r;
}

static int place_header(struct ctx *c, const char *header_file);
static int online_activate(struct ctx *c, const char *header);

/* Finishes an encryption whose data is all encrypted (conversion_complete()): wipes the
 * moved segment's old copy of the first data with random bytes, as libcryptsetup would, and
 * replaces the header with a clean one holding the same volume key. */
static int finalize_encrypt_moved(struct ctx *c, struct crypt_device *cd, uint64_t moved_offset,
				  uint64_t moved_size)
{
	char header_file[PATH_MAX];
	int r;

	log_info("%s: all data is encrypted; finishing the conversion", c->dev.path);
	if (!*c->st.uuid) {
		/* Started by cryptsetup or with its state lost: record it now. */
		snprintf(c->st.uuid, sizeof(c->st.uuid), "%s", crypt_get_uuid(cd));
		snprintf(c->st.target, sizeof(c->st.target), "%s", c->dev.path);
		device_identity(&c->dev, c->st.identity, sizeof(c->st.identity));
		c->st.device_size = c->dev.size;
		c->st.op = VOLUME_OP_ENCRYPT;
		c->st.data_shift = crypt_get_data_offset(cd) * 512;
		c->st.started = (int64_t)time(NULL);
	}
	r = convstate_path(c->st.uuid, "header.img", header_file, sizeof(header_file));
	if (r < 0)
		return fail(c, r, NULL, "%s: state path too long", c->dev.path);
	if (moved_size) {
		r = crypt_wipe(cd, NULL, CRYPT_WIPE_RANDOM, moved_offset, moved_size, 1 << 20, 0, NULL, NULL);
		if (r < 0)
			return fail_resumable(c, r, CONVERT_RESUME_AGAIN,
				    "%s: cannot wipe the old copy of the first data segment (%s)%s", c->dev.path,
				    strerror(-r), convert_cryptsetup_reason());
	}
	{
		char dir[PATH_MAX];

		if (convstate_path(c->st.uuid, NULL, dir, sizeof(dir)) < 0 || (r = mkdir_p(dir, 0700)) < 0)
			return fail(c, -EIO, NULL, "%s: cannot create the state directory for %s", c->dev.path, c->st.uuid);
	}
	r = make_final_header(c, cd, header_file);
	if (r == -EPERM)
		return fail(c, r, "Give the key file this volume was encrypted with.",
			    "%s: the key does not open this volume", c->dev.path);
	if (r == -ENOKEY)
		return fail(c, r, "Give both the key file and the recovery passphrase file.",
			    "%s: finishing rebuilds the header, which needs the passphrase of every keyslot", c->dev.path);
	if (r < 0)
		return fail_resumable(c, r, CONVERT_RESUME_AGAIN,
			    "%s: cannot make the final LUKS2 header (%s)%s", c->dev.path, strerror(-r), convert_cryptsetup_reason());
	if ((r = save_phase(c, PHASE_FINALIZING)) < 0)
		return r;
	r = place_header(c, header_file);
	if (r < 0)
		return r;
	(void)unlink(header_file);
	return 0;
}

/* Overwrites a file with zeros and fsyncs it: a detached header after decryption. */
static int wipe_file(const char *path)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_free_ char *zeros = calloc(1, 1 << 20);
	struct stat st;

	if (fd < 0)
		return negative_errno();
	if (!zeros)
		return -ENOMEM;
	if (fstat(fd, &st) < 0)
		return negative_errno();
	for (off_t off = 0; off < st.st_size; off += 1 << 20) {
		size_t n = (size_t)MIN((off_t)(1 << 20), st.st_size - off);
		if (pwrite(fd, zeros, n, off) != (ssize_t)n)
			return -EIO;
	}
	return fsync(fd) < 0 ? negative_errno() : 0;
}

/* Finishes a detached-header encryption whose data is all encrypted: a clean header with the
 * same volume key replaces the detached header file atomically (new file, fsync, rename). */
static int finalize_encrypt_detached(struct ctx *c, struct crypt_device *cd, const char *header)
{
	char tmp[PATH_MAX + 16];
	int r;

	log_info("%s: all data is encrypted; finishing the conversion", c->dev.path);
	snprintf(tmp, sizeof(tmp), "%s.vmcrypt-new", header);
	r = make_final_header(c, cd, tmp);
	if (r == -EPERM || r == -ENOKEY)
		(void)unlink(tmp);
	if (r == -EPERM)
		return fail(c, r, "Give the key file this volume was encrypted with.",
			    "%s: the key does not open this volume", c->dev.path);
	if (r == -ENOKEY) {
		fail(c, r, "Give both the key file and the recovery passphrase file.",
		     "%s: finishing rebuilds the header, which needs the passphrase of every keyslot", c->dev.path);
		return r;
	}
	if (r >= 0 && rename(tmp, header) < 0)
		r = negative_errno();
	if (r >= 0)
		r = fsync_parent_dir(header);
	if (r < 0) {
		(void)unlink(tmp);
		r = fail_resumable(c, r, CONVERT_RESUME_AGAIN,
				   "%s: cannot write the final LUKS2 header to %s (%s)%s", c->dev.path, header,
				   strerror(-r), convert_cryptsetup_reason());
		c->res->resume_header = true; /* the header is detached: resume must be told where */
		return r;
	}
	return 0;
}

/* Runs (or recovers and runs) the reencryption whose metadata is in header (NULL: on the
 * device) to its end. Returns 0 when finished, -EINTR when stopped at a safe point. */
static int run_reencrypt(struct ctx *c, const char *header)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	struct crypt_params_reencrypt params = {};
	crypt_reencrypt_info ri;
	int r;

	r = luks_load(header, c->dev.path, &cd);
	if (r < 0)
		return fail(c, r, "Run 'vmcrypt status TARGET' and report this error.",
			    "%s: cannot load the LUKS2 header%s%s%s", c->dev.path, header ? " from " : "",
			    header ? header : "", convert_cryptsetup_reason());

	/* Whichever of key and recovery passphrase opens it; a finished decryption may have no
	 * keyslot left, so a miss is not an error here (the steps that need a key report it). */
	(void)pick_passphrase(c, cd);
	ri = crypt_reencrypt_status(cd, &params);
	if (params.flags & CRYPT_REENCRYPT_REPAIR_NEEDED) {
		/* Metadata from an older libcryptsetup without a digest: let the key vouch for it. */
		r = crypt_reencrypt_init_by_passphrase(cd, NULL, c->pass, c->pass_size, CRYPT_ANY_SLOT,
						       CRYPT_ANY_SLOT, NULL, NULL,
						       &(struct crypt_params_reencrypt){ .flags = CRYPT_REENCRYPT_REPAIR_NEEDED });
		if (r < 0)
			goto key_or_io;
		ri = crypt_reencrypt_status(cd, &params);
	}
	if (ri == CRYPT_REENCRYPT_CRASH && c->online)
		/* Online, the activation that came first has recovered the hotzone already. */
		return fail_resumable(c, -EIO, CONVERT_RESUME_AGAIN,
			    "%s: the conversion needs recovery, which happens when %s is activated", c->dev.path, c->active);
	if (ri == CRYPT_REENCRYPT_CRASH) {
		/* Cut short mid-hotzone: libcryptsetup replays or rolls back the hotzone from its
		 * resilience data (datashift, checksum), then the reencryption is clean again. */
		log_info("%s: recovering the interrupted conversion", c->dev.path);
		r = crypt_reencrypt_init_by_passphrase(cd, NULL, c->pass, c->pass_size, CRYPT_ANY_SLOT,
						       CRYPT_ANY_SLOT, NULL, NULL,
						       &(struct crypt_params_reencrypt){ .flags = CRYPT_REENCRYPT_RECOVERY });
		if (r < 0)
			goto key_or_io;
		crypt_free(cd);
		cd = NULL;
		r = luks_load(header, c->dev.path, &cd);
		if (r < 0)
			return fail(c, r, NULL, "%s: cannot reload the header after recovery%s", c->dev.path,
				    convert_cryptsetup_reason());
		ri = crypt_reencrypt_status(cd, &params);
	}
	if (ri == CRYPT_REENCRYPT_NONE)
		return 0;
	if (ri != CRYPT_REENCRYPT_CLEAN)
		return fail(c, -EINVAL, "Inspect the header with 'cryptsetup luksDump'.",
			    "%s: the reencryption metadata is invalid%s", c->dev.path, convert_cryptsetup_reason());

	{
		bool encrypting = params.mode == CRYPT_REENCRYPT_ENCRYPT;
		uint64_t moved_offset = 0, moved_size = 0;

		if (conversion_complete(cd, encrypting, &moved_offset, &moved_size) == 1) {
			if (!encrypting) {
				/* No key check: libcryptsetup's cleanup may already have destroyed the
				 * keyslots, and a finished decryption has nothing left to protect.
				 * Every byte is decrypted and in place; only the header says otherwise. A
				 * header in the state directory goes with it when we finish; a detached
				 * header of the user's holds nothing of use any more but its keyslots,
				 * which are wiped (a normal finish leaves it without keyslots too). */
				log_info("%s: all data is decrypted; finishing the conversion", c->dev.path);
				if (c->st.detached && header) {
					crypt_free(TAKE_PTR(cd));
					r = wipe_file(header);
					if (r < 0)
						return fail(c, r, NULL, "%s: decrypted, but cannot wipe the old header %s (%s)",
							    c->dev.path, header, strerror(-r));
				}
				return 0;
			}
			/* The key must open the volume: the final header is built from it. */
			r = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT, c->pass, c->pass_size, 0);
			if (r < 0)
				goto key_or_io;
			if (header)
				return finalize_encrypt_detached(c, cd, header);
			return finalize_encrypt_moved(c, cd, moved_offset, moved_size);
		}
	}

	/* Resume exactly what the metadata describes: as cryptsetup does, hand back only the
	 * mode, direction and shift, and let the library keep its resilience and sizes. */
	params.resilience = NULL;
	params.hash = NULL;
	params.max_hotzone_size = 0;
	params.device_size = 0;
	params.flags = CRYPT_REENCRYPT_RESUME_ONLY;
	/* Online: the name makes libcryptsetup move the data under the active mapping (it
	 * stacks its overlay and hotzone mappings below it and reloads its table per hotzone). */
	r = crypt_reencrypt_init_by_passphrase(cd, c->online ? c->active : NULL, c->pass, c->pass_size, CRYPT_ANY_SLOT,
					       CRYPT_ANY_SLOT, NULL, NULL, &params);
	if (r < 0)
		goto key_or_io;
	r = crypt_reencrypt_run(cd, reencrypt_progress, c);
	if (r < 0)
		return fail_resumable(c, r, CONVERT_RESUME_FAILED_RUN,
			    "%s: the conversion failed (%s)%s", c->dev.path, strerror(-r), convert_cryptsetup_reason());
	ri = crypt_reencrypt_status(cd, NULL);
	if (ri != CRYPT_REENCRYPT_NONE)
		return stopped(c);
	return 0;

key_or_io:
	if (r == -EPERM || r == -ENOENT)
		return fail(c, -EPERM, "Give the key file this volume was encrypted with.",
			    "%s: the key does not open this volume", c->dev.path);
	return fail_resumable(c, r, CONVERT_RESUME_AGAIN,
		    "%s: cannot resume the conversion (%s)%s", c->dev.path, strerror(-r), convert_cryptsetup_reason());
}

/* --- encrypt ---------------------------------------------------------------------------- */

/* Decides how to make room for a header on the device. Returns 0 with *ret_new_fs_size set
 * (0: nothing to shrink), or a refusal. Reads only. */
static int plan_room(struct ctx *c, uint64_t *ret_new_fs_size)
{
	const struct device_info *d = &c->dev;
	const unsigned long long reduce_mib = CONVERT_REDUCE / MIB(1);
	uint64_t limit = d->size - CONVERT_REDUCE;
	char msg[1024], remedy_both[256];
	int r;

	snprintf(remedy_both, sizeof(remedy_both),
		 "Use --header FILE to keep the LUKS2 header in a separate file (a detached header), "
		 "or grow the device by %llu MiB (the space at its end then holds the header).", reduce_mib);

	*ret_new_fs_size = 0;
	if (is_extfs(d->fs_type)) {
		struct extfs_layout l;
		struct extfs_room room;
		uint64_t new_blocks;

		r = report(c, CONVERT_PHASE_CHECK, 0, 0);
		if (r < 0)
			return stopped(c);
		r = extfs_check(d->path, msg, sizeof(msg));
		if (r == -EUCLEAN)
			return fail(c, r, "Repair it with 'e2fsck -f DEVICE' (after a backup), then retry.",
				    "%s: the %s filesystem failed its check (e2fsck -f -n): %s", d->path,
				    d->fs_type, msg);
		if (r < 0)
			return fail(c, r, "Install e2fsprogs.", "%s: cannot check the filesystem: %s", d->path,
				    *msg ? msg : strerror(-r));
		r = extfs_read_layout(d->path, &l);
		if (r < 0)
			return fail(c, r, "Check the filesystem with 'dumpe2fs DEVICE'.",
				    "%s: cannot read the filesystem's layout (%s)", d->path, strerror(-r));
		c->st.fs_size = l.block_count * l.block_size;
		if (c->st.fs_size <= limit) {
			extfs_layout_done(&l);
			return 0; /* already room at the end */
		}
		new_blocks = limit / l.block_size;
		r = extfs_shrink_room(&l, new_blocks, &room);
		extfs_layout_done(&l);
		if (r == -ENOSPC) {
			char need[32], have[32];

			return fail(c, r,
				    "Free at least that much space on the filesystem, or use --header FILE "
				    "(a detached header needs no room on the device).",
				    "%s: no room to shrink the %s filesystem by %s for the LUKS2 header: "
				    "moving the data at its end needs up to %s free and %llu free inodes, "
				    "it has %s and %llu",
				    d->path, d->fs_type, format_bytes(msg, sizeof(msg), d->size - limit),
				    format_bytes(need, sizeof(need), (room.blocks_to_move + room.margin_blocks) * l.block_size),
				    (unsigned long long)room.inodes_to_move,
				    format_bytes(have, sizeof(have), room.kept_free_blocks * l.block_size),
				    (unsigned long long)room.kept_free_inodes);
		}
		if (r < 0)
			return fail(c, r, NULL, "%s: cannot plan the filesystem shrink (%s)", d->path, strerror(-r));
		*ret_new_fs_size = new_blocks * l.block_size;
		return 0;
	}

	if (!*d->fs_type) {
		/* No filesystem: the end of the device is free only if nothing was ever written
		 * there. Zeros prove it; anything else may be data. */
		r = device_tail_is_zero(d->path, d->size, CONVERT_REDUCE);
		if (r < 0)
			return fail(c, r, NULL, "%s: cannot read the end of the device (%s)", d->path, strerror(-r));
		if (r == 0)
			return fail(c, -ENOSPC, remedy_both,
				    "%s: there is no filesystem on it, so vmcrypt cannot shrink anything to make "
				    "room for the LUKS2 header, and its last %llu MiB hold data", d->path, reduce_mib);
		return 0;
	}

	if (startswith(d->fs_type, "partition-table") || streq(d->fs_type, "LVM2_member") ||
	    streq(d->fs_type, "ambivalent") || streq(d->fs_type, "swap"))
		return fail(c, -EOPNOTSUPP,
			    streq(d->fs_type, "swap") ? "Re-create swap with a random key in /etc/crypttab instead."
			    : streq(d->fs_type, "LVM2_member") ? "Encrypt the logical volumes, or the disk before creating the physical volume."
			    : startswith(d->fs_type, "partition-table") ? "Encrypt each partition instead of the whole disk."
			    : "Wipe the stale signature with 'wipefs' after checking which one is real.",
			    "%s: holds %s, which vmcrypt does not convert in place", d->path,
			    streq(d->fs_type, "ambivalent") ? "two conflicting signatures" : d->fs_type);

	/* A filesystem vmcrypt cannot shrink may still end early enough: after the device grew,
	 * or after its owner shrank it (btrfs shrinks while mounted). */
	{
		uint64_t fs_size;

		if (fs_size_bytes(d->path, d->fs_type, &fs_size) == 0) {
			c->st.fs_size = fs_size;
			if (fs_size <= limit)
				return 0;
		}
	}
	if (streq(d->fs_type, "btrfs")) {
		char remedy[320];

		snprintf(remedy, sizeof(remedy),
			 "Shrink it while mounted ('btrfs filesystem resize -%lluM MOUNTPOINT'), unmount it and "
			 "retry; or use --header FILE to keep the LUKS2 header in a separate file (a detached "
			 "header); or grow the device by %llu MiB.", reduce_mib, reduce_mib);
		return fail(c, -EOPNOTSUPP, remedy,
			    "%s: btrfs can only shrink while mounted, so vmcrypt cannot make room for the LUKS2 "
			    "header at its end", d->path);
	}
	return fail(c, -EOPNOTSUPP, remedy_both,
		    "%s: %s cannot shrink to make room for the LUKS2 header on the device", d->path, d->fs_type);
}

static uint32_t pick_sector_size(struct ctx *c, uint64_t data_size)
{
	uint32_t want = c->req->sector_size;

	if (want)
		return want;
	/* 4096-byte sectors cost about 40% less CPU, but a filesystem that writes smaller blocks
	 * would break on them; no filesystem: keep 512, the raw contents' I/O size is unknown. */
	if (c->dev.fs_block_size >= 4096 && data_size % 4096 == 0 && CONVERT_DATA_SHIFT % 4096 == 0)
		return 4096;
	return 512;
}

static int check_common(struct ctx *c)
{
	struct device_usage use;
	int r;

	r = device_probe(c->req->target, &c->dev);
	if (r == -ENOENT)
		return fail(c, r, "Check the path.", "%s: no such device or file", c->req->target);
	if (r == -ENOTBLK)
		return fail(c, r, "Give a block device, a partition or a disk image file.",
			    "%s: not a block device or regular file", c->req->target);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot open or probe it (%s)", c->req->target, strerror(-r));
	if (c->dev.read_only)
		return fail(c, -EROFS, "Make it writable (blockdev --setrw, or the file's permissions).",
			    "%s: read-only", c->dev.path);
	if (c->in_place) {
		/* Its own mount is expected; what sits on top of it (LVM, md, dm) is not. */
		r = device_check_holders(&c->dev, &use);
		if (r == -EBUSY)
			return fail(c, r, "Encrypt the device at the top of the stack instead.",
				    "%s: in use: %s", c->dev.path, use.what);
		return r < 0 ? fail(c, r, NULL, "%s: cannot list its holders (%s)", c->dev.path, strerror(-r)) : 0;
	}
	r = device_check_unused(&c->dev, &use);
	if (r == -EBUSY)
		return fail(c, r, "Unmount it and stop whatever uses it, then retry ('vmcrypt check' lists the processes).",
			    "%s: in use: %s", c->dev.path, use.what);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot tell whether it is in use (%s)", c->dev.path, strerror(-r));
	return 0;
}

/* Refuses, before anything changes, a token libcryptsetup would refuse after the shrink, or one
 * that would pass for the conversion's own record (its type, or the old "vmcrypt" shape with an
 * "operation"). */
static int check_token_json(struct ctx *c)
{
	const char *type;
	json_t *o, *slots;
	bool ok;

	if (!c->req->token_json)
		return 0;
	o = json_loads(c->req->token_json, JSON_REJECT_DUPLICATES, NULL);
	slots = json_object_get(o, "keyslots");
	type = json_string_value(json_object_get(o, "type"));
	ok = json_is_object(o) && type && json_is_array(slots) && !streq(type, LUKS_TOKEN_TYPE) &&
	     !(streq(type, LUKS_TOKEN_TYPE_UNLOCK) && json_object_get(o, "operation"));
	for (size_t i = 0; ok && i < json_array_size(slots); i++) {
		const char *k = json_string_value(json_array_get(slots, i));

		ok = k && (streq(k, "0") || (streq(k, "1") && c->req->recovery_size));
	}
	json_decref(o);
	if (!ok)
		return fail(c, -EINVAL, "Give a JSON object with a \"type\" string and \"keyslots\" naming \"0\" (or \"1\" with a recovery passphrase).",
			    "%s: the token JSON is not a LUKS2 token vmcrypt can set", c->dev.path);
	return 0;
}

/* Fails when a conversion of this target is already in flight. */
static int check_not_in_flight(struct ctx *c)
{
	struct convstate st;

	if (convstate_find(&c->dev, &st) == 0)
		return fail_resumable(c, -EALREADY, CONVERT_RESUME_PENDING,
			    "%s: an interrupted %s (since %lld) is waiting to be resumed", c->dev.path,
			    volume_op_to_string(st.op), (long long)st.started);
	return 0;
}

/* Formats a new LUKS2 header in header_file for the data on the target and initializes the
 * reencryption metadata (and, with a data shift, copies the first segment to the end of the
 * device). The device's first bytes are not written. */
static int encrypt_init(struct ctx *c, const char *header_file, bool shift)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	struct crypt_params_luks2 luks2 = {
		.sector_size = c->st.sector_size,
		.data_device = c->dev.path,
		.pbkdf = &pbkdf_min,
	};
	struct crypt_params_reencrypt params = {
		.mode = CRYPT_REENCRYPT_ENCRYPT,
		.direction = shift ? CRYPT_REENCRYPT_BACKWARD : CRYPT_REENCRYPT_FORWARD,
		.resilience = shift ? "datashift" : "checksum",
		.hash = "sha256",
		.data_shift = shift ? c->st.data_shift / 512 : 0,
		.luks2 = &luks2,
		.flags = CRYPT_REENCRYPT_INITIALIZE_ONLY | (shift ? CRYPT_REENCRYPT_MOVE_FIRST_SEGMENT : 0),
	};
	_cleanup_close_ int fd = -1;
	int r, keyslot;

	fd = open(header_file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fail(c, negative_errno(), "Choose another path for the header file.",
			    "%s: cannot create the header file %s (%m)", c->dev.path, header_file);
	/* libcryptsetup wants at least one sector to look at. */
	if (posix_fallocate(fd, 0, 4096) != 0)
		return fail(c, -EIO, NULL, "%s: cannot create the header file %s", c->dev.path, header_file);
	fd = safe_close(fd);

	luks_setup_logging();
	r = crypt_init(&cd, header_file);
	if (r >= 0 && shift)
		r = crypt_set_data_offset(cd, c->st.data_shift / 512);
	if (r >= 0)
		r = crypt_set_pbkdf_type(cd, &pbkdf_min);
	if (r >= 0)
		r = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", c->st.uuid, NULL, 64, &luks2);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot format the LUKS2 header (%s)%s", c->dev.path, strerror(-r),
			    convert_cryptsetup_reason());
	keyslot = crypt_keyslot_add_by_volume_key(cd, 0, NULL, 0, c->req->key, c->req->key_size);
	if (keyslot < 0)
		return fail(c, keyslot, NULL, "%s: cannot add the keyslot (%s)%s", c->dev.path,
			    strerror(-keyslot), convert_cryptsetup_reason());
	/* The recovery keyslot now: libcryptsetup refuses new keyslots once the reencryption is
	 * initialised. Its volume key is the same, so it opens the volume at every step. */
	if (c->req->recovery_size) {
		r = crypt_keyslot_add_by_volume_key(cd, 1, NULL, 0, c->req->recovery, c->req->recovery_size);
		if (r < 0)
			return fail(c, r, NULL, "%s: cannot add the recovery keyslot (%s)%s", c->dev.path,
				    strerror(-r), convert_cryptsetup_reason());
	}
	r = set_token(c, cd);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot store the vmcrypt token (%s)%s", c->dev.path, strerror(-r),
			    convert_cryptsetup_reason());
	if (c->req->token_json) {
		r = crypt_token_json_set(cd, CRYPT_ANY_TOKEN, c->req->token_json);
		if (r < 0)
			return fail(c, r, "Check the token JSON: a \"type\" and \"keyslots\" naming keyslot 0 or 1.",
				    "%s: libcryptsetup refuses the token (%s)%s", c->dev.path, strerror(-r),
				    convert_cryptsetup_reason());
	}
	r = crypt_reencrypt_init_by_passphrase(cd, NULL, c->pass, c->pass_size, CRYPT_ANY_SLOT,
					       keyslot, "aes", "xts-plain64", &params);
	if (r < 0)
		return fail_resumable(c, r, CONVERT_RESUME_RETRY,
			    "%s: cannot initialize the conversion (%s)%s", c->dev.path, strerror(-r),
			    convert_cryptsetup_reason());
	crypt_free(TAKE_PTR(cd));
	r = fsync_path(header_file);
	if (r >= 0)
		r = fsync_parent_dir(header_file);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot flush the header file %s (%s)", c->dev.path, header_file,
			    strerror(-r));
	return 0;
}

/* Writes the complete header (made in the state directory) to the start of the device. The
 * data it overwrites was copied behind the data by encrypt_init(). Safe to repeat. */
static int place_header(struct ctx *c, const char *header_file)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	int r;

	luks_setup_logging();
	r = crypt_init(&cd, c->dev.path);
	if (r >= 0)
		r = crypt_header_restore(cd, CRYPT_LUKS2, header_file);
	if (r >= 0)
		r = fsync_path(c->dev.path);
	if (r < 0)
		return fail_resumable(c, r, CONVERT_RESUME_RETRY,
			    "%s: cannot write the LUKS2 header to the device (%s)%s", c->dev.path, strerror(-r),
			    convert_cryptsetup_reason());
	return 0;
}

/* A regular file shrinks with its filesystem (resize2fs truncates it); give it its size back,
 * the device must keep its size for the header and the shifted data. */
static int restore_file_size(struct ctx *c)
{
	struct stat st;

	if (c->dev.is_block)
		return 0;
	if (stat(c->dev.path, &st) < 0)
		return negative_errno();
	if ((uint64_t)st.st_size == c->st.device_size)
		return 0;
	if (truncate(c->dev.path, (off_t)c->st.device_size) < 0)
		return negative_errno();
	return fsync_path(c->dev.path);
}

/* From a shrunk filesystem (or one with room at its end) to a finished encryption. */
static int encrypt_from_shrunk(struct ctx *c)
{
	char header_file[PATH_MAX];
	int r;

	r = convstate_path(c->st.uuid, "header.img", header_file, sizeof(header_file));
	if (r < 0)
		return fail(c, r, NULL, "%s: state path too long", c->dev.path);

	if (c->st.phase <= PHASE_INIT) {
		/* A header.img left by a crash during init is incomplete: start it again. The
		 * device's start is untouched until the header is placed. */
		if (unlink(header_file) < 0 && errno != ENOENT)
			return fail(c, negative_errno(), NULL, "%s: cannot remove %s (%m)", c->dev.path, header_file);
		if ((r = save_phase(c, PHASE_INIT)) < 0)
			return r;
		r = encrypt_init(c, header_file, true);
		if (r < 0)
			return r;
		if ((r = save_phase(c, PHASE_PLACING_HEADER)) < 0)
			return r;
	}
	if (c->st.phase == PHASE_PLACING_HEADER) {
		r = place_header(c, header_file);
		if (r < 0)
			return r;
		if ((r = save_phase(c, PHASE_CONVERTING)) < 0)
			return r;
		(void)unlink(header_file); /* the device's header is the live one now */
	}
	return c->online ? online_activate(c, NULL) : run_reencrypt(c, NULL);
}

static int finish_encrypt(struct ctx *c)
{
	int r;

	c->res->op = VOLUME_OP_ENCRYPT;
	snprintf(c->res->uuid, sizeof(c->res->uuid), "%s", c->st.uuid);
	c->res->sector_size = c->st.sector_size;
	c->res->header_detached = c->st.detached;
	c->res->data_offset = c->st.detached ? 0 : c->st.data_shift;
	snprintf(c->res->header_path, sizeof(c->res->header_path), "%s",
		 c->st.detached ? c->st.header : c->dev.path);
	snprintf(c->res->fs_type, sizeof(c->res->fs_type), "%s", c->st.fs_type);
	r = convstate_remove(c->st.uuid);
	if (r < 0)
		log_warning("%s: encrypted, but cannot remove its state directory (%s)", c->dev.path, strerror(-r));
	return 0;
}

/* Copies the first size bytes of from into to (created 0600 with O_EXCL), leaving holes where
 * the source reads as zeros, then fsyncs. Returns 0 or -errno. */
static int copy_region(const char *from, const char *to, uint64_t size, bool create)
{
	_cleanup_close_ int in = -1, out = -1;
	_cleanup_free_ char *buf = NULL;
	const size_t chunk = 1 << 20;
	uint64_t off = 0;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return negative_errno();
	out = open(to, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_EXCL | O_NOFOLLOW : 0), 0600);
	if (out < 0)
		return negative_errno();
	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	while (off < size) {
		size_t want = (size_t)MIN((uint64_t)chunk, size - off), i;
		ssize_t n = pread(in, buf, want, (off_t)off);

		if (n < 0)
			return negative_errno();
		if ((size_t)n != want)
			return -EIO;
		for (i = 0; i < want && !buf[i]; i++)
			;
		/* A new backup file keeps zero chunks as holes; restoring writes them all. */
		if (i < want || !create) {
			ssize_t w = pwrite(out, buf, want, (off_t)off);
			if (w < 0)
				return negative_errno();
			if ((size_t)w != want)
				return -EIO;
		}
		off += want;
	}
	if (create && ftruncate(out, (off_t)size) < 0)
		return negative_errno();
	if (fsync(out) < 0)
		return negative_errno();
	return 0;
}

/* e2fsprogs 1.47.0's undo file breaks resize2fs on filesystems with 1 KiB blocks and a resize
 * inode ("Resize inode is corrupt"). For those (small: mkfs picks 1 KiB blocks below 512 MiB)
 * the safety net is a full copy of the filesystem in the state directory instead: made and
 * fsynced before resize2fs runs, restored by resume if the shrink is cut short. */
static int shrink_with_backup(struct ctx *c, uint64_t new_fs_size, char *msg, size_t msg_len)
{
	char backup[PATH_MAX], tmp[PATH_MAX + 8], dir[PATH_MAX];
	struct statvfs sv;
	int r;

	if ((r = convstate_path(c->st.uuid, "backup.img", backup, sizeof(backup))) < 0 ||
	    (r = convstate_path(c->st.uuid, NULL, dir, sizeof(dir))) < 0)
		return r;
	snprintf(tmp, sizeof(tmp), "%s.tmp", backup);
	if (statvfs(dir, &sv) < 0)
		return negative_errno();
	if ((uint64_t)sv.f_bavail * sv.f_frsize < c->st.fs_size + MIB(64)) {
		snprintf(msg, msg_len, "the state directory %.900s has no room for the %llu MiB safety copy "
			 "that a 1 KiB-block filesystem needs", dir, (unsigned long long)(c->st.fs_size >> 20));
		return -ENOSPC;
	}
	(void)unlink(tmp);
	r = copy_region(c->dev.path, tmp, c->st.fs_size, true);
	if (r >= 0 && rename(tmp, backup) < 0)
		r = negative_errno();
	if (r >= 0)
		r = fsync_parent_dir(backup);
	if (r < 0) {
		(void)unlink(tmp);
		snprintf(msg, msg_len, "cannot make the safety copy %.900s (%s)", backup, strerror(-r));
		return r;
	}
	test_kill_point("shrink-backup");
	r = extfs_resize(c->dev.path, new_fs_size, NULL, msg, msg_len);
	if (r < 0) {
		int u = copy_region(backup, c->dev.path, c->st.fs_size, false);
		(void)restore_file_size(c);
		if (u < 0)
			return u;
	}
	return r;
}

/* Puts back the safety copy of shrink_with_backup(), if one was completed. Returns 1 when it
 * restored, 0 when there was none, or -errno. */
static int restore_backup(struct ctx *c)
{
	char backup[PATH_MAX];
	int r;

	if ((r = convstate_path(c->st.uuid, "backup.img", backup, sizeof(backup))) < 0)
		return r;
	if (access(backup, F_OK) < 0)
		return 0;
	(void)restore_file_size(c);
	r = copy_region(backup, c->dev.path, c->st.fs_size, false);
	return r < 0 ? r : 1;
}

/* Encrypts with a detached header, from the start or from a recorded step. The device is not
 * written until the data moves, so a header cut short during init is simply made again (the
 * file is ours: encrypt refused to start when it existed). */
static int encrypt_detached(struct ctx *c)
{
	int r;

	if (c->st.phase <= PHASE_INIT) {
		(void)unlink(c->st.header);
		if ((r = save_phase(c, PHASE_INIT)) < 0)
			return r;
		r = encrypt_init(c, c->st.header, false);
		if (r < 0) {
			(void)unlink(c->st.header);
			(void)convstate_remove(c->st.uuid);
			return r;
		}
		if ((r = save_phase(c, PHASE_CONVERTING)) < 0)
			return r;
	}
	if (c->in_place)
		return 0;
	if (c->online)
		return online_activate(c, c->st.header);
	r = run_reencrypt(c, c->st.header);
	return r < 0 ? r : finish_encrypt(c);
}

/* The whole encryption from its first check (online: up to the activation). c is a ctx_init()ed
 * context whose online and active are set. */
static int encrypt_begin(struct ctx *cp)
{
	struct ctx c = *cp;
	const struct convert_request *req = c.req;
	struct convert_result *res = c.res;
	uint64_t new_fs_size = 0, data_size;
	char undo[PATH_MAX], msg[1024];
	struct stat st;
	int r;

	if (req->key_size == 0)
		return fail(&c, -ENOKEY, "Give a key file with the key.", "%s: the key is empty", req->target);
	r = check_common(&c);
	if (r < 0)
		return r;
	if (streq(c.dev.fs_type, "crypto_LUKS"))
		return fail(&c, -EALREADY, "Nothing to do; 'vmcrypt status TARGET' shows its state.",
			    "%s: already a LUKS volume", c.dev.path);
	r = check_token_json(&c);
	if (r < 0)
		return r;
	r = check_not_in_flight(&c);
	if (r < 0)
		return r;
	if (req->header && stat(req->header, &st) == 0)
		return fail(&c, -EEXIST, "Choose a new path; vmcrypt never overwrites a header file.",
			    "%s: the header file %s already exists", c.dev.path, req->header);

	data_size = req->header ? c.dev.size : (c.dev.size > CONVERT_REDUCE ? c.dev.size - CONVERT_REDUCE : 0);
	if (data_size < CONVERT_MIN_DATA) {
		char on_device[128];

		snprintf(on_device, sizeof(on_device), " with its %llu MiB header on the device (at least %llu MiB needed)",
			 (unsigned long long)(CONVERT_DATA_SHIFT / MIB(1)),
			 (unsigned long long)((CONVERT_REDUCE + CONVERT_MIN_DATA) / MIB(1)));
		return fail(&c, -ENOSPC, req->header ? "Use a larger device." : "Use --header FILE, or a larger device.",
			    "%s: too small (%llu bytes) for a LUKS2 volume%s", c.dev.path,
			    (unsigned long long)c.dev.size, req->header ? "" : on_device);
	}

	if (c.online && !c.dev.is_block)
		return fail(&c, -ENOTBLK, "Attach it to a loop device, or encrypt it offline.",
			    "%s: online conversion needs a block device", c.dev.path);
	c.st = (struct convstate){
		.op = VOLUME_OP_ENCRYPT,
		.device_size = c.dev.size,
		.data_shift = req->header ? 0 : CONVERT_DATA_SHIFT,
		.detached = req->header != NULL,
		.started = (int64_t)time(NULL),
	};
	if (c.online)
		snprintf(c.st.active_name, sizeof(c.st.active_name), "%s", c.active);
	uuid_v4(c.st.uuid);
	snprintf(c.st.target, sizeof(c.st.target), "%s", c.dev.path);
	device_identity(&c.dev, c.st.identity, sizeof(c.st.identity));
	snprintf(c.st.fs_type, sizeof(c.st.fs_type), "%s", c.dev.fs_type);
	c.st.sector_size = pick_sector_size(&c, data_size);
	if (c.st.sector_size != 512 && c.st.sector_size != 4096)
		return fail(&c, -EINVAL, "Use --sector-size 512 or 4096.", "%s: unsupported sector size %u",
			    c.dev.path, c.st.sector_size);
	if (c.st.sector_size > 512 && c.dev.fs_block_size && c.dev.fs_block_size < c.st.sector_size)
		return fail(&c, -EINVAL, "Use --sector-size 512.",
			    "%s: the filesystem uses %u-byte blocks, smaller than the %u-byte encryption sectors",
			    c.dev.path, c.dev.fs_block_size, c.st.sector_size);
	if (c.st.sector_size > 512 && data_size % c.st.sector_size)
		return fail(&c, -EINVAL, "Use --sector-size 512.",
			    "%s: its size is not a multiple of %u bytes", c.dev.path, c.st.sector_size);

	if (req->header) {
		char abs[PATH_MAX];

		if (req->header[0] != '/' && getcwd(abs, sizeof(abs)) &&
		    strlen(abs) + 1 + strlen(req->header) < sizeof(abs)) {
			strcat(abs, "/");
			strcat(abs, req->header);
		} else
			snprintf(abs, sizeof(abs), "%s", req->header);
		snprintf(c.st.header, sizeof(c.st.header), "%s", abs);
		c.st.phase = PHASE_INIT;
		return encrypt_detached(&c);
	}

	r = plan_room(&c, &new_fs_size);
	if (r < 0)
		return r;

	/* Every check passed: from here on the target changes, each step recorded first. */
	if (new_fs_size) {
		r = convstate_path(c.st.uuid, "undo.e2undo", undo, sizeof(undo));
		if (r < 0)
			return fail(&c, r, NULL, "%s: state path too long", c.dev.path);
		if ((r = save_phase(&c, PHASE_SHRINKING)) < 0)
			return r;
		if (report(&c, CONVERT_PHASE_SHRINK, 0, c.st.fs_size - new_fs_size) < 0) {
			(void)convstate_remove(c.st.uuid);
			return stopped(&c);
		}
		r = extfs_resize(c.dev.path, new_fs_size, undo, msg, sizeof(msg));
		if (r < 0) {
			/* Put every block back and leave as we came. */
			char umsg[1024];
			int u = extfs_undo(undo, c.dev.path, umsg, sizeof(umsg));

			(void)restore_file_size(&c);
			if (u < 0)
				return fail_resumable(&c, r, CONVERT_RESUME_UNDO,
					    "%s: shrinking the filesystem failed (%s) and so did undoing it (%s)",
					    c.dev.path, msg, umsg);
			if (r == -EILSEQ && extfs_check(c.dev.path, umsg, sizeof(umsg)) == 0) {
				log_debug("%s: resize2fs with an undo file failed (%s); shrinking with a safety copy",
					  c.dev.path, msg);
				r = shrink_with_backup(&c, new_fs_size, msg, sizeof(msg));
			}
		}
		if (r < 0) {
			(void)convstate_remove(c.st.uuid);
			return fail(&c, r,
				    r == -ENOSPC ? "Free space on the filesystem (or in the state directory) or use --header FILE."
						 : "Check the filesystem with 'e2fsck -f DEVICE', or use --header FILE.",
				    "%s: shrinking the filesystem failed and was undone: %s", c.dev.path, msg);
		}
		r = restore_file_size(&c);
		if (r < 0)
			return fail(&c, r, NULL, "%s: cannot restore the image file's size (%s)", c.dev.path,
				    strerror(-r));
		res->shrunk_by = c.st.fs_size - new_fs_size;
	}
	if ((r = save_phase(&c, PHASE_SHRUNK)) < 0)
		return r;
	if (convstate_path(c.st.uuid, "backup.img", undo, sizeof(undo)) == 0)
		(void)unlink(undo); /* the shrink is done: its safety copy is not needed any more */
	if (report(&c, CONVERT_PHASE_SHRINK, 1, 1) < 0)
		return stopped(&c);
	r = encrypt_from_shrunk(&c);
	return r < 0 || c.online ? r : finish_encrypt(&c);
}

int convert_encrypt(const struct convert_request *req, struct convert_result *res)
{
	struct ctx c;

	memset(res, 0, sizeof(*res));
	ctx_init(&c, req, res);
	return encrypt_begin(&c);
}

/* --- decrypt ---------------------------------------------------------------------------- */

/* Initializes the decryption of a volume whose header is on the device: the header now lives
 * in header_file and the data moves back to the start of the device. */
static int decrypt_init_shift(struct ctx *c, const char *header_file)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	struct crypt_params_reencrypt params = {
		.mode = CRYPT_REENCRYPT_DECRYPT,
		.direction = CRYPT_REENCRYPT_FORWARD,
		.resilience = "datashift-checksum",
		.hash = "sha256",
		.data_shift = c->st.data_shift / 512,
		.flags = CRYPT_REENCRYPT_MOVE_FIRST_SEGMENT | CRYPT_REENCRYPT_INITIALIZE_ONLY,
	};
	int r;

	r = luks_load(header_file, c->dev.path, &cd);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot load the header from %s%s", c->dev.path, header_file,
			    convert_cryptsetup_reason());
	if (crypt_reencrypt_status(cd, NULL) != CRYPT_REENCRYPT_NONE)
		return 0; /* initialized before a crash */
	(void)pick_passphrase(c, cd); /* a miss fails the init below with the right error */
	r = device_wipe_luks_signatures(c->dev.path);
	if (r < 0)
		return fail_resumable(c, r, CONVERT_RESUME_HEADER_SAVED,
			    "%s: cannot wipe the LUKS signature on the device (%s)", c->dev.path, strerror(-r));
	r = crypt_reencrypt_init_by_passphrase(cd, c->online ? c->active : NULL, c->pass, c->pass_size,
					       CRYPT_ANY_SLOT, CRYPT_ANY_SLOT, NULL, NULL, &params);
	if (r < 0)
		return fail_resumable(c, r, CONVERT_RESUME_HEADER_SAVED,
			    "%s: cannot initialize the decryption (%s)%s", c->dev.path, strerror(-r), convert_cryptsetup_reason());
	crypt_free(TAKE_PTR(cd));
	r = fsync_path(header_file);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot flush %s (%s)", c->dev.path, header_file, strerror(-r));
	return 0;
}

static int finish_decrypt(struct ctx *c)
{
	char msg[1024], undo[PATH_MAX];
	int r;

	if (!c->st.detached && is_extfs(c->st.fs_type)) {
		r = convstate_path(c->st.uuid, "undo.e2undo", undo, sizeof(undo));
		if (r < 0)
			return fail(c, r, NULL, "%s: state path too long", c->dev.path);
		if (c->st.phase == PHASE_GROWING && access(undo, F_OK) == 0) {
			/* A grow cut short: roll it back first. An undo file without its header
			 * means resize2fs had not written anything yet; e2undo then refuses and
			 * there is nothing to roll back. */
			if (extfs_undo(undo, c->dev.path, msg, sizeof(msg)) < 0)
				log_debug("%s: e2undo: %s", c->dev.path, msg);
			(void)restore_file_size(c);
		}
		if ((r = save_phase(c, PHASE_GROWING)) < 0)
			return r;
		if (report(c, CONVERT_PHASE_GROW, 0, 0) < 0)
			return stopped(c);
		(void)unlink(undo);
		r = extfs_check(c->dev.path, msg, sizeof(msg));
		if (r < 0)
			return fail(c, r, "Repair it with 'e2fsck -f DEVICE', then run 'resize2fs DEVICE'; the data is decrypted.",
				    "%s: decrypted, but the filesystem check before growing it back fails: %s",
				    c->dev.path, msg);
		/* Give the filesystem back the room the header took; with an undo file, so a
		 * crash half way through is rolled back by resume instead of leaving a
		 * half-grown filesystem. */
		r = extfs_resize(c->dev.path, 0, undo, msg, sizeof(msg));
		if (r < 0) {
			char umsg[1024];

			if (extfs_undo(undo, c->dev.path, umsg, sizeof(umsg)) < 0)
				log_debug("%s: e2undo: %s", c->dev.path, umsg);
			return fail(c, r, "Run 'resize2fs DEVICE' to grow it by hand; the data is decrypted and intact.",
				    "%s: decrypted, but growing the filesystem back failed: %s", c->dev.path, msg);
		}
		(void)restore_file_size(c);
	}
	c->res->op = VOLUME_OP_DECRYPT;
	snprintf(c->res->uuid, sizeof(c->res->uuid), "%s", c->st.uuid);
	snprintf(c->res->fs_type, sizeof(c->res->fs_type), "%s", c->st.fs_type);
	c->res->header_detached = c->st.detached;
	if (c->st.detached)
		snprintf(c->res->header_path, sizeof(c->res->header_path), "%s", c->st.header);
	r = convstate_remove(c->st.uuid);
	if (r < 0)
		log_warning("%s: decrypted, but cannot remove its state directory (%s)", c->dev.path, strerror(-r));
	return 0;
}

/* What an online decryption's start reports. */
static int online_started_decrypt(struct ctx *c)
{
	c->res->op = VOLUME_OP_DECRYPT;
	snprintf(c->res->uuid, sizeof(c->res->uuid), "%s", c->st.uuid);
	snprintf(c->res->fs_type, sizeof(c->res->fs_type), "%s", c->st.fs_type);
	c->res->header_detached = c->st.detached;
	if (c->st.detached)
		snprintf(c->res->header_path, sizeof(c->res->header_path), "%s", c->st.header);
	else
		(void)convstate_path(c->st.uuid, "header.img", c->res->header_path, sizeof(c->res->header_path));
	return 0;
}

/* Continues a header-on-device decryption from the phase recorded in c->st. */
static int decrypt_from_backup(struct ctx *c)
{
	char header_file[PATH_MAX];
	int r;

	r = convstate_path(c->st.uuid, "header.img", header_file, sizeof(header_file));
	if (r < 0)
		return fail(c, r, NULL, "%s: state path too long", c->dev.path);
	if (c->st.phase == PHASE_WIPING) {
		r = decrypt_init_shift(c, header_file);
		if (r < 0)
			return r;
		if ((r = save_phase(c, PHASE_CONVERTING)) < 0)
			return r;
	}
	if (c->online)
		return online_started_decrypt(c); /* the data moves in convert_online_run() */
	if (c->st.phase == PHASE_CONVERTING) {
		r = run_reencrypt(c, header_file);
		if (r < 0)
			return r;
	}
	return finish_decrypt(c);
}

/* Decrypts with a detached header, from the start or from a recorded step: "init" until the
 * reencryption metadata is in the header, "converting" after. The device is not written before
 * the data moves. */
static int decrypt_detached(struct ctx *c)
{
	int r;

	if (c->st.phase <= PHASE_INIT) {
		_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
		struct crypt_params_reencrypt params = {
			.mode = CRYPT_REENCRYPT_DECRYPT,
			.direction = CRYPT_REENCRYPT_BACKWARD,
			.resilience = "checksum",
			.hash = "sha256",
			.flags = CRYPT_REENCRYPT_INITIALIZE_ONLY,
		};

		if ((r = save_phase(c, PHASE_INIT)) < 0)
			return r;
		r = luks_load(c->st.header, c->dev.path, &cd);
		if (r < 0)
			return fail(c, r, NULL, "%s: cannot load the header %s%s", c->dev.path, c->st.header,
				    convert_cryptsetup_reason());
		if (crypt_reencrypt_status(cd, NULL) == CRYPT_REENCRYPT_NONE) {
			(void)pick_passphrase(c, cd);
			r = crypt_reencrypt_init_by_passphrase(cd, c->online ? c->active : NULL, c->pass, c->pass_size,
							       CRYPT_ANY_SLOT, CRYPT_ANY_SLOT, NULL, NULL, &params);
			if (r < 0) {
				if (crypt_reencrypt_status(cd, NULL) == CRYPT_REENCRYPT_NONE)
					(void)convstate_remove(c->st.uuid);
				return fail(c, r, NULL, "%s: cannot initialize the decryption (%s)%s", c->dev.path,
					    strerror(-r), convert_cryptsetup_reason());
			}
			r = fsync_path(c->st.header);
			if (r < 0)
				return fail(c, r, NULL, "%s: cannot flush %s (%s)", c->dev.path, c->st.header,
					    strerror(-r));
		}
		if ((r = save_phase(c, PHASE_CONVERTING)) < 0)
			return r;
	}
	if (c->online)
		return online_started_decrypt(c);
	r = run_reencrypt(c, c->st.header);
	return r < 0 ? r : finish_decrypt(c);
}

static int online_target(struct ctx *c, bool must_be_active);

/* The whole decryption from its first check (online: up to the initialisation, with the mapping
 * active). */
static int decrypt_begin(struct ctx *cp)
{
	struct ctx c = *cp;
	const struct convert_request *req = c.req;
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	struct volume_info vi = {};
	char header_file[PATH_MAX];
	int r;

	if (req->key_size == 0 && req->recovery_size == 0)
		return fail(&c, -ENOKEY, "Give a key file with the key.", "%s: the key is empty", req->target);
	/* Online, the mapping holds the device: that is the one user allowed. */
	r = c.online ? online_target(&c, true) : check_common(&c);
	if (r < 0)
		return r;
	r = check_not_in_flight(&c);
	if (r < 0)
		return r;
	if (!req->header && !streq(c.dev.fs_type, "crypto_LUKS"))
		return fail(&c, -EMEDIUMTYPE, "Nothing to decrypt; give --header FILE if its header is detached.",
			    "%s: not a LUKS volume%s%s", c.dev.path, *c.dev.fs_type ? " (it holds " : "",
			    *c.dev.fs_type ? c.dev.fs_type : "");
	r = luks_load(req->header, c.dev.path, &cd);
	if (r < 0)
		return fail(&c, -EMEDIUMTYPE, "Check the --header path.", "%s: no valid LUKS header in %s%s",
			    c.dev.path, req->header ? req->header : c.dev.path, convert_cryptsetup_reason());
	vi.device_size = c.dev.size;
	luks_describe(cd, &vi);
	if (vi.state != VOLUME_ENCRYPTED)
		return fail_resumable(&c, -EALREADY, CONVERT_RESUME_PENDING_FIRST,
			    "%s: a conversion is already under way (%s)", c.dev.path, volume_state_to_string(vi.state));
	if (!streq(crypt_get_type(cd), CRYPT_LUKS2))
		return fail(&c, -EOPNOTSUPP, "Convert it with 'cryptsetup convert --type luks2' first.",
			    "%s: a LUKS1 volume; in-place decryption needs LUKS2", c.dev.path);
	r = pick_passphrase(&c, cd);
	if (r < 0)
		return fail(&c, r == -EPERM || r == -ENOENT ? -EPERM : r,
			    "Give the key file this volume was encrypted with.",
			    "%s: the key does not open this volume%s", c.dev.path,
			    r == -EPERM || r == -ENOENT ? "" : convert_cryptsetup_reason());
	if (vi.header_detached && vi.data_offset && !req->header)
		return fail(&c, -EOPNOTSUPP, NULL, "%s: unexpected layout", c.dev.path);

	c.st = (struct convstate){
		.op = VOLUME_OP_DECRYPT,
		.device_size = c.dev.size,
		.data_shift = vi.data_offset,
		.sector_size = vi.sector_size,
		.detached = vi.header_detached,
		.started = (int64_t)time(NULL),
	};
	snprintf(c.st.uuid, sizeof(c.st.uuid), "%s", vi.uuid);
	snprintf(c.st.target, sizeof(c.st.target), "%s", c.dev.path);
	device_identity(&c.dev, c.st.identity, sizeof(c.st.identity));
	snprintf(c.st.fs_type, sizeof(c.st.fs_type), "%s", vi.has_token ? vi.fs_type : "");
	c.st.fs_size = vi.fs_size;
	if (c.online)
		snprintf(c.st.active_name, sizeof(c.st.active_name), "%s", c.active);

	if (vi.header_detached) {
		if (!realpath(req->header, c.st.header))
			return fail(&c, negative_errno(), NULL, "%s: cannot resolve %s (%m)", c.dev.path, req->header);
		if (vi.data_offset)
			return fail(&c, -EOPNOTSUPP, "Decrypt it with cryptsetup.",
				    "%s: a detached header with a data offset is not a layout vmcrypt creates",
				    c.dev.path);
		crypt_free(TAKE_PTR(cd));
		c.st.phase = PHASE_INIT;
		return decrypt_detached(&c);
	}

	/* Header on the device: it must leave before the data moves back over it. It goes to the
	 * state directory, keyed by the volume's UUID, where resume finds it. */
	r = convstate_path(c.st.uuid, "header.img", header_file, sizeof(header_file));
	if (r < 0)
		return fail(&c, r, NULL, "%s: state path too long", c.dev.path);
	if ((r = save_phase(&c, PHASE_BACKUP)) < 0)
		return r;
	(void)unlink(header_file);
	r = crypt_header_backup(cd, CRYPT_LUKS2, header_file);
	if (r >= 0)
		r = fsync_path(header_file);
	if (r >= 0)
		r = fsync_parent_dir(header_file);
	if (r < 0) {
		(void)convstate_remove(c.st.uuid);
		return fail(&c, r, "Check free space in the state directory.",
			    "%s: cannot save the LUKS2 header to %s (%s)%s", c.dev.path, header_file,
			    strerror(-r), convert_cryptsetup_reason());
	}
	crypt_free(TAKE_PTR(cd));
	if ((r = save_phase(&c, PHASE_WIPING)) < 0)
		return r;
	return decrypt_from_backup(&c);
}

int convert_decrypt(const struct convert_request *req, struct convert_result *res)
{
	struct ctx c;

	memset(res, 0, sizeof(*res));
	ctx_init(&c, req, res);
	return decrypt_begin(&c);
}

/* --- resume ----------------------------------------------------------------------------- */

static int resume_from_state(struct ctx *c)
{
	char path[PATH_MAX], msg[1024];
	int r;

	c->res->resumed = true;
	c->res->op = c->st.op;
	log_info("%s: resuming the %s (step: %s)", c->dev.path, volume_op_to_string(c->st.op),
		 convstate_phase_to_string(c->st.phase));

	if (c->st.op == VOLUME_OP_ENCRYPT) {
		if (c->st.detached)
			return encrypt_detached(c);
		if (c->st.phase == PHASE_SHRINKING) {
			/* resize2fs may have stopped anywhere: put every block back first. */
			r = convstate_path(c->st.uuid, "undo.e2undo", path, sizeof(path));
			if (r < 0)
				return fail(c, r, NULL, "%s: state path too long", c->dev.path);
			r = restore_backup(c);
			if (r < 0)
				return fail_resumable(c, r, CONVERT_RESUME_RESTORE,
					    "%s: cannot restore the filesystem from its safety copy (%s)", c->dev.path,
					    strerror(-r));
			if (r == 0)
				r = extfs_undo(path, c->dev.path, msg, sizeof(msg));
			(void)restore_file_size(c);
			if (r < 0 && access(path, F_OK) == 0) {
				/* e2undo refuses an undo file that never got its header, i.e. resize2fs
				 * wrote nothing yet; the check below tells. */
				log_debug("%s: e2undo: %s", c->dev.path, msg);
			}
			r = extfs_check(c->dev.path, msg, sizeof(msg));
			if (r < 0)
				return fail(c, r, "Repair with 'e2fsck -f DEVICE', then run resume again.",
					    "%s: after undoing the interrupted shrink the filesystem check fails: %s",
					    c->dev.path, msg);
			(void)convstate_remove(c->st.uuid);
			memset(c->res, 0, sizeof(*c->res));
			r = encrypt_begin(c);
			c->res->resumed = true;
			return r;
		}
		if (c->st.phase == PHASE_FINALIZING) {
			r = convstate_path(c->st.uuid, "header.img", path, sizeof(path));
			if (r < 0)
				return fail(c, r, NULL, "%s: state path too long", c->dev.path);
			r = place_header(c, path);
			if (r >= 0)
				r = finish_encrypt(c);
			return r < 0 || !c->online ? r : online_activate(c, NULL);
		}
		if (c->st.phase == PHASE_SHRUNK || c->st.phase == PHASE_INIT || c->st.phase == PHASE_PLACING_HEADER) {
			r = restore_file_size(c);
			if (r < 0)
				return fail(c, r, NULL, "%s: cannot restore the image file's size (%s)", c->dev.path,
					    strerror(-r));
		}
		r = encrypt_from_shrunk(c);
		return r < 0 || c->online ? r : finish_encrypt(c);
	}

	if (c->st.detached)
		return decrypt_detached(c);
	if (c->st.phase == PHASE_BACKUP) {
		/* The backup may be incomplete, the device is untouched: start over. */
		(void)convstate_remove(c->st.uuid);
		memset(c->res, 0, sizeof(*c->res));
		r = decrypt_begin(c);
		c->res->resumed = true;
		return r;
	}
	if (c->st.phase == PHASE_GROWING)
		return finish_decrypt(c);
	return decrypt_from_backup(c);
}

int convert_resume(const struct convert_request *req, struct convert_result *res)
{
	struct ctx c;
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	struct volume_info vi = {};
	int r;

	memset(res, 0, sizeof(*res));
	ctx_init(&c, req, res);
	if (req->key_size == 0 && req->recovery_size == 0)
		return fail(&c, -ENOKEY, "Give a key file with the key.", "%s: the key is empty", req->target);
	r = check_common(&c);
	if (r < 0)
		return r;

	r = convstate_find(&c.dev, &c.st);
	if (r == 0) {
		r = resume_from_state(&c);
		if (r == -EINTR && !*res->message)
			return stopped(&c);
		return r;
	}
	if (r != -ENOENT)
		return fail(&c, r, NULL, "%s: cannot read the state directory (%s)", c.dev.path, strerror(-r));

	/* No state of ours: a conversion started by cryptsetup, or one whose state directory was
	 * lost; libcryptsetup's metadata is enough to finish the data move. */
	if (!req->header && !streq(c.dev.fs_type, "crypto_LUKS"))
		return fail(&c, -EALREADY, "Nothing to resume; 'vmcrypt status TARGET' shows its state.",
			    "%s: no interrupted conversion found (not LUKS, no saved state)", c.dev.path);
	r = luks_load(req->header, c.dev.path, &cd);
	if (r < 0)
		return fail(&c, -EMEDIUMTYPE, NULL, "%s: cannot load its LUKS header%s", c.dev.path, convert_cryptsetup_reason());
	vi.device_size = c.dev.size;
	luks_describe(cd, &vi);
	crypt_free(TAKE_PTR(cd));
	if (vi.op == VOLUME_OP_NONE)
		return fail(&c, -EALREADY, "Nothing to resume; 'vmcrypt status TARGET' shows its state.",
			    "%s: no conversion in progress (the volume is encrypted)", c.dev.path);
	c.st = (struct convstate){ .op = vi.op, .detached = vi.header_detached, .data_shift = vi.data_offset,
				   .sector_size = vi.sector_size, .phase = PHASE_CONVERTING };
	snprintf(c.st.uuid, sizeof(c.st.uuid), "%s", vi.uuid);
	snprintf(c.st.fs_type, sizeof(c.st.fs_type), "%s", vi.fs_type);
	if (req->header && !realpath(req->header, c.st.header))
		return fail(&c, negative_errno(), NULL, "%s: cannot resolve %s (%m)", c.dev.path, req->header);
	res->resumed = true;
	res->op = vi.op;
	r = run_reencrypt(&c, req->header);
	if (r < 0)
		return r;
	return vi.op == VOLUME_OP_ENCRYPT ? finish_encrypt(&c) : finish_decrypt(&c);
}

int convert_in_flight(const char *target)
{
	struct device_info d;
	struct convstate st;
	int r;

	r = device_probe(target, &d);
	if (r < 0)
		return r;
	r = convstate_find(&d, &st);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

/* --- online ----------------------------------------------------------------------------- */

/* Whether the block device dev_t `want` lies under the device-mapper device `dm` (M:m), through
 * at most `depth` levels of slaves: during an online reencryption libcryptsetup stacks its
 * overlay and hotzone mappings between the mapping and the disk. Identity by device numbers. */
static bool dm_backed_by(dev_t dm, dev_t want, int depth)
{
	char path[128];
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *e;

	if (dm == want)
		return true;
	if (depth <= 0)
		return false;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/slaves", major(dm), minor(dm));
	d = opendir(path);
	if (!d)
		return false;
	while ((e = readdir(d))) {
		char file[PATH_MAX], buf[32];
		unsigned ma, mi;
		_cleanup_close_ int fd = -1;
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/dev", path, e->d_name);
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		buf[n] = 0;
		if (sscanf(buf, "%u:%u", &ma, &mi) == 2 && dm_backed_by(makedev(ma, mi), want, depth - 1))
			return true;
	}
	return false;
}

/* 1 when the mapping c->active is active and lies on the target, 0 when it is not active;
 * a refusal when it is active on another device. */
static int online_mapping(struct ctx *c)
{
	dev_t dm;

	if (crypt_status(NULL, c->active) == CRYPT_INACTIVE)
		return 0;
	if (device_dm_by_name(c->active, &dm) < 0)
		return fail(c, -ENXIO, NULL, "%s: the mapping %s is active but not in /sys/block", c->dev.path, c->active);
	if (!dm_backed_by(dm, c->dev.rdev, 4))
		return fail(c, -EBUSY, "Give the mapping name of this device (--name).",
			    "%s: the mapping %s is active on another device", c->dev.path, c->active);
	return 1;
}

/* Probes the target of an online step and checks its mapping (must_be_active: it has to be
 * active). No in-use check: the mapping is the target's user, by design. */
static int online_target(struct ctx *c, bool must_be_active)
{
	int r;

	if (!c->active || !*c->active || strlen(c->active) >= sizeof(c->st.active_name) || strchr(c->active, '/'))
		return fail(c, -EINVAL, "Give a mapping name such as vmcrypt-data.",
			    "%s: no valid mapping name for the online conversion", c->req->target);
	r = device_probe(c->req->target, &c->dev);
	if (r == -ENOENT)
		return fail(c, r, "Check the path.", "%s: no such device", c->req->target);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot open or probe it (%s)", c->req->target, strerror(-r));
	if (!c->dev.is_block)
		return fail(c, -ENOTBLK, "Attach it to a loop device, or convert it offline.",
			    "%s: online conversion needs a block device", c->dev.path);
	if (c->dev.read_only)
		return fail(c, -EROFS, "Make it writable (blockdev --setrw).", "%s: read-only", c->dev.path);
	r = online_mapping(c);
	if (r < 0)
		return r;
	if (r == 0 && must_be_active)
		return fail(c, -ENXIO, "Open it first ('cryptsetup open' or the agent), or convert it offline.",
			    "%s: the mapping %s is not active", c->dev.path, c->active);
	return r;
}

/* Activates the target as c->active from header (NULL: on the device), unless it is active.
 * Activating a device in reencryption recovers an interrupted hotzone first (libcryptsetup). */
static int online_activate(struct ctx *c, const char *header)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	int r;

	r = online_mapping(c);
	if (r < 0)
		return r;
	if (r == 0) {
		r = luks_load(header, c->dev.path, &cd);
		if (r < 0)
			return fail_resumable(c, r, CONVERT_RESUME_AGAIN, "%s: cannot load the LUKS2 header%s%s%s", c->dev.path,
					      header ? " " : "", header ? header : "", convert_cryptsetup_reason());
		(void)pick_passphrase(c, cd);
		r = crypt_activate_by_passphrase(cd, c->active, CRYPT_ANY_SLOT, c->pass, c->pass_size, 0);
		if (r == -EPERM || r == -ENOENT)
			return fail(c, -EPERM, "Give the key file this volume was encrypted with.",
				    "%s: the key does not open this volume", c->dev.path);
		if (r < 0)
			return fail_resumable(c, r, CONVERT_RESUME_AGAIN, "%s: cannot activate it as %s (%s)%s",
					      c->dev.path, c->active, strerror(-r), convert_cryptsetup_reason());
	}
	c->res->op = c->st.op;
	snprintf(c->res->uuid, sizeof(c->res->uuid), "%s", c->st.uuid);
	c->res->sector_size = c->st.sector_size;
	c->res->header_detached = c->st.detached;
	c->res->data_offset = c->st.detached ? 0 : c->st.data_shift;
	snprintf(c->res->header_path, sizeof(c->res->header_path), "%s", c->st.detached ? c->st.header : c->dev.path);
	snprintf(c->res->fs_type, sizeof(c->res->fs_type), "%s", c->st.fs_type);
	return 0;
}

/* The header the reencryption's metadata is in: the user's detached header, header.img in the
 * state directory for a header-on-device decryption, or NULL (on the device). */
static int online_header(struct ctx *c, char *buf, size_t len, const char **ret)
{
	*ret = NULL;
	if (c->st.detached)
		*ret = c->st.header;
	else if (c->st.op == VOLUME_OP_DECRYPT) {
		if (convstate_path(c->st.uuid, "header.img", buf, len) < 0)
			return fail(c, -ENAMETOOLONG, NULL, "%s: state path too long", c->dev.path);
		*ret = buf;
	}
	return 0;
}

/* Sets up an online context from the request and the state of the conversion in flight. */
static int online_load(struct ctx *c, const struct convert_request *req, struct convert_result *res,
		       bool must_be_active)
{
	int r;

	memset(res, 0, sizeof(*res));
	ctx_init(c, req, res);
	c->online = true;
	c->active = req->active_name;
	if (req->key_size == 0 && req->recovery_size == 0)
		return fail(c, -ENOKEY, "Give a key file with the key.", "%s: the key is empty", req->target);
	r = device_probe(req->target, &c->dev);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot open or probe it (%s)", req->target, strerror(-r));
	r = convstate_find(&c->dev, &c->st);
	if (r == -ENOENT)
		return fail(c, -EALREADY, "Nothing to do; 'vmcrypt status TARGET' shows its state.",
			    "%s: no online conversion in flight", c->dev.path);
	if (r < 0)
		return fail(c, r, NULL, "%s: cannot read the state directory (%s)", c->dev.path, strerror(-r));
	if (*c->st.active_name)
		c->active = c->st.active_name; /* the name it started under wins */
	r = online_target(c, must_be_active);
	return r < 0 ? r : 0;
}

int convert_online_start(const struct convert_request *req, enum volume_op op, struct convert_result *res)
{
	struct ctx c;

	memset(res, 0, sizeof(*res));
	ctx_init(&c, req, res);
	c.online = true;
	c.active = req->active_name;
	if (op == VOLUME_OP_ENCRYPT) {
		/* The name is checked first: the mapping must not exist yet. */
		if (!c.active || !*c.active || strlen(c.active) >= sizeof(c.st.active_name) || strchr(c.active, '/'))
			return fail(&c, -EINVAL, "Give a mapping name such as vmcrypt-data.",
				    "%s: no valid mapping name for the online conversion", req->target);
		if (crypt_status(NULL, c.active) != CRYPT_INACTIVE)
			return fail(&c, -EEXIST, "Choose another name.", "%s: a mapping named %s exists already",
				    req->target, c.active);
		return encrypt_begin(&c);
	}
	if (op == VOLUME_OP_DECRYPT)
		return decrypt_begin(&c);
	return fail(&c, -EINVAL, NULL, "%s: not a conversion", req->target);
}

int convert_online_prepare(const struct convert_request *req, struct convert_result *res)
{
	struct convstate st;
	struct ctx c;
	int r;

	memset(res, 0, sizeof(*res));
	ctx_init(&c, req, res);
	c.online = c.in_place = true;
	c.active = req->active_name;
	if (!c.active || !*c.active || strlen(c.active) >= sizeof(c.st.active_name) || strchr(c.active, '/'))
		return fail(&c, -EINVAL, "Give a mapping name such as vmcrypt-os.",
			    "%s: no valid mapping name for the online conversion", req->target);
	if (!req->header || req->header[0] != '/')
		return fail(&c, -EINVAL, "Give the absolute path of a detached header file.",
			    "%s: converting a volume in place needs a detached header", req->target);
	if (crypt_status(NULL, c.active) != CRYPT_INACTIVE)
		return fail(&c, -EEXIST, "Choose another name.", "%s: a mapping named %s exists already",
			    req->target, c.active);
	r = device_probe(req->target, &c.dev);
	if (r < 0)
		return fail(&c, r, NULL, "%s: cannot open or probe it (%s)", req->target, strerror(-r));
	if (convstate_find(&c.dev, &st) == 0) {
		/* Prepared before (the caller was cut short after this returned), or cut short in
		 * the header's initialisation, which starts over: the data device is untouched
		 * until the mapping is active. */
		if (st.op != VOLUME_OP_ENCRYPT || !st.detached || !streq(st.header, req->header) ||
		    (st.phase != PHASE_INIT && st.phase != PHASE_CONVERTING))
			return fail_resumable(&c, -EALREADY, CONVERT_RESUME_PENDING,
				    "%s: an interrupted %s (since %lld) is waiting to be resumed", c.dev.path,
				    volume_op_to_string(st.op), (long long)st.started);
		c.st = st;
		if (st.phase == PHASE_CONVERTING) {
			snprintf(res->uuid, sizeof(res->uuid), "%s", st.uuid);
			return 0;
		}
		return encrypt_detached(&c);
	}
	r = encrypt_begin(&c);
	if (r >= 0 && convstate_find(&c.dev, &st) == 0)
		snprintf(res->uuid, sizeof(res->uuid), "%s", st.uuid);
	return r;
}

int convert_online_run(const struct convert_request *req, struct convert_result *res)
{
	char buf[PATH_MAX];
	const char *header;
	struct ctx c;
	int r;

	r = online_load(&c, req, res, true);
	if (r < 0)
		return r;
	res->op = c.st.op;
	if (c.st.phase != PHASE_CONVERTING)
		return fail_resumable(&c, -EALREADY, CONVERT_RESUME_PENDING,
			    "%s: the %s stopped at step %s, before the data moves", c.dev.path,
			    volume_op_to_string(c.st.op), convstate_phase_to_string(c.st.phase));
	r = online_header(&c, buf, sizeof(buf), &header);
	if (r < 0)
		return r;
	r = run_reencrypt(&c, header);
	if (r < 0)
		return r;
	if (c.st.op == VOLUME_OP_ENCRYPT)
		return finish_encrypt(&c);
	snprintf(res->uuid, sizeof(res->uuid), "%s", c.st.uuid);
	return 0; /* decrypted: convert_online_finish() after the caller unmounts */
}

int convert_online_resume(const struct convert_request *req, struct convert_result *res)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	char buf[PATH_MAX];
	const char *header;
	struct ctx c;
	int r, active;

	r = online_load(&c, req, res, false);
	if (r < 0)
		return r;
	active = r = online_mapping(&c);
	if (r < 0)
		return r;
	res->resumed = true;
	res->op = c.st.op;
	log_info("%s: resuming the online %s (step: %s, %s %s)", c.dev.path, volume_op_to_string(c.st.op),
		 convstate_phase_to_string(c.st.phase), c.active, active ? "active" : "not active");
	r = online_header(&c, buf, sizeof(buf), &header);
	if (r < 0)
		return r;

	if (c.st.phase == PHASE_CONVERTING) {
		bool done;

		r = luks_load(header, c.dev.path, &cd);
		if (r < 0)
			return fail_resumable(&c, r, CONVERT_RESUME_AGAIN, "%s: cannot load the LUKS2 header%s",
					      c.dev.path, convert_cryptsetup_reason());
		done = crypt_reencrypt_status(cd, NULL) == CRYPT_REENCRYPT_NONE;
		crypt_free(TAKE_PTR(cd));
		if (done && c.st.op == VOLUME_OP_DECRYPT)
			return 0; /* decrypted: only convert_online_finish() is left */
		if (done)
			return finish_encrypt(&c) < 0 ? -EIO : online_activate(&c, header);
		if (!active) {
			r = online_activate(&c, header);
			if (r != -EIO && r != -EINVAL)
				return r;
			/* libcryptsetup 2.6.1 cannot activate (nor resume) a conversion killed after
			 * its last hotzone (see run_reencrypt()): finish it offline, then activate. */
			c.online = false;
			r = run_reencrypt(&c, header);
			c.online = true;
			if (r < 0)
				return r;
			if (c.st.op == VOLUME_OP_DECRYPT)
				return 0;
			r = finish_encrypt(&c);
			return r < 0 ? r : online_activate(&c, header);
		}
		return online_activate(&c, header);
	}
	if (c.st.phase == PHASE_GROWING)
		return 0; /* the mapping is gone, the data decrypted: convert_online_finish() */

	/* Cut short while starting. An encryption's start steps run with the device unused
	 * (the filesystem was unmounted for them); a decryption's with the mapping active, opened
	 * again from the header where it is now. */
	if (c.st.op == VOLUME_OP_ENCRYPT) {
		struct device_usage use;

		r = device_check_unused(&c.dev, &use);
		if (r < 0)
			return fail(&c, r, "Unmount it and stop whatever uses it, then retry.",
				    "%s: in use: %s", c.dev.path, use.what);
		return resume_from_state(&c);
	}
	if (!active) {
		const char *from = c.st.detached ? c.st.header : c.st.phase == PHASE_WIPING ? buf : NULL;

		/* BACKUP: the device's header is intact; WIPING: header.img is complete. */
		r = online_activate(&c, from);
		if (r < 0)
			return r;
	}
	return resume_from_state(&c);
}

int convert_online_finish_in_place(const struct convert_request *req, struct convert_result *res)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	struct ctx c;
	int r;

	r = online_load(&c, req, res, false);
	if (r < 0)
		return r;
	if (c.st.op != VOLUME_OP_DECRYPT || !c.st.detached)
		return fail(&c, -EALREADY, "Only a decryption with a detached header finishes in place.",
			    "%s: no online decryption with a detached header in flight", c.dev.path);
	if (c.st.phase == PHASE_CONVERTING) {
		r = luks_load(c.st.header, c.dev.path, &cd);
		if (r < 0)
			return fail_resumable(&c, r, CONVERT_RESUME_AGAIN, "%s: cannot load the LUKS2 header%s",
					      c.dev.path, convert_cryptsetup_reason());
		if (crypt_reencrypt_status(cd, NULL) != CRYPT_REENCRYPT_NONE)
			return fail_resumable(&c, -EBUSY, CONVERT_RESUME_CONTINUE,
				    "%s: the decryption is not finished yet", c.dev.path);
	}
	/* The mapping stays: it maps the plain data one to one now, until the next boot. */
	c.online = false;
	return finish_decrypt(&c);
}

int convert_online_finish(const struct convert_request *req, struct convert_result *res)
{
	_cleanup_(convert_crypt_freep) struct crypt_device *cd = NULL;
	char buf[PATH_MAX];
	const char *header;
	struct ctx c;
	int r, active;

	r = online_load(&c, req, res, false);
	if (r < 0)
		return r;
	active = r;
	if (c.st.op != VOLUME_OP_DECRYPT)
		return fail(&c, -EALREADY, "Nothing to finish: an encryption finishes in convert_online_run().",
			    "%s: no online decryption in flight", c.dev.path);
	r = online_header(&c, buf, sizeof(buf), &header);
	if (r < 0)
		return r;
	if (c.st.phase == PHASE_CONVERTING) {
		r = luks_load(header, c.dev.path, &cd);
		if (r < 0)
			return fail_resumable(&c, r, CONVERT_RESUME_AGAIN, "%s: cannot load the LUKS2 header%s",
					      c.dev.path, convert_cryptsetup_reason());
		if (crypt_reencrypt_status(cd, NULL) != CRYPT_REENCRYPT_NONE)
			return fail_resumable(&c, -EBUSY, CONVERT_RESUME_CONTINUE,
				    "%s: the decryption is not finished yet", c.dev.path);
		crypt_free(TAKE_PTR(cd));
	} else if (c.st.phase != PHASE_GROWING)
		return fail_resumable(&c, -EALREADY, CONVERT_RESUME_PENDING,
			    "%s: the decryption stopped at step %s", c.dev.path, convstate_phase_to_string(c.st.phase));
	if (active) {
		r = crypt_deactivate(NULL, c.active);
		if (r == -EBUSY)
			return fail(&c, r, "Unmount it and stop whatever uses it, then retry.",
				    "%s: /dev/mapper/%s is still in use", c.dev.path, c.active);
		if (r < 0)
			return fail(&c, r, NULL, "%s: cannot deactivate %s (%s)%s", c.dev.path, c.active,
				    strerror(-r), convert_cryptsetup_reason());
	}
	c.online = false; /* from here on it is the offline finish: the device is unused */
	return finish_decrypt(&c);
}
