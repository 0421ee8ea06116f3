/* base64 for secret values in JSON (RFC 4648 with padding): the server decodes what a VM sends,
 * the VM's client decodes what the server returns. Both sides keep the bytes in secret memory. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Decodes len characters of padded base64 into secret memory. Returns 0 or -EINVAL (not
 * canonical padded base64, or empty once decoded), -ENOMEM. */
int b64_decode_secret(const char *s, size_t len, uint8_t **ret, size_t *ret_size);

/* Returns a NUL-terminated encoding in secret memory, or NULL (too large, or no memory). */
char *b64_encode(const uint8_t *data, size_t size);
