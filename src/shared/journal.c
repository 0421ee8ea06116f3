/* Placeholder until the operation journal lands (issue 3). */
#include "journal.h"

int journal_begin(const char *command, const char *target, const char *uuid)
{
	return 0;
}

int journal_progress(const char *target, const char *uuid, double percent, uint64_t rate)
{
	return 0;
}

int journal_end(const char *target, enum journal_result result, int error)
{
	return 0;
}
