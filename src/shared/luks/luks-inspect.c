/* The state of a volume as vmcrypt sees it: its LUKS2 header if any, and an in-flight conversion's
 * state from the state directory. Above both luks.c and convstate.c, which know nothing of each
 * other's callers. */
#include <errno.h>
#include <libcryptsetup.h>
#include <stdio.h>
#include <string.h>

#include "basic/string-util.h"
#include "shared/luks/convstate.h"
#include "shared/luks/luks-inspect.h"
#include "shared/luks/luks.h"
#include "shared/volume/device.h"

int luks_inspect(const char *target, const char *header, struct volume_info *ret)
{
	struct device_info d;
	struct crypt_device *cd = NULL;
	struct convstate st;
	char state_header[PATH_MAX];
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->percent = -1;
	r = device_probe(target, &d);
	if (r < 0)
		return r;
	ret->device_size = d.size;
	snprintf(ret->fs_type, sizeof(ret->fs_type), "%s", d.fs_type);

	if (!header && !streq(d.fs_type, "crypto_LUKS")) {
		/* A plain device may be in the middle of a conversion whose header is parked in the
		 * state directory, or before its header is placed. */
		if (convstate_find(&d, &st) == 0) {
			ret->op = st.op;
			snprintf(ret->uuid, sizeof(ret->uuid), "%s", st.uuid);
			snprintf(ret->fs_type, sizeof(ret->fs_type), "%s", st.fs_type);
			ret->fs_size = st.fs_size;
			ret->started = st.started;
			if (st.detached)
				header = st.header;
			else if (st.op == VOLUME_OP_DECRYPT && st.phase >= PHASE_WIPING &&
				 convstate_path(st.uuid, "header.img", state_header, sizeof(state_header)) == 0)
				header = state_header;
			if (!header) {
				ret->state = VOLUME_INTERRUPTED;
				ret->percent = st.op == VOLUME_OP_DECRYPT ? 100 : 0;
				return 0;
			}
			if (st.phase == PHASE_GROWING) {
				ret->state = VOLUME_INTERRUPTED;
				ret->percent = 100;
				return 0;
			}
		} else {
			ret->state = VOLUME_PLAIN;
			return 0;
		}
	}

	r = luks_load(header, d.path, &cd);
	if (r == -ENOTBLK)
		return r; /* the header given is a FIFO or another special file */
	if (r < 0) {
		if (header) {
			/* A detached header that is not (yet) LUKS: an encrypt cut short before
			 * the header was complete. */
			ret->state = ret->op != VOLUME_OP_NONE ? VOLUME_INTERRUPTED : VOLUME_UNKNOWN;
			snprintf(ret->header_path, sizeof(ret->header_path), "%s", header);
			return 0;
		}
		ret->state = VOLUME_UNKNOWN;
		return 0;
	}
	luks_describe(cd, ret);
	/* The header still on the device, but a decrypt already saving it away: interrupted. */
	if (ret->state == VOLUME_ENCRYPTED && !header && convstate_find(&d, &st) == 0) {
		ret->state = VOLUME_INTERRUPTED;
		ret->op = st.op;
		ret->percent = 0;
	}
	if (!ret->header_detached)
		snprintf(ret->header_path, sizeof(ret->header_path), "%s", d.path);
	crypt_free(cd);
	return 0;
}
