/* Running helper programs (e2fsck, resize2fs, ...) with their output captured. */
#pragma once

#include <stddef.h>

/* Runs argv[0] (searched in PATH) with argv, stdin from /dev/null, stdout and stderr captured
 * together into out (NUL-terminated, truncated to out_len - 1; out may be NULL). Never pass
 * secrets in argv. Returns the exit status (0..255), 128+N when killed by signal N, or -errno
 * when it could not be started. */
int process_run(char *const argv[], char *out, size_t out_len);

/* process_run() with a time limit: after timeout_sec seconds (0: none) the program is killed
 * (SIGKILL) and reaped, and -ETIME is returned; out holds what it wrote until then. */
int process_run_timeout(char *const argv[], char *out, size_t out_len, unsigned timeout_sec);
