/* Small language helpers shared by every vmcrypt file: cleanup attributes, TAKE_PTR, sizes. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define KIB(x) ((uint64_t)(x) * UINT64_C(1024))
#define MIB(x) ((uint64_t)(x) * UINT64_C(1024) * UINT64_C(1024))
#define GIB(x) ((uint64_t)(x) * UINT64_C(1024) * UINT64_C(1024) * UINT64_C(1024))

/* Hands ownership of *p to the caller and leaves NULL behind, so a _cleanup_ does nothing. */
#define TAKE_PTR(p)                          \
	({                                   \
		__typeof__(p) _p_ = (p);     \
		(p) = NULL;                  \
		_p_;                         \
	})

#define TAKE_FD(fd)                          \
	({                                   \
		int _fd_ = (fd);             \
		(fd) = -1;                   \
		_fd_;                        \
	})

/* Defines name(type *p) that calls func(*p) when *p is not NULL, for _cleanup_(name). The name is
 * the caller's (its file's prefix), never func##p: that would carry the library's prefix. */
#define DEFINE_CLEANUP_FUNC(name, type, func)          \
	static inline void name(type *p)               \
	{                                              \
		if (*p)                                \
			func(*p);                      \
	}

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes fd when it is valid and returns -1, preserving errno. */
static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -1;
}

static inline void closep(int *fd)
{
	safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

#include <stdio.h>
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

#include <dirent.h>
static inline void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

/* errno as a negative value, never 0 (some libc paths leave errno unset). */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}
