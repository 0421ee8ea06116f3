/* The goal state vmcryptd keeps for the VM (GET /v1/vm/goal) and what it means for each data
 * volume: the decisions of the agent's loop as pure functions, so they are tested one by one. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/agent/agent-state.h"

enum agent_operation {
	AGENT_OP_NONE,              /* "None": encryption was never set for this VM */
	AGENT_OP_ENABLE,            /* "EnableEncryption" */
	AGENT_OP_ENABLE_FORMAT_ALL, /* "EnableEncryptionFormatAll": converted in place all the same */
	AGENT_OP_DISABLE,           /* "DisableEncryption" */
	_AGENT_OP_MAX,
	_AGENT_OP_INVALID = -EINVAL,
};

const char *agent_operation_to_string(enum agent_operation op);
enum agent_operation agent_operation_from_string(const char *s);

struct agent_goal {
	uint64_t sequence;
	enum agent_operation op;
	unsigned volume_type;       /* ADE_VOLUME_* bits of VolumeType */
	bool extension_installed;
};

/* Reads the body of GET /v1/vm/goal. Returns 0 or -EBADMSG with the reason in err. */
int agent_goal_parse(json_t *goal, struct agent_goal *ret, char *err, size_t errlen);

/* Whether the goal wants the data volumes encrypted: an Enable operation whose VolumeType is
 * Data or All, with the extension installed. */
bool agent_goal_wants_data(const struct agent_goal *g);
/* The same for the OS volume: VolumeType OS or All. */
bool agent_goal_wants_os(const struct agent_goal *g);

enum agent_action {
	AGENT_ACTION_NONE,
	AGENT_ACTION_RESUME,  /* an unfinished step: always first, whatever the goal says */
	AGENT_ACTION_ENCRYPT,
	AGENT_ACTION_DECRYPT,
};

const char *agent_action_to_string(enum agent_action a);

/* What to do with one volume (the OS volume when st->os, whose wish is agent_goal_wants_os()). is_luks: the device already holds a LUKS header (its own, or
 * one the agent made); st: the agent's record of it, or NULL when it has none. The agent only
 * decrypts volumes it encrypted itself (their keys are in the vault); a LUKS volume someone else
 * made is left alone either way. */
enum agent_action agent_goal_decide(const struct agent_goal *g, bool is_luks,
				    const struct agent_volume_state *st);
