/* Unit tests for the state paths' environment overrides (src/shared/paths.c): they are read
 * with secure_getenv(), so a copy of this binary given a file capability, run by an unprivileged
 * user (who then gains the capability: AT_SECURE), ignores them. Needs root (to switch to nobody)
 * and setcap(8); skipped otherwise. */
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/paths.h"

/* Runs exe --print as nobody with the overrides set; its output into out. Returns its exit
 * status. */
static int run_print(const char *exe, char *out, size_t len)
{
	char *argv[] = { (char *)exe, "--print", NULL };
	char *envp[] = { "VMCRYPT_STATE_DIR=/nonexistent/state", "VMCRYPT_RUN_DIR=/nonexistent/run",
			 "VMCRYPT_TEST_ROOT=/nonexistent/root",
			 /* LeakSanitizer cannot stop the threads of a non-dumpable process. */
			 "ASAN_OPTIONS=detect_leaks=0", NULL };
	int p[2], status;
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(126);
		execve(exe, argv, envp);
		_exit(127);
	}
	close(p[1]);
	while (got + 1 < len && (n = read(p[0], out + got, len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = 0;
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_secure_mode_ignores_overrides(void **state)
{
	char exe[] = "/tmp/vmcrypt-test-paths.XXXXXX", cmd[256], out[512];
	struct stat st;
	int in, fd;

	if (geteuid() != 0 || system("command -v setcap >/dev/null 2>&1") != 0)
		skip();
	/* A copy of this binary: it answers --print with the three paths. */
	fd = mkstemp(exe);
	assert_true(fd >= 0);
	in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_true(in >= 0);
	assert_int_equal(fstat(in, &st), 0);
	assert_int_equal(sendfile(fd, in, NULL, (size_t)st.st_size), st.st_size);
	close(in);
	assert_int_equal(fchmod(fd, 0755), 0);
	close(fd);

	/* Without privileges the overrides apply... */
	assert_int_equal(run_print(exe, out, sizeof(out)), 0);
	assert_string_equal(out, "/nonexistent/state\n/nonexistent/run\n/nonexistent/root\n");

	/* ...with a file capability nobody gains (AT_SECURE) they do not. */
	snprintf(cmd, sizeof(cmd), "setcap cap_net_bind_service=ep %s 2>/dev/null", exe);
	if (system(cmd) != 0) {
		unlink(exe);
		skip(); /* a filesystem without security xattrs */
	}
	assert_int_equal(run_print(exe, out, sizeof(out)), 0);
	unlink(exe);
	assert_string_equal(out, "/var/lib/vmcrypt\n/run/vmcrypt\n\n");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secure_mode_ignores_overrides),
	};

	if (argc == 2 && strcmp(argv[1], "--print") == 0) {
		printf("%s\n%s\n%s\n", path_state_dir(), path_run_dir(), path_test_root());
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
