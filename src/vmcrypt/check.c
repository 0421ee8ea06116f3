/* vmcrypt check: runs every prerequisite check, prints one line per check, changes nothing. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/client/agent-conf.h"
#include "shared/client/vault-client.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/secret.h"
#include "shared/vm/preflight.h"
#include "vmcrypt.h"

/* The vault and agent-version checks need the vault client, which src/shared/vm may not use:
 * they run here and preflight calls them in their slots (struct preflight_probes). */
struct remote {
	bool enrolled;  /* agent.conf and the credential were there */
	bool reached;   /* the goal was read */
	json_t *goal;
};

/* Short timeouts: a check must not hang on a dead network (the token plugin uses the same). */
#define CHECK_CONNECT_TIMEOUT VAULT_CLIENT_PLUGIN_CONNECT_TIMEOUT
#define CHECK_TOTAL_TIMEOUT VAULT_CLIENT_PLUGIN_TOTAL_TIMEOUT

static void probe_vault(void *userdata, struct preflight_finding *f)
{
	struct remote *rm = userdata;
	_cleanup_free_ struct agent_conf *conf = malloc(sizeof(*conf));
	_cleanup_secret_ char *cred = NULL;
	struct vault_client *vc = NULL;
	const char *proxy, *ca;
	char err[1024] = "", path[PATH_MAX];
	size_t cred_size = 0;
	json_t *goal = NULL;
	int r;

	if (!conf) {
		f->status = PREFLIGHT_FAIL;
		snprintf(f->message, sizeof(f->message), "Out of memory.");
		return;
	}
	r = agent_conf_load(NULL, conf, err, sizeof(err));
	if (r == -ENOENT) {
		f->status = PREFLIGHT_SKIP;
		snprintf(f->message, sizeof(f->message), "not enrolled: run vmcrypt enroll (no %.900s).",
			 agent_conf_path(AGENT_CONF_NAME, path, sizeof(path)) ?: AGENT_CONF_NAME);
		return;
	}
	if (r < 0) {
		f->status = PREFLIGHT_FAIL;
		snprintf(f->message, sizeof(f->message), "%s.", err);
		snprintf(f->remedy, sizeof(f->remedy), "Fix agent.conf (docs/agent.md lists its keys), or run "
			 "vmcrypt enroll --force again.");
		return;
	}
	json_object_set_new(f->details, "server", json_string(conf->server));
	r = agent_credential_read(NULL, (void **)&cred, &cred_size, err, sizeof(err));
	if (r == -ENOENT) {
		f->status = PREFLIGHT_SKIP;
		snprintf(f->message, sizeof(f->message), "not enrolled: run vmcrypt enroll (no %.900s).",
			 agent_conf_path(AGENT_CREDENTIAL_NAME, path, sizeof(path)) ?: AGENT_CREDENTIAL_NAME);
		return;
	}
	if (r < 0) {
		f->status = PREFLIGHT_FAIL;
		snprintf(f->message, sizeof(f->message), "%s.", err);
		snprintf(f->remedy, sizeof(f->remedy), "%s",
			 r == -EPERM ? "chmod 0600 the credential file." :
				       "Enroll again: vmcrypt enroll --force with a new enrollment token.");
		return;
	}
	rm->enrolled = true;
	r = vault_client_new(conf, cred, cred_size, CHECK_CONNECT_TIMEOUT, CHECK_TOTAL_TIMEOUT, &vc);
	if (r < 0) {
		f->status = PREFLIGHT_FAIL;
		snprintf(f->message, sizeof(f->message), "Cannot set up the HTTPS client for %s: %s.", conf->server,
			 strerror(-r));
		return;
	}
	proxy = vault_client_proxy(vc);
	ca = conf->ca_file[0] ? conf->ca_file : "the system CA store";
	json_object_set_new(f->details, "caFile", json_string(conf->ca_file));
	json_object_set_new(f->details, "proxy", json_string(proxy));
	r = vault_client_goal(vc, &goal, err, sizeof(err));
	if (r < 0) {
		bool via_proxy = startswith(err, "proxy ");

		f->status = PREFLIGHT_FAIL;
		snprintf(f->message, sizeof(f->message), "%s.", err);
		json_object_set_new(f->details, "error", json_string(strerror(-r)));
		if (r == -EACCES)
			snprintf(f->remedy, sizeof(f->remedy), "The VM credential was refused (the VM was revoked, "
				 "deleted or enrolled again elsewhere): register the VM again (vmcrypt-admin vm "
				 "register) and run vmcrypt enroll --force with the new token.");
		else if (r == -EPROTO)
			snprintf(f->remedy, sizeof(f->remedy), "Set CAFile= in agent.conf to the CA bundle that "
				 "signed vmcryptd's certificate (now: %.700s), or enroll again with --ca-file.", ca);
		else if (via_proxy)
			snprintf(f->remedy, sizeof(f->remedy), "Check the proxy %s (Proxy= in agent.conf, "
				 "$https_proxy; Proxy=none goes direct).", proxy);
		else
			snprintf(f->remedy, sizeof(f->remedy), "Check that vmcryptd runs at %s and that this VM "
				 "can reach it (firewall, Server= in agent.conf, Proxy=).", conf->server);
		vault_client_free(vc);
		return;
	}
	rm->reached = true;
	rm->goal = goal;
	json_object_set_new(f->details, "vm", json_string(json_string_value(json_object_get(goal, "name")) ?: ""));
	json_object_set(f->details, "sequence", json_object_get(goal, "sequence"));
	snprintf(f->message, sizeof(f->message), "vmcryptd %s reachable%s%s, TLS verified against %.700s, credential "
		 "accepted (VM %s, goal sequence %" JSON_INTEGER_FORMAT ").", conf->server,
		 proxy[0] ? " through proxy " : "", proxy, ca,
		 json_string_value(json_object_get(goal, "name")) ?: "?",
		 json_integer_value(json_object_get(goal, "sequence")));
	vault_client_free(vc);
}

static void probe_agent_version(void *userdata, struct preflight_finding *f)
{
	struct remote *rm = userdata;
	const char *ext = json_string_value(json_object_get(rm->goal, "extension"));

	json_object_set_new(f->details, "version", json_string(vmcrypt_version));
	if (rm->reached && ext && streq(ext, "removed")) {
		f->status = PREFLIGHT_WARN;
		snprintf(f->message, sizeof(f->message), "vmcrypt %s; vmcryptd marks the extension removed for this "
			 "VM: the agent applies no settings until encryption is enabled again.", vmcrypt_version);
		snprintf(f->remedy, sizeof(f->remedy), "vmcrypt-admin vm encryption enable reinstalls it.");
		return;
	}
	/* vmcryptd's goal names no agent version to compare with: say what runs, claim nothing more. */
	snprintf(f->message, sizeof(f->message), "vmcrypt %s%s.", vmcrypt_version,
		 rm->reached ? "; vmcryptd answered its requests (it states no required agent version)" :
		 rm->enrolled ? " (not compared: the vault check failed)" : " (not compared: not enrolled)");
}

static void help(FILE *f)
{
	fprintf(f, "Usage: vmcrypt check [--volume-type OS|Data|All] [--json]\n\n"
		   "Checks every prerequisite of encrypting the VM's volumes and changes nothing.\n"
		   "One line per check: PASS/WARN/FAIL/SKIP, check id, volumes, finding, remedy.\n\n"
		   "  -t, --volume-type TYPE  which volumes the operation would touch (default All)\n"
		   "      --json              {\"checks\":[{id,status,volumes,message,remedy,details}],\"ok\":bool}\n"
		   "  -h, --help\n\n"
		   "Exit status: 0 when no check fails, %d when one does (docs/check.md).\n",
		EXIT_CHECK);
}

static void print_text(const struct preflight_report *rep)
{
	for (size_t i = 0; i < rep->n; i++) {
		const struct preflight_result *r = &rep->results[i];
		size_t k;
		json_t *v;

		printf("%-4s  %-20s  ", preflight_status_to_string(r->status), r->id);
		if (json_array_size(r->volumes) == 0)
			printf("-");
		json_array_foreach(r->volumes, k, v)
			printf("%s%s", k ? ", " : "", json_string_value(v));
		printf("  %s", r->message);
		if (r->remedy[0])
			printf("  Remedy: %s", r->remedy);
		printf("\n");
	}
}

int verb_check(int argc, char **argv)
{
	static const struct option options[] = {
		{ "volume-type", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	enum preflight_scope scope = PREFLIGHT_SCOPE_ALL;
	struct preflight_report rep = {};
	struct remote rm = {};
	const struct preflight_probes probes = {
		.vault = probe_vault,
		.agent_version = probe_agent_version,
		.userdata = &rm,
	};
	bool json = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "t:h", options, NULL)) >= 0) {
		switch (c) {
		case 't':
			if (preflight_scope_from_string(optarg, &scope) < 0) {
				log_error("Unknown volume type '%s': use OS, Data or All.", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		log_error("vmcrypt check takes no target: it checks the whole VM (use --volume-type).");
		return EXIT_USAGE;
	}

	r = preflight_run_with(scope, &probes, &rep);
	json_decref(rm.goal);
	if (r < 0) {
		log_error_errno(r, "Prerequisite checks failed to run: %m");
		return r;
	}
	if (json) {
		json_t *j = preflight_report_to_json(&rep);

		r = jansson_util_write(stdout, j, JSON_INDENT(2));
		json_decref(j);
		if (r == -ENOMEM) {
			preflight_report_done(&rep);
			log_error("Out of memory.");
			return EXIT_ERROR;
		}
	} else
		print_text(&rep);
	r = rep.ok ? EXIT_OK : EXIT_CHECK;
	preflight_report_done(&rep);
	return r;
}
