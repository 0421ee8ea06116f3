/* Unit tests for src/shared/api.c: routing, body validation, names, drift, times. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shared/api/api.h"

static int parse(const char *method, const char *path, const char *body, struct api_request *req, char *err)
{
	return api_request_parse(method, path, body, strlen(body), req, err, 512);
}

static void test_routes(void **state)
{
	struct api_request req;
	char err[512];
	size_t n;
	const struct api_route_def *routes = api_routes(&n);

	assert_int_equal(n, _API_ROUTE_MAX);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(routes[i].route, (enum api_route)i);

	assert_int_equal(parse("GET", "/v1/vm/goal", "", &req, err), 0);
	assert_int_equal(req.def->route, API_VM_GOAL);
	assert_int_equal(req.def->auth, API_AUTH_VM);
	/* One spelling per path: a trailing slash, an empty or a dot segment is no route. */
	assert_int_equal(parse("GET", "/v1/vm/goal/", "", &req, err), -ENOENT);
	assert_non_null(strstr(err, "trailing slash"));
	assert_int_equal(parse("GET", "/v1//vm/goal", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/./vm/goal", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/vm/../vm/goal", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/vm/secrets/..", "", &req, err), -ENOENT);
	assert_int_equal(parse("DELETE", "/v1/admin/vms/vmC/", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/admin/secrets/vm-1/data.0", "", &req, err), 0);
	assert_int_equal(req.def->route, API_ADMIN_SECRET_SHOW);
	assert_string_equal(req.vm, "vm-1");
	assert_string_equal(req.volume, "data.0");
	/* Metadata for a reader; ?reveal=true raises it to the admin. */
	assert_int_equal(req.def->auth, API_AUTH_READER);
	assert_string_equal(req.def->raise_arg, "reveal");
	assert_int_equal(req.def->raise_auth, API_AUTH_ADMIN);
	assert_int_equal(parse("POST", "/v1/admin/tokens/alice/revoke", "", &req, err), 0);
	assert_int_equal(req.def->route, API_ADMIN_TOKEN_REVOKE);
	assert_string_equal(req.token, "alice");
	assert_int_equal(req.def->auth, API_AUTH_ADMIN);
	assert_int_equal(parse("POST", "/v1/admin/tokens/-x/revoke", "", &req, err), -EINVAL);
	assert_int_equal(parse("POST", "/v1/admin/keys/k_1/rotate", "", &req, err), 0);
	assert_string_equal(req.key, "k_1");
	assert_int_equal(parse("DELETE", "/v1/admin/vms/a", "", &req, err), 0);
	assert_int_equal(req.def->route, API_ADMIN_VM_DELETE);

	assert_int_equal(parse("GET", "/v1/nothing", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/vm/goal//", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/vm/secrets/", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/v1/vm/secrets/a/b", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "", "", &req, err), -ENOENT);
	assert_int_equal(parse("PATCH", "/v1/vm/goal", "", &req, err), -ENOTSUP);
	assert_int_equal(parse("GET", "/v1/vm/secrets/-x", "", &req, err), -EINVAL);
	assert_non_null(strstr(err, "name in the path"));
	char longname[200];
	snprintf(longname, sizeof(longname), "/v1/vm/secrets/%0100d", 7);
	assert_int_equal(parse("GET", longname, "", &req, err), -EINVAL);
}

static void test_roles(void **state)
{
	struct api_request req;
	char err[512];
	size_t n;
	const struct api_route_def *routes = api_routes(&n);

	/* One string table each, both ways. */
	for (enum api_role r = 0; r < _API_ROLE_MAX; r++)
		assert_int_equal(api_role_from_string(api_role_to_string(r)), r);
	for (enum api_auth a = 0; a < _API_AUTH_MAX; a++)
		assert_int_equal(api_auth_from_string(api_auth_to_string(a)), a);
	assert_int_equal(api_role_from_string("Admin"), _API_ROLE_INVALID);
	assert_int_equal(api_role_from_string(NULL), _API_ROLE_INVALID);
	assert_null(api_role_to_string(_API_ROLE_MAX));
	assert_int_equal(api_auth_role(API_AUTH_METRICS), API_ROLE_METRICS);
	assert_int_equal(api_auth_role(API_AUTH_READER), API_ROLE_READER);
	assert_int_equal(api_auth_role(API_AUTH_OPERATOR), API_ROLE_OPERATOR);
	assert_int_equal(api_auth_role(API_AUTH_ADMIN), API_ROLE_ADMIN);
	assert_int_equal(api_auth_role(API_AUTH_VM), _API_ROLE_INVALID);
	assert_int_equal(api_auth_role(API_AUTH_ENROLL), _API_ROLE_INVALID);
	assert_true(api_flag_true("true") && api_flag_true("1"));
	assert_false(api_flag_true(NULL) || api_flag_true("yes") || api_flag_true("TRUE") || api_flag_true(""));

	/* Every route says who may call it; /v1/vm and /v1/enroll never take a role, /v1/admin
	 * and /metrics always do; only reads are open to readers, the metrics role scrapes
	 * /metrics and nothing else, and every raise asks for more. */
	for (size_t i = 0; i < n; i++) {
		const struct api_route_def *d = &routes[i];
		bool role_path = strncmp(d->pattern, "/v1/admin/", 10) == 0 || d->route == API_METRICS;

		assert_non_null(api_auth_to_string(d->auth));
		assert_true(role_path == (api_auth_role(d->auth) >= 0));
		if (d->auth == API_AUTH_READER || d->auth == API_AUTH_METRICS)
			assert_string_equal(d->method, "GET");
		assert_true((d->auth == API_AUTH_METRICS) == (d->route == API_METRICS));
		if (d->raise_arg)
			assert_true(d->raise_auth > d->auth && api_auth_role(d->raise_auth) >= 0);
	}

	/* The token routes: create and revoke for the admin, list for readers. */
	assert_int_equal(parse("POST", "/v1/admin/tokens", "{\"name\":\"alice\",\"role\":\"reader\"}", &req, err), 0);
	assert_int_equal(req.def->route, API_ADMIN_TOKEN_CREATE);
	assert_int_equal(req.def->auth, API_AUTH_ADMIN);
	api_request_done(&req);
	assert_int_equal(parse("POST", "/v1/admin/tokens", "{\"name\":\"alice\",\"role\":\"root\"}", &req, err),
			 -EINVAL);
	assert_non_null(strstr(err, "reader, operator or admin"));
	assert_int_equal(parse("POST", "/v1/admin/tokens", "{\"name\":\"alice\"}", &req, err), -EINVAL);
	assert_int_equal(parse("GET", "/v1/admin/tokens", "", &req, err), 0);
	assert_int_equal(req.def->auth, API_AUTH_READER);
	assert_int_equal(parse("POST", "/v1/admin/tokens", "{\"name\":\"prom\",\"role\":\"metrics\"}", &req, err), 0);
	api_request_done(&req);

	/* /metrics: one spelling, GET only, the least role. */
	assert_int_equal(parse("GET", "/metrics", "", &req, err), 0);
	assert_int_equal(req.def->route, API_METRICS);
	assert_int_equal(req.def->auth, API_AUTH_METRICS);
	api_request_done(&req);
	assert_int_equal(parse("POST", "/metrics", "", &req, err), -ENOTSUP);
	assert_int_equal(parse("GET", "/metrics/", "", &req, err), -ENOENT);
	assert_int_equal(parse("GET", "/metrics/x", "", &req, err), -ENOENT);
}

static int target(const char *raw, size_t n, char *err)
{
	return api_target_check(raw, n, err, 512);
}

static void test_target(void **state)
{
	char err[512];

	assert_int_equal(target("/v1/vm/goal", 11, err), 0);
	assert_int_equal(target("/v1/admin/audit?since=1d&vm=a", 29, err), 0);
	assert_int_equal(target("/v1/vm/secrets/a%2Db", 20, err), 0);
	/* An encoded NUL anywhere, path or query: vmC%00/ignored must not act on vmC. */
	assert_int_equal(target("/v1/admin/vms/vmC%00/ignored", 28, err), -EINVAL);
	assert_non_null(strstr(err, "%00"));
	assert_int_equal(target("/v1/vm/secrets/os%00evil", 24, err), -EINVAL);
	assert_int_equal(target("/v1/admin/audit?since=1d%00x", 28, err), -EINVAL);
	assert_int_equal(target("/v1/admin/audit?%00=1", 21, err), -EINVAL);
	/* A raw NUL, as a fuzzer or another front end could hand it over. */
	assert_int_equal(target("/v1/admin/vms/vmC\0/ignored", 26, err), -EINVAL);
	assert_non_null(strstr(err, "NUL"));
	assert_int_equal(target("/v1/vm/goal\t", 12, err), -EINVAL);
	assert_int_equal(target("/v1/vm/go al", 12, err), -EINVAL);
	assert_int_equal(target("/v1/vm/\xc3\xa9", 9, err), -EINVAL);
	/* %25 is a percent sign: %2500 decodes to the text "%00", not to a NUL. */
	assert_int_equal(target("/v1/vm/secrets/a?x=%2500", 24, err), 0);
	/* An encoded slash is no separator: 404 in the path, plain data in the query. */
	assert_int_equal(target("/v1/admin%2fvms", 15, err), -ENOENT);
	assert_non_null(strstr(err, "%2F"));
	assert_int_equal(target("/v1/admin%2Fvms", 15, err), -ENOENT);
	assert_int_equal(target("/v1/vm/secrets/..%2Fetc", 23, err), -ENOENT);
	assert_int_equal(target("/v1/admin/audit?vm=a%2fb", 24, err), 0);
	assert_int_equal(target("/v1/vm/goal%2", 13, err), 0);
	assert_int_equal(target("", 0, err), -ENOENT);
	assert_int_equal(target("*", 1, err), -ENOENT);
	assert_int_equal(target("https://x/v1/vm/goal", 20, err), -ENOENT);
}

static void test_bodies(void **state)
{
	static const struct {
		const char *method, *path, *body;
		int r;
		const char *msg;
	} cases[] = {
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"YQ==\"}", 0, NULL },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"YQ==\",\"fileName\":\"x.bek\"}", 0, NULL },
		{ "PUT", "/v1/vm/secrets/os", "", -EINVAL, "body missing" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":1}", -EINVAL, "must be a string" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"a\",\"x\":1}", -EINVAL, "unknown field \"x\"" },
		{ "PUT", "/v1/vm/secrets/os", "{}", -EINVAL, "missing field \"value\"" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"a\",\"value\":\"b\"}", -EINVAL, "duplicate" },
		{ "PUT", "/v1/vm/secrets/os", "[]", -EINVAL, "JSON object" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"a\"", -EINVAL, "malformed JSON" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"a\"} trailing", -EINVAL, "malformed JSON" },
		{ "GET", "/v1/vm/goal", "{}", -EINVAL, "no request body" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"NotMounted\"}", 0, NULL },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"encrypted\",\"DataVolumesEncrypted\":\"NotMounted\"}", -EINVAL, "one of" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\",\"SequenceVersion\":-1}", -EINVAL, "between 0" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\",\"Volumes\":[{\"name\":\"a\",\"state\":\"Encrypted\",\"progress\":101}]}", -EINVAL, "Volumes[0]" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\",\"Volumes\":[7]}", -EINVAL, "Volumes[0] must be a JSON object" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\",\"ProgressMessage\":\"a\\nb\"}", -EINVAL, "printable" },
		{ "POST", "/v1/admin/vms", "{\"name\":\"ok-name.1\"}", 0, NULL },
		{ "POST", "/v1/admin/vms", "{\"name\":\".hidden\"}", -EINVAL, "field \"name\" must be" },
		{ "POST", "/v1/admin/vms/a/encryption/enable", "{\"volumeType\":\"all\",\"encryptFormatAll\":true}", 0, NULL },
		{ "POST", "/v1/admin/vms/a/encryption/enable", "{\"volumeType\":\"Some\"}", -EINVAL, "OS, Data or All" },
		{ "POST", "/v1/admin/keys", "{\"name\":\"k\",\"size\":99999}", -EINVAL, "between 0 and 8192" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\u0000b\"}", -EINVAL, "malformed JSON" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"h\u00e9te-01\"}", 0, NULL },
		/* Bidi overrides and isolates, zero-width and C1 characters, raw or escaped. */
		{ "POST", "/v1/enroll", "{\"hostname\":\"web\xe2\x80\xaegpj.exe\"}", -EINVAL, "format characters" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"web\\u202egpj\"}", -EINVAL, "field \"hostname\" must be printable" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\u2066b\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\u200bb\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\ufeffb\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\u0085b\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\xc2\x9b" "b\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\u007fb\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\u2028b\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\\udb40\\udc01b\"}", -EINVAL, "hostname" },
		{ "POST", "/v1/enroll", "{\"hostname\":\"a\xff\"}", -EINVAL, "malformed JSON" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"YQ==\",\"fileName\":\"x\\u202ekeb.txt\"}", -EINVAL, "field \"fileName\" must be printable" },
		{ "PUT", "/v1/vm/secrets/os", "{\"value\":\"YQ==\",\"fileName\":\"\\u009bx.bek\"}", -EINVAL, "fileName" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\",\"Volumes\":[{\"name\":\"a\\u202eb\",\"state\":\"Encrypted\"}]}", -EINVAL, "Volumes[0]" },
		{ "POST", "/v1/vm/status", "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\",\"ProgressMessage\":\"50%\\u200f\"}", -EINVAL, "ProgressMessage" },
		{ "POST", "/v1/admin/vms", "{\"na\\u202eme\":\"a\"}", -EINVAL, "unknown field \"(unprintable)\"" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct api_request req;
		char err[512] = "";
		int r = parse(cases[i].method, cases[i].path, cases[i].body, &req, err);

		if (r != cases[i].r || (cases[i].msg && !strstr(err, cases[i].msg)))
			fail_msg("case %zu (%s): got %d \"%s\"", i, cases[i].body, r, err);
		api_request_done(&req);
	}
}

static void test_limits(void **state)
{
	struct api_request req;
	char err[512], *big, *deep;
	size_t n;

	big = malloc(API_BODY_MAX + 2);
	memset(big, ' ', API_BODY_MAX + 1);
	big[API_BODY_MAX + 1] = 0;
	assert_int_equal(api_request_parse("POST", "/v1/vm/status", big, API_BODY_MAX + 1, &req, err, sizeof(err)),
			 -EFBIG);
	free(big);

	/* 16 levels pass the depth check, 17 do not, strings with brackets do not count. */
	deep = calloc(1, 4096);
	n = (size_t)sprintf(deep, "{\"Volumes\":");
	for (int i = 0; i < 15; i++)
		deep[n++] = '[';
	for (int i = 0; i < 15; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	assert_int_equal(parse("POST", "/v1/vm/status", deep, &req, err), -EINVAL);
	assert_null(strstr(err, "deeper"));
	memmove(deep + 11, deep + 10, strlen(deep + 10) + 1);
	deep[11] = '[';
	char *close = strrchr(deep, '}');
	memmove(close + 1, close, strlen(close) + 1);
	*close = ']';
	assert_int_equal(parse("POST", "/v1/vm/status", deep, &req, err), -EINVAL);
	assert_non_null(strstr(err, "deeper than 16"));
	free(deep);
	assert_int_equal(parse("POST", "/v1/vm/status",
			       "{\"OsVolumeEncrypted\":\"Encrypted\",\"DataVolumesEncrypted\":\"Encrypted\","
			       "\"ProgressMessage\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[\"}",
			       &req, err),
			 0);
	api_request_done(&req);
}

static void test_body_nul(void **state)
{
	static const char with_nul[] = "{\"value\":\"YQ==\"}\0junk";
	static const char in_string[] = "{\"value\":\"YQ\0==\"}";
	struct api_request req;
	char err[512];

	/* Everything after a NUL would have been taken for the end of the input. */
	assert_int_equal(api_request_parse("PUT", "/v1/vm/secrets/os", with_nul, sizeof(with_nul) - 1, &req, err,
					   sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "NUL byte at offset 16"));
	assert_int_equal(api_request_parse("PUT", "/v1/vm/secrets/os", in_string, sizeof(in_string) - 1, &req, err,
					   sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "NUL byte at offset 12"));
	assert_int_equal(api_request_parse("PUT", "/v1/vm/secrets/os", with_nul, 16, &req, err, sizeof(err)), 0);
	api_request_done(&req);
}

static void test_header_routes(void **state)
{
	static const char luks[] = "LUKS\xba\xbe\0\x02\0 binary, NULs and all";
	struct api_request req;
	char err[512], *big;

	/* The VM writes and reads its own; the admin lists and reads any VM's. */
	assert_int_equal(api_request_route("PUT", "/v1/vm/headers/os", &req, err, sizeof(err)), 0);
	assert_int_equal(req.def->route, API_VM_HEADER_PUT);
	assert_int_equal(req.def->auth, API_AUTH_VM);
	assert_int_equal(req.def->raw_max, API_HEADER_MAX);
	assert_string_equal(req.volume, "os");
	assert_int_equal(api_request_route("GET", "/v1/vm/headers/os", &req, err, sizeof(err)), 0);
	assert_int_equal(req.def->route, API_VM_HEADER_GET);
	assert_int_equal(req.def->raw_reply_max, API_HEADER_MAX);
	assert_int_equal(req.def->raw_max, 0);
	assert_int_equal(api_request_route("GET", "/v1/admin/headers", &req, err, sizeof(err)), 0);
	assert_int_equal(req.def->route, API_ADMIN_HEADER_LIST);
	assert_int_equal(req.def->raw_reply_max, 0);
	assert_int_equal(api_request_route("GET", "/v1/admin/headers/vm1/data.0", &req, err, sizeof(err)), 0);
	assert_int_equal(req.def->route, API_ADMIN_HEADER_GET);
	assert_int_equal(req.def->auth, API_AUTH_ADMIN);
	assert_string_equal(req.vm, "vm1");
	assert_string_equal(req.volume, "data.0");
	/* No route lets an admin write one, or a VM name another VM's. */
	assert_int_equal(api_request_route("PUT", "/v1/admin/headers/vm1/os", &req, err, sizeof(err)), -ENOTSUP);
	assert_int_equal(api_request_route("DELETE", "/v1/vm/headers/os", &req, err, sizeof(err)), -ENOTSUP);
	assert_int_equal(api_request_route("GET", "/v1/vm/headers/vm2/os", &req, err, sizeof(err)), -ENOENT);
	/* The route comes before any body: a bad name is -EINVAL with the route known. */
	assert_int_equal(api_request_route("PUT", "/v1/vm/headers/-x", &req, err, sizeof(err)), -EINVAL);
	assert_non_null(req.def);
	assert_int_equal(req.def->route, API_VM_HEADER_PUT);

	/* Raw bytes, never parsed: NULs and all, up to the cap. */
	assert_int_equal(api_request_parse("PUT", "/v1/vm/headers/os", luks, sizeof(luks) - 1, &req, err, sizeof(err)),
			 0);
	assert_null(req.body);
	api_request_done(&req);
	assert_int_equal(api_request_parse("PUT", "/v1/vm/headers/os", "", 0, &req, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "body missing"));
	big = calloc(1, (size_t)API_HEADER_MAX + 1);
	assert_non_null(big);
	assert_int_equal(api_request_parse("PUT", "/v1/vm/headers/os", big, API_HEADER_MAX, &req, err, sizeof(err)), 0);
	assert_int_equal(api_request_parse("PUT", "/v1/vm/headers/os", big, (size_t)API_HEADER_MAX + 1, &req, err,
					   sizeof(err)),
			 -EFBIG);
	assert_non_null(strstr(err, "larger than 33554432 bytes"));
	/* Only the header route takes more than API_BODY_MAX. */
	assert_int_equal(api_request_parse("PUT", "/v1/vm/secrets/os", big, API_BODY_MAX + 1, &req, err, sizeof(err)),
			 -EFBIG);
	free(big);
	/* The reads take no body. */
	assert_int_equal(parse("GET", "/v1/vm/headers/os", "x", &req, err), -EINVAL);
	assert_non_null(strstr(err, "no request body"));
}

static void test_names_and_types(void **state)
{
	unsigned m;

	assert_true(api_name_valid("a"));
	assert_true(api_name_valid("web-01.example_x"));
	assert_false(api_name_valid(""));
	assert_false(api_name_valid("-a"));
	assert_false(api_name_valid("a/b"));
	assert_false(api_name_valid("a b"));
	assert_false(api_name_valid("0123456789012345678901234567890123456789012345678901234567890123456789"));
	assert_int_equal(api_volume_type_from_string("os", &m), 0);
	assert_int_equal(m, API_VOLUME_OS);
	assert_int_equal(api_volume_type_from_string("All", &m), 0);
	assert_int_equal(m, API_VOLUME_ALL);
	assert_int_equal(api_volume_type_from_string("none", &m), -EINVAL);
	assert_string_equal(api_volume_type_to_string(API_VOLUME_DATA), "Data");
	assert_string_equal(api_volume_type_to_string(0), "None");
	assert_true(api_status_valid("VMRestartPending"));
	assert_false(api_status_valid("Done"));
}

static void test_drift(void **state)
{
	struct api_drift_input in = {
		.enabled = API_VOLUME_DATA, .sequence = 2, .os_state = "NotEncrypted", .data_state = "Encrypted",
		.report_sequence = 2, .report_time = 1000, .now = 1010, .stale_after = 60,
	};
	char buf[512];

	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_NONE);
	assert_string_equal(buf, "none");
	in.data_state = "NotEncrypted";
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_DRIFT);
	assert_non_null(strstr(buf, "enabled for Data"));
	assert_non_null(strstr(buf, "DataVolumesEncrypted=NotEncrypted"));
	assert_non_null(strstr(buf, "1970-01-01T00:16:40Z"));
	in.report_sequence = 1;
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_PENDING);
	in.data_state = "NotMounted";
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_NONE);
	in.enabled = API_VOLUME_ALL;
	in.os_state = "VMRestartPending";
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_NONE);
	in.enabled = 0;
	in.report_sequence = 2;
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_DRIFT);
	in.os_state = "NotEncrypted";
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_NONE);
	in.now = 2000;
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_STALE);
	assert_non_null(strstr(buf, "1000 s ago"));
	in.os_state = NULL;
	assert_int_equal(api_drift_compute(&in, buf, sizeof(buf)), API_DRIFT_NEVER);
	assert_string_equal(api_drift_to_string(API_DRIFT_STALE), "stale");
}

static void test_times(void **state)
{
	char buf[32];
	int64_t t;

	assert_string_equal(api_format_time(1795946400, buf, sizeof(buf)), "2026-11-29T10:00:00Z");
	assert_int_equal(api_parse_time("2026-11-29T10:00:00Z", 0, &t), 0);
	assert_int_equal(t, 1795946400);
	assert_int_equal(api_parse_time("30m", 10000, &t), 0);
	assert_int_equal(t, 10000 - 1800);
	assert_int_equal(api_parse_time("2d", 200000, &t), 0);
	assert_int_equal(t, 200000 - 172800);
	assert_int_equal(api_parse_time("yesterday", 0, &t), -EINVAL);
	assert_int_equal(api_parse_time("5", 0, &t), -EINVAL);
	assert_int_equal(api_parse_time("5mm", 0, &t), -EINVAL);
	assert_int_equal(api_parse_time("-5m", 0, &t), -EINVAL);
	assert_int_equal(api_parse_time("2026-11-29T10:00:00", 0, &t), -EINVAL);
}

/* A LUKS2 binary header of hdr_size, version and magic as given, the rest zeros, in a buffer of
 * size bytes. */
static uint8_t *luks2_header(size_t size, const char *magic, unsigned version, uint64_t hdr_size, uint64_t offset)
{
	uint8_t *h = calloc(1, size);

	assert_non_null(h);
	memcpy(h, magic, 6);
	h[6] = (uint8_t)(version >> 8);
	h[7] = (uint8_t)version;
	for (int i = 0; i < 8; i++) {
		h[8 + i] = (uint8_t)(hdr_size >> (56 - 8 * i));
		h[256 + i] = (uint8_t)(offset >> (56 - 8 * i));
	}
	return h;
}

static void test_header_check(void **state)
{
	static const struct {
		size_t size;
		const char *magic;
		unsigned version;
		uint64_t hdr_size, offset;
		int want;
		const char *says;
	} cases[] = {
		/* cryptsetup's default: 16 KiB header area, 16 MiB with the keyslots */
		{ 16 << 20, "LUKS\xba\xbe", 2, 16384, 0, 0, NULL },
		{ 4 << 20, "LUKS\xba\xbe", 2, 4194304, 0, 0, NULL },
		{ 16384, "LUKS\xba\xbe", 2, 16384, 0, 0, NULL },
		{ 16383, "LUKS\xba\xbe", 2, 16384, 0, -EINVAL, "cut short" },
		{ 4095, "LUKS\xba\xbe", 2, 16384, 0, -EINVAL, "fewer than its 4096-byte binary header" },
		{ 1 << 20, "LUKS\xba\xbf", 2, 16384, 0, -EINVAL, "LUKS magic" },
		{ 1 << 20, "SKUL\xba\xbe", 2, 16384, 16384, -EINVAL, "secondary header" },
		{ 1 << 20, "LUKS\xba\xbe", 1, 16384, 0, -EINVAL, "LUKS1 headers" },
		{ 1 << 20, "LUKS\xba\xbe", 3, 16384, 0, -EINVAL, "LUKS version 3" },
		{ 1 << 20, "LUKS\xba\xbe", 2, 8192, 0, -EINVAL, "header size 8192" },
		{ 16 << 20, "LUKS\xba\xbe", 2, 8388608, 0, -EINVAL, "power of two from 16 KiB to 4 MiB" },
		{ 1 << 20, "LUKS\xba\xbe", 2, 16385, 0, -EINVAL, "header size 16385" },
		{ 1 << 20, "LUKS\xba\xbe", 2, UINT64_MAX, 0, -EINVAL, "header size" },
		{ 1 << 20, "LUKS\xba\xbe", 2, 16384, 16384, -EINVAL, "offset 16384" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *h = luks2_header(cases[i].size, cases[i].magic, cases[i].version, cases[i].hdr_size,
					  cases[i].offset);

		err[0] = 0;
		assert_int_equal(api_header_check(h, cases[i].size, err, sizeof(err)), cases[i].want);
		if (cases[i].says && !strstr(err, cases[i].says))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].says);
		free(h);
	}
	/* Random bytes, the way the tests sent them before. */
	{
		uint8_t junk[8192];
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 131 + 7);
		assert_int_equal(api_header_check(junk, sizeof(junk), err, sizeof(err)), -EINVAL);
		assert_int_equal(api_header_check("", 0, err, sizeof(err)), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes), cmocka_unit_test(test_target),          cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_body_nul), cmocka_unit_test(test_limits), cmocka_unit_test(test_header_routes),
		cmocka_unit_test(test_header_check), cmocka_unit_test(test_roles),
		cmocka_unit_test(test_names_and_types), cmocka_unit_test(test_drift), cmocka_unit_test(test_times),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
