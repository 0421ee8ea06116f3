/* Secret memory: locked, undumpable, wiped on free; plus key-file reading and generation. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "shared/secret.h"

/* The header sits in front of the user's bytes; 16-byte aligned like malloc. */
struct secret_header {
	size_t size;
	size_t alloc;
};
#define HEADER_SIZE ((sizeof(struct secret_header) + 15) & ~(size_t)15)

static bool warned_mlock;

void *secret_alloc(size_t size)
{
	struct secret_header *h;
	size_t alloc;

	if (size == 0 || size > SIZE_MAX - HEADER_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	alloc = HEADER_SIZE + size;
	h = calloc(1, alloc);
	if (!h) {
		errno = ENOMEM;
		return NULL;
	}
	h->size = size;
	h->alloc = alloc;
	if (mlock(h, alloc) < 0 && !warned_mlock) {
		warned_mlock = true;
		log_warning("Could not lock secret memory (%m); secrets may be swapped out.");
	}
	/* MADV_DONTDUMP works on whole pages; heap pages shared with other data are excluded too,
	 * which is harmless. Failure only means core dumps are not filtered, and daemons also
	 * disable dumps with prctl(PR_SET_DUMPABLE, 0). */
	{
		long page = sysconf(_SC_PAGESIZE);
		uintptr_t start = (uintptr_t)h & ~((uintptr_t)page - 1);
		uintptr_t end = ((uintptr_t)h + alloc + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
		(void)madvise((void *)start, end - start, MADV_DONTDUMP);
	}
	return (char *)h + HEADER_SIZE;
}

size_t secret_size(const void *p)
{
	const struct secret_header *h = (const void *)((const char *)p - HEADER_SIZE);
	return h->size;
}

void secret_free(void *p)
{
	struct secret_header *h;
	size_t alloc;

	if (!p)
		return;
	h = (void *)((char *)p - HEADER_SIZE);
	alloc = h->alloc;
	OPENSSL_cleanse(h, alloc);
	munlock(h, alloc);
	free(h);
}

int secret_grow(char **buf, size_t *cap, size_t used, size_t need)
{
	size_t size;
	char *nb;

	if (*buf && need <= *cap)
		return 0;
	/* No buffer yet: *cap is the size expected in all (a Content-Length), taken as it is. */
	if (!*buf)
		size = MAX(need, *cap);
	else
		size = *cap > SIZE_MAX / 2 ? need : MAX(need, 2 * *cap);
	nb = secret_alloc(size);
	if (!nb)
		return -ENOMEM;
	if (*buf)
		memcpy(nb, *buf, used);
	secret_free(*buf);
	*buf = nb;
	*cap = size;
	return 0;
}

int secret_random(void *buf, size_t size)
{
	if (size > INT32_MAX || RAND_bytes(buf, (int)size) != 1)
		return -EIO;
	return 0;
}

/* Names that stand for a descriptor the caller opened ("/dev/fd/3", "/dev/stdin"): the one way a
 * pipe may deliver a secret. A pipe with a name of its own (a FIFO) could be held by anyone. */
static bool names_descriptor(const char *path)
{
	const char *p = NULL;

	if (strcmp(path, "/dev/stdin") == 0)
		return true;
	if (strncmp(path, "/dev/fd/", 8) == 0)
		p = path + 8;
	else if (strncmp(path, "/proc/self/fd/", 14) == 0)
		p = path + 14;
	return p && *p && p[strspn(p, "0123456789")] == 0;
}

int secret_read_file(const char *path, void **ret, size_t *ret_size, bool *ret_world_readable)
{
	_cleanup_close_ int fd = -1;
	_cleanup_secret_ char *buf = NULL;
	_cleanup_secret_ char *out = NULL;
	struct timespec deadline;
	struct stat st;
	ssize_t n;

	/* O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait forever. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) &&
	    !((S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) && names_descriptor(path)))
		return -ESPIPE; /* a named FIFO, a terminal, /dev/zero ...: not a key */
	if (S_ISREG(st.st_mode) && st.st_size > SECRET_FILE_MAX)
		return -EFBIG;

	buf = secret_alloc(SECRET_FILE_MAX + 1);
	if (!buf)
		return -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SECRET_READ_TIMEOUT_SEC;
	n = read_capped(fd, buf, SECRET_FILE_MAX, &deadline);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ENOKEY;

	out = secret_alloc((size_t)n);
	if (!out)
		return -ENOMEM;
	memcpy(out, buf, (size_t)n);
	if (ret_world_readable)
		*ret_world_readable = S_ISREG(st.st_mode) && (st.st_mode & (S_IRWXG | S_IRWXO));
	*ret_size = (size_t)n;
	*ret = TAKE_PTR(out);
	return 0;
}

const char *secret_read_strerror(int error)
{
	switch (error) {
	case -ENOKEY:
		return "it is empty";
	case -EFBIG:
		return "larger than 8 KiB, not a key";
	case -ESPIPE:
		return "it is a named pipe (FIFO), a terminal or another special file; give a regular file, "
		       "a block device, or a pipe as /dev/fd/N";
	case -ETIMEDOUT:
		return "nothing arrived through the pipe within 10 seconds";
	default:
		return strerror(-error);
	}
}

int secret_generate_file(const char *path, size_t size, void **ret)
{
	_cleanup_secret_ char *key = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	key = secret_alloc(size);
	if (!key)
		return -ENOMEM;
	r = secret_random(key, size);
	if (r < 0)
		return r;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return negative_errno();
	r = write_all(fd, key, size);
	if (r >= 0 && fsync(fd) < 0)
		r = negative_errno();
	if (r >= 0)
		r = fsync_parent_dir(path);
	if (r < 0) {
		unlink(path);
		return r;
	}
	*ret = TAKE_PTR(key);
	return 0;
}

/* JSON blocks are plain malloc() blocks, wiped on free through malloc_usable_size(): so a caller
 * that free()s a json_dumps() result (as jansson's documentation says to) stays correct, and
 * everything jansson itself frees is wiped. They are not locked: mlock per allocation would cost
 * a system call for every string a server parses; the secrets themselves live in secret_alloc()
 * buffers. */
static void *secret_json_malloc(size_t size)
{
	return malloc(size);
}

static void secret_json_free(void *p)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

void secret_setup_json_allocator(void)
{
	json_set_alloc_funcs(secret_json_malloc, secret_json_free);
}
