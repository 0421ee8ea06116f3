/* Unit tests for src/token-plugin/token-ref.c: the vmcrypt LUKS2 token's JSON as the plugin's
 * validate, dump and open read it; good tokens, the conversion state token convert.c writes, and
 * every way a token can be refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "token-plugin/token-ref.h"

#define GOOD "{\"type\":\"vmcrypt\",\"keyslots\":[\"0\"],\"server\":\"https://10.0.2.100:8443\",\"vm\":\"vm1\",\"volume\":\"data\",\"version\":1}"

static void test_good(void **state)
{
	struct token_ref t;
	char err[256] = "";

	assert_int_equal(token_ref_parse(GOOD, &t, err, sizeof(err)), 0);
	assert_string_equal(t.server, "https://10.0.2.100:8443");
	assert_string_equal(t.vm, "vm1");
	assert_string_equal(t.volume, "data");
	assert_int_equal(t.version, 1);
	/* ret may be NULL (validate). */
	assert_int_equal(token_ref_parse(GOOD, NULL, err, sizeof(err)), 0);
}

static void test_good_variants(void **state)
{
	static const char *const good[] = {
		/* Another key order, white space, a host name, no port, a trailing slash. */
		("{ \"version\": 4294967295, \"volume\": \"srv.2\", \"vm\": \"db-1_a\", \"server\": \"https://vault.example.com/\",\n"
		 "  \"keyslots\": [\"1\", \"31\"], \"type\": \"vmcrypt\" }"),
		"{\"type\":\"vmcrypt\",\"keyslots\":[\"0\"],\"server\":\"https://[::1]:8443\",\"vm\":\"v\",\"volume\":\"d\",\"version\":2}",
		"{\"type\":\"vmcrypt\",\"keyslots\":[\"7\"],\"server\":\"https://127.0.0.1\",\"vm\":\"A\",\"volume\":\"0\",\"version\":1}",
	};
	struct token_ref t;
	char err[256] = "";

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (token_ref_parse(good[i], &t, err, sizeof(err)) != 0)
			fail_msg("good token %zu refused: %s", i, err);
	}
	assert_int_equal(token_ref_parse(good[0], &t, err, sizeof(err)), 0);
	assert_int_equal(t.version, 4294967295u);
	assert_string_equal(t.server, "https://vault.example.com/");
}

/* The token `vmcrypt encrypt` keeps during a conversion (src/shared/luks/convert.c set_token()):
 * the plugin must accept it, or crypt_token_json_set() fails and no conversion can start on a
 * machine where the plugin is installed. */
static void test_conversion_state(void **state)
{
	static const char conv[] = "{\"type\":\"vmcrypt\",\"keyslots\":[],\"version\":1,\"operation\":\"encrypt\","
				   "\"started\":1764633600,\"fs_type\":\"ext4\",\"fs_size\":104857600,\"data_shift\":16777216}";
	struct token_ref t = { .version = 77 };
	char err[256] = "";

	assert_int_equal(token_ref_parse(conv, &t, err, sizeof(err)), TOKEN_REF_CONVERSION);
	assert_int_equal(t.version, 77); /* not filled */
	assert_int_equal(token_ref_parse("{\"type\":\"vmcrypt\",\"keyslots\":[\"0\"],\"operation\":\"encrypt\"}", NULL, err,
					 sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no keyslots"));
	assert_int_equal(token_ref_parse("{\"type\":\"vmcrypt\",\"keyslots\":[],\"operation\":\"encrypt\",\"server\":\"https://a\"}",
					 NULL, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(token_ref_parse("{\"type\":\"vmcrypt\",\"keyslots\":[],\"operation\":1}", NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(token_ref_parse("{\"type\":\"vmcrypt\",\"keyslots\":[],\"operation\":\"encrypt\",\"started\":\"1\"}", NULL,
					 err, sizeof(err)),
			 -EINVAL);
}

struct bad {
	const char *json;
	const char *reason; /* a piece of the message */
};

#define T(rest) "{\"type\":\"vmcrypt\",\"keyslots\":[\"0\"]," rest "}"
#define SRV "\"server\":\"https://10.0.2.100:8443\""
#define NAMES "\"vm\":\"vm1\",\"volume\":\"data\""

static void test_bad(void **state)
{
	static const struct bad bad[] = {
		{ "", "does not parse" },
		{ "[]", "not an object" },
		{ "{\"type\":\"vmcrypt\"", "does not parse" },
		{ "{\"type\":\"luks2-keyring\",\"keyslots\":[\"0\"]," SRV "," NAMES ",\"version\":1}", "\"type\"" },
		{ "{\"keyslots\":[\"0\"]," SRV "," NAMES ",\"version\":1}", "\"type\"" },
		{ "{\"type\":\"vmcrypt\"," SRV "," NAMES ",\"version\":1}", "\"keyslots\"" },
		{ "{\"type\":\"vmcrypt\",\"keyslots\":\"0\"," SRV "," NAMES ",\"version\":1}", "\"keyslots\"" },
		{ "{\"type\":\"vmcrypt\",\"keyslots\":[]," SRV "," NAMES ",\"version\":1}", "empty" },
		{ "{\"type\":\"vmcrypt\",\"keyslots\":[0]," SRV "," NAMES ",\"version\":1}", "keyslot number" },
		{ "{\"type\":\"vmcrypt\",\"keyslots\":[\"32\"]," SRV "," NAMES ",\"version\":1}", "keyslot number" },
		{ "{\"type\":\"vmcrypt\",\"keyslots\":[\"01\"]," SRV "," NAMES ",\"version\":1}", "keyslot number" },
		{ "{\"type\":\"vmcrypt\",\"keyslots\":[\"-1\"]," SRV "," NAMES ",\"version\":1}", "keyslot number" },
		/* Unknown keys are refused, not ignored. */
		{ T(SRV "," NAMES ",\"version\":1,\"extra\":true"), "unknown key" },
		{ T(SRV "," NAMES ",\"version\":1,\"key\":\"c2VjcmV0\""), "unknown key" },
		/* Duplicate keys: which one counts would be a guess. */
		{ T(SRV "," NAMES ",\"version\":1,\"volume\":\"other\""), "does not parse" },
		/* server */
		{ T(NAMES ",\"version\":1"), "\"server\" is missing" },
		{ T("\"server\":1," NAMES ",\"version\":1"), "\"server\" is missing" },
		{ T("\"server\":\"http://10.0.2.100:8443\"," NAMES ",\"version\":1"), "https" },
		{ T("\"server\":\"HTTPS://10.0.2.100\"," NAMES ",\"version\":1"), "https" },
		{ T("\"server\":\"10.0.2.100:8443\"," NAMES ",\"version\":1"), "https" },
		{ T("\"server\":\"https://\"," NAMES ",\"version\":1"), "server" },
		{ T("\"server\":\"https://u:p@10.0.2.100\"," NAMES ",\"version\":1"), "user name" },
		{ T("\"server\":\"https://10.0.2.100/v1\"," NAMES ",\"version\":1"), "path" },
		{ T("\"server\":\"https://10.0.2.100/?a=b\"," NAMES ",\"version\":1"), "query" },
		{ T("\"server\":\"https://10.0.2.100#x\"," NAMES ",\"version\":1"), "query or fragment" },
		{ T("\"server\":\"https://10.0.2.100 \"," NAMES ",\"version\":1"), "space" },
		{ T("\"server\":\"https://10.0.2.100\\n\"," NAMES ",\"version\":1"), "control" },
		{ T("\"server\":\"https://v\\u00e4ult\"," NAMES ",\"version\":1"), "non-ASCII" },
		{ T("\"server\":\"https://10.0.2.100:99999\"," NAMES ",\"version\":1"), "not a URL" },
		/* vm and volume */
		{ T(SRV ",\"volume\":\"data\",\"version\":1"), "\"vm\"" },
		{ T(SRV ",\"vm\":\"\",\"volume\":\"data\",\"version\":1"), "\"vm\" is not a valid name" },
		{ T(SRV ",\"vm\":\"../x\",\"volume\":\"data\",\"version\":1"), "\"vm\" is not a valid name" },
		{ T(SRV ",\"vm\":\"vm1\",\"volume\":\"a/b\",\"version\":1"), "\"volume\" is not a valid name" },
		{ T(SRV ",\"vm\":\"vm1\",\"volume\":\"-data\",\"version\":1"), "\"volume\" is not a valid name" },
		{ T(SRV ",\"vm\":\"vm1\",\"volume\":[\"data\"],\"version\":1"), "\"volume\" is missing or not a string" },
		{ T(SRV ",\"vm\":\"vm1\",\"volume\":"
			"\"a1234567890123456789012345678901234567890123456789012345678901234\",\"version\":1"),  /* 65 */
		  "\"volume\" is not a valid name" },
		/* version */
		{ T(SRV "," NAMES), "\"version\" is missing" },
		{ T(SRV "," NAMES ",\"version\":\"1\""), "not an integer" },
		{ T(SRV "," NAMES ",\"version\":1.0"), "not an integer" },
		{ T(SRV "," NAMES ",\"version\":true"), "not an integer" },
		{ T(SRV "," NAMES ",\"version\":0"), "between" },
		{ T(SRV "," NAMES ",\"version\":-1"), "between" },
		{ T(SRV "," NAMES ",\"version\":4294967296"), "between" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct token_ref t;
		int r;

		err[0] = 0;
		r = token_ref_parse(bad[i].json, &t, err, sizeof(err));
		if (r != -EINVAL)
			fail_msg("bad token %zu (%s) not refused: %d", i, bad[i].json, r);
		if (!strstr(err, bad[i].reason))
			fail_msg("bad token %zu: reason [%s] lacks [%s]", i, err, bad[i].reason);
	}
}

/* The reason names fields, never a value: a token is not secret, but the message goes to logs
 * and need not repeat what an attacker wrote. */
static void test_reason_has_no_value(void **state)
{
	char err[256];

	assert_int_equal(token_ref_parse(T(SRV "," NAMES ",\"version\":1,\"zzSECRETzz\":1"), NULL, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "zzSECRETzz"));
	assert_int_equal(token_ref_parse(T("\"server\":\"https://zzSECRETzz/x\"," NAMES ",\"version\":1"), NULL, err, sizeof(err)),
			 -EINVAL);
	assert_null(strstr(err, "zzSECRETzz"));
}

static void test_limits(void **state)
{
	char *big, err[256];
	size_t n = TOKEN_REF_JSON_MAX + 100;

	assert_int_equal(token_ref_parse(NULL, NULL, err, sizeof(err)), -EINVAL);
	/* A long but otherwise good token: refused for its size before parsing. */
	big = malloc(n + 1);
	assert_non_null(big);
	snprintf(big, n + 1, "%s", GOOD);
	memset(big + strlen(GOOD) - 1, ' ', n - strlen(GOOD) + 1);
	big[n - 1] = '}';
	big[n] = 0;
	assert_int_equal(token_ref_parse(big, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "larger than"));
	free(big);

	/* A server URL over TOKEN_REF_SERVER_MAX. */
	big = malloc(1024);
	assert_non_null(big);
	{
		char host[600];
		memset(host, 'a', sizeof(host) - 1);
		host[sizeof(host) - 1] = 0;
		snprintf(big, 1024, T("\"server\":\"https://%s\"," NAMES ",\"version\":1"), host);
	}
	assert_int_equal(token_ref_parse(big, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than"));
	free(big);

	/* err may be NULL or tiny. */
	assert_int_equal(token_ref_parse("[]", NULL, NULL, 0), -EINVAL);
	assert_int_equal(token_ref_parse("[]", NULL, err, 1), -EINVAL);
	assert_string_equal(err, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_good_variants),
		cmocka_unit_test(test_conversion_state),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_reason_has_no_value),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
