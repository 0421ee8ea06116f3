/* vmcrypt status [TARGET]: one volume's LUKS2 state, or (without TARGET) the whole VM's. */
#include <getopt.h>
#include <jansson.h>
#include <libcryptsetup.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/luks/luks-inspect.h"
#include "shared/luks/luks.h"
#include "shared/vm/lock.h"
#include "vmcrypt.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: vmcrypt status [--json] [--header FILE] [TARGET]\n\n"
		   "With TARGET: its state (plain, encrypting, encrypted, decrypting, interrupted),\n"
		   "the percentage done, header location, cipher, sector size, keyslots and tokens.\n"
		   "Without: the VM's OsVolumeEncrypted, DataVolumesEncrypted and ProgressMessage.\n"
		   "No secret is ever shown.\n");
}

/* A clean reencryption that no running vmcrypt works on is waiting for `resume`: to a person,
 * that is an interrupted conversion, whatever the metadata calls it. */
static bool running_on(const char *target, double *ret_percent)
{
	struct lock_holder h;
	char a[PATH_MAX], b[PATH_MAX];

	if (vm_lock_peek(&h) <= 0)
		return false;
	if (!realpath(target, a) || !realpath(h.target, b) || !streq(a, b))
		return false;
	*ret_percent = h.percent;
	return true;
}

int verb_status(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "header", required_argument, NULL, 'H' },
		{}
	};
	const char *header = NULL, *target;
	struct volume_info vi;
	bool json = false, running;
	double live = -1;
	enum volume_state shown;
	const char *state;
	int c, r;

	/* Status only reads: it must not wait for a running conversion's metadata lock (that
	 * would stall it for seconds) and it may read a header mid-update, which libcryptsetup
	 * detects by checksum and answers from the second header copy. */
	crypt_metadata_locking(NULL, 0);

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'j':
			json = true;
			break;
		case 'H':
			header = optarg;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind == argc)
		return status_vm(json);
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	target = argv[optind];

	r = luks_inspect(target, header, &vi);
	if (r < 0) {
		log_error("%s: cannot inspect it (%s)", target,
			  r == -ENOTBLK ? "it or its --header is neither a block device nor a regular file" : strerror(-r));
		return r == -ENOENT ? EXIT_USAGE : EXIT_ERROR;
	}
	running = running_on(target, &live);
	shown = vi.state;
	if ((vi.state == VOLUME_ENCRYPTING || vi.state == VOLUME_DECRYPTING) && !running)
		shown = VOLUME_INTERRUPTED;
	if (vi.state == VOLUME_INTERRUPTED && running)
		shown = vi.op == VOLUME_OP_DECRYPT ? VOLUME_DECRYPTING : VOLUME_ENCRYPTING;
	state = volume_state_to_string(shown);
	if (running && live >= 0)
		vi.percent = live;

	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:I}", "target", target, "state", state,
				      "operation", volume_op_to_string(vi.op), "running", running,
				      "device_size", (json_int_t)vi.device_size);

		json_object_set_new(o, "percent", vi.percent >= 0 ? json_real(vi.percent) : json_null());
		if (*vi.uuid)
			json_object_set_new(o, "uuid", json_string(vi.uuid));
		if (*vi.cipher) {
			json_object_set_new(o, "cipher", json_string(vi.cipher));
			json_object_set_new(o, "key_bits", json_integer(vi.key_bits));
			json_object_set_new(o, "sector_size", json_integer(vi.sector_size));
			json_object_set_new(o, "data_offset", json_integer((json_int_t)vi.data_offset));
		}
		if (*vi.header_path) {
			json_object_set_new(o, "header", json_string(vi.header_path));
			json_object_set_new(o, "header_detached", json_boolean(vi.header_detached));
			json_object_set_new(o, "keyslots", json_integer(vi.keyslots));
			json_object_set_new(o, "tokens", json_integer(vi.tokens));
		}
		if (*vi.fs_type)
			json_object_set_new(o, "fs_type", json_string(vi.fs_type));
		if (vi.started)
			json_object_set_new(o, "started", json_integer(vi.started));
		(void)jansson_util_write(stdout, o, JSON_COMPACT);
		json_decref(o);
		return EXIT_OK;
	}

	printf("Target       : %s\n", target);
	printf("State        : %s%s\n", state,
	       shown == VOLUME_INTERRUPTED ? " (run 'vmcrypt resume --key-file FILE TARGET')" : "");
	if (vi.op != VOLUME_OP_NONE) {
		printf("Operation    : %s%s\n", volume_op_to_string(vi.op), running ? " (running)" : "");
		if (vi.percent >= 0)
			printf("Progress     : %.1f%%\n", vi.percent);
	}
	if (*vi.header_path)
		printf("Header       : %s%s\n", vi.header_detached ? "detached, " : "on the device, ", vi.header_path);
	if (*vi.cipher) {
		char off[32];

		printf("Cipher       : %s, %u-bit key\n", vi.cipher, vi.key_bits);
		printf("Sector size  : %u bytes\n", vi.sector_size);
		printf("Data offset  : %s\n", format_bytes(off, sizeof(off), vi.data_offset));
	}
	if (*vi.header_path) {
		printf("Keyslots     : %d\n", vi.keyslots);
		printf("Tokens       : %d%s\n", vi.tokens, vi.has_token ? " (including vmcrypt)" : "");
	}
	if (*vi.uuid)
		printf("UUID         : %s\n", vi.uuid);
	if (*vi.fs_type)
		printf("Filesystem   : %s\n", vi.fs_type);
	if (vi.started) {
		char when[64];
		time_t t = (time_t)vi.started;

		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		printf("Started      : %s\n", when);
	}
	return EXIT_OK;
}
