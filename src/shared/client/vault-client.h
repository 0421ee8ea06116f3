/* The VM's calls to vmcryptd (docs/api.md, VM routes) over the HTTPS client: enrollment, the goal,
 * its volume secrets, its volumes' LUKS2 header backups and status reports. Shared by `vmcrypt enroll`, `vmcrypt check`, the agent
 * and the token plugin. Secret values and the credential stay in secret memory (jansson's
 * allocator should be the wiping one, secret_setup_json_allocator(), since the JSON text passes
 * through it). One client per thread: a client holds one libcurl handle. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/client/agent-conf.h"

struct vault_client;

/* Timeouts (seconds) the callers use: the token plugin must give up before systemd's
 * token-timeout so that the passphrase prompt still comes. */
#define VAULT_CLIENT_CONNECT_TIMEOUT 10L
#define VAULT_CLIENT_TOTAL_TIMEOUT 60L
#define VAULT_CLIENT_PLUGIN_CONNECT_TIMEOUT 5L
#define VAULT_CLIENT_PLUGIN_TOTAL_TIMEOUT 15L

/* A client for c->server, verifying TLS against c->ca_file (or the system store), through
 * c->proxy ("" = $https_proxy, "none" = no proxy), authenticating with credential (credential_size
 * bytes, no NUL needed; NULL for vault_client_enroll()), with connect and total timeouts in seconds
 * (0: VAULT_CLIENT_*_TIMEOUT). The credential is copied into secret memory.
 * Returns 0, -EINVAL (Server= not https://, a credential with a NUL) or -ENOMEM. */
int vault_client_new(const struct agent_conf *c, const void *credential, size_t credential_size,
		     long connect_timeout_s, long total_timeout_s, struct vault_client **ret);
void vault_client_free(struct vault_client *vc);

/* The proxy in use ("" for none) and the server, for messages. */
const char *vault_client_proxy(const struct vault_client *vc);
const char *vault_client_server(const struct vault_client *vc);

/* Every call below returns 0 or a negative errno, with err saying what failed (the hop for a
 * transport failure, the server's own message for an HTTP error):
 *   transport: -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -EPROTO (TLS), -EBADMSG (not JSON, or a
 *              field missing from a 2xx answer), -EFBIG, -EIO
 *   HTTP:      401/403 -EACCES, 404 -ENOENT, 409 -EBUSY, 400 -EINVAL, 429/503 -EAGAIN, other -EIO
 * Out-parameters are set only on success. */

/* Maps an HTTP status of vmcryptd's answer to the errno above (0 for 2xx). */
int vault_client_errno_from_status(long status);

/* POST /v1/enroll with the one-time enrollment token (NUL-terminated) as the bearer, this VM's
 * hostname and agent version (NULL: not sent). Returns the VM's name (into ret_name, at least
 * API_NAME_MAX + 1 bytes) and its new credential in secret memory (NUL-terminated, *ret_size
 * without the NUL). A used, revoked or wrong token is -EACCES (401). */
int vault_client_enroll(struct vault_client *vc, const char *enroll_token, const char *hostname,
			const char *agent_version, char *ret_name, size_t name_len, void **ret_credential,
			size_t *ret_size, char *err, size_t errlen);

/* GET /v1/vm/goal: the VM's desired settings (a new reference; "sequence" and "settings" are
 * checked to be there). A revoked credential is -EACCES (403). */
int vault_client_goal(struct vault_client *vc, json_t **ret, char *err, size_t errlen);

/* PUT /v1/vm/secrets/{volume}: stores a new version of the volume's secret (n bytes, 1 to
 * API_SECRET_MAX) and returns its version. -EINVAL for a bad volume name or size (nothing sent). */
int vault_client_secret_put(struct vault_client *vc, const char *volume, const void *value, size_t n,
			    uint64_t *ret_version, char *err, size_t errlen);

/* GET /v1/vm/secrets/{volume}: the newest version, decoded into secret memory. -ENOENT when the
 * VM has no secret for the volume. */
int vault_client_secret_get(struct vault_client *vc, const char *volume, void **ret_value, size_t *ret_n,
			    uint64_t *ret_version, char *err, size_t errlen);

/* POST /v1/vm/status with report (the ADE status model, docs/api.md); returns the server's
 * current settings sequence. */
int vault_client_status(struct vault_client *vc, json_t *report, uint64_t *ret_sequence, char *err,
			size_t errlen);

/* PUT /v1/vm/headers/{volume}: stores size bytes (1 to API_HEADER_MAX: what `cryptsetup
 * luksHeaderBackup` or crypt_header_backup() wrote, metadata and keyslot area) as the newest
 * version of the volume's header backup, with their SHA-256, so that bytes damaged on the way are
 * refused (-EINVAL, HTTP 400) instead of stored. vmcryptd keeps the last 3 versions. Returns the
 * version; *ret_unchanged (may be NULL) says the newest stored version already held these bytes,
 * which then made no new version. -EINVAL also for a bad volume name or size (nothing sent),
 * -EFBIG (HTTP 413), -EAGAIN (HTTP 503: too many header transfers at once; retry). */
int vault_client_header_put(struct vault_client *vc, const char *volume, const void *data, size_t size,
			    uint64_t *ret_version, bool *ret_unchanged, char *err, size_t errlen);

/* GET /v1/vm/headers/{volume}: version 0 the newest, else that version. The bytes in secret
 * memory (secret_free them), checked against the SHA-256 vmcryptd recorded at upload. -ENOENT
 * (no such header backup or version), -EBADMSG (the bytes do not match their hash: damaged on
 * the way), -EIO (HTTP 500: vmcryptd found its stored copy damaged and sent nothing; an older
 * version may be intact). */
int vault_client_header_get(struct vault_client *vc, const char *volume, uint64_t version, void **ret_data,
			    size_t *ret_size, uint64_t *ret_version, char *err, size_t errlen);
