/* Bearer tokens: random 256-bit secrets with a kind prefix, stored only as SHA-256 hashes.
 *
 * Text forms (the kind is part of the hashed text, so a token of one kind never matches a hash
 * stored for another):
 *   vmc-admin-<64 hex>            the operator's token
 *   vmc-enroll-<id>-<64 hex>      one-time enrollment token of VM <id>
 *   vmc-vm-<id>-<64 hex>          a VM's credential
 *   vmc-named-<id>-<64 hex>       a named token with a role (`vmcrypt-admin token create`)
 * <id> is the VM's or the named token's id, 32 lowercase hex digits; it selects the stored hash,
 * and the hashes are then compared in constant time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_SECRET_BYTES 32
#define TOKEN_HASH_SIZE 32
#define TOKEN_ID_BYTES 16
#define TOKEN_ID_LEN (TOKEN_ID_BYTES * 2)
/* Longest token text: "vmc-enroll-" + id + "-" + 64 hex. */
#define TOKEN_MAX_LEN (11 + TOKEN_ID_LEN + 1 + TOKEN_SECRET_BYTES * 2)

enum token_kind {
	TOKEN_ADMIN,
	TOKEN_ENROLL,
	TOKEN_VM,
	TOKEN_NAMED,
};

/* A fresh random id (TOKEN_ID_LEN hex digits and a NUL). Returns 0 or -EIO. */
int token_id_generate(char ret_id[TOKEN_ID_LEN + 1]);

/* Generates a token of kind for id (NULL for TOKEN_ADMIN). *ret_text is NUL-terminated and lives
 * in secret memory (secret_free it); ret_hash receives its hash. Returns 0, -EINVAL, -ENOMEM or -EIO. */
int token_generate(enum token_kind kind, const char *id, char **ret_text, uint8_t ret_hash[TOKEN_HASH_SIZE]);

/* Parses token text of len bytes: checks the form, returns its kind, its id (empty for admin)
 * and its hash. Returns 0 or -EINVAL for anything that is not a well-formed token. */
int token_parse(const char *text, size_t len, enum token_kind *ret_kind, char ret_id[TOKEN_ID_LEN + 1],
		uint8_t ret_hash[TOKEN_HASH_SIZE]);

/* Extracts the token from an HTTP Authorization header value ("Bearer <token>") and parses it.
 * Returns 0, -ENOKEY when header is NULL or not a bearer credential, or -EINVAL. */
int token_from_authorization(const char *header, enum token_kind *ret_kind, char ret_id[TOKEN_ID_LEN + 1],
			     uint8_t ret_hash[TOKEN_HASH_SIZE]);

/* Constant-time comparison of two token hashes. */
bool token_hash_equal(const uint8_t a[TOKEN_HASH_SIZE], const uint8_t b[TOKEN_HASH_SIZE]);

/* Hex helpers for storing hashes as text: out must hold 2*size+1 bytes. */
void token_hex(const uint8_t *data, size_t size, char *out);
/* Returns 0 or -EINVAL when hex is not exactly 2*size lowercase or uppercase hex digits. */
int token_unhex(const char *hex, uint8_t *out, size_t size);
