/* Which systemd units hold a volume, the stop plan, and systemctl stop/start. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/process.h"
#include "basic/string-util.h"
#include "shared/agent/units.h"
#include "shared/paths.h"
#include "shared/volume/proc-users.h"

/* A /proc/PID/cgroup is a few lines per controller; anything bigger is not one. */
#define CGROUP_FILE_MAX (64 * 1024)

static const char *systemctl_path = "systemctl";

void units_set_systemctl(const char *path)
{
	systemctl_path = path ? path : "systemctl";
}

/* systemd's unit name rule (unit_name_is_valid()): [A-Za-z0-9:_.\@-], at most 255 bytes, with a
 * known type suffix. The cgroup tree and StopUnits= are outside input for systemctl's argv. */
static bool unit_name_valid(const char *s)
{
	static const char *const types[] = { ".service", ".socket", ".scope", ".slice", ".mount",
					     ".automount", ".swap", ".target", ".path", ".timer",
					     ".device" };
	size_t n = strlen(s);
	const char *dot = strrchr(s, '.');

	if (n == 0 || n >= UNITS_NAME_MAX || !dot || dot == s)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr(":_.\\@-", s[i])))
			return false;
	for (size_t i = 0; i < ELEMENTSOF(types); i++)
		if (streq(dot, types[i]))
			return true;
	return false;
}

int units_cgroup_path(const char *content, char *path, size_t len)
{
	const char *v2 = NULL, *v1 = NULL;
	size_t v2len = 0, v1len = 0;

	for (const char *line = content; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t l = end ? (size_t)(end - line) : strlen(line);
		const char *c1 = memchr(line, ':', l), *c2;

		if (c1 && (c2 = memchr(c1 + 1, ':', l - (size_t)(c1 + 1 - line)))) {
			const char *p = c2 + 1;
			size_t plen = l - (size_t)(p - line);

			if (c1 - line == 1 && line[0] == '0' && c2 == c1 + 1)
				v2 = p, v2len = plen;
			else if ((size_t)(c2 - c1 - 1) == strlen("name=systemd") &&
				 memcmp(c1 + 1, "name=systemd", strlen("name=systemd")) == 0)
				v1 = p, v1len = plen;
		}
		line = end ? end + 1 : NULL;
	}
	/* Hybrid systems list both; there systemd tracks units in name=systemd when the unified
	 * hierarchy shows only the root. */
	if (v2 && v1 && v2len == 1 && v2[0] == '/')
		v2 = NULL;
	if (!v2) {
		v2 = v1;
		v2len = v1len;
	}
	if (!v2 || v2len == 0)
		return -ENOENT;
	if (v2len >= len)
		return -ENAMETOOLONG;
	memcpy(path, v2, v2len);
	path[v2len] = 0;
	return 0;
}

void units_classify(const char *cgroup_path, struct unit_holder *h)
{
	char top_slice[UNITS_NAME_MAX] = "";
	const char *p = cgroup_path;

	h->unit[0] = 0;
	h->stop_unit[0] = 0;
	h->stoppable = false;
	while (*p) {
		char comp[UNITS_NAME_MAX];
		size_t n = strcspn(p, "/");

		if (n == 0) {
			p++;
			continue;
		}
		if (n >= sizeof(comp))
			return;
		memcpy(comp, p, n);
		comp[n] = 0;
		p += n;
		if (endswith(comp, ".slice")) {
			if (!top_slice[0])
				snprintf(top_slice, sizeof(top_slice), "%s", comp);
			continue;
		}
		/* The first component that is not a slice is the unit; below it the service's own
		 * (delegated) cgroups. A name that is no unit ("/docker/<id>" of Docker's cgroupfs
		 * driver) means no unit. */
		if (unit_name_valid(comp))
			snprintf(h->unit, sizeof(h->unit), "%s", comp);
		break;
	}
	if (!h->unit[0] || streq(h->unit, "init.scope") || streq(top_slice, "user.slice") ||
	    streq(top_slice, "machine.slice"))
		return;
	if (endswith(h->unit, ".service")) {
		/* Stopping our own service would end the cut-over half way. */
		if (!startswith(h->unit, "vmcrypt"))
			snprintf(h->stop_unit, sizeof(h->stop_unit), "%s", h->unit);
	} else if (endswith(h->unit, ".scope") && startswith(h->unit, "docker-") &&
		   streq(top_slice, "system.slice"))
		snprintf(h->stop_unit, sizeof(h->stop_unit), "docker.service");
	h->stoppable = h->stop_unit[0] != 0;
}

int units_of_pid(pid_t pid, struct unit_holder *ret)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], cg[PATH_MAX];
	_cleanup_free_ char *data = NULL;
	struct unit_holder h = { .pid = pid };
	size_t size;

	if (snprintf(dir, sizeof(dir), "%s/proc/%d", path_test_root(), (int)pid) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	if (access(dir, F_OK) < 0)
		return -ENOENT;
	snprintf(h.comm, sizeof(h.comm), "?");
	snprintf(path, sizeof(path), "%s/comm", dir);
	if (read_full_file(path, 4096, &data, &size) == 0 && size > 0) {
		data[strcspn(data, "\n")] = 0;
		snprintf(h.comm, sizeof(h.comm), "%s", data);
	}
	free(data);
	data = NULL;
	snprintf(path, sizeof(path), "%s/cgroup", dir);
	if (read_full_file(path, CGROUP_FILE_MAX, &data, &size) == 0 &&
	    units_cgroup_path(data, cg, sizeof(cg)) == 0)
		units_classify(cg, &h);
	*ret = h;
	return 0;
}

int units_for_mount(const char *mountpoint, dev_t fs_dev, struct unit_holder **ret, size_t *ret_n)
{
	_cleanup_proc_users_ struct proc_user *u = NULL;
	_cleanup_free_ struct unit_holder *h = NULL;
	size_t n = 0, k = 0;
	int r;

	r = proc_users_on_mount(mountpoint, fs_dev, &u, &n);
	if (r < 0 && r != -E2BIG)
		return r;
	if (n > 0) {
		h = calloc(n, sizeof(*h));
		if (!h)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && h[k - 1].pid == u[i].pid)
			continue; /* proc_users lists a pid's entries together */
		if (units_of_pid(u[i].pid, &h[k]) < 0)
			continue; /* gone since the scan: it holds nothing any more */
		if (streq(h[k].comm, "?"))
			snprintf(h[k].comm, sizeof(h[k].comm), "%s", u[i].comm);
		k++;
	}
	*ret = TAKE_PTR(h);
	*ret_n = k;
	return r;
}

/* Appends to buf at *pos; when it does not fit, ends buf with "..." and returns false. */
_printf_(4, 5) static bool append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos >= len)
		return false;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < len - *pos && *pos + (size_t)n + 4 <= len) {
		*pos += (size_t)n;
		return true;
	}
	/* Cut: keep what fits, at a character boundary (the text goes into a status report that
	 * must stay valid UTF-8), and mark it. */
	if (len < 4) {
		buf[0] = 0;
		*pos = len;
		return false;
	}
	n = (int)(len - 4);
	while (n > (int)*pos && ((unsigned char)buf[n] & 0xC0) == 0x80)
		n--;
	snprintf(buf + n, len - (size_t)n, "...");
	*pos = len;
	return false;
}

static const char *esc(const char *s, char *buf, size_t len)
{
	return string_escape_hidden(s, buf, len);
}

static bool is_container(const struct unit_holder *h)
{
	return h->stoppable && !streq(h->unit, h->stop_unit);
}

/* One holder, with "and N more" of its unit: "pid 812 (postgres) and 3 more of postgresql.service". */
static bool describe_one(const struct unit_holder *h, size_t more, char *buf, size_t len,
			 size_t *pos)
{
	char comm[256], unit[UNITS_NAME_MAX * 4], stop[UNITS_NAME_MAX * 4];

	esc(h->comm, comm, sizeof(comm));
	esc(h->unit, unit, sizeof(unit));
	esc(h->stop_unit, stop, sizeof(stop));
	if (!append(buf, len, pos, "pid %d (%s)", (int)h->pid, comm))
		return false;
	if (more > 0 && !append(buf, len, pos, " and %zu more", more))
		return false;
	if (is_container(h))
		return append(buf, len, pos, " in container %s of %s", unit, stop);
	if (h->stoppable)
		return append(buf, len, pos, " of %s", unit);
	if (h->unit[0])
		return append(buf, len, pos, " outside any system service (in %s)", unit);
	return append(buf, len, pos, " outside any system service");
}

static bool describe_to(const struct unit_holder *h, size_t n, char *buf, size_t len, size_t *pos)
{
	bool first = true;

	for (size_t i = 0; i < n; i++) {
		size_t more = 0;
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = streq(h[j].unit, h[i].unit);
		if (seen)
			continue;
		for (size_t j = i + 1; j < n; j++)
			more += streq(h[j].unit, h[i].unit);
		if (!first && !append(buf, len, pos, ", "))
			return false;
		first = false;
		if (!describe_one(&h[i], more, buf, len, pos))
			return false;
	}
	return true;
}

char *units_describe(const struct unit_holder *h, size_t n, char *buf, size_t len)
{
	size_t pos = 0;

	if (len == 0)
		return buf;
	buf[0] = 0;
	describe_to(h, n, buf, len, &pos);
	return buf;
}

/* Services StopUnits=auto never stops: the system's own plumbing, and the way in to the VM. */
static bool never_auto(const char *unit)
{
	static const char *const names[] = { "dbus.service", "dbus-broker.service", "polkit.service",
					     "ssh.service", "sshd.service" };

	if (startswith(unit, "systemd-"))
		return true;
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (streq(unit, names[i]))
			return true;
	return false;
}

static bool listed(const char *unit, char list[][UNITS_NAME_MAX], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (streq(list[i], unit))
			return true;
	return false;
}

enum block {
	BLOCK_NONE,
	BLOCK_OUTSIDE,   /* not in a unit the agent can stop */
	BLOCK_NOT_AUTO,  /* auto, but a unit auto never stops */
	BLOCK_NOT_LISTED,
};

static enum block holder_block(const struct unit_holder *h, bool stop_auto,
			       char stop_units[][UNITS_NAME_MAX], size_t n_stop)
{
	if (!h->stoppable)
		return BLOCK_OUTSIDE;
	if (listed(h->stop_unit, stop_units, n_stop))
		return BLOCK_NONE;
	if (stop_auto)
		return never_auto(h->stop_unit) ? BLOCK_NOT_AUTO : BLOCK_NONE;
	return BLOCK_NOT_LISTED;
}

/* Appends the distinct stop units of the holders blocked for reason b: "a.service, b.service". */
static bool append_units(const struct unit_holder *h, size_t n, enum block b, bool stop_auto,
			 char stop_units[][UNITS_NAME_MAX], size_t n_stop, char *buf, size_t len,
			 size_t *pos)
{
	bool first = true;

	for (size_t i = 0; i < n; i++) {
		char unit[UNITS_NAME_MAX * 4];
		bool seen = false;

		if (holder_block(&h[i], stop_auto, stop_units, n_stop) != b)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = holder_block(&h[j], stop_auto, stop_units, n_stop) == b &&
			       streq(h[j].stop_unit, h[i].stop_unit);
		if (seen)
			continue;
		if (!append(buf, len, pos, "%s%s", first ? "" : ", ",
			    esc(h[i].stop_unit, unit, sizeof(unit))))
			return false;
		first = false;
	}
	return true;
}

int units_plan_stop(const struct unit_holder *h, size_t n, bool stop_auto,
		    char stop_units[][UNITS_NAME_MAX], size_t n_stop,
		    char (*ret_units)[UNITS_NAME_MAX], size_t max_units, size_t *ret_n, char *why,
		    size_t whylen)
{
	bool has[BLOCK_NOT_LISTED + 1] = {};
	char conf[PATH_MAX + 16];
	size_t k = 0, pos = 0;

	if (whylen > 0)
		why[0] = 0;
	for (size_t i = 0; i < n; i++)
		has[holder_block(&h[i], stop_auto, stop_units, n_stop)] = true;
	if (has[BLOCK_OUTSIDE] || has[BLOCK_NOT_AUTO] || has[BLOCK_NOT_LISTED]) {
		snprintf(conf, sizeof(conf), "%s/agent.conf", path_conf_dir());
		if (append(why, whylen, &pos, "held by ") && describe_to(h, n, why, whylen, &pos)) {
			bool ok = true;

			if (has[BLOCK_NOT_LISTED])
				ok = append(why, whylen, &pos, "; set StopUnits=auto in %s or stop ", conf) &&
				     append_units(h, n, BLOCK_NOT_LISTED, stop_auto, stop_units, n_stop,
						  why, whylen, &pos);
			if (ok && has[BLOCK_NOT_AUTO])
				ok = append(why, whylen, &pos, "; add ") &&
				     append_units(h, n, BLOCK_NOT_AUTO, stop_auto, stop_units, n_stop, why,
						  whylen, &pos) &&
				     append(why, whylen, &pos,
					    " to StopUnits= in %s (auto never stops it) or stop it", conf);
			if (ok && has[BLOCK_OUTSIDE]) {
				bool first = true;

				ok = append(why, whylen, &pos, "; end ");
				for (size_t i = 0; ok && i < n; i++) {
					if (h[i].stoppable)
						continue;
					ok = append(why, whylen, &pos, "%spid %d", first ? "" : ", ",
						    (int)h[i].pid);
					first = false;
				}
				if (ok)
					append(why, whylen, &pos,
					       ": not in a system service the agent can stop");
			}
		}
		return -EBUSY;
	}

	for (size_t i = 0; i < n; i++) {
		if (listed(h[i].stop_unit, ret_units, k))
			continue;
		if (k >= max_units)
			return -E2BIG;
		snprintf(ret_units[k++], UNITS_NAME_MAX, "%s", h[i].stop_unit);
	}
	*ret_n = k;
	return 0;
}

static int errno_from_systemctl(int status)
{
	if (status < 0)
		return status; /* -ETIME, or fork()'s -errno */
	switch (status) {
	case 0:
		return 0;
	case 4: /* "no such unit" (LSB, systemctl status) */
	case 5: /* "Unit X not loaded." */
		return -ENOENT;
	case 127:
		return -ENOEXEC;
	default:
		return -EIO;
	}
}

/* Runs systemctl VERB -- UNIT. On failure appends "systemctl VERB UNIT: what" to err. */
static int systemctl_run(const char *verb, const char *unit, char *err, size_t errlen, size_t *pos)
{
	char out[512], shown[1024];
	int r;

	r = errno_from_systemctl(process_run_timeout(
		(char *[]){ (char *)systemctl_path, (char *)verb, "--", (char *)unit, NULL }, out,
		sizeof(out), UNITS_TIMEOUT_SEC));
	if (r == 0)
		return 0;
	out[strcspn(out, "\n")] = 0;
	if (r == -ETIME)
		snprintf(out, sizeof(out), "no answer within %d s", UNITS_TIMEOUT_SEC);
	else if (r == -ENOEXEC)
		snprintf(out, sizeof(out), "%s could not be run", systemctl_path);
	else if (!out[0])
		snprintf(out, sizeof(out), "failed");
	append(err, errlen, pos, "%ssystemctl %s %s: %s", *pos ? "; " : "", verb, unit,
	       esc(out, shown, sizeof(shown)));
	return r;
}

int units_stop(char units[][UNITS_NAME_MAX], size_t n, char *err, size_t errlen)
{
	size_t pos = 0;
	int r;

	if (errlen > 0)
		err[0] = 0;
	for (size_t i = 0; i < n; i++)
		if (!unit_name_valid(units[i]))
			return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		r = systemctl_run("stop", units[i], err, errlen, &pos);
		if (r < 0) {
			/* Leave the system as it was: what was stopped runs again. Failures here are
			 * added to err, the stop's error is what the caller gets. */
			for (size_t j = i; j > 0; j--)
				(void)systemctl_run("start", units[j - 1], err, errlen, &pos);
			return r;
		}
	}
	return 0;
}

int units_start(char units[][UNITS_NAME_MAX], size_t n, char *err, size_t errlen)
{
	size_t pos = 0;
	int r = 0;

	if (errlen > 0)
		err[0] = 0;
	for (size_t i = 0; i < n; i++)
		if (!unit_name_valid(units[i]))
			return -EINVAL;
	for (size_t i = n; i > 0; i--) {
		int k = systemctl_run("start", units[i - 1], err, errlen, &pos);
		if (k < 0 && r == 0)
			r = k;
	}
	return r;
}
