/* Unit tests for src/shared/jansson-util.c: JSON written as one line or block and flushed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "shared/jansson-util.h"

static void test_write(void **state)
{
	_cleanup_(jansson_util_decrefp) json_t *o = json_pack("{s:s}", "event", "log");
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	assert_non_null(f);
	assert_int_equal(jansson_util_write(f, o, JSON_COMPACT), 0);
	/* Flushed: the line is there before the stream is closed. */
	assert_string_equal(text, "{\"event\":\"log\"}\n");
	assert_int_equal(jansson_util_write(f, NULL, JSON_COMPACT), -ENOMEM);
	assert_string_equal(text, "{\"event\":\"log\"}\n");
	fclose(f);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
