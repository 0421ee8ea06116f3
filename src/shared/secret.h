/* Secret memory: one allocator for every key, passphrase and token vmcrypt holds.
 *
 * Buffers carry a size header, are mlock()ed and excluded from core dumps (failure to lock is a
 * warning, not an error), are wiped on free and are never realloc()ed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "basic/macro.h"

/* Largest secret vmcrypt reads from a key file: keys are 64 bytes, passphrases are short. */
#define SECRET_FILE_MAX 8192

/* Returns a zeroed, locked buffer of size bytes (size > 0), or NULL with errno = ENOMEM. */
void *secret_alloc(size_t size);

/* Wipes and frees a buffer from secret_alloc(). Accepts NULL. */
void secret_free(void *p);

/* The usable size of a buffer from secret_alloc(). */
size_t secret_size(const void *p);

/* Makes room for need bytes in *buf, a secret_alloc() buffer of *cap bytes of which the first used
 * are filled, or NULL. When *buf is NULL, it gets MAX(need, *cap) bytes (*cap: the size expected).
 * When it is smaller than need, a new buffer of MAX(need, 2 * *cap) bytes takes over the used
 * bytes and the old one is wiped and freed: secret memory is never
 * realloc()ed, and doubling keeps a body that arrives in many small pieces from being copied
 * over and over. Returns 0, or -ENOMEM with *buf and *cap as they were. */
int secret_grow(char **buf, size_t *cap, size_t used, size_t need);

static inline void secret_freep(void *p)
{
	secret_free(*(void **)p);
}
#define _cleanup_secret_ _cleanup_(secret_freep)

/* How long a key may take to arrive through a pipe (/dev/fd/N) before the read gives up. */
#define SECRET_READ_TIMEOUT_SEC 10

/* Reads a key file into secret memory: a regular file, a block device, or a pipe named as a
 * descriptor (/dev/fd/N, /proc/self/fd/N, /dev/stdin), so secrets can come from a file descriptor.
 * path "-" is not accepted, nor is a terminal (a secret on a terminal is an accident), a named
 * FIFO (anyone may hold its other end, and opening it would wait for a writer) or another
 * special file. Never blocks for more than SECRET_READ_TIMEOUT_SEC.
 * Sets *ret_world_readable when the file's mode lets group or others read it (callers warn).
 * Returns 0, -ENOENT, -EACCES, -ENOKEY (empty), -EFBIG (larger than SECRET_FILE_MAX),
 * -EISDIR, -ESPIPE (a FIFO, terminal or other special file), -ETIMEDOUT (nothing arrived on a
 * pipe in time), or another -errno. */
int secret_read_file(const char *path, void **ret, size_t *ret_size, bool *ret_world_readable);

/* Why secret_read_file() failed, for "PATH: cannot use the key file: <reason>". */
const char *secret_read_strerror(int error);

/* Fills buf with size cryptographically random bytes. Returns 0 or -EIO. */
int secret_random(void *buf, size_t size);

/* Writes size random bytes to a new file at path with mode 0600 (O_EXCL: never overwrites),
 * fsyncs it, and returns the bytes in secret memory. Returns 0, -EEXIST, or -errno. */
int secret_generate_file(const char *path, size_t size, void **ret);

/* Installs a jansson allocator that wipes every freed JSON buffer, so secrets that pass through
 * JSON do not linger on the heap. Call once at program start, before any json_* call. */
void secret_setup_json_allocator(void);
