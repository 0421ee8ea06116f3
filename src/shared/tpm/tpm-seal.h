/* Seals a small secret (the VM credential the initramfs presents to the vault) to this VM's TPM 2.0,
 * so that a copy of the disk attached to another VM, without this TPM, cannot use it.
 *
 * How: a fresh random AES-256 key encrypts the secret (AES-256-GCM, aead.h); the TPM seals the key
 * as a keyedHash data object under the owner hierarchy's storage root key (SRK). The SRK is
 * recreated at every call from the owner seed (CreatePrimary with the TCG SRK template: same
 * seed, same template, same key) and never persisted, so nothing is left in the TPM's NV. The
 * result is a text (tpm-blob.h) that only this TPM can open. No PCR policy: see
 * tpm_blob_sealed_template(). Create and Unseal run in an HMAC session salted with the SRK, with
 * AES-128-CFB parameter encryption both ways, so the key never crosses the bus (or the hypervisor's
 * vTPM socket) in clear; before unsealing, the SRK the TPM recreates must have the name the text
 * recorded, so a TPM of an interposer cannot pose as this one to learn the session's salt.
 *
 * The TCTI (how tpm2-tss reaches the TPM) is a string such as "device:/dev/tpmrm0" or
 * "swtpm:host=127.0.0.1,port=2321"; NULL means this VM's TPM: /dev/tpmrm0 (the kernel's resource
 * manager: shared with other users, and it flushes what a dead process left in the TPM), else
 * /dev/tpm0 (kernels before 4.12, one user at a time).
 *
 * Run time: tpm2-tss's TCTI loader (libtss2-tctildr) dlopen()s the TCTI module by name, e.g.
 * libtss2-tcti-device.so.0 for "device:". Nothing links it, so ldd and initramfs-tools' copy_exec
 * do not see it: the initramfs hook must copy it explicitly (with libtss2-mu.so.0, which it needs),
 * or tpm_unseal() returns -ELIBACC at boot. The linked ones are libtss2-esys, -sys, -mu, -tctildr
 * and -rc, and libcrypto. The kernel needs its TPM driver (tpm_tis or tpm_crb for QEMU's and
 * the clouds' vTPMs) before the unseal.
 *
 * Logging: this module never prints; the reasons behind an error go to log_debug(). tpm2-tss 3.2
 * does print: each of its modules writes WARNING and ERROR lines to stderr (a closed TCTI port, a
 * malformed blob), its level is read from the TSS2_LOG environment variable at its first message,
 * and it has no API to set it. A library must not change the environment under a running process
 * (setenv() races every getenv() in other threads), so the program calls
 * tpm_seal_setup_logging() once at its start instead. */
#pragma once

#include <stddef.h>

#include "shared/tpm/tpm-blob.h"

/* Largest secret tpm_seal() takes. */
#define TPM_SEAL_SECRET_MAX TPM_BLOB_SECRET_MAX

/* Silences tpm2-tss's own logging (TSS2_LOG=all+none) unless TSS2_LOG is already set, which an
 * operator may do to debug (TSS2_LOG=all+debug). Call once at program start, before any thread
 * and before any other tpm_seal_* or tpm_unseal* call. */
void tpm_seal_setup_logging(void);

/* Says whether a TPM 2.0 answers at tcti (a TPM2_GetCapability of its family). Returns 1, 0 (no
 * device, nothing answers at the TCTI, or what answers is not a TPM 2.0), -EACCES (the device
 * exists but this process may not open it), -ELIBACC (tpm2-tss cannot load the TCTI module: a
 * packaging error, not a missing TPM), -EINVAL (a TCTI string it refuses) or -ENOMEM. */
int tpm_seal_present(const char *tcti);

/* Seals size bytes of secret (1 to TPM_SEAL_SECRET_MAX) to the TPM at tcti; *ret_text is the
 * malloc()ed text (tpm-blob.h), not secret. Returns 0, -E2BIG (size above the cap), -EINVAL (size
 * 0, or a TCTI string tpm2-tss refuses), -ENODEV (no TPM, or the TCTI cannot connect), -EACCES
 * (the device may not be opened, or the owner hierarchy has an authorization value: this module
 * uses the empty one), -ELIBACC (the TCTI module cannot be loaded), -EIO (another TPM or tpm2-tss
 * failure) or -ENOMEM. */
int tpm_seal(const char *tcti, const void *secret, size_t size, char **ret_text);

/* Opens text from tpm_seal() with the TPM at tcti. *ret_secret is secret_alloc()ed (secret_free()
 * it), *ret_size its size. Returns 0, -EBADMSG (the text is malformed or was altered: a field, the
 * ciphertext or the tag; or the TPM refused the sealed object under the right SRK),
 * -EKEYREJECTED (another TPM: the SRK it derives is not the one the text was sealed under, as for
 * a disk copied to another VM, or this TPM's owner hierarchy was cleared since), -ENODEV, -EACCES,
 * -ELIBACC, -EINVAL, -EIO or -ENOMEM as for tpm_seal(). */
int tpm_unseal(const char *tcti, const char *text, void **ret_secret, size_t *ret_size);

/* tpm_seal() into path: written atomically (a temporary file, fsync, rename), mode 0600 although
 * the text is useless without this TPM. Returns tpm_seal()'s values or the -errno of the write. */
int tpm_seal_file(const char *tcti, const void *secret, size_t size, const char *path);

/* tpm_unseal() of path's text. Returns tpm_unseal()'s values, -EBADMSG for a file larger than
 * TPM_BLOB_TEXT_MAX, -ENOENT or another -errno of the read. */
int tpm_unseal_file(const char *tcti, const char *path, void **ret_secret, size_t *ret_size);
