/* The ADE vocabulary: one string table per enum, read both ways. */
#include <strings.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/ade.h"

static const char *const ade_state_table[_ADE_STATE_MAX] = {
	[ADE_STATE_UNKNOWN] = "Unknown",
	[ADE_STATE_ENCRYPTED] = "Encrypted",
	[ADE_STATE_NOT_ENCRYPTED] = "NotEncrypted",
	[ADE_STATE_ENCRYPTION_IN_PROGRESS] = "EncryptionInProgress",
	[ADE_STATE_DECRYPTION_IN_PROGRESS] = "DecryptionInProgress",
	[ADE_STATE_NOT_MOUNTED] = "NotMounted",
	[ADE_STATE_VM_RESTART_PENDING] = "VMRestartPending",
};

const char *ade_state_to_string(enum ade_state s)
{
	return s >= 0 && s < _ADE_STATE_MAX ? ade_state_table[s] : NULL;
}

enum ade_state ade_state_from_string(const char *s)
{
	if (!s)
		return _ADE_STATE_INVALID;
	for (size_t i = 0; i < ELEMENTSOF(ade_state_table); i++)
		if (streq(s, ade_state_table[i]))
			return (enum ade_state)i;
	return _ADE_STATE_INVALID;
}

static const char *const ade_volume_type_table[_ADE_VOLUME_TYPE_MAX] = {
	[ADE_VOLUME_NONE] = "None",
	[ADE_VOLUME_OS] = "OS",
	[ADE_VOLUME_DATA] = "Data",
	[ADE_VOLUME_ALL] = "All",
};

const char *ade_volume_type_to_string(enum ade_volume_type t)
{
	return t >= 0 && t < _ADE_VOLUME_TYPE_MAX ? ade_volume_type_table[t] : NULL;
}

enum ade_volume_type ade_volume_type_from_string(const char *s)
{
	if (!s)
		return _ADE_VOLUME_TYPE_INVALID;
	/* ADE's VolumeType is case-insensitive; None names no volume and is never asked for. */
	for (size_t i = ADE_VOLUME_OS; i < ELEMENTSOF(ade_volume_type_table); i++)
		if (strcasecmp(s, ade_volume_type_table[i]) == 0)
			return (enum ade_volume_type)i;
	return _ADE_VOLUME_TYPE_INVALID;
}

enum ade_state ade_state_aggregate(const enum ade_state *states, size_t n)
{
	size_t enc = 0, encrypting = 0, decrypting = 0, unknown = 0;

	for (size_t i = 0; i < n; i++) {
		if (states[i] == ADE_STATE_ENCRYPTED)
			enc++;
		else if (states[i] == ADE_STATE_ENCRYPTION_IN_PROGRESS)
			encrypting++;
		else if (states[i] == ADE_STATE_DECRYPTION_IN_PROGRESS)
			decrypting++;
		else if (states[i] == ADE_STATE_UNKNOWN)
			unknown++;
	}
	if (n == 0)
		return ADE_STATE_NOT_MOUNTED;
	if (encrypting > 0)
		return ADE_STATE_ENCRYPTION_IN_PROGRESS;
	if (decrypting > 0)
		return ADE_STATE_DECRYPTION_IN_PROGRESS;
	if (unknown > 0)
		return ADE_STATE_UNKNOWN;
	return enc == n ? ADE_STATE_ENCRYPTED : ADE_STATE_NOT_ENCRYPTED;
}
