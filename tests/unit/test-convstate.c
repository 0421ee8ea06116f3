/* Unit tests for the conversion state file's parser (convstate_parse() in src/shared/convstate.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "shared/luks/convstate.h"

#define UUID "0b7c3a52-6f1e-4a8e-9d2c-5e4f3a2b1c0d"

static const char *entry(const char *sector_size)
{
	static char buf[1024];

	snprintf(buf, sizeof(buf),
		 "{\"version\": 1, \"uuid\": \"" UUID "\", \"operation\": \"encrypt\", \"phase\": \"converting\", "
		 "\"target\": \"/dev/loop0\", \"identity\": \"7:0:12\", \"device_size\": 1073741824, "
		 "\"fs_type\": \"ext4\", \"fs_size\": 1040187392, \"data_shift\": 33554432, \"sector_size\": %s, "
		 "\"detached\": false, \"header\": \"\", \"started\": 1764633600}",
		 sector_size);
	return buf;
}

static void test_parse(void **state)
{
	struct convstate s;

	assert_int_equal(convstate_parse(entry("4096"), UUID, &s), 0);
	assert_string_equal(s.uuid, UUID);
	assert_int_equal(s.op, VOLUME_OP_ENCRYPT);
	assert_int_equal(s.phase, PHASE_CONVERTING);
	assert_string_equal(s.target, "/dev/loop0");
	assert_int_equal(s.sector_size, 4096);
	assert_int_equal(s.data_shift, 33554432);
	assert_int_equal(s.started, 1764633600);
	/* Another entry's file, or not an entry at all. */
	assert_int_equal(convstate_parse(entry("4096"), "1b7c3a52-6f1e-4a8e-9d2c-5e4f3a2b1c0d", &s), -EINVAL);
	assert_int_equal(convstate_parse("[]", UUID, &s), -EINVAL);
	assert_int_equal(convstate_parse(entry("\"4096\""), UUID, &s), -EINVAL);
}

/* A sector size past 32 bits was cut to its low bits: 2^32 + 4096 loaded as 4096. */
static void test_sector_size_range(void **state)
{
	struct convstate s;

	assert_int_equal(convstate_parse(entry("4294971392"), UUID, &s), -EINVAL);
	assert_int_equal(convstate_parse(entry("4294967295"), UUID, &s), 0);
}

/* An online conversion keeps its mapping's name; an offline entry has none, and a name that
 * is not a string, or too long for the field, refuses the entry. */
static void test_active_name(void **state)
{
	char text[1400], name[200];
	struct convstate s;
	size_t n = strlen(entry("4096"));

	assert_int_equal(convstate_parse(entry("4096"), UUID, &s), 0);
	assert_string_equal(s.active_name, "");
	snprintf(text, sizeof(text), "%.*s, \"active_name\": \"vmcrypt-data\"}", (int)(n - 1), entry("4096"));
	assert_int_equal(convstate_parse(text, UUID, &s), 0);
	assert_string_equal(s.active_name, "vmcrypt-data");
	snprintf(text, sizeof(text), "%.*s, \"active_name\": 7}", (int)(n - 1), entry("4096"));
	assert_int_equal(convstate_parse(text, UUID, &s), -EINVAL);
	memset(name, 'a', sizeof(s.active_name));
	name[sizeof(s.active_name)] = 0;
	snprintf(text, sizeof(text), "%.*s, \"active_name\": \"%s\"}", (int)(n - 1), entry("4096"), name);
	assert_int_equal(convstate_parse(text, UUID, &s), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_sector_size_range),
		cmocka_unit_test(test_active_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
