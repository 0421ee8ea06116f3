/* agent.conf and the VM credential on disk: systemd-style Key=value parsing, atomic writes. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/client/agent-conf.h"
#include "shared/paths.h"
#include "shared/secret.h"

#define CREDENTIAL_PREFIX "vmc-vm-"

static const char *const agent_seal_table[_AGENT_SEAL_MAX] = {
	[AGENT_SEAL_AUTO] = "auto",
	[AGENT_SEAL_YES] = "yes",
	[AGENT_SEAL_NO] = "no",
};

const char *agent_seal_to_string(enum agent_seal s)
{
	return (unsigned)s < _AGENT_SEAL_MAX ? agent_seal_table[s] : NULL;
}

void agent_conf_init(struct agent_conf *c)
{
	*c = (struct agent_conf){
		.poll_interval = 30,
		.report_interval = 60,
		.progress_interval = 5,
		.crypttab = "/etc/crypttab",
		.fstab = "/etc/fstab",
		.unit_dir = "/etc/systemd/system",
		.online = true,
	};
}

char *agent_conf_path(const char *name, char *buf, size_t len)
{
	if (snprintf(buf, len, "%s/%s", path_conf_dir(), name) >= (int)len)
		return NULL;
	return buf;
}

static char *strip(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

/* Fields are zero-filled past their string, so two settings compare equal byte for byte exactly
 * when they say the same (the round-trip tests and the fuzz harness rely on it). */
static int set_string(char *dst, size_t size, const char *v)
{
	if (strlen(v) >= size)
		return -ENAMETOOLONG;
	memset(dst, 0, size);
	memcpy(dst, v, strlen(v));
	return 0;
}

static int set_interval(unsigned *dst, const char *v)
{
	uint64_t u;

	if (parse_u64(v, &u) < 0 || u == 0 || u > AGENT_CONF_INTERVAL_MAX)
		return -EINVAL;
	*dst = (unsigned)u;
	return 0;
}

/* A space-separated list replaces the previous value (as a later line in systemd does when it is
 * not a list that accumulates: one line per list keeps the file readable). */
static int set_list(char *dst, size_t entry_size, size_t max, size_t *n, char *v)
{
	char *save = NULL, *tok;

	memset(dst, 0, max * entry_size);
	*n = 0;
	for (tok = strtok_r(v, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (*n >= max)
			return -E2BIG;
		if (strlen(tok) >= entry_size)
			return -ENAMETOOLONG;
		memcpy(dst + *n * entry_size, tok, strlen(tok) + 1);
		(*n)++;
	}
	return 0;
}

static int parse_line(struct agent_conf *c, const char *key, char *v, char *why, size_t whylen)
{
	int r;

	if (streq(key, "Server")) {
		if (*v && !startswith(v, "https://")) {
			snprintf(why, whylen, "Server= must be an https:// URL, not \"%s\"", v);
			return -EINVAL;
		}
		r = set_string(c->server, sizeof(c->server), v);
	} else if (streq(key, "CAFile"))
		r = set_string(c->ca_file, sizeof(c->ca_file), v);
	else if (streq(key, "Proxy"))
		r = set_string(c->proxy, sizeof(c->proxy), v);
	else if (streq(key, "VM")) {
		if (*v && !api_name_valid(v)) {
			snprintf(why, whylen, "VM= is not a valid VM name: \"%s\"", v);
			return -EINVAL;
		}
		r = set_string(c->vm, sizeof(c->vm), v);
	} else if (streq(key, "PollInterval"))
		r = set_interval(&c->poll_interval, v);
	else if (streq(key, "ReportInterval"))
		r = set_interval(&c->report_interval, v);
	else if (streq(key, "ProgressInterval"))
		r = set_interval(&c->progress_interval, v);
	else if (streq(key, "StopUnits")) {
		c->stop_units_auto = streq(v, "auto");
		if (c->stop_units_auto) {
			memset(c->stop_units, 0, sizeof(c->stop_units));
			c->n_stop_units = 0;
			r = 0;
		} else
			r = set_list(&c->stop_units[0][0], AGENT_CONF_UNIT_MAX, AGENT_CONF_LIST_MAX,
				     &c->n_stop_units, v);
	} else if (streq(key, "Include"))
		r = set_list(&c->include[0][0], PATH_MAX, AGENT_CONF_LIST_MAX, &c->n_include, v);
	else if (streq(key, "Exclude"))
		r = set_list(&c->exclude[0][0], PATH_MAX, AGENT_CONF_LIST_MAX, &c->n_exclude, v);
	else if (streq(key, "Crypttab"))
		r = set_string(c->crypttab, sizeof(c->crypttab), v);
	else if (streq(key, "Fstab"))
		r = set_string(c->fstab, sizeof(c->fstab), v);
	else if (streq(key, "UnitDir"))
		r = set_string(c->unit_dir, sizeof(c->unit_dir), v);
	else if (streq(key, "Online")) {
		if (streq(v, "auto"))
			c->online = true;
		else if (streq(v, "no"))
			c->online = false;
		else {
			snprintf(why, whylen, "Online= must be auto or no, not \"%s\"", v);
			return -EINVAL;
		}
		r = 0;
	} else if (streq(key, "RebootAfterOsPrepare")) {
		if (streq(v, "yes"))
			c->reboot_after_os_prepare = true;
		else if (streq(v, "no"))
			c->reboot_after_os_prepare = false;
		else {
			snprintf(why, whylen, "RebootAfterOsPrepare= must be yes or no, not \"%s\"", v);
			return -EINVAL;
		}
		r = 0;
	} else if (streq(key, "SealCredential")) {
		r = -EINVAL;
		for (unsigned i = 0; i < _AGENT_SEAL_MAX; i++)
			if (streq(v, agent_seal_table[i])) {
				c->seal_credential = (enum agent_seal)i;
				r = 0;
			}
		if (r < 0) {
			snprintf(why, whylen, "SealCredential= must be auto, yes or no, not \"%s\"", v);
			return r;
		}
	} else {
		snprintf(why, whylen, "unknown key %s", key);
		return -EINVAL;
	}

	if (r == -ENAMETOOLONG)
		snprintf(why, whylen, "%s= value too long", key);
	else if (r == -E2BIG)
		snprintf(why, whylen, "%s= has more than %d entries", key, AGENT_CONF_LIST_MAX);
	else if (r < 0)
		snprintf(why, whylen, "%s= must be a number of seconds from 1 to %d, not \"%s\"", key,
			 AGENT_CONF_INTERVAL_MAX, v);
	return r < 0 ? -EINVAL : 0;
}

int agent_conf_parse(const char *text, const char *origin, struct agent_conf *c, char *err, size_t errlen)
{
	_cleanup_free_ char *copy = strdup(text);
	char *line, *next;
	unsigned lineno = 0;

	if (!copy)
		return -ENOMEM;
	for (line = copy; line; line = next) {
		char why[PATH_MAX + 128] = "", *eq, *key, *v;
		int r;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		line = strip(line);
		if (*line == 0 || *line == '#' || *line == ';')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: not a Key=value line", origin, lineno);
			return -EINVAL;
		}
		*eq = 0;
		key = strip(line);
		v = strip(eq + 1);
		r = parse_line(c, key, v, why, sizeof(why));
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: %s", origin, lineno, why);
			return r;
		}
	}
	if (!c->server[0]) {
		snprintf(err, errlen, "%s: Server= is missing (run vmcrypt enroll)", origin);
		return -EINVAL;
	}
	return 0;
}

int agent_conf_load(const char *path, struct agent_conf *ret, char *err, size_t errlen)
{
	char def[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	struct agent_conf c;
	size_t size = 0;
	int r;

	if (!path) {
		path = agent_conf_path(AGENT_CONF_NAME, def, sizeof(def));
		if (!path) {
			snprintf(err, errlen, "%s/%s: path too long", path_conf_dir(), AGENT_CONF_NAME);
			return -ENAMETOOLONG;
		}
	}
	r = read_full_file(path, AGENT_CONF_FILE_MAX, &text, &size);
	if (r == -ENOENT) {
		snprintf(err, errlen, "%s: not found: this VM is not enrolled (run vmcrypt enroll)", path);
		return r;
	}
	if (r == -EFBIG) {
		snprintf(err, errlen, "%s: larger than %d KiB, not an agent.conf", path, AGENT_CONF_FILE_MAX / 1024);
		return r;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
		return r;
	}
	if (strlen(text) != size) {
		snprintf(err, errlen, "%s: holds a NUL byte", path);
		return -EINVAL;
	}
	agent_conf_init(&c);
	r = agent_conf_parse(text, path, &c, err, errlen);
	if (r < 0)
		return r;
	*ret = c;
	return 0;
}

/* Whether a value written as it is would read back the same: no newline, no leading or trailing
 * blank (they are stripped), and for list entries no blank at all. */
static bool value_ok(const char *v, bool list_entry)
{
	size_t n = strlen(v);

	if (strpbrk(v, list_entry ? "\n\r \t" : "\n\r"))
		return false;
	return n == 0 || (!isblank((unsigned char)v[0]) && !isblank((unsigned char)v[n - 1]));
}

static void put_list(FILE *f, const char *key, const char *entries, size_t entry_size, size_t n)
{
	fprintf(f, "%s=", key);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? " " : "", entries + i * entry_size);
	fputc('\n', f);
}

char *agent_conf_format(const struct agent_conf *c)
{
	struct agent_conf d;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	agent_conf_init(&d);
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fprintf(f, "# vmcrypt agent settings (docs/agent.md), written by vmcrypt enroll.\n"
		   "# Keys: Server CAFile Proxy VM PollInterval ReportInterval ProgressInterval StopUnits\n"
		   "#       Include Exclude Crypttab Fstab UnitDir Online RebootAfterOsPrepare\n"
		   "#       SealCredential.\n"
		   "# Proxy=none disables $https_proxy.\n");
	fprintf(f, "Server=%s\nCAFile=%s\nProxy=%s\nVM=%s\n", c->server, c->ca_file, c->proxy, c->vm);
	if (c->poll_interval != d.poll_interval)
		fprintf(f, "PollInterval=%u\n", c->poll_interval);
	if (c->report_interval != d.report_interval)
		fprintf(f, "ReportInterval=%u\n", c->report_interval);
	if (c->progress_interval != d.progress_interval)
		fprintf(f, "ProgressInterval=%u\n", c->progress_interval);
	if (c->stop_units_auto)
		fprintf(f, "StopUnits=auto\n");
	else if (c->n_stop_units)
		put_list(f, "StopUnits", &c->stop_units[0][0], AGENT_CONF_UNIT_MAX, c->n_stop_units);
	if (c->n_include)
		put_list(f, "Include", &c->include[0][0], PATH_MAX, c->n_include);
	if (c->n_exclude)
		put_list(f, "Exclude", &c->exclude[0][0], PATH_MAX, c->n_exclude);
	if (!streq(c->crypttab, d.crypttab))
		fprintf(f, "Crypttab=%s\n", c->crypttab);
	if (!streq(c->fstab, d.fstab))
		fprintf(f, "Fstab=%s\n", c->fstab);
	if (!streq(c->unit_dir, d.unit_dir))
		fprintf(f, "UnitDir=%s\n", c->unit_dir);
	if (!c->online)
		fprintf(f, "Online=no\n");
	if (c->reboot_after_os_prepare)
		fprintf(f, "RebootAfterOsPrepare=yes\n");
	if (c->seal_credential != d.seal_credential)
		fprintf(f, "SealCredential=%s\n", agent_seal_to_string(c->seal_credential));
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static bool conf_writable(const struct agent_conf *c)
{
	const char *single[] = { c->server, c->ca_file, c->proxy, c->vm, c->crypttab, c->fstab,
				 c->unit_dir };

	if (!startswith(c->server, "https://"))
		return false;
	if (c->vm[0] && !api_name_valid(c->vm))
		return false;
	if (c->n_stop_units > AGENT_CONF_LIST_MAX || c->n_include > AGENT_CONF_LIST_MAX ||
	    c->n_exclude > AGENT_CONF_LIST_MAX)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(single); i++)
		if (!value_ok(single[i], false))
			return false;
	for (size_t i = 0; i < c->n_stop_units; i++)
		if (!c->stop_units[i][0] || !value_ok(c->stop_units[i], true) || streq(c->stop_units[i], "auto"))
			return false;
	for (size_t i = 0; i < c->n_include; i++)
		if (!c->include[i][0] || !value_ok(c->include[i], true))
			return false;
	for (size_t i = 0; i < c->n_exclude; i++)
		if (!c->exclude[i][0] || !value_ok(c->exclude[i], true))
			return false;
	return true;
}

/* The default path of name, with the configuration directory created when missing. */
static int default_path(const char *name, char *buf, size_t len, const char **ret)
{
	int r;

	if (!agent_conf_path(name, buf, len))
		return -ENAMETOOLONG;
	r = mkdir_p(path_conf_dir(), 0755);
	if (r < 0)
		return r;
	*ret = buf;
	return 0;
}

int agent_conf_write(const char *path, const struct agent_conf *c)
{
	_cleanup_free_ char *text = NULL;
	char def[PATH_MAX];
	int r;

	if (!conf_writable(c))
		return -EINVAL;
	if (!path) {
		r = default_path(AGENT_CONF_NAME, def, sizeof(def), &path);
		if (r < 0)
			return r;
	}
	text = agent_conf_format(c);
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0644);
}

/* A credential is printable ASCII without blanks and starts with vmc-vm-: anything else in the
 * file is a mistake better caught here than as a 401. */
static bool credential_valid(const char *s, size_t n)
{
	if (n <= strlen(CREDENTIAL_PREFIX) || strncmp(s, CREDENTIAL_PREFIX, strlen(CREDENTIAL_PREFIX)) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

int agent_credential_read(const char *path, void **ret, size_t *ret_size, char *err, size_t errlen)
{
	_cleanup_secret_ char *raw = NULL;
	_cleanup_secret_ char *out = NULL;
	char def[PATH_MAX];
	bool open_to_others = false;
	size_t n = 0, start = 0;
	int r;

	if (!path) {
		path = agent_conf_path(AGENT_CREDENTIAL_NAME, def, sizeof(def));
		if (!path) {
			snprintf(err, errlen, "%s/%s: path too long", path_conf_dir(), AGENT_CREDENTIAL_NAME);
			return -ENAMETOOLONG;
		}
	}
	r = secret_read_file(path, (void **)&raw, &n, &open_to_others);
	if (r == -ENOENT) {
		snprintf(err, errlen, "%s: not found: this VM is not enrolled (run vmcrypt enroll)", path);
		return r;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot read the VM credential: %s", path, secret_read_strerror(r));
		return r;
	}
	if (open_to_others) {
		snprintf(err, errlen, "%s: the VM credential is open to group or others; run chmod 0600 %s "
			 "and, if others may have read it, revoke and re-enroll the VM", path, path);
		return -EPERM;
	}
	while (start < n && isspace((unsigned char)raw[start]))
		start++;
	while (n > start && isspace((unsigned char)raw[n - 1]))
		n--;
	if (!credential_valid(raw + start, n - start)) {
		snprintf(err, errlen, "%s: not a VM credential (expected one line vmc-vm-...); run vmcrypt "
			 "enroll --force with a new enrollment token", path);
		return -EINVAL;
	}
	out = secret_alloc(n - start + 1);
	if (!out)
		return -ENOMEM;
	memcpy(out, raw + start, n - start);
	*ret_size = n - start;
	*ret = TAKE_PTR(out);
	return 0;
}

int agent_credential_write(const char *path, const void *cred, size_t n)
{
	char def[PATH_MAX];
	int r;

	if (!credential_valid(cred, n))
		return -EINVAL;
	if (!path) {
		r = default_path(AGENT_CREDENTIAL_NAME, def, sizeof(def), &path);
		if (r < 0)
			return r;
	}
	/* write_file_atomic() creates its temporary file with mkostemp(): O_EXCL and mode 0600
	 * before the first byte is written. */
	return write_file_atomic(path, cred, n, 0600);
}
