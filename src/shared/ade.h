/* The ADE vocabulary: the encryption state words a VM reports (OsVolumeEncrypted,
 * DataVolumesEncrypted, a volume's state) and the VolumeType an operator names, each one enum
 * with one string table read both ways. The status model, the API parser, the preflight checks
 * and the server all take their words from here, so a typo cannot make two of them disagree. */
#pragma once

#include <errno.h>
#include <stddef.h>

/* UNKNOWN is 0, so a zeroed status says Unknown. */
enum ade_state {
	ADE_STATE_UNKNOWN,
	ADE_STATE_ENCRYPTED,
	ADE_STATE_NOT_ENCRYPTED,
	ADE_STATE_ENCRYPTION_IN_PROGRESS,
	ADE_STATE_DECRYPTION_IN_PROGRESS,
	ADE_STATE_NOT_MOUNTED,        /* DataVolumesEncrypted only: no data volume */
	ADE_STATE_VM_RESTART_PENDING, /* OsVolumeEncrypted only: header written, reboot needed */
	_ADE_STATE_MAX,
	_ADE_STATE_INVALID = -EINVAL,
};

/* "Unknown", "Encrypted", "NotEncrypted", "EncryptionInProgress", "DecryptionInProgress",
 * "NotMounted", "VMRestartPending"; NULL for a value outside the enum. */
const char *ade_state_to_string(enum ade_state s);
/* The exact (case-sensitive) word, as ADE spells it; _ADE_STATE_INVALID for anything else. */
enum ade_state ade_state_from_string(const char *s);

/* ADE's VolumeType as a bit set: OS | DATA == ALL. NONE (no volume) is only ever written. */
enum ade_volume_type {
	ADE_VOLUME_NONE = 0,
	ADE_VOLUME_OS = 1,
	ADE_VOLUME_DATA = 2,
	ADE_VOLUME_ALL = ADE_VOLUME_OS | ADE_VOLUME_DATA,
	_ADE_VOLUME_TYPE_MAX,
	_ADE_VOLUME_TYPE_INVALID = -EINVAL,
};

/* "None", "OS", "Data", "All"; NULL for a value outside the enum. */
const char *ade_volume_type_to_string(enum ade_volume_type t);
/* "OS", "Data" or "All", case-insensitive; "None" and anything else give
 * _ADE_VOLUME_TYPE_INVALID. */
enum ade_volume_type ade_volume_type_from_string(const char *s);

/* DataVolumesEncrypted from the states of the data volumes: NotMounted when there are none; else
 * EncryptionInProgress, DecryptionInProgress or Unknown when any volume is so (in that order);
 * Encrypted when all are; NotEncrypted otherwise. The one rule the status model and the agent's
 * report share. */
enum ade_state ade_state_aggregate(const enum ade_state *states, size_t n);
