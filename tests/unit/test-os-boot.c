/* Unit tests of /boot/vmcrypt/os.conf (shared/client/os-boot.h): what the initramfs reads must be
 * exactly what the agent wrote, and nothing else may pass. */
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

#include "shared/client/os-boot.h"

static int parse(const char *text, struct os_boot_conf *c, char *err, size_t len)
{
	return os_boot_conf_parse(text, "os.conf", c, err, len);
}

static void test_roundtrip(void **state)
{
	char dir[] = "/tmp/test-os-boot-XXXXXX", path[64], err[256];
	struct os_boot_conf c = { 0 }, d;
	(void)state;

	assert_non_null(mkdtemp(dir));
	strcpy(c.device, "/dev/disk/by-id/virtio-vmcrypt-root-part1");
	strcpy(c.header, "os.luks");
	strcpy(c.name, "vmcrypt-os");
	strcpy(c.volume, "os");
	assert_int_equal(os_boot_conf_write(dir, &c), 0);
	assert_int_equal(os_boot_conf_load(dir, &d, err, sizeof(err)), 0);
	assert_memory_equal(&c, &d, sizeof(c));
	snprintf(path, sizeof(path), "%s/os.conf", dir);
	unlink(path);
	assert_int_equal(os_boot_conf_load(dir, &d, err, sizeof(err)), -ENOENT);
	rmdir(dir);
	/* A value that would not read back is not written. */
	strcpy(c.header, "../os.luks");
	assert_int_equal(os_boot_conf_write("/nonexistent", &c), -EINVAL);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"Device=/dev/vda1\nHeader=os.luks\nName=vmcrypt-os\n",                   /* no Volume= */
		"Device=vda1\nHeader=os.luks\nName=vmcrypt-os\nVolume=os\n",             /* relative device */
		"Device=/dev/vda1\nHeader=/boot/os.luks\nName=vmcrypt-os\nVolume=os\n",  /* header path */
		"Device=/dev/vda1\nHeader=..\nName=vmcrypt-os\nVolume=os\n",
		"Device=/dev/vda1\nHeader=os.luks\nName=vmcrypt/os\nVolume=os\n",        /* mapping name */
		"Device=/dev/vda1\nHeader=os.luks\nName=vmcrypt os\nVolume=os\n",
		"Device=/dev/vda1\nHeader=os.luks\nName=vmcrypt-os\nVolume=-os\n",       /* volume name */
		"Device=/dev/vda1\nHeader=os.luks\nName=vmcrypt-os\nVolume=os\nKey=x\n", /* unknown key */
		"Device=/dev/vda1\nHeader os.luks\n",                                    /* no '=' */
	};
	struct os_boot_conf c;
	char err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(parse(bad[i], &c, err, sizeof(err)), -EINVAL);
		assert_true(strncmp(err, "os.conf", 7) == 0); /* the message names the file */
	}
	assert_int_equal(parse("# comment\n\nDevice=/dev/vda1\r\nHeader=os.luks\nName=vmcrypt-os\nVolume=os\n",
			       &c, err, sizeof(err)), 0);
	assert_string_equal(c.device, "/dev/vda1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
