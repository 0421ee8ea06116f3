/* vmcrypt decrypt: placeholder. */
#include "shared/exit-status.h"
#include "vmcrypt.h"

int verb_decrypt(int argc, char **argv)
{
	return EXIT_ERROR;
}
