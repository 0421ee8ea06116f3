/* vmcrypt-admin: the operator's command line for vmcryptd, shaped like `az vm encryption`.
 * This file holds the top-level verb table, the configuration and the connection. */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/exit-status.h"
#include "shared/jansson-util.h"
#include "shared/secret.h"

#define DEFAULT_SERVER "https://127.0.0.1:8443"

static const struct verb verbs[] = {
	{ "vm", verb_vm, "register, list, show, revoke, delete VMs; vm encryption ...; vm extension remove" },
	{ "key", verb_key, "create, list, show, rotate, disable, enable key-encryption keys" },
	{ "secret", verb_secret, "list and show volume secrets (show --reveal is audited)" },
	{ "header", verb_header, "list and get the LUKS2 header backups VMs store (get is audited)" },
	{ "audit", verb_audit, "the audit trail [--vm NAME] [--since TIME] [--result ok|denied]" },
	{ "token", verb_token, "create, list, revoke named tokens with a role (metrics, reader, operator, admin)" },
	{},
};

static void help(void)
{
	printf("Usage: vmcrypt-admin [--server URL] [--token-file FILE] [--ca-file FILE] [--config FILE] [--json] COMMAND ...\n\n"
	       "The operator's command line for vmcryptd.\n\n"
	       "Commands:\n"
	       "  vm register NAME | list | show NAME | revoke NAME | delete NAME\n"
	       "  vm encryption enable --vm NAME --volume-type OS|Data|All [--kek KEY] [--kek-algorithm ALG] [--encrypt-format-all]\n"
	       "  vm encryption show --vm NAME\n"
	       "  vm encryption disable --vm NAME --volume-type OS|Data|All\n"
	       "  vm extension remove --vm NAME\n"
	       "  key create NAME [--kty RSA|AES] [--size N] | list | show NAME | rotate NAME | disable NAME | enable NAME\n"
	       "  secret list [--vm NAME] | show VM/VOLUME [--reveal]\n"
	       "  header list [--vm NAME] | get --vm NAME --volume VOLUME [--version N] --output FILE [--force]\n"
	       "  audit [--vm NAME] [--since TIME] [--result ok|denied]\n"
	       "  token create NAME --role metrics|reader|operator|admin | list | revoke NAME\n\n"
	       "Defaults come from --config, $VMCRYPT_ADMIN_CONFIG, ~/.config/vmcrypt/admin.conf or\n"
	       "/etc/vmcrypt/admin.conf (first found): lines \"server = URL\", \"token-file = FILE\",\n"
	       "\"ca-file = FILE\". The token (the admin token, or a named token from `token create`) is\n"
	       "read from a file only, never from the command line.\n");
}

int admin_dispatch(struct admin *a, const char *group, const struct verb *table, int argc, char **argv)
{
	if (argc < 1 || streq(argv[0], "--help") || streq(argv[0], "-h")) {
		printf("Usage: vmcrypt-admin %s COMMAND\n", group);
		for (const struct verb *v = table; v->name; v++)
			printf("  %-12s %s\n", v->name, v->help);
		return argc < 1 ? EXIT_USAGE : EXIT_OK;
	}
	for (const struct verb *v = table; v->name; v++)
		if (streq(v->name, argv[0])) {
			optind = 0; /* each verb parses its own options, argv[0] being its name */
			return v->fn(a, argc, argv);
		}
	log_error("Unknown command '%s %s'; see vmcrypt-admin %s --help", group, argv[0], group);
	return EXIT_USAGE;
}

int admin_getopt(struct admin *a, int argc, char **argv, const struct option *extra)
{
	struct option all[16];
	size_t n = 0;
	int c;

	for (; extra && extra[n].name && n < ELEMENTSOF(all) - 2; n++)
		all[n] = extra[n];
	all[n++] = (struct option){ "json", no_argument, NULL, 'j' };
	all[n] = (struct option){};
	for (;;) {
		c = getopt_long(argc, argv, "", all, NULL);
		if (c != 'j')
			return c;
		a->json = true;
	}
}

const char *admin_str(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	const char *s = json_string_value(v);

	if (!s)
		return "";
	/* Names from an old store or a hostile VM may hold controls or bidi overrides: the
	 * terminal gets them escaped. The response is only printed after, so escape in place and
	 * keep the text alive as long as the caller's response. */
	if (!string_is_safe_text(s)) {
		size_t len = 4 * strlen(s) + 16;
		_cleanup_free_ char *esc = malloc(len);

		if (!esc || json_string_set(v, string_escape_hidden(s, esc, len)) < 0)
			return "(unprintable)";
		s = json_string_value(v);
	}
	return s;
}

char *admin_age(long long seconds, char *buf, size_t len)
{
	char d[32];

	format_duration(d, sizeof(d), seconds < 0 ? 0 : (uint64_t)seconds);
	/* format_duration gives "12s"; the status view reads "12 s ago". */
	if (seconds < 60)
		snprintf(buf, len, "%lld s ago", seconds < 0 ? 0 : seconds);
	else
		snprintf(buf, len, "%s ago", d);
	return buf;
}

void admin_print_json(json_t *j)
{
	(void)jansson_util_write(stdout, j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

static int connect_client(struct admin *a)
{
	_cleanup_secret_ char *token = NULL;
	bool world = false;
	size_t size;
	int r;

	if (a->client)
		return 0;
	if (!a->token_file) {
		log_error("No token: give --token-file FILE (vmcryptd wrote the admin token to DIR/admin.token on "
			  "first start; `vmcrypt-admin token create` makes named ones) or set token-file in the "
			  "configuration.");
		return EXIT_USAGE;
	}
	r = secret_read_file(a->token_file, (void **)&token, &size, &world);
	if (r < 0) {
		log_error_errno(r, "Could not read the token file %s: %s", a->token_file, secret_read_strerror(r));
		return EXIT_KEY;
	}
	if (world)
		log_warning("Token file %s is readable by group or others; chmod 600 it.", a->token_file);
	{
		/* Files end in a newline or not; the token is the first line. */
		_cleanup_secret_ char *line = secret_alloc(size + 1);
		if (!line)
			return EXIT_ERROR;
		memcpy(line, token, size);
		line[strcspn(line, "\r\n \t")] = 0;
		r = http_client_new(a->server, a->ca_file, line, &a->client);
	}
	if (r == -EINVAL) {
		log_error("--server must be an https:// URL, not '%s'", a->server);
		return EXIT_USAGE;
	}
	if (r < 0) {
		log_error_errno(r, "Could not set up the HTTPS client: %m");
		return EXIT_ERROR;
	}
	return 0;
}

/* What an exchange that failed on the way says, once. Returns the exit status. */
static int unreachable(struct admin *a, int error, const char *err)
{
	log_error("Could not reach vmcryptd at %s: %s%s", a->server, err,
		  error == -EPROTO ? " (check --ca-file: vmcryptd's certificate is DIR/tls.crt)" : "");
	return EXIT_REMOTE;
}

/* What vmcryptd said when it refused, once; takes over resp. Returns the exit status. */
static int refused(long status, json_t *resp)
{
	const char *msg = json_string_value(json_object_get(json_object_get(resp, "error"), "message"));

	log_error("vmcryptd refused (HTTP %ld): %s", status, msg ? msg : "(no message)");
	json_decref(resp);
	return status == 409 ? EXIT_STATE : EXIT_REMOTE;
}

int admin_call(struct admin *a, const char *method, const char *path, json_t *body, json_t **ret)
{
	char err[512] = "";
	json_t *resp = NULL;
	long status = 0;
	int r;

	r = connect_client(a);
	if (r > 0) {
		json_decref(body);
		return r;
	}
	r = http_client_request(a->client, method, path, body, &status, &resp, err, sizeof(err));
	json_decref(body);
	if (r < 0)
		return unreachable(a, r, err);
	if (status < 200 || status >= 300)
		return refused(status, resp);
	*ret = resp ? resp : json_object();
	return 0;
}

int admin_fetch_header(struct admin *a, const char *path, struct header_backup *ret)
{
	char err[512] = "";
	json_t *error = NULL;
	long status = 0;
	int r;

	r = connect_client(a);
	if (r > 0)
		return r;
	r = header_backup_get(a->client, path, &status, &error, ret, err, sizeof(err));
	if (r == -EBADMSG) {
		log_error("vmcryptd's answer to GET %s does not check out: %s; nothing was written.", path, err);
		return EXIT_REMOTE;
	}
	if (r < 0)
		return unreachable(a, r, err);
	if (status < 200 || status >= 300)
		return refused(status, error);
	return 0;
}

int admin_name_arg(struct admin *a, int argc, char **argv, const char *group, const char *hint, const char **ret)
{
	while (admin_getopt(a, argc, argv, NULL) >= 0)
		return EXIT_USAGE;
	if (optind != argc - 1 || !api_name_valid(argv[optind])) {
		log_error("Usage: vmcrypt-admin %s %s NAME%s", group, argv[0], hint);
		return EXIT_USAGE;
	}
	*ret = argv[optind];
	return 0;
}

int admin_call_print(struct admin *a, const char *method, const char *path, json_t *body, admin_print_fn print,
		     const void *userdata)
{
	_cleanup_(jansson_util_decrefp) json_t *resp = NULL;
	int r;

	r = admin_call(a, method, path, body, &resp);
	if (r)
		return r;
	if (a->json)
		admin_print_json(resp);
	else
		print(resp, userdata);
	return EXIT_OK;
}

int admin_list_by_vm(struct admin *a, int argc, char **argv, const char *group, const char *route,
		     admin_print_fn print)
{
	static const struct option opts[] = { { "vm", required_argument, NULL, 'v' }, {} };
	const char *vm = NULL;
	char path[128];
	int c;

	while ((c = admin_getopt(a, argc, argv, opts)) >= 0) {
		if (c != 'v')
			return EXIT_USAGE;
		vm = optarg;
	}
	if (optind != argc || (vm && !api_name_valid(vm))) {
		log_error("Usage: vmcrypt-admin %s list [--vm NAME]", group);
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "%s%s%s", route, vm ? "?vm=" : "", vm ? vm : "");
	return admin_call_print(a, "GET", path, NULL, print, NULL);
}

/* Reads "key = value" lines; unknown keys are an error, so a typo does not go unnoticed. */
static int load_config(struct admin *a, const char *path, bool must_exist, char **ret_text)
{
	_cleanup_free_ char *text = NULL;
	char *line, *save = NULL;
	int r, n = 0;

	r = read_full_file(path, 64 * 1024, &text, NULL);
	if (r == -ENOENT && !must_exist)
		return 0;
	if (r < 0) {
		log_error_errno(r, "Could not read %s: %m", path);
		return EXIT_USAGE;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq, *k, *v, *e;

		n++;
		line += strspn(line, " \t");
		if (!*line || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			log_error("%s:%d: expected \"key = value\"", path, n);
			return EXIT_USAGE;
		}
		*eq = 0;
		k = line;
		v = eq + 1 + strspn(eq + 1, " \t");
		for (e = k + strlen(k); e > k && (e[-1] == ' ' || e[-1] == '\t'); e--)
			e[-1] = 0;
		for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'); e--)
			e[-1] = 0;
		if (streq(k, "server") && !a->server)
			a->server = v;
		else if (streq(k, "token-file") && !a->token_file)
			a->token_file = v;
		else if (streq(k, "ca-file") && !a->ca_file)
			a->ca_file = v;
		else if (!streq(k, "server") && !streq(k, "token-file") && !streq(k, "ca-file")) {
			log_error("%s:%d: unknown key '%s' (known: server, token-file, ca-file)", path, n, k);
			return EXIT_USAGE;
		}
	}
	*ret_text = TAKE_PTR(text); /* the values point into it */
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "server", required_argument, NULL, 's' },
		{ "token-file", required_argument, NULL, 't' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "config", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{},
	};
	struct admin a = {};
	_cleanup_free_ char *config_text = NULL;
	_cleanup_free_ char *user_config = NULL;
	const char *config = NULL;
	int c, r;

	secret_setup_json_allocator();
	/* "+": stop at the command, so its options stay for it. */
	while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
		switch (c) {
		case 's':
			a.server = optarg;
			break;
		case 't':
			a.token_file = optarg;
			break;
		case 'c':
			a.ca_file = optarg;
			break;
		case 'f':
			config = optarg;
			break;
		case 'j':
			a.json = true;
			break;
		case 'h':
			help();
			return EXIT_OK;
		case 'V':
			printf("vmcrypt-admin %s\n", VMCRYPT_VERSION);
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (!config)
		config = getenv("VMCRYPT_ADMIN_CONFIG");
	if (config) {
		r = load_config(&a, config, true, &config_text);
	} else {
		const char *home = getenv("HOME");
		r = 0;
		if (home && asprintf(&user_config, "%s/.config/vmcrypt/admin.conf", home) >= 0)
			r = load_config(&a, user_config, false, &config_text);
		if (r == 0)
			r = load_config(&a, "/etc/vmcrypt/admin.conf", false, &config_text);
	}
	if (r > 1)
		return r;
	if (!a.server)
		a.server = DEFAULT_SERVER;
	if (optind >= argc) {
		help();
		return EXIT_USAGE;
	}

	argc -= optind;
	argv += optind;
	r = admin_dispatch(&a, "", verbs, argc, argv);
	http_client_free(a.client);
	return r;
}
