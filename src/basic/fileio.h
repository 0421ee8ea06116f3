/* File helpers: bounded whole-file reads and crash-safe atomic replacement. */
#pragma once

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* Reads all of path (at most max bytes) into a NUL-terminated malloc'd buffer.
 * Returns 0, -ENOENT, -EFBIG when larger than max, or another -errno. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_size);

/* Writes data to path atomically: temp file in the same directory, fsync, rename, fsync of the
 * directory; after a crash path holds either the old or the new content, never a mix.
 * Returns 0 or -errno. */
int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode);
/* The same for a file that must be new: the rename fails with -EEXIST when path exists, checked
 * and done in one step (renameat2 RENAME_NOREPLACE; a filesystem without it is -EINVAL).
 * Returns 0 or -errno. */
int write_file_new(const char *path, const void *data, size_t size, mode_t mode);

/* write(2) until done, retrying on EINTR. Returns 0 or -errno. */
int write_all(int fd, const void *data, size_t size);

/* read(2) until size bytes or EOF. Returns the byte count read or -errno. */
ssize_t read_all(int fd, void *data, size_t size);

/* Reads fd until EOF into buf, which has room for max + 1 bytes (the byte past the cap tells an
 * oversized pipe or device from one that fits). With deadline (CLOCK_MONOTONIC) waits in poll()
 * and gives up then; with NULL, plain blocking reads. Returns the byte count (at most max),
 * -EFBIG when there is more, -ETIMEDOUT, or another -errno. */
ssize_t read_capped(int fd, void *buf, size_t max, const struct timespec *deadline);

/* fsync()s the directory that holds path. Returns 0 or -errno. */
int fsync_parent_dir(const char *path);

/* mkdir -p with mode for each created component. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
