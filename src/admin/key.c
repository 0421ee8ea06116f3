/* vmcrypt-admin key ...: key-encryption keys. Private material never leaves vmcryptd. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/exit-status.h"

static void print_key(json_t *k, bool pem)
{
	printf("Name    : %s\n", admin_str(k, "name"));
	printf("Version : %lld\n", (long long)json_integer_value(json_object_get(k, "version")));
	printf("Type    : %s %lld\n", admin_str(k, "kty"), (long long)json_integer_value(json_object_get(k, "size")));
	printf("Enabled : %s\n", json_is_true(json_object_get(k, "enabled")) ? "yes" : "no");
	printf("Created : %s\n", admin_str(k, "created"));
	printf("URL     : %s\n", admin_str(k, "url"));
	if (pem && admin_str(k, "publicKey")[0])
		printf("%s", admin_str(k, "publicKey"));
}

static void print_created(json_t *k, const void *userdata)
{
	print_key(k, false);
}

static int key_create(struct admin *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kty", required_argument, NULL, 'k' },
		{ "size", required_argument, NULL, 's' },
		{},
	};
	const char *kty = NULL;
	uint64_t size = 0;
	json_t *body;
	int c;

	while ((c = admin_getopt(a, argc, argv, opts)) >= 0) {
		if (c == 'k')
			kty = optarg;
		else if (c == 's') {
			if (parse_u64(optarg, &size) < 0 || size > 8192) {
				log_error("--size must be a number of bits (RSA 2048, 3072, 4096; AES 256)");
				return EXIT_USAGE;
			}
		} else
			return EXIT_USAGE;
	}
	if (optind != argc - 1 || !api_name_valid(argv[optind])) {
		log_error("Usage: vmcrypt-admin key create NAME [--kty RSA|AES] [--size N]");
		return EXIT_USAGE;
	}
	body = json_pack("{s:s}", "name", argv[optind]);
	if (kty)
		json_object_set_new(body, "kty", json_string(kty));
	if (size)
		json_object_set_new(body, "size", json_integer((json_int_t)size));
	return admin_call_print(a, "POST", "/v1/admin/keys", body, print_created, NULL);
}

static void print_list(json_t *resp, const void *userdata)
{
	json_t *k;
	size_t i;

	printf("%-24s %-7s %-4s %-5s %-7s %s\n", "NAME", "VERSION", "KTY", "SIZE", "ENABLED", "CREATED");
	json_array_foreach(json_object_get(resp, "keys"), i, k)
		printf("%-24s %-7lld %-4s %-5lld %-7s %s\n", admin_str(k, "name"),
		       (long long)json_integer_value(json_object_get(k, "version")), admin_str(k, "kty"),
		       (long long)json_integer_value(json_object_get(k, "size")),
		       json_is_true(json_object_get(k, "enabled")) ? "yes" : "no", admin_str(k, "created"));
}

static int key_list(struct admin *a, int argc, char **argv)
{
	while (admin_getopt(a, argc, argv, NULL) >= 0)
		return EXIT_USAGE;
	return admin_call_print(a, "GET", "/v1/admin/keys", NULL, print_list, NULL);
}

struct key_one {
	const char *name, *suffix;
};

static void print_one(json_t *resp, const void *userdata)
{
	const struct key_one *o = userdata;
	const char *name = o->name, *suffix = o->suffix;

	if (streq(suffix, "/disable"))
		printf("Key '%s' disabled: no wrap or unwrap with any of its versions.\n", name);
	else if (streq(suffix, "/enable"))
		printf("Key '%s' enabled: every version wraps and unwraps again.\n", name);
	else
		print_key(resp, streq(suffix, ""));
	if (json_object_get(resp, "rewrapped")) {
		printf("Re-wrapped %lld secrets with the new version",
		       (long long)json_integer_value(json_object_get(resp, "rewrapped")));
		if (json_integer_value(json_object_get(resp, "rewrapFailed")) > 0)
			printf("; %lld FAILED (see the vmcryptd log; they still unwrap with their old version)",
			       (long long)json_integer_value(json_object_get(resp, "rewrapFailed")));
		printf(".\n");
	}
}

static int key_one(struct admin *a, int argc, char **argv, const char *method, const char *suffix)
{
	struct key_one o = { .suffix = suffix };
	char path[160];
	int r;

	r = admin_name_arg(a, argc, argv, "key", "", &o.name);
	if (r)
		return r;
	snprintf(path, sizeof(path), "/v1/admin/keys/%s%s", o.name, suffix);
	return admin_call_print(a, method, path, NULL, print_one, &o);
}

static int key_show(struct admin *a, int argc, char **argv)
{
	return key_one(a, argc, argv, "GET", "");
}

static int key_rotate(struct admin *a, int argc, char **argv)
{
	return key_one(a, argc, argv, "POST", "/rotate");
}

static int key_disable(struct admin *a, int argc, char **argv)
{
	return key_one(a, argc, argv, "POST", "/disable");
}

static int key_enable(struct admin *a, int argc, char **argv)
{
	return key_one(a, argc, argv, "POST", "/enable");
}

static const struct verb key_verbs[] = {
	{ "create", key_create, "NAME [--kty RSA|AES] [--size N] (default RSA 2048)" },
	{ "list", key_list, "every key, newest version" },
	{ "show", key_show, "NAME: newest version and its public key" },
	{ "rotate", key_rotate, "NAME: a new version; every secret is re-wrapped with it" },
	{ "disable", key_disable, "NAME: every version stops wrapping and unwrapping" },
	{ "enable", key_enable, "NAME: a disabled key wraps and unwraps again" },
	{},
};

int verb_key(struct admin *a, int argc, char **argv)
{
	return admin_dispatch(a, "key", key_verbs, argc - 1, argv + 1);
}
