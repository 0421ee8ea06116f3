/* libFuzzer harness for the crypttab/fstab editor (tabs.c) on any text: every edit the agent
 * makes must be undone byte for byte, whatever else the file holds (comments, junk, NUL bytes,
 * odd escapes, a missing final newline). For each mount point with exactly one entry and no
 * trace of vmcrypt, redirect must change the file, a second redirect must not, and restore must
 * give back the input; a crypttab line set and removed must leave the input too. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/agent/tabs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void assert_text(struct tab_file *t, const uint8_t *data, size_t size)
{
	size_t n;
	const char *text = tab_file_text(t, &n);

	assert(text && n == size && memcmp(text, data, size) == 0);
}

/* A mount point as libmount compares them: redundant slashes do not count. */
static void norm(const char *p, char *buf, size_t len)
{
	size_t n = 0;

	for (; *p && n + 1 < len; p++)
		if (!(*p == '/' && n > 0 && buf[n - 1] == '/'))
			buf[n++] = *p;
	while (n > 1 && buf[n - 1] == '/')
		n--;
	buf[n] = 0;
}

static size_t count_target(const struct fstab_entry *e, size_t n, const char *target)
{
	char a[sizeof(e->target)], b[sizeof(e->target)];
	size_t k = 0;

	norm(target, a, sizeof(a));
	for (size_t i = 0; i < n; i++) {
		norm(e[i].target, b, sizeof(b));
		k += strcmp(a, b) == 0;
	}
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tab_file *t = NULL;
	struct fstab_entry *e = NULL;
	size_t n = 0;
	int r;

	if (size > 4096 || memmem(data, size, "vmcrypt", 7))
		return 0;
	if (tab_file_from_text((const char *)data, size, &t) < 0)
		return 0;
	assert_text(t, data, size);
	if (fstab_entries(t, &e, &n) < 0)
		goto out;
	for (size_t i = 0; i < n && i < 8; i++) {
		struct fstab_entry found;

		/* Only plain, unique mount points: a duplicate is a foreign active line restore
		 * rightly refuses to mount twice. fstab_find() must agree with fstab_entries(). */
		if (count_target(e, n, e[i].target) != 1 || strchr(e[i].target, '\n'))
			continue;
		r = fstab_find(t, e[i].target, &found);
		if (r == -ENAMETOOLONG)
			continue; /* the first line for it has a field too long (fstab_entries() skips it) */
		assert(r == 0);
		r = fstab_redirect(t, e[i].target, "/dev/mapper/vmcrypt-f", "nofail,_netdev");
		if (r == -EINVAL)
			continue; /* a field too long to copy */
		assert(r == 1);
		assert(fstab_redirect(t, e[i].target, "/dev/mapper/vmcrypt-f", "nofail,_netdev") == 0);
		r = fstab_restore(t, e[i].target);
		if (r == -EEXIST) {
			/* Another line for the mount point that fstab_entries() skipped (a field
			 * too long for struct fstab_entry): refused, and nothing may change. */
			const char *before = tab_file_text(t, NULL);
			char *copy = strdup(before);

			assert(copy);
			assert(fstab_restore(t, e[i].target) == -EEXIST);
			assert(strcmp(tab_file_text(t, NULL), copy) == 0);
			free(copy);
			goto out;
		}
		assert(r == 1);
		assert_text(t, data, size);
		assert(fstab_restore(t, e[i].target) == 0);
	}
	r = crypttab_set(t, "vmcrypt-f", "UUID=f", NULL, "luks,nofail");
	assert(r == 1);
	assert(crypttab_has(t, "vmcrypt-f"));
	assert(crypttab_remove(t, "vmcrypt-f") == 1);
	assert_text(t, data, size);
out:
	free(e);
	tab_file_free(t);
	return 0;
}
