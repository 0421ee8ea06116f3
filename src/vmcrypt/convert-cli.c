/* The command line shared by encrypt, decrypt and resume. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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
			"                       [--sector-size 512|4096] [--json] TARGET\n\n"
			"Encrypts TARGET (a block device, partition or disk image file) in place into a\n"
			"standard LUKS2 volume (aes-xts-plain64, 512-bit key). ext2/3/4 is shrunk by 32 MiB\n"
			"to make room for the header on the device; other filesystems need --header FILE.\n\n"
			"  --key-file FILE      the unlock key (read from FILE; mode 0600 expected)\n"
			"  --new-key-file FILE  generate a 64-byte random key into the new FILE (0600)\n"
			"  --header FILE        keep the LUKS2 header in FILE (must not exist): detached header\n"
			"  --recovery-file FILE a second passphrase (keyslot 1), read like a key file\n"
			"  --token-json-file FILE  a LUKS2 token (JSON) to set on the new header\n"
			"  --sector-size N      encryption sector size; default 4096 when the filesystem allows\n"
			"  --json               JSON lines on stdout: progress events, then a result\n\n"
			"Interrupted (SIGINT/SIGTERM, crash, power loss)? Run 'vmcrypt resume'.\n");
		break;
	case CONVERT_VERB_DECRYPT:
		fprintf(f,
			"Usage: vmcrypt decrypt (--key-file FILE | --recovery-file FILE) [--header FILE] [--json] TARGET\n\n"
			"Decrypts a LUKS2 TARGET in place back to its plain contents. With the header on the\n"
			"device, the header moves to vmcrypt's state directory while the data shifts back,\n"
			"and an ext2/3/4 filesystem is grown back to fill the device.\n\n"
			"  --key-file FILE      the unlock key\n"
			"  --recovery-file FILE the recovery passphrase (either opens it; give both to be sure)\n"
			"  --header FILE        the detached LUKS2 header of TARGET\n"
			"  --json               JSON lines on stdout: progress events, then a result\n");
		break;
	case CONVERT_VERB_RESUME:
		fprintf(f,
			"Usage: vmcrypt resume (--key-file FILE | --recovery-file FILE) [--header FILE] [--json] TARGET\n\n"
			"Finishes an interrupted encrypt or decrypt of TARGET, whichever it was, after\n"
			"SIGINT, kill -9, a crash or power loss; it repairs what was cut short first.\n\n"
			"  --key-file FILE      the unlock key\n"
			"  --recovery-file FILE the recovery passphrase (either opens it; give both to be sure)\n"
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

/* Returns a process exit status: the JSON result line reports it, so it is mapped here, through
 * the same exit_status_from_errno() as every other verb's errno. */
int verb_convert(int argc, char **argv)
{
	enum { ARG_KEY_FILE = 0x100, ARG_NEW_KEY_FILE, ARG_HEADER, ARG_SECTOR_SIZE, ARG_JSON, ARG_RECOVERY_FILE,
	       ARG_TOKEN_JSON_FILE };
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "key-file", required_argument, NULL, ARG_KEY_FILE },
		{ "new-key-file", required_argument, NULL, ARG_NEW_KEY_FILE },
		{ "header", required_argument, NULL, ARG_HEADER },
		{ "sector-size", required_argument, NULL, ARG_SECTOR_SIZE },
		{ "json", no_argument, NULL, ARG_JSON },
		{ "recovery-file", required_argument, NULL, ARG_RECOVERY_FILE },
		{ "token-json-file", required_argument, NULL, ARG_TOKEN_JSON_FILE },
		{}
	};
	const char *key_file = NULL, *new_key_file = NULL, *header = NULL, *recovery_file = NULL,
		   *token_json_file = NULL;
	_cleanup_secret_ void *key = NULL, *recovery = NULL;
	_cleanup_free_ char *token_json = NULL;
	size_t recovery_size = 0;
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
	switch (verb) {
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
