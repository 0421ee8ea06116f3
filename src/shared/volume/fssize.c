/* How many bytes of a device a filesystem occupies. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/process.h"
#include "basic/string-util.h"
#include "shared/volume/fssize.h"

/* Finds "key" at the start of a line followed by optional spaces, an optional '=' and a number. */
static int line_u64(const char *text, const char *key, uint64_t *ret)
{
	size_t klen = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *v = p + klen;
		char num[32];
		size_t n;

		if (strncmp(p, key, klen) != 0 || (*v != ' ' && *v != '\t' && *v != '='))
			continue;
		v += strspn(v, " \t=");
		n = strspn(v, "0123456789");
		if (n == 0 || n >= sizeof(num))
			return -EINVAL;
		memcpy(num, v, n);
		num[n] = 0;
		/* parse_u64() says -ERANGE for a number past UINT64_MAX; the parsers promise -EINVAL
		 * for output they cannot read (found by fuzz/fuzz-fssize.c). */
		return parse_u64(num, ret) < 0 ? -EINVAL : 0;
	}
	return -EINVAL;
}

int fs_size_parse_xfs_db(const char *text, uint64_t *ret)
{
	uint64_t blocks, bs;

	if (line_u64(text, "dblocks", &blocks) < 0 || line_u64(text, "blocksize", &bs) < 0 || bs == 0 ||
	    bs > 65536 || blocks > UINT64_MAX / bs)
		return -EINVAL;
	*ret = blocks * bs;
	return 0;
}

int fs_size_parse_btrfs_super(const char *text, uint64_t *ret)
{
	return line_u64(text, "dev_item.total_bytes", ret);
}

int fs_size_parse_dumpe2fs(const char *text, uint64_t *ret)
{
	uint64_t count, bs;

	/* A block count and size that overflow together are not a filesystem: the product was
	 * taken unchecked before. */
	if (line_u64(text, "Block count:", &count) < 0 || line_u64(text, "Block size:", &bs) < 0 || bs == 0 ||
	    count > UINT64_MAX / bs)
		return -EINVAL;
	*ret = count * bs;
	return 0;
}

int fs_size_bytes(const char *dev, const char *type, uint64_t *ret)
{
	char out[16384];
	int r;

	if (streq(type, "xfs")) {
		r = process_run((char *[]){ "xfs_db", "-r", "-c", "sb 0", "-c", "print dblocks blocksize",
					    (char *)dev, NULL }, out, sizeof(out));
		if (r == 127)
			return -EOPNOTSUPP;
		if (r != 0)
			return r < 0 ? r : -EIO;
		return fs_size_parse_xfs_db(out, ret);
	}
	if (streq(type, "btrfs")) {
		r = process_run((char *[]){ "btrfs", "inspect-internal", "dump-super", (char *)dev, NULL }, out,
				sizeof(out));
		if (r == 127)
			return -EOPNOTSUPP;
		if (r != 0)
			return r < 0 ? r : -EIO;
		return fs_size_parse_btrfs_super(out, ret);
	}
	if (startswith(type, "ext")) {
		r = process_run((char *[]){ "dumpe2fs", "-h", (char *)dev, NULL }, out, sizeof(out));
		if (r != 0)
			return r < 0 ? r : -EIO;
		return fs_size_parse_dumpe2fs(out, ret);
	}
	return -EOPNOTSUPP;
}
