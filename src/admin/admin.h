/* vmcrypt-admin internals: the verb table type, the connection to vmcryptd, output helpers. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "shared/api/header-backup.h"
#include "shared/api/http-client.h"

struct admin {
	const char *server;
	const char *token_file;
	const char *ca_file;
	bool json;
	struct http_client *client; /* made on first use */
};

struct verb {
	const char *name;
	int (*fn)(struct admin *a, int argc, char **argv);
	const char *help;
};

/* Finds argv[0] in verbs and runs it; prints the group's help on none or an unknown one.
 * Returns an exit status. */
int admin_dispatch(struct admin *a, const char *group, const struct verb *verbs, int argc, char **argv);

/* Sends a request (takes over the reference to body); on a 2xx status returns 0 with *ret the parsed body. On anything else prints
 * the server's message (or the transport error) once and returns an exit status > 0:
 * EXIT_STATE for 409 (a lifecycle rule refused), EXIT_REMOTE otherwise. */
int admin_call(struct admin *a, const char *method, const char *path, json_t *body, json_t **ret);

/* GET of a header backup (raw bytes, checked against their SHA-256) into *ret; on failure prints
 * why once and returns an exit status > 0, as admin_call() does. */
int admin_fetch_header(struct admin *a, const char *path, struct header_backup *ret);

/* What a verb prints from vmcryptd's answer without --json; userdata is the verb's own. */
typedef void (*admin_print_fn)(json_t *resp, const void *userdata);

/* The shape of nearly every verb: admin_call(), then the answer printed as JSON (--json) or by
 * print, then freed. Returns EXIT_OK or admin_call()'s exit status. */
int admin_call_print(struct admin *a, const char *method, const char *path, json_t *body, admin_print_fn print,
		     const void *userdata);

/* "vmcrypt-admin GROUP list [--vm NAME]": GET route (with ?vm=NAME), printed by print. Returns
 * an exit status. */
int admin_list_by_vm(struct admin *a, int argc, char **argv, const char *group, const char *route,
		     admin_print_fn print);

/* Prints JSON (for --json). */
void admin_print_json(json_t *j);

/* Parses the options shared by every verb: --json, plus the given long options. Returns the
 * getopt code or -1 at the end, like getopt_long; sets a->json itself. */
struct option;
int admin_getopt(struct admin *a, int argc, char **argv, const struct option *extra);

/* The one positional NAME (an api_name_valid() name) of "vmcrypt-admin GROUP VERB NAME", after
 * the shared options. Returns 0, or EXIT_USAGE after "Usage: vmcrypt-admin GROUP VERB NAME" and
 * hint. */
int admin_name_arg(struct admin *a, int argc, char **argv, const char *group, const char *hint, const char **ret);

/* String field or "", for text output: hidden characters (controls, bidi overrides, invalid
 * UTF-8) come back escaped, the field in j is replaced by the escaped text. */
const char *admin_str(json_t *j, const char *key);
/* "12 s ago", "3m05s ago" for an age in seconds */
char *admin_age(long long seconds, char *buf, size_t len);

int verb_vm(struct admin *a, int argc, char **argv);
int verb_key(struct admin *a, int argc, char **argv);
int verb_secret(struct admin *a, int argc, char **argv);
int verb_audit(struct admin *a, int argc, char **argv);
int verb_header(struct admin *a, int argc, char **argv);
int verb_token(struct admin *a, int argc, char **argv);
