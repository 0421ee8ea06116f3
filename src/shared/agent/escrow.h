/* Key escrow: a volume's unlock key and recovery passphrase are made in the VM, stored in the
 * vault, read back and compared before a byte of the volume changes (docs/agent.md "Keys"). */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct vault_client;

/* The unlock key: 64 random bytes, keyslot 0's passphrase. */
#define AGENT_KEY_SIZE 64
/* The recovery passphrase: 48 digits in 8 groups of 6 joined by '-' (BitLocker's form). */
#define AGENT_RECOVERY_GROUPS 8
#define AGENT_RECOVERY_LEN (AGENT_RECOVERY_GROUPS * 7 - 1)

struct agent_keys {
	void *key;                  /* secret memory, AGENT_KEY_SIZE bytes */
	size_t key_size;
	void *recovery;             /* secret memory, AGENT_RECOVERY_LEN characters, no NUL counted */
	size_t recovery_size;
	uint64_t key_version;       /* the vault's version of {volume} */
	uint64_t recovery_version;  /* and of {volume}-recovery */
};

/* Fills buf (secret memory of at least AGENT_RECOVERY_LEN + 1 bytes) with a new recovery
 * passphrase, each digit uniform (rejection sampling, no modulo bias). Returns 0 or -EIO. */
int agent_recovery_generate(char *buf, size_t len);

/* Makes a new key and recovery passphrase for volume, PUTs both, GETs both back and compares
 * them byte for byte. On success *ret holds both and their versions. Returns 0; the vault
 * client's -errno (-ECONNREFUSED, -ETIMEDOUT, -EPROTO, -EACCES, -EBUSY, -EAGAIN ...) with its
 * reason in err; -EIO when the read-back differs ("the vault returned a different value"); or
 * -ENOMEM. Nothing is written to any disk. */
int agent_escrow(struct vault_client *vc, const char *volume, struct agent_keys *ret, char *err,
		 size_t errlen);

/* Fetches the newest version of the existing key of volume (for a resume or a re-open; a KEK
 * rotation re-wraps the same value as a new version). Only key and key_version are set.
 * Returns 0 or as agent_escrow(). */
int agent_escrow_fetch(struct vault_client *vc, const char *volume, struct agent_keys *ret,
		       char *err, size_t errlen);

/* Wipes and frees the keys; accepts a zeroed struct. */
void agent_keys_done(struct agent_keys *k);
