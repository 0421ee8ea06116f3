/* vmcrypt-admin vm ...: the VM registry, encryption settings and the extension. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/exit-status.h"

/* One positional NAME after the options. */
static int one_name(struct admin *a, int argc, char **argv, const char **ret)
{
	return admin_name_arg(a, argc, argv, "vm", " (NAME: letters, digits, '.', '_', '-')", ret);
}

/* userdata: the VM's name. */
static void print_registered(json_t *resp, const void *userdata)
{
	fprintf(stderr, "VM '%s' registered (id %s). One-time enrollment token, shown only now; give it to\n"
			"the VM's agent through a file (never a command line):\n",
		(const char *)userdata, admin_str(resp, "id"));
	printf("%s\n", admin_str(resp, "enrollmentToken"));
}

static int vm_register(struct admin *a, int argc, char **argv)
{
	const char *name;
	int r;

	r = one_name(a, argc, argv, &name);
	if (r)
		return r;
	return admin_call_print(a, "POST", "/v1/admin/vms", json_pack("{s:s}", "name", name), print_registered, name);
}

static void print_vm_row(json_t *vm)
{
	json_t *t = json_object_get(vm, "lastReportTime");
	char when[32] = "never";

	if (json_is_integer(t))
		api_format_time(json_integer_value(t), when, sizeof(when));
	printf("%-24s %-10s %-20s %-9s %s\n", admin_str(vm, "name"), admin_str(vm, "state"),
	       admin_str(vm, "hostname")[0] ? admin_str(vm, "hostname") : "-", admin_str(vm, "extension"), when);
}

static void print_list(json_t *resp, const void *userdata)
{
	json_t *vm;
	size_t i;

	printf("%-24s %-10s %-20s %-9s %s\n", "NAME", "STATE", "HOSTNAME", "EXTENSION", "LAST REPORT");
	json_array_foreach(json_object_get(resp, "vms"), i, vm)
		print_vm_row(vm);
}

static int vm_list(struct admin *a, int argc, char **argv)
{
	while (admin_getopt(a, argc, argv, NULL) >= 0)
		return EXIT_USAGE;
	return admin_call_print(a, "GET", "/v1/admin/vms", NULL, print_list, NULL);
}

static void print_vm(json_t *resp, const void *userdata)
{
	json_t *st = json_object_get(resp, "settings");

	printf("Name                : %s\n", admin_str(resp, "name"));
	printf("Id                  : %s\n", admin_str(resp, "id"));
	printf("State               : %s\n", admin_str(resp, "state"));
	printf("Hostname            : %s\n", admin_str(resp, "hostname"));
	printf("AgentVersion        : %s\n", admin_str(resp, "agentVersion"));
	printf("Extension           : %s\n", admin_str(resp, "extension"));
	printf("Registered          : %s\n", admin_str(resp, "registered"));
	printf("EncryptionOperation : %s\n", admin_str(st, "EncryptionOperation"));
	printf("VolumeType          : %s\n", admin_str(st, "VolumeType"));
	printf("SequenceVersion     : %lld\n", (long long)json_integer_value(json_object_get(st, "SequenceVersion")));
}

static int vm_show(struct admin *a, int argc, char **argv)
{
	char path[128];
	const char *name;
	int r;

	r = one_name(a, argc, argv, &name);
	if (r)
		return r;
	snprintf(path, sizeof(path), "/v1/admin/vms/%s", name);
	return admin_call_print(a, "GET", path, NULL, print_vm, NULL);
}

struct vm_done {
	const char *name, *done;
};

static void print_done(json_t *resp, const void *userdata)
{
	const struct vm_done *d = userdata;

	printf("VM '%s' %s.\n", d->name, d->done);
}

static int vm_simple(struct admin *a, int argc, char **argv, const char *method, const char *suffix,
		     const char *done)
{
	struct vm_done d = { .done = done };
	char path[160];
	int r;

	r = one_name(a, argc, argv, &d.name);
	if (r)
		return r;
	snprintf(path, sizeof(path), "/v1/admin/vms/%s%s", d.name, suffix);
	return admin_call_print(a, method, path, NULL, print_done, &d);
}

static int vm_revoke(struct admin *a, int argc, char **argv)
{
	return vm_simple(a, argc, argv, "POST", "/revoke", "revoked: its credential no longer works");
}

static int vm_delete(struct admin *a, int argc, char **argv)
{
	return vm_simple(a, argc, argv, "DELETE", "", "deleted, with its settings and secrets");
}

/* --- vm encryption --- */

enum { OPT_VM = 0x100, OPT_VOLUME_TYPE, OPT_KEK, OPT_KEK_ALG, OPT_FORMAT_ALL };

static const struct option encryption_options[] = {
	{ "vm", required_argument, NULL, OPT_VM },
	{ "volume-type", required_argument, NULL, OPT_VOLUME_TYPE },
	{ "kek", required_argument, NULL, OPT_KEK },
	{ "kek-algorithm", required_argument, NULL, OPT_KEK_ALG },
	{ "encrypt-format-all", no_argument, NULL, OPT_FORMAT_ALL },
	{},
};

struct encryption_args {
	const char *vm, *volume_type, *kek, *alg;
	bool format_all;
};

static int parse_encryption(struct admin *a, int argc, char **argv, struct encryption_args *e, bool settings)
{
	int c;

	while ((c = admin_getopt(a, argc, argv, encryption_options)) >= 0) {
		switch (c) {
		case OPT_VM:
			e->vm = optarg;
			break;
		case OPT_VOLUME_TYPE:
			e->volume_type = optarg;
			break;
		case OPT_KEK:
			e->kek = optarg;
			break;
		case OPT_KEK_ALG:
			e->alg = optarg;
			break;
		case OPT_FORMAT_ALL:
			e->format_all = true;
			break;
		default:
			return EXIT_USAGE;
		}
		if (!settings && c != OPT_VM) {
			log_error("vm encryption %s takes only --vm NAME", argv[0]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc || !e->vm || !api_name_valid(e->vm)) {
		log_error("vm encryption %s needs --vm NAME", argv[0]);
		return EXIT_USAGE;
	}
	if (settings) {
		unsigned m;
		if (!e->volume_type || api_volume_type_from_string(e->volume_type, &m) < 0) {
			log_error("vm encryption %s needs --volume-type OS, Data or All", argv[0]);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* userdata: the VM's name. */
static void print_settings(json_t *st, const void *userdata)
{
	const char *vm = userdata;

	printf("VM                     : %s\n", vm);
	printf("EncryptionOperation    : %s\n", admin_str(st, "EncryptionOperation"));
	printf("VolumeType             : %s\n", admin_str(st, "VolumeType"));
	printf("KeyEncryptionKeyURL    : %s\n",
	       admin_str(st, "KeyEncryptionKeyURL")[0] ? admin_str(st, "KeyEncryptionKeyURL") : "(none)");
	if (admin_str(st, "KeyEncryptionAlgorithm")[0])
		printf("KeyEncryptionAlgorithm : %s\n", admin_str(st, "KeyEncryptionAlgorithm"));
	printf("SequenceVersion        : %lld\n", (long long)json_integer_value(json_object_get(st, "SequenceVersion")));
}

static int encryption_enable(struct admin *a, int argc, char **argv)
{
	struct encryption_args e = {};
	char path[160];
	json_t *body;
	int r;

	r = parse_encryption(a, argc, argv, &e, true);
	if (r)
		return r;
	if (e.alg && !e.kek) {
		log_error("--kek-algorithm needs --kek KEY");
		return EXIT_USAGE;
	}
	body = json_pack("{s:s}", "volumeType", e.volume_type);
	if (e.kek)
		json_object_set_new(body, "kek", json_string(e.kek));
	if (e.alg)
		json_object_set_new(body, "kekAlgorithm", json_string(e.alg));
	if (e.format_all)
		json_object_set_new(body, "encryptFormatAll", json_true());
	snprintf(path, sizeof(path), "/v1/admin/vms/%s/encryption/enable", e.vm);
	return admin_call_print(a, "POST", path, body, print_settings, e.vm);
}

static int encryption_disable(struct admin *a, int argc, char **argv)
{
	struct encryption_args e = {};
	char path[160];
	int r;

	r = parse_encryption(a, argc, argv, &e, true);
	if (r)
		return r;
	if (e.kek || e.alg || e.format_all) {
		log_error("vm encryption disable takes only --vm and --volume-type");
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/admin/vms/%s/encryption/disable", e.vm);
	return admin_call_print(a, "POST", path, json_pack("{s:s}", "volumeType", e.volume_type), print_settings,
				e.vm);
}

/* " ETA 1m 20s" for the progress column. */
static const char *admin_eta(long long seconds, char *buf, size_t len)
{
	char d[32];

	snprintf(buf, len, " ETA %s", format_duration(d, sizeof(d), (uint64_t)(seconds < 0 ? 0 : seconds)));
	return buf;
}

static void print_encryption(json_t *resp, const void *userdata)
{
	char refs[1024] = "", age[64];
	json_t *s, *sec, *st;
	size_t i, n = 0;

	/* References only: secret URLs and the KEK, never a value. */
	s = json_object_get(resp, "OsVolumeEncryptionSettings");
	json_array_foreach(json_object_get(s, "secrets"), i, sec) {
		n += (size_t)snprintf(refs + n, n < sizeof(refs) ? sizeof(refs) - n : 0, "%s%s (%s)", i ? ", " : "",
				      admin_str(sec, "url"), admin_str(sec, "contentType"));
		if (n >= sizeof(refs))
			break;
	}
	if (n < sizeof(refs) && admin_str(s, "keyEncryptionKeyUrl")[0])
		snprintf(refs + n, sizeof(refs) - n, "%sKEK %s %s", n ? "; " : "", admin_str(s, "keyEncryptionKeyUrl"),
			 admin_str(s, "keyEncryptionAlgorithm"));
	st = json_object_get(resp, "settings");

	printf("OsVolumeEncrypted          : %s\n", admin_str(resp, "OsVolumeEncrypted"));
	printf("DataVolumesEncrypted       : %s\n", admin_str(resp, "DataVolumesEncrypted"));
	printf("OsVolumeEncryptionSettings : %s\n", refs[0] ? refs : "(none)");
	printf("ProgressMessage            : %s\n", admin_str(resp, "ProgressMessage"));
	if (json_is_string(json_object_get(resp, "LastReport")))
		printf("LastReport                 : %s (%s)\n", admin_str(resp, "LastReport"),
		       admin_age((long long)json_integer_value(json_object_get(resp, "LastReportAge")), age, sizeof(age)));
	else
		printf("LastReport                 : never\n");
	printf("Drift                      : %s\n", admin_str(json_object_get(resp, "Drift"), "message"));
	printf("EncryptionOperation        : %s\n", admin_str(st, "EncryptionOperation"));
	printf("VolumeType                 : %s\n", admin_str(st, "VolumeType"));
	printf("SequenceVersion            : %lld\n", (long long)json_integer_value(json_object_get(st, "SequenceVersion")));
	printf("Extension                  : %s\n",
	       json_is_false(json_object_get(st, "ExtensionInstalled")) ? "removed" : "installed");
	if (json_array_size(json_object_get(resp, "volumes")) > 0) {
		json_t *v;

		printf("\n%-16s %-6s %-22s %-26s %-9s %-16s %s\n", "VOLUME", "TYPE", "STATE", "PROGRESS",
		       "DOWNTIME", "DEVICE", "MOUNTPOINT");
		json_array_foreach(json_object_get(resp, "volumes"), i, v) {
			char progress[64] = "-", downtime[32] = "-", rate[32], eta[32];
			json_t *p = json_object_get(v, "progress"), *r = json_object_get(v, "rate"),
			       *e = json_object_get(v, "eta"), *d = json_object_get(v, "downtimeMs");

			if (json_is_integer(p))
				snprintf(progress, sizeof(progress), "%lld%%%s%s%s%s", (long long)json_integer_value(p),
					 json_is_integer(r) ? " " : "",
					 json_is_integer(r) ? format_bytes(rate, sizeof(rate), (uint64_t)json_integer_value(r)) : "",
					 json_is_integer(r) ? "/s" : "",
					 json_is_integer(e) ? admin_eta((long long)json_integer_value(e), eta, sizeof(eta)) : "");
			if (json_is_integer(d))
				snprintf(downtime, sizeof(downtime), "%.1f s", (double)json_integer_value(d) / 1000.0);
			printf("%-16s %-6s %-22s %-26s %-9s %-16s %s\n", admin_str(v, "name"),
			       admin_str(v, "volumeType")[0] ? admin_str(v, "volumeType") : "-", admin_str(v, "state"), progress,
			       downtime, admin_str(v, "device")[0] ? admin_str(v, "device") : "-",
			       admin_str(v, "mountPoint")[0] ? admin_str(v, "mountPoint") : "-");
			if (admin_str(v, "message")[0])
				printf("  %s: %s\n", admin_str(v, "name"), admin_str(v, "message"));
		}
	}
}

/* A verb that takes only --vm NAME and sends no body: /v1/admin/vms/NAME/SUFFIX; print gets the
 * VM's name as userdata. */
static int vm_option_only(struct admin *a, int argc, char **argv, const char *method, const char *suffix,
			  admin_print_fn print)
{
	struct encryption_args e = {};
	char path[160];
	int r;

	r = parse_encryption(a, argc, argv, &e, false);
	if (r)
		return r;
	snprintf(path, sizeof(path), "/v1/admin/vms/%s/%s", e.vm, suffix);
	return admin_call_print(a, method, path, NULL, print, e.vm);
}

static int encryption_show(struct admin *a, int argc, char **argv)
{
	return vm_option_only(a, argc, argv, "GET", "encryption", print_encryption);
}

static const struct verb encryption_verbs[] = {
	{ "enable", encryption_enable, "--vm NAME --volume-type OS|Data|All [--kek KEY] [--kek-algorithm ALG] [--encrypt-format-all]" },
	{ "show", encryption_show, "--vm NAME: status, references, last report, drift" },
	{ "disable", encryption_disable, "--vm NAME --volume-type OS|Data|All" },
	{},
};

static int vm_encryption(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "vm encryption", encryption_verbs, argc - 1, argv + 1);
}

/* userdata: the VM's name. */
static void print_removed(json_t *resp, const void *userdata)
{
	printf("Encryption extension of VM '%s' removed.\n", (const char *)userdata);
}

static int extension_remove(struct admin *a, int argc, char **argv)
{
	return vm_option_only(a, argc, argv, "POST", "extension/remove", print_removed);
}

static const struct verb extension_verbs[] = {
	{ "remove", extension_remove, "--vm NAME (refused while encryption is enabled or reported)" },
	{},
};

static int vm_extension(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "vm extension", extension_verbs, argc - 1, argv + 1);
}

static const struct verb vm_verbs[] = {
	{ "register", vm_register, "NAME: prints a one-time enrollment token" },
	{ "list", vm_list, "every VM" },
	{ "show", vm_show, "NAME" },
	{ "revoke", vm_revoke, "NAME: its credential stops working" },
	{ "delete", vm_delete, "NAME: with its settings and secrets (refused while encrypted)" },
	{ "encryption", vm_encryption, "enable | show | disable" },
	{ "extension", vm_extension, "remove" },
	{},
};

int verb_vm(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "vm", vm_verbs, argc - 1, argv + 1);
}
