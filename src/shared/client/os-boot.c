/* /boot/vmcrypt/os.conf: parsed strictly, written atomically. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/client/os-boot.h"

static int set(char *dst, size_t size, const char *v)
{
	if (strlen(v) >= size)
		return -ENAMETOOLONG;
	snprintf(dst, size, "%s", v);
	return 0;
}

static bool plain_file_name(const char *s)
{
	return *s && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..");
}

static bool mapping_name_ok(const char *s)
{
	/* What dm accepts and crypttab can carry: no '/', no white space. */
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s == '/' || *s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

int os_boot_conf_parse(const char *text, const char *origin, struct os_boot_conf *ret, char *err,
		       size_t errlen)
{
	_cleanup_free_ char *copy = strdup(text);
	struct os_boot_conf c = { 0 };
	char *save = NULL, *line;
	unsigned n = 0;

	if (!copy)
		return -ENOMEM;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq, *k, *v;
		int r;

		n++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: no '=' in the line", origin, n);
			return -EINVAL;
		}
		*eq = 0;
		k = line;
		v = eq + 1;
		v[strcspn(v, "\r")] = 0;
		if (streq(k, "Device"))
			r = set(c.device, sizeof(c.device), v);
		else if (streq(k, "Header"))
			r = set(c.header, sizeof(c.header), v);
		else if (streq(k, "Name"))
			r = set(c.name, sizeof(c.name), v);
		else if (streq(k, "Volume"))
			r = set(c.volume, sizeof(c.volume), v);
		else {
			snprintf(err, errlen, "%s:%u: unknown key %s", origin, n, k);
			return -EINVAL;
		}
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: the value of %s is too long", origin, n, k);
			return -EINVAL;
		}
	}
	if (c.device[0] != '/') {
		snprintf(err, errlen, "%s: Device= must be an absolute path", origin);
		return -EINVAL;
	}
	if (!plain_file_name(c.header)) {
		snprintf(err, errlen, "%s: Header= must be a file name in the same directory", origin);
		return -EINVAL;
	}
	if (!mapping_name_ok(c.name)) {
		snprintf(err, errlen, "%s: Name= must be a mapping name such as vmcrypt-os", origin);
		return -EINVAL;
	}
	if (!api_name_valid(c.volume)) {
		snprintf(err, errlen, "%s: Volume= must be a volume name", origin);
		return -EINVAL;
	}
	*ret = c;
	return 0;
}

int os_boot_conf_load(const char *dir, struct os_boot_conf *ret, char *err, size_t errlen)
{
	_cleanup_free_ char *text = NULL;
	char path[PATH_MAX];
	size_t size;
	int r;

	if (snprintf(path, sizeof(path), "%s/%s", dir, OS_BOOT_CONF_NAME) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	r = read_full_file(path, OS_BOOT_CONF_MAX, &text, &size);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, r == -EFBIG ? "too large" : strerror(-r));
		return r;
	}
	return os_boot_conf_parse(text, path, ret, err, errlen);
}

int os_boot_conf_write(const char *dir, const struct os_boot_conf *c)
{
	struct os_boot_conf check;
	char path[PATH_MAX], text[OS_BOOT_CONF_MAX], err[256];
	int n;

	n = snprintf(text, sizeof(text),
		     "# The OS volume the initramfs opens (vmcrypt agent; docs/os-volume.md). Removing\n"
		     "# this file makes the next boot plain: do that only when the volume is decrypted.\n"
		     "Device=%s\nHeader=%s\nName=%s\nVolume=%s\n",
		     c->device, c->header, c->name, c->volume);
	if (n < 0 || (size_t)n >= sizeof(text) || strpbrk(c->device, "\n") || strpbrk(c->header, "\n"))
		return -EINVAL;
	if (os_boot_conf_parse(text, "os.conf", &check, err, sizeof(err)) < 0)
		return -EINVAL;
	if (snprintf(path, sizeof(path), "%s/%s", dir, OS_BOOT_CONF_NAME) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return write_file_atomic(path, text, (size_t)n, 0644);
}
