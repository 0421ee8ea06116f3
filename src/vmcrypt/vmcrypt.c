/* vmcrypt: the in-VM program. Dispatches a verb from one table; each verb lives in its own file
 * (encrypt, decrypt and resume share convert-cli.c) and its result becomes the exit status here. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/exit-status.h"
#include "shared/secret.h"
#include "shared/tpm/tpm-seal.h"
#include "vmcrypt.h"

const char vmcrypt_version[] = VMCRYPT_VERSION;

static const struct verb {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} verbs[] = {
	{ "check", verb_check, "check the VM's prerequisites, change nothing" },
	{ "enroll", verb_enroll, "join vmcryptd with a one-time enrollment token" },
	{ "encrypt", verb_convert, "encrypt a volume in place into LUKS2" },
	{ "decrypt", verb_convert, "decrypt a LUKS2 volume in place back to plain" },
	{ "resume", verb_convert, "finish an interrupted encrypt or decrypt" },
	{ "agent", verb_agent, "run the agent: apply vmcryptd's settings to this VM's volumes" },
	{ "status", verb_status, "show a volume's or the whole VM's encryption state" },
	{ "boot-unlock", verb_boot_unlock, "open the OS volume at boot (run by the initramfs)" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: vmcrypt COMMAND [OPTIONS] [TARGET]\n\nCommands:\n");
	for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
		fprintf(f, "  %-12s %s\n", verbs[i].name, verbs[i].help);
	fprintf(f, "\nRun 'vmcrypt COMMAND --help' for a command's options.\n"
		   "Options: --help, --version, --verbose (before the command).\n"
		   "Exit codes are listed in docs/exit-codes.md.\n");
}

int main(int argc, char **argv)
{
	int i = 1;

	secret_setup_json_allocator();
	/* Before any thread (the agent's, the vault client's): it may set TSS2_LOG. */
	tpm_seal_setup_logging();
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
			usage(stdout);
			return EXIT_OK;
		} else if (streq(argv[i], "--version")) {
			printf("vmcrypt %s\n", VMCRYPT_VERSION);
			return EXIT_OK;
		} else if (streq(argv[i], "--verbose") || streq(argv[i], "-v")) {
			log_set_max_level(LOG_LEVEL_DEBUG);
		} else {
			fprintf(stderr, "vmcrypt: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t v = 0; v < ELEMENTSOF(verbs); v++)
		if (streq(argv[i], verbs[v].name)) {
			int r;

			optind = 0; /* each verb runs its own getopt_long from a clean state */
			r = verbs[v].fn(argc - i, argv + i);
			return r < 0 ? exit_status_from_errno(r) : r;
		}
	fprintf(stderr, "vmcrypt: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return EXIT_USAGE;
}
