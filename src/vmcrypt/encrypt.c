/* vmcrypt encrypt: placeholder. */
#include "shared/exit-status.h"
#include "vmcrypt.h"

int verb_encrypt(int argc, char **argv)
{
	return EXIT_ERROR;
}
