/* The master key and the store must belong together: a check value in the store, sealed by the
 * key that first used it, refuses a vmcryptd whose master.key is another one.
 *
 * Why: replicas on one PostgreSQL store each have a data directory of their own, and a replica
 * started on an empty directory makes itself a new random master.key. It would then seal what it
 * writes so that no other replica can open it, and open nothing the others wrote, and every
 * secret fetch through it would fail; or, worse, a fleet would slowly split between keys. With
 * the check it stops at start, naming the fix. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "shared/secret.h"
#include "vmcryptd.h"

#define CHECK_KEY "master_key_check"
#define CHECK_CONTEXT "meta:master_key_check"
#define CHECK_TEXT "vmcryptd master key"
/* Most hex of a sealed blob of CHECK_TEXT (format byte, nonce, text, tag) that is accepted. */
#define CHECK_HEX_MAX 256

int masterkey_check(struct server *srv, const char *master_path)
{
	_cleanup_free_ uint8_t *sealed = NULL, *stored = NULL;
	_cleanup_free_ char *hex = NULL;
	_cleanup_secret_ void *plain = NULL;
	_cleanup_free_ char *stored_hex = NULL;
	size_t size, n;
	int r;

	r = vault_seal(srv->vault, CHECK_CONTEXT, CHECK_TEXT, strlen(CHECK_TEXT), &sealed, &size);
	if (r < 0)
		return log_error_errno(r, "Could not seal the master key check: %m");
	if (2 * size > CHECK_HEX_MAX)
		return log_error_errno(-EOVERFLOW, "The master key check is too long.");
	hex = malloc(2 * size + 1);
	if (!hex)
		return -ENOMEM;
	token_hex(sealed, size, hex);
	/* First one wins: two replicas starting together on an empty store keep one value. */
	r = store_meta_set_once(srv->store, CHECK_KEY, hex, &stored_hex);
	if (r < 0)
		return log_error_errno(r, "Could not read the store: %m");
	if (r == 0)
		return 0; /* ours now */

	n = strlen(stored_hex) / 2;
	stored = malloc(n ? n : 1);
	if (!stored)
		return -ENOMEM;
	if (strlen(stored_hex) % 2 || n > CHECK_HEX_MAX || token_unhex(stored_hex, stored, n) < 0)
		return log_error_errno(-EBADMSG, "The stored master key check is damaged.");
	r = vault_unseal(srv->vault, CHECK_CONTEXT, stored, n, &plain, &size);
	if (r == -EBADMSG || (r >= 0 && (size != strlen(CHECK_TEXT) || memcmp(plain, CHECK_TEXT, size) != 0)))
		return log_error_errno(-EKEYREJECTED,
				       "%s is not the master key of this store: another vmcryptd made the store with "
				       "its own. Replicas share one master key: stop this one, copy the master.key of "
				       "the first (mode 0600) over %s, and start it again.",
				       master_path, master_path);
	if (r < 0)
		return log_error_errno(r, "Could not check the master key: %m");
	return 0;
}
