/* Unit tests for the vocabularies read both ways: ADE's states and VolumeType (ade.h) and the
 * volume state and operation (luks.h), including words and values outside them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shared/ade.h"
#include "shared/api/api.h"
#include "shared/luks/luks.h"
#include "shared/vm/preflight.h"

static void test_ade_state(void **state)
{
	static const char *const words[] = { "Unknown", "Encrypted", "NotEncrypted", "EncryptionInProgress",
					      "DecryptionInProgress", "NotMounted", "VMRestartPending" };
	(void)state;

	assert_int_equal(_ADE_STATE_MAX, 7);
	for (int i = 0; i < _ADE_STATE_MAX; i++) {
		assert_string_equal(ade_state_to_string(i), words[i]);
		assert_int_equal(ade_state_from_string(words[i]), i);
		assert_true(api_status_valid(words[i]));
	}
	assert_int_equal(ADE_STATE_UNKNOWN, 0); /* a zeroed status reads Unknown */
	assert_int_equal(ade_state_from_string("VMRestartPending"), ADE_STATE_VM_RESTART_PENDING);
	assert_int_equal(ade_state_from_string("NotMounted"), ADE_STATE_NOT_MOUNTED);
	/* ADE spells its words exactly: no case folding, no row-only words, no prefixes. */
	assert_int_equal(ade_state_from_string("encrypted"), _ADE_STATE_INVALID);
	assert_int_equal(ade_state_from_string("Interrupted"), _ADE_STATE_INVALID);
	assert_int_equal(ade_state_from_string("Encrypted "), _ADE_STATE_INVALID);
	assert_int_equal(ade_state_from_string("Encrypt"), _ADE_STATE_INVALID);
	assert_int_equal(ade_state_from_string(""), _ADE_STATE_INVALID);
	assert_int_equal(ade_state_from_string(NULL), _ADE_STATE_INVALID);
	assert_int_equal(_ADE_STATE_INVALID, -EINVAL);
	assert_false(api_status_valid("Interrupted"));
	assert_null(ade_state_to_string(_ADE_STATE_MAX));
	assert_null(ade_state_to_string(_ADE_STATE_INVALID));
}

static void test_ade_volume_type(void **state)
{
	enum preflight_scope scope;
	unsigned m;
	(void)state;

	assert_string_equal(ade_volume_type_to_string(ADE_VOLUME_NONE), "None");
	assert_string_equal(ade_volume_type_to_string(ADE_VOLUME_OS), "OS");
	assert_string_equal(ade_volume_type_to_string(ADE_VOLUME_DATA), "Data");
	assert_string_equal(ade_volume_type_to_string(ADE_VOLUME_ALL), "All");
	assert_null(ade_volume_type_to_string(_ADE_VOLUME_TYPE_MAX));
	assert_null(ade_volume_type_to_string(_ADE_VOLUME_TYPE_INVALID));
	for (int t = ADE_VOLUME_OS; t < _ADE_VOLUME_TYPE_MAX; t++)
		assert_int_equal(ade_volume_type_from_string(ade_volume_type_to_string(t)), t);
	assert_int_equal(ade_volume_type_from_string("os"), ADE_VOLUME_OS);
	assert_int_equal(ade_volume_type_from_string("DATA"), ADE_VOLUME_DATA);
	assert_int_equal(ade_volume_type_from_string("aLL"), ADE_VOLUME_ALL);
	/* None is written (no volume enabled), never asked for. */
	assert_int_equal(ade_volume_type_from_string("None"), _ADE_VOLUME_TYPE_INVALID);
	assert_int_equal(ade_volume_type_from_string("OS,Data"), _ADE_VOLUME_TYPE_INVALID);
	assert_int_equal(ade_volume_type_from_string(""), _ADE_VOLUME_TYPE_INVALID);
	assert_int_equal(ade_volume_type_from_string(NULL), _ADE_VOLUME_TYPE_INVALID);
	assert_int_equal(_ADE_VOLUME_TYPE_INVALID, -EINVAL);

	/* The API and the preflight checks parse through the same table. */
	assert_int_equal(api_volume_type_from_string("dAtA", &m), 0);
	assert_int_equal(m, ADE_VOLUME_DATA);
	assert_int_equal(preflight_scope_from_string("dAtA", &scope), 0);
	assert_int_equal(scope, PREFLIGHT_SCOPE_DATA);
	assert_int_equal(api_volume_type_from_string("None", &m), -EINVAL);
	assert_int_equal(preflight_scope_from_string("None", &scope), -EINVAL);
	assert_string_equal(api_volume_type_to_string(API_VOLUME_ALL | 4u), "All");
}

static void test_volume_state(void **state)
{
	static const char *const words[] = { "unknown", "plain", "encrypted", "encrypting", "decrypting",
					      "interrupted" };
	(void)state;

	assert_int_equal(_VOLUME_STATE_MAX, 6);
	for (int i = 0; i < _VOLUME_STATE_MAX; i++) {
		assert_string_equal(volume_state_to_string(i), words[i]);
		assert_int_equal(volume_state_from_string(words[i]), i);
	}
	assert_int_equal(volume_state_from_string("Encrypted"), _VOLUME_STATE_INVALID);
	assert_int_equal(volume_state_from_string(""), _VOLUME_STATE_INVALID);
	assert_int_equal(volume_state_from_string(NULL), _VOLUME_STATE_INVALID);
	assert_int_equal(_VOLUME_STATE_INVALID, -EINVAL);
	assert_null(volume_state_to_string(_VOLUME_STATE_MAX));
	assert_null(volume_state_to_string(_VOLUME_STATE_INVALID));
}

static void test_volume_op(void **state)
{
	(void)state;

	assert_int_equal(_VOLUME_OP_MAX, 3);
	assert_string_equal(volume_op_to_string(VOLUME_OP_NONE), "none");
	assert_string_equal(volume_op_to_string(VOLUME_OP_ENCRYPT), "encrypt");
	assert_string_equal(volume_op_to_string(VOLUME_OP_DECRYPT), "decrypt");
	assert_int_equal(volume_op_from_string("none"), VOLUME_OP_NONE);
	assert_int_equal(volume_op_from_string("encrypt"), VOLUME_OP_ENCRYPT);
	assert_int_equal(volume_op_from_string("decrypt"), VOLUME_OP_DECRYPT);
	assert_int_equal(volume_op_from_string("resume"), _VOLUME_OP_INVALID);
	assert_int_equal(volume_op_from_string("Encrypt"), _VOLUME_OP_INVALID);
	assert_int_equal(volume_op_from_string(NULL), _VOLUME_OP_INVALID);
	assert_int_equal(_VOLUME_OP_INVALID, -EINVAL);
	assert_null(volume_op_to_string(_VOLUME_OP_MAX));
	assert_null(volume_op_to_string(_VOLUME_OP_INVALID));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ade_state),
		cmocka_unit_test(test_ade_volume_type),
		cmocka_unit_test(test_volume_state),
		cmocka_unit_test(test_volume_op),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
