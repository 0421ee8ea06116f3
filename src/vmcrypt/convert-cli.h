/* The command line shared by encrypt, decrypt and resume: options, key, lock, journal, progress
 * and the final report. */
#pragma once

enum convert_verb {
	CONVERT_VERB_ENCRYPT,
	CONVERT_VERB_DECRYPT,
	CONVERT_VERB_RESUME,
};

/* Returns a process exit status. */
int convert_cli_run(enum convert_verb verb, int argc, char **argv);
