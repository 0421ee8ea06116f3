/* Unit tests for the prerequisite checks against the fixture trees in tests/data/roots/. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/string-util.h"
#include "shared/vm/lock.h"
#include "shared/vm/preflight.h"
#include "shared/volume/volumes.h"

static char rundir[] = "/tmp/vmcrypt-preflight.XXXXXX";

static int group_setup(void **state)
{
	if (!mkdtemp(rundir))
		return -1;
	setenv("VMCRYPT_RUN_DIR", rundir, 1);
	setenv("VMCRYPT_STATE_DIR", rundir, 1);
	return 0;
}

static int group_teardown(void **state)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/operation.lock", rundir);
	unlink(path);
	rmdir(rundir);
	return 0;
}

static void run(const char *fixture, enum preflight_scope scope, struct preflight_report *rep)
{
	char path[PATH_MAX], root[PATH_MAX];

	snprintf(path, sizeof(path), "tests/data/roots/%s", fixture);
	assert_non_null(realpath(path, root));
	setenv("VMCRYPT_TEST_ROOT", root, 1);
	assert_int_equal(preflight_run(scope, rep), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
}

/* Asserts the check's status, and that its message (or remedy) contains each fragment given. */
static void expect(const struct preflight_report *rep, const char *id, enum preflight_status s, ...)
{
	const struct preflight_result *r = preflight_report_find(rep, id);
	const char *frag;
	va_list ap;

	assert_non_null(r);
	if (r->status != s)
		fail_msg("%s: expected %s, got %s: %s", id, preflight_status_to_string(s),
			 preflight_status_to_string(r->status), r->message);
	va_start(ap, s);
	while ((frag = va_arg(ap, const char *)))
		if (!strstr(r->message, frag) && !strstr(r->remedy, frag))
			fail_msg("%s: [%s] not in message [%s] nor remedy [%s]", id, frag, r->message,
				 r->remedy);
	va_end(ap);
}

static bool has_volume(const struct preflight_report *rep, const char *id, const char *vol)
{
	const struct preflight_result *r = preflight_report_find(rep, id);
	size_t i;
	json_t *v;

	json_array_foreach(r->volumes, i, v)
		if (streq(json_string_value(v), vol))
			return true;
	return false;
}

static void test_every_id_once(void **state)
{
	struct preflight_report rep;
	size_t n = 0;

	run("healthy", PREFLIGHT_SCOPE_ALL, &rep);
	for (const char *const *id = preflight_check_ids; *id; id++, n++) {
		assert_non_null(preflight_report_find(&rep, *id));
		assert_string_equal(rep.results[n].id, *id);
	}
	assert_int_equal(n, rep.n);
	assert_int_equal(n, 17);
	preflight_report_done(&rep);
}

static void test_healthy(void **state)
{
	struct preflight_report rep;

	run("healthy", PREFLIGHT_SCOPE_ALL, &rep);
	assert_true(rep.ok);
	for (size_t i = 0; i < rep.n; i++) {
		const char *id = rep.results[i].id;
		/* healthy is shaped like Debian's cloud image: /boot inside the root, no TPM. */
		enum preflight_status want =
			streq(id, "free-space") || streq(id, "vault") || streq(id, "agent-version")
				? PREFLIGHT_SKIP
			: streq(id, "boot-layout") || streq(id, "tpm2") ? PREFLIGHT_WARN
									 : PREFLIGHT_PASS;
		expect(&rep, id, want, NULL);
	}
	expect(&rep, "memory", PREFLIGHT_PASS, "MemTotal 7957 MiB", "MemAvailable 6835 MiB",
	       "needs 256 MiB", "8 GB memory is recommended", NULL);
	expect(&rep, "kernel", PREFLIGHT_PASS, "6.1.0-13-amd64", "dm-crypt is loaded", NULL);
	expect(&rep, "distro", PREFLIGHT_PASS, "Debian GNU/Linux 12", NULL);
	expect(&rep, "device", PREFLIGHT_PASS, "/dev/sda1 (/)", "/dev/sdb1 (/data)", "/dev/sdc", NULL);
	/* /boot/efi is never a volume to encrypt. */
	assert_null(strstr(preflight_report_find(&rep, "device")->message, "sda15"));
	preflight_report_done(&rep);
}

static void test_json(void **state)
{
	struct preflight_report rep;
	json_t *j, *checks, *c;

	run("busy", PREFLIGHT_SCOPE_DATA, &rep);
	j = preflight_report_to_json(&rep);
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(j, "ok")));
	checks = json_object_get(j, "checks");
	assert_int_equal(json_array_size(checks), 17);
	c = json_array_get(checks, 0);
	assert_string_equal(json_string_value(json_object_get(c, "id")), "open-files");
	assert_string_equal(json_string_value(json_object_get(c, "status")), "FAIL");
	assert_true(json_is_array(json_object_get(c, "volumes")));
	assert_true(json_is_string(json_object_get(c, "message")));
	assert_true(json_is_string(json_object_get(c, "remedy")));
	c = json_array_get(json_object_get(json_object_get(c, "details"), "users"), 0);
	assert_int_equal(json_integer_value(json_object_get(c, "pid")), 1234);
	assert_string_equal(json_string_value(json_object_get(c, "command")), "mongod");
	json_decref(j);
	preflight_report_done(&rep);
}

static void test_busy(void **state)
{
	struct preflight_report rep;

	run("busy", PREFLIGHT_SCOPE_ALL, &rep);
	assert_false(rep.ok);
	expect(&rep, "open-files", PREFLIGHT_FAIL, "pid 1234 (mongod) fd /data/db/mongod.lock",
	       "pid 1234 (mongod) cwd /data/db", "pid 1234 (mongod) map /data/db/collection-0.wt",
	       "never kills", NULL);
	assert_true(has_volume(&rep, "open-files", "/dev/sdb1 (/data)"));
	assert_null(strstr(preflight_report_find(&rep, "open-files")->message, "socket:"));
	expect(&rep, "concurrent-operation", PREFLIGHT_FAIL, "pid 2222 (resize2fs)",
	       "pid 3333 (dd) is writing onto /dev/sdc", "pid 4444 (apt-get)", NULL);
	/* dd reading from the device is no conflict. */
	assert_null(strstr(preflight_report_find(&rep, "concurrent-operation")->message, "3334"));
	preflight_report_done(&rep);
}

static void test_concurrent_lock(void **state)
{
	struct preflight_report rep;
	struct vm_lock *l = NULL;

	assert_int_equal(vm_lock_acquire("encrypt", "/dev/sdc", &l, NULL), 0);
	assert_int_equal(vm_lock_set_progress(l, 12.5), 0);
	run("healthy", PREFLIGHT_SCOPE_DATA, &rep);
	vm_lock_release(l);
	assert_false(rep.ok);
	expect(&rep, "concurrent-operation", PREFLIGHT_FAIL,
	       "An operation is already in progress: 'vmcrypt encrypt /dev/sdc'", "12.5% done", NULL);
	preflight_report_done(&rep);
}

static void test_selinux(void **state)
{
	struct preflight_report rep;

	run("selinux-enforcing", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "selinux", PREFLIGHT_FAIL, "enforcing", "system_u:system_r:vmcrypt_t:s0",
	       "do not disable SELinux", NULL);
	preflight_report_done(&rep);

	run("selinux-unconfined", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "selinux", PREFLIGHT_WARN, "unconfined_t", "restorecon", NULL);
	preflight_report_done(&rep);
	run("selinux-unconfined", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "selinux", PREFLIGHT_PASS, "enforcing", NULL);
	preflight_report_done(&rep);
}

static void test_lvm(void **state)
{
	struct preflight_report rep;

	run("lvm", PREFLIGHT_SCOPE_ALL, &rep);
	expect(&rep, "lvm", PREFLIGHT_FAIL, "LVM OS disk layout does not satisfy prerequisites",
	       "/dev/mapper/rootvg-rootlv", "--volume-type Data", NULL);
	preflight_report_done(&rep);

	run("lvm", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "lvm", PREFLIGHT_WARN, "/dev/mapper/rootvg-datalv (/srv) is an LVM logical volume: supported",
	       "/dev/sdc is an LVM physical volume whose logical volumes are not active",
	       "/dev/sda2 is an LVM physical volume in use by dm-0", NULL);
	assert_true(has_volume(&rep, "lvm", "/dev/sdc"));
	/* A PV is not a filesystem to convert. */
	expect(&rep, "device", PREFLIGHT_PASS, "/dev/sdc: LVM2_member member", NULL);
	preflight_report_done(&rep);
}

static void test_memory(void **state)
{
	struct preflight_report rep;

	run("low-memory", PREFLIGHT_SCOPE_ALL, &rep);
	assert_false(rep.ok);
	expect(&rep, "memory", PREFLIGHT_FAIL, "MemTotal 512 MiB", "MemAvailable 175 MiB",
	       "needs 256 MiB available", "does not copy the OS into memory", NULL);
	preflight_report_done(&rep);
}

static void test_ubuntu1404(void **state)
{
	struct preflight_report rep;

	run("ubuntu1404", PREFLIGHT_SCOPE_ALL, &rep);
	expect(&rep, "kernel", PREFLIGHT_FAIL,
	       "Kernel version 4.4.0-142-generic is not supported. Upgrade to kernel version 4.15",
	       "OOM killer", "dm-crypt is available", NULL);
	expect(&rep, "distro", PREFLIGHT_FAIL, "Distro ubuntu 14.04 is not supported for OS encryption",
	       "Upgrade to Ubuntu 20.04", NULL);
	preflight_report_done(&rep);
}

static void test_boot_packages(void **state)
{
	struct preflight_report rep;

	run("no-initramfs", PREFLIGHT_SCOPE_OS, &rep);
	assert_false(rep.ok);
	expect(&rep, "boot-packages", PREFLIGHT_FAIL, "cryptsetup hook",
	       "apt-get install cryptsetup-initramfs", "apt-get install grub-pc-bin", NULL);
	assert_true(has_volume(&rep, "boot-packages", "/dev/sda1 (/)"));
	preflight_report_done(&rep);

	run("no-initramfs", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "boot-packages", PREFLIGHT_SKIP, NULL);
	assert_true(rep.ok);
	preflight_report_done(&rep);

	/* dracut in place of initramfs-tools: enough with its crypt and network modules. */
	run("dracut", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "boot-packages", PREFLIGHT_PASS, "dracut with its cryptsetup support", NULL);
	preflight_report_done(&rep);

	run("dracut-no-net", PREFLIGHT_SCOPE_OS, &rep);
	assert_false(rep.ok);
	expect(&rep, "boot-packages", PREFLIGHT_FAIL, "without its network module (40network)",
	       "could not reach the vault", "apt-get install dracut-network", NULL);
	preflight_report_done(&rep);
}

static void test_boot_layout_tpm2(void **state)
{
	struct preflight_report rep;

	run("healthy", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "boot-layout", PREFLIGHT_WARN, "/boot is inside the root filesystem (/dev/sda1, ext4)",
	       "a partition of its own", "The EFI system partition is /dev/sda15", NULL);
	assert_true(has_volume(&rep, "boot-layout", "/dev/sda1 (/)"));
	expect(&rep, "tpm2", PREFLIGHT_WARN, "No TPM 2.0", "stored unsealed on /boot", "virtual TPM 2.0", NULL);
	assert_true(rep.ok); /* warnings */
	preflight_report_done(&rep);

	run("os-ready", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "boot-layout", PREFLIGHT_PASS, "/boot is a filesystem of its own (/dev/sda2, ext4)",
	       "/boot/vmcrypt", NULL);
	expect(&rep, "tpm2", PREFLIGHT_PASS, "A TPM 2.0 is there", "the agent seals to it", NULL);
	/* /boot is never a volume to encrypt. */
	assert_null(strstr(preflight_report_find(&rep, "device")->message, "sda2"));
	preflight_report_done(&rep);

	run("uefi-no-esp", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "boot-layout", PREFLIGHT_FAIL, "boots through UEFI but no EFI system partition",
	       "Mount the EFI system partition at /boot/efi", NULL);
	assert_string_equal(json_string_value(json_object_get(preflight_report_find(&rep, "boot-layout")->details,
							       "firmware")), "uefi");
	expect(&rep, "tpm2", PREFLIGHT_WARN, "No TPM 2.0", NULL); /* a TPM 1.2 cannot seal */
	assert_false(rep.ok);
	preflight_report_done(&rep);

	run("uefi-no-esp", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "boot-layout", PREFLIGHT_SKIP, "the scope is data volumes", NULL);
	expect(&rep, "tpm2", PREFLIGHT_SKIP, "the scope is data volumes", NULL);
	expect(&rep, "initramfs-network", PREFLIGHT_SKIP, "the scope is data volumes", NULL);
	preflight_report_done(&rep);
}

/* The network the initramfs needs for the vault: a device with a driver (docker0, virtual, does
 * not count), and DHCP unless the kernel command line gives ip=. */
static void test_initramfs_network(void **state)
{
	struct preflight_report rep;
	const struct preflight_result *r;

	run("os-ready", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "initramfs-network", PREFLIGHT_PASS,
	       "The initramfs brings up ens3 (virtio_net) with DHCP to ask the vault for the OS volume's key", NULL);
	r = preflight_report_find(&rep, "initramfs-network");
	assert_string_equal(json_string_value(json_object_get(r->details, "interfaces")), "ens3 (virtio_net)");
	preflight_report_done(&rep);

	/* ifupdown's static ens3 counts; networkd's file with DHCP=yes beside its Address= does not. */
	run("static-net", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "initramfs-network", PREFLIGHT_WARN,
	       "but this VM's address is static (/etc/network/interfaces): without a DHCP server at boot",
	       "add ip=ADDRESS::GATEWAY:NETMASK::INTERFACE:none to GRUB_CMDLINE_LINUX", NULL);
	assert_true(rep.ok); /* a warning */
	preflight_report_done(&rep);

	run("uefi-no-esp", PREFLIGHT_SCOPE_OS, &rep);
	expect(&rep, "initramfs-network", PREFLIGHT_FAIL, "No network device with a driver",
	       "Attach a network interface", NULL);
	preflight_report_done(&rep);
}

static void test_nested(void **state)
{
	struct preflight_report rep;
	const struct preflight_result *r;

	run("nested", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "nested-mounts", PREFLIGHT_WARN, "unsupported mount scheme [/mnt /mnt/data1]",
	       "unsupported mount scheme [/data3 /data3/data4]", NULL);
	r = preflight_report_find(&rep, "nested-mounts");
	assert_int_equal(json_array_size(json_object_get(r->details, "pairs")), 2);
	preflight_report_done(&rep);

	run("healthy", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "nested-mounts", PREFLIGHT_PASS, NULL);
	preflight_report_done(&rep);
}

static void test_xfs_readonly(void **state)
{
	struct preflight_report rep;

	run("xfs-readonly", PREFLIGHT_SCOPE_DATA, &rep);
	expect(&rep, "filesystem", PREFLIGHT_WARN,
	       "Encrypting xfs file system is not supported for data-preserving encryption",
	       "detached LUKS2 header", "--header FILE", NULL);
	assert_true(has_volume(&rep, "filesystem", "/dev/sdb1 (/data)"));
	expect(&rep, "device", PREFLIGHT_FAIL, "/dev/sdc: 10.0 GiB disk, read-only", NULL);
	assert_false(rep.ok);
	preflight_report_done(&rep);
}

static void test_scope_parse(void **state)
{
	enum preflight_scope s;

	assert_int_equal(preflight_scope_from_string("os", &s), 0);
	assert_int_equal(s, PREFLIGHT_SCOPE_OS);
	assert_int_equal(preflight_scope_from_string("Data", &s), 0);
	assert_int_equal(s, PREFLIGHT_SCOPE_DATA);
	assert_int_equal(preflight_scope_from_string("ALL", &s), 0);
	assert_int_equal(s, PREFLIGHT_SCOPE_ALL);
	assert_int_equal(preflight_scope_from_string("boot", &s), -EINVAL);
}

static void test_volumes(void **state)
{
	char root[PATH_MAX];
	struct volume *v = NULL;
	size_t n = 0;

	assert_non_null(realpath("tests/data/roots/lvm", root));
	setenv("VMCRYPT_TEST_ROOT", root, 1);
	assert_int_equal(volumes_discover(&v, &n), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
	assert_true(n >= 5);
	assert_int_equal(v[0].role, VOLUME_ROLE_OS);
	assert_string_equal(v[0].device, "/dev/mapper/rootvg-rootlv");
	assert_int_equal(v[0].kind, VOLUME_KIND_LVM);
	assert_string_equal(v[0].backing, "/dev/sda2");
	assert_string_equal(v[0].fstype, "ext4");
	assert_string_equal(v[1].mountpoint, "/data");
	assert_int_equal(v[1].kind, VOLUME_KIND_PARTITION);
	assert_string_equal(v[1].parent, "sdb");
	for (size_t i = 0; i < n; i++) {
		if (streq(v[i].name, "sda15"))
			assert_int_equal(v[i].role, VOLUME_ROLE_EXCLUDED);
		if (streq(v[i].name, "sda2")) {
			assert_int_equal(v[i].role, VOLUME_ROLE_EXCLUDED);
			assert_string_equal(v[i].excluded_why, "held by dm-0");
		}
		if (streq(v[i].name, "sdc")) {
			assert_int_equal(v[i].role, VOLUME_ROLE_CANDIDATE);
			assert_string_equal(v[i].fstype, "LVM2_member");
		}
		/* Disks with partitions are not volumes. */
		assert_false(streq(v[i].name, "sda") || streq(v[i].name, "sdb"));
	}
	volumes_free(v);

	setenv("VMCRYPT_TEST_ROOT", "/nonexistent-vmcrypt-root", 1);
	assert_int_equal(volumes_discover(&v, &n), -ENOENT);
	unsetenv("VMCRYPT_TEST_ROOT");
}

/* Probes the program passes in (the vault client lives above src/shared/vm) run in their slots:
 * their finding becomes the result, a FAIL fails the report, and vault runs before agent-version
 * so that agent-version can use what the vault probe learned. */
static int probe_calls;
static void probe_vault_fail(void *userdata, struct preflight_finding *f)
{
	int *order = userdata;

	*order = ++probe_calls;
	f->status = PREFLIGHT_FAIL;
	snprintf(f->message, sizeof(f->message), "server 10.0.2.100:8443 unreachable");
	snprintf(f->remedy, sizeof(f->remedy), "start vmcryptd");
	json_object_set_new(f->details, "server", json_string("https://10.0.2.100:8443"));
}

static void probe_version_warn(void *userdata, struct preflight_finding *f)
{
	int *order = userdata;

	assert_int_equal(*order, 1); /* the vault probe ran first */
	probe_calls++;
	f->status = PREFLIGHT_WARN;
	snprintf(f->message, sizeof(f->message), "vmcrypt 9.9");
}

static void test_probes(void **state)
{
	char path[PATH_MAX], root[PATH_MAX];
	struct preflight_report rep;
	int order = 0;
	const struct preflight_probes probes = {
		.vault = probe_vault_fail,
		.agent_version = probe_version_warn,
		.userdata = &order,
	};
	const struct preflight_result *r;

	snprintf(path, sizeof(path), "tests/data/roots/%s", "healthy");
	assert_non_null(realpath(path, root));
	setenv("VMCRYPT_TEST_ROOT", root, 1);
	probe_calls = 0;
	assert_int_equal(preflight_run_with(PREFLIGHT_SCOPE_ALL, &probes, &rep), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
	assert_int_equal(probe_calls, 2);
	assert_false(rep.ok);
	expect(&rep, "vault", PREFLIGHT_FAIL, "server 10.0.2.100:8443 unreachable", "start vmcryptd", NULL);
	expect(&rep, "agent-version", PREFLIGHT_WARN, "vmcrypt 9.9", NULL);
	r = preflight_report_find(&rep, "vault");
	assert_string_equal(json_string_value(json_object_get(r->details, "server")), "https://10.0.2.100:8443");
	preflight_report_done(&rep);

	/* without probes: SKIP, as preflight_run() */
	setenv("VMCRYPT_TEST_ROOT", root, 1);
	assert_int_equal(preflight_run_with(PREFLIGHT_SCOPE_ALL, NULL, &rep), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
	assert_true(rep.ok);
	expect(&rep, "vault", PREFLIGHT_SKIP, NULL);
	preflight_report_done(&rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_id_once),
		cmocka_unit_test(test_healthy),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_concurrent_lock),
		cmocka_unit_test(test_selinux),
		cmocka_unit_test(test_lvm),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_ubuntu1404),
		cmocka_unit_test(test_boot_packages),
		cmocka_unit_test(test_boot_layout_tpm2),
		cmocka_unit_test(test_initramfs_network),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_xfs_readonly),
		cmocka_unit_test(test_scope_parse),
		cmocka_unit_test(test_volumes),
		cmocka_unit_test(test_probes),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
