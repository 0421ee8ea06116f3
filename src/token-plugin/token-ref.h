/* The vmcrypt LUKS2 token (docs/agent.md "The LUKS2 token"): what it names and the one check of
 * its JSON, shared by the plugin's validate, dump and open. Pure: no I/O, no libcryptsetup. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "shared/api/api.h"

#define TOKEN_REF_TYPE "vmcrypt"
/* A token's JSON as libcryptsetup hands it over; the LUKS2 JSON area is 12 KiB at the smallest,
 * a vmcrypt token is about 130 bytes. */
#define TOKEN_REF_JSON_MAX 4096
/* The server URL, without the NUL (agent.conf's Server= has the same cap). */
#define TOKEN_REF_SERVER_MAX 511
/* LUKS2 keyslots: ids 0-31. */
#define TOKEN_REF_KEYSLOTS_MAX 32

/* An unlock token: {"type":"vmcrypt","keyslots":["0"],"server":"https://10.0.2.100:8443",
 * "vm":"vm1","volume":"data","version":1}. */
struct token_ref {
	char server[TOKEN_REF_SERVER_MAX + 1]; /* "https://host[:port]" */
	char vm[API_NAME_MAX + 1];
	char volume[API_NAME_MAX + 1];
	uint32_t version;                      /* the vault secret's version the keyslot was made with */
};

/* token_ref_parse() returns this for the other token of type vmcrypt: the conversion state that
 * `vmcrypt encrypt` keeps while it runs (docs/vmcrypt.md "The vmcrypt token": no keyslots, an
 * "operation" key). It is valid, and there is nothing to open with it. */
#define TOKEN_REF_CONVERSION 1

/* Checks a token's JSON and fills *ret for an unlock token. Refused: not a JSON object, duplicate
 * keys, over TOKEN_REF_JSON_MAX bytes, type not "vmcrypt", keyslots not an array of keyslot
 * numbers (at least one for an unlock token, none for the conversion state), server not an
 * https URL of a host and optional port only (no user, path, query or fragment), vm or volume
 * not a valid name (api_name_valid()), version not an integer from 1 to 2^32-1, a missing key,
 * or any key the token does not have. On failure writes the reason to err (field names only,
 * never a value). Returns 0, TOKEN_REF_CONVERSION or -EINVAL. */
int token_ref_parse(const char *json, struct token_ref *ret, char *err, size_t errlen);
