/* vmcrypt status without a target: placeholder until the VM status model lands (issue 3). */
#include <stdio.h>

#include "shared/exit-status.h"
#include "vmcrypt.h"

int status_vm(bool json)
{
	fprintf(stderr, "vmcrypt status: a TARGET is required for now\n");
	return EXIT_USAGE;
}
