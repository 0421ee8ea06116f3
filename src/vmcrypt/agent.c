/* vmcrypt agent: the service that applies vmcryptd's settings to this VM (docs/agent.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "shared/agent/engine.h"
#include "shared/client/agent-conf.h"
#include "shared/exit-status.h"
#include "shared/paths.h"
#include "shared/secret.h"
#include "vmcrypt.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	stop_requested = sig;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vmcrypt agent [--once]\n\n"
		"Runs the agent: resumes interrupted conversions, polls vmcryptd for this VM's\n"
		"encryption settings, encrypts or decrypts the data volumes accordingly (online where\n"
		"the kernel has dm-crypt), keeps crypttab and fstab in step and reports status.\n"
		"Settings: %s/agent.conf (docs/agent.md); enroll first with 'vmcrypt enroll'.\n\n"
		"  --once   apply the current settings, wait for the conversions, report, exit\n\n"
		"SIGTERM or SIGINT stop conversions at a safe point; the next start resumes them.\n"
		"Exit codes: docs/exit-codes.md.\n",
		path_conf_dir());
}

int verb_agent(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "once", no_argument, NULL, 'o' },
		{}
	};
	struct agent_engine_options o = { .agent_version = VMCRYPT_VERSION };
	struct sigaction sa = { .sa_handler = on_signal };
	_cleanup_secret_ void *credential = NULL;
	struct agent_engine *e = NULL;
	_cleanup_free_ struct agent_conf *conf = NULL;
	size_t credential_size = 0;
	char err[512] = "";
	int c, r;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'o':
			o.once = true;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	/* A service: what it does goes to its journal, not only what fails. */
	if (log_get_max_level() < LOG_LEVEL_INFO)
		log_set_max_level(LOG_LEVEL_INFO);
	conf = malloc(sizeof(*conf)); /* about 280 KiB */
	if (!conf)
		return exit_status_from_errno(-ENOMEM);
	r = agent_conf_load(NULL, conf, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err[0] ? err : strerror(-r));
		if (r == -ENOENT) {
			fprintf(stderr, "  what to do: enroll this VM first: vmcrypt enroll --server URL --token-file FILE\n");
			return EXIT_STATE;
		}
		/* A configuration file that does not parse is a usage error, as for vmcryptd. */
		return r == -EINVAL ? EXIT_USAGE : exit_status_from_errno(r);
	}
	r = agent_credential_read(NULL, &credential, &credential_size, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		return r == -ENOENT ? EXIT_STATE : r == -EPERM || r == -EINVAL ? EXIT_KEY : exit_status_from_errno(r);
	}
	o.conf = conf;
	o.credential = credential;
	o.credential_size = credential_size;
	r = agent_engine_new(&o, &e, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		return exit_status_from_errno(r);
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_info("vmcrypt agent %s for VM %s, vault %s", VMCRYPT_VERSION, conf->vm, conf->server);
	r = agent_engine_run(e, &stop_requested);
	agent_engine_free(e);
	if (r < 0)
		return exit_status_from_errno(r);
	return EXIT_OK;
}
