/* Unit tests for the holding units: cgroup parsing (v2, v1, hybrid), classification (services,
 * sessions, init.scope, Docker and other containers, VMs), the fixture tree
 * tests/data/roots/holders, the stop plan, and systemctl stop/start through a fake systemctl. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/units.h"

#define DOCKER_ID "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081"

static void test_cgroup_path(void **state)
{
	char p[PATH_MAX], small[8];

	assert_int_equal(units_cgroup_path("0::/system.slice/foo.service\n", p, sizeof(p)), 0);
	assert_string_equal(p, "/system.slice/foo.service");
	/* cgroup v1: the name=systemd hierarchy, whatever the controllers say. */
	assert_int_equal(units_cgroup_path("12:pids:/system.slice/a.service\n3:cpu,cpuacct:/\n"
					   "1:name=systemd:/system.slice/nginx.service\n",
					   p, sizeof(p)), 0);
	assert_string_equal(p, "/system.slice/nginx.service");
	/* Hybrid: the unified line shows only the root, name=systemd has the unit. */
	assert_int_equal(units_cgroup_path("1:name=systemd:/system.slice/b.service\n0::/\n", p, sizeof(p)), 0);
	assert_string_equal(p, "/system.slice/b.service");
	/* Hybrid with the unit in the unified hierarchy too; no final newline. */
	assert_int_equal(units_cgroup_path("1:name=systemd:/system.slice/c.service\n0::/system.slice/c.service",
					   p, sizeof(p)), 0);
	assert_string_equal(p, "/system.slice/c.service");
	assert_int_equal(units_cgroup_path("0::/\n", p, sizeof(p)), 0);
	assert_string_equal(p, "/");
	assert_int_equal(units_cgroup_path("", p, sizeof(p)), -ENOENT);
	assert_int_equal(units_cgroup_path("12:pids:/x\n10:0::/y\n", p, sizeof(p)), -ENOENT);
	assert_int_equal(units_cgroup_path("0::/system.slice/foo.service\n", small, sizeof(small)), -ENAMETOOLONG);
}

static void classify(const char *path, const char *unit, const char *stop_unit)
{
	struct unit_holder h;

	memset(&h, 0x55, sizeof(h));
	units_classify(path, &h);
	assert_string_equal(h.unit, unit);
	assert_string_equal(h.stop_unit, stop_unit);
	assert_int_equal(h.stoppable, stop_unit[0] != 0);
}

static void test_classify(void **state)
{
	classify("/system.slice/postgresql.service", "postgresql.service", "postgresql.service");
	classify("/system.slice/system-postgresql.slice/postgresql@15-main.service",
		 "postgresql@15-main.service", "postgresql@15-main.service");
	/* A service's own sub-cgroups (delegation). */
	classify("/app.slice/app.service/worker/x", "app.service", "app.service");
	classify("/foo.service", "foo.service", "foo.service");
	classify("/system.slice/docker.service", "docker.service", "docker.service");
	/* A Docker container (systemd cgroup driver): its daemon is what can stop and restart it. */
	classify("/system.slice/docker-" DOCKER_ID ".scope", "docker-" DOCKER_ID ".scope", "docker.service");
	/* Docker's cgroupfs driver: no unit at all. */
	classify("/docker/" DOCKER_ID, "", "");
	classify("/init.scope", "init.scope", "");
	classify("/", "", "");
	classify("", "", "");
	classify("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", "");
	classify("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
		 "user@1000.service", "");
	classify("/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/libvirt/emulator",
		 "machine-qemu\\x2d1\\x2dvm1.scope", "");
	classify("/machine.slice/libpod-ab12.scope/container", "libpod-ab12.scope", "");
	classify("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab12.scope",
		 "cri-containerd-ab12.scope", "");
	classify("/system.slice/cron.service", "cron.service", "cron.service");
	classify("/system.slice/session-1.scope", "session-1.scope", "");
	/* The agent's own service is never stopped. */
	classify("/system.slice/vmcrypt-agent.service", "vmcrypt-agent.service", "");
	/* Not a unit name. */
	classify("/system.slice/foo bar.service", "", "");
	classify("/system.slice/foo.bogus", "", "");
}

static const struct unit_holder *find(const struct unit_holder *h, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].pid == pid)
			return &h[i];
	return NULL;
}

static void set_root(const char *fixture)
{
	char buf[PATH_MAX];

	assert_non_null(realpath(fixture, buf));
	setenv("VMCRYPT_TEST_ROOT", buf, 1);
}

static void load_holders(struct unit_holder **h, size_t *n)
{
	set_root("tests/data/roots/holders");
	assert_int_equal(units_for_mount("/data", makedev(8, 17), h, n), 0);
	unsetenv("VMCRYPT_TEST_ROOT");
}

static void test_for_mount(void **state)
{
	_cleanup_free_ struct unit_holder *h = NULL;
	size_t n = 0;
	const struct unit_holder *x;

	load_holders(&h, &n);
	/* One row per pid (812 holds its cwd and a file), in pid order. */
	assert_int_equal(n, 12);
	for (size_t i = 1; i < n; i++)
		assert_true(h[i - 1].pid < h[i].pid);
	x = find(h, n, 812);
	assert_string_equal(x->comm, "postgres");
	assert_string_equal(x->unit, "postgresql@15-main.service");
	assert_true(x->stoppable);
	x = find(h, n, 90);
	assert_string_equal(x->unit, "session-3.scope");
	assert_false(x->stoppable);
	x = find(h, n, 700);
	assert_string_equal(x->unit, "nginx.service");
	assert_true(x->stoppable);
	x = find(h, n, 1500);
	assert_string_equal(x->stop_unit, "docker.service");
	x = find(h, n, 2000);
	assert_false(x->stoppable);
	x = find(h, n, 2100);
	assert_string_equal(x->stop_unit, "app.service");
	x = find(h, n, 3000);
	assert_string_equal(x->comm, "orphan");
	assert_string_equal(x->unit, "");
	assert_false(x->stoppable);

	/* A pid that is not there. */
	set_root("tests/data/roots/holders");
	{
		struct unit_holder one;
		assert_int_equal(units_of_pid(4242, &one), -ENOENT);
		assert_int_equal(units_of_pid(700, &one), 0);
		assert_string_equal(one.comm, "nginx");
	}
	unsetenv("VMCRYPT_TEST_ROOT");
}

static void test_describe(void **state)
{
	_cleanup_free_ struct unit_holder *h = NULL;
	size_t n = 0;
	char buf[2048], small[48];
	struct unit_holder sel[4], evil = { .pid = 7 };

	load_holders(&h, &n);
	sel[0] = *find(h, n, 812);
	sel[1] = *find(h, n, 90);
	sel[2] = *find(h, n, 813);
	sel[3] = *find(h, n, 1500);
	assert_string_equal(units_describe(sel, 4, buf, sizeof(buf)),
			    "pid 812 (postgres) and 1 more of postgresql@15-main.service, "
			    "pid 90 (bash) outside any system service (in session-3.scope), "
			    "pid 1500 (mysqld) in container docker-" DOCKER_ID ".scope of docker.service");
	sel[0] = *find(h, n, 3000);
	assert_string_equal(units_describe(sel, 1, buf, sizeof(buf)), "pid 3000 (orphan) outside any system service");

	/* Bounded: cut with "...". */
	units_describe(h, n, small, sizeof(small));
	assert_true(strlen(small) < sizeof(small));
	assert_non_null(strstr(small, "..."));
	assert_string_equal(small, "pid 90 (bash) outside any system service (in...");
	/* A cut never splits a character. */
	snprintf(evil.comm, sizeof(evil.comm), "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	for (size_t k = 4; k < 30; k++) {
		units_describe(&evil, 1, small, k);
		assert_true(string_is_safe_text(small));
	}
	units_describe(h, n, buf, sizeof(buf));
	assert_null(strstr(buf, "..."));
	assert_non_null(strstr(buf, "pid 2400 (vmcrypt) outside any system service (in vmcrypt-agent.service)"));

	/* A process name is outside input: escaped. */
	snprintf(evil.comm, sizeof(evil.comm), "a\nb\xe2\x80\xae");
	assert_string_equal(units_describe(&evil, 1, buf, sizeof(buf)),
			    "pid 7 (a\\nb\\u202e) outside any system service");
}

static struct unit_holder holder(pid_t pid, const char *comm, const char *cgroup)
{
	struct unit_holder h = { .pid = pid };

	snprintf(h.comm, sizeof(h.comm), "%s", comm);
	units_classify(cgroup, &h);
	return h;
}

static void test_plan(void **state)
{
	struct unit_holder pg[] = {
		holder(812, "postgres", "/system.slice/postgresql.service"),
		holder(813, "postgres", "/system.slice/postgresql.service"),
	};
	struct unit_holder mixed[] = {
		holder(812, "postgres", "/system.slice/postgresql.service"),
		holder(1500, "mysqld", "/system.slice/docker-ab12.scope"),
		holder(1400, "dockerd", "/system.slice/docker.service"),
		holder(90, "bash", "/user.slice/user-1000.slice/session-3.scope"),
	};
	struct unit_holder journal[] = {
		holder(2200, "systemd-journal", "/system.slice/systemd-journald.service"),
	};
	char list[2][UNITS_NAME_MAX] = { "nginx.service", "postgresql.service" };
	char only_docker[1][UNITS_NAME_MAX] = { "docker.service" };
	char jlist[1][UNITS_NAME_MAX] = { "systemd-journald.service" };
	char units[4][UNITS_NAME_MAX], why[1024];
	size_t n = 99;

	unsetenv("VMCRYPT_CONF_DIR");
	/* Nothing holds the volume: nothing to stop. */
	assert_int_equal(units_plan_stop(NULL, 0, false, NULL, 0, units, 4, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 0);

	/* The default (no StopUnits=): refuse, name the holders and the remedy. */
	assert_int_equal(units_plan_stop(pg, 2, false, NULL, 0, units, 4, &n, why, sizeof(why)), -EBUSY);
	assert_string_equal(why, "held by pid 812 (postgres) and 1 more of postgresql.service; set "
				 "StopUnits=auto in /etc/vmcrypt/agent.conf or stop postgresql.service");
	/* Listed, or auto: the unit once. */
	assert_int_equal(units_plan_stop(pg, 2, false, list, 2, units, 4, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(units[0], "postgresql.service");
	assert_int_equal(units_plan_stop(pg, 2, true, NULL, 0, units, 4, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 1);

	/* A session's process refuses even with auto; the remedy says what to do about each. */
	assert_int_equal(units_plan_stop(mixed, 4, true, NULL, 0, units, 4, &n, why, sizeof(why)), -EBUSY);
	assert_string_equal(why, "held by pid 812 (postgres) of postgresql.service, pid 1500 (mysqld) in "
				 "container docker-ab12.scope of docker.service, pid 1400 (dockerd) of "
				 "docker.service, pid 90 (bash) outside any system service (in session-3.scope); "
				 "end pid 90: not in a system service the agent can stop");
	/* Without the session: auto stops postgresql and docker (once, for the container and the daemon). */
	n = 99;
	assert_int_equal(units_plan_stop(mixed, 3, true, NULL, 0, units, 4, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(units[0], "postgresql.service");
	assert_string_equal(units[1], "docker.service");
	assert_int_equal(units_plan_stop(mixed, 3, true, NULL, 0, units, 1, &n, why, sizeof(why)), -E2BIG);
	/* A list naming docker.service only: postgresql.service is not allowed. */
	assert_int_equal(units_plan_stop(mixed, 3, false, only_docker, 1, units, 4, &n, why, sizeof(why)),
			 -EBUSY);
	assert_non_null(strstr(why, "; set StopUnits=auto in /etc/vmcrypt/agent.conf or stop postgresql.service"));
	assert_null(strstr(why, "or stop postgresql.service, docker.service"));
	/* Not listed, several units: each named once. */
	assert_int_equal(units_plan_stop(mixed, 3, false, NULL, 0, units, 4, &n, why, sizeof(why)), -EBUSY);
	assert_non_null(strstr(why, "or stop postgresql.service, docker.service"));

	/* auto never stops systemd's own services; naming one allows it. */
	assert_int_equal(units_plan_stop(journal, 1, true, NULL, 0, units, 4, &n, why, sizeof(why)), -EBUSY);
	assert_string_equal(why, "held by pid 2200 (systemd-journal) of systemd-journald.service; add "
				 "systemd-journald.service to StopUnits= in /etc/vmcrypt/agent.conf (auto "
				 "never stops it) or stop it");
	assert_int_equal(units_plan_stop(journal, 1, true, jlist, 1, units, 4, &n, why, sizeof(why)), 0);
	assert_string_equal(units[0], "systemd-journald.service");

	/* The message is bounded. */
	{
		char tiny[40];
		assert_int_equal(units_plan_stop(mixed, 4, true, NULL, 0, units, 4, &n, tiny, sizeof(tiny)), -EBUSY);
		assert_true(strlen(tiny) < sizeof(tiny));
		assert_non_null(strstr(tiny, "..."));
	}
}

/* A fake systemctl: logs "VERB -- UNIT", fails for missing.service (exit 5, as systemd does for a
 * unit that is not loaded) and broken.service (exit 1). */
static void make_fake(char *dir, char *prog, size_t len, char *log, size_t loglen)
{
	static const char script[] =
		"#!/bin/sh\n"
		"echo \"$*\" >>\"$(dirname \"$0\")/log\"\n"
		"case \"$3\" in\n"
		"missing.service) echo \"Failed to $1 $3: Unit $3 not loaded.\" >&2; exit 5 ;;\n"
		"broken.service) echo \"Job for $3 failed.\" >&2; exit 1 ;;\n"
		"esac\n"
		"exit 0\n";

	assert_non_null(mkdtemp(dir));
	snprintf(prog, len, "%s/systemctl", dir);
	snprintf(log, loglen, "%s/log", dir);
	assert_int_equal(write_file_atomic(prog, script, strlen(script), 0755), 0);
	units_set_systemctl(prog);
}

static char *read_log(const char *log)
{
	char *data = NULL;
	size_t size;
	int r = read_full_file(log, 65536, &data, &size);

	if (r == -ENOENT)
		return strdup("");
	assert_int_equal(r, 0);
	return data;
}

static void test_stop_start(void **state)
{
	char dir[] = "/tmp/vmcrypt-units.XXXXXX", prog[128], log[128], err[512], cmd[200];
	char ok[3][UNITS_NAME_MAX] = { "postgresql.service", "docker.service", "app.service" };
	char bad[3][UNITS_NAME_MAX] = { "postgresql.service", "missing.service", "app.service" };
	char broken[2][UNITS_NAME_MAX] = { "broken.service", "docker.service" };
	char evil[1][UNITS_NAME_MAX] = { "--force" };
	char *got;

	make_fake(dir, prog, sizeof(prog), log, sizeof(log));

	assert_int_equal(units_stop(ok, 3, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(units_start(ok, 3, err, sizeof(err)), 0);
	got = read_log(log);
	assert_string_equal(got, "stop -- postgresql.service\nstop -- docker.service\nstop -- app.service\n"
				 "start -- app.service\nstart -- docker.service\nstart -- postgresql.service\n");
	free(got);
	unlink(log);

	/* The second stop fails: the first is started again, the third never stopped. */
	assert_int_equal(units_stop(bad, 3, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "systemctl stop missing.service: Failed to stop missing.service: Unit "
				 "missing.service not loaded.");
	got = read_log(log);
	assert_string_equal(got, "stop -- postgresql.service\nstop -- missing.service\nstart -- postgresql.service\n");
	free(got);
	unlink(log);

	/* start tries every unit and reports each failure; the first error is returned. */
	assert_int_equal(units_start(bad, 3, err, sizeof(err)), -ENOENT);
	got = read_log(log);
	assert_string_equal(got, "start -- app.service\nstart -- missing.service\nstart -- postgresql.service\n");
	free(got);
	unlink(log);
	assert_int_equal(units_stop(broken, 2, err, sizeof(err)), -EIO);
	assert_string_equal(err, "systemctl stop broken.service: Job for broken.service failed.");

	/* Names are checked before anything runs. */
	unlink(log);
	assert_int_equal(units_stop(evil, 1, err, sizeof(err)), -EINVAL);
	assert_int_equal(units_start(evil, 1, err, sizeof(err)), -EINVAL);
	assert_int_equal(access(log, F_OK), -1);

	/* No systemctl at all. */
	units_set_systemctl("/nonexistent-vmcrypt/systemctl");
	assert_int_equal(units_stop(ok, 1, err, sizeof(err)), -ENOEXEC);
	assert_string_equal(err, "systemctl stop postgresql.service: /nonexistent-vmcrypt/systemctl could not be run");
	units_set_systemctl(NULL);

	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cgroup_path),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_for_mount),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_stop_start),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
