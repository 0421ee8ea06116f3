/* vmcrypt-admin secret ... and audit: volume secrets (values only with --reveal, audited) and
 * the audit trail. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/b64.h"
#include "shared/exit-status.h"
#include "shared/secret.h"

static void print_list(json_t *resp, const void *userdata)
{
	json_t *s, *tags;
	size_t i;

	printf("%-40s %-7s %-12s %-28s %s\n", "NAME", "VERSION", "CONTENT", "KEK", "CREATED");
	json_array_foreach(json_object_get(resp, "secrets"), i, s) {
		tags = json_object_get(s, "tags");
		printf("%-40s %-7lld %-12s %-28s %s\n", admin_str(s, "name"),
		       (long long)json_integer_value(json_object_get(s, "version")), admin_str(s, "contentType"),
		       admin_str(tags, "DiskEncryptionKeyEncryptionKeyURL")[0]
			       ? admin_str(tags, "DiskEncryptionKeyEncryptionKeyURL")
			       : "-",
		       admin_str(s, "created"));
	}
}

static int secret_list(struct admin *a, int argc, char **argv)
{
	return admin_list_by_vm(a, argc, argv, "secret", "/v1/admin/secrets", print_list);
}

/* A recovery passphrase is typed by a person (at the boot prompt, `cryptsetup open`): when the
 * value is printable text, say it as text too, not only as base64. */
static void print_text(const char *b64)
{
	_cleanup_secret_ uint8_t *v = NULL;
	size_t n = 0;

	if (!b64 || b64_decode_secret(b64, strlen(b64), &v, &n) < 0 || n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e)
			return;
	printf("Passphrase  : %.*s\n", (int)n, (const char *)v);
}

/* userdata: a bool, whether the value was asked for. */
static void print_secret(json_t *resp, const void *userdata)
{
	const bool *reveal = userdata;
	json_t *tags, *v;
	const char *k;

	printf("Name        : %s\n", admin_str(resp, "name"));
	printf("Version     : %lld\n", (long long)json_integer_value(json_object_get(resp, "version")));
	printf("ContentType : %s\n", admin_str(resp, "contentType"));
	printf("Created     : %s\n", admin_str(resp, "created"));
	tags = json_object_get(resp, "tags");
	json_object_foreach(tags, k, v) {
		char key[256];

		printf("Tag         : %s = %s\n", string_escape_hidden(k, key, sizeof(key)), admin_str(tags, k));
	}
	printf("Value       : %s\n", *reveal ? admin_str(resp, "value") : "(hidden; --reveal shows it and is audited)");
	if (*reveal)
		print_text(admin_str(resp, "value"));
}

static int secret_show(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = { { "reveal", no_argument, NULL, 'r' }, {} };
	bool reveal = false;
	char vm[API_NAME_MAX + 1], path[256];
	const char *name, *slash;
	int c;

	while ((c = admin_getopt(a, argc, argv, opts)) >= 0) {
		if (c != 'r')
			return EXIT_USAGE;
		reveal = true;
	}
	if (optind != argc - 1 || !(slash = strchr(argv[optind], '/')) ||
	    (size_t)(slash - argv[optind]) > API_NAME_MAX) {
		log_error("Usage: vmcrypt-admin secret show VM/VOLUME [--reveal] (names from `secret list`)");
		return EXIT_USAGE;
	}
	name = argv[optind];
	snprintf(vm, sizeof(vm), "%.*s", (int)(slash - name), name);
	if (!api_name_valid(vm) || !api_name_valid(slash + 1)) {
		log_error("Usage: vmcrypt-admin secret show VM/VOLUME [--reveal]");
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/admin/secrets/%s/%s%s", vm, slash + 1, reveal ? "?reveal=true" : "");
	return admin_call_print(a, "GET", path, NULL, print_secret, &reveal);
}

static const struct verb secret_verbs[] = {
	{ "list", secret_list, "[--vm NAME]: newest version of each volume secret, no values" },
	{ "show", secret_show, "VM/VOLUME [--reveal]: metadata; --reveal adds the value (audited)" },
	{},
};

int verb_secret(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "secret", secret_verbs, argc - 1, argv + 1);
}

/* Percent-encodes a query value (times contain ':'). */
static void query_escape(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (; *in && n + 4 < len; in++) {
		unsigned char ch = (unsigned char)*in;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		    ch == '.' || ch == '_')
			out[n++] = (char)ch;
		else
			n += (size_t)snprintf(out + n, len - n, "%%%02X", ch);
	}
	out[n] = 0;
}

static void print_audit(json_t *resp, const void *userdata)
{
	json_t *e;
	size_t i;

	printf("%-20s %-16s %-15s %-20s %-36s %s\n", "TIME", "ACTOR", "SOURCE", "ACTION", "OBJECT", "RESULT");
	json_array_foreach(json_object_get(resp, "events"), i, e)
		printf("%-20s %-16s %-15s %-20s %-36s %s\n", admin_str(e, "time"), admin_str(e, "actor"),
		       admin_str(e, "source")[0] ? admin_str(e, "source") : "-", admin_str(e, "action"),
		       admin_str(e, "object"), admin_str(e, "result"));
}

int verb_audit(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "since", required_argument, NULL, 's' },
		{ "result", required_argument, NULL, 'r' },
		{},
	};
	const char *vm = NULL, *since = NULL, *result = NULL;
	char path[256], esc[128];
	int c;

	while ((c = admin_getopt(a, argc, argv, opts)) >= 0) {
		if (c == 'v')
			vm = optarg;
		else if (c == 's')
			since = optarg;
		else if (c == 'r')
			result = optarg;
		else
			return EXIT_USAGE;
	}
	if (optind != argc || (vm && !api_name_valid(vm)) || (since && strlen(since) > 40) ||
	    (result && api_audit_result_from_string(result) < 0)) {
		log_error("Usage: vmcrypt-admin audit [--vm NAME] [--since TIME|AGE] [--result ok|denied] "
			  "(TIME 2026-11-29T10:00:00Z, AGE 30m, 2h, 1d; denied: any result but ok)");
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/admin/audit");
	if (vm)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "?vm=%s", vm);
	if (since) {
		query_escape(since, esc, sizeof(esc));
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "%csince=%s", strchr(path, '?') ? '&' : '?', esc);
	}
	if (result)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "%cresult=%s", strchr(path, '?') ? '&' : '?',
			 api_audit_result_to_string(api_audit_result_from_string(result)));
	return admin_call_print(a, "GET", path, NULL, print_audit, NULL);
}
