/* Key escrow with read-back. */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "shared/agent/escrow.h"
#include "shared/client/vault-client.h"
#include "shared/secret.h"

int agent_recovery_generate(char *buf, size_t len)
{
	size_t o = 0;

	if (len < AGENT_RECOVERY_LEN + 1)
		return -ENOBUFS;
	while (o < AGENT_RECOVERY_LEN) {
		unsigned char b[32];

		if (secret_random(b, sizeof(b)) < 0)
			return -EIO;
		for (size_t i = 0; i < sizeof(b) && o < AGENT_RECOVERY_LEN; i++) {
			if (b[i] >= 250) /* 250 = 25 * 10: keeps every digit equally likely */
				continue;
			if (o % 7 == 6)
				buf[o++] = '-';
			buf[o++] = (char)('0' + b[i] % 10);
		}
		OPENSSL_cleanse(b, sizeof(b));
	}
	buf[AGENT_RECOVERY_LEN] = '\0';
	return 0;
}

void agent_keys_done(struct agent_keys *k)
{
	secret_free(k->key);
	secret_free(k->recovery);
	memset(k, 0, sizeof(*k));
}

/* PUT value as secret name, GET it back, compare. */
static int put_and_verify(struct vault_client *vc, const char *name, const void *value, size_t n,
			  uint64_t *ret_version, char *err, size_t errlen)
{
	_cleanup_secret_ void *back = NULL;
	uint64_t version = 0, back_version = 0;
	size_t back_n = 0;
	int r;

	r = vault_client_secret_put(vc, name, value, n, &version, err, errlen);
	if (r < 0)
		return r;
	r = vault_client_secret_get(vc, name, &back, &back_n, &back_version, err, errlen);
	if (r < 0)
		return r;
	if (back_version != version || back_n != n || CRYPTO_memcmp(back, value, n) != 0) {
		snprintf(err, errlen, "the vault returned a different value for secret %s (version "
			 "%llu, stored %llu): not using it", name, (unsigned long long)back_version,
			 (unsigned long long)version);
		return -EIO;
	}
	*ret_version = version;
	return 0;
}

int agent_escrow(struct vault_client *vc, const char *volume, struct agent_keys *ret, char *err,
		 size_t errlen)
{
	struct agent_keys k = { 0 };
	char recovery_name[80];
	int r;

	if (snprintf(recovery_name, sizeof(recovery_name), "%s-recovery", volume) >=
	    (int)sizeof(recovery_name))
		return -ENAMETOOLONG;
	k.key = secret_alloc(AGENT_KEY_SIZE);
	k.recovery = secret_alloc(AGENT_RECOVERY_LEN + 1);
	if (!k.key || !k.recovery) {
		agent_keys_done(&k);
		return -ENOMEM;
	}
	k.key_size = AGENT_KEY_SIZE;
	k.recovery_size = AGENT_RECOVERY_LEN;
	r = secret_random(k.key, k.key_size);
	if (r >= 0)
		r = agent_recovery_generate(k.recovery, AGENT_RECOVERY_LEN + 1);
	if (r < 0) {
		snprintf(err, errlen, "cannot make random keys");
		agent_keys_done(&k);
		return -EIO;
	}
	/* The recovery passphrase first: a key the vault holds without its recovery passphrase
	 * would be escrowed only half. Neither is used before both are read back. */
	r = put_and_verify(vc, recovery_name, k.recovery, k.recovery_size, &k.recovery_version, err,
			   errlen);
	if (r >= 0)
		r = put_and_verify(vc, volume, k.key, k.key_size, &k.key_version, err, errlen);
	if (r < 0) {
		agent_keys_done(&k);
		return r;
	}
	*ret = k;
	return 0;
}

int agent_escrow_fetch(struct vault_client *vc, const char *volume, struct agent_keys *ret,
		       char *err, size_t errlen)
{
	struct agent_keys k = { 0 };
	int r;

	/* The newest version: a KEK rotation re-wraps the same value as a new version. */
	r = vault_client_secret_get(vc, volume, &k.key, &k.key_size, &k.key_version, err, errlen);
	if (r < 0)
		return r;
	*ret = k;
	return 0;
}
