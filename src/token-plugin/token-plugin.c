/* libcryptsetup-token-vmcrypt.so: libcryptsetup's external token plugin for the vmcrypt token
 * (docs/agent.md "The LUKS2 token"). Opening fetches the volume's key from the vault with the VM
 * credential over verified TLS, so stock `cryptsetup open` and systemd-cryptsetup unlock a volume
 * with no other vmcrypt code in the path.
 *
 * libcryptsetup 2.6 (lib/luks2/luks2_token.c) dlopen()s <libdir>/cryptsetup/libcryptsetup-token-
 * <type>.so and looks up these symbols at version CRYPTSETUP_TOKEN_1.0 (the version script next
 * to this file); everything else in the object is hidden, so our copies of the vmcrypt library
 * never bind to, or are bound by, the host program.
 *
 * What open returns decides what happens next, so it returns only three values:
 *   0        the key is in *buffer.
 *   -EAGAIN  the vault cannot be asked now: unreachable, TLS refused, too slow, busy (429/503)
 *            or broken (5xx, a malformed answer). "A needed resource is absent" in libcryptsetup's
 *            words.
 *   -ENOENT  this token cannot open the volume on this machine: not enrolled (no agent.conf or
 *            credential), a token for another VM, the credential refused (401/403), no such
 *            secret (404), a malformed token.
 * Both keep libcryptsetup's token loop going (break_loop_retval(): -ENOENT, -EPERM, -EAGAIN and
 * -ENOANO go on to the next token; anything else stops the loop, so a TPM2 or second vmcrypt
 * token on the same header would never be tried), and neither changes what the callers do next:
 * `cryptsetup open` without --token-only asks for the passphrase after any token failure, and
 * systemd-cryptsetup (crypt_activate_by_token_pin_ask_password()) falls back to its passphrase
 * prompt on every error except -ENOANO, which it answers by asking for a token PIN, in a loop,
 * with no deadline. So open never returns -ENOANO, and there is no cryptsetup_token_open_pin: a
 * PIN has no meaning here, and libcryptsetup answers -ENOENT for a plugin without one. -EPERM
 * and -EINVAL would be rewritten to -ENOENT by libcryptsetup (translate_errno()) anyway. */
#include <errno.h>
#include <libcryptsetup.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/client/agent-conf.h"
#include "shared/client/vault-client.h"
#include "shared/secret.h"
#include "token-plugin/token-ref.h"

#define _public_ __attribute__((visibility("default")))

/* How long one open may take: VAULT_CLIENT_PLUGIN_CONNECT_TIMEOUT (5 s) to connect and
 * VAULT_CLIENT_PLUGIN_TOTAL_TIMEOUT (15 s) in all (vault-client.h). systemd-cryptsetup waits for the plugin without a deadline of its
 * own (its token-timeout=, 30 s by default, bounds only the wait for a TPM2/FIDO2/PKCS#11 device
 * to appear), and the passphrase prompt comes only after the plugin returns: a vault that is down
 * must cost a boot well under those 30 s. A TCP connection to a live vault takes milliseconds,
 * through a proxy less than a second; the whole exchange (TLS, the vault's unwrap) well under 1 s. */
#define TOKEN_PLUGIN_CONNECT_TIMEOUT_S VAULT_CLIENT_PLUGIN_CONNECT_TIMEOUT
#define TOKEN_PLUGIN_TOTAL_TIMEOUT_S VAULT_CLIENT_PLUGIN_TOTAL_TIMEOUT

_public_ const char *cryptsetup_token_version(void);
_public_ int cryptsetup_token_open(struct crypt_device *cd, int token, char **buffer, size_t *buffer_len,
				   void *usrptr);
_public_ void cryptsetup_token_buffer_free(void *buffer, size_t buffer_len);
_public_ int cryptsetup_token_validate(struct crypt_device *cd, const char *json);
_public_ void cryptsetup_token_dump(struct crypt_device *cd, const char *json);

/* For libcryptsetup's debug output ("Token handler vmcrypt-<version> loaded"). */
_public_ const char *cryptsetup_token_version(void)
{
	return VMCRYPT_VERSION;
}

/* The vmcrypt library's own messages (a warning that secret memory could not be locked, say)
 * become libcryptsetup debug lines: the plugin reports a failure once, itself. */
static void log_to_crypt(enum log_level level, const char *message, void *userdata)
{
	crypt_logf(userdata, CRYPT_LOG_DEBUG, "vmcrypt: %s", message);
}

/* Is called by libcryptsetup on every token of type vmcrypt before it is stored
 * (crypt_token_json_set(): `cryptsetup token import`) and before it is opened. */
_public_ int cryptsetup_token_validate(struct crypt_device *cd, const char *json)
{
	char err[256];
	int r;

	r = token_ref_parse(json, NULL, err, sizeof(err));
	if (r < 0) {
		crypt_logf(cd, CRYPT_LOG_ERROR, "Invalid vmcrypt token: %s.\n", err);
		return -EINVAL;
	}
	return 0;
}

/* luksDump: libcryptsetup prints the token's number, type and keyslots; these lines go between,
 * indented and aligned like its own ("\tKeyslot:    0"). The token holds no secret; the key
 * stays in the vault. */
_public_ void cryptsetup_token_dump(struct crypt_device *cd, const char *json)
{
	struct token_ref t;
	char err[256];
	int r;

	r = token_ref_parse(json, &t, err, sizeof(err));
	if (r < 0) {
		crypt_logf(cd, CRYPT_LOG_NORMAL, "\tInvalid:    %s\n", err);
		return;
	}
	if (r == TOKEN_REF_CONVERSION) {
		crypt_logf(cd, CRYPT_LOG_NORMAL, "\tvmcrypt conversion state (see `vmcrypt status`)\n");
		return;
	}
	crypt_logf(cd, CRYPT_LOG_NORMAL, "\tServer:     %s\n\tVM:         %s\n\tVolume:     %s\n\tVersion:    %u\n",
		   t.server, t.vm, t.volume, t.version);
}

_public_ void cryptsetup_token_buffer_free(void *buffer, size_t buffer_len)
{
	/* open hands out secret_alloc() memory; secret_free() wipes all of it. */
	secret_free(buffer);
}

/* Which errors of the vault client mean "not now" rather than "never with this token". */
static int open_errno(int r)
{
	switch (r) {
	case -ENOENT: /* 404: no secret for this volume */
	case -EACCES: /* 401/403: credential unknown or revoked */
	case -EINVAL: /* 400, or a request we could not even make */
		return -ENOENT;
	default:
		return -EAGAIN;
	}
}

static int fail(struct crypt_device *cd, int token, const struct token_ref *t, int r, const char *fmt, ...)
	_printf_(5, 6);
static int fail(struct crypt_device *cd, int token, const struct token_ref *t, int r, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	crypt_logf(cd, CRYPT_LOG_ERROR, "vmcrypt token %d (volume %s): %s.\n", token, t ? t->volume : "?", msg);
	return r;
}

static int token_open(struct crypt_device *cd, int token, char **buffer, size_t *buffer_len)
{
	_cleanup_secret_ void *credential = NULL, *value = NULL;
	struct vault_client *vc = NULL;
	struct agent_conf conf;
	struct token_ref t;
	const char *json = NULL;
	char err[512];
	size_t credential_size, n;
	uint64_t version = 0;
	int r;

	r = crypt_token_json_get(cd, token, &json);
	if (r < 0)
		return fail(cd, token, NULL, -ENOENT, "cannot read the token (%s)", strerror(-r));
	r = token_ref_parse(json, &t, err, sizeof(err));
	if (r == TOKEN_REF_CONVERSION)
		return -ENOENT; /* not an unlock token; libcryptsetup never gets here (no keyslots) */
	if (r < 0)
		return fail(cd, token, NULL, -ENOENT, "invalid token: %s", err);

	/* The answer's JSON text holds the key in base64: jansson must wipe what it frees. The
	 * wiping allocator frees plain malloc() blocks, so it is safe to install at any time. */
	secret_setup_json_allocator();

	r = agent_conf_load(NULL, &conf, err, sizeof(err));
	if (r < 0)
		return fail(cd, token, &t, -ENOENT, "%s", err);
	if (conf.vm[0] && !streq(conf.vm, t.vm))
		return fail(cd, token, &t, -ENOENT, "the token is for VM %s, this machine is enrolled as %s",
			    t.vm, conf.vm);
	r = agent_credential_read(NULL, &credential, &credential_size, err, sizeof(err));
	if (r < 0)
		return fail(cd, token, &t, -ENOENT, "%s", err);

	/* The token names the server that holds this volume's key; agent.conf gives the CA file and
	 * the proxy for reaching it. */
	snprintf(conf.server, sizeof(conf.server), "%s", t.server);
	r = vault_client_new(&conf, credential, credential_size, TOKEN_PLUGIN_CONNECT_TIMEOUT_S,
			     TOKEN_PLUGIN_TOTAL_TIMEOUT_S, &vc);
	if (r < 0)
		return fail(cd, token, &t, r == -ENOMEM ? -EAGAIN : -ENOENT, "cannot set up the vault client for %s (%s)",
			    t.server, strerror(-r));
	r = vault_client_secret_get(vc, t.volume, &value, &n, &version, err, sizeof(err));
	vault_client_free(vc);
	if (r < 0)
		return fail(cd, token, &t, open_errno(r), "cannot get the key from %s: %s", t.server, err);
	if (version != t.version)
		/* The vault's newest version is not the one the keyslot was made with (a rotation the
		 * header has not caught up with): try it anyway, the keyslot decides. */
		crypt_logf(cd, CRYPT_LOG_DEBUG, "vmcrypt token %d: the vault holds version %llu, the token names %u.",
			   token, (unsigned long long)version, t.version);

	*buffer = TAKE_PTR(value);
	*buffer_len = n;
	return 0;
}

_public_ int cryptsetup_token_open(struct crypt_device *cd, int token, char **buffer, size_t *buffer_len,
				   void *usrptr)
{
	int r;

	log_set_sink(log_to_crypt, cd);
	r = token_open(cd, token, buffer, buffer_len);
	log_set_sink(NULL, NULL);
	return r;
}
