/* The agent's data volumes and their names. */
#include <errno.h>
#include <libmount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/select.h"
#include "shared/agent/tabs.h"
#include "shared/api/api.h"
#include "shared/paths.h"
#include "shared/volume/volumes.h"

struct selection {
	const struct volume *v;        /* discovered volumes */
	size_t nv;
	struct fstab_entry *fstab;
	size_t nf;
	struct agent_volume *out;      /* room for VOLUMES_MAX + nf */
	size_t n, max;
	bool fixture;
	char *err;
	size_t errlen;
};

static bool fstype_never_data(const char *t)
{
	static const char *const types[] = { "swap", "squashfs", "iso9660", "udf" };

	for (size_t i = 0; i < ELEMENTSOF(types); i++)
		if (streq(t, types[i]))
			return true;
	return false;
}

/* Mount points compared as paths: repeated and trailing slashes do not count. */
static void path_norm(const char *p, char *buf, size_t len)
{
	size_t n = 0;

	for (; *p && n + 1 < len; p++) {
		if (*p == '/' && n > 0 && buf[n - 1] == '/')
			continue;
		buf[n++] = *p;
	}
	while (n > 1 && buf[n - 1] == '/')
		n--;
	buf[n] = 0;
}

static bool path_eq(const char *a, const char *b)
{
	char x[PATH_MAX], y[PATH_MAX];

	if (!*a || !*b)
		return false;
	path_norm(a, x, sizeof(x));
	path_norm(b, y, sizeof(y));
	return streq(x, y);
}

/* Whether path names the discovered volume v: its device path, its kernel name under /dev, or
 * (on the real root) the same device number. */
static bool names_volume(const struct selection *s, const char *path, const struct volume *v)
{
	struct stat st;
	char dev[PATH_MAX];

	if (streq(path, v->device))
		return true;
	snprintf(dev, sizeof(dev), "/dev/%s", v->name);
	if (streq(path, dev))
		return true;
	return !s->fixture && stat(path, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == v->devnum;
}

static const struct volume *volume_by_device(const struct selection *s, const char *path)
{
	for (size_t i = 0; i < s->nv; i++)
		if (names_volume(s, path, &s->v[i]))
			return &s->v[i];
	return NULL;
}

static const struct volume *volume_by_mountpoint(const struct selection *s, const char *mp)
{
	for (size_t i = 0; i < s->nv; i++)
		if (path_eq(s->v[i].mountpoint, mp))
			return &s->v[i];
	return NULL;
}

static const struct fstab_entry *fstab_by_target(const struct selection *s, const char *mp)
{
	for (size_t i = 0; i < s->nf; i++)
		if (path_eq(s->fstab[i].target, mp))
			return &s->fstab[i];
	return NULL;
}

static bool selected(const struct selection *s, const struct agent_volume *a)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct agent_volume *b = &s->out[i];
		if ((a->device[0] && streq(a->device, b->device)) ||
		    (a->mountpoint[0] && path_eq(a->mountpoint, b->mountpoint)) ||
		    (a->mapper[0] && streq(a->mapper, b->mapper)))
			return true;
	}
	return false;
}

static void add_fstab(struct agent_volume *a, const struct fstab_entry *e)
{
	a->in_fstab = true;
	snprintf(a->fstab_source, sizeof(a->fstab_source), "%s", e->source);
	snprintf(a->fstab_options, sizeof(a->fstab_options), "%s", e->options);
	if (!a->mountpoint[0])
		snprintf(a->mountpoint, sizeof(a->mountpoint), "%s", e->target);
	if (!a->fstype[0])
		snprintf(a->fstype, sizeof(a->fstype), "%s", e->fstype);
}

/* The agent's view of a discovered volume. A dm-crypt mapping is described by the device below
 * it, with the mapping as mapper. */
static void from_volume(const struct selection *s, const struct volume *v, struct agent_volume *a)
{
	memset(a, 0, sizeof(*a));
	if (v->kind == VOLUME_KIND_CRYPT) {
		const char *base = strrchr(v->backing, '/');
		struct stat st;

		snprintf(a->device, sizeof(a->device), "%s", v->backing);
		/* A kernel name longer than the field only shortens a fallback name. */
		if (snprintf(a->kernel_name, sizeof(a->kernel_name), "%s", base ? base + 1 : v->backing) < 0)
			a->kernel_name[0] = 0;
		if (!s->fixture && stat(v->backing, &st) == 0 && S_ISBLK(st.st_mode))
			a->devnum = st.st_rdev;
		snprintf(a->mapper, sizeof(a->mapper), "%s", v->device);
		a->already_luks = true;
		a->ours = startswith(v->dm_name, "vmcrypt-") != NULL;
	} else {
		snprintf(a->device, sizeof(a->device), "%s", v->device);
		snprintf(a->kernel_name, sizeof(a->kernel_name), "%s", v->name);
		a->devnum = v->devnum;
		a->already_luks = streq(v->fstype, "crypto_LUKS");
	}
	snprintf(a->fstype, sizeof(a->fstype), "%s", v->fstype);
	snprintf(a->fs_uuid, sizeof(a->fs_uuid), "%s", v->fs_uuid);
	a->size = v->size;
	if (v->mountpoint[0]) {
		a->mounted = true;
		snprintf(a->mountpoint, sizeof(a->mountpoint), "%s", v->mountpoint);
		snprintf(a->mount_options, sizeof(a->mount_options), "%s", v->mount_options);
	}
}

static int push(struct selection *s, const struct agent_volume *a)
{
	if (selected(s, a))
		return 0;
	if (s->n >= s->max)
		return -E2BIG;
	s->out[s->n++] = *a;
	return 1;
}

/* Why a discovered volume may not be a data volume even when named, or NULL. */
static const char *refusal(const struct volume *v)
{
	if (v->role == VOLUME_ROLE_OS)
		return "the OS volume";
	if (v->role == VOLUME_ROLE_EXCLUDED)
		return v->excluded_why[0] ? v->excluded_why : "excluded";
	return NULL;
}

/* Whether discovery alone (no Include=) takes a volume that is otherwise a data volume. */
static bool auto_data(const struct volume *v, const char *fstype)
{
	return v->kind != VOLUME_KIND_LOOP && !v->read_only && !fstype_never_data(fstype);
}

/* The volume an fstab entry that is not mounted stands for, into *a. Returns 1 when it is a data
 * volume, 0 when it is not (with *why when a reason can be told), -errno. */
static int from_fstab(const struct selection *s, const struct fstab_entry *e, bool named,
		      struct agent_volume *a, const char **why)
{
	char dev[PATH_MAX];
	const struct volume *v;
	bool bind;
	int r;

	*why = NULL;
	bind = mnt_optstr_get_option(e->options, "bind", NULL, NULL) == 0 ||
	       mnt_optstr_get_option(e->options, "rbind", NULL, NULL) == 0;
	if (streq(e->fstype, "swap"))
		return *why = "swap", 0;
	if (e->target[0] != '/' || bind)
		return 0;
	if (streq(e->target, "/"))
		return *why = "the OS volume", 0;
	if (volumes_path_is_under(e->target, "/boot"))
		return *why = "/boot", 0;
	if (!named && fstype_never_data(e->fstype))
		return 0;

	r = fstab_source_resolve(e->source, dev, sizeof(dev));
	v = r < 0 ? NULL : volume_by_device(s, dev);
	if (!v) {
		if (!startswith(e->source, AGENT_MAPPER_PREFIX))
			return *why = "its source names no block device", 0;
		/* Our mapping, not open (the vault was down at boot): still ours. */
		memset(a, 0, sizeof(*a));
		snprintf(a->mapper, sizeof(a->mapper), "%s", e->source);
		a->ours = a->already_luks = true;
		add_fstab(a, e);
		return 1;
	}
	if (refusal(v))
		return *why = refusal(v), 0;
	if (v->mountpoint[0])
		return 0; /* mounted elsewhere: the mount is the data volume */
	if (!named && !auto_data(v, e->fstype))
		return 0;
	from_volume(s, v, a);
	add_fstab(a, e);
	return 1;
}

static int discover(struct selection *s)
{
	struct agent_volume a;
	const struct fstab_entry *e;
	const char *why;
	int r;

	for (size_t i = 0; i < s->nv; i++) {
		const struct volume *v = &s->v[i];

		if (v->role != VOLUME_ROLE_DATA || !auto_data(v, v->fstype))
			continue;
		from_volume(s, v, &a);
		if ((e = fstab_by_target(s, v->mountpoint)))
			add_fstab(&a, e);
		r = push(s, &a);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < s->nf; i++) {
		e = &s->fstab[i];
		if (volume_by_mountpoint(s, e->target))
			continue; /* mounted: taken above, or not a data volume */
		r = from_fstab(s, e, false, &a, &why);
		if (r < 0)
			return r;
		if (r > 0 && (r = push(s, &a)) < 0)
			return r;
	}
	return 0;
}

/* "/dev/...", or a tag (UUID=...); any other absolute path is a mount point, '=' or not. */
static bool is_device_item(const char *item)
{
	return startswith(item, "/dev/") || (item[0] != '/' && strchr(item, '=') != NULL);
}

static int include_one(struct selection *s, const char *item)
{
	struct agent_volume a;
	const struct volume *v;
	const struct fstab_entry *e;
	const char *why;
	char dev[PATH_MAX];
	int r;

	if (!is_device_item(item)) {
		if (item[0] != '/') {
			snprintf(s->err, s->errlen, "Include=%s: neither a mount point nor a device", item);
			return -EINVAL;
		}
		v = volume_by_mountpoint(s, item);
		e = fstab_by_target(s, item);
		if (v) {
			if ((why = refusal(v))) {
				snprintf(s->err, s->errlen, "Include=%s: %s is not a data volume", item, why);
				return -EINVAL;
			}
			from_volume(s, v, &a);
			if (e)
				add_fstab(&a, e);
		} else if (e) {
			r = from_fstab(s, e, true, &a, &why);
			if (r < 0)
				return r;
			if (r == 0) {
				snprintf(s->err, s->errlen, "Include=%s: %s", item,
					 why ? why : "not a filesystem on a block device");
				return why && !streq(why, "its source names no block device") ? -EINVAL : -ENOENT;
			}
		} else {
			snprintf(s->err, s->errlen, "Include=%s: no filesystem is mounted there and fstab has no entry for it", item);
			return -ENOENT;
		}
	} else {
		r = fstab_source_resolve(item, dev, sizeof(dev));
		v = r < 0 ? NULL : volume_by_device(s, dev);
		if (!v) {
			snprintf(s->err, s->errlen, "Include=%s: no such block device", item);
			return -ENOENT;
		}
		if ((why = refusal(v))) {
			snprintf(s->err, s->errlen, "Include=%s: %s is not a data volume", item, why);
			return -EINVAL;
		}
		from_volume(s, v, &a);
		if (v->mountpoint[0]) {
			if ((e = fstab_by_target(s, v->mountpoint)))
				add_fstab(&a, e);
		} else {
			/* An fstab entry that names the device gives it its mount point. */
			for (size_t i = 0; i < s->nf; i++) {
				char d[PATH_MAX];

				if (fstab_source_resolve(s->fstab[i].source, d, sizeof(d)) == 0 &&
				    names_volume(s, d, v) && s->fstab[i].target[0] == '/' &&
				    !streq(s->fstab[i].fstype, "swap")) {
					add_fstab(&a, &s->fstab[i]);
					break;
				}
			}
		}
	}
	a.included = true;
	r = push(s, &a);
	return r < 0 ? r : 0;
}

static bool excluded(const struct selection *s, const struct agent_volume *a, const char *item)
{
	char dev[PATH_MAX];
	const struct volume *v;

	if (!is_device_item(item))
		return path_eq(a->mountpoint, item);
	if (streq(item, a->fstab_source) || (a->device[0] && streq(item, a->device)) ||
	    (a->mapper[0] && streq(item, a->mapper)))
		return true;
	if (fstab_source_resolve(item, dev, sizeof(dev)) < 0)
		return false;
	if ((a->device[0] && streq(dev, a->device)) || (a->mapper[0] && streq(dev, a->mapper)))
		return true;
	v = volume_by_device(s, dev);
	return v && a->device[0] && (names_volume(s, a->device, v) ||
				     (a->mapper[0] && names_volume(s, a->mapper, v)));
}

static bool name_taken(const struct selection *s, size_t upto, const char *name)
{
	if (streq(name, AGENT_OS_VOLUME_NAME))
		return true; /* the OS volume's, whatever is mounted on /os */
	for (size_t i = 0; i < upto; i++)
		if (streq(s->out[i].name, name))
			return true;
	return false;
}

static void assign_names(struct selection *s)
{
	/* Our mappings keep the name they were given (vmcrypt-<name>), so they go first. */
	for (size_t i = 0; i < s->n; i++) {
		struct agent_volume *a = &s->out[i];
		const char *p = a->ours ? startswith(a->mapper, AGENT_MAPPER_PREFIX) : NULL;

		a->name[0] = 0;
		if (p && api_name_valid(p) && !name_taken(s, s->n, p))
			snprintf(a->name, sizeof(a->name), "%s", p);
	}
	for (size_t i = 0; i < s->n; i++) {
		struct agent_volume *a = &s->out[i];
		char base[AGENT_NAME_MAX + 1];

		if (a->name[0])
			continue;
		agent_volume_name(a->mountpoint, a->kernel_name, base, sizeof(base));
		if (!name_taken(s, s->n, base)) {
			snprintf(a->name, sizeof(a->name), "%s", base);
			continue;
		}
		for (unsigned k = 2;; k++) {
			char cand[AGENT_NAME_MAX + 1], suffix[16];
			int l = snprintf(suffix, sizeof(suffix), "-%u", k);

			snprintf(cand, sizeof(cand), "%.*s%s", AGENT_NAME_MAX - l, base, suffix);
			if (!name_taken(s, s->n, cand)) {
				snprintf(a->name, sizeof(a->name), "%s", cand);
				break;
			}
		}
	}
}

int agent_select_volumes(const char *fstab_path, char include[][PATH_MAX], size_t n_include,
			 char exclude[][PATH_MAX], size_t n_exclude, struct agent_volume **ret,
			 size_t *ret_n, char *err, size_t errlen)
{
	_cleanup_volumes_ struct volume *v = NULL;
	_cleanup_tab_file_ struct tab_file *t = NULL;
	_cleanup_free_ struct fstab_entry *fe = NULL;
	_cleanup_free_ struct agent_volume *out = NULL;
	struct selection s = { .err = err, .errlen = errlen };
	size_t nv = 0, nf = 0, k;
	int r;

	if (errlen > 0)
		err[0] = 0;
	r = volumes_discover(&v, &nv);
	if (r < 0) {
		snprintf(err, errlen, "volume discovery: %s", strerror(-r));
		return r;
	}
	r = tab_file_load(fstab_path, &t);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", fstab_path, strerror(-r));
		return r;
	}
	r = fstab_entries(t, &fe, &nf);
	if (r < 0)
		return r;
	s.v = v;
	s.nv = nv;
	s.fstab = fe;
	s.nf = nf;
	s.fixture = *path_test_root() != 0;
	s.max = nv + nf + n_include + 1;
	out = calloc(s.max, sizeof(*out));
	if (!out)
		return -ENOMEM;
	s.out = out;

	if (n_include > 0) {
		for (size_t i = 0; i < n_include; i++) {
			r = include_one(&s, include[i]);
			if (r < 0)
				return r;
		}
	} else {
		r = discover(&s);
		if (r < 0)
			return r;
	}

	k = 0;
	for (size_t i = 0; i < s.n; i++) {
		bool drop = false;

		for (size_t j = 0; j < n_exclude && !drop; j++)
			drop = excluded(&s, &s.out[i], exclude[j]);
		if (!drop)
			s.out[k++] = s.out[i];
	}
	s.n = k;
	assign_names(&s);
	*ret = TAKE_PTR(out);
	*ret_n = s.n;
	return 0;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* "/srv/www" -> "srv-www": '/' becomes '-', other bytes outside [A-Za-z0-9._-] '_', leading
 * characters that are not alphanumeric go. */
static void sanitize(const char *in, char *buf, size_t len)
{
	char norm[PATH_MAX];
	size_t n = 0;

	path_norm(in, norm, sizeof(norm));
	for (const char *p = norm; *p && n + 1 < len; p++) {
		char c = *p == '/' ? '-' : is_alnum(*p) || strchr("._-", *p) ? *p : '_';

		if (n == 0 && !is_alnum(c))
			continue;
		buf[n++] = c;
	}
	buf[n] = 0;
}

char *agent_volume_name(const char *mountpoint, const char *kernel_name, char *buf, size_t len)
{
	char tmp[PATH_MAX];
	size_t n;

	sanitize(mountpoint ? mountpoint : "", tmp, sizeof(tmp));
	if (!tmp[0])
		sanitize(kernel_name ? kernel_name : "", tmp, sizeof(tmp));
	if (!tmp[0])
		snprintf(tmp, sizeof(tmp), "volume");
	tmp[MIN((size_t)AGENT_NAME_MAX, len - 1)] = 0;
	n = strlen(tmp);
	if (n >= strlen("-recovery") && streq(tmp + n - strlen("-recovery"), "-recovery"))
		tmp[n - strlen("-recovery")] = '_';
	snprintf(buf, len, "%s", tmp);
	return buf;
}

int agent_volume_mapper_name(const char *name, char *buf, size_t len)
{
	if (!api_name_valid(name))
		return -EINVAL;
	return snprintf(buf, len, "vmcrypt-%s", name) >= (int)len ? -ENAMETOOLONG : 0;
}

int agent_volume_mapper_path(const char *name, char *buf, size_t len)
{
	if (!api_name_valid(name))
		return -EINVAL;
	return snprintf(buf, len, AGENT_MAPPER_PREFIX "%s", name) >= (int)len ? -ENAMETOOLONG : 0;
}
