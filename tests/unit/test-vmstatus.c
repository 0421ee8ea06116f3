/* Unit tests for the VM status model: vmstatus_build() on synthetic disks, journals and locks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/vm/vmstatus.h"

#define NOW 1800000000

static struct vmstatus_input vol(enum volume_role role, enum volume_kind kind, const char *device,
				 const char *mountpoint, enum volume_state state, double percent)
{
	struct vmstatus_input in;

	memset(&in, 0, sizeof(in));
	in.volume.role = role;
	in.volume.kind = kind;
	snprintf(in.volume.device, sizeof(in.volume.device), "%s", device);
	snprintf(in.volume.mountpoint, sizeof(in.volume.mountpoint), "%s", mountpoint);
	snprintf(in.volume.fstype, sizeof(in.volume.fstype), "%s",
		 kind == VOLUME_KIND_CRYPT || !mountpoint[0] ? "" : "ext4");
	in.info.state = state;
	in.info.percent = percent;
	in.info.device_size = UINT64_C(10) << 30;
	in.info.op = state == VOLUME_DECRYPTING ? VOLUME_OP_DECRYPT
		     : state == VOLUME_PLAIN || state == VOLUME_ENCRYPTED ? VOLUME_OP_NONE
									  : VOLUME_OP_ENCRYPT;
	snprintf(in.info.fs_type, sizeof(in.info.fs_type), "ext4");
	if (state != VOLUME_PLAIN)
		snprintf(in.info.header_path, sizeof(in.info.header_path), "%s", device);
	return in;
}

static struct journal_entry entry(const char *command, const char *target, enum journal_result res,
				  double percent, uint64_t rate)
{
	struct journal_entry e;

	memset(&e, 0, sizeof(e));
	snprintf(e.command, sizeof(e.command), "%s", command);
	snprintf(e.target, sizeof(e.target), "%s", target);
	e.started = NOW - 600;
	e.updated = NOW - 5;
	e.percent = percent;
	e.rate = rate;
	e.result = res;
	e.pid = 4242;
	return e;
}

static struct lock_holder holder(const char *command, const char *target, double percent)
{
	struct lock_holder h;

	memset(&h, 0, sizeof(h));
	h.pid = 4242;
	snprintf(h.command, sizeof(h.command), "%s", command);
	snprintf(h.target, sizeof(h.target), "%s", target);
	h.started = NOW - 600;
	h.percent = percent;
	return h;
}

static bool has_note(const struct vmstatus *s, const char *frag)
{
	for (size_t i = 0; i < s->n_notes; i++)
		if (strstr(s->notes[i], frag))
			return true;
	return false;
}

static void test_fresh_vm(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1),
		vol(VOLUME_ROLE_DATA, VOLUME_KIND_PARTITION, "/dev/sdb1", "/data", VOLUME_PLAIN, -1),
		/* An unmounted plain disk is listed but is no data volume. */
		vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_PLAIN, -1),
	};
	struct vmstatus s;

	assert_int_equal(vmstatus_build(in, 3, NULL, 0, NULL, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.os), "NotEncrypted");
	assert_string_equal(ade_state_to_string(s.data), "NotEncrypted");
	assert_string_equal(s.progress_message, "No volume is encrypted");
	assert_int_equal(s.n_volumes, 3);
	assert_true(s.volumes[1].counted);
	assert_false(s.volumes[2].counted);
	assert_string_equal(s.volumes[0].header, "-");
	assert_int_equal(s.n_notes, 0);
	vmstatus_done(&s);
}

static void test_not_mounted(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_CRYPT, "/dev/mapper/root", "/", VOLUME_ENCRYPTED, -1),
	};
	struct vmstatus s;

	assert_int_equal(vmstatus_build(in, 1, NULL, 0, NULL, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.os), "Encrypted");
	assert_string_equal(ade_state_to_string(s.data), "NotMounted");
	assert_string_equal(s.progress_message, "Encryption succeeded for all volumes");
	assert_string_equal(s.volumes[0].header, "on device");
	vmstatus_done(&s);
}

static void test_encrypting_data(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1),
		vol(VOLUME_ROLE_DATA, VOLUME_KIND_CRYPT, "/dev/mapper/data1", "/data1", VOLUME_ENCRYPTED, -1),
		vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_ENCRYPTING, 37.4),
	};
	struct journal_entry j[] = { entry("encrypt", "/dev/sdc", JOURNAL_RUNNING, 37, MIB(100)) };
	struct lock_holder h = holder("encrypt", "/dev/sdc", 37);
	struct vmstatus s;

	assert_int_equal(vmstatus_build(in, 3, j, 1, &h, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.os), "NotEncrypted");
	assert_string_equal(ade_state_to_string(s.data), "EncryptionInProgress");
	assert_string_equal(s.progress_message, "Encrypting data volume 2/2: 37%");
	assert_string_equal(vmstatus_volume_state_to_string(&s.volumes[2]), "EncryptionInProgress");
	assert_true(s.volumes[2].percent > 37.3 && s.volumes[2].percent < 37.5);
	assert_true(s.volumes[2].mib_per_s > 99.9 && s.volumes[2].mib_per_s < 100.1);
	/* 62.6% of 10 GiB at 100 MiB/s. */
	assert_int_equal(s.volumes[2].eta, (int64_t)(0.626 * 10240 / 100));
	assert_true(s.busy);
	assert_int_equal(s.n_notes, 0);
	vmstatus_done(&s);
}

static void test_interrupted(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1),
		vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_ENCRYPTING, 42),
	};
	struct journal_entry j[] = { entry("encrypt", "/dev/sdc", JOURNAL_RUNNING, 40, MIB(100)) };
	struct lock_holder h = holder("resume", "/dev/sdc", 42);
	struct vmstatus s;

	/* Nobody holds the lock: reencryption metadata alone means interrupted. */
	assert_int_equal(vmstatus_build(in, 2, j, 1, NULL, NOW, &s), 0);
	assert_string_equal(vmstatus_volume_state_to_string(&s.volumes[1]), "Interrupted");
	assert_string_equal(ade_state_to_string(s.data), "EncryptionInProgress");
	assert_string_equal(s.progress_message,
			    "Encryption of /dev/sdc interrupted at 42%: run 'vmcrypt resume /dev/sdc'");
	assert_true(has_note(&s, "the journal says 'vmcrypt encrypt' (pid 4242) is running, but no vmcrypt process holds the VM lock"));
	assert_true(has_note(&s, "The disks win"));
	vmstatus_done(&s);

	/* resume holds it: ADE's message. */
	in[1].info.state = VOLUME_INTERRUPTED;
	assert_int_equal(vmstatus_build(in, 2, j, 1, &h, NOW, &s), 0);
	assert_string_equal(s.progress_message, "Resuming encryption after reboot: 42%");
	assert_false(has_note(&s, "no vmcrypt process holds"));
	vmstatus_done(&s);
}

static void test_decrypting(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1),
		vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_DECRYPTING, 10),
	};
	struct lock_holder h = holder("decrypt", "/dev/sdc", 10);
	struct vmstatus s;

	assert_int_equal(vmstatus_build(in, 2, NULL, 0, &h, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.data), "DecryptionInProgress");
	assert_string_equal(s.progress_message, "Decrypting data volume 1/1: 10%");
	assert_int_equal(s.volumes[1].mib_per_s, -1);
	vmstatus_done(&s);
}

static void test_os(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_ENCRYPTING, 0),
		vol(VOLUME_ROLE_DATA, VOLUME_KIND_CRYPT, "/dev/mapper/data", "/data", VOLUME_ENCRYPTED, -1),
	};
	struct lock_holder h = holder("encrypt", "/dev/mapper/root", 55);
	struct vmstatus s;

	/* The header is on the OS device but / still runs from the plain device. */
	assert_int_equal(vmstatus_build(in, 2, NULL, 0, NULL, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.os), "VMRestartPending");
	assert_string_equal(s.progress_message, "OS disk successfully encrypted, please reboot the VM");
	vmstatus_done(&s);

	/* After the reboot / runs from dm-crypt and the conversion goes on, with a percentage. */
	in[0] = vol(VOLUME_ROLE_OS, VOLUME_KIND_CRYPT, "/dev/mapper/root", "/", VOLUME_ENCRYPTING, 55);
	assert_int_equal(vmstatus_build(in, 2, NULL, 0, &h, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.os), "EncryptionInProgress");
	assert_string_equal(ade_state_to_string(s.data), "Encrypted");
	assert_string_equal(s.progress_message, "Encrypting OS volume: 55%");
	vmstatus_done(&s);

	in[0].info.state = VOLUME_ENCRYPTED;
	assert_int_equal(vmstatus_build(in, 2, NULL, 0, NULL, NOW, &s), 0);
	assert_string_equal(s.progress_message, "Encryption succeeded for all volumes");
	vmstatus_done(&s);

	in[0] = vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1);
	assert_int_equal(vmstatus_build(in, 2, NULL, 0, NULL, NOW, &s), 0);
	assert_string_equal(s.progress_message, "Encryption succeeded for data volumes");
	vmstatus_done(&s);
}

/* Someone decrypted by hand: the journal says encrypted, the disk says plain. */
static void test_disks_win(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1),
		vol(VOLUME_ROLE_DATA, VOLUME_KIND_PARTITION, "/dev/sdb1", "/data", VOLUME_PLAIN, -1),
	};
	struct journal_entry j[] = {
		entry("encrypt", "/dev/sdb1", JOURNAL_SUCCEEDED, 100, 0),
	};
	struct vmstatus s;

	assert_int_equal(vmstatus_build(in, 2, j, 1, NULL, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.data), "NotEncrypted");
	assert_true(has_note(&s, "/dev/sdb1: the journal says 'vmcrypt encrypt' succeeded"));
	assert_true(has_note(&s, "The disks win: shown as NotEncrypted"));
	vmstatus_done(&s);

	/* And the other way round: decrypted per journal, LUKS on disk. */
	j[0] = entry("decrypt", "/dev/sdc", JOURNAL_SUCCEEDED, 100, 0);
	in[1] = vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_ENCRYPTED, -1);
	assert_int_equal(vmstatus_build(in, 2, j, 1, NULL, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.data), "Encrypted");
	assert_true(has_note(&s, "The disks win: shown as Encrypted"));
	vmstatus_done(&s);

	/* The last operation was a successful decrypt and nothing is encrypted. */
	in[1] = vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_PLAIN, -1);
	assert_int_equal(vmstatus_build(in, 2, j, 1, NULL, NOW, &s), 0);
	assert_string_equal(s.progress_message, "Decryption succeeded");
	assert_string_equal(ade_state_to_string(s.data), "NotMounted");
	vmstatus_done(&s);
}

static void test_unknown(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_DISK, "/dev/vda", "/", VOLUME_UNKNOWN, -1),
		vol(VOLUME_ROLE_DATA, VOLUME_KIND_CRYPT, "/dev/mapper/x", "/x", VOLUME_UNKNOWN, -1),
	};
	struct vmstatus s;

	in[0].inspect_error = -EPERM;
	in[1].inspect_error = -EIO;
	assert_int_equal(vmstatus_build(in, 2, NULL, 0, NULL, NOW, &s), 0);
	/* Mounted straight from the device with ext4: plain, whatever the header read said. */
	assert_string_equal(ade_state_to_string(s.os), "NotEncrypted");
	assert_true(has_note(&s, "/dev/vda: its header could not be read"));
	assert_string_equal(ade_state_to_string(s.data), "Unknown");
	assert_true(has_note(&s, "/dev/mapper/x: could not be inspected (Input/output error)"));
	assert_string_equal(s.progress_message, "Encryption state of a data volume is unknown");
	vmstatus_done(&s);

	assert_int_equal(vmstatus_build(NULL, 0, NULL, 0, NULL, NOW, &s), 0);
	assert_string_equal(ade_state_to_string(s.os), "Unknown");
	assert_true(has_note(&s, "/ is not on a block device"));
	vmstatus_done(&s);
}

static void test_json(void **state)
{
	struct vmstatus_input in[] = {
		vol(VOLUME_ROLE_OS, VOLUME_KIND_PARTITION, "/dev/sda1", "/", VOLUME_PLAIN, -1),
		vol(VOLUME_ROLE_CANDIDATE, VOLUME_KIND_DISK, "/dev/sdc", "", VOLUME_ENCRYPTING, 37),
	};
	struct lock_holder h = holder("encrypt", "/dev/sdc", 37);
	struct vmstatus s;
	json_t *j, *v;

	in[1].info.header_detached = true;
	snprintf(in[1].info.header_path, sizeof(in[1].info.header_path), "/root/sdc.hdr");
	assert_int_equal(vmstatus_build(in, 2, NULL, 0, &h, NOW, &s), 0);
	j = vmstatus_to_json(&s);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "OsVolumeEncrypted")), "NotEncrypted");
	assert_string_equal(json_string_value(json_object_get(j, "DataVolumesEncrypted")),
			    "EncryptionInProgress");
	assert_string_equal(json_string_value(json_object_get(j, "ProgressMessage")),
			    "Encrypting data volume 1/1: 37%");
	v = json_array_get(json_object_get(j, "volumes"), 1);
	assert_string_equal(json_string_value(json_object_get(v, "header")), "/root/sdc.hdr");
	assert_true(json_real_value(json_object_get(v, "percent")) == 37);
	assert_true(json_is_null(json_object_get(v, "mib_per_s")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "operation"), "pid")), 4242);
	json_decref(j);
	vmstatus_done(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_vm),
		cmocka_unit_test(test_not_mounted),
		cmocka_unit_test(test_encrypting_data),
		cmocka_unit_test(test_interrupted),
		cmocka_unit_test(test_decrypting),
		cmocka_unit_test(test_os),
		cmocka_unit_test(test_disks_win),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
