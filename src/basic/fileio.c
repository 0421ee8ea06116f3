/* File helpers: bounded whole-file reads and crash-safe atomic replacement. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

int write_all(int fd, const void *data, size_t size)
{
	const char *p = data;

	while (size > 0) {
		ssize_t n = write(fd, p, size);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

/* read(2) of up to size bytes until EOF. With a deadline, poll()s first and gives up at the
 * deadline (a pipe whose writer never writes nor closes; fd may be non-blocking). Returns the byte
 * count, -ETIMEDOUT or -errno. */
static ssize_t read_until(int fd, void *buf, size_t size, const struct timespec *deadline)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n;

		if (deadline) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			struct timespec now;
			long long left_ms;
			int r;

			clock_gettime(CLOCK_MONOTONIC, &now);
			left_ms = (deadline->tv_sec - now.tv_sec) * 1000LL + (deadline->tv_nsec - now.tv_nsec) / 1000000;
			if (left_ms <= 0)
				return -ETIMEDOUT;
			r = poll(&pfd, 1, (int)MIN(left_ms, (long long)INT32_MAX));
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return negative_errno();
			}
			if (r == 0)
				return -ETIMEDOUT;
		}
		n = read(fd, (char *)buf + done, size - done);
		if (n < 0) {
			/* EAGAIN only with a deadline: poll() said readable, yet another reader won. */
			if (errno == EINTR || (errno == EAGAIN && deadline))
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t read_all(int fd, void *data, size_t size)
{
	return read_until(fd, data, size, NULL);
}

ssize_t read_capped(int fd, void *buf, size_t max, const struct timespec *deadline)
{
	/* One byte past the cap, so that an oversized pipe or device is noticed. */
	ssize_t n = read_until(fd, buf, max + 1, deadline);

	if (n >= 0 && (size_t)n > max)
		return -EFBIG;
	return n;
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_size)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
		return -EFBIG;

	buf = malloc(max + 1);
	if (!buf)
		return -ENOMEM;
	n = read_capped(fd, buf, max, NULL);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	if (ret_size)
		*ret_size = (size_t)n;
	*ret = TAKE_PTR(buf);
	return 0;
}

int fsync_parent_dir(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_close_ int dfd = -1;

	if (!copy)
		return -ENOMEM;
	dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return negative_errno();
	if (fsync(dfd) < 0)
		return negative_errno();
	return 0;
}

/* A temp file in path's directory, written and fsynced, then renamed over path (replace) or
 * into path only while there is none (RENAME_NOREPLACE: the check and the rename are one
 * step), then the directory fsynced. */
static int write_file_renamed(const char *path, const void *data, size_t size, mode_t mode, bool replace)
{
	char tmp[PATH_MAX];
	_cleanup_close_ int fd = -1;
	int r;

	if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (fchmod(fd, mode) < 0) {
		r = negative_errno();
		goto fail;
	}
	r = write_all(fd, data, size);
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0) {
		r = negative_errno();
		goto fail;
	}
	fd = safe_close(fd);
	if ((replace ? rename(tmp, path) : renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE)) < 0) {
		r = negative_errno();
		goto fail;
	}
	return fsync_parent_dir(path);
fail:
	unlink(tmp);
	return r;
}

int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode)
{
	return write_file_renamed(path, data, size, mode, true);
}

int write_file_new(const char *path, const void *data, size_t size, mode_t mode)
{
	return write_file_renamed(path, data, size, mode, false);
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return negative_errno();
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return negative_errno();
	return 0;
}
