/* vmcrypt-admin header ...: the LUKS2 header backups VMs keep in vmcryptd (metadata, and the
 * bytes into a new 0600 file for a restore; every get is audited). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "admin.h"
#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/exit-status.h"

static void print_list(json_t *resp, const void *userdata)
{
	json_t *h;
	size_t i;

	printf("%-40s %-7s %-10s %-20s %s\n", "NAME", "VERSION", "SIZE", "CREATED", "SHA256");
	json_array_foreach(json_object_get(resp, "headers"), i, h)
		printf("%-40s %-7lld %-10lld %-20s %s\n", admin_str(h, "name"),
		       (long long)json_integer_value(json_object_get(h, "version")),
		       (long long)json_integer_value(json_object_get(h, "size")), admin_str(h, "created"),
		       admin_str(h, "sha256"));
}

static int header_list(struct admin *a, int argc, char **argv)
{
	return admin_list_by_vm(a, argc, argv, "header", "/v1/admin/headers", print_list);
}

struct get_args {
	const char *vm, *volume, *output;
	uint64_t version; /* 0: the newest */
	bool force;
};

static int parse_get(struct admin *a, int argc, char **argv, struct get_args *g)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "volume", required_argument, NULL, 'o' },
		{ "version", required_argument, NULL, 'n' },
		{ "output", required_argument, NULL, 'f' },
		{ "force", no_argument, NULL, 'F' },
		{},
	};
	int c;

	while ((c = admin_getopt(a, argc, argv, opts)) >= 0) {
		if (c == 'v')
			g->vm = optarg;
		else if (c == 'o')
			g->volume = optarg;
		else if (c == 'f')
			g->output = optarg;
		else if (c == 'F')
			g->force = true;
		else if (c == 'n') {
			if (parse_u64(optarg, &g->version) < 0 || g->version < 1 || g->version > UINT32_MAX) {
				log_error("--version must be a version number from `vmcrypt-admin header list`");
				return EXIT_USAGE;
			}
		} else
			return EXIT_USAGE;
	}
	if (optind != argc || !g->vm || !api_name_valid(g->vm) || !g->volume || !api_name_valid(g->volume) ||
	    !g->output || !g->output[0] || streq(g->output, "-")) {
		log_error("Usage: vmcrypt-admin header get --vm NAME --volume VOLUME [--version N] --output FILE "
			  "[--force] (names from `header list`; FILE is new unless --force)");
		return EXIT_USAGE;
	}
	return 0;
}

static void print_got(const struct get_args *g, const struct header_backup *h, bool json)
{
	char hex[DIGEST_SHA256_HEX_SIZE];

	digest_sha256_to_hex(h->sha256, hex);
	if (json) {
		json_t *j = json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "vm", g->vm, "volume", g->volume, "version",
				      (json_int_t)h->version, "size", (json_int_t)h->size, "sha256", hex, "created",
				      h->created, "output", g->output);

		if (j)
			admin_print_json(j);
		json_decref(j);
		return;
	}
	printf("Wrote %s: the header backup %s/%s version %llu, %zu bytes, SHA-256 %s (checked), created %s.\n",
	       g->output, g->vm, g->volume, (unsigned long long)h->version, h->size, hex, h->created);
	fprintf(stderr,
		"To restore a detached header, copy it from a rescue system to the file the VM opens (the OS\n"
		"volume: /boot/vmcrypt/os.luks); for a header on the device:\n"
		"  cryptsetup luksHeaderRestore DEVICE --header-backup-file %s\n",
		g->output);
}

static int header_get(struct admin *a, int argc, char **argv)
{
	struct header_backup h = {};
	struct get_args g = {};
	char path[256];
	struct stat st;
	int r;

	r = parse_get(a, argc, argv, &g);
	if (r)
		return r;
	/* Said before the transfer (and its audit event); the write below checks again, in one step
	 * with the rename. */
	if (!g.force && lstat(g.output, &st) == 0) {
		log_error("%s exists; add --force to replace it.", g.output);
		return EXIT_EXISTS;
	}
	snprintf(path, sizeof(path), "/v1/admin/headers/%s/%s", g.vm, g.volume);
	if (g.version)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "?version=%llu",
			 (unsigned long long)g.version);
	r = admin_fetch_header(a, path, &h);
	if (r)
		return r;
	/* The bytes matched the SHA-256 vmcryptd recorded at upload (admin_fetch_header). */
	r = g.force ? write_file_atomic(g.output, h.data, h.size, 0600) : write_file_new(g.output, h.data, h.size, 0600);
	if (r < 0) {
		log_error_errno(r, "Could not write %s: %s", g.output,
				r == -EEXIST ? "it exists (add --force to replace it)" : strerror(-r));
		header_backup_done(&h);
		return r == -EEXIST ? EXIT_EXISTS : EXIT_ERROR;
	}
	print_got(&g, &h, a->json);
	header_backup_done(&h);
	return EXIT_OK;
}

static const struct verb header_verbs[] = {
	{ "list", header_list, "[--vm NAME]: every stored version of each volume's header backup" },
	{ "get", header_get,
	  "--vm NAME --volume VOLUME [--version N] --output FILE [--force]: the bytes into a new 0600 file, "
	  "checked against their SHA-256 (audited)" },
	{},
};

int verb_header(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "header", header_verbs, argc - 1, argv + 1);
}
