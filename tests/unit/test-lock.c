/* Unit tests for the VM operation lock and the operation journal. */
#include <errno.h>
#include <dirent.h>
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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "shared/vm/journal.h"
#include "shared/vm/lock.h"

static char dir[] = "/tmp/vmcrypt-lock.XXXXXX";

static int setup(void **state)
{
	char run[PATH_MAX], st[PATH_MAX];

	strcpy(dir, "/tmp/vmcrypt-lock.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(run, sizeof(run), "%s/run", dir);
	snprintf(st, sizeof(st), "%s/state", dir);
	setenv("VMCRYPT_RUN_DIR", run, 1);
	setenv("VMCRYPT_STATE_DIR", st, 1);
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_exclusive(void **state)
{
	struct vm_lock *l = NULL, *l2 = NULL;
	struct lock_holder h;
	char msg[1024];

	assert_int_equal(vm_lock_peek(&h), 0);
	assert_int_equal(vm_lock_acquire("encrypt", "/dev/sdc", &l, NULL), 0);
	assert_null(vm_lock_stale_holder(l));
	assert_int_equal(vm_lock_set_progress(l, 37.25), 0);

	/* A second acquisition (a different open file description) is refused, naming the first. */
	memset(&h, 0, sizeof(h));
	assert_int_equal(vm_lock_acquire("decrypt", "/dev/sdd", &l2, &h), -EAGAIN);
	assert_null(l2);
	assert_int_equal(h.pid, getpid());
	assert_string_equal(h.command, "encrypt");
	assert_string_equal(h.target, "/dev/sdc");
	assert_true(h.percent > 37.2 && h.percent < 37.3);
	assert_true(h.started > 0);
	assert_int_equal(vm_lock_format_busy(&h, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "An operation is already in progress: 'vmcrypt encrypt /dev/sdc'"));
	assert_non_null(strstr(msg, "37.2% done"));
	assert_non_null(strstr(msg, " UTC"));
	assert_int_equal(vm_lock_format_busy(&h, msg, 20), -ENOBUFS);
	assert_int_equal(strlen(msg), 19);

	memset(&h, 0, sizeof(h));
	assert_int_equal(vm_lock_peek(&h), 1);
	assert_string_equal(h.target, "/dev/sdc");

	vm_lock_release(l);
	assert_int_equal(vm_lock_peek(&h), 0);
	assert_int_equal(vm_lock_acquire("decrypt", "/dev/sdd", &l2, NULL), 0);
	assert_null(vm_lock_stale_holder(l2));
	vm_lock_release(l2);
	vm_lock_release(NULL);
}

/* A holder killed without releasing: the kernel dropped the flock, the record remains. The next
 * acquisition succeeds and reports what the dead holder was doing. */
static void test_stale_takeover(void **state)
{
	struct vm_lock *l = NULL;
	const struct lock_holder *stale;
	int status, p[2];
	pid_t child;
	char c;

	assert_int_equal(pipe(p), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct vm_lock *cl = NULL;
		if (vm_lock_acquire("resume", "/dev/vdb", &cl, NULL) < 0)
			_exit(1);
		(void)!write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	/* Held by a live child: busy. */
	assert_int_equal(vm_lock_acquire("encrypt", "/dev/vdc", &l, NULL), -EAGAIN);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &status, 0), child);

	assert_int_equal(vm_lock_acquire("encrypt", "/dev/vdc", &l, NULL), 0);
	stale = vm_lock_stale_holder(l);
	assert_non_null(stale);
	assert_int_equal(stale->pid, child);
	assert_string_equal(stale->command, "resume");
	assert_string_equal(stale->target, "/dev/vdb");
	vm_lock_release(l);
}

/* A holder without a vmcrypt record (flock(1) during maintenance): /proc/locks names it. */
static void test_foreign_holder(void **state)
{
	static const char reused[] = "{\"pid\":1,\"command\":\"encrypt\",\"target\":\"/dev/old\",\"started\":1}";
	char path[PATH_MAX + 32], msg[1024];
	struct vm_lock *l = NULL;
	struct lock_holder h;
	int p[2], status;
	pid_t child;
	char c;

	snprintf(path, sizeof(path), "%s/run", dir);
	assert_int_equal(mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/run/operation.lock", dir);
	assert_int_equal(pipe(p), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int fd = open(path, O_RDWR | O_CREAT, 0600);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			_exit(1);
		(void)!write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	/* A leftover record whose pid now belongs to another live process (pid 1): the kernel's
	 * word about the holder wins over it. */
	snprintf(path, sizeof(path), "%s/run/operation.json", dir);
	assert_int_equal(write_file_atomic(path, reused, strlen(reused), 0644), 0);
	memset(&h, 0, sizeof(h));
	assert_int_equal(vm_lock_acquire("encrypt", "/dev/vdc", &l, &h), -EAGAIN);
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	assert_int_equal(h.pid, child);
	assert_string_equal(h.target, "");
	assert_int_equal(vm_lock_format_busy(&h, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "not a vmcrypt operation"));
}

static void test_journal(void **state)
{
	struct journal_entry *e = NULL;
	const struct journal_entry *last;
	size_t n = 99;
	char path[PATH_MAX + 32];

	assert_int_equal(journal_load(&e, &n), 0);
	assert_int_equal(n, 0);
	free(e);

	assert_int_equal(journal_progress("/dev/sdc", NULL, 1, 1), -ENOENT);
	assert_int_equal(journal_begin("encrypt", "/dev/sdc", NULL), 0);
	assert_int_equal(journal_progress("/dev/sdc", "0e6b1d8c-0000-4000-8000-000000000001", 42.5, 123456789), 0);
	assert_int_equal(journal_begin("encrypt", "/dev/sdd", NULL), 0);
	assert_int_equal(journal_set_header("/dev/sdd", "/root/sdd.luks"), 0);
	assert_int_equal(journal_end("/dev/sdd", JOURNAL_FAILED, -ENOSPC), 0);
	assert_int_equal(journal_set_header("/dev/sdd", "/root/x"), -ENOENT);
	/* Starting again on sdc marks the older running entry interrupted. */
	assert_int_equal(journal_begin("resume", "/dev/sdc", NULL), 0);
	assert_int_equal(journal_end("/dev/sdc", JOURNAL_SUCCEEDED, 0), 0);

	assert_int_equal(journal_load(&e, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(e[0].command, "encrypt");
	assert_int_equal(e[0].result, JOURNAL_INTERRUPTED);
	assert_string_equal(e[0].uuid, "0e6b1d8c-0000-4000-8000-000000000001");
	assert_true(e[0].percent > 42.4 && e[0].percent < 42.6);
	assert_int_equal(e[0].rate, 123456789);
	assert_int_equal(e[1].result, JOURNAL_FAILED);
	assert_int_equal(e[1].error, -ENOSPC);
	assert_string_equal(e[1].header, "/root/sdd.luks");
	assert_string_equal(e[0].header, "");
	last = journal_find_last(e, n, "/dev/sdc");
	assert_non_null(last);
	assert_string_equal(last->command, "resume");
	assert_int_equal(last->result, JOURNAL_SUCCEEDED);
	assert_true(last->percent == 100);
	assert_int_equal(last->pid, getpid());
	assert_null(journal_find_last(e, n, "/dev/sde"));
	free(e);

	/* History is capped. */
	for (int i = 0; i < JOURNAL_MAX_ENTRIES + 5; i++)
		assert_int_equal(journal_begin("encrypt", "/dev/x", NULL), 0);
	assert_int_equal(journal_load(&e, &n), 0);
	assert_int_equal(n, JOURNAL_MAX_ENTRIES);
	free(e);

	/* A corrupt journal fails to load, and is set aside by the next write. */
	snprintf(path, sizeof(path), "%s/state/journal.json", dir);
	assert_int_equal(write_file_atomic(path, "{\"entries\":[{\"command\":1}]}", 27, 0600), 0);
	assert_int_equal(journal_load(&e, &n), -EBADMSG);
	assert_int_equal(journal_begin("decrypt", "/dev/sdc", NULL), 0);
	assert_int_equal(journal_load(&e, &n), 0);
	assert_int_equal(n, 1);
	free(e);
	snprintf(path, sizeof(path), "%s/state/journal.json.bad", dir);
	assert_int_equal(access(path, F_OK), 0);
}

/* The journal parser's good and evil inputs (the fuzz corpus): good ones parse, bad ones are
 * -EBADMSG, never a crash or a partial result. */
static void test_journal_corpus(void **state)
{
	static const char corpus[] = "fuzz/corpus/journal";
	DIR *d = opendir(corpus);
	struct dirent *de;
	int good = 0, bad = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		char *text = NULL;
		struct journal_entry *e = NULL;
		size_t n = 0;
		int r;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", corpus, de->d_name);
		assert_int_equal(read_full_file(path, 1 << 20, &text, NULL), 0);
		r = journal_parse(text, &e, &n);
		if (strncmp(de->d_name, "bad-", 4) == 0 || strncmp(de->d_name, "truncated", 9) == 0) {
			if (r != -EBADMSG)
				fail_msg("%s: expected -EBADMSG, got %d", de->d_name, r);
			bad++;
		} else {
			if (r != 0)
				fail_msg("%s: expected 0, got %d", de->d_name, r);
			free(e);
			good++;
		}
		free(text);
	}
	closedir(d);
	assert_true(good >= 2);
	assert_true(bad >= 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_takeover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_holder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
		cmocka_unit_test(test_journal_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
