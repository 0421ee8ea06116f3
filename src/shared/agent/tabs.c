/* crypttab and fstab edits that keep foreign lines byte for byte. */
#include <blkid.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/tabs.h"
#include "shared/paths.h"
#include "shared/volume/mount-util.h"

#define MAPPER_PREFIX "/dev/mapper/vmcrypt-"

/* One line without its '\n'. text holds len bytes plus a NUL, so the parsers can use it as a
 * string (a line with a NUL byte is cut there for them, never for the output). */
struct tab_line {
	char *text;
	size_t len;
	bool newline;
};

struct tab_file {
	struct tab_line *lines;
	size_t n, allocated;
	char *text; /* cache for tab_file_text() */
	size_t text_len;
	bool text_valid;
	bool changed;
	/* What was read from loaded_path, for the -ESTALE check of tab_file_save(). */
	char *loaded_path;
	char *loaded;
	size_t loaded_len;
	bool loaded_exists;
};

static void line_done(struct tab_line *l)
{
	free(l->text);
	l->text = NULL;
}

static int line_init(struct tab_line *l, const char *text, size_t len, bool newline)
{
	char *p = malloc(len + 1);

	if (!p)
		return -ENOMEM;
	memcpy(p, text, len);
	p[len] = 0;
	*l = (struct tab_line){ .text = p, .len = len, .newline = newline };
	return 0;
}

static void touch(struct tab_file *t)
{
	t->text_valid = false;
	t->changed = true;
}

/* Makes room for one more line at index at (0..n). */
static int lines_open_gap(struct tab_file *t, size_t at)
{
	if (t->n == t->allocated) {
		size_t a = t->allocated ? t->allocated * 2 : 32;
		struct tab_line *p = reallocarray(t->lines, a, sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->lines = p;
		t->allocated = a;
	}
	memmove(&t->lines[at + 1], &t->lines[at], (t->n - at) * sizeof(*t->lines));
	t->n++;
	return 0;
}

/* Inserts a new line at index at. The file's end keeps its form: a line added at the end of a
 * file whose last line has no newline takes that place (the old last line gains the newline), so
 * removing it again gives back the original bytes. */
static int lines_insert(struct tab_file *t, size_t at, const char *text)
{
	bool newline = true;
	struct tab_line l;
	int r;

	if (at == t->n && t->n > 0 && !t->lines[t->n - 1].newline) {
		t->lines[t->n - 1].newline = true;
		newline = false;
	}
	r = line_init(&l, text, strlen(text), newline);
	if (r < 0)
		return r;
	r = lines_open_gap(t, at);
	if (r < 0) {
		if (!newline)
			t->lines[t->n - 1].newline = false;
		line_done(&l);
		return r;
	}
	t->lines[at] = l;
	touch(t);
	return 0;
}

/* Removes line at; when it was the last line and had no newline, the new last line loses its
 * newline (the inverse of lines_insert() at the end). */
static void lines_remove(struct tab_file *t, size_t at)
{
	bool newline = t->lines[at].newline;

	line_done(&t->lines[at]);
	memmove(&t->lines[at], &t->lines[at + 1], (t->n - at - 1) * sizeof(*t->lines));
	t->n--;
	if (at == t->n && at > 0 && !newline)
		t->lines[at - 1].newline = false;
	touch(t);
}

/* Replaces line at's text with len bytes, keeping its newline. Returns 1 when it changed. */
static int lines_replace_n(struct tab_file *t, size_t at, const char *text, size_t len)
{
	struct tab_line l;
	int r;

	if (t->lines[at].len == len && memcmp(t->lines[at].text, text, len) == 0)
		return 0;
	r = line_init(&l, text, len, t->lines[at].newline);
	if (r < 0)
		return r;
	line_done(&t->lines[at]);
	t->lines[at] = l;
	touch(t);
	return 1;
}

static int lines_replace(struct tab_file *t, size_t at, const char *text)
{
	return lines_replace_n(t, at, text, strlen(text));
}

static int parse_text(struct tab_file *t, const char *text, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		const char *nl = memchr(text + pos, '\n', size - pos);
		size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
		int r = lines_open_gap(t, t->n);

		if (r < 0)
			return r;
		r = line_init(&t->lines[t->n - 1], text + pos, len, nl != NULL);
		if (r < 0) {
			t->n--;
			return r;
		}
		pos += len + (nl ? 1 : 0);
	}
	return 0;
}

int tab_file_from_text(const char *text, size_t size, struct tab_file **ret)
{
	struct tab_file *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	r = parse_text(t, text, size);
	if (r < 0) {
		tab_file_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

int tab_file_load(const char *path, struct tab_file **ret)
{
	_cleanup_free_ char *data = NULL;
	size_t size = 0;
	struct tab_file *t;
	bool exists = true;
	int r;

	r = read_full_file(path, TAB_FILE_MAX, &data, &size);
	if (r == -ENOENT)
		exists = false;
	else if (r < 0)
		return r;
	r = tab_file_from_text(exists ? data : "", exists ? size : 0, &t);
	if (r < 0)
		return r;
	t->loaded_path = strdup(path);
	if (!t->loaded_path) {
		tab_file_free(t);
		return -ENOMEM;
	}
	t->loaded = TAKE_PTR(data);
	t->loaded_len = size;
	t->loaded_exists = exists;
	*ret = t;
	return 0;
}

void tab_file_free(struct tab_file *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		line_done(&t->lines[i]);
	free(t->lines);
	free(t->text);
	free(t->loaded_path);
	free(t->loaded);
	free(t);
}

const char *tab_file_text(struct tab_file *t, size_t *ret_size)
{
	size_t size = 0, pos = 0;
	char *p;

	if (!t->text_valid) {
		for (size_t i = 0; i < t->n; i++)
			size += t->lines[i].len + t->lines[i].newline;
		p = malloc(size + 1);
		if (!p)
			return NULL;
		for (size_t i = 0; i < t->n; i++) {
			memcpy(p + pos, t->lines[i].text, t->lines[i].len);
			pos += t->lines[i].len;
			if (t->lines[i].newline)
				p[pos++] = '\n';
		}
		p[pos] = 0;
		free(t->text);
		t->text = p;
		t->text_len = size;
		t->text_valid = true;
	}
	if (ret_size)
		*ret_size = t->text_len;
	return t->text;
}

bool tab_file_changed(const struct tab_file *t)
{
	return t->changed;
}

/* Writes data to fd's file named tmp, with mode and owner, and fsyncs it. */
static int write_fd(int fd, const void *data, size_t size, const struct stat *like)
{
	int r;

	if (fchmod(fd, like ? like->st_mode & 07777 : 0644) < 0)
		return negative_errno();
	/* The owner only matters when it is not us (root editing a file owned by someone else). */
	if (like && (like->st_uid != geteuid() || like->st_gid != getegid()) &&
	    fchown(fd, like->st_uid, like->st_gid) < 0)
		return negative_errno();
	r = write_all(fd, data, size);
	if (r < 0)
		return r;
	if (fsync(fd) < 0)
		return negative_errno();
	return 0;
}

/* Writes data to path through path.tmpXXXXXX and a rename, with the mode and owner of like. */
static int write_copy(const char *path, const void *data, size_t size, const struct stat *like)
{
	char tmp[PATH_MAX];
	_cleanup_close_ int fd = -1;
	int r;

	if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	r = write_fd(fd, data, size, like);
	if (r >= 0 && rename(tmp, path) < 0)
		r = negative_errno();
	if (r < 0)
		unlink(tmp);
	return r;
}

int tab_file_save(struct tab_file *t, const char *path)
{
	char real[PATH_MAX], newpath[PATH_MAX + 16], bakpath[PATH_MAX + 16];
	_cleanup_free_ char *old = NULL;
	_cleanup_free_ char *copy = NULL;
	_cleanup_free_ char *loaded_path = NULL;
	_cleanup_close_ int fd = -1;
	size_t old_size = 0, size;
	const char *text;
	struct stat st;
	bool exists;
	int r;

	text = tab_file_text(t, &size);
	if (!text)
		return -ENOMEM;
	/* Replace the file a symlink names, never the link (rename would turn it into a file). */
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		if (!realpath(path, real))
			return negative_errno();
	} else if (snprintf(real, sizeof(real), "%s", path) >= (int)sizeof(real))
		return -ENAMETOOLONG;

	r = read_full_file(real, TAB_FILE_MAX, &old, &old_size);
	if (r < 0 && r != -ENOENT)
		return r;
	exists = r == 0;
	if (exists && stat(real, &st) < 0)
		return negative_errno();
	if (t->loaded_path && streq(t->loaded_path, path) &&
	    (exists != t->loaded_exists ||
	     (exists && (old_size != t->loaded_len || memcmp(old, t->loaded, old_size) != 0))))
		return -ESTALE;

	if (snprintf(newpath, sizeof(newpath), "%s.vmcrypt-new", real) >= (int)sizeof(newpath) ||
	    snprintf(bakpath, sizeof(bakpath), "%s.vmcrypt-bak", real) >= (int)sizeof(bakpath))
		return -ENAMETOOLONG;
	fd = open(newpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return negative_errno();
	r = write_fd(fd, text, size, exists ? &st : NULL);
	fd = safe_close(fd);
	if (r >= 0 && exists)
		r = write_copy(bakpath, old, old_size, &st);
	if (r >= 0 && rename(newpath, real) < 0)
		r = negative_errno();
	if (r < 0) {
		unlink(newpath);
		return r;
	}
	r = fsync_parent_dir(real);
	if (r < 0)
		return r;

	/* The table is now what path holds. */
	copy = malloc(size + 1);
	loaded_path = strdup(path);
	if (!copy || !loaded_path)
		return -ENOMEM;
	memcpy(copy, text, size + 1);
	free(t->loaded);
	free(t->loaded_path);
	t->loaded = TAKE_PTR(copy);
	t->loaded_path = TAKE_PTR(loaded_path);
	t->loaded_len = size;
	t->loaded_exists = true;
	t->changed = false;
	return 0;
}

/* --- crypttab --- */

/* crypttab fields are split at systemd's WHITESPACE (" \t\n\r"). */
static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* fstab fields at blanks only, as libmount's parser does (isblank()): "\v" is part of a field. */
static bool is_fstab_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Copies the first whitespace-separated field of an active line (not blank, not a comment) into
 * buf. Returns false for other lines or a field that does not fit. */
static bool first_field(const char *line, char *buf, size_t len)
{
	size_t n;

	while (is_blank(*line))
		line++;
	if (*line == 0 || *line == '#')
		return false;
	for (n = 0; line[n] && !is_blank(line[n]); n++)
		;
	if (n >= len)
		return false;
	memcpy(buf, line, n);
	buf[n] = 0;
	return true;
}

static bool crypttab_line_is(const struct tab_line *l, const char *name)
{
	char field[256];
	return first_field(l->text, field, sizeof(field)) && streq(field, name);
}

/* A crypttab field or fstab source we write: no whitespace or control bytes, no leading '#'. */
static bool field_valid(const char *s)
{
	if (!s || !*s || *s == '#')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

int crypttab_set(struct tab_file *t, const char *name, const char *source, const char *keyfile,
		 const char *options)
{
	_cleanup_free_ char *line = NULL;
	bool with_options = options && *options;
	size_t first = SIZE_MAX;
	int r, changed = 0;

	if (!keyfile)
		keyfile = "none";
	if (!field_valid(name) || strlen(name) >= 256 || !field_valid(source) ||
	    !field_valid(keyfile) || (with_options && !field_valid(options)))
		return -EINVAL;
	if (asprintf(&line, "%s %s %s%s%s", name, source, keyfile, with_options ? " " : "",
		     with_options ? options : "") < 0)
		return -ENOMEM;

	for (size_t i = 0; i < t->n;) {
		if (!crypttab_line_is(&t->lines[i], name)) {
			i++;
			continue;
		}
		if (first == SIZE_MAX) {
			first = i++;
			continue;
		}
		lines_remove(t, i);
		changed = 1;
	}
	if (first == SIZE_MAX) {
		r = lines_insert(t, t->n, line);
		return r < 0 ? r : 1;
	}
	r = lines_replace(t, first, line);
	return r < 0 ? r : (r | changed);
}

int crypttab_remove(struct tab_file *t, const char *name)
{
	int changed = 0;

	for (size_t i = 0; i < t->n;) {
		if (crypttab_line_is(&t->lines[i], name)) {
			lines_remove(t, i);
			changed = 1;
		} else
			i++;
	}
	return changed;
}

bool crypttab_has(const struct tab_file *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (crypttab_line_is(&t->lines[i], name))
			return true;
	return false;
}

/* --- fstab --- */

DEFINE_CLEANUP_FUNC(tabs_fs_unrefp, struct libmnt_fs *, mnt_unref_fs)

static int parse_error_skip(struct libmnt_table *tb, const char *filename, int line)
{
	return 1; /* not an fstab entry: the caller keeps the line as it is and never matches it */
}

/* Parses one line as an fstab entry through libmount (which unescapes \040 and friends).
 * Returns the entry (unref with mnt_unref_fs()) or NULL for comments, blank and broken lines. */
static struct libmnt_fs *fstab_parse_line(const char *text)
{
	_cleanup_(mount_util_table_unrefp) struct libmnt_table *tb = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	struct libmnt_fs *fs = NULL;
	const char *p = text;

	while (is_fstab_blank(*p))
		p++;
	if (*p == 0 || *p == '#')
		return NULL;
	tb = mnt_new_table();
	if (!tb)
		return NULL;
	mnt_table_set_parser_errcb(tb, parse_error_skip);
	f = fmemopen((void *)text, strlen(text), "r");
	if (!f)
		return NULL;
	if (mnt_table_parse_stream(tb, f, "fstab") < 0 || mnt_table_get_nents(tb) != 1)
		return NULL;
	if (mnt_table_first_fs(tb, &fs) != 0 || !mnt_fs_get_target(fs) || !mnt_fs_get_source(fs))
		return NULL;
	mnt_ref_fs(fs);
	return fs;
}

static int entry_from_fs(struct libmnt_fs *fs, struct fstab_entry *ret)
{
	const char *type = mnt_fs_get_fstype(fs), *opts = mnt_fs_get_options(fs);
	struct fstab_entry e = {};

	if (snprintf(e.source, sizeof(e.source), "%s", mnt_fs_get_source(fs)) >= (int)sizeof(e.source) ||
	    snprintf(e.target, sizeof(e.target), "%s", mnt_fs_get_target(fs)) >= (int)sizeof(e.target) ||
	    snprintf(e.fstype, sizeof(e.fstype), "%s", type ? type : "") >= (int)sizeof(e.fstype) ||
	    snprintf(e.options, sizeof(e.options), "%s", opts && *opts ? opts : "defaults") >=
		    (int)sizeof(e.options))
		return -ENAMETOOLONG;
	e.freq = mnt_fs_get_freq(fs);
	e.passno = mnt_fs_get_passno(fs);
	*ret = e;
	return 0;
}

/* The index of the first active line for mountpoint at or after from, or SIZE_MAX. With
 * ours_only, only lines whose source is a /dev/mapper/vmcrypt- device. */
static size_t fstab_index(const struct tab_file *t, size_t from, const char *mountpoint,
			  bool ours_only)
{
	for (size_t i = from; i < t->n; i++) {
		_cleanup_(tabs_fs_unrefp) struct libmnt_fs *fs = fstab_parse_line(t->lines[i].text);

		if (!fs || !mnt_fs_streq_target(fs, mountpoint))
			continue;
		if (ours_only && !startswith(mnt_fs_get_source(fs), MAPPER_PREFIX))
			continue;
		return i;
	}
	return SIZE_MAX;
}

/* The index of the "#vmcrypt-orig:" comment whose kept line is for mountpoint, or SIZE_MAX. */
static size_t fstab_orig_index(const struct tab_file *t, const char *mountpoint)
{
	for (size_t i = 0; i < t->n; i++) {
		const char *orig = startswith(t->lines[i].text, TAB_ORIG_PREFIX);
		_cleanup_(tabs_fs_unrefp) struct libmnt_fs *fs = NULL;

		if (!orig)
			continue;
		fs = fstab_parse_line(orig);
		if (fs && mnt_fs_streq_target(fs, mountpoint))
			return i;
	}
	return SIZE_MAX;
}

int fstab_find(const struct tab_file *t, const char *mountpoint, struct fstab_entry *ret)
{
	size_t i = fstab_index(t, 0, mountpoint, false);
	_cleanup_(tabs_fs_unrefp) struct libmnt_fs *fs = NULL;

	if (i == SIZE_MAX)
		return -ENOENT;
	fs = fstab_parse_line(t->lines[i].text);
	if (!fs)
		return -ENOMEM;
	return entry_from_fs(fs, ret);
}

int fstab_entries(const struct tab_file *t, struct fstab_entry **ret, size_t *ret_n)
{
	struct fstab_entry *v = NULL;
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++) {
		_cleanup_(tabs_fs_unrefp) struct libmnt_fs *fs = fstab_parse_line(t->lines[i].text);
		struct fstab_entry *p;

		if (!fs)
			continue;
		p = reallocarray(v, n + 1, sizeof(*v));
		if (!p) {
			free(v);
			return -ENOMEM;
		}
		v = p;
		if (entry_from_fs(fs, &v[n]) == 0)
			n++;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Copies field k (0-based) of an active fstab line as written (escapes kept) into buf.
 * Returns 1, 0 when the line has fewer fields, -EINVAL when the field does not fit. */
static int raw_field(const char *line, size_t k, char *buf, size_t len)
{
	for (size_t i = 0;; i++) {
		size_t n;

		while (is_fstab_blank(*line))
			line++;
		if (!*line)
			return 0;
		for (n = 0; line[n] && !is_fstab_blank(line[n]); n++)
			;
		if (i == k) {
			if (n >= len)
				return -EINVAL;
			memcpy(buf, line, n);
			buf[n] = 0;
			return 1;
		}
		line += n;
	}
}

/* Options with each of add (comma-separated) appended unless present; through libmount's optstr
 * functions, which know "x=y" values and quoting. Returns a malloc'd string or NULL (-ENOMEM). */
static char *options_merge(const char *options, const char *add)
{
	char *merged = strdup(options && *options ? options : "defaults");
	_cleanup_free_ char *list = add ? strdup(add) : NULL;
	char *p = list, *name, *value;
	size_t namesz, valuesz;

	if (!merged || (add && !list)) {
		free(merged);
		return NULL;
	}
	while (p && mnt_optstr_next_option(&p, &name, &namesz, &value, &valuesz) == 0) {
		_cleanup_free_ char *n = strndup(name, namesz);
		_cleanup_free_ char *v = value ? strndup(value, valuesz) : NULL;

		if (!n || (value && !v)) {
			free(merged);
			return NULL;
		}
		if (mnt_optstr_get_option(merged, n, NULL, NULL) == 0)
			continue; /* already there, with whatever value the admin gave it */
		if (mnt_optstr_append_option(&merged, n, v) < 0) {
			free(merged);
			return NULL;
		}
	}
	return merged;
}

/* The line that replaces orig (an active fstab line): new_source, orig's target and type fields
 * as written, merged options, orig's freq and passno. Returns 0, -EINVAL (orig is no entry, or a
 * field is too long), -ENOMEM. */
static int redirected_line(const char *orig, const char *new_source, const char *add_options,
			   char **ret)
{
	_cleanup_(tabs_fs_unrefp) struct libmnt_fs *fs = fstab_parse_line(orig);
	_cleanup_free_ char *merged = NULL;
	char target[PATH_MAX], type[PATH_MAX], options[PATH_MAX];
	int r;

	if (!fs || raw_field(orig, 1, target, sizeof(target)) <= 0)
		return -EINVAL;
	r = raw_field(orig, 2, type, sizeof(type));
	if (r < 0)
		return r;
	if (r == 0)
		snprintf(type, sizeof(type), "auto");
	/* The options as written: libmount's are unescaped (\040 is a space there, which would
	 * split our line). */
	r = raw_field(orig, 3, options, sizeof(options));
	if (r < 0)
		return r;
	if (r == 0)
		options[0] = 0;
	merged = options_merge(options, add_options);
	if (!merged)
		return -ENOMEM;
	if (asprintf(ret, "%s %s %s %s %d %d", new_source, target, type, merged, mnt_fs_get_freq(fs),
		     mnt_fs_get_passno(fs)) < 0)
		return -ENOMEM;
	return 0;
}

int fstab_redirect(struct tab_file *t, const char *mountpoint, const char *new_source,
		   const char *add_options)
{
	_cleanup_free_ char *comment = NULL;
	_cleanup_free_ char *line = NULL;
	size_t orig, ours, comment_len;
	bool newline;
	int r;

	if (!field_valid(new_source) || (add_options && *add_options && !field_valid(add_options)))
		return -EINVAL;
	orig = fstab_orig_index(t, mountpoint);
	if (orig != SIZE_MAX) {
		/* Redirected before: derive the line again from the kept original. */
		r = redirected_line(t->lines[orig].text + strlen(TAB_ORIG_PREFIX), new_source,
				    add_options, &line);
		if (r < 0)
			return r;
		ours = fstab_index(t, orig + 1, mountpoint, false);
		if (ours == SIZE_MAX) {
			r = lines_insert(t, orig + 1, line);
			return r < 0 ? r : 1;
		}
		return lines_replace(t, ours, line);
	}

	orig = fstab_index(t, 0, mountpoint, false);
	if (orig == SIZE_MAX)
		return -ENOENT;
	r = redirected_line(t->lines[orig].text, new_source, add_options, &line);
	if (r < 0)
		return r;
	/* The kept copy is byte for byte, even past a NUL the parsers stop at. */
	comment = malloc(strlen(TAB_ORIG_PREFIX) + t->lines[orig].len + 1);
	if (!comment)
		return -ENOMEM;
	memcpy(comment, TAB_ORIG_PREFIX, strlen(TAB_ORIG_PREFIX));
	memcpy(comment + strlen(TAB_ORIG_PREFIX), t->lines[orig].text, t->lines[orig].len + 1);
	comment_len = strlen(TAB_ORIG_PREFIX) + t->lines[orig].len;
	/* The comment takes the original's place and a newline; our line inherits the original's
	 * newline, so a file whose last line was this one keeps its end as it was. */
	newline = t->lines[orig].newline;
	r = lines_insert(t, orig + 1, line);
	if (r < 0)
		return r;
	t->lines[orig + 1].newline = newline;
	t->lines[orig].newline = true;
	r = lines_replace_n(t, orig, comment, comment_len);
	return r < 0 ? r : 1;
}

int fstab_add(struct tab_file *t, const char *source, const char *target, const char *fstype,
	      const char *options, int passno, const char *before)
{
	_cleanup_free_ char *line = NULL;
	size_t at;

	if (!field_valid(source) || !field_valid(target) || !field_valid(fstype) || !field_valid(options) ||
	    passno < 0 || passno > 9)
		return -EINVAL;
	if (fstab_index(t, 0, target, false) != SIZE_MAX)
		return 0;
	if (asprintf(&line, "%s %s %s %s 0 %d", source, target, fstype, options, passno) < 0)
		return -ENOMEM;
	at = before ? fstab_index(t, 0, before, false) : SIZE_MAX;
	return lines_insert(t, at == SIZE_MAX ? t->n : at, line) < 0 ? -ENOMEM : 1;
}

int fstab_restore(struct tab_file *t, const char *mountpoint)
{
	size_t orig, ours, other;
	bool newline;
	int r;

	orig = fstab_orig_index(t, mountpoint);
	if (orig == SIZE_MAX)
		return 0;
	/* Ours is preferably the line right after the comment, else any vmcrypt mapper line. */
	ours = fstab_index(t, orig + 1, mountpoint, true);
	if (ours == SIZE_MAX)
		ours = fstab_index(t, 0, mountpoint, true);
	for (other = fstab_index(t, 0, mountpoint, false); other != SIZE_MAX && other == ours;
	     other = fstab_index(t, other + 1, mountpoint, false))
		;
	if (other != SIZE_MAX)
		return -EEXIST;

	newline = t->lines[orig].newline;
	if (ours == orig + 1)
		newline = t->lines[ours].newline;
	r = lines_replace_n(t, orig, t->lines[orig].text + strlen(TAB_ORIG_PREFIX),
			    t->lines[orig].len - strlen(TAB_ORIG_PREFIX));
	if (r < 0)
		return r;
	if (ours != SIZE_MAX) {
		if (ours == orig + 1) {
			/* Removing the last line would take the restored one's newline away; set it
			 * after. */
			line_done(&t->lines[ours]);
			memmove(&t->lines[ours], &t->lines[ours + 1],
				(t->n - ours - 1) * sizeof(*t->lines));
			t->n--;
			t->lines[orig].newline = newline;
			touch(t);
		} else
			lines_remove(t, ours);
	}
	return 1;
}

/* --- source resolution --- */

/* udev's encoding of a tag value in a /dev/disk/by-* name: every byte outside
 * [A-Za-z0-9#+-.:=@_] and plain '/' becomes \xNN (systemd's encode_devnode_name()). */
static void udev_encode(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (; *s && n + 5 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || strchr("#+-.:=@_", c))
			buf[n++] = (char)c;
		else
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", c);
	}
	buf[n] = 0;
}

static int resolve_fixture(const char *root, const char *source, char *dev, size_t len)
{
	static const struct {
		const char *tag, *dir;
	} tags[] = {
		{ "UUID=", "by-uuid" },
		{ "LABEL=", "by-label" },
		{ "PARTUUID=", "by-partuuid" },
		{ "PARTLABEL=", "by-partlabel" },
	};
	char link[PATH_MAX * 2], target[PATH_MAX], value[PATH_MAX], enc[PATH_MAX];
	const char *v = NULL, *base;
	ssize_t k;

	for (size_t i = 0; i < ELEMENTSOF(tags) && !v; i++) {
		v = startswith(source, tags[i].tag);
		if (!v)
			continue;
		snprintf(value, sizeof(value), "%s", v);
		if (value[0] == '"' && strlen(value) >= 2 && value[strlen(value) - 1] == '"') {
			memmove(value, value + 1, strlen(value));
			value[strlen(value) - 1] = 0;
		}
		udev_encode(value, enc, sizeof(enc));
		snprintf(link, sizeof(link), "%s/dev/disk/%s/%s", root, tags[i].dir, enc);
	}
	if (!v) {
		if (!startswith(source, "/dev/"))
			return -ENOENT;
		snprintf(link, sizeof(link), "%s%s", root, source);
	}
	k = readlink(link, target, sizeof(target) - 1);
	if (k < 0) {
		if (v)
			return -ENOENT;
		/* A plain node in the fixture, or none at all: the path is the device's name. */
		return snprintf(dev, len, "%s", source) >= (int)len ? -ENAMETOOLONG : 0;
	}
	target[k] = 0;
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	return snprintf(dev, len, "/dev/%s", base) >= (int)len ? -ENAMETOOLONG : 0;
}

int fstab_source_resolve(const char *source, char *dev, size_t len)
{
	_cleanup_free_ char *p = NULL;
	const char *root = path_test_root();
	struct stat st;

	if (*root)
		return resolve_fixture(root, source, dev, len);
	/* Only tags and absolute paths name devices; blkid would take anything else as a path. */
	if (!strchr(source, '=') && source[0] != '/')
		return -ENOENT;
	p = blkid_evaluate_spec(source, NULL);
	if (!p || stat(p, &st) < 0 || !S_ISBLK(st.st_mode))
		return -ENOENT;
	return snprintf(dev, len, "%s", p) >= (int)len ? -ENAMETOOLONG : 0;
}
