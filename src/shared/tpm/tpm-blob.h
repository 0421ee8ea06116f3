/* The text of a secret sealed to a TPM 2.0 (tpm-seal.h), parsed strictly and written back: one
 * JSON object, every field required, nothing else allowed:
 *
 *   {
 *    "format": "vmcrypt-tpm2-sealed",
 *    "version": 1,
 *    "primary": "owner-srk-ecc-p256",   the parent: tpm-seal.c's SRK template, never persisted
 *    "srk_name": "<base64>",            that parent's TPM name (nameAlg SHA-256 + digest of its
 *                                       public area): who sealed it, checked before any unseal
 *    "public": "<base64>",              TPM2B_PUBLIC of the sealed-data object (Tss2_MU)
 *    "private": "<base64>",             TPM2B_PRIVATE of it, encrypted by the TPM under the SRK
 *    "cipher": "aes-256-gcm",
 *    "nonce": "<base64>",               12 bytes
 *    "ciphertext": "<base64>",          the secret under the sealed 32-byte key, same size
 *    "tag": "<base64>"                  16 bytes; the additional data is TPM_BLOB_CONTEXT
 *   }
 *
 * base64 is RFC 4648 with padding. The text is not secret (only this TPM can unseal the key), but
 * it is not trusted either: it lives on an unencrypted /boot that anyone with the disk can
 * rewrite, so every field is checked here before a TPM or a cipher sees it. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_tpm2_types.h>

#include "shared/aead.h"

#define TPM_BLOB_FORMAT "vmcrypt-tpm2-sealed"
#define TPM_BLOB_VERSION 1
#define TPM_BLOB_PRIMARY "owner-srk-ecc-p256"
#define TPM_BLOB_CIPHER "aes-256-gcm"
/* The GCM additional data: a ciphertext made for another purpose under the same key never opens. */
#define TPM_BLOB_CONTEXT "vmcrypt-tpm2-sealed:1"
/* The key the TPM seals: an AES-256 key. A TPM's sealed-data object holds 128 bytes at most
 * (MAX_SYM_DATA), so the secret itself is never given to it. */
#define TPM_BLOB_KEY_SIZE AEAD_KEY_SIZE
/* Largest secret: a VM credential is a few hundred bytes; the cap bounds what a file can make us
 * allocate and decrypt. */
#define TPM_BLOB_SECRET_MAX (64 * 1024)
/* Largest text: the ciphertext in base64 (4/3) plus the TPM blobs and names, with room to spare. */
#define TPM_BLOB_TEXT_MAX (128 * 1024)

struct tpm_blob {
	TPM2B_NAME srk_name;
	TPM2B_PUBLIC public;
	TPM2B_PRIVATE private;
	uint8_t nonce[AEAD_NONCE_SIZE];
	uint8_t tag[AEAD_TAG_SIZE];
	uint8_t *ciphertext; /* secret_alloc()ed (it came through b64_decode_secret()); may be NULL */
	size_t ciphertext_size;
};

/* The public area of the sealed-data object tpm-seal.c creates: a keyedHash object holding data
 * (no sign, no decrypt), SHA-256 names, fixedTPM|fixedParent (it never leaves this TPM, not even
 * by duplication), userWithAuth with an empty authValue and no policy (no PCR binding: the PCRs
 * change with every kernel or GRUB update, and a VM that cannot boot after one is worse than what
 * the binding would stop), noDA (no password to guess, so the dictionary-attack lockout must not
 * count it). unique is left for the TPM to fill. */
void tpm_blob_sealed_template(TPM2B_PUBLIC *ret);

/* Parses text (NUL-terminated, at most TPM_BLOB_TEXT_MAX bytes). *ret is filled only on success;
 * release it with tpm_blob_done(). Returns 0, -EBADMSG (not JSON, a field missing, unknown, of the
 * wrong type, size or value, a blob that does not unmarshal to exactly its bytes, a public area
 * other than tpm_blob_sealed_template()'s, a text above the cap) or -ENOMEM. */
int tpm_blob_parse(const char *text, struct tpm_blob *ret);

/* Writes b as the text above (ending in a newline), malloc()ed into *ret. Returns 0, -EINVAL (a
 * field tpm_blob_parse() would refuse) or -ENOMEM. */
int tpm_blob_format(const struct tpm_blob *b, char **ret);

/* Frees what b holds and zeroes it. Accepts a zeroed blob. */
void tpm_blob_done(struct tpm_blob *b);
