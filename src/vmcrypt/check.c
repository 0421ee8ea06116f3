/* vmcrypt check: runs every prerequisite check, prints one line per check, changes nothing. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/vm/preflight.h"
#include "vmcrypt.h"

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

	r = preflight_run(scope, &rep);
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
