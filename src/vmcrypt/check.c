/* vmcrypt check: placeholder until the prerequisite checks land (issue 3). */
#include <stdio.h>

#include "shared/exit-status.h"
#include "vmcrypt.h"

int verb_check(int argc, char **argv)
{
	fprintf(stderr, "vmcrypt check: not implemented yet\n");
	return EXIT_ERROR;
}
