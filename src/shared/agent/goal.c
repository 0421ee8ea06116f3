/* Goal parsing and the per-volume decision. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/ade.h"
#include "shared/agent/goal.h"

static const char *const operation_names[_AGENT_OP_MAX] = {
	[AGENT_OP_NONE] = "None",
	[AGENT_OP_ENABLE] = "EnableEncryption",
	[AGENT_OP_ENABLE_FORMAT_ALL] = "EnableEncryptionFormatAll",
	[AGENT_OP_DISABLE] = "DisableEncryption",
};

const char *agent_operation_to_string(enum agent_operation op)
{
	return (unsigned)op < ELEMENTSOF(operation_names) ? operation_names[op] : NULL;
}

enum agent_operation agent_operation_from_string(const char *s)
{
	for (size_t i = 0; s && i < ELEMENTSOF(operation_names); i++)
		if (streq(s, operation_names[i]))
			return (enum agent_operation)i;
	return _AGENT_OP_INVALID;
}

static const char *const action_names[] = {
	[AGENT_ACTION_NONE] = "none",
	[AGENT_ACTION_RESUME] = "resume",
	[AGENT_ACTION_ENCRYPT] = "encrypt",
	[AGENT_ACTION_DECRYPT] = "decrypt",
};

const char *agent_action_to_string(enum agent_action a)
{
	return (unsigned)a < ELEMENTSOF(action_names) ? action_names[a] : "unknown";
}

int agent_goal_parse(json_t *goal, struct agent_goal *ret, char *err, size_t errlen)
{
	const char *op = NULL, *type = NULL;
	json_int_t sequence = 0;
	int installed = 1;
	json_t *settings;
	enum ade_volume_type t;

	memset(ret, 0, sizeof(*ret));
	if (json_unpack(goal, "{s:I, s:o}", "sequence", &sequence, "settings", &settings) < 0 ||
	    sequence < 0) {
		snprintf(err, errlen, "the goal has no sequence or settings");
		return -EBADMSG;
	}
	if (json_unpack(settings, "{s:s, s?s, s?b}", "EncryptionOperation", &op, "VolumeType", &type,
			"ExtensionInstalled", &installed) < 0) {
		snprintf(err, errlen, "the goal's settings have no EncryptionOperation");
		return -EBADMSG;
	}
	ret->op = agent_operation_from_string(op);
	if (ret->op < 0) {
		snprintf(err, errlen, "unknown EncryptionOperation \"%s\"", op);
		return -EBADMSG;
	}
	if (type && !streq(type, "None")) {
		t = ade_volume_type_from_string(type);
		if (t < 0) {
			snprintf(err, errlen, "unknown VolumeType \"%s\"", type);
			return -EBADMSG;
		}
		ret->volume_type = (unsigned)t;
	}
	ret->sequence = (uint64_t)sequence;
	ret->extension_installed = installed;
	return 0;
}

bool agent_goal_wants_data(const struct agent_goal *g)
{
	return (g->op == AGENT_OP_ENABLE || g->op == AGENT_OP_ENABLE_FORMAT_ALL) &&
	       (g->volume_type & ADE_VOLUME_DATA) && g->extension_installed;
}

bool agent_goal_wants_os(const struct agent_goal *g)
{
	return (g->op == AGENT_OP_ENABLE || g->op == AGENT_OP_ENABLE_FORMAT_ALL) &&
	       (g->volume_type & ADE_VOLUME_OS) && g->extension_installed;
}

enum agent_action agent_goal_decide(const struct agent_goal *g, bool is_luks,
				    const struct agent_volume_state *st)
{
	enum agent_phase phase = st ? st->phase : AGENT_PHASE_PLAIN;

	switch (phase) {
	case AGENT_PHASE_CUTOVER:
	case AGENT_PHASE_CONVERTING:
	case AGENT_PHASE_DECRYPTING:
	case AGENT_PHASE_FINISHING:
	case AGENT_PHASE_RESTART_PENDING:
		return AGENT_ACTION_RESUME;
	default:
		break;
	}
	/* None: the VM was never told anything; the agent changes nothing. */
	if (g->op == AGENT_OP_NONE)
		return AGENT_ACTION_NONE;
	if (st && st->os) {
		/* The OS volume goes back only when DisableEncryption names it: settings that
		 * merely stop wanting it (Data only, the extension removed) leave it as it is, as
		 * ADE never decrypts an OS volume behind the administrator's back. */
		if (agent_goal_wants_os(g))
			return is_luks ? AGENT_ACTION_NONE : AGENT_ACTION_ENCRYPT;
		return g->op == AGENT_OP_DISABLE && (g->volume_type & ADE_VOLUME_OS) &&
		       phase == AGENT_PHASE_ENCRYPTED && is_luks ? AGENT_ACTION_DECRYPT : AGENT_ACTION_NONE;
	}
	if (agent_goal_wants_data(g))
		return is_luks ? AGENT_ACTION_NONE : AGENT_ACTION_ENCRYPT;
	return phase == AGENT_PHASE_ENCRYPTED && is_luks ? AGENT_ACTION_DECRYPT : AGENT_ACTION_NONE;
}
