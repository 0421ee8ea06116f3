/* vmcrypt boot-unlock: opens the OS volume in the initramfs, before the root is mounted
 * (docs/os-volume.md). The initramfs script mounts /boot, brings the network up and runs this;
 * when the vault cannot give the key in time it asks on the console for the recovery passphrase
 * and runs this again with --recovery-file. Stock cryptsetup's token path cannot do it: while
 * the root is being converted libcryptsetup 2.6 refuses to open a volume in reencryption through
 * a token, and the OS volume spends its first hours after the reboot that way. */
#include <errno.h>
#include <getopt.h>
#include <libcryptsetup.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/client/agent-conf.h"
#include "shared/client/os-boot.h"
#include "shared/client/vault-client.h"
#include "shared/exit-status.h"
#include "shared/luks/luks.h"
#include "shared/secret.h"
#include "shared/tpm/tpm-seal.h"
#include "vmcrypt.h"

#define BOOT_UNLOCK_TIMEOUT_DEFAULT 60
#define BOOT_UNLOCK_RETRY_S 3
/* A report of the vault's failure at most this often on the console. */
#define BOOT_UNLOCK_SAY_EVERY_S 10

static void usage(FILE *f)
{
	fprintf(f, "Usage: vmcrypt boot-unlock [--boot-dir DIR] [--timeout SECONDS] [--recovery-file FILE]\n\n"
		   "Opens the OS volume that DIR/os.conf names (default " OS_BOOT_DIR ") as its mapping,\n"
		   "with the key from the vault (DIR holds agent.conf, the credential, plain or sealed\n"
		   "to this VM's TPM 2.0 as credential.tpm, and ca.pem) or,\n"
		   "with --recovery-file (a file or /dev/fd/N, /dev/stdin), the recovery passphrase.\n"
		   "Retries the vault for --timeout seconds (default %d). Run by the initramfs.\n"
		   "Exit: 0 opened (or open already), 5 the key or passphrase does not open it,\n"
		   "13 the vault refused or could not be reached in time, 1 other failures.\n",
		   BOOT_UNLOCK_TIMEOUT_DEFAULT);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int activate(const struct os_boot_conf *c, const char *header, const char *how, const void *key,
		    size_t key_size)
{
	int r = luks_activate(header, c->device, c->name, key, key_size);

	if (r == -EEXIST)
		r = 0; /* opened meanwhile (another run): what we wanted */
	if (r == 0) {
		fprintf(stderr, "vmcrypt: OS volume %s opened as /dev/mapper/%s %s\n", c->device, c->name, how);
		return EXIT_OK;
	}
	if (r == -EPERM) {
		fprintf(stderr, "vmcrypt: OS volume %s: the %s opens no keyslot of %s\n", c->device,
			startswith(how, "with the recovery") ? "passphrase" : "vault's key", header);
		return EXIT_KEY;
	}
	fprintf(stderr, "vmcrypt: OS volume %s: cannot open it from %s: %s\n", c->device, header,
		luks_last_error()[0] ? luks_last_error() : strerror(-r));
	return EXIT_ERROR;
}

/* The VM credential: sealed to this VM's TPM 2.0 when the agent could (dir/credential.tpm), else
 * the plain copy. Returns 0, or -errno with the reason in err. */
static int read_credential(const char *dir, void **ret, size_t *ret_size, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, OS_BOOT_SEALED_NAME);
	if (access(path, F_OK) < 0) {
		snprintf(path, sizeof(path), "%s/%s", dir, AGENT_CREDENTIAL_NAME);
		return agent_credential_read(path, ret, ret_size, err, errlen);
	}
	r = tpm_unseal_file(NULL, path, ret, ret_size);
	switch (r) {
	case 0:
		return 0;
	case -EKEYREJECTED:
		snprintf(err, errlen, "the VM credential %.300s is sealed to another TPM: this disk was copied from "
			 "another VM, or this VM's TPM was cleared", path);
		break;
	case -ENODEV:
		snprintf(err, errlen, "the VM credential %.300s is sealed to a TPM 2.0 and this VM has none (a disk "
			 "copied to another VM, or the VM's vTPM was removed)", path);
		break;
	case -ELIBACC:
		snprintf(err, errlen, "the initramfs lacks tpm2-tss's device module (libtss2-tcti-device.so.0) to "
			 "unseal %.300s: reinstall vmcrypt and rebuild the initramfs ('update-initramfs -u -k all', or "
			 "'dracut --force --regenerate-all')", path);
		break;
	case -EBADMSG:
		snprintf(err, errlen, "the sealed VM credential %.300s is damaged or was altered", path);
		break;
	default:
		snprintf(err, errlen, "cannot unseal the VM credential %.300s with the TPM 2.0 (%s)", path, strerror(-r));
		break;
	}
	return r;
}

/* The key from the vault, retried until deadline. Returns 0 with *ret, or the exit status. */
static int fetch_key(const char *dir, const struct os_boot_conf *c, double deadline, void **ret, size_t *ret_n)
{
	_cleanup_secret_ void *credential = NULL;
	struct agent_conf conf;
	char path[PATH_MAX], err[512];
	size_t credential_size;
	double said = 0;
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, AGENT_CONF_NAME);
	r = agent_conf_load(path, &conf, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "vmcrypt: OS volume: %s; the vault cannot be asked\n", err);
		return EXIT_REMOTE;
	}
	/* The CA copy lies beside agent.conf here: /etc/vmcrypt is on the locked root. */
	if (conf.ca_file[0])
		snprintf(conf.ca_file, sizeof(conf.ca_file), "%s/%s", dir, AGENT_CA_NAME);
	r = read_credential(dir, &credential, &credential_size, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "vmcrypt: OS volume: %s; the vault cannot be asked\n", err);
		return EXIT_REMOTE;
	}
	for (;;) {
		struct vault_client *vc = NULL;
		uint64_t version = 0;

		r = vault_client_new(&conf, credential, credential_size, VAULT_CLIENT_PLUGIN_CONNECT_TIMEOUT,
				     VAULT_CLIENT_PLUGIN_TOTAL_TIMEOUT, &vc);
		if (r < 0) {
			fprintf(stderr, "vmcrypt: OS volume: cannot set up the vault client for %s (%s)\n",
				conf.server, strerror(-r));
			return EXIT_REMOTE;
		}
		r = vault_client_secret_get(vc, c->volume, ret, ret_n, &version, err, sizeof(err));
		vault_client_free(vc);
		if (r == 0)
			return 0;
		if (r == -EACCES || r == -ENOENT) {
			/* Will not change by waiting: a revoked credential, a copy of the disk on
			 * another VM, a secret deleted. */
			fprintf(stderr, "vmcrypt: OS volume: %s refuses the key: %s\n", conf.server, err);
			return EXIT_REMOTE;
		}
		if (now_s() >= deadline) {
			fprintf(stderr, "vmcrypt: OS volume: cannot get its key from %s: %s\n", conf.server, err);
			return EXIT_REMOTE;
		}
		if (now_s() - said >= BOOT_UNLOCK_SAY_EVERY_S) {
			fprintf(stderr, "vmcrypt: OS volume: cannot get its key from %s yet (%s); trying for %.0f s more\n",
				conf.server, err, deadline - now_s());
			said = now_s();
		}
		sleep(BOOT_UNLOCK_RETRY_S);
	}
}

int verb_boot_unlock(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "boot-dir", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "recovery-file", required_argument, NULL, 'r' },
		{}
	};
	const char *dir = OS_BOOT_DIR, *recovery = NULL;
	_cleanup_secret_ void *key = NULL;
	struct os_boot_conf c;
	char header[PATH_MAX], err[512];
	uint64_t timeout = BOOT_UNLOCK_TIMEOUT_DEFAULT;
	double deadline;
	size_t key_size = 0;
	struct stat st;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "hd:t:r:", options, NULL)) >= 0)
		switch (opt) {
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'd':
			dir = optarg;
			break;
		case 't':
			if (parse_u64(optarg, &timeout) < 0 || timeout > 3600) {
				fprintf(stderr, "vmcrypt boot-unlock: --timeout takes 0 to 3600 seconds\n");
				return EXIT_USAGE;
			}
			break;
		case 'r':
			recovery = optarg;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	deadline = now_s() + (double)timeout;

	r = os_boot_conf_load(dir, &c, err, sizeof(err));
	if (r == -ENOENT) {
		fprintf(stderr, "vmcrypt: %s: no OS volume to open (no %s)\n", dir, OS_BOOT_CONF_NAME);
		return EXIT_STATE;
	}
	if (r < 0) {
		fprintf(stderr, "vmcrypt: OS volume: %s\n", err);
		return EXIT_ERROR;
	}
	if (crypt_status(NULL, c.name) != CRYPT_INACTIVE) {
		fprintf(stderr, "vmcrypt: OS volume: /dev/mapper/%s is open already\n", c.name);
		return EXIT_OK;
	}
	if ((size_t)snprintf(header, sizeof(header), "%s/%s", dir, c.header) >= sizeof(header)) {
		fprintf(stderr, "vmcrypt: OS volume %s: the header's path %s/%s is too long\n", c.device, dir, c.header);
		return EXIT_ERROR;
	}
	if (stat(header, &st) < 0) {
		fprintf(stderr, "vmcrypt: OS volume %s: its header %s is missing (%m); restore it from the "
			"backup ('cryptsetup luksHeaderRestore', docs/os-volume.md)\n", c.device, header);
		return EXIT_ERROR;
	}
	/* udev names the device a moment after the initramfs starts: wait for it too. */
	while (stat(c.device, &st) < 0) {
		if (now_s() >= deadline) {
			fprintf(stderr, "vmcrypt: OS volume: the device %s did not appear\n", c.device);
			return EXIT_ERROR;
		}
		usleep(200 * 1000);
	}

	if (recovery) {
		bool world = false;

		r = secret_read_file(recovery, &key, &key_size, &world);
		if (r < 0) {
			fprintf(stderr, "vmcrypt: OS volume: cannot read the recovery passphrase: %s\n",
				secret_read_strerror(r));
			return EXIT_KEY;
		}
		/* askpass and a typed line may end in a newline; a recovery passphrase never does. */
		while (key_size > 0 && (((char *)key)[key_size - 1] == '\n' || ((char *)key)[key_size - 1] == '\r'))
			key_size--;
		if (key_size == 0) {
			fprintf(stderr, "vmcrypt: OS volume: the recovery passphrase is empty\n");
			return EXIT_KEY;
		}
		return activate(&c, header, "with the recovery passphrase", key, key_size);
	}
	r = fetch_key(dir, &c, deadline, &key, &key_size);
	if (r != 0)
		return r;
	return activate(&c, header, "with the key from the vault", key, key_size);
}
