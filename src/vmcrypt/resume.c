/* vmcrypt resume: placeholder. */
#include "shared/exit-status.h"
#include "vmcrypt.h"

int verb_resume(int argc, char **argv)
{
	return EXIT_ERROR;
}
