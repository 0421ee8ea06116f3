/* vmcrypt status: placeholder. */
#include "shared/exit-status.h"
#include "vmcrypt.h"

int verb_status(int argc, char **argv)
{
	return status_vm(false);
}
