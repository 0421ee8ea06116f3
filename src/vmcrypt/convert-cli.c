/* The command line shared by encrypt, decrypt and resume. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libmount.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "convert-cli.h"
#include "progress.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/luks/convert.h"
#include "shared/luks/luks-inspect.h"
#include "shared/volume/device.h"
#include "shared/volume/mount-util.h"
#include "shared/secret.h"
#include "shared/vm/journal.h"
#include "shared/vm/lock.h"
#include "vmcrypt.h"

static const char *const convert_verb_table[_CONVERT_VERB_MAX] = {
	[CONVERT_VERB_ENCRYPT] = "encrypt",
	[CONVERT_VERB_DECRYPT] = "decrypt",
	[CONVERT_VERB_RESUME] = "resume",
};

const char *convert_verb_to_string(enum convert_verb v)
{
	return v >= 0 && v < _CONVERT_VERB_MAX ? convert_verb_table[v] : NULL;
}

enum convert_verb convert_verb_from_string(const char *s)
{
	if (!s)
		return _CONVERT_VERB_INVALID;
	for (size_t i = 0; i < ELEMENTSOF(convert_verb_table); i++)
		if (streq(s, convert_verb_table[i]))
			return (enum convert_verb)i;
	return _CONVERT_VERB_INVALID;
}

/* The remedy for a failure `vmcrypt resume` takes up: the one place that spells the command. */
static const struct {
	const char *tail; /* after the command: why resume is the remedy */
	bool bare;        /* the command without its options */
} resume_remedies[_CONVERT_RESUME_MAX] = {
	[CONVERT_RESUME_CONTINUE] = { " to continue." },
	[CONVERT_RESUME_FAILED_RUN] = { " to continue; the data is safe." },
	[CONVERT_RESUME_AGAIN] = { " again; the data is safe." },
	[CONVERT_RESUME_RETRY] = { " to retry; the data is intact." },
	[CONVERT_RESUME_PENDING] = { " to finish it." },
	[CONVERT_RESUME_PENDING_FIRST] = { " to finish it first." },
	[CONVERT_RESUME_UNDO] = { "; it retries the undo." },
	[CONVERT_RESUME_HEADER_SAVED] = { "; the header is saved in the state directory." },
	[CONVERT_RESUME_RESTORE] = { " again.", true },
};

/* Words res->remedy from res->resume when the library left it to us. */
static void word_resume_remedy(struct convert_result *res)
{
	bool bare;

	if (res->resume <= CONVERT_RESUME_NO || res->resume >= _CONVERT_RESUME_MAX)
		return;
	bare = resume_remedies[res->resume].bare;
	snprintf(res->remedy, sizeof(res->remedy), "Run 'vmcrypt resume%s%s'%s", bare ? "" : " --key-file FILE",
		 bare ? "" : res->resume_header ? " --header FILE TARGET" : " TARGET",
		 resume_remedies[res->resume].tail);
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	stop_requested = sig;
}

struct run {
	enum convert_verb verb;
	const char *target;
	bool json;
	struct progress progress;
	struct vm_lock *lock;
	double last_journal;
	double last_lock_update;
};

/* In --json mode messages become JSON lines on stdout, so one stream carries everything. */
static void convert_cli_log_sink(enum log_level level, const char *message, void *userdata)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	_cleanup_(jansson_util_decrefp) json_t *o =
		json_pack("{s:s, s:s, s:s}", "event", "log", "level", names[level], "message", message);

	(void)jansson_util_write(stdout, o, JSON_COMPACT);
}

static void usage(enum convert_verb verb, FILE *f)
{
	switch (verb) {
	case CONVERT_VERB_ENCRYPT:
		fprintf(f,
			"Usage: vmcrypt encrypt (--key-file FILE | --new-key-file FILE) [--header FILE]\n"
			"                       [--recovery-file FILE] [--token-json-file FILE]\n"
			"                       [--sector-size 512|4096] [--online [--name NAME]] [--json] TARGET\n\n"
			"Encrypts TARGET (a block device, partition or disk image file) in place into a\n"
			"standard LUKS2 volume (aes-xts-plain64, 512-bit key). ext2/3/4 is shrunk by 32 MiB\n"
			"to make room for the header on the device; other filesystems need --header FILE.\n\n"
			"  --key-file FILE      the unlock key (read from FILE; mode 0600 expected)\n"
			"  --new-key-file FILE  generate a 64-byte random key into the new FILE (0600)\n"
			"  --header FILE        keep the LUKS2 header in FILE (must not exist): detached header\n"
			"  --recovery-file FILE a second passphrase (keyslot 1), read like a key file\n"
			"  --token-json-file FILE  a LUKS2 token (JSON) to set on the new header\n"
			"  --online             TARGET is a mounted block device: unmount it, open it as\n"
			"                       /dev/mapper/NAME, mount that at the same place, convert in use\n"
			"  --name NAME          the mapping's name (default vmcrypt-<kernel name>)\n"
			"  --sector-size N      encryption sector size; default 4096 when the filesystem allows\n"
			"  --json               JSON lines on stdout: progress events, then a result\n\n"
			"Interrupted (SIGINT/SIGTERM, crash, power loss)? Run 'vmcrypt resume'.\n");
		break;
	case CONVERT_VERB_DECRYPT:
		fprintf(f,
			"Usage: vmcrypt decrypt (--key-file FILE | --recovery-file FILE) [--header FILE]\n"
			"                       [--online [--name NAME]] [--json] TARGET\n\n"
			"Decrypts a LUKS2 TARGET in place back to its plain contents. With the header on the\n"
			"device, the header moves to vmcrypt's state directory while the data shifts back,\n"
			"and an ext2/3/4 filesystem is grown back to fill the device.\n\n"
			"  --key-file FILE      the unlock key\n"
			"  --recovery-file FILE the recovery passphrase (either opens it; give both to be sure)\n"
			"  --online, --name NAME  convert under the active mapping /dev/mapper/NAME, mounted\n"
			"  --header FILE        the detached LUKS2 header of TARGET\n"
			"  --json               JSON lines on stdout: progress events, then a result\n");
		break;
	case CONVERT_VERB_RESUME:
		fprintf(f,
			"Usage: vmcrypt resume (--key-file FILE | --recovery-file FILE) [--header FILE]\n"
			"                      [--online [--name NAME]] [--json] TARGET\n\n"
			"Finishes an interrupted encrypt or decrypt of TARGET, whichever it was, after\n"
			"SIGINT, kill -9, a crash or power loss; it repairs what was cut short first.\n\n"
			"  --key-file FILE      the unlock key\n"
			"  --recovery-file FILE the recovery passphrase (either opens it; give both to be sure)\n"
			"  --online, --name NAME  convert under the active mapping /dev/mapper/NAME, mounted\n"
			"  --header FILE        the detached LUKS2 header (found on its own otherwise)\n"
			"  --json               JSON lines on stdout: progress events, then a result\n");
		break;
	default:
		assert(!"not a conversion verb");
	}
	fprintf(f, "\nExit codes: docs/exit-codes.md (0 done, 8 interrupted: resume).\n");
}

static int on_progress(enum convert_phase phase, uint64_t done, uint64_t total, void *userdata)
{
	static const char *const names[] = {
		[CONVERT_PHASE_CHECK] = "check", [CONVERT_PHASE_SHRINK] = "shrink",
		[CONVERT_PHASE_DATA] = "convert", [CONVERT_PHASE_GROW] = "grow",
	};
	struct run *run = userdata;

	progress_update(&run->progress, names[phase], done, total);
	if (phase == CONVERT_PHASE_DATA && run->progress.percent >= 0) {
		double t = progress_elapsed(&run->progress);

		/* Both records are fsynced files: every 2 and 5 seconds, not every hotzone (an
		 * fsync per 16 MiB cost 5-17% of the conversion's speed, bench/inplace). The
		 * durable progress is libcryptsetup's, in the LUKS2 metadata. */
		if (t - run->last_lock_update >= 2.0) {
			run->last_lock_update = t;
			(void)vm_lock_set_progress(run->lock, run->progress.percent);
		}
		if (t - run->last_journal >= 5.0) {
			run->last_journal = t;
			(void)journal_progress(run->target, NULL, run->progress.percent,
					       (uint64_t)run->progress.rate);
		}
	}
	return stop_requested ? 1 : 0;
}

static void print_result(struct run *run, int r, int status, const struct convert_result *res)
{
	const char *result = r == 0 ? "success" : r == -EINTR ? "interrupted" : "error";

	progress_end(&run->progress);
	if (run->json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:f}", "event", "result", "operation",
				      convert_verb_to_string(run->verb), "target", run->target, "result", result,
				      "exit_code", status, "elapsed_seconds", progress_elapsed(&run->progress));

		if (r == 0) {
			json_object_set_new(o, "performed", json_string(volume_op_to_string(res->op)));
			json_object_set_new(o, "uuid", json_string(res->uuid));
			json_object_set_new(o, "header_detached", json_boolean(res->header_detached));
			json_object_set_new(o, "header", json_string(res->header_path));
			if (res->op == VOLUME_OP_ENCRYPT) {
				json_object_set_new(o, "sector_size", json_integer(res->sector_size));
				json_object_set_new(o, "data_offset", json_integer((json_int_t)res->data_offset));
				json_object_set_new(o, "shrunk_by", json_integer((json_int_t)res->shrunk_by));
			}
			json_object_set_new(o, "resumed", json_boolean(res->resumed));
		} else {
			json_object_set_new(o, "message", json_string(res->message));
			json_object_set_new(o, "remedy", json_string(res->remedy));
		}
		(void)jansson_util_write(stdout, o, JSON_COMPACT);
		json_decref(o);
		return;
	}
	if (r == 0) {
		char shrink[32];

		if (res->op == VOLUME_OP_ENCRYPT)
			printf("%s: encrypted%s (LUKS2 aes-xts-plain64, 512-bit key, %u-byte sectors, header %s%s%s%s, UUID %s)\n",
			       run->target, res->resumed ? " (resumed)" : "", res->sector_size,
			       res->header_detached ? "in " : "on the device", res->header_detached ? res->header_path : "",
			       res->shrunk_by ? ", filesystem shrunk by " : "",
			       res->shrunk_by ? format_bytes(shrink, sizeof(shrink), res->shrunk_by) : "", res->uuid);
		else
			printf("%s: decrypted%s%s\n", run->target, res->resumed ? " (resumed)" : "",
			       res->header_detached ? "; the detached header file is no longer needed" : "");
		printf("Done in %.1f s.\n", progress_elapsed(&run->progress));
		return;
	}
	log_error("%s", res->message);
	if (*res->remedy)
		fprintf(stderr, "  what to do: %s\n", res->remedy);
}

/* --- online: unmount, convert under /dev/mapper/NAME, mount again at the same place ---------- */

struct mount_spec {
	bool mounted;
	char target[PATH_MAX];
	char fstype[64];
	unsigned long flags;   /* MS_* from the per-mount options */
	char data[1024];       /* the filesystem's own options, as the kernel shows them */
};

/* Finds where the block device devno is mounted (the last such mount in this namespace) and
 * with which options, from /proc/self/mountinfo. Returns 0 (ret->mounted false when it is not
 * mounted) or -errno. */
static int mount_find(dev_t devno, struct mount_spec *ret)
{
	_cleanup_(mount_util_table_unrefp) struct libmnt_table *tb = NULL;
	struct libmnt_fs *fs;
	const char *vfs, *fso;

	*ret = (struct mount_spec){};
	tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (!tb)
		return -EIO;
	fs = mnt_table_find_devno(tb, devno, MNT_ITER_BACKWARD);
	if (!fs)
		return 0;
	ret->mounted = true;
	snprintf(ret->target, sizeof(ret->target), "%s", mnt_fs_get_target(fs));
	snprintf(ret->fstype, sizeof(ret->fstype), "%s", mnt_fs_get_fstype(fs) ?: "");
	vfs = mnt_fs_get_vfs_options(fs);
	fso = mnt_fs_get_fs_options(fs);
	if (vfs && mnt_optstr_get_flags(vfs, &ret->flags, mnt_get_builtin_optmap(MNT_LINUX_MAP)) < 0)
		return -EINVAL;
	/* "rw"/"ro" of the superblock are flags, not data. */
	for (const char *p = fso ?: ""; *p;) {
		size_t n = strcspn(p, ",");

		if (!((n == 2 && (!strncmp(p, "rw", 2) || !strncmp(p, "ro", 2)))) &&
		    strlen(ret->data) + n + 2 < sizeof(ret->data))
			snprintf(ret->data + strlen(ret->data), sizeof(ret->data) - strlen(ret->data), "%s%.*s",
				 *ret->data ? "," : "", (int)n, p);
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int mount_again(const char *source, const struct mount_spec *m)
{
	if (mount(source, m->target, m->fstype, m->flags, *m->data ? m->data : NULL) == 0)
		return 0;
	/* An option the kernel shows but does not take back: mount with the flags alone. */
	if (errno == EINVAL && *m->data && mount(source, m->target, m->fstype, m->flags, NULL) == 0)
		return 0;
	return negative_errno();
}

/* Unmounts; a user that opens files now and then (a logger) may hold it for a moment. */
static int unmount_retry(const char *target)
{
	for (int i = 0; i < 50; i++) {
		if (umount2(target, 0) == 0)
			return 0;
		if (errno != EBUSY)
			break;
		usleep(100 * 1000);
	}
	return negative_errno();
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report_downtime(struct run *run, const struct mount_spec *m, double seconds)
{
	if (run->json) {
		_cleanup_(jansson_util_decrefp) json_t *o = json_pack("{s:s, s:s, s:f}", "event", "downtime",
								     "mountpoint", m->target, "seconds", seconds);
		(void)jansson_util_write(stdout, o, JSON_COMPACT);
	} else
		fprintf(stderr, "%s: unmounted for %.2f s\n", m->target, seconds);
}

static int fail_msg(struct convert_result *res, int r, const char *remedy, const char *fmt, ...) _printf_(4, 5);
static int fail_msg(struct convert_result *res, int r, const char *remedy, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
	snprintf(res->remedy, sizeof(res->remedy), "%s", remedy ? remedy : "");
	res->resume = CONVERT_RESUME_NO;
	return r;
}

/* The end of an online decryption: the mapping's filesystem (if mounted) is unmounted, the
 * engine finishes, and the plain device is mounted at the same place with the same options. */
static int decrypt_cutover(struct run *run, const struct convert_request *req, struct convert_result *res)
{
	struct mount_spec m = {};
	double t0;
	dev_t dm;
	int r;


	/* By device number from sysfs: without udev the /dev/mapper node can lag behind. */
	if (device_dm_by_name(req->active_name, &dm) == 0 && (r = mount_find(dm, &m)) < 0)
		return fail_msg(res, r, NULL, "cannot read the mount table (%s)", strerror(-r));
	t0 = now_seconds();
	if (m.mounted && (r = unmount_retry(m.target)) < 0)
		return fail_msg(res, r, "Stop what uses it, then run 'vmcrypt resume --online' to finish.",
				"%s: decrypted, but cannot unmount %s (%s)", req->target, m.target, strerror(-r));
	r = convert_online_finish(req, res);
	if (r < 0)
		return r;
	if (m.mounted) {
		r = mount_again(req->target, &m);
		if (r < 0)
			return fail_msg(res, r, "Mount it by hand.", "%s: decrypted, but cannot mount it at %s (%s)",
					req->target, m.target, strerror(-r));
		report_downtime(run, &m, now_seconds() - t0);
	}
	return 0;
}

/* vmcrypt encrypt|decrypt|resume --online: the engine's online calls (convert.h) around the
 * unmount and mount they leave to the caller. */
static int convert_online(struct run *run, const struct convert_request *req, struct convert_result *res)
{
	char mapper[PATH_MAX];
	struct mount_spec m;
	struct stat st;
	double t0;
	int r;

	snprintf(mapper, sizeof(mapper), "/dev/mapper/%s", req->active_name);
	if (run->verb == CONVERT_VERB_ENCRYPT) {
		if (stat(req->target, &st) < 0 || !S_ISBLK(st.st_mode))
			return fail_msg(res, -ENOTBLK, "Give a block device.", "%s: online conversion needs a block device",
					req->target);
		r = mount_find(st.st_rdev, &m);
		if (r < 0)
			return fail_msg(res, r, NULL, "cannot read the mount table (%s)", strerror(-r));
		t0 = now_seconds();
		if (m.mounted && (r = unmount_retry(m.target)) < 0)
			return fail_msg(res, r, "Stop what uses it, then retry ('vmcrypt check' lists the processes).",
					"%s: cannot unmount %s (%s)", req->target, m.target, strerror(-r));
		r = convert_online_start(req, VOLUME_OP_ENCRYPT, res);
		if (r < 0) {
			/* Refused before a byte changed, or failed in a way resume takes up: the
			 * filesystem goes back where it was when it still can. */
			if (m.mounted && mount_again(req->target, &m) < 0 && mount_again(mapper, &m) < 0)
				log_warning("%s: could not mount %s again", req->target, m.target);
			return r;
		}
		if (m.mounted) {
			r = mount_again(mapper, &m);
			if (r < 0)
				return fail_msg(res, r, "Mount it by hand, then run 'vmcrypt resume --online'.",
						"%s: encrypted online but cannot mount %s at %s (%s)", req->target, mapper,
						m.target, strerror(-r));
			report_downtime(run, &m, now_seconds() - t0);
		}
		return convert_online_run(req, res);
	}

	if (run->verb == CONVERT_VERB_RESUME) {
		/* Brings the mapping back (recovering a cut hotzone) and continues. The caller
		 * mounts a resumed encryption's mapping, before or while this runs; a decryption
		 * ends with the same cut-over as decrypt. */
		r = convert_online_resume(req, res);
		if (r < 0)
			return r;
		if (res->op == VOLUME_OP_DECRYPT && device_dm_by_name(req->active_name, &(dev_t){ 0 }) == -ENOENT) {
			r = convert_online_finish(req, res); /* all decrypted, nothing active */
			res->resumed = true;
			return r;
		}
		r = convert_online_run(req, res);
		res->resumed = true;
		if (r < 0 || res->op != VOLUME_OP_DECRYPT)
			return r;
		return decrypt_cutover(run, req, res);
	}

	/* decrypt: the mapping stays mounted while the data moves */
	if (device_dm_by_name(req->active_name, &(dev_t){ 0 }) < 0)
		return fail_msg(res, -ENXIO, "Open it first, or decrypt it offline.", "%s: %s is not active", req->target,
				mapper);
	r = convert_online_start(req, VOLUME_OP_DECRYPT, res);
	if (r < 0)
		return r;
	r = convert_online_run(req, res);
	if (r < 0)
		return r;
	return decrypt_cutover(run, req, res);
}

/* Returns a process exit status: the JSON result line reports it, so it is mapped here, through
 * the same exit_status_from_errno() as every other verb's errno. */
int verb_convert(int argc, char **argv)
{
	enum { ARG_KEY_FILE = 0x100, ARG_NEW_KEY_FILE, ARG_HEADER, ARG_SECTOR_SIZE, ARG_JSON, ARG_RECOVERY_FILE,
	       ARG_TOKEN_JSON_FILE, ARG_ONLINE, ARG_NAME };
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "key-file", required_argument, NULL, ARG_KEY_FILE },
		{ "new-key-file", required_argument, NULL, ARG_NEW_KEY_FILE },
		{ "header", required_argument, NULL, ARG_HEADER },
		{ "sector-size", required_argument, NULL, ARG_SECTOR_SIZE },
		{ "json", no_argument, NULL, ARG_JSON },
		{ "recovery-file", required_argument, NULL, ARG_RECOVERY_FILE },
		{ "token-json-file", required_argument, NULL, ARG_TOKEN_JSON_FILE },
		{ "online", no_argument, NULL, ARG_ONLINE },
		{ "name", required_argument, NULL, ARG_NAME },
		{}
	};
	const char *key_file = NULL, *new_key_file = NULL, *header = NULL, *recovery_file = NULL,
		   *token_json_file = NULL;
	_cleanup_secret_ void *key = NULL, *recovery = NULL;
	_cleanup_free_ char *token_json = NULL;
	size_t recovery_size = 0;
	const char *name = NULL;
	char default_name[128];
	bool online = false;
	struct convert_result res = {};
	struct lock_holder holder = {};
	struct convert_request req = {};
	enum convert_verb verb = convert_verb_from_string(argv[0]);
	struct run run = { .verb = verb };
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t sector_size = 0;
	size_t key_size = 0;
	bool world_readable = false;
	int c, r, status;

	assert(verb >= 0); /* vmcrypt.c's table sends only these three verbs here */

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			usage(verb, stdout);
			return EXIT_OK;
		case ARG_KEY_FILE:
			key_file = optarg;
			break;
		case ARG_NEW_KEY_FILE:
			if (verb != CONVERT_VERB_ENCRYPT)
				goto bad_usage;
			new_key_file = optarg;
			break;
		case ARG_HEADER:
			header = optarg;
			break;
		case ARG_SECTOR_SIZE:
			if (verb != CONVERT_VERB_ENCRYPT || parse_u64(optarg, &sector_size) < 0 ||
			    (sector_size != 512 && sector_size != 4096)) {
				fprintf(stderr, "vmcrypt %s: --sector-size takes 512 or 4096\n", convert_verb_to_string(verb));
				return EXIT_USAGE;
			}
			break;
		case ARG_JSON:
			run.json = true;
			break;
		case ARG_RECOVERY_FILE:
			recovery_file = optarg;
			break;
		case ARG_ONLINE:
			online = true;
			break;
		case ARG_NAME:
			name = optarg;
			break;
		case ARG_TOKEN_JSON_FILE:
			if (verb != CONVERT_VERB_ENCRYPT)
				goto bad_usage;
			token_json_file = optarg;
			break;
		default:
			goto bad_usage;
		}
	}
	/* decrypt and resume may be given the recovery passphrase alone */
	if (optind != argc - 1 || (key_file && new_key_file) ||
	    (!key_file && !new_key_file && (verb == CONVERT_VERB_ENCRYPT || !recovery_file))) {
		if (optind == argc - 1 && key_file && new_key_file)
			fprintf(stderr, "vmcrypt %s: give either --key-file or --new-key-file, not both\n", convert_verb_to_string(verb));
		goto bad_usage;
	}
	run.target = argv[optind];
	if (name && !online)
		goto bad_usage;
	if (online && !name) {
		/* The agent names mappings after mount points; by hand the kernel name will do. */
		const char *base = strrchr(run.target, '/');

		snprintf(default_name, sizeof(default_name), "vmcrypt-%s", base ? base + 1 : run.target);
		name = default_name;
	}
	if (run.json)
		log_set_sink(convert_cli_log_sink, NULL);
	progress_init(&run.progress, run.json, convert_verb_to_string(verb), run.target);

	/* The key first: whatever it takes to read it (a pipe, a slow disk) must not hold the VM
	 * operation lock, which every other operation would find taken. */
	if (key_file) {
		r = secret_read_file(key_file, &key, &key_size, &world_readable);
		if (r < 0) {
			snprintf(res.message, sizeof(res.message), "%s: cannot use the key file: %s", key_file,
				 secret_read_strerror(r));
			snprintf(res.remedy, sizeof(res.remedy), "Give a readable, non-empty key file.");
			status = EXIT_KEY;
			print_result(&run, r, status, &res);
			return status;
		}
		if (world_readable)
			log_warning("%s: the key file can be read by group or others; run 'chmod 600 %s'", key_file, key_file);
	}

	if (recovery_file) {
		r = secret_read_file(recovery_file, &recovery, &recovery_size, &world_readable);
		if (r < 0) {
			snprintf(res.message, sizeof(res.message), "%s: cannot use the recovery passphrase file: %s",
				 recovery_file, secret_read_strerror(r));
			snprintf(res.remedy, sizeof(res.remedy), "Give a readable, non-empty recovery passphrase file.");
			status = EXIT_KEY;
			print_result(&run, r, status, &res);
			return status;
		}
		if (world_readable)
			log_warning("%s: the recovery passphrase file can be read by group or others; run 'chmod 600 %s'",
				    recovery_file, recovery_file);
	}
	if (token_json_file) {
		size_t n;

		/* A LUKS2 header's JSON area is at most 4 MiB; a token is a small part of it. */
		r = read_full_file(token_json_file, 65536, &token_json, &n);
		if (r < 0) {
			snprintf(res.message, sizeof(res.message), "%s: cannot read the token JSON (%s)", token_json_file,
				 strerror(-r));
			snprintf(res.remedy, sizeof(res.remedy), "Give a readable file of at most 64 KiB.");
			status = EXIT_USAGE;
			print_result(&run, r, status, &res);
			return status;
		}
	}

	/* One operation at a time on this VM, checked before anything changes. */
	r = vm_lock_acquire(convert_verb_to_string(verb), run.target, &run.lock, &holder);
	if (r == -EAGAIN) {
		char msg[1024];

		vm_lock_format_busy(&holder, msg, sizeof(msg));
		snprintf(res.message, sizeof(res.message), "%s", msg);
		snprintf(res.remedy, sizeof(res.remedy), "Wait for it to finish ('vmcrypt status' shows its progress).");
		status = EXIT_LOCKED;
		print_result(&run, r, status, &res);
		return status;
	}
	if (r < 0) {
		snprintf(res.message, sizeof(res.message), "cannot take the VM operation lock (%s)", strerror(-r));
		status = EXIT_ERROR;
		print_result(&run, r, status, &res);
		return status;
	}

	if (new_key_file) {
		r = secret_generate_file(new_key_file, 64, &key);
		if (r < 0) {
			snprintf(res.message, sizeof(res.message), "%s: cannot create the new key file (%s)",
				 new_key_file, r == -EEXIST ? "it already exists; vmcrypt never overwrites a key" : strerror(-r));
			snprintf(res.remedy, sizeof(res.remedy), "Choose a new path, or use --key-file for an existing key.");
			status = r == -EEXIST ? EXIT_EXISTS : EXIT_KEY;
			goto out;
		}
		key_size = 64;
	}

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	req = (struct convert_request){
		.target = run.target,
		.header = header,
		.key = key,
		.key_size = key_size,
		.recovery = recovery,
		.recovery_size = recovery_size,
		.token_json = token_json,
		.active_name = name,
		.sector_size = (uint32_t)sector_size,
		.progress = on_progress,
		.userdata = &run,
	};
	(void)journal_begin(convert_verb_to_string(verb), run.target, NULL);
	if (header)
		/* A detached header leaves no signature on the device: status finds it here. */
		(void)journal_set_header(run.target, header);
	if (vm_lock_stale_holder(run.lock)) {
		const struct lock_holder *h = vm_lock_stale_holder(run.lock);

		log_warning("a previous vmcrypt %s of %s (pid %d) was killed before it finished%s", h->command,
			    h->target, (int)h->pid,
			    verb == CONVERT_VERB_RESUME ? "" : "; if that was this target, run 'vmcrypt resume' instead");
	}
	if (online)
		r = convert_online(&run, &req, &res);
	else switch (verb) {
	case CONVERT_VERB_ENCRYPT:
		r = convert_encrypt(&req, &res);
		break;
	case CONVERT_VERB_DECRYPT:
		r = convert_decrypt(&req, &res);
		break;
	default:
		r = convert_resume(&req, &res);
		break;
	}
	(void)journal_end(run.target, r == 0 ? JOURNAL_SUCCEEDED : r == -EINTR ? JOURNAL_INTERRUPTED : JOURNAL_FAILED, r);
	status = exit_status_from_errno(r);
	if (r < 0)
		word_resume_remedy(&res);

	/* A key file we made for a conversion that never touched the target is removed again, so
	 * a retry can use the same path; once the target changed, the key must stay. */
	if (r < 0 && new_key_file) {
		struct volume_info vi;

		if (luks_inspect(run.target, header && access(header, F_OK) == 0 ? header : NULL, &vi) == 0 &&
		    vi.state == VOLUME_PLAIN)
			(void)unlink(new_key_file);
	}
out:
	print_result(&run, r, status, &res);
	vm_lock_release(run.lock);
	return status;

bad_usage:
	usage(verb, stderr);
	return EXIT_USAGE;
}
