/* vmcrypt-admin token ...: named tokens with a role (metrics, reader, operator, admin), for the people
 * and tools that should not hold the admin token. vmcryptd answers a new token's text once; it
 * goes to stdout only, so `token create NAME --role R > FILE` keeps it out of any log. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/exit-status.h"

static void print_created(json_t *resp, const void *userdata)
{
	fprintf(stderr,
		"Token '%s' with the %s role created. Its text is shown only now (vmcryptd keeps a hash of it);\n"
		"keep it in a file of mode 0600 and give it with --token-file (never on a command line):\n",
		admin_str(resp, "name"), admin_str(resp, "role"));
	printf("%s\n", admin_str(resp, "token"));
}

static int token_create(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = { { "role", required_argument, NULL, 'r' }, {} };
	const char *role = NULL;
	int c;

	while ((c = admin_getopt(a, argc, argv, opts)) >= 0) {
		if (c != 'r')
			return EXIT_USAGE;
		role = optarg;
	}
	if (optind != argc - 1 || !api_name_valid(argv[optind]) || !role) {
		log_error("Usage: vmcrypt-admin token create NAME --role metrics|reader|operator|admin");
		return EXIT_USAGE;
	}
	if (api_role_from_string(role) < 0) {
		log_error("--role must be metrics, reader, operator or admin, not '%s'", role);
		return EXIT_USAGE;
	}
	return admin_call_print(a, "POST", "/v1/admin/tokens", json_pack("{s:s,s:s}", "name", argv[optind], "role", role),
				print_created, NULL);
}

static const char *time_or(json_t *t, const char *key, const char *none)
{
	return json_is_string(json_object_get(t, key)) ? admin_str(t, key) : none;
}

static void print_list(json_t *resp, const void *userdata)
{
	json_t *t;
	size_t i;

	printf("%-24s %-8s %-20s %-20s %s\n", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED");
	json_array_foreach(json_object_get(resp, "tokens"), i, t)
		printf("%-24s %-8s %-20s %-20s %s\n", admin_str(t, "name"), admin_str(t, "role"), admin_str(t, "created"),
		       time_or(t, "lastUsed", "never"), time_or(t, "revoked", "-"));
}

static int token_list(struct admin *a, int argc, char **argv)
{
	while (admin_getopt(a, argc, argv, NULL) >= 0)
		return EXIT_USAGE;
	if (optind != argc) {
		log_error("Usage: vmcrypt-admin token list");
		return EXIT_USAGE;
	}
	return admin_call_print(a, "GET", "/v1/admin/tokens", NULL, print_list, NULL);
}

static void print_revoked(json_t *resp, const void *userdata)
{
	printf("Token '%s' revoked at %s: it now fails like a wrong token.\n", admin_str(resp, "name"),
	       admin_str(resp, "revoked"));
}

static int token_revoke(struct admin *a, int argc, char **argv)
{
	const char *name;
	char path[160];
	int r;

	r = admin_name_arg(a, argc, argv, "token", "", &name);
	if (r)
		return r;
	snprintf(path, sizeof(path), "/v1/admin/tokens/%s/revoke", name);
	return admin_call_print(a, "POST", path, NULL, print_revoked, NULL);
}

static const struct verb token_verbs[] = {
	{ "create", token_create, "NAME --role metrics|reader|operator|admin: prints the token once (admin only)" },
	{ "list", token_list, "names, roles, created, last used, revoked; never a token" },
	{ "revoke", token_revoke, "NAME: the token stops working at once (admin only)" },
	{},
};

int verb_token(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "token", token_verbs, argc - 1, argv + 1);
}
