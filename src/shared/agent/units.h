/* Which systemd units hold a volume, whether the agent may stop them for a cut-over
 * (StopUnits= in agent.conf, docs/agent.md), and stopping and starting them through systemctl. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define UNITS_NAME_MAX 256
/* systemctl stop/start of one unit gives up after this long (systemd's default
 * TimeoutStopSec= is 90 s too: a unit slower than that is failing anyway). */
#define UNITS_TIMEOUT_SEC 90

/* One process holding a volume and the unit it runs in.
 *
 * stop_unit is the unit whose stop releases the process, "" when there is none:
 *  - a .service in system.slice or any other slice but user.slice and machine.slice: itself;
 *  - a Docker container (system.slice/docker-<id>.scope, the systemd cgroup driver): docker.service.
 *    A scope cannot be started again, so the container itself is never the unit to stop;
 *    stopping docker.service stops its containers and starting it brings back those with a
 *    restart policy (always, unless-stopped). Containers without one stay stopped: the
 *    description names the container so the operator knows;
 *  - nothing for init.scope, session scopes and user@.service (user.slice), machine.slice
 *    (VMs, podman), other scopes (kubepods, containerd), processes outside any unit, and the
 *    agent's own vmcrypt-*.service. */
struct unit_holder {
	pid_t pid;
	char comm[64];                  /* "?" when unknown */
	char unit[UNITS_NAME_MAX];      /* the unit the process runs in, "" when none */
	char stop_unit[UNITS_NAME_MAX]; /* see above */
	bool stoppable;                 /* stop_unit[0] != 0 */
};

/* The systemd cgroup path in the text of /proc/PID/cgroup: the unified hierarchy's "0::PATH" line,
 * or for cgroup v1 the "N:name=systemd:PATH" line (preferred over a "0::/" of a hybrid system).
 * Returns 0, -ENOENT when there is neither, -ENAMETOOLONG. */
int units_cgroup_path(const char *content, char *path, size_t len);

/* Fills h's unit, stop_unit and stoppable from a cgroup path ("/system.slice/foo.service/sub"):
 * the unit is the first component that is not a slice. */
void units_classify(const char *cgroup_path, struct unit_holder *h);

/* The holder for pid: comm and cgroup read from /proc/PID under path_test_root(). A process
 * without a readable cgroup file gets no unit. Returns 0 or -ENOENT (no such process). */
int units_of_pid(pid_t pid, struct unit_holder *ret);

/* The processes using the filesystem mounted at mountpoint (proc_users_on_mount()), one row per
 * pid in pid order, with their units. Returns as proc_users_on_mount(): 0, > 0 when some processes
 * could not be inspected, -E2BIG (the first ones still returned), or -errno. *ret (free()) and
 * *ret_n are set unless the return is < 0 and not -E2BIG. */
int units_for_mount(const char *mountpoint, dev_t fs_dev, struct unit_holder **ret, size_t *ret_n);

/* Describes holders for a message, grouped by unit in order of first appearance: "pid 812
 * (postgres) and 3 more of postgresql.service, pid 90 (bash) outside any system service (in
 * session-3.scope)". Process and unit names are escaped (string_escape_hidden()); the text is cut
 * with "..." when buf is too small. Returns buf. */
char *units_describe(const struct unit_holder *h, size_t n, char *buf, size_t len);

/* Decides what to stop for a cut-over. stop_auto is StopUnits=auto; stop_units[0..n_stop) the
 * StopUnits= list otherwise. A holder's stop_unit is allowed when it is listed, or with auto
 * unless it is a service the agent never stops by itself (systemd-*, dbus, dbus-broker, polkit,
 * ssh, sshd: listing one explicitly allows it). Returns 0 with the distinct units to stop in
 * order of first appearance in ret_units[0..*ret_n) (room for max_units; -E2BIG beyond), or
 * -EBUSY with why = "held by <units_describe()>; <remedy>" where the remedy names what to do:
 * "set StopUnits=auto in /etc/vmcrypt/agent.conf or stop postgresql.service", "add
 * systemd-journald.service to StopUnits= in ...", "end pid 90 (bash), which is outside any
 * system service". n == 0 gives 0 and nothing to stop. */
int units_plan_stop(const struct unit_holder *h, size_t n, bool stop_auto,
		    char stop_units[][UNITS_NAME_MAX], size_t n_stop,
		    char (*ret_units)[UNITS_NAME_MAX], size_t max_units, size_t *ret_n, char *why,
		    size_t whylen);

/* Runs `systemctl stop -- UNIT` for each unit in order (one at a time, so the order is the
 * caller's), each bounded by UNITS_TIMEOUT_SEC. When one fails, those already stopped are started
 * again (in reverse) before returning. Returns 0 or -errno from the exit status: -ENOENT (exit 4
 * or 5: no such unit, not loaded), -ETIME (timeout), -ENOEXEC (exit 127: systemctl could not be
 * run), -EIO (any other failure), or a -errno from fork; err gets "systemctl stop
 * postgresql.service: <its output>". Unit names must be valid systemd unit names (else -EINVAL,
 * nothing run). */
int units_stop(char units[][UNITS_NAME_MAX], size_t n, char *err, size_t errlen);

/* Runs `systemctl start -- UNIT` for each unit in reverse order (the inverse of units_stop()),
 * trying every unit even after a failure. Returns 0 or the first failure's -errno (as
 * units_stop()); err names every unit that failed. */
int units_start(char units[][UNITS_NAME_MAX], size_t n, char *err, size_t errlen);

/* The program units_stop() and units_start() run; "systemctl" (found in PATH) unless set. For
 * tests (a fake systemctl); NULL restores the default. Not thread-safe: set it before use. */
void units_set_systemctl(const char *path);
