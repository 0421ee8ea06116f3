/* The command line shared by encrypt, decrypt and resume: options, key, lock, journal, progress
 * and the final report. */
#pragma once

#include <errno.h>

enum convert_verb {
	CONVERT_VERB_ENCRYPT,
	CONVERT_VERB_DECRYPT,
	CONVERT_VERB_RESUME,
	_CONVERT_VERB_MAX,
	_CONVERT_VERB_INVALID = -EINVAL,
};

/* "encrypt", "decrypt", "resume" both ways (the verbs' names in vmcrypt.c's table). */
const char *convert_verb_to_string(enum convert_verb v);
enum convert_verb convert_verb_from_string(const char *s);
