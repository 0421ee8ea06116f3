/* Unit tests for the /proc scanner: a fixture tree and the live /proc with a child holding files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/string-util.h"
#include "shared/volume/proc-users.h"

static const struct proc_user *find(const struct proc_user *u, size_t n, pid_t pid, const char *how,
				    const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (u[i].pid == pid && streq(u[i].how, how) && streq(u[i].path, path))
			return &u[i];
	return NULL;
}

static void set_root(const char *fixture)
{
	char buf[PATH_MAX];

	assert_non_null(realpath(fixture, buf));
	setenv("VMCRYPT_TEST_ROOT", buf, 1);
}

static void test_fixture_mount(void **state)
{
	_cleanup_proc_users_ struct proc_user *u = NULL;
	size_t n = 0;

	set_root("tests/data/roots/open-files");
	/* In a fixture nothing can be stat()ed: matching is by path under the mount point. */
	assert_int_equal(proc_users_on_mount("/data", makedev(8, 17), &u, &n), 0);
	unsetenv("VMCRYPT_TEST_ROOT");

	assert_non_null(find(u, n, 1234, "cwd", "/data/db"));
	assert_non_null(find(u, n, 1234, "fd", "/data/db/mongod.lock"));
	assert_non_null(find(u, n, 1234, "map", "/data/db/collection-0.wt"));
	assert_non_null(find(u, n, 1234, "map", "/data/db/deleted.wt (deleted)"));
	assert_string_equal(find(u, n, 1234, "fd", "/data/db/mongod.lock")->comm, "mongod");
	assert_non_null(find(u, n, 1300, "fd", "/data/docker/overlay2/x"));
	/* "/datadir" is not under "/data"; sockets, /var and pid 1 are not either. */
	assert_null(find(u, n, 1300, "cwd", "/datadir"));
	assert_null(find(u, n, 1234, "fd", "socket:[4711]"));
	assert_null(find(u, n, 1234, "fd", "/var/log/mongodb/mongod.log"));
	/* The twice-mapped file is listed once; results are in pid order. */
	assert_int_equal(n, 5);
	for (size_t i = 1; i < n; i++)
		assert_true(u[i - 1].pid <= u[i].pid);
}

static void test_fixture_root_mount(void **state)
{
	_cleanup_proc_users_ struct proc_user *u = NULL;
	size_t n = 0;

	set_root("tests/data/roots/open-files");
	assert_int_equal(proc_users_on_mount("/", makedev(8, 1), &u, &n), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
	assert_non_null(find(u, n, 1, "exe", "/usr/lib/systemd/systemd"));
	assert_non_null(find(u, n, 1, "fd", "/dev/null"));
}

static void test_no_proc(void **state)
{
	struct proc_user *u = NULL;
	size_t n = 0;

	setenv("VMCRYPT_TEST_ROOT", "/nonexistent-vmcrypt-root", 1);
	assert_int_equal(proc_users_on_mount("/", 0, &u, &n), -ENOENT);
	unsetenv("VMCRYPT_TEST_ROOT");
	assert_null(u);
	proc_users_free(NULL);
}

/* A child opens one file, maps another and sits in a third's directory; the live scan must name
 * each with the child's pid and must not list the scanning process itself. */
static void test_live(void **state)
{
	char dir[] = "/tmp/vmcrypt-proc.XXXXXX", held[128], mapped[128], sub[128];
	int ready[2];
	pid_t child;
	struct stat st_dir, st_held;
	_cleanup_proc_users_ struct proc_user *u = NULL;
	_cleanup_proc_users_ struct proc_user *d = NULL;
	size_t n = 0, nd = 0;
	char c;
	int r, fd;

	assert_non_null(mkdtemp(dir));
	snprintf(held, sizeof(held), "%s/held", dir);
	snprintf(mapped, sizeof(mapped), "%s/mapped", dir);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	fd = open(mapped, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	close(open(held, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(pipe(ready), 0);

	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int h = open(held, O_RDONLY);
		int m = open(mapped, O_RDONLY);
		void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m, 0);

		close(m); /* the mapping alone must keep it visible */
		if (h < 0 || p == MAP_FAILED || chdir(sub) < 0)
			_exit(1);
		(void)!write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);

	/* Our own descriptors on the directory must not show up. */
	fd = open(held, O_RDONLY);
	assert_int_equal(stat(dir, &st_dir), 0);
	r = proc_users_on_mount(dir, st_dir.st_dev, &u, &n);
	assert_true(r >= 0);
	assert_int_equal(stat(held, &st_held), 0);
	r = proc_users_of_device(&st_held, &d, &nd);
	assert_true(r >= 0);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(fd);

	assert_non_null(find(u, n, child, "fd", held));
	assert_non_null(find(u, n, child, "map", mapped));
	assert_non_null(find(u, n, child, "cwd", sub));
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(u[i].pid, getpid());
	/* By device and inode: only the held file, only the child. */
	assert_int_equal(nd, 1);
	assert_int_equal(d[0].pid, child);
	assert_string_equal(d[0].how, "fd");

	unlink(held);
	unlink(mapped);
	rmdir(sub);
	rmdir(dir);
}

static void test_of_device_rejects(void **state)
{
	struct stat st = { .st_mode = S_IFDIR | 0755 };
	struct proc_user *u = NULL;
	size_t n = 0;

	assert_int_equal(proc_users_of_device(&st, &u, &n), -ENOTBLK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_mount),
		cmocka_unit_test(test_fixture_root_mount),
		cmocka_unit_test(test_no_proc),
		cmocka_unit_test(test_live),
		cmocka_unit_test(test_of_device_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
