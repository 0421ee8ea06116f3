/* Where vmcrypt keeps its state. */
#include <stdlib.h>

#include "shared/paths.h"

/* secure_getenv(): a vmcrypt run with raised privileges (setuid, file capabilities) must not let
 * the caller's environment move its state, lock or the root it inspects. */
static const char *env_or(const char *name, const char *def)
{
	const char *v = secure_getenv(name);
	return v && *v ? v : def;
}

const char *path_state_dir(void)
{
	return env_or("VMCRYPT_STATE_DIR", "/var/lib/vmcrypt");
}

const char *path_conf_dir(void)
{
	return env_or("VMCRYPT_CONF_DIR", "/etc/vmcrypt");
}

const char *path_run_dir(void)
{
	return env_or("VMCRYPT_RUN_DIR", "/run/vmcrypt");
}

const char *path_test_root(void)
{
	return env_or("VMCRYPT_TEST_ROOT", "");
}
