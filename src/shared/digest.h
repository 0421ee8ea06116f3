/* SHA-256 of whole buffers and its text form: what a header backup is checked against, from the
 * VM's upload through the vault's store to the restored file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIGEST_SHA256_SIZE 32
#define DIGEST_SHA256_HEX_SIZE (2 * DIGEST_SHA256_SIZE + 1) /* 64 hex digits and a NUL */

/* Returns 0 or -EIO (OpenSSL failed; its error queue is drained). */
int digest_sha256(const void *data, size_t size, uint8_t ret[DIGEST_SHA256_SIZE]);

/* 64 lower-case hex digits into buf. Returns buf. */
char *digest_sha256_to_hex(const uint8_t sha[DIGEST_SHA256_SIZE], char buf[DIGEST_SHA256_HEX_SIZE]);
/* Exactly 64 hex digits, either case. Returns 0 or -EINVAL. */
int digest_sha256_from_hex(const char *hex, uint8_t ret[DIGEST_SHA256_SIZE]);

/* In constant time: a digest can stand for a MAC's input, and timing should say nothing. */
bool digest_sha256_equal(const uint8_t a[DIGEST_SHA256_SIZE], const uint8_t b[DIGEST_SHA256_SIZE]);
