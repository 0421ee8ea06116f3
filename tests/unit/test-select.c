/* Unit tests for the agent's data-volume selection on the fixture root tests/data/roots/agent
 * (mountinfo, /sys, udev links and its etc/fstab) and for the volume name rule. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <cmocka.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/select.h"

#define ROOT "tests/data/roots/agent"

struct run {
	struct agent_volume *v;
	size_t n;
	char err[512];
	int r;
};

/* Selects with items "+X" (Include=X) and "-X" (Exclude=X), NULL-terminated. */
static struct run select_with(const char *item, ...)
{
	static char inc[8][PATH_MAX], exc[8][PATH_MAX];
	char root[PATH_MAX], fstab[PATH_MAX + 16];
	size_t ni = 0, ne = 0;
	struct run run = {};
	va_list ap;

	va_start(ap, item);
	for (const char *s = item; s; s = va_arg(ap, const char *)) {
		assert_true(ni < 8 && ne < 8);
		snprintf(s[0] == '+' ? inc[ni++] : exc[ne++], PATH_MAX, "%s", s + 1);
	}
	va_end(ap);
	assert_non_null(realpath(ROOT, root));
	snprintf(fstab, sizeof(fstab), "%s/etc/fstab", root);
	setenv("VMCRYPT_TEST_ROOT", root, 1);
	run.r = agent_select_volumes(fstab, inc, ni, exc, ne, &run.v, &run.n, run.err, sizeof(run.err));
	unsetenv("VMCRYPT_TEST_ROOT");
	return run;
}

static const struct agent_volume *by_name(const struct run *run, const char *name)
{
	for (size_t i = 0; i < run->n; i++)
		if (streq(run->v[i].name, name))
			return &run->v[i];
	return NULL;
}

static void names_are(const struct run *run, const char *const *names, size_t n)
{
	assert_int_equal(run->r, 0);
	assert_int_equal(run->n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(run->v[i].name, names[i]);
}

static void test_discovery(void **state)
{
	static const char *const want[] = { "data", "srv-www", "srv-www-2", "data_recovery", "db",
					    "backup", "old" };
	struct run run = select_with(NULL);
	const struct agent_volume *a;

	/* Not selected: / and /boot/efi, the snap's squashfs loop, swap (sdg), tmpfs, the bind
	 * mount, NFS, the unresolvable /gone, sdc (in no fstab entry), sdh1 (under the mapping). */
	names_are(&run, want, ELEMENTSOF(want));

	a = by_name(&run, "data");
	assert_string_equal(a->device, "/dev/sdb1");
	assert_string_equal(a->kernel_name, "sdb1");
	assert_int_equal(a->devnum, makedev(8, 17));
	assert_string_equal(a->mountpoint, "/data");
	assert_string_equal(a->fstype, "ext4");
	assert_string_equal(a->fs_uuid, "22222222-2222-4222-8222-222222222222");
	assert_string_equal(a->fstab_source, "UUID=22222222-2222-4222-8222-222222222222");
	assert_string_equal(a->fstab_options, "defaults");
	assert_string_equal(a->mount_options, "rw,relatime");
	assert_string_equal(a->mapper, "");
	assert_true(a->mounted && a->in_fstab);
	assert_false(a->already_luks || a->ours || a->included);

	a = by_name(&run, "srv-www");
	assert_string_equal(a->mountpoint, "/srv/www");
	assert_string_equal(a->fstype, "xfs");
	assert_string_equal(a->fstab_source, "/dev/sdd1");
	/* /srv-www sanitizes to the same name: the second one gets -2. It has no fstab entry. */
	a = by_name(&run, "srv-www-2");
	assert_string_equal(a->mountpoint, "/srv-www");
	assert_false(a->in_fstab);
	assert_string_equal(a->fstab_source, "");
	/* "data-recovery" would be the vault name of data's recovery passphrase. */
	assert_string_equal(by_name(&run, "data_recovery")->mountpoint, "/data-recovery");

	/* Already ours and open: named after its mapping, described by the device below it. */
	a = by_name(&run, "db");
	assert_string_equal(a->device, "/dev/sdh1");
	assert_string_equal(a->mapper, "/dev/mapper/vmcrypt-db");
	assert_string_equal(a->mountpoint, "/var/lib/db");
	assert_string_equal(a->fstab_source, "/dev/mapper/vmcrypt-db");
	assert_true(a->mounted && a->in_fstab && a->already_luks && a->ours);

	/* In fstab by its label, not mounted. */
	a = by_name(&run, "backup");
	assert_string_equal(a->device, "/dev/sde");
	assert_string_equal(a->mountpoint, "/backup");
	assert_string_equal(a->fstab_source, "LABEL=backup");
	assert_string_equal(a->fstab_options, "defaults,nofail");
	assert_string_equal(a->fstype, "ext4");
	assert_string_equal(a->mount_options, "");
	assert_true(a->in_fstab);
	assert_false(a->mounted);

	/* Ours in fstab, mapping not open (the vault was down at boot). */
	a = by_name(&run, "old");
	assert_string_equal(a->device, "");
	assert_string_equal(a->mapper, "/dev/mapper/vmcrypt-old");
	assert_string_equal(a->mountpoint, "/old");
	assert_true(a->ours && a->already_luks && a->in_fstab);
	assert_false(a->mounted);
	free(run.v);
}

static void test_include(void **state)
{
	static const char *const two[] = { "backup", "data" };
	struct run run;

	/* An unmounted disk in no fstab entry: its kernel name. */
	run = select_with("+/dev/sdc", NULL);
	assert_int_equal(run.r, 0);
	assert_int_equal(run.n, 1);
	assert_string_equal(run.v[0].name, "sdc");
	assert_string_equal(run.v[0].mountpoint, "");
	assert_true(run.v[0].included);
	assert_false(run.v[0].mounted);
	free(run.v);

	/* Include order; the same device twice (mount point and label) counts once. */
	run = select_with("+/backup", "+LABEL=backup", "+/data/", NULL);
	names_are(&run, two, 2);
	assert_true(run.v[0].included && run.v[1].included);
	free(run.v);

	/* A device that an fstab entry names gets its mount point. */
	run = select_with("+/dev/sde", NULL);
	assert_int_equal(run.r, 0);
	assert_int_equal(run.n, 1);
	assert_string_equal(run.v[0].mountpoint, "/backup");
	assert_string_equal(run.v[0].fstab_source, "LABEL=backup");
	free(run.v);

	/* Include= overrides discovery's loop rule. */
	run = select_with("+/snap/core/123", NULL);
	assert_int_equal(run.r, 0);
	assert_int_equal(run.n, 1);
	assert_string_equal(run.v[0].name, "snap-core-123");
	assert_string_equal(run.v[0].device, "/dev/loop0");
	free(run.v);

	/* What Include= can never name, and what names nothing. */
	run = select_with("+/", NULL);
	assert_int_equal(run.r, -EINVAL);
	assert_string_equal(run.err, "Include=/: the OS volume is not a data volume");
	run = select_with("+/boot/efi", NULL);
	assert_int_equal(run.r, -EINVAL);
	run = select_with("+/dev/sdg", NULL);
	assert_int_equal(run.r, -EINVAL);
	assert_string_equal(run.err, "Include=/dev/sdg: swap is not a data volume");
	run = select_with("+/dev/sdh1", NULL);
	assert_int_equal(run.r, -EINVAL);
	run = select_with("+/nope", NULL);
	assert_int_equal(run.r, -ENOENT);
	assert_string_equal(run.err, "Include=/nope: no filesystem is mounted there and fstab has no entry for it");
	run = select_with("+/gone", NULL);
	assert_int_equal(run.r, -ENOENT);
	run = select_with("+/tmp", NULL);
	assert_int_equal(run.r, -ENOENT);
	run = select_with("+/dev/sdz", NULL);
	assert_int_equal(run.r, -ENOENT);
	/* An absolute path with '=' is a mount point, not a tag. */
	run = select_with("+/mnt/a=b", NULL);
	assert_int_equal(run.r, -ENOENT);
	assert_string_equal(run.err, "Include=/mnt/a=b: no filesystem is mounted there and fstab has no entry for it");
	run = select_with("+nas:/export", NULL);
	assert_int_equal(run.r, -EINVAL);
}

static void test_exclude(void **state)
{
	static const char *const left[] = { "srv-www", "data_recovery", "db" };
	static const char *const left2[] = { "data", "srv-www", "data_recovery", "old" };
	struct run run;

	/* By mount point, fstab source, device and mapper; names are given after excluding. */
	run = select_with("-/data", "-LABEL=backup", "-/dev/sdd1", "-/dev/mapper/vmcrypt-old", NULL);
	names_are(&run, left, ELEMENTSOF(left));
	assert_string_equal(run.v[0].mountpoint, "/srv-www");
	free(run.v);

	/* By the LUKS UUID of the device under a mapping, a trailing slash, a udev link. */
	run = select_with("-UUID=88888888-8888-4888-8888-888888888888", "-/srv-www/",
			  "-/dev/disk/by-uuid/55555555-5555-4555-8555-555555555555", NULL);
	names_are(&run, left2, ELEMENTSOF(left2));
	free(run.v);

	/* Exclude wins over Include. */
	run = select_with("+/data", "-/dev/sdb1", NULL);
	assert_int_equal(run.r, 0);
	assert_int_equal(run.n, 0);
	free(run.v);
}

static void test_missing_fstab(void **state)
{
	char root[PATH_MAX], err[256];
	struct agent_volume *v = NULL;
	size_t n = 0;

	assert_non_null(realpath(ROOT, root));
	setenv("VMCRYPT_TEST_ROOT", root, 1);
	assert_int_equal(agent_select_volumes("/nonexistent-vmcrypt/fstab", NULL, 0, NULL, 0, &v, &n, err,
					      sizeof(err)), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
	/* Only what is mounted: no backup, no old; db has no fstab entry now. */
	assert_int_equal(n, 5);
	assert_string_equal(v[4].name, "db");
	assert_false(v[4].in_fstab);
	free(v);
}

static void name_is(const char *mp, const char *kernel, const char *want)
{
	char buf[AGENT_NAME_MAX + 1];

	assert_string_equal(agent_volume_name(mp, kernel, buf, sizeof(buf)), want);
}

static void test_names(void **state)
{
	char long_mp[200], want[AGENT_NAME_MAX + 1], buf[128];

	name_is("/data", "sdb1", "data");
	name_is("/srv/www", "sdb1", "srv-www");
	name_is("/srv//www/", "sdb1", "srv-www");
	name_is("/var/lib/docker", "vdb", "var-lib-docker");
	name_is("", "vdb", "vdb");
	name_is(NULL, "loop3", "loop3");
	name_is("/", "sda1", "sda1");
	name_is("/srv/my files", "x", "srv-my_files");
	name_is("/mnt/caf\xc3\xa9", "x", "mnt-caf__");
	name_is("/.hidden", "x", "hidden");
	name_is("/_x/y", "x", "x-y");
	name_is("/data-recovery", "x", "data_recovery");
	name_is("/a/recovery", "x", "a_recovery");
	name_is("/recovery", "x", "recovery");
	name_is("/...", "", "volume");
	name_is("", "", "volume");
	memset(long_mp, 'a', sizeof(long_mp));
	long_mp[0] = '/';
	long_mp[sizeof(long_mp) - 1] = 0;
	memset(want, 'a', AGENT_NAME_MAX);
	want[AGENT_NAME_MAX] = 0;
	name_is(long_mp, "x", want);

	assert_int_equal(agent_volume_mapper_path("data", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/dev/mapper/vmcrypt-data");
	assert_int_equal(agent_volume_mapper_name("srv-www", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "vmcrypt-srv-www");
	assert_int_equal(agent_volume_mapper_path("a b", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(agent_volume_mapper_path("-x", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(agent_volume_mapper_path("data", buf, 10), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_discovery),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_exclude),
		cmocka_unit_test(test_missing_fstab),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
