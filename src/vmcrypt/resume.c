/* vmcrypt resume: see convert-cli.c, which encrypt, decrypt and resume share. */
#include "convert-cli.h"
#include "vmcrypt.h"

int verb_resume(int argc, char **argv)
{
	return convert_cli_run(CONVERT_VERB_RESUME, argc, argv);
}
