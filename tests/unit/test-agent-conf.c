/* Unit tests for agent.conf and the VM credential (src/shared/client/agent-conf.c): real files
 * with comments, blank lines, CRLF and odd spacing (tests/data/agent-conf/), every error naming its
 * line, defaults, the write + load round trip with modes, and the credential's permission rule. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "shared/client/agent-conf.h"
#include "shared/secret.h"

static char *fixture(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tests/data/agent-conf/%s", getenv("VMCRYPT_TOP") ?: ".", name);
	return buf;
}

/* A fresh configuration directory, set as $VMCRYPT_CONF_DIR. */
static char confdir[64];
static int setup_dir(void **state)
{
	strcpy(confdir, "/tmp/vmcrypt-agent-conf.XXXXXX");
	assert_non_null(mkdtemp(confdir));
	setenv("VMCRYPT_CONF_DIR", confdir, 1);
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", confdir);
	assert_int_equal(system(cmd), 0);
	unsetenv("VMCRYPT_CONF_DIR");
	return 0;
}

static void test_defaults(void **state)
{
	struct agent_conf c;
	char path[PATH_MAX], err[512] = "";

	agent_conf_init(&c);
	assert_int_equal(c.poll_interval, 30);
	assert_int_equal(c.report_interval, 60);
	assert_int_equal(c.progress_interval, 5);
	assert_string_equal(c.crypttab, "/etc/crypttab");
	assert_string_equal(c.fstab, "/etc/fstab");
	assert_true(c.online);
	assert_false(c.stop_units_auto);
	assert_int_equal(c.n_stop_units + c.n_include + c.n_exclude, 0);
	assert_string_equal(c.server, "");
	assert_int_equal(c.seal_credential, AGENT_SEAL_AUTO);
	assert_string_equal(agent_seal_to_string(AGENT_SEAL_YES), "yes");
	assert_null(agent_seal_to_string(_AGENT_SEAL_MAX));

	/* What enroll writes: the four keys, everything else stays at its default. */
	memset(&c, 0xaa, sizeof(c));
	assert_int_equal(agent_conf_load(fixture("enrolled.conf", path, sizeof(path)), &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, "https://10.0.2.100:8443");
	assert_string_equal(c.ca_file, "");
	assert_string_equal(c.proxy, "");
	assert_string_equal(c.vm, "vm1");
	assert_int_equal(c.poll_interval, 30);
	assert_int_equal(c.report_interval, 60);
	assert_int_equal(c.progress_interval, 5);
	assert_string_equal(c.fstab, "/etc/fstab");
	assert_true(c.online);
}

static void test_full_file(void **state)
{
	struct agent_conf c;
	char path[PATH_MAX], err[512] = "";

	assert_int_equal(agent_conf_load(fixture("full.conf", path, sizeof(path)), &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, "https://vault.internal.example:8443");
	assert_string_equal(c.ca_file, "/etc/vmcrypt/ca.pem");
	assert_string_equal(c.proxy, "http://proxy.internal.example:3128");
	assert_string_equal(c.vm, "db-01");
	assert_int_equal(c.poll_interval, 120); /* "PollInterval = 120": blanks around '=' */
	assert_int_equal(c.report_interval, 300);
	assert_int_equal(c.progress_interval, 10);
	assert_false(c.stop_units_auto);
	assert_int_equal(c.n_stop_units, 3); /* several spaces and a tab between entries */
	assert_string_equal(c.stop_units[0], "postgresql.service");
	assert_string_equal(c.stop_units[1], "docker.service");
	assert_string_equal(c.stop_units[2], "containerd.service");
	assert_int_equal(c.n_include, 3);
	assert_string_equal(c.include[0], "/data");
	assert_string_equal(c.include[1], "/srv/www");
	assert_string_equal(c.include[2], "/dev/vdd");
	assert_int_equal(c.n_exclude, 1);
	assert_string_equal(c.exclude[0], "/scratch");
	assert_false(c.online);
	assert_int_equal(c.seal_credential, AGENT_SEAL_NO);
}

static void test_crlf_and_auto(void **state)
{
	struct agent_conf c;
	char path[PATH_MAX], err[512] = "";

	assert_int_equal(agent_conf_load(fixture("crlf-auto.conf", path, sizeof(path)), &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, "https://10.0.2.100:8443");
	assert_string_equal(c.vm, "vm1");
	assert_true(c.stop_units_auto);
	assert_int_equal(c.n_stop_units, 0);
}

static void expect_bad(const char *name, const char *needle)
{
	struct agent_conf c, before;
	char path[PATH_MAX], err[512] = "";

	memset(&c, 0x5a, sizeof(c));
	before = c;
	assert_int_equal(agent_conf_load(fixture(name, path, sizeof(path)), &c, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("%s: [%s] not in [%s]", name, needle, err);
	/* *ret is set only on success */
	assert_memory_equal(&c, &before, sizeof(c));
}

static void test_errors_name_the_line(void **state)
{
	expect_bad("bad-unknown.conf", "bad-unknown.conf:4: unknown key PolInterval");
	expect_bad("bad-no-server.conf", "Server= is missing");
	expect_bad("bad-interval.conf", "bad-interval.conf:2: ReportInterval= must be a number");
	expect_bad("bad-http.conf", "bad-http.conf:1: Server= must be an https:// URL");
	expect_bad("bad-noequals.conf", "bad-noequals.conf:2: not a Key=value line");
	expect_bad("bad-online.conf", "bad-online.conf:2: Online= must be auto or no");
	expect_bad("bad-seal.conf", "bad-seal.conf:2: SealCredential= must be auto, yes or no, not \"maybe\"");
}

static void test_parse_limits(void **state)
{
	char text[8192], err[512] = "";
	struct agent_conf *c = malloc(sizeof(*c));
	size_t n;

	assert_non_null(c);
	/* 32 list entries fit, 33 do not */
	for (int max = 32; max <= 33; max++) {
		n = (size_t)snprintf(text, sizeof(text), "Server=https://h:1\nExclude=");
		for (int i = 0; i < max; i++)
			n += (size_t)snprintf(text + n, sizeof(text) - n, "/m%d ", i);
		agent_conf_init(c);
		assert_int_equal(agent_conf_parse(text, "t.conf", c, err, sizeof(err)), max == 32 ? 0 : -EINVAL);
	}
	assert_non_null(strstr(err, "t.conf:2: Exclude= has more than 32 entries"));
	assert_int_equal(c->n_exclude, 32);

	/* a value longer than its field */
	n = (size_t)snprintf(text, sizeof(text), "Server=https://h:1\nVM=");
	memset(text + n, 'a', 100);
	text[n + 100] = 0;
	agent_conf_init(c);
	assert_int_equal(agent_conf_parse(text, "t.conf", c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:2:"));

	/* a later line replaces an earlier one; an empty list clears it */
	agent_conf_init(c);
	assert_int_equal(agent_conf_parse("Server=https://a:1\nServer=https://b:2\nInclude=/x /y\nInclude=\n",
					  "t.conf", c, err, sizeof(err)), 0);
	assert_string_equal(c->server, "https://b:2");
	assert_int_equal(c->n_include, 0);

	/* PollInterval past a day */
	agent_conf_init(c);
	assert_int_equal(agent_conf_parse("Server=https://a:1\nPollInterval=86401\n", "t.conf", c, err, sizeof(err)),
			 -EINVAL);
	free(c);
}

static void test_missing_file(void **state)
{
	struct agent_conf c;
	char err[512] = "";

	/* NULL: path_conf_dir()/agent.conf, which the fresh directory lacks */
	assert_int_equal(agent_conf_load(NULL, &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/agent.conf: not found"));
	assert_non_null(strstr(err, "vmcrypt enroll"));
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Only the files named exist in dir: no temporary file is left behind. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_write_round_trip(void **state)
{
	struct agent_conf *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	char path[PATH_MAX + 32], err[512] = "", sub[PATH_MAX];
	char *text = NULL;

	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(agent_conf_load(fixture("full.conf", path, sizeof(path)), a, err, sizeof(err)), 0);
	/* NULL writes into path_conf_dir(), created when missing (here one level down) */
	snprintf(sub, sizeof(sub), "%s/etc", confdir);
	setenv("VMCRYPT_CONF_DIR", sub, 1);
	umask(077); /* the mode is set explicitly, whatever the umask */
	assert_int_equal(agent_conf_write(NULL, a), 0);
	umask(022);
	snprintf(path, sizeof(path), "%s/agent.conf", sub);
	assert_int_equal(mode_of(path), 0644);
	assert_int_equal(count_entries(sub), 1);
	assert_int_equal(read_full_file(path, 65536, &text, NULL), 0);
	assert_true(text[0] == '#'); /* the comment header */
	assert_non_null(strstr(text, "\nServer=https://vault.internal.example:8443\n"));
	assert_non_null(strstr(text, "\nStopUnits=postgresql.service docker.service containerd.service\n"));
	assert_non_null(strstr(text, "\nSealCredential=no\n"));
	free(text);
	memset(b, 0, sizeof(*b));
	assert_int_equal(agent_conf_load(NULL, b, err, sizeof(err)), 0);
	assert_memory_equal(a, b, sizeof(*a));

	/* defaults are not written, and still come back */
	agent_conf_init(a);
	strcpy(a->server, "https://10.0.2.100:8443");
	strcpy(a->vm, "vm1");
	a->stop_units_auto = true;
	assert_int_equal(agent_conf_write(path, a), 0);
	assert_int_equal(read_full_file(path, 65536, &text, NULL), 0);
	assert_null(strstr(text, "\nPollInterval="));
	assert_null(strstr(text, "\nFstab="));
	assert_null(strstr(text, "\nSealCredential="));
	assert_non_null(strstr(text, "\nStopUnits=auto\n"));
	free(text);
	assert_int_equal(agent_conf_load(path, b, err, sizeof(err)), 0);
	assert_memory_equal(a, b, sizeof(*a));
	setenv("VMCRYPT_CONF_DIR", confdir, 1);
	free(a);
	free(b);
}

static void test_write_refuses_what_would_not_load(void **state)
{
	struct agent_conf *c = malloc(sizeof(*c));
	char path[PATH_MAX];

	assert_non_null(c);
	snprintf(path, sizeof(path), "%s/agent.conf", confdir);
	agent_conf_init(c);
	assert_int_equal(agent_conf_write(path, c), -EINVAL); /* no Server= */
	strcpy(c->server, "https://h:1");
	strcpy(c->proxy, "http://p:3128\nVM=evil");
	assert_int_equal(agent_conf_write(path, c), -EINVAL); /* a newline would inject a key */
	c->proxy[0] = 0;
	strcpy(c->include[0], "/mnt/with space");
	c->n_include = 1;
	assert_int_equal(agent_conf_write(path, c), -EINVAL); /* a list entry with a blank splits */
	assert_int_equal(access(path, F_OK), -1);
	free(c);
}

static const char cred[] = "vmc-vm-0123456789abcdef0123456789abcdef-"
			   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_credential(void **state)
{
	char path[PATH_MAX], err[512] = "";
	void *got = NULL;
	size_t n = 0;
	int fd;

	assert_int_equal(agent_credential_read(NULL, &got, &n, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "vmcrypt enroll"));

	umask(0);
	assert_int_equal(agent_credential_write(NULL, cred, strlen(cred)), 0);
	umask(022);
	snprintf(path, sizeof(path), "%s/credential", confdir);
	assert_int_equal(mode_of(path), 0600);
	assert_int_equal(count_entries(confdir), 1);
	assert_int_equal(agent_credential_read(NULL, &got, &n, err, sizeof(err)), 0);
	assert_int_equal(n, strlen(cred));
	assert_memory_equal(got, cred, n);
	assert_int_equal(((char *)got)[n], 0); /* NUL-terminated */
	assert_true(secret_size(got) > n);
	secret_free(got);
	got = NULL;

	/* a hand-written file with a trailing newline */
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, cred, strlen(cred)), (ssize_t)strlen(cred));
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	assert_int_equal(agent_credential_read(path, &got, &n, err, sizeof(err)), 0);
	assert_int_equal(n, strlen(cred));
	secret_free(got);
	got = NULL;

	/* open to the group: refused, with the remedy */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(agent_credential_read(path, &got, &n, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod 0600"));
	assert_null(got);

	/* not a credential */
	assert_int_equal(agent_credential_write(path, "hello", 5), -EINVAL);
	assert_int_equal(agent_credential_write(path, "vmc-vm-a b", 10), -EINVAL);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "vmc-admin-abc\n", 14), 14);
	close(fd);
	assert_int_equal(agent_credential_read(path, &got, &n, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "vmc-admin-abc")); /* never echoes the file's content */
	/* overwriting replaces atomically, mode stays 0600 */
	assert_int_equal(agent_credential_write(path, cred, strlen(cred)), 0);
	assert_int_equal(mode_of(path), 0600);
	assert_int_equal(agent_credential_read(path, &got, &n, err, sizeof(err)), 0);
	secret_free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_crlf_and_auto),
		cmocka_unit_test(test_errors_name_the_line),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test_setup_teardown(test_missing_file, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_round_trip, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_refuses_what_would_not_load, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_credential, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
