/* Unit tests of the agent's pure logic: the goal parser and per-volume decisions (goal.h), the
 * status report and its ProgressMessage (report.h), and the state file round trip
 * (agent-state.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/agent/agent-state.h"
#include "shared/agent/goal.h"
#include "shared/agent/os-volume.h"
#include "shared/agent/report.h"
#include "shared/client/agent-conf.h"

static struct agent_goal goal_of(const char *text)
{
	struct agent_goal g;
	char err[256];
	json_t *j = json_loads(text, 0, NULL);

	assert_non_null(j);
	assert_int_equal(agent_goal_parse(j, &g, err, sizeof(err)), 0);
	json_decref(j);
	return g;
}

static void test_goal_parse(void **state)
{
	struct agent_goal g;
	char err[256];
	json_t *j;
	(void)state;

	g = goal_of("{\"name\":\"vm1\",\"sequence\":3,\"extension\":\"installed\",\"settings\":"
		    "{\"EncryptionOperation\":\"EnableEncryption\",\"VolumeType\":\"All\","
		    "\"SequenceVersion\":3,\"ExtensionInstalled\":true}}");
	assert_int_equal(g.sequence, 3);
	assert_int_equal(g.op, AGENT_OP_ENABLE);
	assert_int_equal(g.volume_type, 3);
	assert_true(agent_goal_wants_data(&g));

	g = goal_of("{\"sequence\":0,\"settings\":{\"EncryptionOperation\":\"None\",\"VolumeType\":\"None\"}}");
	assert_int_equal(g.op, AGENT_OP_NONE);
	assert_false(agent_goal_wants_data(&g));

	/* OS only, or a removed extension: the data volumes are not wanted encrypted. */
	g = goal_of("{\"sequence\":4,\"settings\":{\"EncryptionOperation\":\"EnableEncryption\",\"VolumeType\":\"OS\"}}");
	assert_false(agent_goal_wants_data(&g));
	g = goal_of("{\"sequence\":5,\"settings\":{\"EncryptionOperation\":\"EnableEncryption\",\"VolumeType\":\"Data\",\"ExtensionInstalled\":false}}");
	assert_false(agent_goal_wants_data(&g));
	g = goal_of("{\"sequence\":6,\"settings\":{\"EncryptionOperation\":\"EnableEncryptionFormatAll\",\"VolumeType\":\"Data\"}}");
	assert_true(agent_goal_wants_data(&g));

	j = json_loads("{\"sequence\":1,\"settings\":{\"EncryptionOperation\":\"Explode\"}}", 0, NULL);
	assert_int_equal(agent_goal_parse(j, &g, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "unknown EncryptionOperation \"Explode\"");
	json_decref(j);
	j = json_loads("{\"settings\":{}}", 0, NULL);
	assert_int_equal(agent_goal_parse(j, &g, err, sizeof(err)), -EBADMSG);
	json_decref(j);
	j = json_loads("{\"sequence\":1,\"settings\":{\"EncryptionOperation\":\"EnableEncryption\",\"VolumeType\":\"Swap\"}}", 0, NULL);
	assert_int_equal(agent_goal_parse(j, &g, err, sizeof(err)), -EBADMSG);
	json_decref(j);
}

static void test_goal_decide(void **state)
{
	struct agent_goal enable = { .sequence = 2, .op = AGENT_OP_ENABLE, .volume_type = 2,
				     .extension_installed = true };
	struct agent_goal disable = { .sequence = 3, .op = AGENT_OP_DISABLE, .volume_type = 2,
				      .extension_installed = true };
	struct agent_goal none = { 0 };
	struct agent_volume_state st = { .phase = AGENT_PHASE_PLAIN };
	(void)state;

	assert_int_equal(agent_goal_decide(&enable, false, NULL), AGENT_ACTION_ENCRYPT);
	assert_int_equal(agent_goal_decide(&enable, true, NULL), AGENT_ACTION_NONE);
	st.phase = AGENT_PHASE_ESCROWED; /* keys escrowed, disk untouched: go on */
	assert_int_equal(agent_goal_decide(&enable, false, &st), AGENT_ACTION_ENCRYPT);
	assert_int_equal(agent_goal_decide(&disable, false, &st), AGENT_ACTION_NONE);
	/* An unfinished step is resumed whatever the goal says now. */
	for (enum agent_phase p = AGENT_PHASE_CUTOVER; p < _AGENT_PHASE_MAX; p++) {
		st.phase = p;
		if (p == AGENT_PHASE_ENCRYPTED)
			continue;
		assert_int_equal(agent_goal_decide(&disable, true, &st), AGENT_ACTION_RESUME);
		assert_int_equal(agent_goal_decide(&none, true, &st), AGENT_ACTION_RESUME);
	}
	/* Only what the agent encrypted is decrypted; a LUKS volume of someone else's is left. */
	st.phase = AGENT_PHASE_ENCRYPTED;
	assert_int_equal(agent_goal_decide(&disable, true, &st), AGENT_ACTION_DECRYPT);
	assert_int_equal(agent_goal_decide(&disable, true, NULL), AGENT_ACTION_NONE);
	/* Decrypted by hand behind the agent's back: nothing to decrypt, the report shows it. */
	assert_int_equal(agent_goal_decide(&disable, false, &st), AGENT_ACTION_NONE);
	assert_int_equal(agent_goal_decide(&enable, true, &st), AGENT_ACTION_NONE);
	/* Encrypted by the agent, then OS-only settings: the data volumes go back. */
	struct agent_goal os_only = enable;
	os_only.volume_type = 1;
	assert_int_equal(agent_goal_decide(&os_only, true, &st), AGENT_ACTION_DECRYPT);
	assert_int_equal(agent_goal_decide(&none, true, &st), AGENT_ACTION_NONE);
}

static const char *message_of(struct agent_report *r)
{
	static char buf[512];
	return agent_report_progress_message(r, buf, sizeof(buf));
}

static void test_report_messages(void **state)
{
	struct agent_report_volume v[2] = {
		{ .name = "data", .device = "/dev/vdb", .mountpoint = "/data",
		  .state = ADE_STATE_NOT_ENCRYPTED, .percent = -1, .eta = -1, .downtime_ms = -1 },
		{ .name = "srv", .device = "/dev/vdc", .mountpoint = "/srv",
		  .state = ADE_STATE_NOT_ENCRYPTED, .percent = -1, .eta = -1, .downtime_ms = -1 },
	};
	struct agent_report r = { .os = ADE_STATE_NOT_ENCRYPTED, .op = AGENT_OP_ENABLE,
				  .data_wanted = true, .stamped = true, .sequence = 2,
				  .agent_version = "0.9", .volumes = v, .n_volumes = 2 };
	(void)state;

	assert_string_equal(message_of(&r), "Encryption settings stamped");
	r.stamped = false;
	v[0].state = ADE_STATE_ENCRYPTION_IN_PROGRESS;
	v[0].percent = 37.9;
	assert_string_equal(message_of(&r), "Encrypting data volume 1/2: 37%");
	/* In parallel: the slower volume speaks. */
	v[1].state = ADE_STATE_ENCRYPTION_IN_PROGRESS;
	v[1].percent = 12.0;
	assert_string_equal(message_of(&r), "Encrypting data volume 1/2: 12%");
	v[1].state = ADE_STATE_ENCRYPTED;
	v[0].percent = 99.99; /* never 100% before it is done */
	assert_string_equal(message_of(&r), "Encrypting data volume 2/2: 99%");
	r.resumed = true;
	v[0].percent = 42;
	assert_string_equal(message_of(&r), "Resuming encryption after reboot: 42%");
	r.resumed = false;
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_ENCRYPTION_IN_PROGRESS);
	v[0].state = ADE_STATE_ENCRYPTED;
	assert_string_equal(message_of(&r), "Encryption succeeded for data volumes");
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_ENCRYPTED);

	/* A refusal is said when nothing runs, and waits while something does. */
	v[1].state = ADE_STATE_NOT_ENCRYPTED;
	v[1].message = "/srv: held by pid 812 (postgres) of postgresql.service; set StopUnits=auto";
	assert_string_equal(message_of(&r), v[1].message);
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_NOT_ENCRYPTED);
	v[0].state = ADE_STATE_ENCRYPTION_IN_PROGRESS;
	v[0].percent = 5;
	assert_string_equal(message_of(&r), "Encrypting data volume 1/2: 5%");
	v[1].message = NULL;

	/* Disable. */
	r.op = AGENT_OP_DISABLE;
	r.data_wanted = false;
	r.stamped = true;
	v[0].state = ADE_STATE_ENCRYPTED;
	v[1].state = ADE_STATE_ENCRYPTED;
	assert_string_equal(message_of(&r), "Encryption settings cleared");
	r.stamped = false;
	v[1].state = ADE_STATE_DECRYPTION_IN_PROGRESS;
	v[1].percent = 10.5;
	assert_string_equal(message_of(&r), "Decrypting data volume 1/2: 10%");
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_DECRYPTION_IN_PROGRESS);
	v[0].state = ADE_STATE_NOT_ENCRYPTED;
	v[1].state = ADE_STATE_NOT_ENCRYPTED;
	assert_string_equal(message_of(&r), "Decryption succeeded");

	r.op = AGENT_OP_NONE;
	assert_string_equal(message_of(&r), "Encryption is not enabled for this VM");
	r.n_volumes = 0;
	r.op = AGENT_OP_ENABLE;
	r.data_wanted = true;
	assert_string_equal(message_of(&r), "No data volume to encrypt");
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_NOT_MOUNTED);
}

/* The OS volume (docs/os-volume.md): its own decision, its row apart from the data's, and its
 * messages. */
static void test_os_volume(void **state)
{
	struct agent_goal os_only = { .sequence = 4, .op = AGENT_OP_ENABLE, .volume_type = 1,
				      .extension_installed = true };
	struct agent_goal data_only = os_only, all = os_only;
	struct agent_volume_state st = { .phase = AGENT_PHASE_PLAIN, .os = true };
	struct agent_report_volume v[2] = {
		{ .name = "os", .device = "/dev/vda1", .mountpoint = "/", .os = true,
		  .state = ADE_STATE_NOT_ENCRYPTED, .percent = -1, .eta = -1, .downtime_ms = -1 },
		{ .name = "data", .device = "/dev/vdb", .mountpoint = "/data",
		  .state = ADE_STATE_ENCRYPTED, .percent = -1, .eta = -1, .downtime_ms = -1 },
	};
	struct agent_report r = { .os = ADE_STATE_NOT_ENCRYPTED, .op = AGENT_OP_ENABLE,
				  .os_wanted = true, .sequence = 4, .agent_version = "0.9",
				  .volumes = v, .n_volumes = 1 };
	json_t *j;
	(void)state;

	data_only.volume_type = 2;
	all.volume_type = 3;
	assert_true(agent_goal_wants_os(&os_only));
	assert_false(agent_goal_wants_os(&data_only));
	assert_true(agent_goal_wants_os(&all));
	/* The OS volume follows VolumeType OS, a data volume VolumeType Data. */
	assert_int_equal(agent_goal_decide(&os_only, false, &st), AGENT_ACTION_ENCRYPT);
	assert_int_equal(agent_goal_decide(&data_only, false, &st), AGENT_ACTION_NONE);
	st.os = false;
	assert_int_equal(agent_goal_decide(&os_only, false, &st), AGENT_ACTION_NONE);
	st.os = true;
	/* Waiting for its reboot is an unfinished step, whatever the goal says now. */
	st.phase = AGENT_PHASE_RESTART_PENDING;
	assert_int_equal(agent_goal_decide(&data_only, true, &st), AGENT_ACTION_RESUME);
	assert_string_equal(agent_phase_to_string(AGENT_PHASE_RESTART_PENDING), "restart-pending");
	/* Encrypted: only DisableEncryption naming the OS takes it back. */
	st.phase = AGENT_PHASE_ENCRYPTED;
	assert_int_equal(agent_goal_decide(&data_only, true, &st), AGENT_ACTION_NONE);
	struct agent_goal disable_os = os_only, disable_data = data_only, removed = os_only;
	disable_os.op = disable_data.op = AGENT_OP_DISABLE;
	removed.extension_installed = false;
	assert_int_equal(agent_goal_decide(&disable_data, true, &st), AGENT_ACTION_NONE);
	assert_int_equal(agent_goal_decide(&removed, true, &st), AGENT_ACTION_NONE);
	assert_int_equal(agent_goal_decide(&disable_os, true, &st), AGENT_ACTION_DECRYPT);
	assert_int_equal(agent_goal_decide(&disable_os, false, &st), AGENT_ACTION_NONE);
	assert_int_equal(agent_phase_from_string("restart-pending"), AGENT_PHASE_RESTART_PENDING);

	r.stamped = true;
	assert_string_equal(message_of(&r), "Encryption settings stamped");
	r.stamped = false;
	v[0].state = ADE_STATE_VM_RESTART_PENDING;
	r.os = ADE_STATE_VM_RESTART_PENDING;
	assert_string_equal(message_of(&r), "OS disk successfully encrypted, please reboot the VM");
	/* The OS row is not a data volume: no data volume here. */
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_NOT_MOUNTED);
	v[0].state = r.os = ADE_STATE_ENCRYPTION_IN_PROGRESS;
	v[0].percent = 37.2;
	assert_string_equal(message_of(&r), "Encrypting OS volume: 37%");
	v[0].rate = 52u << 20;
	v[0].eta = 125;
	assert_string_equal(message_of(&r), "Encrypting OS volume: 37% (52 MiB/s, 3 min left)");
	v[0].state = r.os = ADE_STATE_ENCRYPTED;
	assert_string_equal(message_of(&r), "Encryption succeeded for OS volume");
	r.os = v[0].state = ADE_STATE_NOT_ENCRYPTED;
	assert_string_equal(message_of(&r), "OS volume not encrypted yet");
	/* All: the data volume counts for DataVolumesEncrypted, the OS row for nothing there. */
	r.data_wanted = true;
	r.n_volumes = 2;
	assert_int_equal(agent_report_data_state(&r), ADE_STATE_ENCRYPTED);
	assert_string_equal(message_of(&r), "Encryption succeeded for data volumes");
	r.os = v[0].state = ADE_STATE_ENCRYPTED;
	assert_string_equal(message_of(&r), "Encryption succeeded for all volumes");
	j = agent_report_build(&r);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "Volumes"), 0),
							      "volumeType")), "OS");
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "Volumes"), 1),
							      "volumeType")), "Data");
	json_decref(j);
}

static void test_report_json(void **state)
{
	char longmsg[400];
	struct agent_report_volume v[1] = {
		{ .name = "data", .device = "/dev/vdb", .mountpoint = "/data",
		  .state = ADE_STATE_ENCRYPTION_IN_PROGRESS, .percent = 50, .rate = 1048576, .eta = 30,
		  .downtime_ms = 812, .message = longmsg },
	};
	struct agent_report r = { .os = ADE_STATE_NOT_ENCRYPTED, .op = AGENT_OP_ENABLE,
				  .data_wanted = true, .sequence = 7, .agent_version = "0.9",
				  .volumes = v, .n_volumes = 1 };
	json_t *j, *row;
	(void)state;

	/* 254 ASCII bytes and then "é" repeated: the cut must not split a character. */
	memset(longmsg, 'a', 255);
	for (int i = 255; i < 395; i += 2) {
		longmsg[i] = (char)0xc3;
		longmsg[i + 1] = (char)0xa9;
	}
	longmsg[395] = '\0';
	j = agent_report_build(&r);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "DataVolumesEncrypted")),
			    "EncryptionInProgress");
	assert_string_equal(json_string_value(json_object_get(j, "OsVolumeEncrypted")), "NotEncrypted");
	assert_int_equal(json_integer_value(json_object_get(j, "SequenceVersion")), 7);
	assert_string_equal(json_string_value(json_object_get(j, "ProgressMessage")),
			    "Encrypting data volume 1/1: 50%");
	row = json_array_get(json_object_get(j, "Volumes"), 0);
	assert_int_equal(json_integer_value(json_object_get(row, "progress")), 50);
	assert_int_equal(json_integer_value(json_object_get(row, "rate")), 1048576);
	assert_int_equal(json_integer_value(json_object_get(row, "eta")), 30);
	assert_int_equal(json_integer_value(json_object_get(row, "downtimeMs")), 812);
	assert_string_equal(json_string_value(json_object_get(row, "volumeType")), "Data");
	assert_int_equal(strlen(json_string_value(json_object_get(row, "message"))), 255);
	json_decref(j);

	/* Done: no progress fields. */
	v[0].state = ADE_STATE_ENCRYPTED;
	v[0].message = NULL;
	j = agent_report_build(&r);
	row = json_array_get(json_object_get(j, "Volumes"), 0);
	assert_null(json_object_get(row, "progress"));
	assert_null(json_object_get(row, "rate"));
	assert_null(json_object_get(row, "message"));
	assert_int_equal(json_integer_value(json_object_get(row, "downtimeMs")), 812);
	json_decref(j);
}

static void test_state_roundtrip(void **state)
{
	char dir[] = "/tmp/test-agent-state-XXXXXX";
	static struct agent_state s, t; /* large: not on the stack */
	struct agent_volume_state *v;
	(void)state;

	memset(&s, 0, sizeof(s)); /* padding too: the volume is compared byte for byte below */
	s.applied_sequence = 4;
	s.seen_sequence = 5;

	assert_non_null(mkdtemp(dir));
	setenv("VMCRYPT_STATE_DIR", dir, 1);
	assert_int_equal(agent_state_load(&t), 0); /* missing: empty */
	assert_int_equal(t.n_volumes, 0);
	strcpy(s.operation, "EnableEncryption");
	strcpy(s.server, "https://10.0.2.100:8443");
	v = agent_state_add(&s, "data");
	assert_non_null(v);
	strcpy(v->device, "/dev/vdb");
	strcpy(v->mountpoint, "/data");
	strcpy(v->fstype, "ext4");
	strcpy(v->fs_options, "errors=remount-ro");
	v->mount_flags = 0x400;
	v->phase = AGENT_PHASE_CONVERTING;
	v->online = true;
	v->key_version = 2;
	v->recovery_version = 1;
	strcpy(v->stopped_units[0], "holder.service");
	v->n_stopped_units = 1;
	v->downtime_ms = 1234;
	v->error = -EBUSY;
	strcpy(v->message, "held");
	v = agent_state_add(&s, "os");
	assert_non_null(v);
	strcpy(v->device, "/dev/vda1");
	strcpy(v->mountpoint, "/");
	strcpy(v->header, "/boot/vmcrypt/os.luks");
	strcpy(v->prepared_boot_id, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
	strcpy(v->header_backup_uuid, "5e0f2a7c-1b3d-4e6f-8a9b-0c1d2e3f4a5b");
	v->header_backup_version = 3;
	v->phase = AGENT_PHASE_RESTART_PENDING;
	v->os = v->online = true;
	v = &s.volumes[0];
	assert_null(agent_state_add(&s, "x-name-that-is-far-too-long-for-a-volume-name-because-it-goes-on-and-on"));
	assert_int_equal(agent_state_save(&s), 0);
	assert_int_equal(agent_state_load(&t), 0);
	assert_int_equal(t.applied_sequence, 4);
	assert_int_equal(t.seen_sequence, 5);
	assert_string_equal(t.operation, "EnableEncryption");
	assert_int_equal(t.n_volumes, 2);
	assert_memory_equal(&t.volumes[0], v, sizeof(*v));
	assert_memory_equal(&t.volumes[1], &s.volumes[1], sizeof(*v));
	assert_ptr_equal(agent_state_find(&t, "data"), &t.volumes[0]);
	assert_null(agent_state_find(&t, "srv"));

	/* Impossible contents are refused, not half-read. */
	assert_int_equal(agent_state_parse("{\"volumes\":[{\"name\":\"a\",\"phase\":\"melted\"}]}", &t), -EBADMSG);
	assert_int_equal(agent_state_parse("{\"appliedSequence\":-1}", &t), -EBADMSG);
	assert_int_equal(agent_state_parse("{\"volumes\":[{\"name\":\"a\",\"phase\":\"encrypted\","
					   "\"headerBackupVersion\":-2}]}", &t), -EBADMSG);
	assert_int_equal(agent_state_parse("[", &t), -EBADMSG);
	assert_int_equal(agent_state_parse("{\"volumes\":[{\"phase\":\"plain\"}]}", &t), -EBADMSG);
	for (int p = 0; p < _AGENT_PHASE_MAX; p++)
		assert_int_equal(agent_phase_from_string(agent_phase_to_string(p)), p);
	assert_int_equal(agent_phase_from_string("x"), _AGENT_PHASE_INVALID);

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* SealCredential= against this host, which has no TPM: auto and no make a plain copy, yes refuses
 * before any change, with the remedy. (The sealing itself: test-tpm-seal with swtpm, and
 * tests/vm/test-vm-os.sh in a guest with one.) */
static void test_seal_decide(void **state)
{
	struct agent_conf c;
	char err[512] = "";

	(void)state;
	if (access("/dev/tpmrm0", F_OK) == 0 || access("/dev/tpm0", F_OK) == 0)
		skip(); /* this machine has a TPM: the answers below are for one without */
	agent_conf_init(&c);
	assert_int_equal(c.seal_credential, AGENT_SEAL_AUTO);
	assert_int_equal(agent_os_seal_decide(&c, err, sizeof(err)), 0);
	c.seal_credential = AGENT_SEAL_NO;
	assert_int_equal(agent_os_seal_decide(&c, err, sizeof(err)), 0);
	c.seal_credential = AGENT_SEAL_YES;
	assert_int_equal(agent_os_seal_decide(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "SealCredential=yes and this VM has no TPM 2.0 to seal the VM credential to: "
				    "attach a vTPM to the VM, or set SealCredential=auto or no in agent.conf"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_goal_parse),
		cmocka_unit_test(test_goal_decide),
		cmocka_unit_test(test_report_messages),
		cmocka_unit_test(test_report_json),
		cmocka_unit_test(test_os_volume),
		cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_seal_decide),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
