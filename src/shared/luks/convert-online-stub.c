/* Placeholder for the online conversion (convert.h) until its implementation lands: every call
 * says online conversion is not available, so the agent refuses mounted volumes with a message
 * and converts unmounted ones offline. Removed by the merge that brings convert_online_*(). */
#include <errno.h>
#include <stdio.h>

#include "shared/luks/convert.h"

static int unavailable(struct convert_result *res)
{
	snprintf(res->message, sizeof(res->message), "%s: online conversion is not available in this build",
		 res->op == VOLUME_OP_DECRYPT ? "decrypt" : "encrypt");
	snprintf(res->remedy, sizeof(res->remedy), "Unmount the volume to convert it offline.");
	return -EOPNOTSUPP;
}

int convert_online_start(const struct convert_request *req, enum volume_op op, struct convert_result *res)
{
	res->op = op;
	return unavailable(res);
}

int convert_online_run(const struct convert_request *req, struct convert_result *res)
{
	return unavailable(res);
}

int convert_online_resume(const struct convert_request *req, struct convert_result *res)
{
	return unavailable(res);
}

int convert_online_finish(const struct convert_request *req, struct convert_result *res)
{
	return unavailable(res);
}
